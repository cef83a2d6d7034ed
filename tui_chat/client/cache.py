"""Local history per conversation, so the app shows conversations at once and while offline.

``synced_seq`` is how far the history is known to be complete: catch-up asks the server for
everything after it, so messages that arrived live during an outage cannot hide a gap.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from tui_chat.client.localdb import transaction
from tui_chat.protocol import MAX_SEQ, Attachment, ConversationSummary, Message

_COLUMNS = "seq, id, sender, recipient, body, ts, attachment"  # a constant put into queries (their "nosec B608"); values are bound
_FROM_OTHERS = "(m.sender = :peer OR substr(:peer, 1, 1) = '#') AND m.sender <> :me"
"""Messages that count as unread in conversation ``:peer`` of user ``:me``: the peer's, or in a
room (``#name``) every other member's."""


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    peer: str
    last_seq: int
    read_seq: int
    unread: int
    peer_read_seq: int
    synced_seq: int


def _message(row: tuple) -> Message:
    attachment = Attachment(**json.loads(row[6])) if row[6] else None
    return Message(seq=row[0], id=row[1], sender=row[2], to=row[3], body=row[4], ts=row[5], attachment=attachment)


def _attachment_json(message: Message) -> str | None:
    a = message.attachment
    return json.dumps({"file_id": a.file_id, "name": a.name, "size": a.size, "type": a.type}) if a is not None else None


class Cache:
    def __init__(self, db: sqlite3.Connection, me: str) -> None:
        self.db = db
        self.me = me

    def add(self, messages: Iterable[Message]) -> list[Message]:
        """Store messages; returns the ones that were new (duplicates are ignored)."""
        new = []
        with transaction(self.db):
            for m in messages:
                peer = m.other(self.me)
                cursor = self.db.execute(
                    f"INSERT OR IGNORE INTO messages (peer, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # nosec B608
                    (peer, m.seq, m.id, m.sender, m.to, m.body, m.ts, _attachment_json(m)),
                )
                if cursor.rowcount:
                    new.append(m)
                    self.db.execute(
                        "INSERT INTO conversations (peer, last_seq) VALUES (?, ?)"
                        " ON CONFLICT DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
                        (peer, m.seq),
                    )
        return new

    def mark_synced(self, peer: str, seq: int) -> None:
        self.db.execute(
            "INSERT INTO conversations (peer, synced_seq) VALUES (?, ?)"
            " ON CONFLICT DO UPDATE SET synced_seq = max(synced_seq, excluded.synced_seq)",
            (peer, seq),
        )

    def advance_synced(self, peer: str) -> None:
        """Move the synced mark over the messages held right above it, and no further.

        A live message or an ack with seq S does not prove that everything below S has arrived:
        another sender's message stored just before S may still be on its way (its delivery
        follows its sender's ack, or a whole batch). Catch-up pages, which are complete, move
        the mark with ``mark_synced``; a gap seq (allowed by the protocol) stops this walk only
        until the next catch-up."""
        synced = self.synced_seq(peer)
        held = self.db.execute(
            "SELECT seq FROM messages WHERE peer = ? AND seq > ? ORDER BY seq LIMIT 2000", (peer, synced)
        ).fetchall()
        for (seq,) in held:
            if seq != synced + 1:
                break
            synced = seq
        self.mark_synced(peer, synced)

    def synced_seq(self, peer: str) -> int:
        row = self.db.execute("SELECT synced_seq FROM conversations WHERE peer = ?", (peer,)).fetchone()
        return row[0] if row else 0

    def apply_summary(self, summary: ConversationSummary) -> None:
        """Take the server's view; a read marker moved here while offline is kept (and counted)
        until the server has it too: read markers only move forward."""
        # The server counted unread up to its ``last_seq``; messages that reached us live after
        # that snapshot (they may arrive before the reply) are counted on top, not lost.
        self.db.execute(
            "INSERT INTO conversations (peer, last_seq, read_seq, unread, peer_read_seq) VALUES (:peer, :last, :read, :unread, :theirs)"
            " ON CONFLICT DO UPDATE SET last_seq = max(last_seq, excluded.last_seq),"
            " unread = CASE WHEN excluded.read_seq >= read_seq THEN excluded.unread + ("
            f"   SELECT count(*) FROM messages m WHERE m.peer = :peer AND {_FROM_OTHERS}"  # nosec B608
            "   AND m.seq > excluded.last_seq) ELSE unread END,"
            " read_seq = max(read_seq, excluded.read_seq),"
            " peer_read_seq = max(peer_read_seq, excluded.peer_read_seq)",
            {"peer": summary.with_, "last": summary.last_seq, "read": summary.read_seq, "unread": summary.unread,
             "theirs": summary.peer_read_seq, "me": self.me},  # fmt: skip
        )

    def set_complete(self, peer: str) -> None:
        """The cache now reaches back to the conversation's first message."""
        self.db.execute("UPDATE conversations SET complete = 1 WHERE peer = ?", (peer,))

    def is_complete(self, peer: str) -> bool:
        row = self.db.execute("SELECT complete FROM conversations WHERE peer = ?", (peer,)).fetchone()
        return bool(row and row[0])

    def highest_seq_below(self, peer: str, seq: int) -> int | None:
        row = self.db.execute("SELECT max(seq) FROM messages WHERE peer = ? AND seq < ?", (peer, seq)).fetchone()
        return row[0]

    def set_read(self, peer: str, *, mine: int | None = None, theirs: int | None = None) -> None:
        """Move my read marker (and recount unread) or the peer's (for read receipts)."""
        self.db.execute("INSERT OR IGNORE INTO conversations (peer) VALUES (?)", (peer,))
        if mine is not None:
            self.db.execute("UPDATE conversations SET read_seq = max(read_seq, ?) WHERE peer = ?", (mine, peer))
            self._recount(peer)
        if theirs is not None:
            self.db.execute("UPDATE conversations SET peer_read_seq = max(peer_read_seq, ?) WHERE peer = ?", (theirs, peer))

    def bump_unread(self, peer: str) -> None:
        self.db.execute("UPDATE conversations SET unread = unread + 1 WHERE peer = ?", (peer,))

    def recount_unread(self, peer: str) -> None:
        self._recount(peer)

    def _recount(self, peer: str) -> None:
        self.db.execute(
            "UPDATE conversations SET unread = (SELECT count(*) FROM messages m WHERE m.peer = :peer"
            f" AND {_FROM_OTHERS} AND m.seq > conversations.read_seq) WHERE peer = :peer",  # nosec B608
            {"peer": peer, "me": self.me},
        )

    def forget(self, peer: str) -> None:
        """Drop a conversation and its history (a room this user is no longer in)."""
        with transaction(self.db):
            self.db.execute("DELETE FROM messages WHERE peer = ?", (peer,))
            self.db.execute("DELETE FROM conversations WHERE peer = ?", (peer,))

    def conversation(self, peer: str) -> ConversationRecord | None:
        row = self.db.execute(
            "SELECT peer, last_seq, read_seq, unread, peer_read_seq, synced_seq FROM conversations WHERE peer = ?", (peer,)
        ).fetchone()
        return ConversationRecord(*row) if row else None

    def conversations(self) -> list[ConversationRecord]:
        rows = self.db.execute("SELECT peer, last_seq, read_seq, unread, peer_read_seq, synced_seq FROM conversations")
        return [ConversationRecord(*row) for row in rows]

    def incomplete(self) -> list[str]:
        """Conversations whose older history may still be on the server only: not known complete,
        and not held from seq 1 on (a conversation followed live from its first message; what is
        cached has no holes)."""
        return [row[0] for row in self.db.execute(
            "SELECT peer FROM conversations c WHERE complete = 0 AND last_seq > 0"
            " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.peer = c.peer AND m.seq = 1) ORDER BY peer"
        )]  # fmt: skip

    def count(self, peer: str) -> int:
        return self.db.execute("SELECT count(*) FROM messages WHERE peer = ?", (peer,)).fetchone()[0]

    def slice(self, peer: str, start: int, stop: int) -> list[Message]:
        """Messages ``[start:stop]`` of the conversation in seq order (for a virtual list)."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE peer = ? ORDER BY seq LIMIT ? OFFSET ?",  # nosec B608
            (peer, max(0, stop - start), start),
        )
        return [_message(row) for row in rows]

    def newest(self, peer: str, limit: int, *, before: int | None = None) -> list[Message]:
        """The newest ``limit`` messages (below ``before`` when given), oldest first."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE peer = ? AND seq < ? ORDER BY seq DESC LIMIT ?",  # nosec B608
            (peer, MAX_SEQ + 1 if before is None else before, limit),
        ).fetchall()
        return [_message(row) for row in reversed(rows)]

    def history(self, peer: str) -> list[Message]:
        return [_message(row) for row in self.db.execute(f"SELECT {_COLUMNS} FROM messages WHERE peer = ? ORDER BY seq", (peer,))]  # nosec B608

    def highest_seq(self, peer: str) -> int | None:
        return self.db.execute("SELECT max(seq) FROM messages WHERE peer = ?", (peer,)).fetchone()[0]

    def oldest_seq(self, peer: str) -> int | None:
        row = self.db.execute("SELECT min(seq) FROM messages WHERE peer = ?", (peer,)).fetchone()
        return row[0]

    def last_message(self, peer: str) -> Message | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM messages WHERE peer = ? ORDER BY seq DESC LIMIT 1", (peer,)).fetchone()  # nosec B608
        return _message(row) if row else None
