"""SIGKILL of the server at the two moments that matter to a message in flight, with the real
client behind a fault proxy. Either way the message ends up stored exactly once, shown once,
and out of the outbox. (Client-side kills: tests/client/test_client_crash.py and the outbox
tests in tests/client/test_units.py; a kill in mid-stream: tests/server/test_crash.py.)"""

from __future__ import annotations

import asyncio
import sqlite3

from tests.client.conftest import fast_link, make_client, wait_until
from tui_chat_dev.faultproxy import FaultProxy
from tui_chat_dev.serverproc import start_server

COMMIT_WINDOW_MS = "1500"
"""Long enough that a kill right after the frame reaches the server lands before the commit."""


def stored_ids(server) -> list[str]:
    """What the killed server's database holds (SQLite replays its WAL on open)."""
    db = sqlite3.connect(server.db_path)
    try:
        return [row[0] for row in db.execute("SELECT id FROM messages ORDER BY seq")]
    finally:
        db.close()


async def pair_behind_proxy(server, tmp_path):
    proxy = await FaultProxy(server.port).start()
    alice = await make_client(f"http://127.0.0.1:{proxy.port}", tmp_path, "alice", link=fast_link())
    bob = await make_client(server.http_url, tmp_path, "bob")
    alice.start(), bob.start()
    warm_up = alice.send("bob", "hello")  # acked: alice has caught up and her outbox flows
    await wait_until(alice, lambda: alice.queued == 0)
    await wait_until(bob, lambda: [r.id for r in bob.timeline("alice")] == [warm_up])
    return proxy, alice, bob, warm_up


async def settle_and_check(server, proxy, alice, bob, ids: list[str]) -> None:
    proxy.heal()
    await wait_until(alice, lambda: alice.online and alice.queued == 0, timeout=20)
    await wait_until(bob, lambda: [r.id for r in bob.timeline("alice")] == ids, timeout=20)
    assert [(r.id, r.state) for r in alice.timeline("bob")] == [(i, "sent") for i in ids], "shown once, as sent"
    server.kill()  # read the database as it is on disk
    assert stored_ids(server) == ids, "stored exactly once"


async def test_kill_between_commit_and_ack_stores_the_message_once(tmp_path):
    server = start_server(tmp_path / "server")
    proxy, alice, bob, warm_up = await pair_behind_proxy(server, tmp_path)
    try:
        proxy.blackhole_down = True  # the server hears alice; alice hears nothing back
        msg_id = alice.send("bob", "committed, never acked")
        await wait_until(bob, lambda: [r.id for r in bob.timeline("alice")] == [warm_up, msg_id])  # committed
        assert alice.queued == 1, "alice never saw the ack"
        await asyncio.to_thread(server.kill)
        assert stored_ids(server) == [warm_up, msg_id]
        await asyncio.to_thread(server.start)
        await settle_and_check(server, proxy, alice, bob, [warm_up, msg_id])
    finally:
        await alice.close(), await bob.close(), await proxy.stop()
        server.stop()


async def test_kill_before_commit_stores_the_message_once_after_the_retry(tmp_path):
    server = start_server(tmp_path / "server")
    proxy, alice, bob, warm_up = await pair_behind_proxy(server, tmp_path)
    try:
        # Restart with a long group-commit window: a write waits that long before its commit.
        server.extra_args = ("--commit-window-ms", COMMIT_WINDOW_MS)
        await asyncio.to_thread(server.restart)
        await wait_until(alice, lambda: alice.online and alice.queued == 0, timeout=20)
        await wait_until(bob, lambda: bob.online, timeout=20)
        proxy.blackhole_down = True
        msg_id = alice.send("bob", "received, never committed")
        await proxy.wait_sent_up(len(msg_id) + 40)  # the frame has reached the server
        await asyncio.to_thread(server.kill)
        assert stored_ids(server) == [warm_up], "the kill landed before the commit"
        assert alice.queued == 1
        server.extra_args = ()
        await asyncio.to_thread(server.start)
        await settle_and_check(server, proxy, alice, bob, [warm_up, msg_id])
    finally:
        await alice.close(), await bob.close(), await proxy.stop()
        server.stop()
