"""What only the SQLite store promises: group commit, durability across reopen, schema versions."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from tui_chat.server.stores.sqlite import SCHEMA_VERSION, SchemaTooNew, SQLiteStore


async def opened(path) -> SQLiteStore:
    store = SQLiteStore(path)
    await store.open()
    return store


async def test_concurrent_senders_share_commits(tmp_path):
    store = await opened(tmp_path / "g.db")
    await store.create_user("alice", None, 0)
    await store.create_user("bob", None, 0)
    before = store.commit_count
    results = await asyncio.gather(*(store.save_message("alice", f"g-{i:08d}", "bob", "x", i) for i in range(300)))
    commits = store.commit_count - before
    assert sorted(r.message.seq for r in results) == list(range(1, 301))
    assert commits < 100, f"300 concurrent saves took {commits} commits: group commit is not batching"
    await store.close()


async def test_a_retry_in_the_same_batch_is_stored_once(tmp_path):
    store = await opened(tmp_path / "d.db")
    await store.create_user("alice", None, 0)
    first, second = await asyncio.gather(
        store.save_message("alice", "dup-0000001", "alice", "a", 1), store.save_message("alice", "dup-0000001", "alice", "b", 2)
    )
    assert first.message == second.message and [first.created, second.created].count(True) == 1
    await store.close()


async def test_everything_acked_is_there_after_reopen(tmp_path):
    store = await opened(tmp_path / "r.db")
    await store.create_user("alice", None, 0)
    saved = [await store.save_message("alice", f"r-{i:08d}", "alice", f"m{i}", i) for i in range(20)]
    await store.close()
    await store.close()  # idempotent
    store = await opened(tmp_path / "r.db")
    page, _ = await store.get_messages("alice", "alice", before=None, after=0, limit=50)
    assert page == [s.message for s in saved]
    assert await store.user_exists("alice")
    await store.close()


async def test_schema_version_and_a_database_from_the_future(tmp_path):
    path = tmp_path / "v.db"
    store = await opened(path)
    await store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match="upgrade tui-chat"):
        await opened(path)


async def test_writes_after_close_are_refused_not_lost_silently(tmp_path):
    from tui_chat.server.store import StoreUnavailable

    store = await opened(tmp_path / "c.db")
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.create_user("late", None, 0)
    assert not await store.healthy()
