"""The rows of one conversation held in memory while it is shown, kept current from events.

A window holds the newest part of the cached history (all of it once scrolled back far
enough) and then this device's queued messages. Every change the service reports carries its
rows, so following a conversation never reads the cache: a new message is placed by its seq
(almost always at the end), an ack turns a queued row into a sent one where its seq puts it,
a read receipt moves marks. Only scrolling back past the window reads a page from the cache.
"""

from __future__ import annotations

from dataclasses import replace

from tui_chat.ui.view_model import MessageRow


class ConversationWindow:
    """``rows`` with their ``seqs`` (None while queued). ``complete``: the window reaches the
    oldest cached message; ``more_on_server``: the server may hold older ones still."""

    def __init__(self, rows: list[MessageRow], seqs: list[int | None], *, complete: bool, more_on_server: bool) -> None:
        self.rows = rows
        self.seqs = seqs
        self.complete = complete
        self.more_on_server = more_on_server
        self._keys = {row.key for row in rows}

    def put(self, row: MessageRow, seq: int | None) -> bool:
        """Add or update one row; True when it was added at the very end."""
        at = self._find(row.key)
        if seq is None:
            if at is not None and self.seqs[at] is None:
                self.rows[at] = row  # e.g. pending → failed, where it stands
                return False
            self._drop(at)
            self.rows.append(row)
            self.seqs.append(None)
            self._keys.add(row.key)
            return at is None
        self._drop(at)
        queued_from = len(self.seqs)
        while queued_from and self.seqs[queued_from - 1] is None:
            queued_from -= 1
        position = queued_from
        while position and self.seqs[position - 1] > seq:
            position -= 1
        if position == 0 and queued_from and not self.complete:
            return False  # older than the window: read from the cache when scrolled to
        self.rows.insert(position, row)
        self.seqs.insert(position, seq)
        self._keys.add(row.key)
        return at is None and position == len(self.rows) - 1

    def holds(self, key: str) -> bool:
        return key in self._keys

    def remove(self, key: str) -> None:
        self._drop(self._find(key))

    def prepend(self, rows: list[MessageRow], seqs: list[int]) -> None:
        """An older page, from the cache or the server: what is older than every row held."""
        first = next((s for s in self.seqs if s is not None), None)
        older = [(r, s) for r, s in zip(rows, seqs) if (first is None or s < first) and r.key not in self._keys]
        self.rows[:0] = [r for r, _ in older]
        self.seqs[:0] = [s for _, s in older]
        self._keys.update(r.key for r, _ in older)

    def read_up_to(self, seq: int) -> bool:
        """The other side read up to ``seq``: our sent rows up to it become read (True when
        any did). Marks only ever advance, so the walk back stops at the first row already read."""
        changed = False
        for index in range(len(self.rows) - 1, -1, -1):
            row, row_seq = self.rows[index], self.seqs[index]
            if row_seq is None or not row.mine or row_seq > seq:
                continue
            if row.mark == "read":
                break
            if row.mark == "sent":
                self.rows[index] = replace(row, mark="read")
                changed = True
        return changed

    @property
    def oldest_seq(self) -> int | None:
        return next((s for s in self.seqs if s is not None), None)

    def _find(self, key: str) -> int | None:
        if key not in self._keys:
            return None
        for index in range(len(self.rows) - 1, -1, -1):  # changes are almost always near the end
            if self.rows[index].key == key:
                return index
        return None

    def _drop(self, at: int | None) -> None:
        if at is not None:
            self._keys.discard(self.rows[at].key)
            del self.rows[at], self.seqs[at]
