"""A session kept on this device opens from disk alone, before any network or keyring read."""

from __future__ import annotations

from tests.client.conftest import fast_link, make_client, wait_until
from tui_chat_dev.serverproc import start_server
from tui_chat.client.service import ChatClient


def reopen(url: str, tmp_path, name: str) -> ChatClient:
    return ChatClient(url, data_folder=tmp_path / name / "main", device=f"{name}-device-1", connection_options=fast_link())


async def test_a_kept_session_opens_from_disk_with_the_server_down_then_renews_and_delivers_once(tmp_path):
    server = start_server(tmp_path / "srv")
    try:
        alice = await make_client(server.http_url, tmp_path, "savedalice")
        bob = await make_client(server.http_url, tmp_path, "savedbob")
        alice.start()
        first = alice.send("savedbob", "before the restart")
        await wait_until(alice, lambda: alice.queued == 0)
        await alice.close()
        server.stop()

        again = reopen(server.http_url, tmp_path, "savedalice")
        assert again.open_saved("savedalice"), "kept in the keyring: it opens without asking anyone"
        assert again.tokens.access == "" and [r.id for r in again.timeline("savedbob")] == [first]
        queued = again.send("savedbob", "written while the server is down")
        assert [r.state for r in again.timeline("savedbob")] == ["sent", "pending"]

        server.start()
        again.start()  # refused at first (no token yet), then renewed from the keyring
        await wait_until(again, lambda: again.online and again.queued == 0)
        assert again.tokens.access
        bob.start()
        await wait_until(bob, lambda: [r.id for r in bob.timeline("savedalice")] == [first, queued])
        await again.close(), await bob.close()
    finally:
        server.stop()


async def test_signed_out_or_never_kept_is_not_opened(chat_server, tmp_path, memory_keyring):
    alice = await make_client(chat_server.http_url, tmp_path, "outalice")
    await alice.sign_out()
    await alice.close()
    assert not reopen(chat_server.http_url, tmp_path, "outalice").open_saved("outalice"), "signed out: sign in again"
    assert not reopen(chat_server.http_url, tmp_path, "nobody").open_saved("nobody"), "no files here for that name"


async def test_a_kept_session_that_is_gone_ends_signed_out_and_is_not_opened_again(chat_server, tmp_path, memory_keyring):
    alice = await make_client(chat_server.http_url, tmp_path, "gonealice")
    await alice.close()
    memory_keyring.passwords.clear()  # the keyring was wiped (another tool, a new login keychain)
    again = reopen(chat_server.http_url, tmp_path, "gonealice")
    assert again.open_saved("gonealice")
    again.start()
    await wait_until(again, lambda: again.link.kind == "signed_out")
    await again.close()
    assert not reopen(chat_server.http_url, tmp_path, "gonealice").open_saved("gonealice")


async def test_a_client_signed_in_already_keeps_its_tokens(chat_server, tmp_path):
    """The app asks for the saved session after a sign-in in the same process: nothing is reset."""
    alice = await make_client(chat_server.http_url, tmp_path, "nowalice")
    tokens = alice.tokens
    assert alice.open_saved("nowalice") and alice.tokens == tokens and alice.tokens.access
    await alice.close()
