"""Sockets that never finish a request head (silent, or trickling a byte at a time: slowloris)
are closed after ``serve --request-timeout``; a WebSocket that finished its handshake stays."""

from __future__ import annotations

import asyncio
import time

import httpx

from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import WsClient, signup

TIMEOUT_S = 1.0
WAIT_LIMIT_S = 30.0
"""Only a bound on a broken server: a working one closes both sockets about ``TIMEOUT_S`` in."""


async def closed_by_server(reader: asyncio.StreamReader, limit_s: float) -> bool:
    """True when the server ends the connection (EOF or reset) within ``limit_s``."""
    try:
        return await asyncio.wait_for(reader.read(), limit_s) == b""
    except ConnectionResetError:
        return True


async def test_silent_and_trickling_sockets_are_closed_and_a_chat_connection_stays(tmp_path):
    server = start_server(tmp_path / "srv", extra_args=("--request-timeout", str(TIMEOUT_S)))
    try:
        alice = await WsClient.open(server.ws_url, await signup(server.http_url, "alice"), "alice")
        started = time.monotonic()
        silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", server.port)
        trickle_reader, trickle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        # Padded so that trickled a byte every 20 ms the head would take over a minute: a close
        # before it is complete shows that bytes now and then do not extend the deadline.
        head = b"GET /ws?device=slowloris-01 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"p" * 3000 + b"\r\n"
        sent = 0

        async def trickle() -> None:
            nonlocal sent
            try:
                for byte in head:
                    trickle_writer.write(bytes([byte]))
                    await trickle_writer.drain()
                    sent += 1
                    await asyncio.sleep(0.02)
            except ConnectionError:
                pass  # closed by the server: what the test waits for

        trickling = asyncio.create_task(trickle())
        assert await closed_by_server(silent_reader, WAIT_LIMIT_S), "a silent socket is closed"
        silent_after = time.monotonic() - started
        assert await closed_by_server(trickle_reader, WAIT_LIMIT_S), "a trickling socket is closed"
        trickling.cancel()
        assert silent_after >= TIMEOUT_S * 0.9, f"closed after {silent_after:.2f} s, before its deadline"
        assert sent < len(head), "a byte now and then does not extend the deadline"

        # alice connected before both and has said nothing since: her socket is past the deadline too
        assert (await alice.request({"action": "ping"}))["type"] == "pong", "a finished handshake is not timed out"
        # a keep-alive HTTP connection serves a second request after the first response
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/info")).status_code == 200
        await alice.ws.close()
        for writer in (silent_writer, trickle_writer):
            writer.close()
    finally:
        server.stop()
    assert not [line for line in server.log_lines if line.get("level") in ("error", "critical")]


async def test_a_body_that_trickles_is_cut_at_the_deadline_and_an_oversized_one_refused_at_once(tmp_path):
    """The deadline covers the whole request, its body included; a declared length over the cap
    is answered 413 before a byte of the body is read (it was held forever)."""
    server = start_server(tmp_path / "srv", extra_args=("--request-timeout", str(TIMEOUT_S)))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 60000\r\n\r\n{")  # fmt: skip
        await writer.drain()
        started = time.monotonic()

        async def trickle() -> None:
            try:
                for _ in range(3000):  # a byte every 20 ms: a minute for what was declared
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.02)
            except ConnectionError:
                pass

        trickling = asyncio.create_task(trickle())
        assert await closed_by_server(reader, WAIT_LIMIT_S), "a trickling body is cut"
        trickling.cancel()
        assert time.monotonic() - started < 60, "closed before the body could have arrived"
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 99999999999\r\n\r\n{")  # fmt: skip
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)  # long before any deadline
        assert answer.startswith(b"HTTP/1.1 413"), answer
        writer.close()
    finally:
        server.stop()
    assert not [line for line in server.log_lines if line.get("level") in ("error", "critical")]
