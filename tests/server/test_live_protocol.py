"""The protocol against a real ``tui-chat serve`` on 127.0.0.1, through real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import RUNTIMES, start_runtime
from tui_chat_dev.wsclient import RECV_TIMEOUT_S, WsClient, signup
from tui_chat import protocol as p


async def user(server, names, prefix="u", device="device-0001"):
    name = names(prefix)
    token = await signup(server.http_url, name)
    return await WsClient.open(server.ws_url, token, name, device), token


def send_frame(to: str, msg_id: str, body: str = "hello", **extra) -> dict:
    return {"action": "sendMessage", "id": msg_id, "to": to, "body": body, **extra}


# -- sendMessage -----------------------------------------------------------------------------


async def test_send_acks_the_sender_and_delivers_to_the_recipient(server, names):
    alice, _ = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    ack = await alice.request(send_frame(bob.user, "msg-00000001", "hi bob"))
    assert ack["type"] == "ack" and ack["id"] == "msg-00000001"
    stored = ack["message"]
    assert stored == {"id": "msg-00000001", "from": alice.user, "to": bob.user, "body": "hi bob", "seq": 1, "ts": stored["ts"]}
    assert (await bob.expect("message"))["message"] == stored
    assert not [f for f in await alice.drain() if f["type"] == "message"], "the sender never gets its own send as a message"


async def test_sender_comes_from_the_connection_not_the_frame(server, names):
    alice, _ = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    ack = await alice.request(send_frame(bob.user, "spoof-0001", "it's me", **{"from": bob.user}))
    assert ack["message"]["from"] == alice.user
    assert (await bob.expect("message"))["message"]["from"] == alice.user


async def test_unknown_recipients_and_rooms_one_is_not_in_are_refused(server, names):
    alice, _ = await user(server, names, "alice")
    error = await alice.request(send_frame("nobody-here", "msg-unknown1"))
    assert (error["type"], error["code"], error["id"]) == ("error", "unknown_user", "msg-unknown1")
    error = await alice.request(send_frame("#general", "msg-room0001"))
    assert (error["code"], error["id"]) == ("forbidden", "msg-room0001")


async def test_retry_with_same_id_across_a_reconnect_stores_once(server, names):
    alice, token = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    first = await alice.request(send_frame(bob.user, "retry-000001", "once"))
    await alice.close()
    alice = await WsClient.open(server.ws_url, token, alice.user)
    again = await alice.request(send_frame(bob.user, "retry-000001", "a different body"))
    assert again["message"] == first["message"], "a retry gets the original ack: same seq, ts and body"
    received = [f for f in await bob.drain() if f["type"] == "message"]
    assert [f["message"]["id"] for f in received] == ["retry-000001"], "no second message event"
    page = await bob.request({"action": "getMessages", "with": alice.user})
    assert [m["body"] for m in page["items"]] == ["once"]


async def test_300_pipelined_messages_keep_the_senders_order(server, names):
    alice, _ = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    for i in range(300):
        await alice.send(send_frame(bob.user, f"pipe-{i:06d}", f"n{i}"))
    acks = [await alice.expect("ack") for _ in range(300)]
    assert [a["id"] for a in acks] == [f"pipe-{i:06d}" for i in range(300)]
    seqs = [a["message"]["seq"] for a in acks]
    assert seqs == sorted(seqs) and len(set(seqs)) == 300
    got = [(await bob.expect("message"))["message"]["body"] for _ in range(300)]
    assert got == [f"n{i}" for i in range(300)]


async def test_every_device_of_a_user_gets_their_messages_including_their_own_sends(server, names):
    alice_laptop, token = await user(server, names, "alice", device="laptop-0001")
    alice_phone = await WsClient.open(server.ws_url, token, alice_laptop.user, device="phone-00001")
    bob, _ = await user(server, names, "bob")
    await alice_laptop.request(send_frame(bob.user, "multi-00001", "from laptop"))
    assert (await alice_phone.expect("message"))["message"]["body"] == "from laptop"
    assert (await bob.expect("message"))["message"]["body"] == "from laptop"
    await bob.request(send_frame(alice_laptop.user, "multi-00002", "to both"))
    assert (await alice_laptop.expect("message"))["message"]["body"] == "to both"
    assert (await alice_phone.expect("message"))["message"]["body"] == "to both"


async def test_notes_to_self_reach_the_other_devices(server, names):
    laptop, token = await user(server, names, "alice", device="laptop-0001")
    phone = await WsClient.open(server.ws_url, token, laptop.user, device="phone-00001")
    ack = await laptop.request(send_frame(laptop.user, "self-000001", "remember milk"))
    assert ack["message"]["to"] == laptop.user
    assert (await phone.expect("message"))["message"]["body"] == "remember milk"


# -- history, conversations, unread --------------------------------------------------------


async def test_offline_recipient_catches_up_with_unread_counts_and_mark_read(server, names):
    alice, _ = await user(server, names, "alice")
    bob_name = names("bob")
    bob_token = await signup(server.http_url, bob_name)
    for i in range(5):
        await alice.request(send_frame(bob_name, f"off-{i:07d}", f"while you were out {i}"))
    bob = await WsClient.open(server.ws_url, bob_token, bob_name)
    convs = await bob.request({"action": "getConversations"})
    [conv] = [c for c in convs["items"] if c["with"] == alice.user]
    assert (conv["lastSeq"], conv["readSeq"], conv["unread"]) == (5, 0, 5)
    assert conv["last"]["body"] == "while you were out 4"
    page = await bob.request({"action": "getMessages", "with": alice.user, "after": 0})
    assert [m["seq"] for m in page["items"]] == [1, 2, 3, 4, 5] and page["hasMore"] is False

    await bob.send({"action": "markRead", "with": alice.user, "seq": 3})
    assert await bob.expect("read") == {"type": "read", "with": alice.user, "by": bob_name, "seq": 3}
    assert await alice.expect("read") == {"type": "read", "with": bob_name, "by": bob_name, "seq": 3}
    convs = await bob.request({"action": "getConversations"})
    [conv] = [c for c in convs["items"] if c["with"] == alice.user]
    assert (conv["readSeq"], conv["unread"]) == (3, 2)

    # markRead never moves back, and a no-op sends no read event
    await bob.send({"action": "markRead", "with": alice.user, "seq": 2})
    assert not [f for f in await bob.drain() if f["type"] == "read"]
    # clamped to lastSeq
    await bob.send({"action": "markRead", "with": alice.user, "seq": 999})
    assert (await bob.expect("read"))["seq"] == 5


async def test_sending_moves_the_senders_own_read_marker(server, names):
    alice, _ = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    await bob.request(send_frame(alice.user, "rs-00000001", "question?"))
    await alice.request(send_frame(bob.user, "rs-00000002", "answer"))
    convs = await alice.request({"action": "getConversations"})
    [conv] = [c for c in convs["items"] if c["with"] == bob.user]
    assert (conv["readSeq"], conv["unread"]) == (2, 0)
    assert not [f for f in await alice.drain() if f["type"] == "read"], "no read event for one's own send"


async def test_paging_with_before_and_after(server, names):
    alice, _ = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    for i in range(1, 26):
        await alice.send(send_frame(bob.user, f"page-{i:06d}", f"m{i}"))
    for _ in range(25):
        await alice.expect("ack")
    newest = await bob.request({"action": "getMessages", "with": alice.user, "limit": 10})
    assert [m["seq"] for m in newest["items"]] == list(range(16, 26)) and newest["hasMore"] is True
    older = await bob.request({"action": "getMessages", "with": alice.user, "before": 16, "limit": 10})
    assert [m["seq"] for m in older["items"]] == list(range(6, 16)) and older["hasMore"] is True
    oldest = await bob.request({"action": "getMessages", "with": alice.user, "before": 6, "limit": 10})
    assert [m["seq"] for m in oldest["items"]] == [1, 2, 3, 4, 5] and oldest["hasMore"] is False
    after = await bob.request({"action": "getMessages", "with": alice.user, "after": 20, "limit": 3})
    assert [m["seq"] for m in after["items"]] == [21, 22, 23] and after["hasMore"] is True
    tail = await bob.request({"action": "getMessages", "with": alice.user, "after": 23})
    assert [m["seq"] for m in tail["items"]] == [24, 25] and tail["hasMore"] is False
    bad = await bob.request({"action": "getMessages", "with": alice.user, "after": 1, "before": 5})
    assert bad["code"] == "bad_request"


async def test_list_replies_stay_under_128_kib(server, names):
    alice, _ = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    big = "x" * 3990
    for i in range(60):  # 60 x 4 KB = 240 KB of history
        await alice.send(send_frame(bob.user, f"big-{i:07d}", f"{i:02d}{big}"))
    for _ in range(60):
        await alice.expect("ack")
    reply = await bob.request({"action": "getMessages", "with": alice.user, "limit": 200})
    assert len(json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode()) <= 128 * 1024
    assert reply["hasMore"] is True and 0 < len(reply["items"]) < 60
    assert reply["items"][-1]["seq"] == 60, "the newest are kept; older ones are paged with before"
    rest = await bob.request({"action": "getMessages", "with": alice.user, "before": reply["items"][0]["seq"], "limit": 200})
    assert rest["items"][-1]["seq"] == reply["items"][0]["seq"] - 1
    forward = await bob.request({"action": "getMessages", "with": alice.user, "after": 0, "limit": 200})
    assert forward["hasMore"] is True and forward["items"][0]["seq"] == 1


async def test_conversations_page_with_a_cursor_newest_first(server, names):
    hub, _ = await user(server, names, "hub")
    partners = []
    for i in range(55):
        name = names("p")
        await signup(server.http_url, name)
        partners.append(name)
        await hub.send(send_frame(name, f"conv-{i:06d}", f"hello {i}"))
    for _ in partners:
        await hub.expect("ack")
    first = await hub.request({"action": "getConversations"})
    assert [c["with"] for c in first["items"]][:3] == partners[::-1][:3]
    assert "next" in first
    second = await hub.request({"action": "getConversations", "cursor": first["next"]})
    seen = [c["with"] for c in first["items"] + second["items"]]
    assert seen == partners[::-1] and "next" not in second


# -- clients and presence --------------------------------------------------------------------


async def test_presence_online_status_text_and_offline_with_last_seen(server, names):
    watcher, _ = await user(server, names, "watch")
    listing = await watcher.request({"action": "getClients"})
    assert listing["type"] == "clients"
    bob_name = names("bob")
    bob_token = await signup(server.http_url, bob_name)

    bob = await WsClient.open(server.ws_url, bob_token, bob_name, device="bob-laptop")
    online = await watcher.expect("presence", user=bob_name)
    assert (online["status"], online["lastSeen"]) == ("online", None)

    await bob.send({"action": "setStatus", "status": "away", "text": "lunch"})
    away = await watcher.expect("presence", user=bob_name)
    assert (away["status"], away["text"]) == ("away", "lunch")
    assert (await bob.expect("presence", user=bob_name, status="away"))["text"] == "lunch", "the sender gets its own presence"

    phone = await WsClient.open(server.ws_url, bob_token, bob_name, device="bob-phone1")
    await phone.close()
    assert not [f for f in await watcher.drain() if f.get("user") == bob_name], "a second device is not re-announced"

    await bob.close()
    offline = await watcher.expect("presence", user=bob_name)
    assert offline["status"] == "offline" and isinstance(offline["lastSeen"], int)
    listing = await watcher.request({"action": "getClients"})
    [entry] = [u for u in listing["users"] if u["user"] == bob_name]
    assert entry == {"user": bob_name, "status": "offline", "text": "lunch", "lastSeen": offline["lastSeen"]}

    bob = await WsClient.open(server.ws_url, bob_token, bob_name, device="bob-laptop")
    back = await watcher.expect("presence", user=bob_name)
    assert (back["status"], back["text"]) == ("away", "lunch"), "status and text survive reconnects"
    await bob.send({"action": "setStatus", "status": "online"})
    assert (await watcher.expect("presence", user=bob_name))["text"] == "", "setStatus without text clears it"


async def test_get_clients_lists_users_by_name(server, names):
    alice, _ = await user(server, names, "alice")
    listing = await alice.request({"action": "getClients"})
    names_listed = [u["user"] for u in listing["users"]]
    assert names_listed == sorted(names_listed) and alice.user in names_listed
    [me] = [u for u in listing["users"] if u["user"] == alice.user]
    assert me["status"] == "online" and me["lastSeen"] is None


async def test_typing_reaches_every_connection_of_the_recipient(server, names):
    alice, _ = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    await alice.send({"action": "typing", "to": bob.user})
    assert await bob.expect("typing") == {"type": "typing", "from": alice.user}


async def test_ping_answers_pong_with_rid(server, names):
    alice, _ = await user(server, names, "alice")
    await alice.send({"action": "ping", "rid": "ping-42"})
    assert await alice.expect("pong") == {"type": "pong", "rid": "ping-42"}
    await alice.send({"action": "ping"})
    assert await alice.expect("pong") == {"type": "pong"}


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,code",
    [
        ("this is not json", "bad_request"),
        ("[1,2,3]", "bad_request"),
        ('"a string"', "bad_request"),
        ('{"no_action": true}', "bad_request"),
        ('{"action": "selfDestruct"}', "unknown_action"),
        ('{"action":"sendMessage","id":"ctrl-0000001","to":"nobody","body":"a\\u001b[2Jb"}', "bad_request"),
        (json.dumps({"action": "ping", "pad": "x" * 40000}), "too_large"),
    ],
)
async def test_malformed_frames_get_errors_and_the_connection_keeps_serving(server, names, raw, code):
    alice, _ = await user(server, names, "alice")
    await alice.send(raw)
    error = await alice.expect("error")
    assert error["code"] == code and error["message"]
    assert (await alice.request({"action": "ping"}))["type"] == "pong"


async def test_frames_over_128_kib_close_with_1009_and_the_server_keeps_serving(server, names):
    alice, _ = await user(server, names, "alice")
    await alice.send("x" * (129 * 1024))
    assert await alice.closed_code() == 1009
    other, _ = await user(server, names, "other")
    assert (await other.request({"action": "ping"}))["type"] == "pong"


async def test_binary_frames_close_with_1008(server, names):
    alice, _ = await user(server, names, "alice")
    await alice.ws.send(b"\x00\x01binary")
    assert await alice.closed_code() == 1008


# -- handshake ---------------------------------------------------------------------------------


async def test_handshake_refusals_have_http_statuses(server, names):
    name = names("alice")
    token = await signup(server.http_url, name)
    for query, status in [
        (f"token={token}", 400),  # no device
        (f"token={token}&device=short", 400),
        ("device=device-0001", 401),  # no token
        ("device=device-0001&token=not.a.jwt", 401),
        (f"device=device-0001&token={token[:-4]}AAAA", 401),  # forged signature
    ]:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{server.ws_url}?{query}")
        assert refused.value.response.status_code == status, query


async def test_open_mode_refuses_a_nickname_in_use_on_another_device(fresh_server_open):
    server = fresh_server_open
    async with httpx.AsyncClient() as http:
        first = await http.post(server.http_url + "/auth/login", json={"username": "Carol", "device": "carol-laptop"})
        assert first.status_code == 200 and first.json()["user"] == "carol"
        carol = await WsClient.open(server.ws_url, first.json()["token"], "carol", device="carol-laptop")
        taken = await http.post(server.http_url + "/auth/login", json={"username": "carol", "device": "mallory-box"})
        assert taken.status_code == 409
        # a token bound to one device does not open another
        with pytest.raises(InvalidStatus) as refused:
            await WsClient.open(server.ws_url, first.json()["token"], "carol", device="mallory-box")
        assert refused.value.response.status_code == 401
        await carol.close()
        await carol.ws.wait_closed()
        # The server frees the nickname right after the closing handshake; how soon depends on the machine.
        async with asyncio.timeout(RECV_TIMEOUT_S):
            while (await http.post(server.http_url + "/auth/login", json={"username": "carol", "device": "mallory-box"})).status_code != 200:
                await asyncio.sleep(0.02)


async def test_open_mode_handshake_409_when_nickname_connected_elsewhere(fresh_server_open):
    server = fresh_server_open
    async with httpx.AsyncClient() as http:
        a = (await http.post(server.http_url + "/auth/login", json={"username": "dave", "device": "dave-device-a"})).json()
        b = (await http.post(server.http_url + "/auth/login", json={"username": "dave", "device": "dave-device-b"})).json()
    await WsClient.open(server.ws_url, a["token"], "dave", device="dave-device-a")
    with pytest.raises(InvalidStatus) as refused:
        await WsClient.open(server.ws_url, b["token"], "dave", device="dave-device-b")
    assert refused.value.response.status_code == 409


@pytest.fixture
def fresh_server_open(tmp_path):
    from tui_chat_dev.serverproc import start_server

    running = start_server(tmp_path, auth="open")
    yield running
    running.stop()


async def test_replaced_connection_gets_replaced_and_4000(server, names):
    old, token = await user(server, names, "alice", device="same-device")
    watcher, _ = await user(server, names, "watch")
    await watcher.request({"action": "getClients"})
    # Alice's arrival may still be in the presence window (PROTOCOL.md 7.1) when the watcher starts
    # watching: a change of hers that the watcher hears flushes it, so nothing of before is pending.
    await old.send({"action": "setStatus", "status": "away"})
    await watcher.expect("presence", user=old.user, status="away")
    # Her arrival can come just before "away" (flushed to a watcher list read as the watcher
    # joined); ``expect`` keeps skipped frames pending, and they are not about the replacement.
    watcher.pending.clear()
    new = await WsClient.open(server.ws_url, token, old.user, device="same-device")
    await old.expect("replaced")
    assert await old.closed_code() == 4000
    assert (await new.request({"action": "ping"}))["type"] == "pong"
    assert not [f for f in await watcher.drain() if f.get("user") == old.user], "a replacement is not a presence change"


async def test_replaced_names_the_attempt_that_replaced_it(server, names):
    old, token = await user(server, names, "alice", device="attempt-device")
    await WsClient.open(server.ws_url, token, old.user, device="attempt-device", attempt="second-attempt-2")
    assert (await old.expect("replaced")).get("attempt") == "second-attempt-2"
    assert await old.closed_code() == 4000
    for bad in ("short", "has space in it", "x" * 65):
        with pytest.raises(InvalidStatus) as refused:
            await WsClient.open(server.ws_url, token, old.user, device="attempt-device", attempt=bad)
        assert refused.value.response.status_code == 400


async def pong(ws, rid: str) -> bool:
    await ws.send(json.dumps({"action": "ping", "rid": rid}))
    async with asyncio.timeout(10):
        while json.loads(await ws.recv()).get("rid") != rid:
            pass
    return True


async def test_the_token_in_the_authorization_header_wins_and_stays_out_of_the_log(server, names):
    name = names("header")
    token = await signup(server.http_url, name)
    url = f"{server.ws_url}?device=header-device-1"
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert await pong(ws, "h1")
    async with connect(url + "&token=not-a-token", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert await pong(ws, "h2"), "the header wins over a bad query token"
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{url}&token={token}", additional_headers={"Authorization": "Bearer forged"})
    assert refused.value.response.status_code == 401, "a bad header is not rescued by the query"
    await WsClient.open(server.ws_url, token, name, device="header-device-2")  # the query alone still works
    assert not [line for line in server.log_lines if token in json.dumps(line)], "no log line carries a token"
    assert any("token=[redacted]" in line.get("msg", "") for line in server.log_lines), "a query token is redacted"


# -- sendMessages (PROTOCOL.md 7.3) -------------------------------------------------------------


async def test_a_batch_is_stored_in_order_and_answered_item_by_item(server, names):
    alice, _ = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    batch = [
        {"id": "batch-000001", "to": bob.user, "body": "one"},
        {"id": "batch-000002", "to": "nobody-at-all", "body": "lost"},
        "not an object",
        {"id": "batch-000003", "to": bob.user, "body": "   "},
        {"id": "batch-000004", "to": bob.user, "body": "two"},
        {"id": "batch-000001", "to": bob.user, "body": "one again"},  # a repeated id: stored once, acked alike
    ]
    reply = await alice.request({"action": "sendMessages", "messages": batch})
    assert reply["type"] == "acks" and "rid" in reply
    items = reply["items"]
    assert [(i["type"], i.get("code"), i.get("id")) for i in items] == [
        ("ack", None, "batch-000001"), ("error", "unknown_user", "batch-000002"), ("error", "bad_request", None),
        ("error", "bad_request", "batch-000003"), ("ack", None, "batch-000004"), ("ack", None, "batch-000001"),
    ]  # fmt: skip
    assert items[5]["message"] == items[0]["message"], "the original ack, body and all"
    assert items[0]["message"]["seq"] < items[4]["message"]["seq"]
    assert not any("rid" in i for i in items)
    got = [(await bob.expect("message"))["message"]["body"] for _ in range(2)]
    assert got == ["one", "two"]
    page = await bob.request({"action": "getMessages", "with": alice.user})
    assert [m["body"] for m in page["items"]] == ["one", "two"]


async def test_a_batch_outside_1_to_50_messages_stores_nothing(server, names):
    alice, _ = await user(server, names, "alice")
    bob, _ = await user(server, names, "bob")
    too_many = [{"id": f"many-{i:06d}", "to": bob.user, "body": "x"} for i in range(51)]
    for messages in ([], too_many, "not a list"):
        reply = await alice.request({"action": "sendMessages", "messages": messages})
        assert (reply["type"], reply["code"]) == ("error", "bad_request") and reply["rid"]
    page = await bob.request({"action": "getMessages", "with": alice.user})
    assert page["items"] == []


async def test_a_batch_counts_one_action_per_ten_messages(strict_server, names):
    alice, _ = await user(strict_server, names, "alice")
    bob, _ = await user(strict_server, names, "bob")

    def batch(n: int) -> list[dict]:
        return [{"id": f"rate-{n}-{i:05d}", "to": bob.user, "body": f"{n}.{i}"} for i in range(50)]

    # 4 batches of 50 cost 4 x 5 = 20 actions: exactly the strict server's burst
    started = time.monotonic()
    replies = [await alice.request({"action": "sendMessages", "messages": batch(n)}) for n in range(5)]
    elapsed = time.monotonic() - started
    assert [r["type"] for r in replies[:4]] == ["acks"] * 4
    assert all(i["type"] == "ack" for r in replies[:4] for i in r["items"])
    refused = replies[4]
    if elapsed < 5 / STRICT_RATE:  # the fifth needs 5 tokens, which the bucket refills in 2.5 s
        assert refused["type"] == "error", f"a fifth batch was accepted {elapsed:.1f} s in"
    if refused["type"] == "error":
        assert refused["code"] == "rate_limited" and refused["retryAfterMs"] > 0 and refused["rid"]
        page = await bob.request({"action": "getMessages", "with": alice.user, "limit": 200})
        assert not any(m["id"].startswith("rate-4-") for m in page["items"]), "nothing of a refused batch is stored"


# -- rate limits and slow readers ---------------------------------------------------------------


@pytest.fixture(scope="module", params=list(RUNTIMES))
def strict_server(request, tmp_path_factory):
    """A server whose limit (2 actions/s, bursts of 20) a test can pass however slowly the machine
    handles frames: with the default 100/s, a runtime busy enough to handle fewer than 100 frames a
    second never reaches the limit at all."""
    running = start_runtime(request.param, tmp_path_factory.mktemp("strict"), STRICT_FLAGS)
    yield running
    running.stop()


STRICT_RATE, STRICT_BURST = 2, 20


async def replies(client: WsClient, count: int) -> list[dict]:
    """The next ``count`` replies to requests (frames with a ``rid``), skipping events such as presence."""
    frames = []
    while len(frames) < count:
        frame = await client.recv()
        if "rid" in frame:
            frames.append(frame)
    return frames
STRICT_FLAGS = ("--rate-limit", str(STRICT_RATE), "--rate-burst", str(STRICT_BURST))


async def test_rate_limit_refuses_with_retry_after_without_starving_others(strict_server, names):
    flood, _ = await user(strict_server, names, "flood")
    calm, _ = await user(strict_server, names, "calm")
    count = 100
    started = time.monotonic()
    for i in range(count):
        await flood.send({"action": "ping", "rid": f"f{i}"})
    assert (await calm.request({"action": "ping"}))["type"] == "pong", "another connection is still served"
    frames = await replies(flood, count)
    elapsed = time.monotonic() - started  # the server handled every frame within this window
    assert [f["rid"] for f in frames] == [f"f{i}" for i in range(count)], "one reply per request, in order"
    assert all(f["type"] == "pong" for f in frames[:STRICT_BURST]), "a fresh connection gets its whole burst"
    limited = [f for f in frames if f["type"] == "error"]
    assert all(f["code"] == "rate_limited" and 0 < f["retryAfterMs"] <= 1000 / STRICT_RATE for f in limited)
    accepted = count - len(limited)
    assert accepted <= STRICT_BURST + STRICT_RATE * elapsed + 1, f"{accepted} accepted in {elapsed:.1f} s"
    assert limited, f"no refusal: the server took {elapsed:.1f} s for {count} pings"


async def test_the_default_burst_of_500_is_honoured(server, names):
    eager, _ = await user(server, names, "eager")
    for i in range(p.RATE_LIMIT_BURST):
        await eager.send({"action": "ping", "rid": f"e{i}"})
    frames = await replies(eager, p.RATE_LIMIT_BURST)
    assert [f["type"] for f in frames] == ["pong"] * p.RATE_LIMIT_BURST


async def test_a_reader_that_never_reads_is_dropped_and_does_not_stall_others(server, names):
    if server.runtime == "lambda":
        pytest.skip("API Gateway keeps no send buffer per connection: a post to a stuck reader just fails")
    sender, _ = await user(server, names, "loud")
    name = names("stuck")
    token = await signup(server.http_url, name)
    # A client that stops reading: a tiny kernel receive buffer, and we never call recv.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    stuck = await WsClient.open(server.ws_url, token, name, max_queue=1, sock=sock)
    listener, _ = await user(server, names, "ok")
    helper, _ = await user(server, names, "loud")
    body = "€" * 4000  # 12 KB: enough to fill the kernel's socket buffers as well as ours
    for i in range(400):  # 2 x 400 x 12 KB = 9.6 MB to the stuck reader, far past its allowance
        await sender.send(send_frame(name, f"slow-{i:07d}", body))
        await helper.send(send_frame(name, f"slow-{i:07d}", body))
        if i % 50 == 0:
            await sender.send(send_frame(listener.user, f"fast-{i:07d}", "still here"))
    acks = [await sender.expect("ack") for _ in range(408)] + [await helper.expect("ack") for _ in range(400)]
    assert len(acks) == 808, "the senders are never blocked by the slow reader"
    got = [await listener.expect("message") for _ in range(8)]
    assert all(m["message"]["body"] == "still here" for m in got)
    dropped = await server.wait_for_log("dropping slow consumer")
    assert [line["user"] for line in dropped] == [name], "the stuck reader was dropped, nobody else"
    del stuck
