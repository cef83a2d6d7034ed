"""Reconnect delays: exponential backoff with full jitter (AWS Architecture Blog, 2015).

Every delay is drawn uniformly from [0, min(cap, base * 2**attempt)], so a thousand clients
cut off by the same outage do not come back in lockstep. The attempt count resets once a
connection has stayed up for ``stable_after`` seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        base: float = 1.0,
        cap: float = 30.0,
        stable_after: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.stable_after = stable_after
        self.rand = rand
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 32)
        return self.rand() * ceiling

    def connection_lasted(self, seconds: float) -> None:
        """Report how long the last connection stayed up; a stable one resets the backoff."""
        if seconds >= self.stable_after:
            self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0
