"""One contract for every Store: the same tests run over each implementation in FACTORIES.

Nothing here may depend on one backend: what only SQLite promises is in test_sqlite_store.py.
Every time is passed in explicitly (the core owns the clock), so the tests are deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading

import pytest

from tui_chat.server.store import ConnectionRecord, Departure, NotAMember, RoomFull, RoomRecord, RotationOutcome, SessionRecord
from tui_chat.server.stores.sqlite import SQLiteStore


@contextlib.asynccontextmanager
async def sqlite_store(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "contract.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def dynamodb_store(tmp_path, monkeypatch):
    moto = pytest.importorskip("moto", reason="the DynamoDB store is tested with moto (the test extra installs it)")
    from tui_chat.server.stores.dynamodb import DynamoDBStore

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")  # no test can reach a real account
    with moto.mock_aws():
        # The contract's times are small numbers: a clock at 0 keeps retention out of its way.
        store = DynamoDBStore(prefix="contract-", region="us-east-1", create_tables=True, clock=lambda: 0)
        # DynamoDB applies each request atomically; moto does not when requests come from several
        # threads (it checks, writes, and on a failed transaction restores a copy of the table,
        # with no lock), so concurrent tests would see moto's races. One lock per request gives
        # moto DynamoDB's guarantee; requests still interleave as they do in the cloud.
        lock = threading.Lock()
        call_sync = store._call_sync

        def atomic(op, kwargs):
            with lock:
                return call_sync(op, kwargs)

        monkeypatch.setattr(store, "_call_sync", atomic)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


FACTORIES = [sqlite_store, dynamodb_store]
"""Each yields an opened, empty store and closes it afterwards."""


@pytest.fixture(params=FACTORIES, ids=lambda factory: factory.__name__.removesuffix("_store"))
async def store(request, tmp_path, monkeypatch):
    async with request.param(tmp_path, monkeypatch) as opened:
        for name in ("alice", "bob", "carol"):
            assert await opened.create_user(name, None, 1)
        yield opened


async def history(store, user, other):
    """The whole conversation, ascending, paged the way a client catches up."""
    items, after = [], 0
    while True:
        page, more = await store.get_messages(user, other, before=None, after=after, limit=50)
        items += page
        if not more:
            return items
        after = page[-1].seq


def conn(conn_id: str, user: str, device: str, at: int = 1) -> ConnectionRecord:
    return ConnectionRecord(conn_id, user, device, at)


# -- users ---------------------------------------------------------------------------------------


async def test_a_taken_name_cannot_be_created_again(store):
    assert not await store.create_user("alice", "someone-elses-hash", 2)
    assert (await store.get_user("alice")).password_hash is None, "the first owner keeps the account"
    assert await store.create_user("dave", "hash", 3)
    dave = await store.get_user("dave")
    assert (dave.username, dave.password_hash, dave.status, dave.text, dave.last_seen, dave.created_at) == (
        "dave", "hash", "online", "", None, 3,
    )  # fmt: skip
    assert await store.get_user("nobody") is None


async def test_ensure_user_creates_once(store):
    await store.ensure_user("dave", 3)
    await store.ensure_user("dave", 4)
    await store.ensure_user("alice", 5)
    assert (await store.get_user("dave")).created_at == 3
    assert (await store.get_user("alice")).created_at == 1, "an existing user is left alone"
    assert await store.user_exists("dave") and not await store.user_exists("zed")


async def test_list_users_by_name_after_a_cursor(store):
    for name in ("zoe", "dave", "bobby"):
        await store.create_user(name, None, 2)
    assert [u.username for u in await store.list_users(None, 3)] == ["alice", "bob", "bobby"]
    assert [u.username for u in await store.list_users("bobby", 10)] == ["carol", "dave", "zoe"]
    assert [u.username for u in await store.list_users("c", 2)] == ["carol", "dave"], "a cursor need not be a user"
    assert await store.list_users("zoe", 10) == []


async def test_status_and_text_are_kept(store):
    await store.set_status("alice", "away", "lunch")
    await store.set_status("bob", "busy", "")
    alice, bob = await store.get_user("alice"), await store.get_user("bob")
    assert (alice.status, alice.text, bob.status, bob.text) == ("away", "lunch", "busy", "")
    await store.set_status("alice", "online", "")
    assert ((await store.get_user("alice")).status, (await store.get_user("alice")).text) == ("online", "")


# -- messages: idempotency and seq ---------------------------------------------------------------


async def test_a_retry_returns_the_original_and_stores_nothing(store):
    first = await store.save_message("alice", "msg-00000001", "bob", "hello", 100)
    again = await store.save_message("alice", "msg-00000001", "carol", "changed", 200)
    assert first.created and not again.created
    assert again.message == first.message, "the retry gets the original: same seq, ts, body, recipient"
    assert await history(store, "alice", "bob") == [first.message]
    assert await history(store, "alice", "carol") == [], "the retry's other recipient got nothing"
    assert [c.with_ for c in (await store.list_conversations("carol", None, 10))[0]] == []


async def test_ids_are_per_sender(store):
    mine = await store.save_message("alice", "msg-00000001", "bob", "from alice", 100)
    theirs = await store.save_message("bob", "msg-00000001", "alice", "from bob", 101)
    assert mine.created and theirs.created, "another sender may pick the same id"
    assert [m.body for m in await history(store, "bob", "alice")] == ["from alice", "from bob"]


async def test_concurrent_retries_store_one_message(store):
    results = await asyncio.gather(
        *(store.save_message("alice", "dup-00000001", "bob", f"attempt {i}", 10 + i) for i in range(8))
    )
    assert [r.created for r in results].count(True) == 1
    assert len({r.message for r in results}) == 1, "every attempt is answered with the one stored message"
    assert await history(store, "alice", "bob") == [results[0].message]


async def test_seq_increases_per_conversation_and_starts_at_1_in_each(store):
    sends = [("alice", "bob"), ("bob", "alice"), ("alice", "carol"), ("alice", "bob"), ("carol", "alice"),
             ("bob", "carol"), ("bob", "alice")]  # fmt: skip
    saved = [await store.save_message(s, f"s-{i:08d}", t, f"m{i}", 10 + i) for i, (s, t) in enumerate(sends)]
    assert [r.message.seq for r in saved] == [1, 2, 1, 3, 2, 1, 4], "both directions share one counter"
    ab = await history(store, "bob", "alice")
    assert [m.body for m in ab] == ["m0", "m1", "m3", "m6"] and [m.seq for m in ab] == [1, 2, 3, 4]
    assert [m.ts for m in ab] == [10, 11, 13, 16]


async def test_concurrent_sends_in_one_conversation_get_distinct_ordered_seqs(store):
    results = await asyncio.gather(
        *(store.save_message("alice" if i % 2 else "bob", f"c-{i:08d}", "bob" if i % 2 else "alice", f"m{i}", i)
          for i in range(40))
    )  # fmt: skip
    assert sorted(r.message.seq for r in results) == list(range(1, 41)), "no seq lost or given twice"
    stored = await history(store, "alice", "bob")
    assert stored == sorted((r.message for r in results), key=lambda m: m.seq), "history shows every send once"


async def test_bodies_are_stored_verbatim(store):
    odd = ["'; DROP TABLE messages; --", 'quote " and \\ backslash', "emoji 🎉 and ünïcödé", "line\nbreak\ttab",
           "%s %(x)s {0} ?", "x" * 4000]  # fmt: skip
    for i, body in enumerate(odd):
        await store.save_message("alice", f"odd-{i:07d}", "bob", body, i + 1)
    assert [m.body for m in await history(store, "bob", "alice")] == odd
    await store.set_status("alice", "away", "'); DELETE FROM users; --")
    assert (await store.get_user("alice")).text == "'); DELETE FROM users; --"
    assert [u.username for u in await store.list_users(None, 10)] == ["alice", "bob", "carol"]


# -- messages: paging ----------------------------------------------------------------------------


async def test_paging_backwards_from_the_newest(store):
    for i in range(1, 8):
        await store.save_message("alice", f"ab-{i:08d}", "bob", f"m{i}", i)
    newest, more = await store.get_messages("bob", "alice", before=None, after=None, limit=3)
    assert [m.seq for m in newest] == [5, 6, 7] and more, "neither: the newest, ascending; older ones exist"
    older, more = await store.get_messages("bob", "alice", before=5, after=None, limit=3)
    assert [m.seq for m in older] == [2, 3, 4] and more
    oldest, more = await store.get_messages("bob", "alice", before=2, after=None, limit=3)
    assert [m.seq for m in oldest] == [1] and not more
    exact, more = await store.get_messages("bob", "alice", before=4, after=None, limit=3)
    assert [m.seq for m in exact] == [1, 2, 3] and not more, "a page that ends exactly at the first message"
    assert await store.get_messages("bob", "alice", before=1, after=None, limit=3) == ([], False)
    everything, more = await store.get_messages("bob", "alice", before=None, after=None, limit=7)
    assert [m.seq for m in everything] == list(range(1, 8)) and not more


async def test_paging_forwards_for_catch_up(store):
    for i in range(1, 8):
        await store.save_message("bob", f"ba-{i:08d}", "alice", f"m{i}", i)
    first, more = await store.get_messages("alice", "bob", before=None, after=0, limit=3)
    assert [m.seq for m in first] == [1, 2, 3] and more, "after 0 starts from the first message"
    middle, more = await store.get_messages("alice", "bob", before=None, after=3, limit=3)
    assert [m.seq for m in middle] == [4, 5, 6] and more
    last, more = await store.get_messages("alice", "bob", before=None, after=6, limit=3)
    assert [m.seq for m in last] == [7] and not more
    exact, more = await store.get_messages("alice", "bob", before=None, after=4, limit=3)
    assert [m.seq for m in exact] == [5, 6, 7] and not more, "a page that ends exactly at the newest message"
    assert await store.get_messages("alice", "bob", before=None, after=7, limit=3) == ([], False)


async def test_an_empty_conversation_has_no_pages(store):
    assert await store.get_messages("alice", "carol", before=None, after=None, limit=50) == ([], False)
    assert await store.get_messages("alice", "carol", before=None, after=0, limit=50) == ([], False)
    assert await store.get_messages("alice", "carol", before=10, after=None, limit=50) == ([], False)


async def test_both_users_see_the_same_history(store):
    await store.save_message("alice", "x-00000001", "bob", "hi bob", 1)
    await store.save_message("bob", "x-00000002", "alice", "hi alice", 2)
    assert await history(store, "alice", "bob") == await history(store, "bob", "alice")
    assert await history(store, "alice", "carol") == [], "nobody else's messages leak in"


# -- notes to self -------------------------------------------------------------------------------


async def test_notes_to_self(store):
    one = await store.save_message("alice", "self-0000001", "alice", "remember", 5)
    two = await store.save_message("alice", "self-0000002", "alice", "the milk", 6)
    assert (one.message.seq, two.message.seq) == (1, 2)
    assert await history(store, "alice", "alice") == [one.message, two.message], "stored once, not once per side"
    [notes], _ = await store.list_conversations("alice", None, 10)
    assert (notes.with_, notes.last_seq, notes.read_seq, notes.unread, notes.last) == ("alice", 2, 2, 0, two.message)
    assert await store.mark_read("alice", "alice", 2) is None
    assert (await store.list_conversations("bob", None, 10))[0] == []


# -- unread and read markers ---------------------------------------------------------------------


async def test_unread_counts_from_both_sides(store):
    await store.save_message("bob", "b-00000001", "alice", "one", 10)
    await store.save_message("bob", "b-00000002", "alice", "two", 11)
    [alice_view], _ = await store.list_conversations("alice", None, 10)
    [bob_view], _ = await store.list_conversations("bob", None, 10)
    assert (alice_view.with_, alice_view.last_seq, alice_view.read_seq, alice_view.unread) == ("bob", 2, 0, 2)
    assert (bob_view.with_, bob_view.last_seq, bob_view.read_seq, bob_view.unread) == ("alice", 2, 2, 0)
    assert alice_view.last.body == bob_view.last.body == "two"
    reply = await store.save_message("alice", "a-00000001", "bob", "three", 12)
    [alice_view], _ = await store.list_conversations("alice", None, 10)
    [bob_view], _ = await store.list_conversations("bob", None, 10)
    assert (alice_view.read_seq, alice_view.unread) == (3, 0), "replying reads the conversation"
    assert (bob_view.read_seq, bob_view.unread, bob_view.last) == (2, 1, reply.message)


async def test_mark_read_moves_forward_only_and_is_clamped(store):
    for i in range(1, 5):
        await store.save_message("bob", f"b-{i:08d}", "alice", f"m{i}", i)
    assert await store.mark_read("alice", "bob", 2) == 2
    [view], _ = await store.list_conversations("alice", None, 10)
    assert (view.read_seq, view.unread) == (2, 2)
    assert await store.mark_read("alice", "bob", 2) is None, "no move, no read event"
    assert await store.mark_read("alice", "bob", 1) is None, "never backwards"
    assert await store.mark_read("alice", "bob", 0) is None
    assert await store.mark_read("alice", "bob", 99) == 4, "clamped to the last seq"
    assert await store.mark_read("alice", "bob", 100) is None
    [view], _ = await store.list_conversations("alice", None, 10)
    assert (view.read_seq, view.unread) == (4, 0)
    [other_side], _ = await store.list_conversations("bob", None, 10)
    assert other_side.read_seq == 4, "bob's marker is his own (he wrote them all)"


async def test_each_side_sees_how_far_the_other_has_read(store):
    for i in range(1, 4):
        await store.save_message("bob", f"b-{i:08d}", "alice", f"m{i}", i)
    [bob_view], _ = await store.list_conversations("bob", None, 10)
    assert bob_view.peer_read_seq == 0, "alice has read nothing yet"
    await store.mark_read("alice", "bob", 2)
    [bob_view], _ = await store.list_conversations("bob", None, 10)
    [alice_view], _ = await store.list_conversations("alice", None, 10)
    assert (bob_view.read_seq, bob_view.peer_read_seq) == (3, 2)
    assert (alice_view.read_seq, alice_view.peer_read_seq) == (2, 3), "bob's own sends moved his mark"
    await store.save_message("carol", "c-00000001", "carol", "note to self", 5)
    notes = [c for c in (await store.list_conversations("carol", None, 10))[0] if c.with_ == "carol"]
    assert notes[0].peer_read_seq == notes[0].read_seq == 1


async def test_mark_read_only_counts_the_other_users_messages(store):
    await store.save_message("bob", "b-00000001", "alice", "q1", 1)
    await store.save_message("alice", "a-00000001", "bob", "a1", 2)
    await store.save_message("bob", "b-00000002", "alice", "q2", 3)
    await store.save_message("bob", "b-00000003", "alice", "q3", 4)
    [view], _ = await store.list_conversations("alice", None, 10)
    assert (view.read_seq, view.unread) == (2, 2)
    assert await store.mark_read("alice", "bob", 3) == 3
    [view], _ = await store.list_conversations("alice", None, 10)
    assert (view.read_seq, view.unread) == (3, 1)


async def test_mark_read_without_messages_does_nothing(store):
    assert await store.mark_read("alice", "carol", 5) is None
    assert (await store.list_conversations("alice", None, 10))[0] == []


async def test_unread_is_per_conversation(store):
    await store.save_message("bob", "b-00000001", "alice", "from bob", 1)
    for i in range(3):
        await store.save_message("carol", f"c-{i:08d}", "alice", "from carol", 2 + i)
    await store.mark_read("alice", "bob", 1)
    items, _ = await store.list_conversations("alice", None, 10)
    assert [(c.with_, c.unread) for c in items] == [("carol", 3), ("bob", 0)]


# -- list_conversations --------------------------------------------------------------------------


async def test_conversations_newest_first(store):
    await store.save_message("bob", "b-00000001", "alice", "old", 10)
    await store.save_message("carol", "c-00000001", "alice", "newer", 20)
    items, cursor = await store.list_conversations("alice", None, 10)
    assert [c.with_ for c in items] == ["carol", "bob"] and cursor is None
    await store.save_message("alice", "a-00000001", "bob", "newest", 30)
    items, _ = await store.list_conversations("alice", None, 10)
    assert [(c.with_, c.last.body) for c in items] == [("bob", "newest"), ("carol", "newer")]


async def test_conversation_cursor_pages_everything_once(store):
    names = [f"friend{i:02d}" for i in range(23)]
    for i, name in enumerate(names):
        await store.create_user(name, None, 1)
        await store.save_message(name, f"f-{i:08d}", "alice", f"hi {i}", 100 + i)
    seen, cursor, pages = [], None, 0
    while True:
        items, cursor = await store.list_conversations("alice", cursor, 5)
        assert len(items) <= 5
        seen += [(c.with_, c.unread, c.last.body) for c in items]
        pages += 1
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert seen == [(name, 1, f"hi {i}") for i, name in reversed(list(enumerate(names)))]
    assert pages == 5


async def test_a_new_message_while_paging_does_not_repeat_or_skip_others(store):
    names = [f"friend{i:02d}" for i in range(9)]
    for i, name in enumerate(names):
        await store.create_user(name, None, 1)
        await store.save_message(name, f"f-{i:08d}", "alice", "hi", 100 + i)
    first, cursor = await store.list_conversations("alice", None, 3)
    await store.save_message("friend08", "late-0000001", "alice", "again", 500)  # already seen: moves to the top
    rest = []
    while cursor is not None:
        items, cursor = await store.list_conversations("alice", cursor, 3)
        rest += [c.with_ for c in items]
    assert [c.with_ for c in first] + rest == names[::-1]


async def test_a_bad_cursor_is_a_value_error(store):
    with pytest.raises(ValueError):
        await store.list_conversations("alice", "not a cursor", 3)


# -- connections ---------------------------------------------------------------------------------


async def test_first_connection_and_a_second_device(store):
    first = await store.add_connection(conn("c1", "alice", "laptop-01"))
    assert first.first_for_user and first.replaced is None
    second = await store.add_connection(conn("c2", "alice", "phone-001"))
    assert not second.first_for_user and second.replaced is None
    assert sorted(c.conn_id for c in await store.user_connections("alice")) == ["c1", "c2"]
    assert await store.get_connection("c2") == conn("c2", "alice", "phone-001")
    assert await store.get_connection("nope") is None
    assert (await store.add_connection(conn("b1", "bob", "laptop-01"))).first_for_user, "per user"


async def test_reconnecting_the_only_device_replaces_it(store):
    await store.add_connection(conn("c1", "alice", "laptop-01", 1))
    again = await store.add_connection(conn("c2", "alice", "laptop-01", 2))
    assert again.replaced == conn("c1", "alice", "laptop-01", 1)
    assert not again.first_for_user, "a replacement is not coming online"
    assert [c.conn_id for c in await store.user_connections("alice")] == ["c2"], "the new one receives messages"
    assert await store.get_connection("c1") is None
    stale = await store.remove_connection("c1", 3)
    assert (stale.connection, stale.last_for_user) == (None, False), "the old socket closing is not going offline"
    assert (await store.get_user("alice")).last_seen is None
    gone = await store.remove_connection("c2", 4)
    assert gone.last_for_user and (await store.get_user("alice")).last_seen == 4


async def test_last_connection_sets_last_seen(store):
    await store.add_connection(conn("c1", "alice", "laptop-01"))
    await store.add_connection(conn("c2", "alice", "phone-001"))
    one = await store.remove_connection("c1", 6)
    assert one.connection.conn_id == "c1" and not one.last_for_user
    assert (await store.get_user("alice")).last_seen is None, "still online on the phone"
    last = await store.remove_connection("c2", 7)
    assert last.connection == conn("c2", "alice", "phone-001") and last.last_for_user
    assert (await store.get_user("alice")).last_seen == 7
    assert await store.user_connections("alice") == []
    assert await store.remove_connection("c2", 8) == type(last)(None, False), "removing twice is harmless"
    assert (await store.get_user("alice")).last_seen == 7
    back = await store.add_connection(conn("c3", "alice", "laptop-01"))
    assert back.first_for_user, "coming back online"


async def test_remove_unknown_connection(store):
    result = await store.remove_connection("never-seen", 5)
    assert (result.connection, result.last_for_user) == (None, False)


async def test_presence_audience_is_watchers_and_own_connections(store):
    await store.add_connection(conn("a1", "alice", "laptop-01"))
    await store.add_connection(conn("a2", "alice", "phone-001"))
    await store.add_connection(conn("b1", "bob", "laptop-01"))
    await store.add_connection(conn("c1", "carol", "laptop-01"))
    assert sorted(await store.presence_audience("alice")) == ["a1", "a2"], "nobody asked for the user list yet"
    await store.watch_presence("b1")
    await store.watch_presence("a1")
    await store.watch_presence("b1")
    audience = await store.presence_audience("alice")
    assert sorted(audience) == ["a1", "a2", "b1"] and len(audience) == len(set(audience)), "no duplicates"
    assert sorted(await store.presence_audience("carol")) == ["a1", "b1", "c1"]
    await store.remove_connection("b1", 9)
    assert sorted(await store.presence_audience("carol")) == ["a1", "c1"], "a closed watcher gets nothing"


async def test_clear_connections_forgets_everyone(store):
    await store.add_connection(conn("a1", "alice", "laptop-01"))
    await store.add_connection(conn("b1", "bob", "laptop-01"))
    await store.watch_presence("b1")
    await store.clear_connections()
    assert await store.user_connections("alice") == [] and await store.get_connection("b1") is None
    assert await store.presence_audience("carol") == []
    assert (await store.add_connection(conn("a2", "alice", "laptop-01"))).first_for_user


# -- accounts ------------------------------------------------------------------------------------


def session(family: str, user: str = "alice", *, at: int = 10, device: str | None = None, ends: int = 10_000, idle: int = 5_000) -> SessionRecord:
    return SessionRecord(family=family, username=user, device=device, started_at=at, ends_at=ends, idle_until=idle)


ROTATE = dict(grace_ms=30, idle_ms=1_000)


async def test_a_session_rotates_its_token_once(store):
    await store.create_user("alice", None, 1)
    await store.create_session(session("fam-a", device="dev-0001"), "h0", keep_at_most=5)
    turn = await store.rotate_session("fam-a", "h0", "h1", 100, **ROTATE)
    assert turn.outcome == RotationOutcome.ROTATED and turn.rotated_at == 100
    assert (turn.session.username, turn.session.device) == ("alice", "dev-0001")
    assert (await store.rotate_session("fam-a", "h1", "h2", 200, **ROTATE)).outcome == RotationOutcome.ROTATED
    assert await store.session_active("fam-a", "alice", 201)
    assert (await store.rotate_session("nobody", "h0", "h1", 200, **ROTATE)).outcome == RotationOutcome.UNKNOWN


async def test_a_retry_within_the_grace_repeats_and_after_it_ends_the_family(store):
    await store.create_user("alice", None, 1)
    await store.create_session(session("fam-a"), "h0", keep_at_most=5)
    await store.rotate_session("fam-a", "h0", "h1", 100, **ROTATE)
    again = await store.rotate_session("fam-a", "h0", "h1", 130, **ROTATE)
    assert again.outcome == RotationOutcome.REPEATED and again.rotated_at == 100, "a retry 30 ms later is not a theft"
    late = await store.rotate_session("fam-a", "h0", "h1", 131, **ROTATE)
    assert late.outcome == RotationOutcome.REPLAYED, "31 ms later it is"
    assert not await store.session_active("fam-a", "alice", 132), "a replay ends the whole family"
    assert (await store.rotate_session("fam-a", "h1", "h2", 133, **ROTATE)).outcome == RotationOutcome.UNKNOWN, "the thief's newer token too"


async def test_an_older_token_after_the_successor_was_used_is_a_replay(store):
    await store.create_user("alice", None, 1)
    await store.create_session(session("fam-a"), "h0", keep_at_most=5)
    await store.rotate_session("fam-a", "h0", "h1", 100, **ROTATE)
    await store.rotate_session("fam-a", "h1", "h2", 105, **ROTATE)
    assert (await store.rotate_session("fam-a", "h0", "h1", 110, **ROTATE)).outcome == RotationOutcome.REPLAYED
    assert not await store.session_active("fam-a", "alice", 111)


async def test_sessions_end_when_idle_and_at_their_absolute_end(store):
    await store.create_user("alice", None, 1)
    await store.create_session(session("idle", idle=500), "h0", keep_at_most=5)
    assert await store.session_active("idle", "alice", 499) and not await store.session_active("idle", "alice", 500)
    assert (await store.rotate_session("idle", "h0", "h1", 500, **ROTATE)).outcome == RotationOutcome.UNKNOWN
    await store.create_session(session("capped", ends=2_500, idle=1_000), "c0", keep_at_most=5)
    token, now = "c0", 900
    while now < 2_500:  # refreshed often, it still ends at ends_at
        turn = await store.rotate_session("capped", token, token + "+", now, **ROTATE)
        assert turn.outcome == RotationOutcome.ROTATED
        token, now = token + "+", now + 900
    assert not await store.session_active("capped", "alice", 2_500)
    assert (await store.rotate_session("capped", token, "x", 2_500, **ROTATE)).outcome == RotationOutcome.UNKNOWN


async def test_ending_sessions_one_or_all(store):
    for user in ("alice", "bob"):
        await store.create_user(user, None, 1)
    await store.create_session(session("a1", at=10), "h1", keep_at_most=5)
    await store.create_session(session("a2", at=20), "h2", keep_at_most=5)
    await store.create_session(session("b1", "bob", at=30), "h3", keep_at_most=5)
    assert [s.family for s in await store.list_sessions("alice", 40)] == ["a1", "a2"]
    assert await store.end_session("a1") and not await store.end_session("a1")
    assert not await store.session_active("a1", "alice", 40) and await store.session_active("a2", "alice", 40)
    assert await store.end_user_sessions("alice") == 1
    assert await store.list_sessions("alice", 40) == [] and await store.session_active("b1", "bob", 40), "only alice's"


async def test_a_user_keeps_at_most_so_many_sessions(store):
    await store.create_user("alice", None, 1)
    for i in range(5):
        await store.create_session(session(f"s{i}", at=10 + i), f"h{i}", keep_at_most=3)
    assert [s.family for s in await store.list_sessions("alice", 20)] == ["s2", "s3", "s4"], "the oldest end first"
    assert not await store.session_active("s0", "alice", 20)


async def test_login_failures_count_within_a_window(store):
    for ts in (10, 20, 30):
        await store.record_login_failure("alice", ts)
    await store.record_login_failure("bob", 25)
    assert await store.count_login_failures("alice", 0) == 3
    assert await store.count_login_failures("alice", 15) == 2
    assert await store.count_login_failures("alice", 20) == 2, "the window's start is inside it"
    assert await store.count_login_failures("alice", 31) == 0
    assert await store.count_login_failures("carol", 0) == 0
    await store.clear_login_failures("alice")
    assert await store.count_login_failures("alice", 0) == 0
    assert await store.count_login_failures("bob", 0) == 1, "clearing one user leaves the others"


async def test_healthy(store):
    assert await store.healthy()


async def test_a_store_has_one_server_id_for_its_lifetime_and_a_new_store_another(store, tmp_path, monkeypatch):
    import re

    assert re.fullmatch(r"[0-9a-f]{32}", store.server_id)
    again = copy.copy(store)  # a second process on the same database or tables
    again.server_id = ""
    if isinstance(store, SQLiteStore):
        again = SQLiteStore(store.path)
    await again.open()
    try:
        assert again.server_id == store.server_id, "the id is kept, not made anew on each start"
    finally:
        if again is not store:
            await again.close()
    (tmp_path / "other").mkdir()
    async with sqlite_store(tmp_path / "other", monkeypatch) as other:
        assert other.server_id != store.server_id, "a new database is a new server"


async def test_a_session_is_active_only_for_its_own_user(store):
    await store.create_user("alice", None, 1)
    await store.create_session(session("fam-a"), "h0", keep_at_most=5)
    assert await store.session_active("fam-a", "alice", 20) and not await store.session_active("fam-a", "bob", 20)


# -- rooms (PROTOCOL.md 7.2) ---------------------------------------------------------------------


async def room_with(store, *members: str, room: str = "#lab", title: str = "The lab"):
    """A room created by the first of ``members``, the others joining in order."""
    created = await store.create_room(room, members[0], title, list(members[1:]), 2)
    assert created is not None
    return created


async def test_a_room_is_created_with_its_creator_first_and_owner(store):
    room = await store.create_room("#lab", "alice", "The lab", ["carol", "bob", "carol", "alice"], 2)
    assert room == RoomRecord("#lab", "The lab", "alice", ("alice", "carol", "bob")), "in order, once each"
    assert await store.get_room("#lab") == room
    assert await store.get_room("#nowhere") is None


async def test_a_taken_room_name_is_refused_and_left_alone(store):
    first = await room_with(store, "alice", "bob")
    assert await store.create_room("#lab", "carol", "mine now", [], 3) is None
    assert await store.get_room("#lab") == first


async def test_members_join_at_the_end_once_and_the_cap_holds(store):
    await room_with(store, "alice")
    room, added = await store.add_member("#lab", "bob", 3, max_members=3)
    assert added and room.members == ("alice", "bob")
    room, added = await store.add_member("#lab", "bob", 4, max_members=3)
    assert not added and room.members == ("alice", "bob"), "inviting a member changes nothing"
    await store.create_user("dave", None, 1)
    await store.add_member("#lab", "carol", 5, max_members=3)
    with pytest.raises(RoomFull):
        await store.add_member("#lab", "dave", 6, max_members=3)
    assert (await store.get_room("#lab")).members == ("alice", "bob", "carol")
    assert await store.add_member("#nowhere", "bob", 7, max_members=3) is None


async def test_the_cap_holds_when_many_join_at_once(store):
    for name in ("dave", "erin", "frank", "gina"):
        await store.create_user(name, None, 1)
    await room_with(store, "alice")
    joiners = ["bob", "carol", "dave", "erin", "frank", "gina"]
    results = await asyncio.gather(*(store.add_member("#lab", u, 3, max_members=4) for u in joiners), return_exceptions=True)
    assert sum(isinstance(r, RoomFull) for r in results) == 3
    members = (await store.get_room("#lab")).members
    assert len(members) == 4 and members[0] == "alice"


async def test_leaving_hands_the_room_to_the_longest_standing_member(store):
    await room_with(store, "alice", "bob", "carol")
    gone = await store.remove_member("#lab", "alice", 3)
    assert gone.left and gone.room == RoomRecord("#lab", "The lab", "bob", ("bob", "carol"))
    assert await store.remove_member("#lab", "alice", 4) == Departure(gone.room, left=False), "not a member: no-op"
    removed = await store.remove_member("#lab", "carol", 5)
    assert removed.room.members == ("bob",) and removed.room.owner == "bob"


async def test_the_last_member_leaving_deletes_the_room_and_everything_in_it(store):
    await room_with(store, "alice", "bob")
    await store.save_message("alice", "r-00000001", "#lab", "first", 3)
    await store.save_message("bob", "r-00000002", "#lab", "second", 4)
    await store.remove_member("#lab", "alice", 5)
    gone = await store.remove_member("#lab", "bob", 6)
    assert gone == Departure(None, left=True)
    assert await store.get_room("#lab") is None
    assert (await store.list_conversations("bob", None, 10))[0] == []
    again = await room_with(store, "carol", "alice", title="")
    assert again.owner == "carol" and again.title == ""
    reused = await store.save_message("alice", "r-00000001", "#lab", "new room, same id", 7)
    assert reused.created and reused.message.seq == 1, "the old room's seq and idempotency keys went with it"
    assert [m.body for m in await history(store, "carol", "#lab")] == ["new room, same id"]


async def test_the_title_can_be_changed_and_cleared(store):
    await room_with(store, "alice", "bob")
    assert (await store.set_room_title("#lab", "Renamed")).title == "Renamed"
    assert (await store.set_room_title("#lab", "")).title == ""
    assert await store.set_room_title("#nowhere", "x") is None


async def test_room_messages_have_their_own_seq_and_retries_store_nothing(store):
    await room_with(store, "alice", "bob")
    await store.save_message("alice", "d-00000001", "bob", "direct", 3)
    first = await store.save_message("alice", "r-00000001", "#lab", "to the room", 4)
    assert first.created and (first.message.seq, first.message.to, first.message.sender) == (1, "#lab", "alice")
    retry = await store.save_message("alice", "r-00000001", "#lab", "to the room", 9)
    assert not retry.created and retry.message == first.message
    second = await store.save_message("bob", "r-00000001", "#lab", "same id, other sender", 5)
    assert second.created and second.message.seq == 2
    assert [m.body for m in await history(store, "bob", "#lab")] == ["to the room", "same id, other sender"]


async def test_only_members_can_send_to_a_room(store):
    await room_with(store, "alice", "bob")
    with pytest.raises(NotAMember):
        await store.save_message("carol", "c-00000001", "#lab", "let me in", 3)
    with pytest.raises(NotAMember):
        await store.save_message("alice", "a-00000001", "#nowhere", "anyone?", 3)
    await store.remove_member("#lab", "bob", 4)
    with pytest.raises(NotAMember):
        await store.save_message("bob", "b-00000001", "#lab", "still here?", 5)
    assert await history(store, "alice", "#lab") == [], "nothing refused was stored"


async def test_concurrent_room_sends_get_distinct_ordered_seqs(store):
    await room_with(store, "alice", "bob", "carol")
    sends = [store.save_message(u, f"{u}-{i:07d}", "#lab", f"{u} {i}", 10 + i) for i in range(10) for u in ("alice", "bob", "carol")]
    results = await asyncio.gather(*sends)
    assert sorted(r.message.seq for r in results) == list(range(1, 31))
    assert [m.seq for m in await history(store, "carol", "#lab")] == list(range(1, 31))


async def test_room_unread_counts_every_other_members_messages(store):
    await room_with(store, "alice", "bob", "carol")
    await store.save_message("alice", "a-00000001", "#lab", "one", 3)
    await store.save_message("bob", "b-00000001", "#lab", "two", 4)
    await store.save_message("alice", "a-00000002", "#lab", "three", 5)
    views = {u: (await store.list_conversations(u, None, 10))[0][0] for u in ("alice", "bob", "carol")}
    assert {u: (v.with_, v.title, v.last_seq, v.read_seq, v.unread) for u, v in views.items()} == {
        "alice": ("#lab", "The lab", 3, 3, 0), "bob": ("#lab", "The lab", 3, 2, 1), "carol": ("#lab", "The lab", 3, 0, 3),
    }  # fmt: skip
    assert views["carol"].last.body == "three"
    assert await store.mark_read("carol", "#lab", 2) == 2
    assert await store.mark_read("carol", "#lab", 1) is None, "never backwards"
    assert await store.mark_read("carol", "#lab", 99) == 3, "clamped"
    [carol], _ = await store.list_conversations("carol", None, 10)
    assert (carol.read_seq, carol.unread) == (3, 0)


async def test_a_new_member_sees_the_whole_history_as_unread(store):
    await room_with(store, "alice", "bob")
    await store.save_message("alice", "a-00000001", "#lab", "before carol", 3)
    await store.save_message("bob", "b-00000001", "#lab", "also before", 4)
    await store.add_member("#lab", "carol", 5, max_members=256)
    [carol], _ = await store.list_conversations("carol", None, 10)
    assert (carol.read_seq, carol.unread, carol.last_seq) == (0, 2, 2)
    assert [m.body for m in await history(store, "carol", "#lab")] == ["before carol", "also before"]


async def test_read_marks_of_every_member_in_join_order(store):
    await room_with(store, "alice", "bob", "carol")
    for i in range(1, 4):
        await store.save_message("alice", f"a-{i:08d}", "#lab", f"m{i}", i)
    await store.mark_read("bob", "#lab", 2)
    assert await store.get_reads("#lab") == [("alice", 3), ("bob", 2), ("carol", 0)]
    await store.remove_member("#lab", "bob", 9)
    assert await store.get_reads("#lab") == [("alice", 3), ("carol", 0)]


async def test_rooms_are_listed_beside_direct_conversations_by_activity(store):
    await store.save_message("bob", "b-00000001", "alice", "direct, older", 3)
    await room_with(store, "alice", "carol")  # created at 2, no message: active since joining
    await store.create_room("#quiet", "alice", "", [], 1)
    await store.save_message("carol", "c-00000001", "#lab", "room, newer", 5)
    items, _ = await store.list_conversations("alice", None, 10)
    assert [(c.with_, c.title) for c in items] == [("#lab", "The lab"), ("bob", None), ("#quiet", "")]
    [quiet] = [c for c in items if c.with_ == "#quiet"]
    assert (quiet.last, quiet.last_seq, quiet.unread) == (None, 0, 0)
    await store.remove_member("#lab", "alice", 6)
    assert [c.with_ for c in (await store.list_conversations("alice", None, 10))[0]] == ["bob", "#quiet"], "a room left is not listed"


async def test_the_rooms_a_user_is_in_are_counted(store):
    assert await store.count_rooms("alice") == 0
    await store.save_message("alice", "d-00000001", "bob", "direct ones do not count", 1)
    await room_with(store, "alice", "bob")
    await store.create_room("#two", "bob", "", ["alice"], 2)
    assert (await store.count_rooms("alice"), await store.count_rooms("bob"), await store.count_rooms("carol")) == (2, 2, 0)
    await store.remove_member("#two", "alice", 3)
    assert await store.count_rooms("alice") == 1


# -- files (PROTOCOL.md 7.7) -----------------------------------------------------------------------

DAY_MS = 24 * 3600 * 1000


def file_record(file_id: str, owner: str = "alice", at: int = 1, size: int = 5):
    from tui_chat.server.store import FileRecord

    return FileRecord(file_id, owner, f"{file_id}.txt", size, "text/plain", "ab" * 32, at)


async def uploaded_file(store, file_id: str, owner: str = "alice", at: int = 1):
    """A file announced and fully uploaded (as the self-hosted PUT marks it): ready to attach."""
    assert await store.create_file(file_record(file_id, owner, at), max_pending=20)
    await store.file_uploaded(file_id)
    return file_record(file_id, owner, at)


def attached(file_id: str, size: int = 5):
    from tui_chat.protocol import Attachment

    return Attachment(file_id, f"{file_id}.txt", size, "text/plain")


async def test_a_file_record_is_kept_as_announced_and_marked_uploaded_once(store):
    record = file_record("file-00000001")
    assert await store.create_file(record, max_pending=20)
    assert await store.get_file("file-00000001") == record and not record.uploaded
    assert await store.get_file("file-nothere1") is None
    assert await store.file_uploaded("file-00000001") is True
    assert await store.file_uploaded("file-00000001") is False, "once"
    assert await store.file_uploaded("file-nothere1") is False
    assert (await store.get_file("file-00000001")).uploaded


async def test_a_message_carries_its_file_in_the_ack_history_listing_and_a_retry(store):
    await uploaded_file(store, "file-00000002")
    saved = await store.save_message("alice", "msg-00000001", "bob", "", 3, attached("file-00000002"))
    assert saved.created and saved.message.attachment == attached("file-00000002") and saved.message.body == ""
    again = await store.save_message("alice", "msg-00000001", "bob", "", 4, attached("file-00000002"))
    assert not again.created and again.message == saved.message
    assert [m.attachment for m in await history(store, "bob", "alice")] == [attached("file-00000002")]
    [conversation], _ = await store.list_conversations("bob", None, 10)
    assert conversation.last.attachment == attached("file-00000002")


async def test_unattached_files_are_capped_per_owner_and_attaching_or_deleting_frees_a_place(store):
    for i in range(3):
        assert await store.create_file(file_record(f"cap-0000000{i}"), max_pending=3)
    assert not await store.create_file(file_record("cap-00000003"), max_pending=3), "three are waiting"
    assert await store.get_file("cap-00000003") is None, "nothing kept for a refusal"
    assert await store.create_file(file_record("cap-0000b000", owner="bob"), max_pending=3), "per owner"
    await store.file_uploaded("cap-00000000")
    await store.save_message("alice", "msg-00000002", "bob", "", 2, attached("cap-00000000"))
    assert await store.create_file(file_record("cap-00000003"), max_pending=3), "an attached file no longer waits"
    assert not await store.create_file(file_record("cap-00000004"), max_pending=3)
    await store.delete_files(["cap-00000001"])
    assert await store.create_file(file_record("cap-00000004"), max_pending=3), "a deleted one neither"


async def test_the_cap_holds_when_many_uploads_are_announced_at_once(store):
    results = await asyncio.gather(*(store.create_file(file_record(f"race-{i:07d}"), max_pending=4) for i in range(12)))
    assert results.count(True) == 4
    kept = [f"race-{i:07d}" for i, ok in enumerate(results) if ok]
    assert all([await store.get_file(f) is not None for f in kept])


async def test_who_may_download_a_file_sent_to_someone(store):
    await uploaded_file(store, "dl-00000001")
    assert await store.may_download("alice", "dl-00000001"), "its uploader"
    assert not await store.may_download("bob", "dl-00000001"), "not sent to bob yet"
    await store.save_message("alice", "msg-00000003", "bob", "see", 2, attached("dl-00000001"))
    assert await store.may_download("bob", "dl-00000001")
    assert not await store.may_download("carol", "dl-00000001")
    assert not await store.may_download("alice", "dl-nothere1")


async def test_in_a_room_current_members_may_download_also_later_ones_and_not_those_who_left(store):
    await room_with(store, "alice", "bob")
    await uploaded_file(store, "dl-00000002")
    await store.save_message("alice", "msg-00000004", "#lab", "", 3, attached("dl-00000002"))
    assert await store.may_download("bob", "dl-00000002")
    assert not await store.may_download("carol", "dl-00000002")
    await store.add_member("#lab", "carol", 4, max_members=256)
    assert await store.may_download("carol", "dl-00000002"), "a member sees the whole history"
    await store.remove_member("#lab", "bob", 5)
    assert not await store.may_download("bob", "dl-00000002")
    await store.create_room("#lab2", "bob", "", [], 6)
    assert not await store.may_download("bob", "dl-00000002"), "another room's membership grants nothing"


async def test_unheld_files_are_old_unattached_ones_and_those_whose_room_went(store):
    await uploaded_file(store, "old-00000001", at=1)
    await uploaded_file(store, "new-00000001", at=DAY_MS)
    await uploaded_file(store, "held-0000001", at=1)
    await store.save_message("alice", "msg-00000005", "bob", "", 2, attached("held-0000001"))
    await room_with(store, "alice", "bob", room="#gone")
    await uploaded_file(store, "room-0000001", at=1)
    await uploaded_file(store, "both-0000001", at=1)
    await store.save_message("alice", "msg-00000006", "#gone", "", 3, attached("room-0000001"))
    await store.save_message("alice", "msg-00000007", "#gone", "", 3, attached("both-0000001"))
    await store.save_message("alice", "msg-00000008", "carol", "", 3, attached("both-0000001"))
    assert await store.unheld_files(DAY_MS // 2, 100) == ["old-00000001"], "only the unattached one older than the cutoff"
    await store.remove_member("#gone", "bob", 4)
    assert await store.unheld_files(DAY_MS // 2, 100) == ["old-00000001"], "the room still holds its files"
    await store.remove_member("#gone", "alice", 5)  # the last member: the room goes with its messages
    assert sorted(await store.unheld_files(DAY_MS // 2, 100)) == ["old-00000001", "room-0000001"], "a direct message still holds one"
    assert len(await store.unheld_files(DAY_MS // 2, 1)) == 1, "limit"
    await store.delete_files(["old-00000001", "room-0000001"])
    assert await store.get_file("old-00000001") is None and await store.get_file("room-0000001") is None
    assert await store.unheld_files(DAY_MS // 2, 100) == []
    assert await store.get_file("held-0000001") is not None and await store.may_download("bob", "held-0000001")
