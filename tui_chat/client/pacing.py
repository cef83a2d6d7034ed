"""Pace every action on a connection just under the server's per-connection rate limit.

The server gives each connection a fresh token bucket (PROTOCOL.md section 5: 100 actions/s,
bursts of 500). A mirror of it here, reset when a connection opens, means the server never has
to refuse an action: a frame always arrives at the server after we sent it, so the server's
bucket holds at least as many tokens as ours. A small margin absorbs the moment between the
server creating its bucket and us seeing the handshake complete.

``hold`` honours a ``rate_limited`` answer anyway (``retryAfterMs``): nothing is sent until then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tui_chat.protocol import RATE_LIMIT_BURST, RATE_LIMIT_PER_SECOND
from tui_chat.ratelimit import TokenBucket

PACED_RATE = RATE_LIMIT_PER_SECOND * 0.98
PACED_BURST = RATE_LIMIT_BURST - 15


class Pacer:
    def __init__(
        self, rate: float = PACED_RATE, burst: int = PACED_BURST, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.hold_until = 0.0
        self.bucket = TokenBucket(rate, burst, clock)

    def reset(self) -> None:
        """A new connection: the server's bucket is full again."""
        self.bucket = TokenBucket(self.rate, self.burst, self.clock)
        self.hold_until = 0.0

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the server said ``rate_limited``)."""
        self.hold_until = max(self.hold_until, self.clock() + seconds)

    def delay(self, cost: int = 1) -> float:
        """0 when an action may go now (its tokens are spent: a batch costs one per 10
        messages, as on the server), else the seconds to wait first."""
        now = self.clock()
        if now < self.hold_until:
            return self.hold_until - now
        return self.bucket.take(cost) / 1000
