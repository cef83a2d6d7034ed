"""A flood of connections (bad tokens, half-open and silent sockets) does not take the server away
from legitimate clients.

Local runtime only (``fresh_server``): this is about the self-hosted ASGI server's own handling of
sockets. In the cloud API Gateway takes the handshakes; the emulator that stands in for it locally
is test scaffolding, and flooding it would measure the emulator, not the product.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.security.helpers import claims, hs256, server_errors
from tui_chat_dev.wsclient import WsClient, signup

FLOOD = 480
"""Connections opened in the flood: 300 refused handshakes, 120 sockets held silent or half-open, 60 garbage."""
SLOW_S = 2.0
"""A message that takes longer than this to arrive is one a user would notice."""


async def test_a_flood_of_connections_leaves_legitimate_clients_served(fresh_server):
    server = fresh_server
    alice = await WsClient.open(server.ws_url, await signup(server.http_url, "alice"), "alice")
    bob = await WsClient.open(server.ws_url, await signup(server.http_url, "bob"), "bob")
    carol_token = await signup(server.http_url, "carol")
    held: list[asyncio.StreamWriter] = []  # sockets the flood keeps open
    statuses: list[int] = []

    async def refused_handshake(token: str, device: str | None = "device-0001") -> None:
        query = str(httpx.QueryParams({"token": token, **({"device": device} if device else {})}))
        try:
            ws = await connect(f"{server.ws_url}?{query}", open_timeout=20)
        except InvalidStatus as refused:
            statuses.append(refused.response.status_code)
        else:
            await ws.close()
            statuses.append(101)

    async def raw(data: bytes, keep: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(data)
        await writer.drain()
        if keep:
            held.append(writer)
        else:  # garbage: the server answers (400) and hangs up
            await asyncio.wait_for(reader.read(), 20)
            writer.close()

    forged = hs256(b"not the secret" * 3, claims("alice"))
    expired = hs256(b"x" * 32, claims("alice", exp=int(time.time()) - 60))
    half_open = b"GET /ws?device=device-0001&token=x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    kinds = [
        lambda i: refused_handshake(f"garbage-{i}"),
        lambda i: refused_handshake(forged),
        lambda i: refused_handshake(expired),
        lambda i: refused_handshake("a.b.c" * (i % 50 + 1)),
        lambda i: refused_handshake(forged, device=None),
        lambda i: raw(b"", keep=True),  # connects and never says a word
        lambda i: raw(half_open, keep=True),  # a handshake that never completes
        lambda i: raw(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n", keep=False),  # TLS hello bytes on plain HTTP
    ]
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> None:
        async with gate:
            await kinds[i % len(kinds)](i)

    latencies: list[float] = []
    flooding = True

    async def chat() -> None:  # alice keeps talking to bob while the flood goes on
        for i in range(1000):
            if not flooding:
                return
            started = time.monotonic()
            await alice.send({"action": "sendMessage", "id": f"flood-{i:06d}", "to": "bob", "body": f"still here {i}"})
            await bob.expect("message", timeout=SLOW_S * 5)
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    async with asyncio.timeout(60):
        talker = asyncio.create_task(chat())
        await asyncio.gather(*(one(i) for i in range(FLOOD)))
        # with the silent and half-open sockets still held, a new client connects and is heard
        t0 = time.monotonic()
        carol = await WsClient.open(server.ws_url, carol_token, "carol")
        ack = await carol.request({"action": "sendMessage", "id": "carol-00001", "to": "alice", "body": "made it"})
        assert ack["type"] == "ack"
        join_s = time.monotonic() - t0
        flooding = False
        await talker
    flood_s = time.monotonic() - started
    for writer in held:
        writer.close()

    assert sorted(set(statuses)) == [400, 401] and len(statuses) == FLOOD * 5 // 8, "every bad handshake refused"
    assert len(held) == FLOOD * 2 // 8
    assert latencies and max(latencies) < SLOW_S, f"alice's messages during the flood: max {max(latencies):.2f} s"
    assert join_s < SLOW_S, f"a new client took {join_s:.2f} s to connect and be heard"
    t0 = time.monotonic()
    ack = await alice.request({"action": "sendMessage", "id": "after-00001", "to": "carol", "body": "after"})
    assert ack["type"] == "ack" and (await carol.expect("message"))["message"]["body"] == "after"
    assert time.monotonic() - t0 < SLOW_S / 2
    assert server.proc.poll() is None and httpx.get(server.http_url + "/healthz").status_code == 200
    assert not server_errors(server), "refusals are not errors (uvicorn's 'Invalid HTTP request' warnings are fine)"
    print(f"flood of {FLOOD} in {flood_s:.1f} s; {len(latencies)} messages meanwhile, max {max(latencies) * 1000:.0f} ms; join {join_s * 1000:.0f} ms")
