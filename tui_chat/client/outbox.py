"""The persistent outbox: a message is written here before any send is tried, and leaves only
when its ``ack`` arrives. Retries reuse the id, so the server stores it once."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

PENDING = "pending"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: str
    to: str
    body: str
    created_ts: int
    state: Literal["pending", "failed"]
    error: str | None = None


class Outbox:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def add(self, msg_id: str, to: str, body: str, now: int) -> OutboxEntry:
        self.db.execute(
            "INSERT INTO outbox (id, recipient, body, created_ts) VALUES (?, ?, ?, ?)", (msg_id, to, body, now)
        )
        return OutboxEntry(msg_id, to, body, now, PENDING)

    def pending(self) -> list[OutboxEntry]:
        """Unacked, sendable messages in the order they were written."""
        return self._select("WHERE state = 'pending' ORDER BY position")

    def all(self) -> list[OutboxEntry]:
        return self._select("ORDER BY position")

    def for_peer(self, peer: str) -> list[OutboxEntry]:
        return self._select("WHERE recipient = ? ORDER BY position", (peer,))

    def get(self, msg_id: str) -> OutboxEntry | None:
        found = self._select("WHERE id = ?", (msg_id,))
        return found[0] if found else None

    def acked(self, msg_id: str) -> bool:
        return self.db.execute("DELETE FROM outbox WHERE id = ?", (msg_id,)).rowcount == 1

    def fail(self, msg_id: str, reason: str) -> None:
        self.db.execute("UPDATE outbox SET state = 'failed', error = ? WHERE id = ?", (reason, msg_id))

    def retry(self, msg_id: str) -> bool:
        """Queue a failed message again, behind everything already queued."""
        with self.db:
            row = self.db.execute("SELECT id, recipient, body, created_ts FROM outbox WHERE id = ? AND state = 'failed'", (msg_id,)).fetchone()
            if row is None:
                return False
            self.db.execute("DELETE FROM outbox WHERE id = ?", (msg_id,))
            self.db.execute("INSERT INTO outbox (id, recipient, body, created_ts) VALUES (?, ?, ?, ?)", row)
        return True

    def discard(self, msg_id: str) -> bool:
        return self.db.execute("DELETE FROM outbox WHERE id = ? AND state = 'failed'", (msg_id,)).rowcount == 1

    def __len__(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]

    def _select(self, where: str, params: tuple = ()) -> list[OutboxEntry]:
        rows = self.db.execute(f"SELECT id, recipient, body, created_ts, state, error FROM outbox {where}", params)
        return [OutboxEntry(*row) for row in rows]
