"""Sign-in over HTTP against a real server: accounts, refresh rotation, throttling, bad bodies."""

from __future__ import annotations

import os
import stat

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tui_chat_dev.serverproc import start_server


@pytest.fixture
async def http(server):
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        yield client


async def test_signup_login_and_refresh_rotation(http, names):
    name = names("Acct").upper()
    created = await http.post("/auth/signup", json={"username": name, "password": "long enough"})
    assert created.status_code == 201
    body = created.json()
    assert body["user"] == name.lower() and body["token"] and body["refreshToken"]
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == name.lower() and claims["exp"] - claims["iat"] == 3600

    login = await http.post("/auth/login", json={"username": name.lower(), "password": "long enough"})
    assert login.status_code == 200

    refreshed = await http.post("/auth/refresh", json={"refreshToken": body["refreshToken"]})
    assert refreshed.status_code == 200
    assert set(refreshed.json()) == {"token", "refreshToken"}
    retried = await http.post("/auth/refresh", json={"refreshToken": body["refreshToken"]})
    assert retried.json() == refreshed.json(), "a retry right away (a lost answer) gets the same pair"
    again = await http.post("/auth/refresh", json={"refreshToken": refreshed.json()["refreshToken"]})
    assert again.status_code == 200, "the rotated token works"
    reused = await http.post("/auth/refresh", json={"refreshToken": body["refreshToken"]})
    assert reused.status_code == 401, "once its successor was used, the old token is a replay"


async def test_signup_refusals(http, names):
    name = names("taken")
    assert (await http.post("/auth/signup", json={"username": name, "password": "long enough"})).status_code == 201
    assert (await http.post("/auth/signup", json={"username": name.upper(), "password": "long enough"})).status_code == 409
    assert (await http.post("/auth/signup", json={"username": "x", "password": "long enough"})).status_code == 400
    short = await http.post("/auth/signup", json={"username": names("short"), "password": "short"})
    assert short.status_code == 400 and "8" in short.json()["error"]


async def test_one_answer_for_unknown_user_and_wrong_password(http, names):
    name = names("pw")
    await http.post("/auth/signup", json={"username": name, "password": "right password"})
    wrong = await http.post("/auth/login", json={"username": name, "password": "wrong password"})
    unknown = await http.post("/auth/login", json={"username": names("ghost"), "password": "wrong password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_five_failures_in_a_window_answer_429_even_for_the_right_password(http, names):
    name = names("brute")
    await http.post("/auth/signup", json={"username": name, "password": "right password"})
    statuses = [
        (await http.post("/auth/login", json={"username": name, "password": f"guess {i}"})).status_code for i in range(5)
    ]
    assert statuses == [401] * 5
    locked = await http.post("/auth/login", json={"username": name, "password": "right password"})
    assert locked.status_code == 429 and locked.headers["retry-after"]
    other = names("bystander")
    await http.post("/auth/signup", json={"username": other, "password": "right password"})
    assert (await http.post("/auth/login", json={"username": other, "password": "right password"})).status_code == 200


@pytest.mark.parametrize(
    "content,path",
    [
        (b"not json", "/auth/login"),
        (b"[1,2]", "/auth/signup"),
        (b'{"username": 5, "password": "long enough"}', "/auth/signup"),
        (b'{"username": "okname", "password": 12345678}', "/auth/signup"),
        (b'{"refreshToken": 7}', "/auth/refresh"),
        (b"\xff\xfe", "/auth/login"),
        (b'{"username": "okname", "password": "a\\ud800bcdefghi"}', "/auth/signup"),
    ],
)
async def test_bodies_of_the_wrong_shape_get_400(http, content, path):
    response = await http.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]


async def test_oversized_bodies_unknown_paths_and_methods(http):
    assert (await http.post("/auth/login", content=b"x" * 70_000)).status_code == 413
    assert (await http.get("/nope")).status_code == 404
    assert (await http.get("/auth/login")).status_code == 405


async def test_info_and_health(http):
    info = (await http.get("/info")).json()
    assert info["auth"] == "accounts" and info["protocol"] == 2 and info["signup"] is True
    assert (await http.get("/healthz")).json() == {"status": "ok"}


async def test_secret_file_is_private_and_survives_restarts(fresh_server):
    secret = fresh_server.db_path.with_name(fresh_server.db_path.name + ".secret")
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    async with httpx.AsyncClient(base_url=fresh_server.http_url) as http:
        token = (await http.post("/auth/signup", json={"username": "keeper", "password": "long enough"})).json()["token"]
    fresh_server.restart()
    ws = await connect(f"{fresh_server.ws_url}?token={token}&device=device-0001")
    await ws.close()


async def test_tokens_signed_with_another_secret_or_expired_are_refused(server, names):
    name = names("forge")
    now = 1_900_000_000
    forged = jwt.encode(
        {"sub": name, "iss": "tui-chat", "aud": "tui-chat", "iat": now, "exp": now + 3600, "mode": "accounts"},
        "not the server's secret" * 2, algorithm="HS256",
    )  # fmt: skip
    unsigned = jwt.encode({"sub": name, "iss": "tui-chat", "aud": "tui-chat", "iat": now, "exp": now + 3600}, None, algorithm="none")
    for token in (forged, unsigned):
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{server.ws_url}?token={token}&device=device-0001")
        assert refused.value.response.status_code == 401


def test_signup_can_be_disabled(tmp_path):
    running = start_server(tmp_path, extra_args=("--no-signup",))
    try:
        response = httpx.post(running.http_url + "/auth/signup", json={"username": "newbie", "password": "long enough"})
        assert response.status_code == 403
        assert httpx.get(running.http_url + "/info").json()["signup"] is False
    finally:
        running.stop()
