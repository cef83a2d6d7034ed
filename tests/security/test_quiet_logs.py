"""At every log level, no secret and no message body reaches the server's log."""

from __future__ import annotations

import json

import httpx
from websockets.asyncio.client import connect

from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import WsClient

PASSWORD = "correct horse battery staple"
BODY = "a-body-nobody-else-may-read"
SHORT = "hush"


async def test_no_token_password_or_body_in_the_log_even_at_debug(tmp_path):
    server = start_server(tmp_path / "srv", extra_args=("--log-level", "debug"))
    try:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            signed = (await http.post("/auth/signup", json={"username": "quiet", "password": PASSWORD})).json()
            await http.post("/auth/signup", json={"username": "other", "password": PASSWORD})
            logged = (await http.post("/auth/login", json={"username": "quiet", "password": PASSWORD})).json()
            renewed = (await http.post("/auth/refresh", json={"refreshToken": logged["refreshToken"]})).json()
        secrets = {PASSWORD, signed["token"], signed["refreshToken"], logged["token"], logged["refreshToken"],
                   renewed["token"], renewed["refreshToken"]}  # fmt: skip
        url = f"{server.ws_url}?device=quiet-device-1"
        async with connect(url, additional_headers={"Authorization": f"Bearer {renewed['token']}"}) as ws:
            await ws.send(json.dumps({"action": "sendMessage", "id": "quiet-000001", "to": "other", "body": BODY}))
            await ws.recv()
        alice = await WsClient.open(server.ws_url, renewed["token"], "quiet", device="quiet-device-2")  # a query token
        await alice.request({"action": "sendMessage", "id": "quiet-000002", "to": "other", "body": BODY})
        # A frame short enough that a debug line would show it whole, not with its middle elided.
        await alice.request({"action": "sendMessage", "id": "q-000003", "to": "other", "body": SHORT})
        await alice.close()
    finally:
        server.stop()
    text = "\n".join(json.dumps(line) for line in server.log_lines)
    assert server.log_lines, "the server logged at debug"
    leaked = [s[:12] for s in secrets | {BODY, '"body":"hush"', "nobody-else"} if s in text]
    assert not leaked, f"in the log: {leaked}"
