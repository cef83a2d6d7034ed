"""What a stranger can make sign-in cost: password hashes run a few at a time (a crowd of
sign-ups cannot take the memory or the event loop), and each address gets so many ``/auth``
requests a minute, whatever names it tries."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from tui_chat.server.auth import accounts
from tui_chat.server.auth.accounts import AccountService
from tui_chat.server.auth.identity import AuthError
from tui_chat.server.stores.sqlite import SQLiteStore
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import WsClient


class CountingHasher:
    """Stands in for argon2: slow enough to overlap, and counts how many run at once."""

    def __init__(self) -> None:
        self.running = self.most = 0
        self.lock = threading.Lock()

    def hash(self, password: str) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        return "hashed:" + password

    def verify(self, stored: str, password: str) -> bool:
        return stored == self.hash(password)


async def test_password_hashes_run_a_few_at_a_time_and_a_crowd_past_the_queue_is_told_to_retry(tmp_path, monkeypatch):
    monkeypatch.setattr(accounts, "HASHING_QUEUE", 30)
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    hasher = CountingHasher()
    service = AccountService(store, b"s" * 32, clock=lambda: 1_000, hasher=hasher)
    try:
        results = await asyncio.gather(
            *(service.signup({"username": f"crowd{i:03d}", "password": "long enough"}) for i in range(40)), return_exceptions=True
        )
    finally:
        await store.close()
    assert hasher.most <= accounts.HASHING_AT_ONCE, f"{hasher.most} hashes at once"
    busy = [r for r in results if isinstance(r, AuthError)]
    assert len(busy) == 10 and {r.status for r in busy} == {503}, "past the queue: try again, not a pile-up"
    assert sum(1 for r in results if isinstance(r, dict)) == 30


async def test_each_address_gets_so_many_sign_in_requests_a_minute_and_chat_goes_on(tmp_path):
    server = start_server(tmp_path / "srv", extra_args=("--auth-rate", "5"))
    try:
        token = None
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            answers = []
            for i in range(8):  # a different name each time: the limit is the address's
                answer = await http.post("/auth/signup", json={"username": f"spray{i}", "password": "long enough"})
                answers.append(answer)
                token = token or answer.json().get("token")
        assert [a.status_code for a in answers] == [201] * 5 + [429] * 3
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 12, "about a minute's fifth"
        alice = await WsClient.open(server.ws_url, token, "spray0")
        assert (await alice.request({"action": "ping"}))["type"] == "pong", "chat is not sign-in"
        await alice.close()
    finally:
        server.stop()


@pytest.mark.parametrize("flag", ["0", "-3", "lots"])
def test_a_bad_auth_rate_is_refused(flag, tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tui_chat", "serve", "--db", str(tmp_path / "s.db"), "--auth-rate", flag],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2 and "--auth-rate" in result.stderr


async def test_guesses_from_elsewhere_never_lock_a_person_out(tmp_path):
    """Failures count per name and address: a stranger guessing at 127.0.0.2 is made to wait,
    while the person, from where they are, signs in at once."""
    server = start_server(tmp_path / "srv")
    try:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            await http.post("/auth/signup", json={"username": "target", "password": "right password"})
        stranger = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=server.http_url, transport=stranger) as http:
            statuses = [(await http.post("/auth/login", json={"username": "target", "password": f"guess {i}"})).status_code for i in range(7)]
            assert statuses == [401] * 5 + [429] * 2
            locked = await http.post("/auth/login", json={"username": "target", "password": "right password"})
            assert locked.status_code == 429 and locked.headers["retry-after"] == "60", "even the right password waits there"
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            assert (await http.post("/auth/login", json={"username": "target", "password": "right password"})).status_code == 200
    finally:
        server.stop()


async def test_the_wait_grows_with_each_failure_after_the_fifth(tmp_path):
    class Instant(CountingHasher):
        def hash(self, password: str) -> str:
            return "hashed:" + password

    now = [0]
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    service = AccountService(store, b"s" * 32, clock=lambda: now[0], hasher=Instant())
    await service.signup({"username": "slowly", "password": "right password"})

    async def attempt(at_s: float, password: str = "wrong") -> int:
        now[0] = int(at_s * 1000)
        try:
            await service.login({"username": "slowly", "password": password}, "192.0.2.7")
            return 200
        except AuthError as exc:
            return exc.status

    try:
        assert [await attempt(i) for i in range(5)] == [401] * 5  # the fifth at 4 s
        assert await attempt(5) == 429 and await attempt(64) == 429 and await attempt(65) == 401, "a minute after the fifth"
        assert await attempt(65 + 120) == 429 and await attempt(65 + 121) == 401, "then two minutes"
        assert await attempt(186 + 240) == 429 and await attempt(186 + 241, "right password") == 200, "then four"
        assert await attempt(428) == 401, "a success starts the count again"
    finally:
        await store.close()
