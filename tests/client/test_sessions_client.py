"""The client's side of sessions against a real server: a lost answer to a refresh does not sign
the person out, and signing out ends the session on the server (or, offline, at least here)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import httpx

from tests.client.conftest import make_client, wait_until
from tui_chat.client.auth import SignInError
from tui_chat.client.state import ConnectionState


async def test_a_lost_refresh_answer_does_not_sign_the_person_out(chat_server, tmp_path):
    client = await make_client(chat_server.http_url, tmp_path, "lostanswer")
    auth = client.account.auth
    real_post = auth._post
    lost = []

    async def post(path: str, body: dict):
        response = await real_post(path, body)
        if path == "/auth/refresh" and not lost:  # the server rotated; the answer never arrives
            lost.append(response.json()["refreshToken"])
            raise SignInError("unreachable", "the connection dropped before the answer")
        return response

    auth._post = post
    # An expired access token: the first handshake is refused 401 and the client refreshes.
    client.account.tokens = dataclasses.replace(client.account.tokens, access="")
    client.start()
    try:
        await wait_until(client, lambda: client.online or client.link.kind == ConnectionState.SIGNED_OUT, timeout=30)
        assert lost, "the first refresh was rotated on the server and its answer lost"
        assert client.online, f"still signed in after retrying with the old token ({client.link.detail})"
        assert client.account.tokens.refresh == lost[0], "the retry got the very pair the lost answer carried"
        assert client.account.vault.load("lostanswer") == lost[0]
    finally:
        await client.stop()


async def test_signing_out_ends_the_session_on_the_server(chat_server, tmp_path):
    client = await make_client(chat_server.http_url, tmp_path, "signsout")
    refresh = client.account.tokens.refresh
    client.start()
    await wait_until(client, lambda: client.online, timeout=30)
    assert await client.sign_out() is True
    assert client.account.vault.load("signsout") in (None, ""), "forgotten here"
    async with httpx.AsyncClient(base_url=chat_server.http_url) as http:
        answer = await http.post("/auth/refresh", json={"refreshToken": refresh})
    assert answer.status_code == 401, "and ended there: a copy of the token is worth nothing"


async def test_signing_out_with_the_server_gone_still_forgets_the_session_quickly(fresh_server, tmp_path):
    client = await make_client(fresh_server.http_url, tmp_path, "offlineout")
    fresh_server.stop()
    started = time.monotonic()
    assert await client.sign_out() is False, "the server could not be told"
    assert time.monotonic() - started < 10
    assert client.account.vault.load("offlineout") in (None, ""), "forgotten here all the same"


async def test_a_storm_of_arrivals_reaches_the_client_as_coalesced_presences(chat_server, tmp_path):
    """PROTOCOL.md 7.1: the server batches presence into ``presences`` frames; the client shows
    every state they carry."""
    from tui_chat_dev.wsclient import WsClient, signup

    watcher = await make_client(chat_server.http_url, tmp_path, "stormwatch")
    watcher.start()
    await wait_until(watcher, lambda: watcher.online and "stormwatch" in watcher.users, timeout=30)
    names = [f"stormy{i:02d}" for i in range(12)]
    tokens = [await signup(chat_server.http_url, name) for name in names]
    sockets = await asyncio.gather(*(WsClient.open(chat_server.ws_url, t, n, f"{n}-device") for n, t in zip(names, tokens)))
    try:
        await wait_until(watcher, lambda: all(n in watcher.users and watcher.users[n].status == "online" for n in names), timeout=30)
    finally:
        for ws in sockets:
            await ws.close()
        await watcher.stop()
