"""A web page cannot drive the server through a visitor's browser: a rebound name (DNS
rebinding onto 127.0.0.1), a foreign Origin, and a form-style POST are all refused, while
terminal clients (no Origin, an IP or loopback name) go on as before."""

from __future__ import annotations

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import signup


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("origins"),
                          extra_args=("--public-host", "chat.example.org", "--allow-origin", "https://chat.example.org"))  # fmt: skip
    yield server
    server.stop()


async def handshake(server, token: str, headers: dict) -> int:
    """The handshake's status; a ``Host`` header is sent by naming it in the URL while the socket
    goes to the server's loopback port, as a rebound name would."""
    name = headers.pop("Host", f"127.0.0.1:{server.port}")
    try:
        async with connect(f"ws://{name}/ws?device=origin-device1", host="127.0.0.1", port=server.port,
                           additional_headers={"Authorization": f"Bearer {token}", **headers}):  # fmt: skip
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


async def test_websocket_handshakes_from_a_rebound_name_or_a_foreign_page_are_refused(guarded):
    token = await signup(guarded.http_url, "origins")
    assert await handshake(guarded, token, {}) == 101, "a terminal client sends no Origin"
    assert await handshake(guarded, token, {"Host": "attacker.example"}) == 403, "DNS rebinding"
    assert await handshake(guarded, token, {"Origin": "http://attacker.example"}) == 403, "a page elsewhere"
    assert await handshake(guarded, token, {"Host": "localhost:1234"}) == 101
    assert await handshake(guarded, token, {"Host": "chat.example.org", "Origin": "https://chat.example.org"}) == 101, "as configured"


async def test_sign_in_takes_json_from_known_names_and_allowed_pages_only(guarded):
    body = {"username": "origins", "password": "wrong password"}
    async with httpx.AsyncClient(base_url=guarded.http_url) as http:
        assert (await http.post("/auth/login", json=body)).status_code == 401, "refused on its merits"
        form = await http.post("/auth/login", content=b'{"username": "origins", "password": "x"}', headers={"Content-Type": "text/plain"})
        assert form.status_code == 415, "what a page may POST cross-site without a preflight"
        assert (await http.post("/auth/login", json=body, headers={"Host": "attacker.example"})).status_code == 421
        assert (await http.get("/info", headers={"Host": "attacker.example"})).status_code == 421
        assert (await http.post("/auth/login", json=body, headers={"Origin": "http://attacker.example"})).status_code == 403
        assert (await http.post("/auth/login", json=body, headers={"Origin": "https://chat.example.org", "Host": "chat.example.org"})).status_code == 401


def test_host_names_are_read_like_a_browser_sends_them():
    from tui_chat.server.origins import Origins, host_name

    assert [host_name(h) for h in ("LOCALHOST:8765", "[::1]:8765", "127.0.0.1", "chat.example.org.", "::1")] == [
        "localhost", "::1", "127.0.0.1", "chat.example.org", "::1"]
    origins = Origins(public_hosts=["Chat.Example.org"])
    assert origins.host_allowed("chat.example.org:443") and origins.host_allowed("192.168.1.20:8765")
    assert not origins.host_allowed("attacker.example") and not origins.host_allowed("")
