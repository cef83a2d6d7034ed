"""What only the SQLite store promises: group commit, durability across close, reopen and
kill -9, schema versions and migrations, reads that do not wait for the writer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from tui_chat.server.store import NotAMember, RoomRecord, StoreUnavailable
from tui_chat.server.stores.sqlite import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew, SQLiteStore
from tui_chat.server.stores.sqlite_schema import WAL_CHECKPOINT_PAGES, WAL_SIZE_LIMIT_BYTES


@pytest.fixture
async def store(tmp_path):
    opened = await open_store(tmp_path / "chat.db")
    yield opened
    await opened.close()


async def open_store(path, **options) -> SQLiteStore:
    store = SQLiteStore(path, **options)
    await store.open()
    for name in ("alice", "bob"):
        await store.create_user(name, None, 0)
    return store


async def history(store, user="alice", other="bob"):
    page, more = await store.get_messages(user, other, before=None, after=0, limit=200)
    assert not more
    return page


@contextlib.asynccontextmanager
async def writer_held(store: SQLiteStore):
    """Hold the writer inside an open transaction until the block ends, so every write made
    meanwhile queues up and goes into the next batch together. (Test hook: the private _write.)"""
    started, release = threading.Event(), threading.Event()

    def hold(db):
        started.set()
        release.wait(10)

    held = asyncio.ensure_future(store._write(hold))
    await asyncio.to_thread(started.wait, 10)
    try:
        yield
    finally:
        release.set()
        await held


async def queued(store: SQLiteStore, count: int) -> None:
    """Let the tasks just created run up to the point where their write is queued."""
    while store._writer.queued() < count:
        await asyncio.sleep(0)  # a yield to the tasks, not a timed wait


# -- group commit ------------------------------------------------------------------------------


async def test_concurrent_saves_share_commits(store):
    before = store.commit_count
    results = await asyncio.gather(*(store.save_message("alice", f"g-{i:08d}", "bob", f"m{i}", i) for i in range(200)))
    commits = store.commit_count - before
    assert sorted(r.message.seq for r in results) == list(range(1, 201)), "every save stored once"
    assert len(await history(store)) == 200
    assert commits <= 20, f"200 concurrent saves took {commits} commits: group commit is not batching"


async def test_a_commit_window_gathers_writes_that_arrive_apart(tmp_path):
    await (await open_store(tmp_path / "w.db")).close()  # the users, without waiting for windows
    store = SQLiteStore(tmp_path / "w.db", group_commit_window_ms=300)
    await store.open()
    before = store.commit_count
    first = asyncio.ensure_future(store.save_message("alice", "w-00000001", "bob", "one", 1))
    await queued(store, 1)
    while store._writer.queued():  # the writer has taken the first write and waits for more
        await asyncio.sleep(0)
    second = await store.save_message("alice", "w-00000002", "bob", "two", 2)
    assert (await first).message.seq == 1 and second.message.seq == 2
    assert store.commit_count - before == 1, "the later write joined the same commit"
    await store.close()


async def test_a_write_waits_for_another_process_holding_the_lock_without_stopping_the_loop(store):
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # tui-chat admin, mid-write
    try:
        pending = asyncio.ensure_future(store.save_message("alice", "l-00000001", "bob", "waits", 1))
        ticks = 0
        while ticks < 50:  # the loop keeps turning while the write waits for the lock
            await asyncio.sleep(0)
            ticks += 1
        assert not pending.done(), "nothing is acked while another process holds the lock"
    finally:
        other.execute("COMMIT")
        other.close()
    assert (await pending).message.seq == 1


async def test_a_retry_in_the_same_batch_is_stored_once(store):
    async with writer_held(store):
        tasks = [asyncio.ensure_future(store.save_message("alice", "dup-0000001", "bob", body, 5)) for body in "ab"]
        await queued(store, 2)
    first, second = await asyncio.gather(*tasks)
    assert (first.created, second.created) == (True, False)
    assert second.message == first.message and first.message.body == "a"
    assert await history(store) == [first.message]


async def test_one_bad_write_fails_alone(store):
    async with writer_held(store):
        tasks = [
            asyncio.ensure_future(store.save_message("alice", f"b-{i:08d}", "bob", "\ud800" if i == 5 else f"m{i}", i))
            for i in range(10)
        ]
        await queued(store, 10)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[5], UnicodeEncodeError), "a lone surrogate cannot be stored; its caller is told"
    good = [r for i, r in enumerate(results) if i != 5]
    assert [r.message.seq for r in good] == list(range(1, 10)), "the others are stored, with no gap in seq"
    assert [m.body for m in await history(store)] == [f"m{i}" for i in range(10) if i != 5]
    again = await store.save_message("alice", "b-00000005", "bob", "fixed", 20)
    assert again.created and again.message.seq == 10, "the failed id was not burned"


async def test_a_bad_write_alone_in_its_batch_fails_alone(store):
    with pytest.raises(UnicodeEncodeError):
        await store.save_message("alice", "alone-00001", "bob", "\ud800", 1)
    saved = await store.save_message("alice", "alone-00002", "bob", "fine", 2)
    assert saved.created and saved.message.seq == 1, "nothing of the failed write was kept"
    again = await store.save_message("alice", "alone-00001", "bob", "fixed", 3)
    assert again.created and again.message.seq == 2, "the failed id was not burned"


async def test_a_failing_commit_fails_every_caller_of_the_batch(store):
    def disk_full(db):  # no page may be added: the next batch fails like a full disk
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")

    def save(i):
        return store.save_message("alice", f"f-{i:08d}", "bob", "x" * 3000, i)

    await store._write(disk_full)
    async with writer_held(store):
        tasks = [asyncio.ensure_future(save(i)) for i in range(20)]
        await queued(store, 20)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results), "nobody is acked for a message not stored"
    assert await history(store) == [], "nothing of the failed batch is visible"
    assert await store.healthy(), "reads still work"
    await store._write(lambda db: db.execute("PRAGMA max_page_count = 1073741823"))  # space is freed
    retried = await asyncio.gather(*(save(i) for i in range(20)))
    assert all(r.created for r in retried) and sorted(r.message.seq for r in retried) == list(range(1, 21))


async def test_a_caller_that_gives_up_can_retry_and_gets_one_copy(store):
    async with writer_held(store):
        task = asyncio.ensure_future(store.save_message("alice", "gone-0000001", "bob", "hi", 1))
        await queued(store, 1)
        task.cancel()
    retry = await store.save_message("alice", "gone-0000001", "bob", "hi", 2)
    assert not retry.created and retry.message.ts == 1, "the cancelled write was committed; the retry finds it"
    assert await history(store) == [retry.message]
    assert (await store.save_message("alice", "next-0000001", "bob", "still writing", 3)).message.seq == 2


# -- reads -------------------------------------------------------------------------------------


async def test_reads_do_not_wait_for_the_writer_and_see_only_committed_data(store):
    committed = await store.save_message("alice", "c-00000001", "bob", "committed", 1)
    async with writer_held(store):
        pending = asyncio.ensure_future(store.save_message("alice", "c-00000002", "bob", "in flight", 2))
        await queued(store, 1)

        async def reads():
            page = await history(store)
            [conv], _ = await store.list_conversations("bob", None, 10)
            return page, conv, await store.get_user("alice"), await store.healthy()

        page, conv, alice, healthy = await asyncio.wait_for(reads(), timeout=5)
        assert page == [committed.message] and (conv.last_seq, conv.unread) == (1, 1)
        assert alice is not None and healthy
        assert not pending.done(), "the write is still waiting for its commit"
    assert (await pending).message.seq == 2
    assert [m.body for m in await history(store)] == ["committed", "in flight"]


async def test_reads_during_a_stream_of_writes_see_whole_commits(store):
    writes = asyncio.gather(*(store.save_message("alice", f"s-{i:08d}", "bob", "x", i) for i in range(300)))
    while not writes.done():
        page, _ = await store.get_messages("bob", "alice", before=None, after=None, limit=200)
        seqs = [m.seq for m in page]
        assert seqs == list(range(len(seqs) and seqs[-1] - len(seqs) + 1, len(seqs) and seqs[-1] + 1)), "no hole"
    await writes
    page, more = await store.get_messages("bob", "alice", before=None, after=100, limit=200)
    assert [m.seq for m in page] == list(range(101, 301)) and not more


async def test_user_created_by_another_process_is_known(store, tmp_path):
    other = sqlite3.connect(tmp_path / "chat.db")
    with other:
        other.execute("INSERT INTO users (username, created_at) VALUES ('dave', 7)")
    other.close()
    assert await store.user_exists("dave"), "the in-memory name cache falls back to the database"
    assert not await store.user_exists("erin")


# -- durability --------------------------------------------------------------------------------


async def test_everything_is_there_after_reopen(tmp_path):
    path = tmp_path / "r.db"
    store = await open_store(path)
    saved = [await store.save_message("alice", f"r-{i:08d}", "bob", f"m{i}", i) for i in range(1, 6)]
    await store.mark_read("bob", "alice", 3)
    await store.set_status("alice", "busy", "deep work")
    await store.record_login_failure("bob", 10)
    from tui_chat.server.store import ConnectionRecord, SessionRecord

    await store.create_session(SessionRecord("fam-1", "alice", "dev-0001", 1, 10_000, 5_000), "hash-1", keep_at_most=5)

    await store.add_connection(ConnectionRecord("c1", "alice", "laptop-01", 1))
    await store.remove_connection("c1", 42)
    await store.close()
    await store.close()  # idempotent

    store = SQLiteStore(path)
    await store.open()
    assert await history(store) == [s.message for s in saved]
    [bob_view], _ = await store.list_conversations("bob", None, 10)
    assert (bob_view.read_seq, bob_view.unread, bob_view.last) == (3, 2, saved[-1].message)
    alice = await store.get_user("alice")
    assert (alice.status, alice.text, alice.last_seen) == ("busy", "deep work", 42)
    assert await store.user_exists("bob") and await store.count_login_failures("bob", 0) == 1
    assert [s.device for s in await store.list_sessions("alice", 5)] == ["dev-0001"]
    assert await store.user_connections("alice") == [], "connections die with the process"
    assert (await store.save_message("alice", "r-00000001", "bob", "retry", 99)).created is False
    await store.close()


async def test_close_flushes_queued_writes(tmp_path):
    path = tmp_path / "f.db"
    store = await open_store(path)
    tasks = [asyncio.ensure_future(store.save_message("alice", f"q-{i:08d}", "bob", f"m{i}", i)) for i in range(100)]
    await queued(store, 100)
    await store.close()
    assert [t.result().message.seq for t in tasks] == list(range(1, 101)), "every queued write was committed"
    with pytest.raises(StoreUnavailable):
        await store.save_message("alice", "late-0000001", "bob", "too late", 1)
    with pytest.raises(StoreUnavailable):
        await store.get_messages("alice", "bob", before=None, after=None, limit=5)
    assert not await store.healthy()
    store = SQLiteStore(path)
    await store.open()
    assert len(await history(store)) == 100
    await store.close()


KILL_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from tui_chat.server.stores.sqlite import SQLiteStore

    async def main():
        store = SQLiteStore(sys.argv[1])
        await store.open()
        await store.ensure_user("alice", 0)
        await store.ensure_user("bob", 0)

        async def send(i):
            saved = await store.save_message("alice", f"k-{i:08d}", "bob", f"m{i}", i)
            print(saved.message.id, saved.message.seq, flush=True)  # the ack

        for start in range(0, 1_000_000, 50):  # 50 in flight at any time: the kill lands mid-batch
            await asyncio.gather(*(send(i) for i in range(start, start + 50)))

    asyncio.run(main())
    """
)


async def test_kill_9_loses_nothing_acked(tmp_path):
    path = tmp_path / "k.db"
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))  # fmt: skip
    acked = {}
    try:
        while len(acked) < 300:
            line = await asyncio.to_thread(child.stdout.readline)
            assert line, "the child died before acking 300 messages"
            msg_id, seq = line.split()
            acked[msg_id] = int(seq)
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.wait)
    store = SQLiteStore(path)
    await store.open()
    stored, after = {}, 0
    while True:
        page, more = await store.get_messages("bob", "alice", before=None, after=after, limit=200)
        stored.update((m.id, m.seq) for m in page)
        if not more:
            break
        after = page[-1].seq
    assert all(stored.get(msg_id) == seq for msg_id, seq in acked.items()), "every acked message is there, unchanged"
    assert sorted(stored.values()) == list(range(1, len(stored) + 1)), "no hole, no duplicate"
    await store.close()


# -- schema ------------------------------------------------------------------------------------


def schema(path) -> list:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        db.close()


async def test_the_wal_is_copied_into_the_database_and_stays_bounded(store):
    """More than one checkpoint's worth of messages (about 21 MB): the WAL does not keep growing
    with the history, and what it held is in the database file itself."""
    body = "w" * 16_000
    for start in range(0, 1300, 100):
        await asyncio.gather(*(store.save_message("alice", f"wal-{i:08d}", "bob", body, i) for i in range(start, start + 100)))
    wal = os.path.getsize(store.path + "-wal")
    assert wal <= WAL_SIZE_LIMIT_BYTES, f"the WAL is {wal} bytes"
    assert os.path.getsize(store.path) > WAL_CHECKPOINT_PAGES * 4096, "checkpoints copied the history into the database"
    page, more = await store.get_messages("bob", "alice", before=None, after=1290, limit=50)
    assert [m.seq for m in page] == list(range(1291, 1301)) and not more


async def test_a_new_database_gets_the_current_version_and_reopening_changes_nothing(tmp_path):
    path = tmp_path / "v.db"
    store = await open_store(path)
    await store.save_message("alice", "v-00000001", "bob", "kept", 1)
    await store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    before = schema(path)
    store = SQLiteStore(path)
    await store.open()
    assert [m.body for m in await history(store)] == ["kept"]
    await store.close()
    assert schema(path) == before


async def test_a_database_from_the_future_is_refused_untouched(tmp_path):
    path = tmp_path / "future.db"
    store = await open_store(path)
    await store.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match="upgrade tui-chat"):
        await SQLiteStore(path).open()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    db.close()


async def test_a_version_1_database_is_migrated_with_its_unread_counts(tmp_path):
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db.executemany("INSERT INTO users (username, created_at) VALUES (?, 0)", [("alice",), ("bob",)])
    db.execute("INSERT INTO conversations VALUES ('alice', 'bob', 3)")
    db.executemany(
        "INSERT INTO messages VALUES ('alice', 'bob', ?, ?, ?, ?, ?, ?)",
        [(1, "m-00000001", "bob", "alice", "one", 1), (2, "m-00000002", "bob", "alice", "two", 2),
         (3, "m-00000003", "alice", "bob", "three", 3)],
    )  # fmt: skip
    db.executemany("INSERT INTO sides VALUES (?, ?, 3, ?)", [("alice", "bob", 3), ("bob", "alice", 1)])
    db.close()
    store = SQLiteStore(path)
    await store.open()
    [alice_view], _ = await store.list_conversations("alice", None, 10)
    [bob_view], _ = await store.list_conversations("bob", None, 10)
    assert (alice_view.read_seq, alice_view.unread) == (3, 0)
    assert (bob_view.read_seq, bob_view.unread, bob_view.last.body) == (1, 1, "three")
    assert (await store.save_message("bob", "m-00000002", "alice", "retry", 9)).created is False
    await store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


async def test_a_version_4_database_is_migrated_keeping_its_messages_and_gets_rooms(tmp_path):
    path = tmp_path / "v4.db"
    db = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:4]:
        step(db)
    db.execute("PRAGMA user_version = 4")
    db.executemany("INSERT INTO users (username, created_at) VALUES (?, 0)", [("alice",), ("bob",)])
    db.execute("INSERT INTO conversations VALUES ('alice', 'bob', 2)")
    db.executemany(
        "INSERT INTO messages VALUES ('alice', 'bob', ?, ?, ?, ?, ?, ?)",
        [(1, "m-00000001", "alice", "bob", "one", 1), (2, "m-00000002", "alice", "bob", "two", 2)],
    )
    db.executemany("INSERT INTO sides VALUES (?, ?, 2, ?, ?)", [("alice", "bob", 2, 0), ("bob", "alice", 0, 2)])
    db.close()
    store = SQLiteStore(path)
    await store.open()
    assert [m.body for m in await history(store)] == ["one", "two"]
    [bob_view], _ = await store.list_conversations("bob", None, 10)
    assert (bob_view.with_, bob_view.title, bob_view.unread, bob_view.last.body) == ("alice", None, 2, "two")
    assert (await store.save_message("alice", "m-00000002", "bob", "retry", 9)).created is False
    assert await store.create_room("#lab", "alice", "", ["bob"], 10) == RoomRecord("#lab", "", "alice", ("alice", "bob"))
    assert (await store.save_message("bob", "m-00000003", "#lab", "rooms work", 11)).message.seq == 1
    await store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    db.close()


# -- rooms: what only the self-hosted server does ---------------------------------------------


async def room_view(store, user, room="#lab"):
    return next(c for c in (await store.list_conversations(user, None, 10))[0] if c.with_ == room)


async def test_a_removed_user_leaves_every_room_and_what_they_said_there_goes(store):
    await store.create_user("carol", None, 0)
    await store.create_room("#lab", "alice", "The lab", ["bob", "carol"], 1)
    await store.create_room("#solo", "alice", "", [], 1)
    await store.create_room("#bobs", "bob", "", ["alice"], 1)
    await store.save_message("alice", "a-00000001", "#lab", "from alice", 2)
    await store.save_message("bob", "b-00000001", "#lab", "from bob", 3)
    await store.save_message("alice", "a-00000002", "#lab", "alice again", 4)
    await store.save_message("alice", "a-00000003", "#solo", "note", 5)
    assert (await room_view(store, "carol")).unread == 3

    assert await store.delete_user("alice")

    assert await store.get_room("#lab") == RoomRecord("#lab", "The lab", "bob", ("bob", "carol")), "bob took over"
    assert await store.get_room("#bobs") == RoomRecord("#bobs", "", "bob", ("bob",))
    assert await store.get_room("#solo") is None, "alice was its last member"
    assert [m.body for m in await history(store, "carol", "#lab")] == ["from bob"]
    carol, bob = await room_view(store, "carol"), await room_view(store, "bob")
    assert (carol.unread, carol.last.body) == (1, "from bob"), "unread counts what is left"
    assert (bob.unread, bob.last_seq) == (0, 3), "seq goes on: clients keep what they cached"
    await store.create_user("alice", None, 9)  # someone else takes the name
    again = await store.save_message("alice", "a-00000001", "bob", "hello", 10)
    assert again.created, "no idempotency key of the old alice is left"
    with pytest.raises(NotAMember):
        await store.save_message("alice", "a-00000004", "#lab", "let me back in", 11)
    assert [c.with_ for c in (await store.list_conversations("alice", None, 10))[0]] == ["bob"]
    solo = await store.create_room("#solo", "alice", "", [], 12)
    assert solo is not None and await history(store, "alice", "#solo") == []


async def test_retention_purges_room_messages_and_fixes_every_members_unread(store):
    await store.create_user("carol", None, 0)
    await store.create_room("#lab", "alice", "", ["bob", "carol"], 0)
    for day in range(5):
        await store.save_message("alice", f"a-day-{day:04d}", "#lab", f"a{day}", 10 + day)
    await store.save_message("bob", "b-day-0005", "#lab", "b5", 15)
    await store.mark_read("carol", "#lab", 1)
    await store.save_message("alice", "d-00000001", "bob", "direct, old", 10)

    assert await store.purge_messages(13) == 4, "days 0-2 of the room and the old direct message"

    assert [m.body for m in await history(store, "carol", "#lab")] == ["a3", "a4", "b5"]
    views = {user: await room_view(store, user) for user in ("alice", "bob", "carol")}
    assert {user: (v.read_seq, v.unread) for user, v in views.items()} == {
        "alice": (5, 1), "bob": (6, 0), "carol": (1, 3),
    }, "carol had 5 unread, two of them went"  # fmt: skip
    assert (await store.save_message("carol", "c-00000001", "#lab", "after", 20)).message.seq == 7
    assert await store.purge_messages(13) == 0, "nothing more to do"


# -- odd input ---------------------------------------------------------------------------------


async def test_odd_numbers_and_text_do_not_crash(store):
    saved = await store.save_message("alice", "nul-0000001", "bob", "a\x00b", 1)
    assert (await history(store))[0].body == "a\x00b"
    huge = 10**30
    assert await store.get_messages("alice", "bob", before=huge, after=None, limit=5) == ([saved.message], False)
    assert await store.get_messages("alice", "bob", before=None, after=-huge, limit=huge) == ([saved.message], False)
    assert await store.mark_read("bob", "alice", huge) == 1
    assert await store.count_login_failures("alice", -huge) == 0
    assert await store.list_users("\x00", 10) and await store.get_user("'; --") is None
    with pytest.raises(ValueError):
        await store.list_conversations("alice", "9" * 40 + ":bob", 10)
    assert await store.healthy()
