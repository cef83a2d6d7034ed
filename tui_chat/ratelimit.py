"""A token bucket per connection (PROTOCOL.md section 5: 100 actions/s sustained, bursts of 500)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from tui_chat.protocol import RATE_LIMIT_BURST, RATE_LIMIT_PER_SECOND

MAX_RATE = 100_000
"""The largest sustained rate or burst ``serve`` accepts: past it the limit means nothing."""


@dataclass(frozen=True)
class RateLimit:
    """A server's per-connection limit: ``rate`` actions a second sustained, bursts of ``burst``."""

    rate: float = RATE_LIMIT_PER_SECOND
    burst: int = RATE_LIMIT_BURST

    def bucket(self) -> "TokenBucket":
        return TokenBucket(self.rate, self.burst)


class BucketsByKey:
    """A token bucket per key (a client's address), for costs a stranger could otherwise impose
    without limit. At most ``max_keys`` are kept: the least recently used is forgotten first (by
    then it would be nearly full again), so a spray of addresses costs bounded memory."""

    def __init__(self, limit: RateLimit, *, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def take(self, key: Hashable) -> int:
        """0 when ``key`` may go on, else the milliseconds until it may."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.limit.rate, self.limit.burst, self.clock)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take()


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "updated", "clock", "refused_in_a_row")

    def __init__(
        self,
        rate: float = RATE_LIMIT_PER_SECOND,
        burst: int = RATE_LIMIT_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.clock = clock
        self.updated = clock()
        self.refused_in_a_row = 0

    def take(self, cost: int = 1) -> int:
        """Spend ``cost`` tokens (a batch costs more than one). Returns 0 when allowed, else the
        milliseconds until that many are free (never more than a full bucket's worth)."""
        cost = min(cost, self.burst)
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            self.refused_in_a_row = 0
            return 0
        self.refused_in_a_row += 1
        return max(1, math.ceil((cost - self.tokens) / self.rate * 1000))
