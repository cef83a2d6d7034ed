"""The embedded default store: SQLite in WAL mode, with group commit.

Threads
    One writer thread owns the only writing connection. Callers queue write jobs; the writer
    takes everything queued, runs it in ONE transaction (each job in its own SAVEPOINT, so one
    failing job does not spoil the others) and commits once: a hundred concurrent senders share
    one fsync instead of paying one each. Reads run on a second connection in a reader thread;
    WAL lets them proceed while a commit is being flushed. The event loop never touches disk.

Durability
    ``synchronous=FULL``: a commit returns only after the WAL is fsynced, and ``save_message``
    returns (so the core acks) only after its commit returned.

    - ``kill -9`` of the server loses nothing that was acked. Writes still queued or in an
      uncommitted transaction are rolled back by SQLite on the next open; their senders got no
      ack and resend with the same id, which is then stored once.
    - A power cut loses nothing acked on a disk that honours fsync/flush. On a disk or virtual
      machine that acknowledges writes it has only cached, the last transactions before the cut
      can be lost (the database itself stays consistent).

Connections
    Live connections are kept in memory, not in a table: a self-hosted server owns every socket
    it has, and all of them die with the process, so a table would only add a disk write per
    connect and stale rows after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_chat.protocol import ConversationSummary, Message
from tui_chat.server.store import (
    ConnectionRecord,
    ConnectResult,
    DisconnectResult,
    RefreshGrant,
    SaveResult,
    Store,
    StoreUnavailable,
    UserRecord,
)

log = logging.getLogger("tui_chat.store")


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, and a migration must stay one transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_to_1(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE users (
            username TEXT PRIMARY KEY, password_hash TEXT, status TEXT NOT NULL DEFAULT 'online',
            text TEXT NOT NULL DEFAULT '', last_seen INTEGER, created_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        -- One row per conversation: the pair (user_a <= user_b) and its seq counter.
        CREATE TABLE conversations (
            user_a TEXT NOT NULL, user_b TEXT NOT NULL, last_seq INTEGER NOT NULL,
            PRIMARY KEY (user_a, user_b)
        ) WITHOUT ROWID;
        CREATE TABLE messages (
            user_a TEXT NOT NULL, user_b TEXT NOT NULL, seq INTEGER NOT NULL,
            id TEXT NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL,
            body TEXT NOT NULL, ts INTEGER NOT NULL,
            PRIMARY KEY (user_a, user_b, seq)
        ) WITHOUT ROWID;
        CREATE UNIQUE INDEX messages_idempotency ON messages (sender, id);
        -- Each side of a conversation: for listing a user's conversations newest first,
        -- and that side's read marker.
        CREATE TABLE sides (
            user TEXT NOT NULL, other TEXT NOT NULL, last_ts INTEGER NOT NULL DEFAULT 0,
            read_seq INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user, other)
        ) WITHOUT ROWID;
        CREATE INDEX sides_by_activity ON sides (user, last_ts DESC, other);
        CREATE TABLE refresh_tokens (
            token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, device TEXT, expires_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE login_failures (username TEXT NOT NULL, ts INTEGER NOT NULL);
        CREATE INDEX login_failures_by_user ON login_failures (username, ts);
        """
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1]
"""``MIGRATIONS[i]`` takes a database from schema version i to i + 1. Append, never edit."""
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    pass


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def _migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database has schema version {version}, newer than this tui-chat understands ({SCHEMA_VERSION}); upgrade tui-chat"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[target - 1](db)
            db.execute(f"PRAGMA user_version = {target}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.info("database migrated", extra={"schema_version": target})


@dataclass
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    result: Any = None
    error: BaseException | None = None


_STOP = object()


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _message(row: tuple) -> Message:
    seq, msg_id, sender, recipient, body, ts = row
    return Message(id=msg_id, sender=sender, to=recipient, body=body, seq=seq, ts=ts)


_MESSAGE_COLUMNS = "seq, id, sender, recipient, body, ts"


@dataclass
class _Connections:
    by_id: dict[str, ConnectionRecord] = field(default_factory=dict)
    by_user: dict[str, dict[str, ConnectionRecord]] = field(default_factory=dict)
    watchers: set[str] = field(default_factory=set)


class SQLiteStore(Store):
    def __init__(self, path: str | os.PathLike, *, max_batch: int = 1000) -> None:
        self.path = str(Path(path))
        self.max_batch = max_batch
        self.commit_count = 0
        """Transactions committed by the writer (benchmarks and tests read it)."""
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_db: sqlite3.Connection | None = None
        self._conns = _Connections()
        self._usernames: set[str] = set()
        """Every user, so the check on each send needs no trip to the reader thread."""
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        write_db = await asyncio.to_thread(self._open_writer_db)
        self._writer = threading.Thread(target=self._write_loop, args=(write_db,), name="sqlite-writer", daemon=True)
        self._writer.start()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        self._read_db = await self._read(lambda _: _connect(self.path), raw=True)
        self._usernames = set(await self._read(lambda db: [r[0] for r in db.execute("SELECT username FROM users")]))

    def _open_writer_db(self) -> sqlite3.Connection:
        db = _connect(self.path)
        try:
            _migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    async def close(self) -> None:
        if self._closed or self._writer is None:
            return
        self._closed = True
        self._jobs.put(_STOP)
        await asyncio.to_thread(self._writer.join)
        if self._reader is not None:
            read_db = self._read_db
            self._reader.submit(read_db.close).result() if read_db else None
            self._reader.shutdown(wait=True)

    async def healthy(self) -> bool:
        try:
            return await self._read(lambda db: db.execute("SELECT 1").fetchone()[0] == 1)
        except (StoreUnavailable, sqlite3.Error):
            return False

    # -- the two threads ---------------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, loop.create_future())
        self._jobs.put(job)
        return await job.future

    async def _read(self, fn: Callable[[sqlite3.Connection], Any], *, raw: bool = False) -> Any:
        if self._reader is None or (self._closed and not raw):
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reader, fn, self._read_db)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _write_loop(self, db: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            batch: list[_Job] = []
            if first is _STOP:
                break
            batch.append(first)
            # Group commit: everything queued while the last commit was being flushed goes together.
            while len(batch) < self.max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                batch.append(job)
            self._run_batch(db, batch)
        db.close()

    def _run_batch(self, db: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            for job in batch:
                db.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(db)
                    db.execute("RELEASE job")
                except sqlite3.OperationalError:
                    raise  # disk full, I/O error: the whole batch fails below
                except Exception as exc:
                    db.execute("ROLLBACK TO job")
                    db.execute("RELEASE job")
                    job.error = exc
            db.execute("COMMIT")
            self.commit_count += 1
        except sqlite3.Error as exc:
            log.error("commit failed", extra={"error": str(exc), "jobs": len(batch)})
            if db.in_transaction:
                db.execute("ROLLBACK")
            for job in batch:
                job.error = StoreUnavailable(f"the database could not be written: {exc}")
        for job in batch:
            job.loop.call_soon_threadsafe(_settle, job)

    # -- users -----------------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str | None, now: int) -> bool:
        def insert(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (username, password_hash, now),
            )
            return cursor.rowcount == 1

        created = await self._write(insert)
        self._usernames.add(username)
        return created

    async def ensure_user(self, username: str, now: int) -> None:
        if username not in self._usernames:
            await self.create_user(username, None, now)

    async def user_exists(self, username: str) -> bool:
        return username in self._usernames

    async def get_user(self, username: str) -> UserRecord | None:
        row = await self._read(
            lambda db: db.execute(
                "SELECT username, password_hash, status, text, last_seen, created_at FROM users WHERE username = ?",
                (username,),
            ).fetchone()
        )
        return UserRecord(*row) if row else None

    async def list_users(self, after: str | None, limit: int) -> list[UserRecord]:
        rows = await self._read(
            lambda db: db.execute(
                "SELECT username, password_hash, status, text, last_seen, created_at FROM users"
                " WHERE username > ? ORDER BY username LIMIT ?",
                (after or "", limit),
            ).fetchall()
        )
        return [UserRecord(*row) for row in rows]

    async def set_status(self, username: str, status: str, text: str) -> None:
        await self._write(
            lambda db: db.execute("UPDATE users SET status = ?, text = ? WHERE username = ?", (status, text, username))
        )

    # -- connections (in memory, see the module docstring) ----------------------------------------

    async def add_connection(self, conn: ConnectionRecord) -> ConnectResult:
        mine = self._conns.by_user.setdefault(conn.username, {})
        replaced = next((c for c in mine.values() if c.device == conn.device), None)
        if replaced is not None:
            self._forget(replaced.conn_id)
        first = not mine
        mine[conn.conn_id] = conn
        self._conns.by_id[conn.conn_id] = conn
        return ConnectResult(replaced=replaced, first_for_user=first and replaced is None)

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
        self._conns.watchers.discard(conn_id)
        mine = self._conns.by_user.get(conn.username, {})
        mine.pop(conn_id, None)
        if not mine:
            self._conns.by_user.pop(conn.username, None)
        return conn

    async def get_connection(self, conn_id: str) -> ConnectionRecord | None:
        return self._conns.by_id.get(conn_id)

    async def user_connections(self, username: str) -> list[ConnectionRecord]:
        return list(self._conns.by_user.get(username, {}).values())

    async def watch_presence(self, conn_id: str) -> None:
        if conn_id in self._conns.by_id:
            self._conns.watchers.add(conn_id)

    async def presence_audience(self, username: str) -> list[str]:
        return list(self._conns.watchers.union(self._conns.by_user.get(username, {})))

    async def clear_connections(self) -> None:
        self._conns = _Connections()

    # -- messages --------------------------------------------------------------------------------

    async def save_message(self, sender: str, msg_id: str, to: str, body: str, now: int) -> SaveResult:
        a, b = _pair(sender, to)

        def save(db: sqlite3.Connection) -> SaveResult:
            row = db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE sender = ? AND id = ?", (sender, msg_id)).fetchone()
            if row is not None:
                return SaveResult(_message(row), created=False)
            (seq,) = db.execute(
                "INSERT INTO conversations (user_a, user_b, last_seq) VALUES (?, ?, 1)"
                " ON CONFLICT DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
                (a, b),
            ).fetchone()
            db.execute(
                "INSERT INTO messages (user_a, user_b, seq, id, sender, recipient, body, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (a, b, seq, msg_id, sender, to, body, now),
            )
            # The sender has read everything up to their own message.
            db.execute(
                "INSERT INTO sides (user, other, last_ts, read_seq) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET last_ts = excluded.last_ts, read_seq = excluded.read_seq",
                (sender, to, now, seq),
            )
            if to != sender:
                db.execute(
                    "INSERT INTO sides (user, other, last_ts) VALUES (?, ?, ?)"
                    " ON CONFLICT DO UPDATE SET last_ts = excluded.last_ts",
                    (to, sender, now),
                )
            return SaveResult(Message(id=msg_id, sender=sender, to=to, body=body, seq=seq, ts=now), created=True)

        return await self._write(save)

    async def get_messages(
        self, user: str, other: str, *, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        a, b = _pair(user, other)

        def page(db: sqlite3.Connection) -> tuple[list[Message], bool]:
            if after is not None:
                rows = db.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE user_a = ? AND user_b = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (a, b, after, limit + 1),
                ).fetchall()
                return [_message(r) for r in rows[:limit]], len(rows) > limit
            rows = db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE user_a = ? AND user_b = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?",
                (a, b, before if before is not None else 2**63 - 1, limit + 1),
            ).fetchall()
            return [_message(r) for r in reversed(rows[:limit])], len(rows) > limit

        return await self._read(page)

    async def list_conversations(
        self, user: str, cursor: str | None, limit: int
    ) -> tuple[list[ConversationSummary], str | None]:
        after = _parse_cursor(cursor)

        def listing(db: sqlite3.Connection) -> tuple[list[ConversationSummary], str | None]:
            if after is None:
                sides = db.execute(
                    "SELECT other, last_ts, read_seq FROM sides WHERE user = ? AND last_ts > 0"
                    " ORDER BY last_ts DESC, other LIMIT ?",
                    (user, limit + 1),
                ).fetchall()
            else:
                last_ts, other = after
                sides = db.execute(
                    "SELECT other, last_ts, read_seq FROM sides WHERE user = ? AND last_ts > 0"
                    " AND (last_ts < ? OR (last_ts = ? AND other > ?)) ORDER BY last_ts DESC, other LIMIT ?",
                    (user, last_ts, last_ts, other, limit + 1),
                ).fetchall()
            items = [self._summary(db, user, other, read_seq) for other, _, read_seq in sides[:limit]]
            next_cursor = f"{sides[limit - 1][1]}:{sides[limit - 1][0]}" if len(sides) > limit else None
            return items, next_cursor

        return await self._read(listing)

    @staticmethod
    def _summary(db: sqlite3.Connection, user: str, other: str, read_seq: int) -> ConversationSummary:
        a, b = _pair(user, other)
        row = db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE user_a = ? AND user_b = ? ORDER BY seq DESC LIMIT 1", (a, b)
        ).fetchone()
        last = _message(row) if row else None
        (unread,) = db.execute(
            "SELECT count(*) FROM messages WHERE user_a = ? AND user_b = ? AND seq > ? AND sender = ?",
            (a, b, read_seq, other),
        ).fetchone()
        if other == user:
            unread = 0  # notes to self are read by writing them
        return ConversationSummary(with_=other, last_seq=last.seq if last else 0, read_seq=read_seq, unread=unread, last=last)

    async def mark_read(self, user: str, other: str, seq: int) -> int | None:
        a, b = _pair(user, other)

        def mark(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT last_seq FROM conversations WHERE user_a = ? AND user_b = ?", (a, b)).fetchone()
            target = min(seq, row[0] if row else 0)
            current = db.execute("SELECT read_seq FROM sides WHERE user = ? AND other = ?", (user, other)).fetchone()
            if target <= (current[0] if current else 0):
                return None
            db.execute("UPDATE sides SET read_seq = ? WHERE user = ? AND other = ?", (target, user, other))
            return target

        return await self._write(mark)

    # -- accounts ----------------------------------------------------------------------------------

    async def save_refresh_token(self, token_hash: str, username: str, device: str | None, expires_at: int) -> None:
        await self._write(
            lambda db: db.execute(
                "INSERT INTO refresh_tokens (token_hash, username, device, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash, username, device, expires_at),
            )
        )

    async def take_refresh_token(self, token_hash: str, now: int) -> RefreshGrant | None:
        def take(db: sqlite3.Connection) -> RefreshGrant | None:
            db.execute("DELETE FROM refresh_tokens WHERE expires_at <= ?", (now,))
            row = db.execute(
                "DELETE FROM refresh_tokens WHERE token_hash = ? RETURNING username, device", (token_hash,)
            ).fetchone()
            return RefreshGrant(username=row[0], device=row[1]) if row else None

        return await self._write(take)

    async def record_login_failure(self, username: str, now: int) -> None:
        await self._write(lambda db: db.execute("INSERT INTO login_failures (username, ts) VALUES (?, ?)", (username, now)))

    async def count_login_failures(self, username: str, since: int) -> int:
        return await self._read(
            lambda db: db.execute(
                "SELECT count(*) FROM login_failures WHERE username = ? AND ts > ?", (username, since)
            ).fetchone()[0]
        )

    async def clear_login_failures(self, username: str) -> None:
        await self._write(lambda db: db.execute("DELETE FROM login_failures WHERE username = ?", (username,)))


def _settle(job: _Job) -> None:
    if job.future.cancelled():
        return
    if job.error is not None:
        job.future.set_exception(job.error)
    else:
        job.future.set_result(job.result)


def _parse_cursor(cursor: str | None) -> tuple[int, str] | None:
    """Conversation cursors are ``<last_ts>:<other user>``: keyset paging, stable under inserts."""
    if cursor is None:
        return None
    ts, sep, other = cursor.partition(":")
    if not sep or not ts.isdigit() or len(ts) > 19 or not other:
        raise ValueError("invalid cursor")
    return int(ts), other
