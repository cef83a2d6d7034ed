"""One contract for every Store: the same tests run over SQLite and DynamoDB (moto)."""

from __future__ import annotations

import contextlib

import pytest

from tui_chat.server.store import ConnectionRecord
from tui_chat.server.stores.sqlite import SQLiteStore


@contextlib.asynccontextmanager
async def sqlite_store(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "contract.db")
    await store.open()
    yield store
    await store.close()


@contextlib.asynccontextmanager
async def dynamodb_store(tmp_path, monkeypatch):
    moto = pytest.importorskip("moto", reason="the DynamoDB store is tested with moto (the test extra installs it)")
    from tui_chat.server.stores.dynamodb import DynamoDBStore

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")  # no test can reach a real account
    with moto.mock_aws():
        store = DynamoDBStore(prefix="contract-", region="us-east-1", create_tables=True)
        await store.open()
        yield store
        await store.close()


@pytest.fixture(params=[sqlite_store, dynamodb_store], ids=["sqlite", "dynamodb"])
async def store(request, tmp_path, monkeypatch):
    async with request.param(tmp_path, monkeypatch) as opened:
        for name in ("alice", "bob", "carol"):
            assert await opened.create_user(name, None, 1)
        yield opened


async def test_users(store):
    assert not await store.create_user("alice", "hash", 2), "a taken name"
    await store.ensure_user("dave", 3)
    await store.ensure_user("dave", 4)
    assert (await store.get_user("dave")).created_at == 3
    assert await store.user_exists("dave") and not await store.user_exists("zed")
    assert [u.username for u in await store.list_users(None, 2)] == ["alice", "bob"]
    assert [u.username for u in await store.list_users("bob", 10)] == ["carol", "dave"]
    await store.set_status("alice", "away", "lunch")
    user = await store.get_user("alice")
    assert (user.status, user.text, user.last_seen) == ("away", "lunch", None)


async def test_save_is_idempotent_per_sender_and_id(store):
    first = await store.save_message("alice", "msg-00000001", "bob", "hello", 100)
    again = await store.save_message("alice", "msg-00000001", "carol", "changed", 200)
    assert first.created and not again.created
    assert again.message == first.message, "the retry gets the original: same seq, ts, body, recipient"
    other_sender = await store.save_message("bob", "msg-00000001", "alice", "same id, other sender", 300)
    assert other_sender.created and other_sender.message.seq > first.message.seq
    page, more = await store.get_messages("alice", "bob", before=None, after=None, limit=50)
    assert [m.body for m in page] == ["hello", "same id, other sender"] and not more


async def test_seq_per_conversation_and_paging(store):
    for i in range(1, 8):
        await store.save_message("alice", f"ab-{i:08d}", "bob", f"m{i}", i)
    await store.save_message("alice", "ac-00000001", "carol", "other", 9)
    newest, more = await store.get_messages("bob", "alice", before=None, after=None, limit=3)
    assert [m.seq for m in newest] == [5, 6, 7] and more
    older, more = await store.get_messages("bob", "alice", before=5, after=None, limit=3)
    assert [m.seq for m in older] == [2, 3, 4] and more
    oldest, more = await store.get_messages("bob", "alice", before=2, after=None, limit=3)
    assert [m.seq for m in oldest] == [1] and not more
    after, more = await store.get_messages("bob", "alice", before=None, after=5, limit=10)
    assert [m.seq for m in after] == [6, 7] and not more
    carol, _ = await store.get_messages("carol", "alice", before=None, after=0, limit=10)
    assert [(m.seq, m.body) for m in carol] == [(1, "other")], "seq starts at 1 in every conversation"


async def test_unread_read_markers_and_conversation_order(store):
    await store.save_message("bob", "b-00000001", "alice", "one", 10)
    await store.save_message("bob", "b-00000002", "alice", "two", 11)
    await store.save_message("carol", "c-00000001", "alice", "hi", 12)
    items, cursor = await store.list_conversations("alice", None, 10)
    assert [(c.with_, c.unread, c.read_seq, c.last_seq) for c in items] == [("carol", 1, 0, 1), ("bob", 2, 0, 2)]
    assert items[1].last.body == "two" and cursor is None
    assert await store.mark_read("alice", "bob", 1) == 1
    assert await store.mark_read("alice", "bob", 1) is None, "no move, no event"
    assert await store.mark_read("alice", "bob", 99) == 2, "clamped to the last seq"
    await store.save_message("alice", "a-00000001", "carol", "reply", 13)
    items, _ = await store.list_conversations("alice", None, 10)
    assert [(c.with_, c.unread) for c in items] == [("carol", 0), ("bob", 0)], "sending reads the conversation"
    bob_view, _ = await store.list_conversations("bob", None, 10)
    assert [(c.with_, c.read_seq, c.unread) for c in bob_view] == [("alice", 2, 0)]


async def test_conversation_cursor_pages_everything_once(store):
    names = [f"friend{i:02d}" for i in range(7)]
    for i, name in enumerate(names):
        await store.create_user(name, None, 1)
        await store.save_message("alice", f"f-{i:08d}", name, "hi", 100 + i)
    seen, cursor = [], None
    while True:
        items, cursor = await store.list_conversations("alice", cursor, 3)
        seen += [c.with_ for c in items]
        if cursor is None:
            break
    assert seen == names[::-1]
    with pytest.raises(ValueError):
        await store.list_conversations("alice", "not a cursor", 3)


async def test_notes_to_self(store):
    saved = await store.save_message("alice", "self-0000001", "alice", "remember", 5)
    page, _ = await store.get_messages("alice", "alice", before=None, after=None, limit=10)
    assert page == [saved.message]
    [conv], _ = await store.list_conversations("alice", None, 10)
    assert (conv.with_, conv.unread) == ("alice", 0)


async def test_connections_replace_first_last_and_presence_audience(store):
    first = await store.add_connection(ConnectionRecord("c1", "alice", "laptop-01", 1))
    assert first.first_for_user and first.replaced is None
    second = await store.add_connection(ConnectionRecord("c2", "alice", "phone-001", 2))
    assert not second.first_for_user
    replaced = await store.add_connection(ConnectionRecord("c3", "alice", "laptop-01", 3))
    assert replaced.replaced.conn_id == "c1" and not replaced.first_for_user
    assert (await store.remove_connection("c1", 4)).connection is None, "an already-replaced connection"
    await store.add_connection(ConnectionRecord("w1", "bob", "bob-dev01", 5))
    await store.watch_presence("w1")
    assert sorted(await store.presence_audience("alice")) == ["c2", "c3", "w1"]
    assert not (await store.remove_connection("c2", 6)).last_for_user
    gone = await store.remove_connection("c3", 7)
    assert gone.last_for_user and gone.connection.conn_id == "c3"
    assert (await store.get_user("alice")).last_seen == 7
    assert await store.user_connections("alice") == []


async def test_refresh_tokens_are_single_use_and_expire(store):
    await store.save_refresh_token("hash-1", "alice", None, 1000)
    await store.save_refresh_token("hash-2", "bob", "dev-0001", 50)
    grant = await store.take_refresh_token("hash-1", 10)
    assert (grant.username, grant.device) == ("alice", None)
    assert await store.take_refresh_token("hash-1", 10) is None, "used once"
    assert await store.take_refresh_token("hash-2", 60) is None, "expired"


async def test_login_failures_count_within_a_window(store):
    for ts in (10, 20, 30):
        await store.record_login_failure("alice", ts)
    assert await store.count_login_failures("alice", 15) == 2
    await store.clear_login_failures("alice")
    assert await store.count_login_failures("alice", 0) == 0
