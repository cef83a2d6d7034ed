"""Helpers for the security suite: users with a live socket, forged tokens, side-effect checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tui_chat_dev.wsclient import WsClient, signup

PASSWORD = "correct horse battery"


async def user(server, names, prefix: str, device: str = "device-0001") -> WsClient:
    """A signed-up user with one open connection."""
    name = names(prefix)
    return await WsClient.open(server.ws_url, await signup(server.http_url, name), name, device)


async def handshake_status(server, token: str, device: str = "device-0001") -> int:
    """The HTTP status of a refused handshake; fails the test if the server accepts it."""
    try:
        ws = await connect(f"{server.ws_url}?{httpx.QueryParams({'token': token, 'device': device})}", open_timeout=10)
    except InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    pytest.fail(f"the server accepted the token {token[:60]!r}")


def secret_of(server) -> bytes:
    """The server's signing secret (kept beside its database), to forge tokens that differ from a
    valid one in exactly one way."""
    return server.db_path.with_name(server.db_path.name + ".secret").read_bytes().strip()


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def claims(sub: str, **changes) -> dict:
    """The claims the server puts in an access token, with ``changes`` (None removes a claim)."""
    now = int(time.time())
    base = {"sub": sub, "iss": "tui-chat", "aud": "tui-chat", "iat": now, "exp": now + 3600, "mode": "accounts"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(key: bytes, payload: dict, header: dict | None = None) -> str:
    """A JWT whose signature is HMAC-SHA256 under ``key``, whatever ``header`` claims."""
    head = b64(header or {"alg": "HS256", "typ": "JWT"}) + "." + b64(payload)
    return head + "." + b64(hmac.new(key, head.encode(), hashlib.sha256).digest())


async def all_users(client: WsClient) -> dict[str, dict]:
    """Every user getClients lists, by name (bounded paging)."""
    users, cursor = {}, None
    for _ in range(100):
        reply = await client.request({"action": "getClients", **({"cursor": cursor} if cursor else {})})
        users.update({u["user"]: u for u in reply["users"]})
        cursor = reply.get("next")
        if cursor is None:
            return users
    raise AssertionError("getClients never ended")


async def conversation(client: WsClient, other: str) -> dict | None:
    """The caller's conversation summary with ``other``, or None."""
    reply = await client.request({"action": "getConversations"})
    return next((c for c in reply["items"] if c["with"] == other), None)


def server_errors(server) -> list[dict]:
    """Log lines at error level or carrying a traceback."""
    return [
        line for line in server.log_lines
        if line.get("level") in ("error", "critical") or "exc" in line or "Traceback" in str(line.get("msg"))
    ]  # fmt: skip
