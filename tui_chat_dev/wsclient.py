"""A thin test client over a real ``websockets`` connection: send frames, await the ones we expect."""

from __future__ import annotations

import asyncio
import itertools
import json
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

RECV_TIMEOUT_S = 10.0
_rids = itertools.count(1)


class WsClient:
    def __init__(self, ws: ClientConnection, user: str, device: str) -> None:
        self.ws = ws
        self.user = user
        self.device = device
        self.pending: list[dict] = []  # frames read while looking for another
        self.frames_received = 0
        """Frames as the server sent them (a ``presences`` batch is one, however many it holds)."""

    @classmethod
    async def open(cls, ws_url: str, token: str, user: str, device: str = "device-0001", *, attempt: str | None = None, **kwargs) -> "WsClient":
        query = {"token": token, "device": device, **({"attempt": attempt} if attempt else {})}
        ws = await connect(f"{ws_url}?{urlencode(query)}", **kwargs)
        return cls(ws, user, device)

    async def send(self, frame: dict | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False))

    async def recv(self, timeout: float = RECV_TIMEOUT_S) -> dict:
        if not self.pending:
            self.pending += await asyncio.wait_for(self._read(), timeout)
        return self.pending.pop(0)

    async def _read(self) -> list[dict]:
        """The next frame; a coalesced ``presences`` frame (PROTOCOL.md 7.1) comes out as one
        ``presence`` frame per state, so tests can wait for one user's state either way."""
        frame = json.loads(await self.ws.recv())
        self.frames_received += 1
        if frame.get("type") == "presences":
            return [dict(item) for item in frame.get("items", [])]
        return [frame]

    async def expect(self, kind: str, timeout: float = RECV_TIMEOUT_S, **match) -> dict:
        """The next frame of ``type`` ``kind`` (matching ``match``); frames skipped stay pending."""
        for i, frame in enumerate(self.pending):
            if _matches(frame, kind, match):
                return self.pending.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                frames = await self._read()
                for i, frame in enumerate(frames):
                    if _matches(frame, kind, match):
                        self.pending += frames[i + 1:]
                        return frame
                    self.pending.append(frame)

    async def request(self, frame: dict) -> dict:
        """Send an action with a fresh ``rid`` and return the direct reply carrying it."""
        rid = f"r{next(_rids)}"
        await self.send({**frame, "rid": rid})
        for i, pending in enumerate(self.pending):
            if pending.get("rid") == rid:
                return self.pending.pop(i)
        async with asyncio.timeout(RECV_TIMEOUT_S):
            while True:
                for reply in await self._read():
                    if reply.get("rid") == rid:
                        return reply  # a reply is a frame of its own: nothing read after it
                    self.pending.append(reply)

    async def drain(self) -> list[dict]:
        """Everything the server queued for us before it answered a ping now."""
        await self.request({"action": "ping"})
        frames, self.pending = self.pending, []
        return frames

    async def closed_code(self) -> int | None:
        """Read until the server closes the connection; the close code it sent."""
        try:
            async with asyncio.timeout(RECV_TIMEOUT_S):
                while True:
                    self.pending += await self._read()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    async def close(self) -> None:
        await self.ws.close()


def _matches(frame: dict, kind: str, match: dict) -> bool:
    return frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items())


async def login(http_url: str, username: str, password: str = "correct horse battery") -> str:
    """A fresh access token for an existing account (another device, or after a restart)."""
    async with httpx.AsyncClient() as client:
        response = await client.post(http_url + "/auth/login", json={"username": username, "password": password})
        response.raise_for_status()
        return response.json()["token"]


async def signup(http_url: str, username: str, password: str = "correct horse battery") -> str:
    async with httpx.AsyncClient() as client:
        response = await client.post(http_url + "/auth/signup", json={"username": username, "password": password})
        response.raise_for_status()
        return response.json()["token"]
