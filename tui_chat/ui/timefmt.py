"""Times as people read them, against an injectable clock and time zone (deterministic tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def system_now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Clock:
    """Now and the local zone; tests pass a fixed ``now`` and ``tz=timezone.utc``."""

    now: Callable[[], int] = system_now_ms
    tz: tzinfo | None = None
    """``None``: the system's local zone."""
    _offsets: dict[int, int] = field(default_factory=dict, repr=False)

    def now_ms(self) -> int:
        return self.now()

    def local(self, ts_ms: int) -> datetime:
        return datetime.fromtimestamp(ts_ms / 1000, self.tz or timezone.utc).astimezone(self.tz)

    def day_number(self, ts_ms: int) -> int:
        """The local calendar day as an integer; cheap enough to call for 100,000 messages."""
        hour = ts_ms // HOUR_MS
        offset = self._offsets.get(hour)
        if offset is None:  # the zone's offset is constant within an hour, so cache per hour
            utcoffset = self.local(ts_ms).utcoffset() or timedelta(0)
            offset = self._offsets[hour] = int(utcoffset.total_seconds() * 1000)
        return (ts_ms + offset) // DAY_MS

    def time_label(self, ts_ms: int) -> str:
        return self.local(ts_ms).strftime("%H:%M")

    def ago_label(self, ts_ms: int) -> str:
        """How long ago, as people say it: "just now", "12 min ago", "3 h ago", "yesterday", "on 4 March"."""
        elapsed = self.now_ms() - ts_ms
        if elapsed < 60_000:
            return "just now"
        if elapsed < HOUR_MS:
            return f"{elapsed // 60_000} min ago"
        days_ago = self.day_number(self.now_ms()) - self.day_number(ts_ms)
        if days_ago == 0:
            return f"{elapsed // HOUR_MS} h ago"
        if days_ago == 1:
            return "yesterday"
        moment = self.local(ts_ms)
        return f"on {moment.day} {moment:%B}" + (f" {moment.year}" if days_ago > 300 else "")

    def day_label(self, ts_ms: int) -> str:
        days_ago = self.day_number(self.now_ms()) - self.day_number(ts_ms)
        if days_ago == 0:
            return "Today"
        if days_ago == 1:
            return "Yesterday"
        moment = self.local(ts_ms)
        return f"{moment:%A} {moment.day} {moment:%B %Y}"
