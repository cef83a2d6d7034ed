"""The rooms this account is in (PROTOCOL.md 7.2), kept on disk, and how far their members have read.

One job: remember each room as the server last described it (title, owner, members in the
order they joined), so the app lists rooms at once and offline, and keep every member's read
mark for the rooms whose marks were asked for (``getReads``, then ``read`` events and the
members' own sends). ``everyone_read`` is the mark all other members have passed: the app shows
own messages up to it as read, as it does in a direct conversation.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable

from tui_chat.client.state import ClientEvent, ReadsChanged, Room, RoomChanged


class RoomDirectory:
    def __init__(self, db: sqlite3.Connection, me: str, emit: Callable[[ClientEvent], None]) -> None:
        self.db = db
        self.me = me
        self._emit = emit
        self._rooms: dict[str, Room] = {}
        for name, title, owner, members in db.execute("SELECT room, title, owner, members FROM rooms"):
            self._rooms[name] = Room(name, title, owner, _members(members))
        self._reads: dict[str, dict[str, int]] = {}
        """Room → member → read seq, for the rooms whose marks were fetched since this process started."""
        self._changes = 0
        self._changed_at: dict[str, int] = {}
        """Room → the change number of its last description, to tell news from a stale list."""

    # -- what the rooms are ----------------------------------------------------------------

    def all(self) -> list[Room]:
        return list(self._rooms.values())

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._rooms

    def stamp(self) -> int:
        """A mark in the history of descriptions, for :meth:`described_since`."""
        return self._changes

    def described_since(self, name: str, stamp: int) -> bool:
        """Whether the server described ``name`` after ``stamp`` was taken."""
        return self._changed_at.get(name, 0) > stamp

    def update(self, room: Room) -> bool:
        """The server described ``room``: keep it; True (and ``RoomChanged``) when anything changed."""
        self._changes += 1
        self._changed_at[room.name] = self._changes
        if self._rooms.get(room.name) == room:
            return False
        self._rooms[room.name] = room
        self.db.execute(
            "INSERT OR REPLACE INTO rooms (room, title, owner, members) VALUES (?, ?, ?, ?)",
            (room.name, room.title, room.owner, json.dumps(list(room.members))),
        )
        reads = self._reads.get(room.name)
        if reads is not None:  # members who left take their marks with them; new ones start at 0
            self._reads[room.name] = {user: reads.get(user, 0) for user in room.members}
        self._emit(RoomChanged(room))
        return True

    def forget(self, name: str) -> bool:
        """This user is no longer in ``name``; True when it was known here."""
        self._reads.pop(name, None)
        self._changed_at.pop(name, None)
        known = self._rooms.pop(name, None) is not None
        self.db.execute("DELETE FROM rooms WHERE room = ?", (name,))
        return known

    # -- read marks ------------------------------------------------------------------------

    def watched(self) -> list[str]:
        """Rooms whose read marks are followed (fetched again after every reconnect)."""
        return list(self._reads)

    def watch(self, name: str) -> None:
        """Follow ``name``'s read marks from the next fetch on (asked for while offline)."""
        self._reads.setdefault(name, {})

    def reads(self, name: str) -> dict[str, int] | None:
        """Member → read seq, or None when the marks were not fetched."""
        reads = self._reads.get(name)
        return dict(reads) if reads is not None else None

    def set_reads(self, name: str, items: Iterable[tuple[str, int]]) -> None:
        """Every member's mark, from ``getReads``; marks only move forward."""
        old = self._reads.get(name, {})
        self._reads[name] = {user: max(seq, old.get(user, 0)) for user, seq in items}
        self._emit(ReadsChanged(name))

    def read_moved(self, name: str, user: str, seq: int) -> bool:
        """``user`` read (or sent) up to ``seq``; True when a followed mark moved."""
        reads = self._reads.get(name)
        if reads is None or seq <= reads.get(user, 0):
            return False
        reads[user] = seq
        self._emit(ReadsChanged(name))
        return True

    def everyone_read(self, name: str) -> int | None:
        """The seq every other member has read up to; None when not known (or nobody else is in)."""
        reads = self._reads.get(name)
        if not reads:
            return None
        others = [seq for user, seq in reads.items() if user != self.me]
        return min(others) if others else None


def _members(text: str) -> tuple[str, ...]:
    try:
        members = json.loads(text)
    except ValueError:
        return ()
    return tuple(m for m in members if isinstance(m, str)) if isinstance(members, list) else ()
