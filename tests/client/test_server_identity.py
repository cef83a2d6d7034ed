"""Another server at a known address is another server (PROTOCOL.md 7.5): nothing of the old one is
shown or sent to it, its own messages are shown, and the person is told."""

from __future__ import annotations

import httpx

from tests.client.conftest import make_client, wait_until
from tui_chat_dev.serverproc import RunningServer, start_server
from tui_chat.client.state import Notice


async def test_a_new_server_at_the_same_address_shows_its_own_history_not_the_old_ones(tmp_path):
    first = start_server(tmp_path / "first")
    port = first.port
    old_id = httpx.get(first.http_url + "/info").json()["serverId"]
    try:
        alice = await make_client(first.http_url, tmp_path, "idalice")
        bob = await make_client(first.http_url, tmp_path, "idbob")
        alice.start(), bob.start()
        await wait_until(alice, lambda: alice.online)
        alice.send("idbob", "said to the first server")
        await wait_until(alice, lambda: alice.queued == 0)
        await wait_until(bob, lambda: bob.timeline_length("idalice") == 1)
        await bob.stop()
        await alice.stop()
        queued_for_old = alice.send("idbob", "queued for the first server")
        await alice.close(), await bob.close()
    finally:
        first.stop()

    second = RunningServer(tmp_path / "second" / "server.db")
    second.port = port  # a new database behind the same address
    (tmp_path / "second").mkdir()
    second.start()
    try:
        assert httpx.get(second.http_url + "/info").json()["serverId"] != old_id
        alice = await make_client(second.http_url, tmp_path, "idalice")  # the same data folder as before
        notices = [e.text for e in _drain(alice) if isinstance(e, Notice)]
        assert any("not the one you used before" in text for text in notices), notices
        bob = await make_client(second.http_url, tmp_path / "bob2", "idbob")
        alice.start(), bob.start()
        await wait_until(alice, lambda: alice.online)
        assert alice.timeline("idbob") == [], "the first server's history is not shown for the second"
        assert alice.queued == 0, "nothing queued for the first server is sent to the second"
        bob.send("idalice", "hello from the second server")
        await wait_until(alice, lambda: [r.body for r in alice.timeline("idbob")] == ["hello from the second server"])
        page = await _history(second, "idbob", "idalice")
        assert [m["body"] for m in page] == ["hello from the second server"]
        assert queued_for_old not in {m["id"] for m in page}
        await alice.close(), await bob.close()
    finally:
        second.stop()


def _drain(client) -> list:
    events = []
    while not client._events.empty():
        events.append(client._events.get_nowait())
    return events


async def _history(server: RunningServer, user: str, other: str) -> list[dict]:
    from tui_chat_dev.wsclient import WsClient, login
    from tests.client.conftest import PASSWORD

    client = await WsClient.open(server.ws_url, await login(server.http_url, user, PASSWORD), user, device="history-check")
    try:
        return (await client.request({"action": "getMessages", "with": other}))["items"]
    finally:
        await client.close()


def test_files_kept_for_an_address_by_an_earlier_release_become_the_first_known_servers(tmp_path):
    from tui_chat.client.identity import KnownServers, account_folder, adopt_legacy_folder

    legacy = account_folder(tmp_path, "http://127.0.0.1:8765", "", "alice")
    legacy.mkdir(parents=True)
    (legacy / "client.db").write_bytes(b"history")
    adopted = adopt_legacy_folder(tmp_path, "http://127.0.0.1:8765", "a" * 32, "alice")
    assert adopted != legacy and (adopted / "client.db").read_bytes() == b"history" and not legacy.exists()
    assert account_folder(tmp_path, "http://127.0.0.1:8765", "b" * 32, "alice") != adopted, "another server, another folder"

    known = KnownServers(tmp_path)
    known.remember("http://127.0.0.1:8765", "a" * 32)
    assert known.get("http://127.0.0.1:8765") == "a" * 32 and known.get("http://other:1") == ""
    assert (known.path.stat().st_mode & 0o777) == 0o600
    known.path.write_text("{not json")
    assert known.get("http://127.0.0.1:8765") == "", "a damaged file is as good as none"


async def test_a_late_handshake_of_our_own_does_not_stop_the_client(chat_server, tmp_path):
    """PROTOCOL.md 7.8: a handshake we gave up on reaches the server after we reconnected and
    replaces our live connection; we take it back at once instead of stopping for good."""
    from tui_chat_dev.wsclient import WsClient

    alice = await make_client(chat_server.http_url, tmp_path, "lateattempt")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        opened = alice.connection.generation
        alice.connection.abandoned_attempts.append("late-attempt-0001")  # as after a handshake timeout
        late = await WsClient.open(chat_server.ws_url, alice.tokens.access, "lateattempt", device=alice.device, attempt="late-attempt-0001")
        await wait_until(alice, lambda: alice.online and alice.connection.generation > opened)
        assert (await late.expect("replaced"))["attempt"] != "late-attempt-0001", "we took it back with a new attempt"
        assert await late.closed_code() == 4000

        # Another session of this device (not one of our attempts) still stops us, as before.
        other = await WsClient.open(chat_server.ws_url, alice.tokens.access, "lateattempt", device=alice.device, attempt="someone-else-01")
        await wait_until(alice, lambda: alice.link.kind == "replaced")
        await other.close()
    finally:
        await alice.close()


async def test_the_missing_keyring_is_said_on_the_first_start_not_on_every_one(chat_server, tmp_path):
    import keyring
    import keyring.backends.fail

    keyring.set_keyring(keyring.backends.fail.Keyring())
    heard = []
    for start in range(2):
        client = await make_client(chat_server.http_url, tmp_path, "nokeyring", create=start == 0)
        heard.append([e.text for e in _drain(client) if isinstance(e, Notice)])
        await client.close()
    assert any("No system keyring" in text for text in heard[0])
    assert not any("No system keyring" in text for text in heard[1]), "said once, not on every start"
