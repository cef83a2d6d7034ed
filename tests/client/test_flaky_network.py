"""The client service against the real server through a fault-injecting proxy."""

from __future__ import annotations

import asyncio
import random

from tests.client.conftest import make_client, wait_until
from tui_chat_dev.faultproxy import FaultProxy
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import WsClient


async def test_two_clients_send_500_each_through_random_cuts(chat_server, tmp_path):
    proxy = await FaultProxy(chat_server.port).start()
    url = f"http://127.0.0.1:{proxy.port}"
    alice = await make_client(url, tmp_path, "chaosalice")
    bob = await make_client(url, tmp_path, "chaosbob")
    alice.start()
    bob.start()
    rng = random.Random(7)

    async def chaos():
        while True:
            await asyncio.sleep(rng.uniform(0.05, 0.15))
            proxy.cut()

    cutter = asyncio.create_task(chaos())
    sent_a = [alice.send("chaosbob", f"a{i}") for i in range(500)]
    sent_b = [bob.send("chaosalice", f"b{i}") for i in range(500)]
    try:
        await asyncio.gather(
            wait_until(alice, lambda: alice.queued == 0, timeout=90),
            wait_until(bob, lambda: bob.queued == 0, timeout=90),
        )
    finally:
        cutter.cancel()
    cuts = proxy.connections_made
    # Let both catch up on a calm link, then compare with the server's own history.
    await wait_until(alice, lambda: alice.timeline_length("chaosbob") == 1000 and alice.online, timeout=30)
    await wait_until(bob, lambda: bob.timeline_length("chaosalice") == 1000 and bob.online, timeout=30)
    checker = await WsClient.open(chat_server.ws_url, bob.tokens.access, "chaosbob", device="checker-0001")
    history = []
    after = 0
    while True:
        page = await checker.request({"action": "getMessages", "with": "chaosalice", "after": after, "limit": 200})
        history += page["items"]
        if not page["hasMore"]:
            break
        after = page["items"][-1]["seq"]
    ids = [m["id"] for m in history]
    assert len(ids) == len(set(ids)) == 1000, "every message stored exactly once"
    assert [m["id"] for m in history if m["from"] == "chaosalice"] == sent_a, "alice's order kept"
    assert [m["id"] for m in history if m["from"] == "chaosbob"] == sent_b, "bob's order kept"
    server_view = [(m["seq"], m["id"], m["body"]) for m in history]
    for client, peer in ((alice, "chaosbob"), (bob, "chaosalice")):
        cached = [(row.seq, row.id, row.body) for row in client.timeline(peer)]
        assert cached == server_view, "the cache equals the server's history"
    assert cuts > 5, f"the link really was cut ({cuts} connections)"
    await alice.stop(), await bob.stop()
    await proxy.stop()


async def test_half_open_link_is_detected_and_recovered(chat_server, tmp_path):
    proxy = await FaultProxy(chat_server.port).start()
    url = f"http://127.0.0.1:{proxy.port}"
    alice = await make_client(url, tmp_path, "halfalice")
    await make_client(chat_server.http_url, tmp_path, "halfbob")
    alice.start()
    await wait_until(alice, lambda: alice.online)
    proxy.blackhole = True  # packets vanish; no FIN, no RST
    await wait_until(alice, lambda: not alice.online, timeout=10)
    proxy.blackhole = False
    proxy.cut()
    await wait_until(alice, lambda: alice.online, timeout=10)
    alice.send("halfbob", "made it")
    await wait_until(alice, lambda: alice.queued == 0)
    await alice.stop()
    await proxy.stop()


async def test_a_server_restart_is_survived(tmp_path):
    server = start_server(tmp_path / "srv")
    try:
        alice = await make_client(server.http_url, tmp_path, "alice")
        bob = await make_client(server.http_url, tmp_path, "bob")
        alice.start()
        bob.start()
        await wait_until(alice, lambda: alice.online)
        server.stop()
        await wait_until(alice, lambda: not alice.online)
        queued = [alice.send("bob", f"while down {i}") for i in range(5)]
        assert alice.queued == 5
        server.start()
        await wait_until(bob, lambda: [r.id for r in bob.timeline("alice")] == queued, timeout=20)
        await alice.stop(), await bob.stop()
    finally:
        server.stop()


async def test_replaced_stops_reconnecting(chat_server, tmp_path):
    first = await make_client(chat_server.http_url, tmp_path, "twin", device="same-device-1")
    first.start()
    await wait_until(first, lambda: first.online)
    second = await make_client(chat_server.http_url, tmp_path / "other", "twin", create=False, device="same-device-1")
    second.start()
    await wait_until(first, lambda: first.connection.state.kind == "replaced")
    assert first.connection._task.done(), "no reconnect loop is left running"
    await wait_until(second, lambda: second.online)
    await first.stop(), await second.stop()


async def test_a_second_device_receives_everything_including_the_first_devices_sends(chat_server, tmp_path):
    laptop = await make_client(chat_server.http_url, tmp_path, "multi", device="multi-laptop")
    phone = await make_client(chat_server.http_url, tmp_path, "multi", create=False, device="multi-phone1")
    friend = await make_client(chat_server.http_url, tmp_path, "friend")
    for c in (laptop, phone, friend):
        c.start()
    await wait_until(phone, lambda: phone.online)
    mine = laptop.send("friend", "from the laptop")
    # The laptop's send must be stored before the friend's, or server order is the other way round.
    await wait_until(laptop, lambda: laptop.queued == 0)
    await wait_until(friend, lambda: friend.online)
    friend.send("multi", "to every device")
    await wait_until(phone, lambda: [r.body for r in phone.timeline("friend")] == ["from the laptop", "to every device"])
    assert phone.timeline("friend")[0].id == mine
    for c in (laptop, phone, friend):
        await c.stop()


async def test_permanent_errors_fail_one_message_without_blocking_the_rest(chat_server, tmp_path):
    alice = await make_client(chat_server.http_url, tmp_path, "permalice")
    await make_client(chat_server.http_url, tmp_path, "permbob")
    alice.start()
    doomed = alice.send("nobody-at-all", "to the void")
    fine = alice.send("permbob", "to bob")
    await wait_until(alice, lambda: alice.queued == 0)
    [failed] = alice.timeline("nobody-at-all")
    assert failed.id == doomed and failed.state == "failed" and "nobody-at-all" in failed.error
    assert [r.id for r in alice.timeline("permbob")] == [fine]
    assert alice.discard(doomed) and alice.timeline("nobody-at-all") == []
    await alice.stop()
