"""A deadline for every HTTP request head, so a silent or trickling socket cannot stay open.

uvicorn arms its keep-alive timer only after a response, and any byte cancels it: a socket that
connects and says nothing (or sends its request head a byte a minute) holds a file descriptor for
good. A few hundred of those and a server under the default ``ulimit -n`` of 1024 refuses everyone.
This protocol gives each connection a fixed time to finish each request head, then closes it.
Once the head has arrived (a WebSocket upgrade included), the deadline no longer applies.
"""

from __future__ import annotations

import asyncio

DEFAULT_REQUEST_HEAD_TIMEOUT_S = 15.0
MIN_REQUEST_HEAD_TIMEOUT_S = 0.5
MAX_REQUEST_HEAD_TIMEOUT_S = 300.0


def with_head_deadline(seconds: float) -> type[asyncio.Protocol]:
    """An h11 protocol class (for ``uvicorn.Config(http=...)``) closing a socket that has not
    finished a request head ``seconds`` after it connected or after the previous response."""
    from uvicorn.protocols.http.h11_impl import H11Protocol  # only the server needs uvicorn

    class HeadDeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _armed_for: object = None
        """The request scope that was current when the deadline was armed."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._deadline is not None and self.scope is not self._armed_for:
                self._disarm()  # a new request head arrived in full

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this keep-alive connection gets the same time

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._armed_for = self.scope
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.scope is self._armed_for and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineProtocol
