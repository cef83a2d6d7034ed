"""The server dies or is stopped: nothing acked is lost, and clients are told to come back."""

from __future__ import annotations

import asyncio
import signal

from tui_chat_dev.wsclient import WsClient, signup


async def test_every_acked_message_survives_kill_9(fresh_server):
    server = fresh_server
    alice = await WsClient.open(server.ws_url, await signup(server.http_url, "alice"), "alice")
    await signup(server.http_url, "bob")
    for i in range(260):  # more in flight than we wait for: the kill lands mid-stream
        await alice.send({"action": "sendMessage", "id": f"crash-{i:06d}", "to": "bob", "body": f"m{i}"})
    acked = [(await alice.expect("ack"))["message"] for _ in range(200)]
    server.kill()
    server.start()
    bob = await WsClient.open(server.ws_url, await login(server, "bob"), "bob")
    stored = await bob.request({"action": "getMessages", "with": "alice", "after": 0, "limit": 200})
    rest = await bob.request({"action": "getMessages", "with": "alice", "after": stored["items"][-1]["seq"], "limit": 200})
    history = {m["id"]: m for m in stored["items"] + rest["items"]}
    assert all(history.get(m["id"]) == m for m in acked), "every acked message is there, unchanged"
    seqs = [m["seq"] for m in stored["items"] + rest["items"]]
    assert seqs == sorted(set(seqs))
    # The sender retries what it never saw acked: stored once, the acked ones not again.
    alice = await WsClient.open(server.ws_url, await login(server, "alice"), "alice")
    for i in range(260):
        await alice.send({"action": "sendMessage", "id": f"crash-{i:06d}", "to": "bob", "body": f"m{i}"})
    retried = [(await alice.expect("ack"))["message"] for _ in range(260)]
    assert retried[:200] == acked
    final = await bob.request({"action": "getMessages", "with": "alice", "after": 200, "limit": 200})
    assert [m["body"] for m in final["items"]] == [f"m{i}" for i in range(200, 260)]


async def test_sigterm_closes_sockets_with_1001_and_keeps_data(fresh_server):
    server = fresh_server
    alice = await WsClient.open(server.ws_url, await signup(server.http_url, "alice"), "alice")
    ack = await alice.request({"action": "sendMessage", "id": "bye-0000001", "to": "alice", "body": "note"})
    stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
    assert await alice.closed_code() == 1001
    # uvicorn re-raises SIGTERM once it has shut down cleanly, as service managers expect.
    assert await stopping in (0, -signal.SIGTERM), "no crash, no forced kill"
    server.start()
    alice = await WsClient.open(server.ws_url, await login(server, "alice"), "alice")
    page = await alice.request({"action": "getMessages", "with": "alice"})
    assert page["items"] == [ack["message"]]


async def login(server, name: str) -> str:
    import httpx

    async with httpx.AsyncClient() as http:
        response = await http.post(server.http_url + "/auth/login", json={"username": name, "password": "correct horse battery"})
        response.raise_for_status()
        return response.json()["token"]
