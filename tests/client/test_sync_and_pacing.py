"""Pacing, sync and local atomicity (added in f0a367f), as a person using the client notices them.

- The pacer (fake clock): a burst goes at once, then a steady rate the server never refuses;
  ``hold`` stops everything; ``reset`` (a new connection) refills.
- A long offline queue flushes in order without one ``rate_limited`` refusal.
- A message whose ack was lost is settled from the server's history: shown once as sent,
  stored once, never sent again.
- A read marker and a status set while offline reach the peer once the link returns.
- A long conversation synced for the first time starts at its newest page; ``load_older``
  pages back to the first message, with no gap and no duplicate.
- ``localdb.transaction`` leaves nothing half-written when the work inside it fails.

Network tests run the real server (``chat_server``) and, where a link must fail, put the
:class:`FaultProxy` between the client and it. Every wait is event-driven and bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.client.conftest import make_client, wait_until
from tui_chat_dev.faultproxy import FaultProxy
from tui_chat_dev.wsclient import WsClient, signup
from tui_chat import protocol as p
from tui_chat.client.cache import Cache
from tui_chat.client.localdb import open_db, transaction
from tui_chat.client.outbox import Outbox
from tui_chat.client.pacing import PACED_BURST, PACED_RATE, Pacer
from tui_chat.client.service import ChatClient
from tui_chat.client.state import ConversationChanged
from tui_chat.protocol import RATE_LIMIT_BURST, RATE_LIMIT_PER_SECOND, Message
from tui_chat.ratelimit import TokenBucket

# -- helpers ------------------------------------------------------------------------------


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def paced_times(pacer: Pacer, clock: FakeClock, count: int) -> list[float]:
    """The moments ``count`` actions go out when each waits as ``Connection.send`` does."""
    times = []
    for _ in range(count):
        for _attempt in range(1000):
            wait = pacer.delay()
            if wait <= 0:
                break
            clock.advance(wait)
        else:
            raise AssertionError("the pacer never let an action go")
        times.append(clock.now)
    return times


def server_refusals(times: list[float], created: float) -> int:
    """How many of these actions the server's bucket (made at ``created``) would refuse."""
    clock = FakeClock(created)
    bucket = TokenBucket(RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST, clock)
    refused = 0
    for t in times:
        clock.now = t
        refused += bucket.take() != 0
    return refused


class Wire:
    """Records what a started client really puts on the wire and hears back."""

    def __init__(self, client: ChatClient) -> None:
        self.sent: list[dict] = []
        self.heard: list[p.Event] = []
        connection = client.connection
        assert connection is not None, "start the client first"
        send, on_event = connection.send, connection.on_event

        async def recording_send(action: p.Action, **kwargs) -> bool:
            ok = await send(action, **kwargs)
            if ok:
                self.sent.append(p.action_to_wire(action))
            return ok

        async def recording_on_event(event: p.Event) -> None:
            self.heard.append(event)
            await on_event(event)

        connection.send = recording_send
        connection.on_event = recording_on_event

    def sent_ids(self) -> list[str]:
        """The message ids sent, in order, whether alone (sendMessage) or in batches (sendMessages)."""
        ids = []
        for frame in self.sent:
            if frame.get("action") == "sendMessage":
                ids.append(frame["id"])
            elif frame.get("action") == "sendMessages":
                ids.extend(m["id"] for m in frame["messages"])
        return ids

    def actions(self, action: str, **match) -> list[dict]:
        return [f for f in self.sent if f.get("action") == action and all(f.get(k) == v for k, v in match.items())]

    def rate_limited(self) -> list[p.Event]:
        return [e for e in self.heard if isinstance(e, p.Error) and e.code == p.RATE_LIMITED]


async def wait_event(client: ChatClient, matches: Callable[[object], bool], timeout: float = 20.0) -> None:
    """Consume the client's events until one ``matches`` (bounded)."""
    async with asyncio.timeout(timeout):
        async for event in client.events():
            if matches(event):
                return


async def server_history(server, token: str, user: str, peer: str) -> list[dict]:
    """The conversation as the server stores it, read forward page by page."""
    checker = await WsClient.open(server.ws_url, token, user, device=f"checker-{user}"[:64])
    try:
        history: list[dict] = []
        after = 0
        while True:
            page = await checker.request({"action": "getMessages", "with": peer, "after": after, "limit": p.MAX_PAGE_LIMIT})
            history += page["items"]
            if not page["hasMore"] or not page["items"]:
                return history
            after = page["items"][-1]["seq"]
    finally:
        await checker.close()


async def go_offline(proxy: FaultProxy, client: ChatClient) -> None:
    proxy.refuse = True
    proxy.cut()
    await wait_until(client, lambda: not client.online, timeout=10)


def come_back(proxy: FaultProxy, client: ChatClient) -> None:
    proxy.refuse = False
    client.reconnect_now()


# -- 1. the pacer (fake clock) ------------------------------------------------------------


def test_pacer_lets_a_burst_go_at_once_then_spaces_actions_at_the_paced_rate():
    clock = FakeClock()
    created = clock.now  # the server's bucket exists before the client sees the handshake
    pacer = Pacer(clock=clock)
    seconds_after_burst = 3
    times = paced_times(pacer, clock, PACED_BURST + seconds_after_burst * round(PACED_RATE))

    start = times[0]
    assert times[:PACED_BURST] == [start] * PACED_BURST, "the whole burst goes without waiting"
    assert times[PACED_BURST] > start, "the action after the burst waits"
    after_burst = times[PACED_BURST:]
    gaps = [b - a for a, b in zip(after_burst, after_burst[1:])]
    assert min(gaps) > 0, "one action at a time after the burst"
    assert sum(gaps) / len(gaps) == pytest.approx(1 / PACED_RATE, rel=0.02)
    assert max(gaps) < 2 / PACED_RATE, "no long stall"
    for second in range(seconds_after_burst):
        window = [t for t in times if start + second < t <= start + second + 1]
        assert abs(len(window) - PACED_RATE) <= 1.5, f"second {second + 1}: {len(window)} actions"
    assert PACED_RATE < RATE_LIMIT_PER_SECOND and PACED_BURST < RATE_LIMIT_BURST

    assert server_refusals(times, created) == 0, "the server's bucket never refuses a paced action"
    unpaced = [start] * (PACED_BURST + 50)
    assert server_refusals(unpaced, created) > 0, "(while the same count sent at once would be refused)"


def test_pacer_hold_blocks_everything_until_it_ends():
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    assert pacer.delay() == 0
    pacer.hold(2.5)  # the server answered rate_limited with retryAfterMs 2500
    for _ in range(5):
        assert pacer.delay() == pytest.approx(2.5), "nothing goes, though tokens are left"
    clock.advance(1.0)
    assert pacer.delay() == pytest.approx(1.5)
    pacer.hold(0.5)
    assert pacer.delay() == pytest.approx(1.5), "a shorter hold does not cut a longer one short"
    clock.advance(1.4999)
    assert pacer.delay() > 0
    clock.advance(0.0001)
    assert pacer.delay() == 0, "at the end of the hold the next action goes"
    times = paced_times(pacer, clock, PACED_BURST - 1)
    assert times == [clock.now] * (PACED_BURST - 1), "waiting spent no tokens: the burst is still there"


def test_pacer_reset_refills_the_burst_and_ends_a_hold():
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    paced_times(pacer, clock, PACED_BURST)
    assert pacer.delay() > 0, "the burst is spent"
    pacer.hold(30)
    pacer.reset()  # a new connection: the server's bucket is full again
    now = clock.now
    assert paced_times(pacer, clock, PACED_BURST) == [now] * PACED_BURST
    assert pacer.delay() == pytest.approx(1 / PACED_RATE, abs=0.002), "then the rate applies again"


# -- 2. a long offline queue flushes without rate_limited ---------------------------------


async def test_700_messages_queued_offline_flush_in_order_without_one_rate_limited(chat_server, tmp_path):
    proxy = await FaultProxy(chat_server.port).start()
    alice = await make_client(f"http://127.0.0.1:{proxy.port}", tmp_path, "floodalice")
    await make_client(chat_server.http_url, tmp_path, "floodbob")  # the account to write to
    try:
        proxy.refuse = True  # the server looks down
        alice.start()
        wire = Wire(alice)
        await wait_until(alice, lambda: alice.link.kind == "reconnecting", timeout=10)
        sent = [alice.send("floodbob", f"offline {i}") for i in range(700)]
        assert alice.queued == 700
        assert {row.state for row in alice.timeline("floodbob")} == {"pending"}

        come_back(proxy, alice)
        await wait_until(alice, lambda: alice.queued == 0, timeout=25)

        assert wire.rate_limited() == [], "the server never had to refuse an action"
        assert wire.sent_ids() == sent, "each message sent once, in order"
        assert len(wire.actions("sendMessages")) == 700 // 50, "in full batches of 50, one frame in flight at a time"
        rows = alice.timeline("floodbob")
        assert [(r.id, r.state) for r in rows] == [(i, "sent") for i in sent]
        history = await server_history(chat_server, alice.tokens.access, "floodalice", "floodbob")
        assert [m["id"] for m in history] == sent, "stored once each, in the order written"
        assert [m["seq"] for m in history] == list(range(1, 701))
    finally:
        await alice.close()
        await proxy.stop()


# -- 3. a lost ack is settled from the server's history ----------------------------------


async def test_a_message_whose_ack_was_lost_is_settled_from_history_not_sent_again(chat_server, tmp_path):
    proxy = await FaultProxy(chat_server.port).start()
    alice = await make_client(f"http://127.0.0.1:{proxy.port}", tmp_path, "lostalice")
    bob = await make_client(chat_server.http_url, tmp_path, "lostbob")
    try:
        alice.start(), bob.start()
        wire = Wire(alice)
        warm_up = alice.send("lostbob", "hello")  # acked: alice is caught up and her outbox flows
        await wait_until(alice, lambda: alice.queued == 0)
        await wait_until(bob, lambda: [r.id for r in bob.timeline("lostalice")] == [warm_up])

        proxy.blackhole_down = True  # the server hears alice; alice hears nothing back
        lost = alice.send("lostbob", "stored, ack lost")
        await wait_until(bob, lambda: [r.id for r in bob.timeline("lostalice")] == [warm_up, lost])  # stored
        assert alice.queued == 1 and alice.timeline("lostbob")[-1].state == "pending", "alice never saw the ack"
        assert len(wire.actions("sendMessage", id=lost)) == 1

        proxy.cut()  # the held ack dies with the connection
        proxy.heal()
        await wait_until(alice, lambda: alice.online and alice.queued == 0, timeout=15)

        rows = alice.timeline("lostbob")
        assert [(r.id, r.state) for r in rows] == [(warm_up, "sent"), (lost, "sent")], "shown once, as sent"
        assert rows[-1].seq == 2
        assert len(wire.actions("sendMessage", id=lost)) == 1, "settled from history: not sent a second time"
        history = await server_history(chat_server, alice.tokens.access, "lostalice", "lostbob")
        assert [m["id"] for m in history] == [warm_up, lost], "stored exactly once"
        assert [r.id for r in bob.timeline("lostalice")] == [warm_up, lost]
    finally:
        await alice.close(), await bob.close()
        await proxy.stop()


# -- 4. read marker and status set offline ------------------------------------------------


async def test_read_marker_and_status_set_offline_reach_the_peer_when_the_link_returns(chat_server, tmp_path):
    proxy = await FaultProxy(chat_server.port).start()
    alice = await make_client(f"http://127.0.0.1:{proxy.port}", tmp_path, "rmalice")
    bob = await make_client(chat_server.http_url, tmp_path, "rmbob")
    try:
        alice.start(), bob.start()
        wire = Wire(alice)
        await wait_until(alice, lambda: alice.online)
        await wait_until(bob, lambda: bob.online and "rmalice" in bob.users)
        bob_sent = [bob.send("rmalice", f"unread {i}") for i in range(3)]
        await wait_until(alice, lambda: alice.conversation("rmbob").unread == 3)

        await go_offline(proxy, alice)
        await alice.mark_read("rmbob")
        await alice.set_status("away", "at lunch")
        assert alice.conversation("rmbob").unread == 0, "read here at once"
        assert (alice.users["rmalice"].status, alice.users["rmalice"].text) == ("away", "at lunch")
        late = bob.send("rmalice", "while you were away")  # arrives after the marker was set
        await wait_until(bob, lambda: bob.queued == 0)
        assert bob.conversation("rmalice").peer_read_seq == 0, "the server has not heard of the read yet"
        assert wire.actions("markRead") == [] and wire.actions("setStatus") == []

        come_back(proxy, alice)

        def bob_sees_both() -> bool:
            alice_there = bob.users.get("rmalice")
            return (
                bob.conversation("rmalice").peer_read_seq == 3
                and alice_there is not None
                and (alice_there.status, alice_there.text) == ("away", "at lunch")
            )

        await wait_until(bob, bob_sees_both, timeout=15)
        assert [(r.id, r.state) for r in bob.timeline("rmalice")] == [(i, "read") for i in bob_sent] + [(late, "sent")]
        await wait_until(alice, lambda: alice.timeline_length("rmbob") == 4, timeout=10)
        conversation = alice.conversation("rmbob")
        assert (conversation.read_seq, conversation.unread) == (3, 1), "the later message is still unread"
        assert [f["seq"] for f in wire.actions("markRead", **{"with": "rmbob"})] == [3], "sent once"
        assert [(f["status"], f["text"]) for f in wire.actions("setStatus")] == [("away", "at lunch")], "sent once"
    finally:
        await alice.close(), await bob.close()
        await proxy.stop()


async def test_a_device_offline_while_its_messages_were_read_shows_them_read_after_reconnecting(chat_server, tmp_path):
    alice = await make_client(chat_server.http_url, tmp_path, "pralice")
    bob = await make_client(chat_server.http_url, tmp_path, "prbob")
    try:
        alice.start(), bob.start()
        await wait_until(alice, lambda: alice.online)
        sent = [alice.send("prbob", f"read me {i}") for i in range(2)]
        await wait_until(alice, lambda: [r.state for r in alice.timeline("prbob")] == ["sent", "sent"])
        await alice.stop()
        await wait_until(bob, lambda: bob.timeline_length("pralice") == 2 and bob.users["pralice"].status == "offline")
        await bob.mark_read("pralice")  # the server has closed alice's socket: the read event reaches no device of hers
        await wait_until(bob, lambda: bob.conversation("pralice").unread == 0)
        alice.start()
        await wait_until(alice, lambda: [r.state for r in alice.timeline("prbob")] == ["read", "read"], timeout=15)
        assert [r.id for r in alice.timeline("prbob")] == sent
    finally:
        await alice.close(), await bob.close()


# -- 5. first sync of a long history ------------------------------------------------------


async def test_first_sync_shows_the_newest_page_and_load_older_pages_back_to_the_start(chat_server, tmp_path):
    total = 450  # more than two full pages of p.MAX_PAGE_LIMIT
    alice = await make_client(chat_server.http_url, tmp_path, "histalice")  # the account exists
    bob_token = await signup(chat_server.http_url, "histbob")
    bob = await WsClient.open(chat_server.ws_url, bob_token, "histbob", device="histbob-direct")
    try:
        written = [f"hist-{i:06d}" for i in range(1, total + 1)]
        for i, msg_id in enumerate(written, 1):
            await bob.send({"action": "sendMessage", "id": msg_id, "to": "histalice", "body": f"history {i}"})
        for msg_id in written:
            await bob.expect("ack", id=msg_id)

        alice.start()
        wire = Wire(alice)
        await wait_event(alice, lambda e: isinstance(e, ConversationChanged) and e.conversation.peer == "histbob")
        first_page = [r.seq for r in alice.timeline("histbob")]
        assert first_page == list(range(total - p.MAX_PAGE_LIMIT + 1, total + 1)), "the newest page, not the oldest"
        [first_ask] = wire.actions("getMessages")
        assert "after" not in first_ask and "before" not in first_ask
        assert alice.conversation("histbob").last_seq == total
        assert alice.has_older("histbob")

        added = []
        while alice.has_older("histbob"):
            assert len(added) < 10, "load_older must reach the first message"
            added.append(await alice.load_older("histbob"))
        assert added == [100, 100, 50]
        befores = [f["before"] for f in wire.actions("getMessages") if "before" in f]
        assert befores == [251, 151, 51], "each page is the one before the oldest held"
        asked = len(wire.sent)
        assert await alice.load_older("histbob") == 0
        assert len(wire.sent) == asked, "complete: nothing more is asked of the server"

        rows = alice.timeline("histbob")
        assert [r.seq for r in rows] == list(range(1, total + 1)), "in seq order, no gap, no duplicate"
        assert [r.id for r in rows] == written
        assert [r.body for r in rows[:2]] == ["history 1", "history 2"]
    finally:
        await alice.close()
        await bob.close()

    reopened = await make_client(chat_server.http_url, tmp_path, "histalice", create=False)
    assert not reopened.has_older("histbob"), "the complete flag is kept across restarts"
    assert reopened.timeline_length("histbob") == total
    await reopened.close()


# -- 6. local transactions ----------------------------------------------------------------


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt, asyncio.CancelledError])
def test_transaction_rolls_back_everything_when_the_work_fails(tmp_path, failure):
    path = tmp_path / "client.db"
    db = open_db(path)
    outbox = Outbox(db)
    outbox.add("kept-000001", "bob", "written before", 1)
    with pytest.raises(failure):
        with transaction(db):
            outbox.add("torn-000001", "bob", "first half", 2)
            db.execute("UPDATE outbox SET body = 'changed' WHERE id = 'kept-000001'")
            raise failure()
    assert not db.in_transaction, "the connection is not left inside the failed transaction"
    assert [(e.id, e.body) for e in outbox.all()] == [("kept-000001", "written before")]
    other = open_db(path)  # another process opening the file sees the same
    assert [e.id for e in Outbox(other).all()] == ["kept-000001"]

    with transaction(db):  # and the next transaction commits
        outbox.add("next-000001", "bob", "after the failure", 3)
    assert [e.id for e in Outbox(other).all()] == ["kept-000001", "next-000001"]
    other.close(), db.close()


def test_a_cache_page_that_fails_halfway_stores_none_of_it(tmp_path):
    db = open_db(tmp_path / "client.db")
    cache = Cache(db, "alice")
    page = [
        {"id": "good-000001", "from": "bob", "to": "alice", "body": "fine", "seq": 1, "ts": 1},
        {"id": "good-000002", "from": "bob", "to": "alice", "body": "fine too", "seq": 2, "ts": 2},
        {"id": "bad-0000003", "from": "bob", "to": "alice", "body": None, "seq": 3, "ts": 3},
    ]
    with pytest.raises(ValueError):
        cache.add(Message.from_wire(item) for item in page)  # parsed while stored: fails at the third
    assert cache.history("bob") == [] and cache.conversation("bob") is None, "no half-stored page"
    assert not db.in_transaction
    assert [m.seq for m in cache.add(Message.from_wire(item) for item in page[:2])] == [1, 2], "the cache works on"
    db.close()


def test_with_db_alone_would_not_have_rolled_back(tmp_path):
    """Why ``transaction`` exists: the connection is in autocommit mode, where ``with db`` keeps
    every statement that ran before the failure."""
    db = open_db(tmp_path / "client.db")
    with pytest.raises(RuntimeError):
        with db:
            Outbox(db).add("torn-000001", "bob", "kept by autocommit", 1)
            raise RuntimeError
    assert [e.id for e in Outbox(db).all()] == ["torn-000001"]
    db.close()


# -- closing -------------------------------------------------------------------------------


async def test_closing_a_started_client_twice_is_harmless(tmp_path, chat_server):
    client = await make_client(chat_server.http_url, tmp_path, "twiceclosed")
    client.start()
    await wait_until(client, lambda: client.online)
    await client.close()
    await client.close()
    await client.stop()
    assert client.queued == 0 and client.timeline("anyone") == []


async def test_a_send_without_an_answer_is_sent_again_and_stored_once(chat_server, tmp_path, monkeypatch):
    """API Gateway may drop a frame (or answer with its own error frame): the one send in flight
    is sent again after SEND_REPLY_TIMEOUT_S, and at once on a gateway error."""
    from tui_chat.client import sender

    monkeypatch.setattr(sender, "SEND_REPLY_TIMEOUT_S", 0.3)
    alice = await make_client(chat_server.http_url, tmp_path, "dropalice")
    await make_client(chat_server.http_url, tmp_path, "dropbob")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        connection = alice.connection
        real_send, dropped = connection.send, []

        async def lossy_send(action, **kwargs):
            if isinstance(action, (p.SendMessage, p.SendMessages)) and len(dropped) < 2:
                dropped.append(action)
                if len(dropped) == 2:  # the second loss is answered by the gateway's own error frame...
                    sender.SEND_REPLY_TIMEOUT_S = 60  # ...and only that can bring the resend within the test's wait
                    asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(connection.on_event(p.GatewayError())))
                return True  # "sent", but the server never sees it
            return await real_send(action, **kwargs)

        connection.send = lossy_send
        sent = alice.send("dropbob", "said once")
        await wait_until(alice, lambda: alice.queued == 0, timeout=10)
        assert len(dropped) == 2, "lost twice, then sent for real"
        history = await server_history(chat_server, alice.tokens.access, "dropalice", "dropbob")
        assert [m["id"] for m in history] == [sent]
    finally:
        await alice.close()
