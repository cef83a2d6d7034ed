"""What is particular to the DynamoDB store (the shared contract runs in tests/server/test_store_contract.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from moto import mock_aws

from tests.aws.conftest import REGION
from tui_chat.server.store import ConnectionRecord, RoomFull, StoreUnavailable
from tui_chat.server.stores.dynamodb import DynamoDBStore


@pytest.fixture
async def store():
    with mock_aws():
        s = DynamoDBStore(prefix="t-", region=REGION, create_tables=True, clock=lambda: 0)  # see test_retention...
        await s.open()
        for name in ("alice", "bob", "carol"):
            await s.create_user(name, None, 0)
        yield s
        await s.close()


async def test_a_retry_returns_the_original_and_leaves_at_most_a_gap(store):
    first = await store.save_message("alice", "msg-00000001", "bob", "once", 1000)
    again = await store.save_message("alice", "msg-00000001", "bob", "twice", 2000)
    assert (again.created, again.message) == (False, first.message)
    nxt = await store.save_message("alice", "msg-00000002", "bob", "next", 3000)
    assert nxt.message.seq > first.message.seq  # a retry may leave a gap; order holds
    items, _ = await store.get_messages("bob", "alice", before=None, after=0, limit=10)
    assert [m.body for m in items] == ["once", "next"]


async def test_the_same_id_from_two_senders_is_two_messages(store):
    a = await store.save_message("alice", "same-id-0001", "carol", "from alice", 1)
    b = await store.save_message("bob", "same-id-0001", "carol", "from bob", 2)
    assert a.created and b.created


async def test_concurrent_sends_in_one_conversation_keep_unique_seqs_and_the_inbox_moves_forward(store, monkeypatch):
    # In-process moto is not thread-safe (its transactions deep-copy tables): one call at a time,
    # while the sends still interleave between calls and finish out of order.
    lock = threading.Lock()
    unlocked = store._call_sync

    def one_at_a_time(op, kwargs):
        with lock:
            return unlocked(op, kwargs)

    monkeypatch.setattr(store, "_call_sync", one_at_a_time)
    sends = [store.save_message(sender, f"c-{sender}-{i:04d}", other, f"{sender} {i}", 100 + i)
             for i in range(10) for sender, other in (("alice", "bob"), ("bob", "alice"))]  # fmt: skip
    results = await asyncio.gather(*sends)
    seqs = [r.message.seq for r in results]
    assert len(set(seqs)) == 20
    [conv] = (await store.list_conversations("alice", None, 10))[0]
    assert conv.last_seq == max(seqs) and conv.last.seq == max(seqs)
    mine = max(r.message.seq for r in results if r.message.sender == "alice")
    assert conv.read_seq >= mine, "a sender has read its own message, even when a newer one landed first"


async def test_pages_larger_than_a_query_page_follow_last_evaluated_key(store):
    body = "x" * 15000
    for i in range(80):  # 1.2 MB: more than one 1 MB query page
        await store.save_message("alice", f"big-{i:07d}", "bob", f"{i:02d}{body}", 1000 + i)
    items, more = await store.get_messages("bob", "alice", before=None, after=0, limit=200)
    assert [m.seq for m in items] == list(range(1, 81)) and more is False
    items, more = await store.get_messages("bob", "alice", before=41, after=None, limit=30)
    assert [m.seq for m in items] == list(range(11, 41)) and more is True


async def test_conversations_newest_first_with_an_opaque_cursor(store):
    for i in range(7):
        name = f"partner{i}"
        await store.create_user(name, None, 0)
        await store.save_message("alice", f"conv-{i:06d}", name, "hi", 1000 + i)
    first, cursor = await store.list_conversations("alice", None, 4)
    assert [c.with_ for c in first] == ["partner6", "partner5", "partner4", "partner3"] and cursor
    rest, end = await store.list_conversations("alice", cursor, 4)
    assert [c.with_ for c in rest] == ["partner2", "partner1", "partner0"] and end is None
    for bad in ("garbage!", "bm90IGpzb24", "WyJ4Il0"):
        with pytest.raises(ValueError):
            await store.list_conversations("alice", bad, 4)


async def test_unread_counts_only_the_other_users_messages_above_the_marker(store):
    for i, sender in enumerate(["alice", "bob", "alice", "alice"]):
        other = "bob" if sender == "alice" else "alice"
        await store.save_message(sender, f"u-{i:07d}", other, "x", i)
    [conv] = (await store.list_conversations("bob", None, 10))[0]
    assert (conv.last_seq, conv.read_seq, conv.unread) == (4, 2, 2)
    assert await store.mark_read("bob", "alice", 99) == 4
    assert await store.mark_read("bob", "alice", 3) is None
    [conv] = (await store.list_conversations("bob", None, 10))[0]
    assert conv.unread == 0


async def test_connections_first_last_replaced_and_presence_audience(store):
    first = await store.add_connection(ConnectionRecord("c1", "alice", "laptop-0001", 10))
    second = await store.add_connection(ConnectionRecord("c2", "alice", "phone-00001", 11))
    again = await store.add_connection(ConnectionRecord("c3", "alice", "laptop-0001", 12))
    assert first.first_for_user and not second.first_for_user
    assert again.replaced.conn_id == "c1" and not again.first_for_user
    assert (await store.remove_connection("c1", 13)).connection is None, "replaced: already gone"
    await store.add_connection(ConnectionRecord("w1", "bob", "bob-device", 14))
    await store.watch_presence("w1")
    assert await store.presence_audience("alice") == ["c2", "c3", "w1"]
    assert not (await store.remove_connection("c2", 15)).last_for_user
    last = await store.remove_connection("c3", 16)
    assert last.last_for_user and (await store.get_user("alice")).last_seen == 16


async def test_a_connection_left_behind_for_over_two_hours_does_not_keep_a_user_online(store):
    await store.add_connection(ConnectionRecord("lost", "alice", "old-device", 0))  # its $disconnect never came
    later = 3 * 60 * 60 * 1000
    result = await store.add_connection(ConnectionRecord("fresh", "alice", "new-device", later))
    assert result.first_for_user
    assert [c.conn_id for c in await store.user_connections("alice")] == ["fresh"]


async def test_messages_carry_a_ttl_when_retention_is_set(store):
    saved = await store.save_message("alice", "ttl-0000001", "bob", "x", 1_700_000_000_000)
    raw = store.client.get_item(TableName=store.messages, Key={"pk": {"S": "c#alice#bob"}, "sk": {"N": str(saved.message.seq)}})
    assert int(raw["Item"]["expireAt"]["N"]) == 1_700_000_000 + 365 * 86400
    store.retention_days = None
    kept = await store.save_message("alice", "ttl-0000002", "bob", "x", 1_700_000_000_000)
    raw = store.client.get_item(TableName=store.messages, Key={"pk": {"S": "c#alice#bob"}, "sk": {"N": str(kept.message.seq)}})
    assert "expireAt" not in raw["Item"]


async def test_reads_skip_what_retention_expired_before_ttl_deleted_it():
    """TTL deletes expired items within days, not at once: until then no read may show them."""
    day = 86_400_000
    now = [1_800_000_000_000]
    with mock_aws():
        s = DynamoDBStore(prefix="r-", region=REGION, create_tables=True, retention_days=5, clock=lambda: now[0])
        await s.open()
        for name in ("alice", "bob", "carol"):
            await s.create_user(name, None, 0)
        for d in range(10):
            await s.save_message("alice", f"a-day-{d:04d}", "bob", f"a{d}", now[0] + d * day)
        await s.save_message("carol", "c-old-00001", "bob", "old", now[0])
        inbox = s.client.get_item(TableName=s.conversations, Key={"user": {"S": "bob"}, "with": {"S": "carol"}})["Item"]
        assert int(inbox["expireAt"]["N"]) == (now[0] + 5 * day) // 1000, "inboxes expire with their newest message"
        now[0] += 10 * day
        page, more = await s.get_messages("bob", "alice", before=None, after=None, limit=50)
        assert [m.body for m in page] == [f"a{d}" for d in range(6, 10)] and not more
        page, _ = await s.get_messages("bob", "alice", before=None, after=0, limit=2)
        assert [m.body for m in page] == ["a6", "a7"], "paging forward from the start skips the expired too"
        listed, _ = await s.list_conversations("bob", None, 10)
        assert [(c.with_, c.unread) for c in listed] == [("alice", 4)], "carol's old conversation is gone; unread counts what is left"
        await s.close()


async def test_a_session_item_expires_by_ttl_when_it_ends(store):
    from tui_chat.server.store import SessionRecord

    await store.create_user("alice", None, 1)
    await store.create_session(SessionRecord("fam-ttl", "alice", None, 1_000, 90_000_000, 5_000_000), "h0", keep_at_most=5)
    raw = store.client.get_item(TableName=store.users, Key={"pk": {"S": "session#fam-ttl"}})
    assert int(raw["Item"]["expireAt"]["N"]) == 5_001, "DynamoDB deletes it soon after its idle end"
    await store.rotate_session("fam-ttl", "h0", "h1", 2_000_000, grace_ms=30_000, idle_ms=10_000_000)
    raw = store.client.get_item(TableName=store.users, Key={"pk": {"S": "session#fam-ttl"}})
    assert int(raw["Item"]["expireAt"]["N"]) == 12_001, "a refresh moves it"


async def test_missing_tables_make_the_store_unavailable_not_crash():
    with mock_aws():
        s = DynamoDBStore(prefix="absent-", region=REGION)
        assert await s.healthy() is False
        with pytest.raises(StoreUnavailable):
            await s.get_user("alice")


# -- rooms ---------------------------------------------------------------------------------------


def one_call_at_a_time(store, monkeypatch):
    """In-process moto is not thread-safe; a room send updates members' inboxes concurrently."""
    lock = threading.Lock()
    unlocked = store._call_sync

    def locked(op, kwargs):
        with lock:
            return unlocked(op, kwargs)

    monkeypatch.setattr(store, "_call_sync", locked)


def raw_items(store, table):
    return store.client.scan(TableName=table)["Items"]


async def test_a_full_room_outgrows_one_transaction_and_every_member_hears_of_a_message(store, monkeypatch):
    one_call_at_a_time(store, monkeypatch)
    names = [f"member{i:03d}" for i in range(255)]
    room = await store.create_room("#big", "alice", "", names, 1)
    assert len(room.members) == 256, "the room item and 255 inbox items: more than one transaction's 100"
    with pytest.raises(RoomFull):
        await store.add_member("#big", "bob", 2, max_members=256)
    saved = await store.save_message("member100", "big-00000001", "#big", "hello all", 3)
    assert saved.created and saved.message.seq == 1
    reads = await store.get_reads("#big")
    assert len(reads) == 256 and dict(reads)["member100"] == 1
    for user in ("alice", "member000", "member254"):
        [conv], _ = await store.list_conversations(user, None, 10)
        assert (conv.with_, conv.last_seq, conv.unread, conv.last.body) == ("#big", 1, 1, "hello all")


async def test_a_member_whose_inbox_update_fails_does_not_fail_the_send(store, monkeypatch):
    one_call_at_a_time(store, monkeypatch)
    await store.create_room("#lab", "alice", "", ["bob", "carol"], 1)
    moving = store._conditional_update

    async def flaky(table, key, *args):
        if key.get("user") == "bob":
            raise StoreUnavailable("throttled")
        return await moving(table, key, *args)

    monkeypatch.setattr(store, "_conditional_update", flaky)
    saved = await store.save_message("alice", "lab-00000001", "#lab", "stored once", 2)
    assert saved.created, "the message is durable before any member's inbox moves"
    [carol], _ = await store.list_conversations("carol", None, 10)
    assert (carol.last_seq, carol.unread) == (1, 1)
    [bob], _ = await store.list_conversations("bob", None, 10)
    assert bob.last_seq == 0, "bob's inbox catches up with the next message"
    monkeypatch.setattr(store, "_conditional_update", moving)
    await store.save_message("carol", "lab-00000002", "#lab", "next", 3)
    [bob], _ = await store.list_conversations("bob", None, 10)
    assert (bob.last_seq, bob.unread) == (2, 2)


async def test_the_last_leave_deletes_the_rooms_messages_counter_and_guards(store):
    await store.create_room("#lab", "alice", "", ["bob"], 1)
    await store.save_message("alice", "lab-00000001", "#lab", "one", 2)
    await store.save_message("bob", "lab-00000002", "#lab", "two", 3)
    await store.save_message("alice", "dir-00000001", "bob", "direct", 4)
    await store.remove_member("#lab", "alice", 5)
    await store.remove_member("#lab", "bob", 6)
    assert {i["pk"]["S"] for i in raw_items(store, store.messages)} == {"c#alice#bob", "g#alice#dir-00000001"}
    assert raw_items(store, store.rooms) == []
    assert {(i["user"]["S"], i["with"]["S"]) for i in raw_items(store, store.conversations)} == {("alice", "bob"), ("bob", "alice")}


async def test_room_messages_expire_but_memberships_do_not(store):
    await store.create_room("#lab", "alice", "", ["bob"], 1)
    saved = await store.save_message("alice", "lab-00000001", "#lab", "x", 1_700_000_000_000)
    [message] = [i for i in raw_items(store, store.messages) if i["pk"]["S"].startswith("r#lab#") and i["sk"]["N"] != "0"]
    assert int(message["expireAt"]["N"]) == 1_700_000_000 + 365 * 86400 and int(message["sk"]["N"]) == saved.message.seq
    assert all("expireAt" not in i for i in raw_items(store, store.conversations)), "an inbox item of a room is its membership"
