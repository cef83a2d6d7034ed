"""What one account keeps on one server, and the rows it shows: history cache plus outbox.

One job: keep the local model (the cache of the server's history, the outbox of what is not
stored yet, small settings) and say what changed as :class:`TimelineChanged` events that
carry the changed rows themselves, so a view never re-reads the database to follow along.
A conversation's rows are its acked messages by seq, then this device's pending and failed
ones in the order written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

from tui_chat import protocol as p
from tui_chat.client.cache import Cache
from tui_chat.client.files import OutgoingFile
from tui_chat.client.outbox import Outbox, OutboxEntry
from tui_chat.client.rooms import RoomDirectory
from tui_chat.client.state import (
    ClientEvent,
    Conversation,
    ConversationChanged,
    TimelineChanged,
    TimelineItem,
)


class Timeline:
    """The cache and outbox of ``me`` in ``db``. ``emit`` receives every change;
    ``on_outbox_change`` is called when the number of queued messages may have changed."""

    def __init__(self, db: sqlite3.Connection, me: str, emit: Callable[[ClientEvent], None], on_outbox_change: Callable[[], None]) -> None:
        self.db = db
        self.me = me
        self.cache = Cache(db, me)
        self.outbox = Outbox(db)
        self.rooms = RoomDirectory(db, me, emit)
        self._emit = emit
        self._on_outbox_change = on_outbox_change

    def close(self) -> None:
        self.db.close()

    # -- reading ---------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Messages waiting to be sent (failed ones excluded)."""
        return len(self.outbox)

    def conversation(self, peer: str) -> Conversation:
        record = self.cache.conversation(peer)
        if record is None:
            return Conversation(peer)
        last = self.cache.last_message(peer)
        return Conversation(
            peer, unread=record.unread, read_seq=record.read_seq, peer_read_seq=record.peer_read_seq,
            last_seq=record.last_seq, last_ts=last.ts if last else 0, last_body=last.body if last else "",
        )  # fmt: skip

    def conversations(self) -> list[Conversation]:
        return [self.conversation(c.peer) for c in self.cache.conversations()]

    def length(self, peer: str) -> int:
        return self.cache.count(peer) + self.outbox.count_for(peer)

    def slice(self, peer: str, start: int, stop: int) -> list[TimelineItem]:
        """Rows ``[start:stop]``; costs one page, however long the history."""
        start, stop = max(0, start), max(0, stop)
        acked = self.cache.count(peer)
        peer_read = self._peer_read_seq(peer)
        rows: list[TimelineItem] = []
        if start < acked:
            rows.extend(self._sent_item(m, peer, peer_read) for m in self.cache.slice(peer, start, min(stop, acked)))
        if stop > acked:
            rows.extend(self._queued_item(e) for e in self.outbox.for_peer(peer, max(0, start - acked), stop - acked))
        return rows

    def newest(self, peer: str, limit: int) -> list[TimelineItem]:
        """The newest ``limit`` sent rows and every queued one."""
        peer_read = self._peer_read_seq(peer)
        sent = [self._sent_item(m, peer, peer_read) for m in self.cache.newest(peer, limit)]
        return sent + [self._queued_item(e) for e in self.outbox.for_peer(peer)]

    def before(self, peer: str, seq: int, limit: int) -> list[TimelineItem]:
        """The ``limit`` cached rows just before ``seq``, oldest first."""
        peer_read = self._peer_read_seq(peer)
        return [self._sent_item(m, peer, peer_read) for m in self.cache.newest(peer, limit, before=seq)]

    def has_older(self, peer: str) -> bool:
        """Whether the server may hold messages older than the cached ones."""
        if self.cache.is_complete(peer):
            return False
        oldest = self.cache.oldest_seq(peer)
        if oldest is None:
            record = self.cache.conversation(peer)
            return record is not None and record.last_seq > 0
        return oldest > 1

    def remember(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    def recall(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- what this device writes -----------------------------------------------------------

    def queue(self, msg_id: str, to: str, body: str, now: int, attachment: OutgoingFile | None = None) -> None:
        entry = self.outbox.add(msg_id, to, body, now, attachment)
        self._emit(TimelineChanged(to, rows=(self._queued_item(entry),)))
        self._on_outbox_change()

    def retry(self, msg_id: str) -> bool:
        """Queue a failed message again, behind what is queued. False if it is not failed."""
        if not self.outbox.retry(msg_id):
            return False
        entry = self.outbox.get(msg_id)
        self._emit(TimelineChanged(entry.to, removed=(msg_id,), rows=(self._queued_item(entry),)))
        self._on_outbox_change()
        return True

    def discard(self, msg_id: str) -> bool:
        """Drop a failed message for good. False if it is not failed."""
        entry = self.outbox.get(msg_id)
        if entry is None or not self.outbox.discard(msg_id):
            return False
        _drop_copies([entry])
        self._emit(TimelineChanged(entry.to, removed=(msg_id,)))
        return True

    def failed(self, msg_id: str, reason: str) -> None:
        """The server refused a message for good: it stays, marked, until retried or discarded."""
        self.outbox.fail(msg_id, reason)
        entry = self.outbox.get(msg_id)
        if entry is not None:
            self._emit(TimelineChanged(entry.to, rows=(self._queued_item(entry),)))
        self._on_outbox_change()

    def read_up_to_newest(self, peer: str) -> int | None:
        """Everything in the conversation is read here: the seq to tell the server, or None
        when there is nothing new to mark."""
        last = self.cache.last_message(peer)
        record = self.cache.conversation(peer)
        if last is None or record is None or (last.seq <= record.read_seq and record.unread == 0):
            return None
        self.cache.set_read(peer, mine=last.seq)
        self.announce(peer)
        return last.seq

    # -- what the server says --------------------------------------------------------------

    def acked(self, message: p.Message, *, synced: bool) -> None:
        """The server stored one of ours: it leaves the outbox and joins the history (sending
        reads the conversation). ``synced``: catch-up is done, so the sync mark may move."""
        peer = message.other(self.me)
        entry = self.outbox.get(message.id)
        self.outbox.acked(message.id)
        _drop_copies([entry])
        self.cache.add([message])
        self.cache.set_read(peer, mine=message.seq)
        if synced:
            self.cache.advance_synced(peer)
        self._emit(TimelineChanged(peer, rows=(self._sent_item(message, peer, self._peer_read_seq(peer)),)))
        self.announce(peer)
        self._on_outbox_change()

    def received(self, message: p.Message, *, synced: bool) -> bool:
        """A message pushed live; True when it is new here (and from someone else: unread)."""
        peer = message.other(self.me)
        new = self.store(peer, [message])
        if synced:
            self.cache.advance_synced(peer)  # only over what is held: an earlier one may still be on its way
        if not new:
            return False
        if message.sender != self.me:
            self.cache.bump_unread(peer)
            if not p.is_room(peer):  # a room's marks are each member's (RoomDirectory)
                self._their_read_mark(peer, message.seq)  # their send moved it, with no read event (PROTOCOL.md 4)
        self.announce(peer)
        return message.sender != self.me

    def store(self, peer: str, messages: Iterable[p.Message], *, older: bool = False) -> list[p.Message]:
        """Cache messages from the server and show them (``older``: a page from before everything
        held). Messages of ours found there were stored though their ack was lost with a
        dropped link: they leave the outbox now (no row shown twice, nothing resent)."""
        new = self.cache.add(messages)
        if not new:
            return new
        mine = [m.id for m in new if m.sender == self.me]
        if mine:
            held = [self.outbox.get(msg_id) for msg_id in mine]
            if self.outbox.remove(mine):
                _drop_copies(held)
                self._on_outbox_change()
        peer_read = self._peer_read_seq(peer)
        items = tuple(self._sent_item(m, peer, peer_read) for m in new)
        self._emit(TimelineChanged(peer, older=items) if older else TimelineChanged(peer, rows=items))
        return new

    def peer_read(self, peer: str, seq: int) -> None:
        """The other side has read up to ``seq``: own messages up to it show as read."""
        self._their_read_mark(peer, seq)
        self.announce(peer)

    def _their_read_mark(self, peer: str, seq: int) -> None:
        before = self._peer_read_seq(peer)
        self.cache.set_read(peer, theirs=seq)
        if seq > before and peer != self.me:
            self._emit(TimelineChanged(peer, peer_read_seq=seq))

    def own_read(self, peer: str, seq: int) -> None:
        """Another device of ours read up to ``seq``."""
        self.cache.set_read(peer, mine=seq)
        self.announce(peer)

    def room_read(self, room: str, user: str, seq: int) -> None:
        """A member of ``room`` read (or sent) up to ``seq``."""
        if self.rooms.read_moved(room, user, seq):
            self._everyone_read(room)

    def room_reads(self, room: str, items: Iterable[tuple[str, int]]) -> None:
        """Every member's read mark in ``room`` (``getReads``)."""
        self.rooms.set_reads(room, items)
        self._everyone_read(room)

    def _everyone_read(self, room: str) -> None:
        """Own messages every other member has read show as read, as in a direct conversation."""
        seq = self.rooms.everyone_read(room)
        if seq:
            self._their_read_mark(room, seq)

    def forget_room(self, room: str) -> int:
        """This user is no longer in ``room``: its history goes, and what was queued to it can
        never be sent (the server would refuse it). How many queued messages were dropped."""
        self.rooms.forget(room)
        self.cache.forget(room)
        entries = self.outbox.for_peer(room)
        dropped = [entry.id for entry in entries]
        if dropped:
            self.outbox.remove(dropped)
            _drop_copies(entries)
            self._on_outbox_change()
        self._emit(TimelineChanged(room, reload=True))
        return len(dropped)

    def summary(self, summary: p.ConversationSummary) -> None:
        """One conversation as the server has it (catch-up): counts and both read marks."""
        peer = summary.with_
        before = self._peer_read_seq(peer)
        self.cache.apply_summary(summary)
        if summary.peer_read_seq > before and peer != self.me:
            self._emit(TimelineChanged(peer, peer_read_seq=summary.peer_read_seq))  # read while we were away

    def announce(self, peer: str) -> None:
        """Say how the conversation with ``peer`` stands now (unread count, last message)."""
        self._emit(ConversationChanged(self.conversation(peer)))

    # -- rows ------------------------------------------------------------------------------

    def _peer_read_seq(self, peer: str) -> int:
        record = self.cache.conversation(peer)
        return record.peer_read_seq if record else 0

    def _sent_item(self, m: p.Message, peer: str, peer_read: int) -> TimelineItem:
        state = "read" if m.sender == self.me and m.seq <= peer_read and peer != self.me else "sent"
        return TimelineItem(m.id, m.sender, m.to, m.body, m.ts, m.seq, state, attachment=m.attachment)

    def _queued_item(self, entry: OutboxEntry) -> TimelineItem:
        file = entry.attachment
        attachment = p.Attachment(file.file_id or "", file.name, file.size, file.type) if file is not None else None
        return TimelineItem(entry.id, self.me, entry.to, entry.body, entry.created_ts, None, entry.state, entry.error, attachment)

    def file_uploaded(self, msg_id: str, file_id: str) -> OutgoingFile | None:
        """A queued message's file is on the server: the message can go."""
        return self.outbox.uploaded(msg_id, file_id)


def _drop_copies(entries: Iterable[OutboxEntry | None]) -> None:
    """The private copies of files the server has (or that will never be sent) are not needed."""
    for entry in entries:
        if entry is not None and entry.attachment is not None:
            entry.attachment.path.unlink(missing_ok=True)
