"""Coalesced presence (PROTOCOL.md 7.1): a watcher gets at most one frame per 250 ms window with
the latest state of each user that changed, the first change after a quiet window at once."""

from __future__ import annotations

import asyncio
import json
import math
import time

import httpx

from tui_chat import protocol as p
from tui_chat.server.presence import WINDOW_S, PresenceHub
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import WsClient


class Watchers:
    def __init__(self, *conn_ids: str) -> None:
        self.conn_ids = list(conn_ids)
        self.frames: dict[str, list[dict]] = {c: [] for c in conn_ids}
        self.sizes: list[int] = []
        self.gone: list[str] = []

    async def list(self) -> list[str]:
        return list(self.conn_ids)

    async def send(self, conn_id: str, text: str) -> bool:
        if conn_id == "dead":
            return False
        self.frames[conn_id].append(json.loads(text))
        self.sizes.append(len(text.encode()))
        return True

    async def forget(self, conn_id: str) -> None:
        self.gone.append(conn_id)
        self.conn_ids.remove(conn_id)


def state(user: str, status: str = "online", text: str = "") -> p.PresenceEvent:
    return p.PresenceEvent(user, status, text, None)


async def test_the_first_change_goes_at_once_and_the_rest_wait_for_the_window():
    watchers = Watchers("w1", "w2")
    hub = PresenceHub(watchers.list, watchers.send, watchers.forget, window_s=60)  # a window longer than the test
    hub.publish(state("ann"))
    await asyncio.sleep(0)  # one turn of the loop: the hub's task runs
    await asyncio.sleep(0)
    assert watchers.frames["w1"] == [{"type": "presence", "user": "ann", "status": "online", "text": "", "lastSeen": None}]
    for name in ("bob", "cid", "ann"):
        hub.publish(state(name, "away"))
    hub.publish(state("bob", "busy"))
    await asyncio.sleep(0)
    assert len(watchers.frames["w1"]) == 1, "nothing more within the window"
    await hub.flush()  # what the end of the window does
    batch = watchers.frames["w2"][-1]
    assert batch["type"] == "presences"
    assert [(i["user"], i["status"]) for i in batch["items"]] == [("cid", "away"), ("ann", "away"), ("bob", "busy")], "latest state each, in order of change"
    assert watchers.frames["w1"] == watchers.frames["w2"] and hub.frames_sent == 4
    await hub.close()


async def test_a_big_window_is_split_into_frames_under_the_limit_and_gone_watchers_are_dropped():
    watchers = Watchers("w1", "dead")
    hub = PresenceHub(watchers.list, watchers.send, watchers.forget, window_s=60)
    for i in range(1500):
        hub.publish(state(f"user{i:04d}", "busy", "x" * 140))
    await hub.flush()
    frames = watchers.frames["w1"]
    assert len(frames) > 1 and sum(len(f["items"]) for f in frames) == 1500
    assert max(watchers.sizes) <= p.MAX_FRAME_BYTES
    assert watchers.gone == ["dead"]
    await hub.close()


async def nickname(server, name: str) -> str:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        return (await http.post("/auth/login", json={"username": name, "device": f"{name}-device"})).json()["token"]


async def test_a_storm_of_arrivals_costs_a_watcher_one_frame_per_window(tmp_path):
    server = start_server(tmp_path, auth="open")  # nicknames: the storm is of connections, not of password hashes
    try:
        names = [f"storm{i:03d}" for i in range(60)]
        tokens = [await nickname(server, n) for n in names]
        watcher = await WsClient.open(server.ws_url, await nickname(server, "watcher"), "watcher", "watcher-device")
        await watcher.request({"action": "getClients"})
        before = watcher.frames_received
        started = time.monotonic()
        clients = await asyncio.gather(*(WsClient.open(server.ws_url, t, n, f"{n}-device") for n, t in zip(names, tokens)))
        online: set[str] = set()
        while not online >= set(names):
            frame = await watcher.expect("presence", status="online")
            online.add(frame["user"])
        elapsed = time.monotonic() - started
        frames = watcher.frames_received - before
        # The server spaces its frames by the window, so in `elapsed` at most this many fit.
        assert frames <= math.ceil(elapsed / WINDOW_S) + 1, f"{frames} frames in {elapsed:.2f} s"
        assert frames < len(names), "fewer frames than arrivals"
        for client in clients:
            await client.close()
        await watcher.close()
    finally:
        server.stop()
