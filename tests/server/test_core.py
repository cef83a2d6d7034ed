"""The chat core over the real SQLite store, with a gateway that records every frame."""

from __future__ import annotations

import asyncio
import json

import pytest

from tui_chat import protocol as p
from tui_chat.server.core import Caller, ChatCore, Gateway
from tui_chat.server.stores.sqlite import SQLiteStore


class RecordingGateway(Gateway):
    def __init__(self) -> None:
        self.frames: dict[str, list[dict]] = {}
        self.closed: dict[str, int] = {}
        self.gone: set[str] = set()

    async def send(self, conn_id: str, text: str) -> bool:
        if conn_id in self.gone or conn_id in self.closed:
            return False
        assert len(text.encode()) <= p.MAX_FRAME_BYTES
        self.frames.setdefault(conn_id, []).append(json.loads(text))
        return True

    async def close(self, conn_id: str, code: int, reason: str = "") -> None:
        self.closed[conn_id] = code

    def take(self, conn_id: str, kind: str | None = None) -> list[dict]:
        frames = self.frames.pop(conn_id, [])
        return [f for f in frames if kind is None or f["type"] == kind]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


@pytest.fixture
async def chat(tmp_path):
    store = SQLiteStore(tmp_path / "core.db")
    await store.open()
    gateway = RecordingGateway()
    core = ChatCore(store, gateway, clock=Clock())
    for name in ("alice", "bob", "carol"):
        await store.create_user(name, None, 0)
    yield core, gateway
    await store.close()


async def connect(core: ChatCore, conn_id: str, user: str, device: str = "device-0001") -> Caller:
    await core.connect(conn_id, user, device)
    return Caller(conn_id, user, device)


def frame(**fields) -> str:
    return json.dumps(fields)


async def test_send_acks_then_fans_out_to_recipient_and_senders_other_devices(chat):
    core, gw = chat
    alice = await connect(core, "a1", "alice", "laptop-001")
    await connect(core, "a2", "alice", "phone-0001")
    await connect(core, "b1", "bob")
    await core.handle_frame(alice, frame(action="sendMessage", id="m-00000001", to="bob", body="hi", rid="x"))
    [ack] = gw.take("a1", "ack")
    assert ack["rid"] == "x" and ack["message"]["seq"] == 1 and ack["message"]["from"] == "alice"
    assert gw.take("a1", "message") == []
    assert [f["message"]["body"] for f in gw.take("a2", "message")] == ["hi"]
    assert [f["message"]["body"] for f in gw.take("b1", "message")] == ["hi"]


async def test_a_gone_recipient_connection_is_removed_not_the_sender(chat):
    core, gw = chat
    alice = await connect(core, "a1", "alice")
    await connect(core, "b1", "bob")
    gw.gone.add("b1")
    await core.handle_frame(alice, frame(action="sendMessage", id="m-00000002", to="bob", body="anyone?"))
    assert gw.take("a1", "ack")
    assert await core.store.get_connection("b1") is None
    assert await core.store.get_connection("a1") is not None


async def test_replacing_a_device_sends_replaced_and_closes_4000_without_presence(chat):
    core, gw = chat
    watcher = await connect(core, "c1", "carol")
    await core.handle_frame(watcher, frame(action="getClients"))
    await connect(core, "a1", "alice", "same-device")
    gw.take("c1")
    await connect(core, "a2", "alice", "same-device")
    assert gw.take("a1")[-1] == {"type": "replaced"}
    assert gw.closed["a1"] == p.CLOSE_REPLACED
    await core.disconnect("a1")  # the old socket's close arrives afterwards
    assert gw.take("c1") == [], "neither the replacement nor the old socket's close is a presence change"


async def test_presence_only_on_visible_change(chat):
    core, gw = chat
    watcher = await connect(core, "c1", "carol")
    await core.handle_frame(watcher, frame(action="getClients"))
    gw.take("c1")
    await connect(core, "b1", "bob", "laptop-001")
    await connect(core, "b2", "bob", "phone-0001")
    assert [f["status"] for f in gw.take("c1", "presence")] == ["online"]
    await core.disconnect("b1")
    assert gw.take("c1", "presence") == []
    await core.disconnect("b2")
    [offline] = gw.take("c1", "presence")
    assert offline["status"] == "offline" and offline["lastSeen"] is not None


async def test_errors_carry_rid_and_id_and_never_raise(chat):
    core, gw = chat
    alice = await connect(core, "a1", "alice")
    await core.handle_frame(alice, frame(action="sendMessage", id="m-00000003", to="zed", body="x", rid="q"))
    [error] = gw.take("a1", "error")
    assert (error["code"], error["id"], error["rid"]) == ("unknown_user", "m-00000003", "q")
    await core.handle_frame(alice, b"\xff\xfe")
    assert gw.take("a1", "error")[0]["code"] == "bad_request"


async def test_internal_failures_answer_internal_and_keep_serving(chat, monkeypatch):
    core, gw = chat
    alice = await connect(core, "a1", "alice")

    async def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(core.store, "list_conversations", broken)
    gw.take("a1")
    await core.handle_frame(alice, frame(action="getConversations", rid="c"))
    [error] = gw.take("a1")
    assert (error["code"], error["rid"]) == ("internal", "c")
    assert "disk" not in error["message"], "internal details are logged, not sent"
    await core.handle_frame(alice, frame(action="ping"))
    assert gw.take("a1") == [{"type": "pong"}]


async def test_invalid_cursor_is_a_bad_request(chat):
    core, gw = chat
    alice = await connect(core, "a1", "alice")
    await core.handle_frame(alice, frame(action="getConversations", cursor="!!garbage!!"))
    assert gw.take("a1", "error")[0]["code"] == "bad_request"


async def test_mark_read_sends_read_to_both_sides(chat):
    core, gw = chat
    alice = await connect(core, "a1", "alice")
    bob = await connect(core, "b1", "bob")
    await core.handle_frame(alice, frame(action="sendMessage", id="m-00000004", to="bob", body="1"))
    gw.take("a1"), gw.take("b1")
    await core.handle_frame(bob, frame(action="markRead", with_="x", **{"with": "alice"}, seq=1))
    assert gw.take("b1") == [{"type": "read", "with": "alice", "by": "bob", "seq": 1}]
    assert gw.take("a1") == [{"type": "read", "with": "bob", "by": "bob", "seq": 1}]


async def test_conversation_replies_with_huge_bodies_fit_in_one_frame(chat):
    core, gw = chat
    alice = await connect(core, "a1", "alice")
    for i in range(40):
        name = f"friend{i:02d}"
        await core.store.create_user(name, None, 0)
        await core.handle_frame(alice, frame(action="sendMessage", id=f"big-{i:06d}", to=name, body="z" * 4000))
    gw.take("a1")
    await core.handle_frame(alice, frame(action="getConversations"))
    [reply] = gw.take("a1")
    assert 0 < len(reply["items"]) < 40 and "next" in reply


async def test_set_status_announces_only_changes(chat):
    core, gw = chat
    watcher = await connect(core, "c1", "carol")
    await core.handle_frame(watcher, frame(action="getClients"))
    alice = await connect(core, "a1", "alice")
    gw.take("c1")
    await core.handle_frame(alice, frame(action="setStatus", status="busy", text="focus"))
    await core.handle_frame(alice, frame(action="setStatus", status="busy", text="focus"))
    assert [(f["status"], f["text"]) for f in gw.take("c1", "presence")] == [("busy", "focus")]


class SlowNetworkGateway(RecordingGateway):
    """Each send is a network request that waits until the test lets it finish."""

    concurrent_sends = 8

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()

    async def send(self, conn_id: str, text: str) -> bool:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.most_in_flight == self.concurrent_sends:
            self.release.set()  # the bound is reached: let them all go
        await self.release.wait()
        self.in_flight -= 1
        return await super().send(conn_id, text)


async def test_a_fan_out_over_a_network_gateway_posts_concurrently_within_its_bound(tmp_path):
    store = SQLiteStore(tmp_path / "fan.db")
    await store.open()
    gateway = SlowNetworkGateway()
    core = ChatCore(store, gateway, clock=Clock())
    try:
        gateway.gone = {f"c{i}" for i in range(0, 20, 5)}
        await core.fan_out([f"c{i}" for i in range(20)], '{"type":"typing","from":"x"}')
        assert gateway.most_in_flight == 8, "never more than the bound, and not one at a time"
        assert sorted(gateway.frames) == sorted(f"c{i}" for i in range(20) if i % 5), "everyone else got it"
    finally:
        await store.close()


async def test_one_account_can_be_in_only_so_many_rooms(chat, monkeypatch):
    core, gateway = chat
    monkeypatch.setattr(p, "MAX_ROOMS_PER_USER", 2)
    alice, bob = await connect(core, "a1", "alice"), await connect(core, "b1", "bob")
    for room in ("#one", "#two"):
        await core.handle_frame(alice, json.dumps({"action": "createRoom", "room": room, "rid": room}))
    await core.handle_frame(alice, json.dumps({"action": "createRoom", "room": "#three", "rid": "r3"}))
    [refused] = [f for f in gateway.take("a1") if f.get("rid") == "r3"]
    assert (refused["type"], refused["code"]) == ("error", "too_large") and "you are in 2 rooms" in refused["message"]
    await core.handle_frame(bob, json.dumps({"action": "createRoom", "room": "#bobs", "rid": "b"}))
    await core.handle_frame(bob, json.dumps({"action": "invite", "room": "#bobs", "user": "alice", "rid": "inv"}))
    [refused] = [f for f in gateway.take("b1") if f.get("rid") == "inv"]
    assert refused["code"] == "too_large" and "'alice' is in 2 rooms" in refused["message"]
    assert (await core.store.get_room("#bobs")).members == ("bob",), "nothing changed"
