"""PROTOCOL.md 7.3 on an emulator that invokes each frame on its own, as API Gateway does.

- Two send frames in flight at once CAN be stored out of order there (the emulator holds the
  first back until the second has been handled: the order API Gateway is free to choose).
- The real client keeps one send frame in flight, so a burst is stored in the order written,
  each message once, however the invocations are delayed.
- A send answered by API Gateway's own error frame (a Lambda that failed, a throttle) is sent
  again at once on the same connection, not after the 10 s reply timeout or a reconnect, and
  stored once; an error frame that comes after the acks (the Lambda failed after its work)
  stores nothing twice and disorders nothing.

One emulator for the module (concurrent from its start); each test uses usernames of its own and
puts the frame settings back. Waits are event-driven (the client's events, the frames awaited)
and bounded.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.client.conftest import make_client, memory_keyring, wait_until  # noqa: F401 - memory_keyring: autouse
from tui_chat.client import sender as sender_module
from tui_chat.client.sender import SEND_REPLY_TIMEOUT_S
from tui_chat.client.service import ChatClient
from tui_chat_dev.emulator import CONCURRENT_FRAMES_ENV, EmulatorControl
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import WsClient, signup

pytest.importorskip("flask", reason="moto's server mode needs moto[server]")

_names = itertools.count(1)
BURST = 100
"""Messages in a burst: 2+ batches of 50. Each message costs moto some 25-40 ms, so 200 would
take 5-7 s here, too close to the time a test may take on a busy machine."""
PROMPT_RESEND_S = SEND_REPLY_TIMEOUT_S / 2
"""A resend prompted by the error frame comes well before the reply timeout would send it again."""


@pytest.fixture
def no_reply_timeout(monkeypatch):
    """Only an error frame can make the client send again: its reply timeout never comes in a test."""
    monkeypatch.setattr(sender_module, "SEND_REPLY_TIMEOUT_S", 600.0)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("concurrent-emulator"), runtime="lambda", env={CONCURRENT_FRAMES_ENV: "1"})
    yield running
    running.stop()


@pytest.fixture
async def control(emulator):
    control = EmulatorControl(emulator.http_url)
    assert (await control.stats())["concurrent"], "the module's emulator invokes frames concurrently"
    yield control
    await control.clear_faults()
    await control.frames(concurrent=True)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


async def stored_bodies(reader: WsClient, peer: str) -> list[str]:
    """The conversation with ``peer`` as the server holds it, by ``seq`` (every page)."""
    bodies: list[str] = []
    after = 0
    while True:
        page = await reader.request({"action": "getMessages", "with": peer, "after": after, "limit": 200})
        assert page["type"] == "messages", page
        bodies += [m["body"] for m in page["items"]]
        if not page["hasMore"] or not page["items"]:
            return bodies
        after = page["items"][-1]["seq"]


async def online_client(emulator, folder, name: str) -> ChatClient:
    """A started, connected client (what it queues goes once its catch-up has finished)."""
    client = await make_client(emulator.http_url, folder, name)
    client.start()
    await wait_until(client, lambda: client.online, timeout=10)
    return client


async def write(client: ChatClient, peer: str, bodies: list[str]) -> None:
    """Queue ``bodies`` as fast as a script can, letting the client's pump run between them
    (``sleep(0)`` only yields): frames of every size go out, from one message to 50."""
    for body in bodies:
        client.send(peer, body)
        await asyncio.sleep(0)


# -- the defect the rule is for -------------------------------------------------------------------


async def test_two_sends_in_flight_can_be_stored_in_the_other_order(emulator, control):
    """A raw client firing two sends back to back: API Gateway may store the second first."""
    alice, bob = unique("race-a"), unique("race-b")
    socket = await WsClient.open(emulator.ws_url, await signup(emulator.http_url, alice), alice)
    await signup(emulator.http_url, bob)
    await control.fault("hold", "sendMessage", user=alice)  # the first waits until the second is handled

    await socket.send({"action": "sendMessage", "id": "first-0001", "to": bob, "body": "first"})
    await socket.send({"action": "sendMessage", "id": "second-001", "to": bob, "body": "second"})
    acks = [await socket.expect("ack"), await socket.expect("ack")]

    assert [ack["id"] for ack in acks] == ["second-001", "first-0001"]
    assert [ack["message"]["seq"] for ack in acks] == [1, 2]
    assert await stored_bodies(socket, bob) == ["second", "first"], "stored out of the order sent"
    assert (await control.stats())["maxSendsInFlight"][alice] == 2
    await socket.close()


# -- the client's one-in-flight rule keeps order there ---------------------------------------------


async def test_a_burst_is_stored_in_the_order_written(emulator, control, tmp_path):
    await control.frames(concurrent=True, jitter_ms=40)  # any two frames in flight would swap often
    alice, bob = unique("burst-a"), unique("burst-b")
    bob_socket = await WsClient.open(emulator.ws_url, await signup(emulator.http_url, bob), bob)
    client = await online_client(emulator, tmp_path, alice)
    try:
        bodies = [f"burst {i:03}" for i in range(BURST)]
        await write(client, bob, bodies)
        await wait_until(client, lambda: client.queued == 0, timeout=30)

        assert await stored_bodies(bob_socket, alice) == bodies, "server order == order written, each once"
        assert [row.body for row in client.timeline(bob)] == bodies
    finally:
        await client.stop()
        await bob_socket.close()


# -- API Gateway's own error frames ---------------------------------------------------------------


@pytest.mark.parametrize(("fault", "times"), [
    ("fail_before", 1),  # the Lambda failed before storing: "Internal server error"
    ("throttle", 3),  # API Gateway refused the frame, three times running: "Too Many Requests"
    ("fail_after", 1),  # stored and acked, then the Lambda failed: the error frame after the ack
])  # fmt: skip
async def test_a_send_met_by_a_gateway_error_is_stored_once_without_a_wait_or_reconnect(emulator, control, tmp_path, no_reply_timeout,
                                                                                       fault, times):  # fmt: skip
    alice, bob = unique(f"gw-{fault[:4]}-a"), unique(f"gw-{fault[:4]}-b")
    bob_socket = await WsClient.open(emulator.ws_url, await signup(emulator.http_url, bob), bob)
    client = await online_client(emulator, tmp_path, alice)
    try:
        generation = client.connection.generation
        await control.fault(fault, "sendMessage", count=times, user=alice)
        client.send(bob, "through a hiccup")
        await wait_until(client, lambda: client.queued == 0, timeout=PROMPT_RESEND_S)

        assert (await control.stats())["faultsPending"] == 0, "every injected fault was met"
        assert client.connection.generation == generation, "resent on the same connection"
        assert await stored_bodies(bob_socket, alice) == ["through a hiccup"], "stored once"
        assert [row.body for row in client.timeline(bob)] == ["through a hiccup"]
    finally:
        await client.stop()
        await bob_socket.close()


async def test_a_burst_keeps_its_order_through_gateway_errors(emulator, control, tmp_path, no_reply_timeout):
    """Error frames among a burst's batches, with invocations delayed at random: a resend starts
    again from the oldest unacked message, so order and uniqueness hold, also when an error frame
    arriving after its frame's acks (``fail_after``) makes the client resend the next frame while
    that one is still in flight."""
    await control.frames(concurrent=True, jitter_ms=40)
    alice, bob = unique("mix-a"), unique("mix-b")
    bob_socket = await WsClient.open(emulator.ws_url, await signup(emulator.http_url, bob), bob)
    client = await online_client(emulator, tmp_path, alice)
    try:
        # Neither of the first two stores anything, so a third batch always comes to fail after storing.
        for fault in ("fail_before", "throttle", "fail_after"):
            await control.fault(fault, "sendMessages", user=alice)
        bodies = [f"mixed {i:03}" for i in range(60)]  # more than one batch: something follows the acked one
        generation = client.connection.generation
        await write(client, bob, bodies)
        await wait_until(client, lambda: client.queued == 0, timeout=20)

        assert (await control.stats())["faultsPending"] == 0, "every injected fault was met"
        assert client.connection.generation == generation, "all on the same connection"
        assert await stored_bodies(bob_socket, alice) == bodies, "server order == order written, each once"
        assert [row.body for row in client.timeline(bob)] == bodies
    finally:
        await client.stop()
        await bob_socket.close()
