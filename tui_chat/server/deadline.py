"""A deadline for every HTTP request, so a silent or trickling socket cannot stay open.

uvicorn arms its keep-alive timer only after a response, and any byte cancels it: a socket that
connects and says nothing (or sends its request a byte a minute) holds a file descriptor for
good. A few hundred of those and a server under the default ``ulimit -n`` of 1024 refuses everyone.
This protocol gives each connection a fixed time to send each whole request, its body included,
then closes it. A WebSocket upgrade is free of it once its head has arrived.
"""

from __future__ import annotations

import asyncio

DEFAULT_REQUEST_HEAD_TIMEOUT_S = 15.0
MIN_REQUEST_HEAD_TIMEOUT_S = 0.5
MAX_REQUEST_HEAD_TIMEOUT_S = 300.0


def with_head_deadline(seconds: float) -> type[asyncio.Protocol]:
    """An h11 protocol class (for ``uvicorn.Config(http=...)``) closing a socket that has not
    finished a request ``seconds`` after it connected or after the previous response."""
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
            if self._deadline is not None and self.scope is not self._armed_for and self._request_done():
                self._disarm()

        def _request_done(self) -> bool:
            """The request arrived whole (head and body), or its head asked for a WebSocket."""
            import h11

            if self.transport.get_protocol() is not self:
                return True  # upgraded: the WebSocket protocol owns the socket now
            return self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.MIGHT_SWITCH_PROTOCOL, h11.SWITCHED_PROTOCOL)

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
            unfinished = self.scope is self._armed_for or not self._request_done()  # no head yet, or a body still coming
            if unfinished and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineProtocol
