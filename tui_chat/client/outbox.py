"""The persistent outbox: a message is written here before any send is tried, and leaves only
once the server has stored it (its ``ack``, or the message seen in the server's history).
Retries reuse the id, so the server stores it once. Every change is one SQLite commit, so a
process killed at any point leaves each entry either wholly there or wholly gone."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from tui_chat.client.files import OutgoingFile
from tui_chat.client.localdb import transaction

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
    attachment: OutgoingFile | None = None


class Outbox:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def add(self, msg_id: str, to: str, body: str, now: int, attachment: OutgoingFile | None = None) -> OutboxEntry:
        self.db.execute(
            "INSERT INTO outbox (id, recipient, body, created_ts, attachment) VALUES (?, ?, ?, ?, ?)",
            (msg_id, to, body, now, _file_json(attachment)),
        )
        return OutboxEntry(msg_id, to, body, now, PENDING, attachment=attachment)

    def uploaded(self, msg_id: str, file_id: str) -> OutgoingFile | None:
        """The message's file is on the server as ``file_id``: the message itself can go now."""
        entry = self.get(msg_id)
        if entry is None or entry.attachment is None:
            return None
        file = replace(entry.attachment, file_id=file_id)
        self.db.execute("UPDATE outbox SET attachment = ? WHERE id = ?", (_file_json(file), msg_id))
        return file

    def pending(self, limit: int = -1) -> list[OutboxEntry]:
        """Unacked, sendable messages in the order they were written (the first ``limit`` of them)."""
        return self._select("WHERE state = 'pending' ORDER BY position LIMIT ?", (limit,))

    def all(self) -> list[OutboxEntry]:
        return self._select("ORDER BY position")

    def for_peer(self, peer: str, start: int = 0, stop: int | None = None) -> list[OutboxEntry]:
        """Entries to ``peer`` (pending and failed) in the order written; ``[start:stop]`` of them."""
        limit = -1 if stop is None else max(0, stop - start)
        return self._select("WHERE recipient = ? ORDER BY position LIMIT ? OFFSET ?", (peer, limit, max(0, start)))

    def count_for(self, peer: str) -> int:
        return self.db.execute("SELECT count(*) FROM outbox WHERE recipient = ?", (peer,)).fetchone()[0]

    def get(self, msg_id: str) -> OutboxEntry | None:
        found = self._select("WHERE id = ?", (msg_id,))
        return found[0] if found else None

    def acked(self, msg_id: str) -> bool:
        """The server stored it: it leaves the outbox. False if it was not here."""
        return self.db.execute("DELETE FROM outbox WHERE id = ?", (msg_id,)).rowcount == 1

    def remove(self, ids: list[str]) -> int:
        """Several ids the server is known to hold (seen in its history); returns how many left."""
        with transaction(self.db):
            return sum(self.db.execute("DELETE FROM outbox WHERE id = ?", (i,)).rowcount for i in ids)

    def fail(self, msg_id: str, reason: str) -> None:
        self.db.execute("UPDATE outbox SET state = 'failed', error = ? WHERE id = ?", (reason, msg_id))

    def retry(self, msg_id: str) -> bool:
        """Queue a failed message again, behind everything already queued."""
        with transaction(self.db):
            row = self.db.execute("SELECT id, recipient, body, created_ts, attachment FROM outbox WHERE id = ? AND state = 'failed'", (msg_id,)).fetchone()
            if row is None:
                return False
            self.db.execute("DELETE FROM outbox WHERE id = ?", (msg_id,))
            file = _file_from_json(row[4])
            if file is not None:  # uploaded anew: a file the server refused may be gone from it
                row = (*row[:4], _file_json(replace(file, file_id=None)))
            self.db.execute("INSERT INTO outbox (id, recipient, body, created_ts, attachment) VALUES (?, ?, ?, ?, ?)", row)
        return True

    def discard(self, msg_id: str) -> bool:
        return self.db.execute("DELETE FROM outbox WHERE id = ? AND state = 'failed'", (msg_id,)).rowcount == 1

    def __len__(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]

    def _select(self, where: str, params: tuple = ()) -> list[OutboxEntry]:
        # ``where`` is always one of this module's constant clauses ("nosec B608"); values are bound.
        rows = self.db.execute(f"SELECT id, recipient, body, created_ts, state, error, attachment FROM outbox {where}", params)  # nosec B608
        return [OutboxEntry(*row[:6], attachment=_file_from_json(row[6])) for row in rows]


def _file_json(file: OutgoingFile | None) -> str | None:
    return json.dumps({**asdict(file), "path": str(file.path)}) if file is not None else None


def _file_from_json(text: str | None) -> OutgoingFile | None:
    if not text:
        return None
    fields = json.loads(text)
    return OutgoingFile(**{**fields, "path": Path(fields["path"])})
