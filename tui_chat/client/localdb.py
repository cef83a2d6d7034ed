"""The client's own SQLite file, one per (server id, user) (``identity.account_folder``): the outbox and the history cache.

WAL with ``synchronous=NORMAL``: a commit survives the process being killed at any point (the
outbox's promise); a power cut may lose the last commits, which costs at worst a message typed
in the last second before it (and a resend after an ack, which the server's idempotency absorbs).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tui_chat.client.search import SEARCH_SCHEMA
from tui_chat.migrations import migrate
from tui_chat.paths import private_database

_SCHEMA = [
    """
    CREATE TABLE outbox (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE, recipient TEXT NOT NULL, body TEXT NOT NULL,
        created_ts INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'pending', error TEXT
    );
    CREATE TABLE messages (
        peer TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, sender TEXT NOT NULL,
        recipient TEXT NOT NULL, body TEXT NOT NULL, ts INTEGER NOT NULL,
        PRIMARY KEY (peer, seq)
    ) WITHOUT ROWID;
    CREATE TABLE conversations (
        peer TEXT PRIMARY KEY, last_seq INTEGER NOT NULL DEFAULT 0, read_seq INTEGER NOT NULL DEFAULT 0,
        unread INTEGER NOT NULL DEFAULT 0, peer_read_seq INTEGER NOT NULL DEFAULT 0,
        synced_seq INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID
    """,
    # complete: the cache holds this conversation back to its first message (no older page).
    "ALTER TABLE conversations ADD COLUMN complete INTEGER NOT NULL DEFAULT 0",
    # Small things remembered per (server, user), e.g. the conversation open at quit.
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # The rooms this account is in (members: a JSON list, in the order they joined).
    "CREATE TABLE rooms (room TEXT PRIMARY KEY, title TEXT NOT NULL, owner TEXT NOT NULL, members TEXT NOT NULL) WITHOUT ROWID",
    # Attachments (JSON): in the outbox, the private copy and what it is; in the history, what the message carries.
    "ALTER TABLE outbox ADD COLUMN attachment TEXT; ALTER TABLE messages ADD COLUMN attachment TEXT",
    # Full-text search over the history (tui_chat.client.search); indexes what earlier releases cached.
    lambda db: [db.execute(statement) for statement in SEARCH_SCHEMA],
]


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(private_database(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    migrate(db, _SCHEMA, what=str(path))
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic commit. The connection runs in autocommit mode (``isolation_level=None``),
    where ``with db:`` would not open a transaction at all."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
