"""The self-hosted server's chores over a real SQLite store with a fixed clock: retention
(``serve --retention-days``) and forgetting nicknames (``serve --auth open --forget-after``)."""

from __future__ import annotations

import pytest

from tui_chat.server.housekeeping import DAY_MS, MINUTE_MS, Housekeeper
from tui_chat.server.serve import build_app
from tui_chat.server.settings import Settings
from tui_chat.server.store import ConnectionRecord, SessionRecord
from tui_chat.server.stores.sqlite import SQLiteStore
from tui_chat_dev.clock import START_MS, ManualClock

START = START_MS


@pytest.fixture
async def store(tmp_path):
    opened = SQLiteStore(tmp_path / "chat.db")
    await opened.open()
    yield opened
    await opened.close()


async def conversation(store, a: str, b: str) -> list[str]:
    page, _ = await store.get_messages(a, b, before=None, after=0, limit=500)
    return [m.body for m in page]


async def test_retention_deletes_only_what_is_older_and_fixes_unread_counts(store):
    for name in ("alice", "bob", "carol"):
        await store.create_user(name, "hash", 0)
    for day in range(10):  # one message a day from alice to bob
        await store.save_message("alice", f"a-day-{day:04d}", "bob", f"a{day}", START + day * DAY_MS)
    await store.save_message("carol", "c-recent-1", "alice", "recent", START + 9 * DAY_MS)
    await store.mark_read("bob", "alice", 2)  # bob has read the first two days
    clock = ManualClock()
    clock.now = START + 10 * DAY_MS
    keeper = Housekeeper(store, clock, retention_days=5)

    purged, _ = await keeper.run_once()

    assert purged == 5, "days 0-4"
    assert await conversation(store, "alice", "bob") == [f"a{d}" for d in range(5, 10)]
    assert await conversation(store, "carol", "alice") == ["recent"], "a recent conversation is untouched"
    [bob_view] = [c for c in (await store.list_conversations("bob", None, 10))[0] if c.with_ == "alice"]
    assert bob_view.unread == 5, "only the unread messages that remain are counted (8 before)"
    assert bob_view.last.body == "a9"
    again = await store.save_message("alice", "a-new-0001", "bob", "after the purge", clock.now)
    assert again.message.seq == 11, "seq goes on: clients keep what they cached"
    assert (await keeper.run_once())[0] == 0, "nothing more to do"


async def test_forgetting_nicknames_that_have_been_gone_long_enough(store):
    clock = ManualClock()
    for name in ("gone", "here", "brief"):
        await store.ensure_user(name, START)
    await store.create_user("member", "argon2-hash", START)  # an account: never forgotten this way
    await store.save_message("gone", "g-0000001", "here", "private to gone", START)
    await store.save_message("member", "m-0000001", "gone", "to gone", START)
    await store.save_message("member", "m-0000002", "here", "to here", START)
    await store.create_session(SessionRecord("fam-gone-000000000000", "gone", "dev-00001", START, START + DAY_MS, START + DAY_MS), "h", keep_at_most=5)
    for user, conn in (("gone", "c1"), ("here", "c2"), ("brief", "c3")):
        await store.add_connection(ConnectionRecord(conn, user, f"device-{conn}", START))
    await store.remove_connection("c1", START + 1 * MINUTE_MS)  # gone left at minute 1
    await store.remove_connection("c3", START + 9 * MINUTE_MS)  # brief left at minute 9
    clock.now = START + 12 * MINUTE_MS
    keeper = Housekeeper(store, clock, forget_after_minutes=10)

    _, forgotten = await keeper.run_once()

    assert forgotten == ["gone"], "here is still connected, brief left only 3 minutes ago"
    assert await store.get_user("gone") is None
    assert await conversation(store, "here", "gone") == [] and await conversation(store, "member", "gone") == []
    assert [c.with_ for c in (await store.list_conversations("member", None, 10))[0]] == ["here"]
    assert await store.list_sessions("gone", clock.now) == []
    await store.ensure_user("gone", clock.now)  # someone new takes the name
    assert await conversation(store, "gone", "here") == [], "and finds nothing of the one before"
    clock.now = START + 30 * MINUTE_MS
    assert (await keeper.run_once())[1] == ["brief", "gone"], "the new one too, once gone long enough"
    assert await store.get_user("member") is not None and await store.get_user("here") is not None


def test_serve_wires_the_chores_from_its_settings(tmp_path):
    app = build_app(Settings(db=tmp_path / "a.db", auth="open", retention_days=30, forget_after_minutes=15))
    assert (app.housekeeper.retention_days, app.housekeeper.forget_after_minutes) == (30, 15)
    app = build_app(Settings(db=tmp_path / "b.db", auth="accounts", forget_after_minutes=15))
    assert app.housekeeper.forget_after_minutes is None, "forgetting is for nicknames (open mode) only"


async def test_files_nobody_holds_are_deleted_with_their_bytes_and_held_ones_stay(store, tmp_path):
    """An upload never attached goes after a day; an attached file goes with the last message
    that held it (here, retention), bytes first; a file still held stays, however old."""
    from tui_chat import protocol as p
    from tui_chat.server.file_transfer import FileFolder, FolderLinks
    from tui_chat.server.files import FileRoutes
    from tui_chat.server.store import FileRecord

    for name in ("alice", "bob"):
        await store.create_user(name, "hash", 0)
    folder = FileFolder(tmp_path / "files")
    folder.open()
    clock = ManualClock()
    clock.now = START
    keeper = Housekeeper(store, clock, retention_days=3)
    keeper.files = FileRoutes(type("Core", (), {"store": store})(), FolderLinks(b"s" * 32, folder))

    async def uploaded(file_id: str, at: int) -> None:
        await store.create_file(FileRecord(file_id, "alice", f"{file_id}.txt", 1, "", "0" * 64, at), max_pending=20)
        await store.file_uploaded(file_id)
        folder.path(file_id).write_bytes(b"x")

    await uploaded("never-attached", START)
    await uploaded("kept-old", START)
    await uploaded("purged-later", START + 2 * DAY_MS)
    await store.save_message("alice", "msg-kept-01", "bob", "", START, p.Attachment("kept-old", "a", 1, ""))
    await store.save_message("alice", "msg-gone-01", "bob", "", START + 2 * DAY_MS, p.Attachment("purged-later", "b", 1, ""))
    await store.save_message("alice", "msg-keep-02", "bob", "still here", START + 5 * DAY_MS, p.Attachment("kept-old", "a", 1, ""))

    clock.now = START + 23 * 60 * MINUTE_MS
    await keeper.run_once()
    assert folder.path("never-attached").exists(), "a day to attach it"
    clock.now = START + 6 * DAY_MS  # retention removes the messages of days 0-2
    await keeper.run_once()
    assert not folder.path("never-attached").exists() and await store.get_file("never-attached") is None
    assert not folder.path("purged-later").exists() and await store.get_file("purged-later") is None
    assert folder.path("kept-old").exists() and await store.get_file("kept-old") is not None, "day 5's message holds it"
