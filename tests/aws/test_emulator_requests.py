"""PROTOCOL.md 7.3 for requests: API Gateway's error frame names no ``rid``, so a catch-up read
it dropped (a throttle, a failed Lambda) is asked again at once, not after the 15 s request
timeout and a reconnect. Run on the emulator that invokes frames concurrently, as API Gateway does."""

from __future__ import annotations

import pytest

from tests.aws.test_emulator_ordering import control, emulator, unique  # noqa: F401 - fixtures
from tests.client.conftest import make_client, memory_keyring, wait_until  # noqa: F401 - memory_keyring: autouse
from tui_chat.client.requests import REQUEST_TIMEOUT_S
from tui_chat_dev.wsclient import WsClient, signup

pytest.importorskip("flask", reason="moto's server mode needs moto[server]")


@pytest.mark.parametrize(("fault", "route"), [
    ("throttle", "getConversations"),
    ("fail_before", "getMessages"),
])  # fmt: skip
async def test_a_catch_up_read_met_by_a_gateway_error_is_asked_again_at_once(emulator, control, tmp_path, fault, route):  # noqa: F811
    alice, bob = unique(f"rq-{route[3:7].lower()}-a"), unique(f"rq-{route[3:7].lower()}-b")
    client = await make_client(emulator.http_url, tmp_path, alice)
    bob_socket = await WsClient.open(emulator.ws_url, await signup(emulator.http_url, bob), bob)
    try:
        reply = await bob_socket.request({"action": "sendMessage", "id": "m-while-away", "to": alice, "body": "while you were away"})
        assert reply["type"] == "ack", reply
        await control.fault(fault, route, count=2, user=alice)

        client.start()  # its catch-up meets the error frames
        await wait_until(client, lambda: [r.body for r in client.timeline(bob)] == ["while you were away"],
                         timeout=REQUEST_TIMEOUT_S / 2)  # fmt: skip
        assert (await control.stats())["faultsPending"] == 0, "every injected fault was met"
        assert client.connection.generation == 1, "caught up on its first connection"
    finally:
        await client.stop()
        await bob_socket.close()
