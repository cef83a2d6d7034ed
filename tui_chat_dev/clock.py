"""A clock a test moves by hand, for rules measured in minutes and days (milliseconds since the epoch)."""

from __future__ import annotations

START_MS = 1_800_000_000_000


class ManualClock:
    def __init__(self, now: int = START_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now
