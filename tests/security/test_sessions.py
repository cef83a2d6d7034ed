"""Sessions (issue 13, problem 6): sign-out, a replayed refresh token ends its family, an absolute
lifetime, a cap on sessions and on devices, and the retry grace that keeps a person signed in
when the answer to a refresh was lost.

The clock-dependent rules run against the account service over a real SQLite store with a fixed
clock; what a client sees runs against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import httpx
import jwt
import pytest
from argon2 import PasswordHasher

from tests.security.helpers import handshake_status
from tui_chat.server.auth import accounts as acc
from tui_chat.server.auth.accounts import AccountService
from tui_chat.server.auth.admission import MAX_DEVICES_PER_USER
from tui_chat.server.auth.identity import AuthError
from tui_chat.server.stores.sqlite import SQLiteStore
from tui_chat_dev.clock import ManualClock
from tui_chat_dev.wsclient import WsClient, signup

DAY_MS = 24 * 60 * 60 * 1000
PASSWORD = "correct horse battery"


@pytest.fixture
async def service(tmp_path):
    store = SQLiteStore(tmp_path / "sessions.db")
    await store.open()
    clock = ManualClock()
    fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    service = AccountService(store, b"s" * 64, clock=clock, hasher=fast)
    service.test_clock = clock  # the rules below are about days: the clock is the test's
    yield service
    await store.close()


async def refresh(service: AccountService, token: str) -> dict:
    return await service.refresh({"refreshToken": token})


async def refused(service: AccountService, token: str) -> int:
    with pytest.raises(AuthError) as caught:
        await refresh(service, token)
    return caught.value.status


async def test_a_retry_within_the_grace_gets_the_same_pair(service):
    first = await service.signup({"username": "alice", "password": PASSWORD})
    service.test_clock.now += 1_000
    renewed = await refresh(service, first["refreshToken"])  # the server rotated; the answer was lost
    service.test_clock.now += acc.REFRESH_GRACE_MS
    retried = await refresh(service, first["refreshToken"])
    assert retried == renewed, "the retry is answered with the very same tokens"
    service.test_clock.now += 1
    assert (await refresh(service, renewed["refreshToken"]))["refreshToken"] != renewed["refreshToken"], "and they work"


async def test_the_same_old_token_after_the_grace_ends_the_whole_family(service):
    first = await service.signup({"username": "alice", "password": PASSWORD})
    renewed = await refresh(service, first["refreshToken"])
    service.test_clock.now += acc.REFRESH_GRACE_MS + 1
    assert await refused(service, first["refreshToken"]) == 401, "past the grace it is a replay"
    assert await refused(service, renewed["refreshToken"]) == 401, "whoever holds the newer token loses it too"
    sid = jwt.decode(renewed["token"], options={"verify_signature": False})["sid"]
    assert not await service.store.session_active(sid, "alice", service.test_clock.now)
    again = await service.login({"username": "alice", "password": PASSWORD})
    assert await refresh(service, again["refreshToken"]), "signing in again starts a new session"


async def test_an_old_token_after_its_successor_was_used_is_a_replay_even_at_once(service):
    first = await service.signup({"username": "alice", "password": PASSWORD})
    second = await refresh(service, first["refreshToken"])
    third = await refresh(service, second["refreshToken"])
    assert await refused(service, first["refreshToken"]) == 401
    assert await refused(service, third["refreshToken"]) == 401


async def test_a_session_ends_when_idle_and_at_its_absolute_end(service):
    first = await service.signup({"username": "alice", "password": PASSWORD})
    service.test_clock.now += acc.REFRESH_IDLE_MS
    assert await refused(service, first["refreshToken"]) == 401, "a month unused"
    token = (await service.login({"username": "alice", "password": PASSWORD}))["refreshToken"]
    started = service.test_clock.now
    while service.test_clock.now + 20 * DAY_MS < started + acc.SESSION_LIFETIME_MS:
        service.test_clock.now += 20 * DAY_MS  # refreshed every 20 days: within the idle window
        token = (await refresh(service, token))["refreshToken"]
    service.test_clock.now = started + acc.SESSION_LIFETIME_MS
    assert await refused(service, token) == 401, "the window no longer slides forever"


async def test_a_new_sign_in_past_the_cap_ends_the_oldest_session(service):
    sessions = [await service.signup({"username": "alice", "password": PASSWORD})]
    for _ in range(acc.MAX_SESSIONS_PER_USER):
        service.test_clock.now += 1
        sessions.append(await service.login({"username": "alice", "password": PASSWORD}))
    assert await refused(service, sessions[0]["refreshToken"]) == 401, "the oldest is gone"
    assert await refresh(service, sessions[1]["refreshToken"]), "the others are kept"
    assert len(await service.store.list_sessions("alice", service.test_clock.now)) == acc.MAX_SESSIONS_PER_USER


async def test_malformed_and_foreign_refresh_tokens(service):
    await service.signup({"username": "alice", "password": PASSWORD})
    assert await refused(service, "x" * 43) == 401, "an old-style token: sign in again"
    assert await refused(service, "A" * 22 + "." + "B" * 43) == 401, "an unknown family"
    with pytest.raises(AuthError) as caught:
        await service.refresh({"refreshToken": 7})
    assert caught.value.status == 400


# -- against a real server --------------------------------------------------------------------


async def test_sign_out_ends_the_refresh_token_and_new_connections(server, names):
    name = names("logout")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        tokens = (await http.post("/auth/signup", json={"username": name, "password": PASSWORD})).json()
        alive = await WsClient.open(server.ws_url, tokens["token"], name, "device-0001")
        out = await http.post("/auth/logout", json={"refreshToken": tokens["refreshToken"]})
        assert out.status_code == 200
        assert (await http.post("/auth/logout", json={"refreshToken": tokens["refreshToken"]})).status_code == 200, "idempotent"
        assert (await http.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})).status_code == 401
        assert await handshake_status(server, tokens["token"], "device-0002") == 401, "its unexpired access token opens nothing new"
        assert (await alive.request({"action": "ping"}))["type"] == "pong", "a connection already open is not cut (PROTOCOL.md 5)"
        assert (await http.post("/auth/logout", json={"refreshToken": 7})).status_code == 400
        await alive.close()


async def test_a_replayed_refresh_token_ends_the_family_on_the_server(server, names):
    name = names("replay")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        first = (await http.post("/auth/signup", json={"username": name, "password": PASSWORD})).json()
        second = (await http.post("/auth/refresh", json={"refreshToken": first["refreshToken"]})).json()
        third = (await http.post("/auth/refresh", json={"refreshToken": second["refreshToken"]})).json()
        stolen = await http.post("/auth/refresh", json={"refreshToken": first["refreshToken"]})
        assert stolen.status_code == 401
        assert (await http.post("/auth/refresh", json={"refreshToken": third["refreshToken"]})).status_code == 401
        assert await handshake_status(server, third["token"]) == 401


async def test_one_token_cannot_open_connections_for_unlimited_devices(server, names):
    name = names("devices")
    token = await signup(server.http_url, name)
    sockets = [await WsClient.open(server.ws_url, token, name, f"device-{i:04d}") for i in range(MAX_DEVICES_PER_USER)]
    try:
        assert await handshake_status(server, token, "device-made-up") == 429
        again = await WsClient.open(server.ws_url, token, name, "device-0003")  # a known device reconnects
        sockets.append(again)
        await sockets[0].close()
        sockets.append(await asyncio.wait_for(_open_when_admitted(server, token, name, "device-new-1"), 30))
    finally:
        for ws in sockets:
            await ws.close()


async def _open_when_admitted(server, token: str, name: str, device: str) -> WsClient:
    """The disconnect is handled after the socket closes: retry until the server has seen it."""
    while True:
        try:
            return await WsClient.open(server.ws_url, token, name, device)
        except Exception:  # noqa: BLE001 - refused with 429 until the disconnect is handled
            await asyncio.sleep(0.05)


async def test_sign_up_on_a_nickname_server_says_how_to_sign_in(tmp_path):
    store = SQLiteStore(tmp_path / "open.db")
    await store.open()
    try:
        service = AccountService(store, b"s" * 64, mode="open", clock=ManualClock())
        with pytest.raises(AuthError) as caught:
            await service.signup({"username": "ann", "password": PASSWORD})
        assert caught.value.status == 403 and "nicknames" in caught.value.message and "/auth/login" in caught.value.message
    finally:
        await store.close()
