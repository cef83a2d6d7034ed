"""ASGI pieces both servers share (the self-hosted one and the development API Gateway emulator):
request headers, JSON bodies and answers, refused handshakes, the rate-limit refusal."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Awaitable, Callable
from typing import Any

from tui_chat import protocol as p

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DENIED = contextvars.ContextVar("denied_handshake", default=False)
"""Set in the task whose WebSocket handshake was refused (uvicorn's log filter reads it)."""


def header(scope: Scope, name: str) -> str:
    """A request header's value (``name`` in lower case), ``""`` when absent."""
    wanted = name.encode("latin-1")
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return value.decode("latin-1")
    return ""


async def read_json_body(receive: Receive, limit: int) -> tuple[dict, tuple[int, str] | None]:
    """The request body as a JSON object, or the status and reason to refuse it with."""
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


async def json_response(send: Send, status: int, payload: dict) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers.append((b"retry-after", b"900"))
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
