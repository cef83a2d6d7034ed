"""The SQLite store's schema: its migrations (``PRAGMA user_version``; append, never edit) and
how its connections are opened (WAL, ``synchronous=FULL`` for the writer, read-only readers)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from tui_chat.migrations import SchemaTooNew, migrate, run_script

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SchemaTooNew", "connect", "migrate_store"]


def _migrate_to_1(db: sqlite3.Connection) -> None:
    run_script(
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


def _migrate_to_2(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        -- Unread kept as a counter, so listing conversations does not count messages.
        ALTER TABLE sides ADD COLUMN unread INTEGER NOT NULL DEFAULT 0;
        UPDATE sides SET unread = (
            SELECT count(*) FROM messages AS m
            WHERE m.user_a = min(sides.user, sides.other) AND m.user_b = max(sides.user, sides.other)
              AND m.seq > sides.read_seq AND m.sender = sides.other AND sides.other <> sides.user
        );
        -- The purges are range deletes, not scans.
        CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
        CREATE INDEX login_failures_by_ts ON login_failures (ts);
        """
    )


def _migrate_to_3(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        -- The server's identity (PROTOCOL.md 7.5): created once, with the database.
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        INSERT INTO meta (key, value) VALUES ('server_id', lower(hex(randomblob(16))));
        """
    )


def _migrate_to_4(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        -- Sessions (refresh-token families) replace single refresh tokens: sign-out, revocation
        -- on replay, an absolute end. Tokens of the old kind cannot be traced to a family, so
        -- they go: each person signs in once more after this upgrade.
        DROP TABLE refresh_tokens;
        CREATE TABLE sessions (
            family TEXT PRIMARY KEY, username TEXT NOT NULL, device TEXT,
            started_at INTEGER NOT NULL, ends_at INTEGER NOT NULL, idle_until INTEGER NOT NULL,
            token_hash TEXT NOT NULL, previous_hash TEXT, rotated_at INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX sessions_by_user ON sessions (username, started_at);
        CREATE INDEX sessions_by_idle_end ON sessions (idle_until);
        """
    )


def _migrate_to_5(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        -- Rooms (PROTOCOL.md 7.2). A room's messages and seq counter live in messages and
        -- conversations under the key (room, room), each member has a side (member, room).
        CREATE TABLE rooms (
            room TEXT PRIMARY KEY, title TEXT NOT NULL, owner TEXT NOT NULL, created_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        -- join_order numbers a room's members as they join: the owner's successor is the lowest.
        CREATE TABLE room_members (
            room TEXT NOT NULL, user TEXT NOT NULL, join_order INTEGER NOT NULL,
            PRIMARY KEY (room, user)
        ) WITHOUT ROWID;
        CREATE UNIQUE INDEX room_members_in_order ON room_members (room, join_order);
        -- The rooms a user is in (a user removed leaves them all).
        CREATE INDEX room_members_by_user ON room_members (user);
        """
    )


def _migrate_to_6(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        -- Attachments (PROTOCOL.md 7.7): the record of each file (its bytes are in the files
        -- folder beside the database), and the file a message carries.
        CREATE TABLE files (
            file_id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,
            type TEXT NOT NULL, sha256 TEXT NOT NULL, created_at INTEGER NOT NULL,
            uploaded INTEGER NOT NULL DEFAULT 0,
            attached INTEGER NOT NULL DEFAULT 0  -- named by a message once: deleted when none holds it
        ) WITHOUT ROWID;
        CREATE INDEX files_by_owner ON files (owner, attached);
        CREATE INDEX files_unattached ON files (attached, created_at);
        ALTER TABLE messages ADD COLUMN file_id TEXT;
        ALTER TABLE messages ADD COLUMN file_name TEXT;
        ALTER TABLE messages ADD COLUMN file_size INTEGER;
        ALTER TABLE messages ADD COLUMN file_type TEXT;
        CREATE INDEX messages_by_file ON messages (file_id) WHERE file_id IS NOT NULL;
        """
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_to_1, _migrate_to_2, _migrate_to_3, _migrate_to_4, _migrate_to_5, _migrate_to_6,
]  # fmt: skip
"""``MIGRATIONS[i]`` takes a database from schema version i to i + 1. Append, never edit."""
SCHEMA_VERSION = len(MIGRATIONS)


def migrate_store(db: sqlite3.Connection) -> None:
    migrate(db, MIGRATIONS, what="the server database")


WAL_CHECKPOINT_PAGES = 4000
"""How far the WAL grows (16 MiB of 4 KiB pages) before a commit copies it into the database.
Every message rewrites the same few hot pages (its conversation's counter, both sides, the
index pages above them), and a checkpoint copies each page once however often it changed: four
times SQLite's default of 1,000 gave more throughput and a lower p99 in each of six side-by-side
runs of ``server_bench.py``; 10,000 made the rare checkpoint so long that p99 suffered."""
WAL_SIZE_LIMIT_BYTES = 32 * 1024 * 1024
"""What the WAL file is cut back to after a burst made it grow past the checkpoint size."""


def connect(path: str, *, writer: bool) -> sqlite3.Connection:
    # Autocommit mode (isolation_level=None): transactions are exactly the ones we open.
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    if writer:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
    else:
        db.execute("PRAGMA query_only=ON")
    return db
