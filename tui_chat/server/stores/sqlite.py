"""The embedded default store: SQLite in WAL mode, with group commit.

Threads
    One writer thread owns the only writing connection. Callers queue write jobs; the writer
    takes everything already queued (or, with ``group_commit_window_ms``, whatever arrives
    within that window), runs it in ONE ``BEGIN IMMEDIATE … COMMIT`` and resolves each
    caller's future on its event loop. Each job runs in its own SAVEPOINT, so a job that fails
    on its own (bad input) is rolled back alone and only its caller gets the exception; when
    the database itself fails (disk full, I/O error) the whole batch is rolled back and every
    caller of it gets :class:`StoreUnavailable`. Under load this batching is automatic: while
    one commit is being fsynced the next batch queues up, so a hundred concurrent senders share
    one fsync instead of paying one each.

    Reads run on a second connection in a single reader thread. WAL lets them proceed while a
    commit is being flushed, and they only ever see committed data. The event loop never
    touches the disk.

Durability
    ``synchronous=FULL``: a commit returns only after the WAL is fsynced, and ``save_message``
    returns (so the core acks) only after its commit returned.

    - ``kill -9`` of the server loses nothing that was acked: the commit happened before the
      ack. Writes still queued, or in a transaction not yet committed, are rolled back by
      SQLite on the next open; their senders got no ack and resend with the same id, which is
      then stored once. (If a commit reports an error, its callers get ``StoreUnavailable``
      and retry; should that commit have reached the disk after all, the retry finds the
      original and returns it.)
    - A power cut loses nothing acked on a disk that honours fsync/flush. On a disk, RAID
      controller or virtual machine that acknowledges writes it has only cached, the last
      transactions before the cut can be lost (the database itself stays consistent).

Connections
    Live connections are kept in memory (dicts by id and by user, and the set of presence
    watchers), not in a table: a self-hosted server owns every socket it has and all of them
    die with the process, so a table would only add a disk write per connect and leave stale
    rows behind after a crash. Only ``last_seen`` is persisted, through the writer.

Schema
    ``sqlite_schema.py`` (migrations through the shared :mod:`tui_chat.migrations` runner);
    the writer thread is ``sqlite_writer.py``; this module holds the queries. A room's messages
    and seq counter are stored as a conversation's, under the key (room, room); each member has
    a side (member, room) while a member, so sends and listings work alike for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import re
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_chat.protocol import Attachment, ConversationSummary, Message, is_room
from tui_chat.server.stores.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew, connect
from tui_chat.server.stores.sqlite_writer import GroupCommitWriter, is_unavailable
from tui_chat.server.store import (
    ConnectionRecord,
    ConnectResult,
    Departure,
    DisconnectResult,
    FileRecord,
    NotAMember,
    RoomFull,
    RoomRecord,
    Rotation,
    RotationOutcome,
    SaveResult,
    SessionRecord,
    Store,
    StoreUnavailable,
    UnknownUser,
    UserRecord,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteStore", "SchemaTooNew"]

log = logging.getLogger("tui_chat.store")

LOGIN_FAILURE_RETENTION_MS = 24 * 60 * 60 * 1000
"""Login failures older than this are purged when a new one is recorded (the throttling
window of ``accounts.py`` is 15 minutes)."""

_INT64_MAX = 2**63 - 1


# -- helpers ---------------------------------------------------------------------------------


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _conversation_key(user: str, other: str) -> tuple[str, str]:
    """The (user_a, user_b) a conversation is stored under: its two users in order, or
    (room, room) for a room."""
    return (other, other) if is_room(other) else _pair(user, other)


def _int64(n: int) -> int:
    """Clamp a caller's integer into SQLite's range (binding a larger one raises OverflowError)."""
    return max(-_INT64_MAX - 1, min(int(n), _INT64_MAX))


# Constants put into queries (their "nosec B608"); every value is bound as a parameter.
_MESSAGE_COLUMNS = "seq, id, sender, recipient, body, ts, file_id, file_name, file_size, file_type"
_FILE_COLUMNS = "file_id, owner, name, size, type, sha256, created_at, uploaded"


def _message(row: tuple) -> Message:
    seq, msg_id, sender, recipient, body, ts, file_id, file_name, file_size, file_type = row
    attachment = Attachment(file_id, file_name, file_size, file_type) if file_id is not None else None
    return Message(id=msg_id, sender=sender, to=recipient, body=body, seq=seq, ts=ts, attachment=attachment)


def _file_values(attachment: Attachment | None) -> tuple:
    if attachment is None:
        return (None, None, None, None)
    return (attachment.file_id, attachment.name, attachment.size, attachment.type)


def _attach(db: sqlite3.Connection, attachment: Attachment | None) -> None:
    """The file is held by a message from now on (deleted once none holds it)."""
    if attachment is not None:
        db.execute("UPDATE files SET attached = 1 WHERE file_id = ?", (attachment.file_id,))


_USER_COLUMNS = "username, password_hash, status, text, last_seen, created_at"

_CURSOR = re.compile(r"(-?[0-9]{1,19}):(.+)", re.DOTALL)


_SESSION_COLUMNS = "family, username, device, started_at, ends_at, idle_until"


def _session(row: tuple) -> SessionRecord:
    return SessionRecord(
        family=row[0], username=row[1], device=row[2], started_at=row[3], ends_at=row[4], idle_until=row[5]
    )


def _encode_cursor(last_ts: int, other: str) -> str:
    return f"{last_ts}:{other}"


def _decode_cursor(cursor: str) -> tuple[int, str]:
    """Conversation cursors are ``<last_ts>:<other user>`` of the last item of the page before:
    keyset paging, so a page never repeats or skips a conversation because another one got a
    message meanwhile. (A conversation that gets a message while it is being paged moves to the
    front and may not appear on a later page; its ``message`` event reaches the client anyway.)"""
    match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise ValueError("invalid cursor")
    return _int64(int(match[1])), match[2]


@dataclass
class _Connections:
    by_id: dict[str, ConnectionRecord] = field(default_factory=dict)
    by_user: dict[str, dict[str, ConnectionRecord]] = field(default_factory=dict)
    watchers: dict[str, None] = field(default_factory=dict)  # an ordered set of conn ids


# -- rooms: steps of write jobs (each job is one transaction) ----------------------------------

# One statement, so one consistent snapshot on the reader too. A room always has a member.
_ROOM_QUERY = (
    "SELECT r.title, r.owner, m.user FROM rooms AS r JOIN room_members AS m ON m.room = r.room"
    " WHERE r.room = ? ORDER BY m.join_order"
)


def _room_record(db: sqlite3.Connection, room: str) -> RoomRecord | None:
    rows = db.execute(_ROOM_QUERY, (room,)).fetchall()
    if not rows:
        return None
    title, owner, _ = rows[0]
    return RoomRecord(room=room, title=title, owner=owner, members=tuple(row[2] for row in rows))


def _join_room(db: sqlite3.Connection, room: str, user: str, now: int) -> None:
    """``user`` becomes the newest member, with a side whose read mark is 0: every message of
    someone else is unread. The room counts as active since its last message, or since now."""
    db.execute(
        "INSERT INTO room_members (room, user, join_order)"
        " SELECT :room, :user, coalesce(max(join_order), 0) + 1 FROM room_members WHERE room = :room",
        {"room": room, "user": user},
    )
    db.execute(
        "INSERT INTO sides (user, other, last_ts, read_seq, unread) VALUES (:user, :room,"
        " coalesce((SELECT ts FROM messages WHERE user_a = :room AND user_b = :room ORDER BY seq DESC LIMIT 1), :now),"
        " 0, (SELECT count(*) FROM messages WHERE user_a = :room AND user_b = :room AND sender <> :user))",
        {"room": room, "user": user, "now": now},
    )


def _leave_room(db: sqlite3.Connection, room: str, user: str) -> Departure:
    record = _room_record(db, room)
    if record is None or user not in record.members:
        return Departure(record, left=False)
    db.execute("DELETE FROM room_members WHERE room = ? AND user = ?", (room, user))
    db.execute("DELETE FROM sides WHERE user = ? AND other = ?", (user, room))
    remaining = tuple(member for member in record.members if member != user)
    if not remaining:
        _delete_room(db, room)
        return Departure(None, left=True)
    owner = record.owner
    if owner == user:
        owner = remaining[0]  # the longest-standing member
        db.execute("UPDATE rooms SET owner = ? WHERE room = ?", (owner, room))
    return Departure(dataclasses.replace(record, owner=owner, members=remaining), left=True)


def _delete_room(db: sqlite3.Connection, room: str) -> None:
    """With its messages, so their idempotency keys go too, and its seq counter: a room created
    again with that name starts at 1."""
    db.execute("DELETE FROM messages WHERE user_a = ? AND user_b = ?", (room, room))
    db.execute("DELETE FROM conversations WHERE user_a = ? AND user_b = ?", (room, room))
    db.execute("DELETE FROM rooms WHERE room = ?", (room,))


def _recount_unread(db: sqlite3.Connection, a: str, b: str) -> None:
    """After messages of conversation (a, b) were deleted: each side's unread count drops by the
    unread messages that went (only ever down, so sides at 0 are left alone)."""
    if a == b and is_room(a):
        sides = "other = :a AND user IN (SELECT user FROM room_members WHERE room = :a)"
    else:
        sides = "((user = :a AND other = :b) OR (user = :b AND other = :a))"
    db.execute(
        # Unread: the messages above the read mark that someone else sent.
        "UPDATE sides SET unread = (SELECT count(*) FROM messages AS m WHERE m.user_a = :a AND m.user_b = :b"
        f" AND m.seq > sides.read_seq AND m.sender <> sides.user) WHERE {sides} AND unread > 0",  # nosec B608 - one of two constants
        {"a": a, "b": b},
    )


# -- the store -------------------------------------------------------------------------------


class SQLiteStore(Store):
    def __init__(
        self, path: str | os.PathLike, *, group_commit_window_ms: float = 0.0, max_batch: int = 1000
    ) -> None:
        """``group_commit_window_ms``: how long the writer waits for more jobs after the first
        one of a batch. 0 (the default) takes only what is already queued: no added latency
        when idle, and natural batching under load. ``max_batch`` bounds one transaction."""
        self.path = str(Path(path))
        self._writer = GroupCommitWriter(self.path, window_s=group_commit_window_ms / 1000, max_batch=max_batch)
        self._reader: ThreadPoolExecutor | None = None
        self._read_db: sqlite3.Connection | None = None
        self._conns = _Connections()
        self._usernames: set[str] = set()
        """Every user known to exist, so the check on each send needs no read. A miss is
        checked on disk, so a user created by another process is still found."""
        self._closed = False
        self._closing: asyncio.Future | None = None

    @property
    def commit_count(self) -> int:
        """Transactions committed by the writer (tests and benchmarks read it)."""
        return self._writer.commit_count

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._writer.start()  # the writer opened and migrated the database
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
            loop = asyncio.get_running_loop()
            self._read_db = await loop.run_in_executor(self._reader, functools.partial(connect, self.path, writer=False))
            names = await self._read(lambda db: [row[0] for row in db.execute("SELECT username FROM users")])
            self.server_id = await self._read(lambda db: db.execute("SELECT value FROM meta WHERE key = 'server_id'").fetchone()[0])
        except BaseException:
            await self.close()
            raise
        self._usernames = set(names)

    async def close(self) -> None:
        """Flush every queued write, then stop both threads. Safe to call more than once."""
        if self._closing is None:
            self._closed = True  # from now on new calls are refused, queued ones still run
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        await self._writer.stop()
        if self._reader is not None:
            if self._read_db is not None:
                await asyncio.get_running_loop().run_in_executor(self._reader, self._read_db.close)
            await asyncio.to_thread(self._reader.shutdown, wait=True)

    async def healthy(self) -> bool:
        if not self._writer.alive:
            return False
        try:
            return await self._read(lambda db: db.execute("SELECT 1").fetchone()[0] == 1)
        except (StoreUnavailable, sqlite3.Error):
            return False

    # -- the two threads ----------------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` on the writer's connection, inside the next group commit."""
        if self._closed or not self._writer.alive:
            raise StoreUnavailable("the store is closed")
        return await self._writer.write(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._closed or self._read_db is None:
            raise StoreUnavailable("the store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, fn, self._read_db)
        except sqlite3.Error as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"the database could not be read: {exc}") from exc
            raise

    # -- users --------------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str | None, now: int) -> bool:
        def insert(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (username, password_hash, now),
            )
            return cursor.rowcount == 1

        created = await self._write(insert)
        self._usernames.add(username)  # created now or taken before: it exists either way
        return created

    async def ensure_user(self, username: str, now: int) -> None:
        if username not in self._usernames:
            await self.create_user(username, None, now)

    async def user_exists(self, username: str) -> bool:
        if username in self._usernames:
            return True
        if await self.get_user(username) is None:
            return False
        self._usernames.add(username)
        return True

    async def get_user(self, username: str) -> UserRecord | None:
        row = await self._read(
            lambda db: db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,)).fetchone()  # nosec B608
        )
        return UserRecord(*row) if row else None

    async def list_users(self, after: str | None, limit: int) -> list[UserRecord]:
        rows = await self._read(
            lambda db: db.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE username > ? ORDER BY username LIMIT ?",  # nosec B608
                (after or "", _int64(max(limit, 0))),
            ).fetchall()
        )
        return [UserRecord(*row) for row in rows]

    async def set_status(self, username: str, status: str, text: str) -> None:
        await self._write(
            lambda db: db.execute("UPDATE users SET status = ?, text = ? WHERE username = ?", (status, text, username))
        )

    # -- what only the self-hosted server does (``tui-chat admin``, ``serve --forget-after``) ----

    async def set_password_hash(self, username: str, password_hash: str) -> bool:
        """A new password for an account with one; False when there is no such account."""
        return await self._write(
            lambda db: db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ? AND password_hash IS NOT NULL", (password_hash, username)
            ).rowcount > 0
        )  # fmt: skip

    async def delete_user(self, username: str) -> bool:
        """Remove a user and everything of theirs: their sessions, every conversation they were
        in, on both sides, and what they said in rooms (nothing of it is left for whoever takes
        the name later, not even an idempotency key). They leave every room they were in: the
        owner's hand-over and the deletion of a room left empty as for anyone leaving."""

        def delete(db: sqlite3.Connection) -> bool:
            for (room,) in db.execute("SELECT room FROM room_members WHERE user = ?", (username,)).fetchall():
                _leave_room(db, room, username)
            pairs = db.execute("SELECT user_a, user_b FROM conversations WHERE user_a = ? OR user_b = ?", (username, username)).fetchall()
            for a, b in pairs:
                db.execute("DELETE FROM messages WHERE user_a = ? AND user_b = ?", (a, b))
                db.execute("DELETE FROM conversations WHERE user_a = ? AND user_b = ?", (a, b))
            # What is left of theirs is in rooms (the idempotency index finds it).
            rooms = {room for (room,) in db.execute("DELETE FROM messages WHERE sender = ? RETURNING user_a", (username,))}
            for room in rooms:
                _recount_unread(db, room, room)
            db.execute("DELETE FROM sides WHERE user = ? OR other = ?", (username, username))
            db.execute("DELETE FROM sessions WHERE username = ?", (username,))
            # Failures are counted per "name@address" (accounts.py).
            db.execute("DELETE FROM login_failures WHERE username = ? OR substr(username, 1, ?) = ?", (username, len(username) + 1, username + "@"))
            return db.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount > 0

        gone = await self._write(delete)
        self._usernames.discard(username)
        return gone

    async def reload_usernames(self) -> None:
        """Re-read who exists: another process (``tui-chat admin``) may have removed someone."""
        self._usernames = set(await self._read(lambda db: [row[0] for row in db.execute("SELECT username FROM users")]))

    async def users_gone_since(self, before: int) -> list[str]:
        """Password-less users (open mode's nicknames) not connected now and not seen since ``before``."""
        rows = await self._read(
            lambda db: db.execute(
                "SELECT username FROM users WHERE password_hash IS NULL AND coalesce(last_seen, created_at) < ?",
                (_int64(before),),
            ).fetchall()
        )
        return [name for (name,) in rows if not self._conns.by_user.get(name)]

    async def backup(self, target: str | os.PathLike) -> None:
        """A consistent copy of the live database at ``target`` (SQLite's online backup, on the
        reader's connection: writes go on meanwhile), created 0600."""
        target = Path(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)

        def copy(db: sqlite3.Connection) -> None:
            with contextlib.closing(sqlite3.connect(target)) as out:
                db.backup(out, pages=1024)

        try:
            await self._read(copy)
        except BaseException:
            target.unlink(missing_ok=True)  # no half a backup that looks like one
            raise

    # -- connections (in memory, see the module docstring) ------------------------------------

    async def add_connection(self, conn: ConnectionRecord) -> ConnectResult:
        had_any = bool(self._conns.by_user.get(conn.username))
        self._forget(conn.conn_id)  # the same id registered twice: keep only the newer record
        replaced = next(
            (c for c in self._conns.by_user.get(conn.username, {}).values() if c.device == conn.device), None
        )
        if replaced is not None:
            self._forget(replaced.conn_id)
        self._conns.by_user.setdefault(conn.username, {})[conn.conn_id] = conn
        self._conns.by_id[conn.conn_id] = conn
        return ConnectResult(replaced=replaced, first_for_user=not had_any)

    async def remove_connection(self, conn_id: str, now: int) -> DisconnectResult:
        conn = self._forget(conn_id)
        if conn is None:
            return DisconnectResult(None, False)
        last = conn.username not in self._conns.by_user
        if last:
            await self._write(
                lambda db: db.execute("UPDATE users SET last_seen = ? WHERE username = ?", (now, conn.username))
            )
        return DisconnectResult(conn, last)

    def _forget(self, conn_id: str) -> ConnectionRecord | None:
        conn = self._conns.by_id.pop(conn_id, None)
        if conn is None:
            return None
        self._conns.watchers.pop(conn_id, None)
        mine = self._conns.by_user.get(conn.username)
        if mine is not None:
            mine.pop(conn_id, None)
            if not mine:
                del self._conns.by_user[conn.username]
        return conn

    async def get_connection(self, conn_id: str) -> ConnectionRecord | None:
        return self._conns.by_id.get(conn_id)

    async def user_connections(self, username: str) -> list[ConnectionRecord]:
        return list(self._conns.by_user.get(username, {}).values())

    async def watch_presence(self, conn_id: str) -> None:
        if conn_id in self._conns.by_id:  # a closed connection would never be forgotten
            self._conns.watchers[conn_id] = None

    async def presence_watchers(self) -> list[str]:
        return list(self._conns.watchers)

    async def presence_audience(self, username: str) -> list[str]:
        audience = dict(self._conns.watchers)
        audience.update(dict.fromkeys(self._conns.by_user.get(username, {})))
        return list(audience)

    async def clear_connections(self) -> None:
        self._conns = _Connections()

    # -- messages -----------------------------------------------------------------------------

    async def save_message(self, sender: str, msg_id: str, to: str, body: str, now: int, attachment: Attachment | None = None) -> SaveResult:
        if is_room(to):
            return await self._write(lambda db: self._save_to_room(db, sender, msg_id, to, body, now, attachment))
        a, b = _pair(sender, to)

        def save(db: sqlite3.Connection) -> SaveResult:
            original = self._original(db, sender, msg_id)
            if original is not None:
                return original
            # Both users still exist, checked where the write happens: ``tui-chat admin`` may have
            # removed one from another process, and a conversation must not outlive them.
            (found,) = db.execute("SELECT count(*) FROM users WHERE username IN (?, ?)", (sender, to)).fetchone()
            if found < (1 if sender == to else 2):
                raise UnknownUser(sender if not db.execute("SELECT 1 FROM users WHERE username = ?", (sender,)).fetchone() else to)
            (seq,) = db.execute(
                "INSERT INTO conversations (user_a, user_b, last_seq) VALUES (?, ?, 1)"
                " ON CONFLICT DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
                (a, b),
            ).fetchone()
            db.execute(
                "INSERT INTO messages (user_a, user_b, seq, id, sender, recipient, body, ts, file_id, file_name, file_size, file_type)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (a, b, seq, msg_id, sender, to, body, now, *_file_values(attachment)),
            )
            _attach(db, attachment)
            # The sender has read everything up to their own message.
            db.execute(
                "INSERT INTO sides (user, other, last_ts, read_seq, unread) VALUES (?, ?, ?, ?, 0)"
                " ON CONFLICT DO UPDATE SET last_ts = excluded.last_ts, read_seq = excluded.read_seq, unread = 0",
                (sender, to, now, seq),
            )
            if to != sender:
                db.execute(
                    "INSERT INTO sides (user, other, last_ts, unread) VALUES (?, ?, ?, 1)"
                    " ON CONFLICT DO UPDATE SET last_ts = excluded.last_ts, unread = unread + 1",
                    (to, sender, now),
                )
            return SaveResult(Message(id=msg_id, sender=sender, to=to, body=body, seq=seq, ts=now, attachment=attachment), created=True)

        try:
            return await self._write(save)
        except UnknownUser as gone:
            self._usernames.discard(str(gone))  # no longer taken for existing on the next send
            raise

    @staticmethod
    def _original(db: sqlite3.Connection, sender: str, msg_id: str) -> SaveResult | None:
        """The message already stored under (sender, id), if any. Earlier jobs of the same batch
        are visible here, so a retry queued behind its original finds it too."""
        row = db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE sender = ? AND id = ?", (sender, msg_id)  # nosec B608
        ).fetchone()
        return SaveResult(_message(row), created=False) if row is not None else None

    @classmethod
    def _save_to_room(cls, db: sqlite3.Connection, sender: str, msg_id: str, room: str, body: str, now: int,
                      attachment: Attachment | None) -> SaveResult:  # fmt: skip
        """Four statements, whatever the room's size; the last one updates a side per member."""
        original = cls._original(db, sender, msg_id)
        if original is not None:
            return original
        # Membership is checked in the statement that takes the seq: someone who just left (or
        # was removed by an earlier job of this batch) stores nothing.
        row = db.execute(
            "UPDATE conversations SET last_seq = last_seq + 1 WHERE user_a = :room AND user_b = :room"
            " AND EXISTS (SELECT 1 FROM room_members WHERE room = :room AND user = :sender) RETURNING last_seq",
            {"room": room, "sender": sender},
        ).fetchone()
        if row is None:
            raise NotAMember(room)
        (seq,) = row
        db.execute(
            "INSERT INTO messages (user_a, user_b, seq, id, sender, recipient, body, ts, file_id, file_name, file_size, file_type)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (room, room, seq, msg_id, sender, room, body, now, *_file_values(attachment)),
        )
        _attach(db, attachment)
        # Every member's side at once (the members' keys find their sides): the sender has read
        # up to their own message, everyone else has one more unread.
        db.execute(
            "UPDATE sides SET last_ts = :now,"
            " read_seq = CASE WHEN user = :sender THEN :seq ELSE read_seq END,"
            " unread = CASE WHEN user = :sender THEN 0 ELSE unread + 1 END"
            " WHERE user IN (SELECT user FROM room_members WHERE room = :room) AND other = :room",
            {"now": now, "sender": sender, "seq": seq, "room": room},
        )
        return SaveResult(Message(id=msg_id, sender=sender, to=room, body=body, seq=seq, ts=now, attachment=attachment), created=True)

    async def get_messages(
        self, user: str, other: str, *, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        a, b = _conversation_key(user, other)
        limit = max(0, min(limit, _INT64_MAX - 1))
        fetch = limit + 1  # one more than asked tells whether more exist

        def page(db: sqlite3.Connection) -> tuple[list[Message], bool]:
            # Both are range scans of the primary key (user_a, user_b, seq).
            if after is not None:
                rows = db.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE user_a = ? AND user_b = ? AND seq > ?"  # nosec B608
                    " ORDER BY seq LIMIT ?",
                    (a, b, _int64(after), fetch),
                ).fetchall()
                return [_message(r) for r in rows[:limit]], len(rows) > limit
            rows = db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE user_a = ? AND user_b = ? AND seq < ?"  # nosec B608
                " ORDER BY seq DESC LIMIT ?",
                (a, b, _INT64_MAX if before is None else _int64(before), fetch),
            ).fetchall()
            return [_message(r) for r in reversed(rows[:limit])], len(rows) > limit

        return await self._read(page)

    async def list_conversations(
        self, user: str, cursor: str | None, limit: int
    ) -> tuple[list[ConversationSummary], str | None]:
        start = _decode_cursor(cursor) if cursor is not None else None
        limit = max(1, min(limit, 10_000))
        # One statement, so one consistent snapshot: the sides index gives the order, each row
        # then costs a few primary-key lookups (the seq counter, the peer's side or the room, the
        # last message still stored). A room's side is (member, room), its key (room, room).
        query = (
            "SELECT s.other, s.last_ts, s.read_seq, s.unread, c.last_seq, coalesce(peer.read_seq, 0), r.title,"
            " m.seq, m.id, m.sender, m.recipient, m.body, m.ts, m.file_id, m.file_name, m.file_size, m.file_type"
            " FROM sides AS s"
            " JOIN conversations AS c"
            " ON c.user_a = iif(s.other GLOB '#*', s.other, min(s.user, s.other))"
            " AND c.user_b = iif(s.other GLOB '#*', s.other, max(s.user, s.other))"
            " LEFT JOIN sides AS peer ON peer.user = s.other AND peer.other = s.user"
            " LEFT JOIN rooms AS r ON r.room = s.other"
            " LEFT JOIN messages AS m ON m.user_a = c.user_a AND m.user_b = c.user_b"
            " AND m.seq = (SELECT max(seq) FROM messages WHERE user_a = c.user_a AND user_b = c.user_b)"
            " WHERE s.user = ?{after} ORDER BY s.last_ts DESC, s.other LIMIT ?"
        )  # {after} is one of two fixed fragments below, never input

        def listing(db: sqlite3.Connection) -> tuple[list[ConversationSummary], str | None]:
            if start is None:
                rows = db.execute(query.format(after=""), (user, limit + 1)).fetchall()
            else:
                last_ts, other = start
                rows = db.execute(
                    # The first condition lets the index seek straight to the cursor.
                    query.format(after=" AND s.last_ts <= ? AND (s.last_ts < ? OR s.other > ?)"),
                    (user, last_ts, last_ts, other, limit + 1),
                ).fetchall()
            items = []
            for row in rows[:limit]:
                other, _, read_seq, unread, last_seq, peer_read_seq, title = row[:7]
                last = _message(row[7:]) if row[7] is not None else None
                items.append(ConversationSummary(
                    with_=other, last_seq=last_seq, read_seq=read_seq, unread=unread, last=last,
                    peer_read_seq=peer_read_seq, title=title,
                ))  # fmt: skip
            if len(rows) <= limit:
                return items, None
            other, last_ts = rows[limit - 1][:2]
            return items, _encode_cursor(last_ts, other)

        return await self._read(listing)

    async def mark_read(self, user: str, other: str, seq: int) -> int | None:
        a, b = _conversation_key(user, other)
        wanted = _int64(seq)

        def mark(db: sqlite3.Connection) -> int | None:
            row = db.execute(
                "SELECT c.last_seq, s.read_seq FROM sides AS s"
                " JOIN conversations AS c ON c.user_a = ? AND c.user_b = ? WHERE s.user = ? AND s.other = ?",
                (a, b, user, other),
            ).fetchone()
            if row is None:
                return None  # no message yet (or not a member of the room): nothing to read
            target = min(wanted, row[0])
            if target <= row[1]:
                return None  # only ever forward
            # Messages from someone else still above the marker: a short range of the key.
            (unread,) = db.execute(
                "SELECT count(*) FROM messages WHERE user_a = ? AND user_b = ? AND seq > ? AND sender <> ?",
                (a, b, target, user),
            ).fetchone()
            db.execute(
                "UPDATE sides SET read_seq = ?, unread = ? WHERE user = ? AND other = ?", (target, unread, user, other)
            )
            return target

        return await self._write(mark)

    # -- files --------------------------------------------------------------------------------

    async def create_file(self, record: FileRecord, *, max_pending: int) -> bool:
        def create(db: sqlite3.Connection) -> bool:
            (pending,) = db.execute("SELECT count(*) FROM files WHERE owner = ? AND attached = 0", (record.owner,)).fetchone()
            if pending >= max_pending:
                return False
            db.execute(
                f"INSERT INTO files ({_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",  # nosec B608
                (record.file_id, record.owner, record.name, record.size, record.type, record.sha256, record.created_at),
            )
            return True

        return await self._write(create)

    async def get_file(self, file_id: str) -> FileRecord | None:
        row = await self._read(lambda db: db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE file_id = ?", (file_id,)).fetchone())  # nosec B608
        return FileRecord(*row[:7], uploaded=bool(row[7])) if row is not None else None

    async def file_uploaded(self, file_id: str) -> bool:
        return await self._write(lambda db: db.execute("UPDATE files SET uploaded = 1 WHERE file_id = ? AND uploaded = 0", (file_id,)).rowcount == 1)

    async def may_download(self, user: str, file_id: str) -> bool:
        def check(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT 1 FROM files WHERE file_id = :file AND owner = :user"
                " UNION ALL SELECT 1 FROM messages AS m WHERE m.file_id = :file AND ("
                "   (m.recipient NOT GLOB '#*' AND :user IN (m.sender, m.recipient))"
                "   OR EXISTS (SELECT 1 FROM room_members WHERE room = m.recipient AND user = :user))"
                " LIMIT 1",
                {"file": file_id, "user": user},
            ).fetchone()
            return row is not None

        return await self._read(check)

    async def unheld_files(self, unattached_before: int, limit: int) -> list[str]:
        rows = await self._read(
            lambda db: db.execute(
                "SELECT file_id FROM files AS f WHERE (f.attached = 0 AND f.created_at < :before)"
                " OR (f.attached = 1 AND NOT EXISTS (SELECT 1 FROM messages WHERE file_id = f.file_id)) LIMIT :limit",
                {"before": unattached_before, "limit": limit},
            ).fetchall()
        )
        return [file_id for (file_id,) in rows]

    async def delete_files(self, file_ids: list[str]) -> None:
        if file_ids:
            await self._write(lambda db: db.executemany("DELETE FROM files WHERE file_id = ?", [(f,) for f in file_ids]))

    async def purge_messages(self, older_than: int) -> int:
        """Retention, conversation by conversation (rooms too): the reader finds how far each
        one's oldest messages are too old (``seq`` follows ``ts``, so only the doomed rows and one
        more are read), and the writer deletes each range in a transaction of its own, so sends
        wait for one conversation's purge at most, never for the whole database's."""
        cutoff = _int64(older_than)

        def doomed(db: sqlite3.Connection) -> list[tuple[str, str, int]]:
            ranges = []
            for a, b in db.execute("SELECT user_a, user_b FROM conversations").fetchall():
                last = None
                for seq, ts in db.execute(
                    "SELECT seq, ts FROM messages WHERE user_a = ? AND user_b = ? ORDER BY seq", (a, b)
                ):
                    if ts >= cutoff:
                        break
                    last = seq
                if last is not None:
                    ranges.append((a, b, last))
            return ranges

        def delete(a: str, b: str, up_to: int) -> Callable[[sqlite3.Connection], int]:
            def run(db: sqlite3.Connection) -> int:
                gone = db.execute(
                    "DELETE FROM messages WHERE user_a = ? AND user_b = ? AND seq <= ? AND ts < ?", (a, b, up_to, cutoff)
                ).rowcount
                _recount_unread(db, a, b)
                return gone

            return run

        total = 0
        for a, b, up_to in await self._read(doomed):
            total += await self._write(delete(a, b, up_to))
        return total

    # -- rooms --------------------------------------------------------------------------------
    # Each change is one write job, so one transaction: the cap, the owner's hand-over and the
    # room's deletion with its last member cannot interleave with another change.

    async def create_room(self, room: str, owner: str, title: str, members: list[str], now: int) -> RoomRecord | None:
        joining = list(dict.fromkeys([owner, *members]))  # in order, once each, the owner first

        def create(db: sqlite3.Connection) -> RoomRecord | None:
            taken = db.execute(
                "INSERT INTO rooms (room, title, owner, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (room, title, owner, now),
            ).rowcount == 0
            if taken:
                return None
            db.execute("INSERT INTO conversations (user_a, user_b, last_seq) VALUES (?, ?, 0)", (room, room))
            for user in joining:
                _join_room(db, room, user, now)
            return RoomRecord(room=room, title=title, owner=owner, members=tuple(joining))

        return await self._write(create)

    async def get_room(self, room: str) -> RoomRecord | None:
        return await self._read(lambda db: _room_record(db, room))

    async def add_member(self, room: str, user: str, now: int, *, max_members: int) -> tuple[RoomRecord, bool] | None:
        def add(db: sqlite3.Connection) -> tuple[RoomRecord, bool] | None:
            record = _room_record(db, room)
            if record is None:
                return None
            if user in record.members:
                return record, False
            if len(record.members) >= max_members:
                raise RoomFull(room)
            _join_room(db, room, user, now)
            return dataclasses.replace(record, members=(*record.members, user)), True

        return await self._write(add)

    async def remove_member(self, room: str, user: str, now: int) -> Departure:
        return await self._write(lambda db: _leave_room(db, room, user))

    async def set_room_title(self, room: str, title: str) -> RoomRecord | None:
        def retitle(db: sqlite3.Connection) -> RoomRecord | None:
            db.execute("UPDATE rooms SET title = ? WHERE room = ?", (title, room))
            return _room_record(db, room)

        return await self._write(retitle)

    async def get_reads(self, room: str) -> list[tuple[str, int]]:
        return await self._read(
            lambda db: db.execute(
                "SELECT m.user, coalesce(s.read_seq, 0) FROM room_members AS m"
                " LEFT JOIN sides AS s ON s.user = m.user AND s.other = m.room"
                " WHERE m.room = ? ORDER BY m.join_order",
                (room,),
            ).fetchall()
        )

    async def count_rooms(self, user: str) -> int:
        return await self._read(lambda db: db.execute("SELECT count(*) FROM room_members WHERE user = ?", (user,)).fetchone()[0])

    # -- accounts -----------------------------------------------------------------------------

    async def create_session(self, session: SessionRecord, token_hash: str, *, keep_at_most: int) -> None:
        def create(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM sessions WHERE idle_until <= ?", (_int64(session.started_at),))
            db.execute(
                "INSERT INTO sessions (family, username, device, started_at, ends_at, idle_until, token_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session.family, session.username, session.device, _int64(session.started_at),
                 _int64(session.ends_at), _int64(session.idle_until), token_hash),
            )  # fmt: skip
            db.execute(
                "DELETE FROM sessions WHERE family IN (SELECT family FROM sessions WHERE username = ?"
                " ORDER BY started_at DESC, family LIMIT -1 OFFSET ?)",
                (session.username, keep_at_most),
            )

        await self._write(create)

    async def rotate_session(
        self, family: str, presented_hash: str, successor_hash: str, now: int, *, grace_ms: int, idle_ms: int
    ) -> Rotation:
        now = _int64(now)

        def rotate(db: sqlite3.Connection) -> Rotation:
            row = db.execute(f"SELECT {_SESSION_COLUMNS}, token_hash, previous_hash, rotated_at FROM sessions WHERE family = ?", (family,)).fetchone()  # nosec B608 - a constant column list
            if row is None or row[5] <= now:
                return Rotation(RotationOutcome.UNKNOWN)
            session, current, previous, rotated_at = _session(row[:6]), row[6], row[7], row[8]
            if presented_hash == current:
                idle_until = min(_int64(now + idle_ms), session.ends_at)
                db.execute(
                    "UPDATE sessions SET token_hash = ?, previous_hash = ?, rotated_at = ?, idle_until = ? WHERE family = ?",
                    (successor_hash, presented_hash, now, idle_until, family),
                )
                return Rotation(RotationOutcome.ROTATED, session, now)
            if presented_hash == previous and rotated_at is not None and now - rotated_at <= grace_ms:
                return Rotation(RotationOutcome.REPEATED, session, rotated_at)
            db.execute("DELETE FROM sessions WHERE family = ?", (family,))
            return Rotation(RotationOutcome.REPLAYED, session)

        return await self._write(rotate)

    async def session_active(self, family: str, username: str, now: int) -> bool:
        return await self._read(
            lambda db: db.execute(
                "SELECT 1 FROM sessions WHERE family = ? AND username = ? AND idle_until > ?", (family, username, _int64(now))
            ).fetchone() is not None
        )  # fmt: skip

    async def end_session(self, family: str) -> bool:
        return await self._write(lambda db: db.execute("DELETE FROM sessions WHERE family = ?", (family,)).rowcount > 0)

    async def end_user_sessions(self, username: str) -> int:
        return await self._write(lambda db: db.execute("DELETE FROM sessions WHERE username = ?", (username,)).rowcount)

    async def list_sessions(self, username: str, now: int) -> list[SessionRecord]:
        rows = await self._read(
            lambda db: db.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE username = ? AND idle_until > ?"  # nosec B608 - a constant column list
                " ORDER BY started_at, family",
                (username, _int64(now)),
            ).fetchall()
        )
        return [_session(row) for row in rows]

    async def record_login_failure(self, username: str, now: int) -> None:
        def record(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO login_failures (username, ts) VALUES (?, ?)", (username, now))
            db.execute("DELETE FROM login_failures WHERE ts < ?", (_int64(now - LOGIN_FAILURE_RETENTION_MS),))

        await self._write(record)

    async def count_login_failures(self, username: str, since: int) -> int:
        return await self._read(
            lambda db: db.execute(
                "SELECT count(*) FROM login_failures WHERE username = ? AND ts >= ?", (username, _int64(since))
            ).fetchone()[0]
        )

    async def clear_login_failures(self, username: str) -> None:
        await self._write(lambda db: db.execute("DELETE FROM login_failures WHERE username = ?", (username,)))
