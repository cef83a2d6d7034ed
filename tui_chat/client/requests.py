"""Requests and their replies, matched by ``rid`` (catch-up, paging: anything that waits for an answer).

One job: send an action with a fresh ``rid`` on one connection and hand back the event the
server answered it with, waiting out ``rate_limited`` refusals. When the link drops, every
request still waiting fails at once with ``ConnectionError``.

API Gateway answers a frame it did not hand on with an error frame that names no ``rid``
(PROTOCOL.md 7.3), so it cannot say which request it was. Requests that only read are asked
again at once; the others (creating a room, an upload link) could run twice, so they wait for
their answer or the timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

from tui_chat import protocol as p
from tui_chat.client.connection import Connection

REQUEST_TIMEOUT_S = 15.0
RATE_LIMIT_RETRIES = 5
GATEWAY_RETRY_S = 0.25
"""A pause before asking again after API Gateway dropped a frame (it throttles, or a Lambda failed)."""
READ_ONLY = frozenset({"getMessages", "getConversations", "getClients", "getRoom", "getReads", "requestDownload", "ping"})


class RequestFailed(Exception):
    """The server answered a request with an error (or kept refusing it for the rate):
    ``code`` is the error's code (``rate_limited`` for the latter), ``detail`` its message."""

    def __init__(self, text: str, code: str = "", detail: str = "") -> None:
        super().__init__(text)
        self.code = code
        self.detail = detail


class Requests:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._replies: dict[str, asyncio.Future[p.Event]] = {}
        self._read_only: set[str] = set()  # rids of waiting requests that are safe to ask twice
        self._rids = itertools.count(1)

    async def ask(self, generation: int, action: p.Action, kind: type) -> p.Event:
        """Send ``action`` on connection ``generation``; its reply, which must be a ``kind``."""
        for _ in range(RATE_LIMIT_RETRIES):
            reply = await self._request(generation, action)
            if isinstance(reply, kind):
                return reply
            if isinstance(reply, p.Error) and reply.code == p.RATE_LIMITED:
                self.connection.pacer.hold((reply.retry_after_ms or 1000) / 1000)
                continue
            if isinstance(reply, p.GatewayError):
                self.connection.pacer.hold(GATEWAY_RETRY_S)
                continue
            code, detail = getattr(reply, "code", ""), getattr(reply, "message", "")
            raise RequestFailed(f"{action.action} was answered {code or reply!r}: {detail}", code, detail)
        raise RequestFailed(f"{action.action} was refused (rate limit or API Gateway) {RATE_LIMIT_RETRIES} times", p.RATE_LIMITED)

    async def _request(self, generation: int, action: p.Action) -> p.Event:
        rid = f"c{next(self._rids)}"
        future = asyncio.get_running_loop().create_future()
        self._replies[rid] = future
        if action.action in READ_ONLY:
            self._read_only.add(rid)
        try:
            if not await self.connection.send(dataclasses.replace(action, rid=rid), generation=generation):
                raise ConnectionError("not connected")
            return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        finally:
            self._replies.pop(rid, None)
            self._read_only.discard(rid)

    def answer(self, event: p.Event) -> bool:
        """Hand ``event`` to the request waiting for it; False when none is (an ack is never a reply)."""
        rid = getattr(event, "rid", None)
        if rid is None or isinstance(event, p.Ack):
            return False
        future = self._replies.pop(rid, None)
        if future is None:
            return False
        if not future.done():
            future.set_result(event)
        return True

    def gateway_error(self) -> None:
        """API Gateway dropped one of our frames, which one unknown: ask every read again."""
        for rid in list(self._read_only):
            future = self._replies.pop(rid, None)
            if future is not None and not future.done():
                future.set_result(p.GatewayError())

    def link_lost(self) -> None:
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ConnectionError("the connection was lost"))
        self._replies.clear()
