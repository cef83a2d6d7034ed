"""ASGI pieces both servers share (the self-hosted one and the development API Gateway emulator):
the lifespan, one socket's outgoing buffer and its frame loop, closing everything on shutdown,
request headers, JSON bodies and answers, refused handshakes, the rate-limit refusal."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tui_chat import protocol as p
from tui_chat.migrations import SchemaTooNew
from tui_chat.ratelimit import TokenBucket
from tui_chat.server.store import StoreUnavailable

if TYPE_CHECKING:
    from tui_chat.server.core import Caller

log = logging.getLogger("tui_chat.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DENIED = contextvars.ContextVar("denied_handshake", default=False)
"""Set in the task whose WebSocket handshake was refused (uvicorn's log filter reads it)."""


def client_address(scope: Scope) -> str:
    """The peer's IP address (what uvicorn was told: behind a proxy, configure its forwarding)."""
    client = scope.get("client") or ("", 0)
    return str(client[0])


def header(scope: Scope, name: str) -> str:
    """A request header's value (``name`` in lower case), ``""`` when absent."""
    wanted = name.encode("latin-1")
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return value.decode("latin-1")
    return ""


def declared_too_large(scope: Scope, limit: int) -> bool:
    """Whether the request says its body is over ``limit``: refused before a byte of it is read."""
    declared = header(scope, "content-length")
    return declared.isdigit() and int(declared) > limit


async def read_json_body(receive: Receive, limit: int) -> tuple[dict, tuple[int, str] | None]:
    """The request body as a JSON object, or the status and reason to refuse it with (a body
    that turns out longer than ``limit`` too, whatever it declared)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return {}, (400, "the request ended early")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return {}, (413, f"the body is larger than {limit // 1024} KiB")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    try:
        return p.decode_object(b"".join(chunks)), None
    except p.ProtocolError as exc:
        return {}, (400, f"the body must be a JSON object ({exc.message})")


async def json_response(send: Send, status: int, payload: dict, *, retry_after_s: int | None = None) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers.append((b"retry-after", str(retry_after_s or 900).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def deny(send: Send, status: int, message: str) -> None:
    """Refuse a WebSocket handshake with a real HTTP status (the ASGI denial-response extension)."""
    DENIED.set(True)  # uvicorn logs in the same task once the app returns
    body = json.dumps({"error": message}).encode()
    await send({
        "type": "websocket.http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "websocket.http.response.body", "body": body})


def rate_limited_frame(text: str, wait_ms: int) -> str:
    """The refusal of a frame over the rate limit; it names the frame's ``rid`` and message
    ``id`` when the frame can be parsed."""
    rid = msg_id = None
    try:
        action = p.parse_action(text)
    except p.ProtocolError:
        pass
    else:
        rid = action.rid
        msg_id = action.id if isinstance(action, p.SendMessage) else None
    return p.encode(p.event_to_wire(p.Error(code=p.RATE_LIMITED, message="slow down", id=msg_id, rid=rid, retry_after_ms=wait_ms)))


# -- sockets ---------------------------------------------------------------------------------


SEND_BUFFER_BYTES = 1024 * 1024
"""How far one connection may fall behind before it is dropped."""
REFUSALS_BEFORE_CLOSE = 1000
"""Rate-limited actions in a row after which a connection is closed with 1008."""


class LiveConnection:
    """One open socket: its identity, rate limit and a bounded outgoing buffer drained by its own
    writer task, so fan-out never waits on a slow reader: a consumer that falls more than
    ``SEND_BUFFER_BYTES`` behind is dropped instead of stalling others or growing memory."""

    __slots__ = ("caller", "_send", "_queue", "_queued_bytes", "_wakeup", "_writer", "closed", "bucket")

    def __init__(self, caller: Caller, send: Send, bucket: TokenBucket | None = None) -> None:
        self.caller = caller
        self._send = send
        self._queue: deque[str | tuple[int, str]] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self.closed = False
        self.bucket = bucket or TokenBucket()

    def start(self) -> None:
        self._writer = asyncio.create_task(self._drain(), name=f"ws-writer-{self.caller.conn_id}")

    def push(self, text: str) -> bool:
        """Queue a frame; False when the connection is closed or has just been dropped as too slow."""
        if self.closed:
            return False
        self._queued_bytes += len(text)
        if self._queued_bytes > SEND_BUFFER_BYTES:
            log.warning("dropping slow consumer", extra={"user": self.caller.username, "conn": self.caller.conn_id})
            self.abort()
            return False
        self._queue.append(text)
        self._wakeup.set()
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Send what is queued, then a close frame."""
        if not self.closed:
            self.closed = True
            self._queue.append((code, reason))
            self._wakeup.set()

    def abort(self) -> None:
        self.closed = True
        self._queue.clear()
        self._queued_bytes = 0
        if self._writer is not None:
            self._writer.cancel()

    async def finish(self, timeout: float = 1.0) -> None:
        """Let a requested close go out (briefly), then stop the writer."""
        if self.closed and self._queue and self._writer is not None:
            await asyncio.wait({self._writer}, timeout=timeout)
        self.abort()

    async def wait_drained(self) -> None:
        if self._writer is not None:
            await asyncio.wait({self._writer})

    async def _drain(self) -> None:
        try:
            while True:
                while self._queue:
                    item = self._queue.popleft()
                    if isinstance(item, tuple):
                        await self._send({"type": "websocket.close", "code": item[0], "reason": item[1]})
                        return
                    self._queued_bytes -= len(item)
                    await self._send({"type": "websocket.send", "text": item})
                self._wakeup.clear()
                await self._wakeup.wait()
        except (OSError, RuntimeError) as exc:  # the peer went away under us
            log.debug("writer stopped: %s", exc)
            self.closed = True
        except Exception as exc:  # uvicorn's ClientDisconnected and friends
            log.debug("writer stopped: %r", exc)
            self.closed = True


async def serve_frames(receive: Receive, conn: LiveConnection, handle: Callable[[str], Awaitable[None]],
                       on_frame: Callable[[], None] | None = None) -> str:  # fmt: skip
    """Read one socket's frames until it ends (returns why): binary frames close it with 1008,
    frames over its rate limit are refused (and far past it, closed), the rest are handled in order."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return f"client closed ({message.get('code', 1005)})"
        if on_frame is not None:
            on_frame()
        text = message.get("text")
        if text is None:
            conn.close(p.CLOSE_POLICY, "binary frames are not part of the protocol")
            return "binary frame"
        wait_ms = conn.bucket.take(p.frame_cost(text))
        if wait_ms:
            if conn.bucket.refused_in_a_row > REFUSALS_BEFORE_CLOSE:
                conn.close(p.CLOSE_POLICY, "far past the rate limit")
                return "rate limit"
            conn.push(rate_limited_frame(text, wait_ms))
            continue
        await handle(text)


async def close_all(live: list[LiveConnection], timeout: float) -> None:
    """Close every socket with 1001 (going away) and give the writers a moment to flush."""
    for conn in live:
        conn.close(p.CLOSE_GOING_AWAY, "server shutting down")
    if live:
        await asyncio.wait([asyncio.ensure_future(c.wait_drained()) for c in live], timeout=timeout)


async def run_lifespan(receive: Receive, send: Send, *, startup: Callable[[], Awaitable[None]], shutdown: Callable[[], Awaitable[None]]) -> None:
    """The ASGI lifespan protocol around an app's own ``startup`` and ``shutdown``."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except (OSError, sqlite3.DatabaseError, SchemaTooNew, StoreUnavailable) as exc:  # a bad --db, an unreachable DynamoDB
                log.error("the server cannot open its store: %s", exc)
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            except Exception as exc:
                log.exception("the server failed to start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
