"""``python -m tui_chat_dev serve-lambda``: the emulator's own surface (the protocol itself is checked by
``tests/server/test_live_protocol.py``, which runs against this runtime too)."""

from __future__ import annotations

import asyncio
import importlib.util
import json

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.aws.conftest import REGION
from tui_chat_dev.emulator import EmulatorControl
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import RECV_TIMEOUT_S, WsClient, signup
from tui_chat import protocol as p
from tui_chat.cognito_auth import CognitoConfig, sign_in

pytest.importorskip("flask", reason="moto's server mode needs moto[server]")


def management(server) -> object:
    return boto3.client("apigatewaymanagementapi", region_name=REGION, endpoint_url=f"{server.http_url}/local",
                        aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip


async def connection_id(server, client: WsClient) -> str:
    """The emulator logs each invocation with its connection id: find this client's."""
    await client.request({"action": "ping"})
    # The log line is written before the pong, but read from the server's stderr by another thread.
    async with asyncio.timeout(RECV_TIMEOUT_S):
        while True:
            ids = [e["conn"] for e in server.log_lines if e.get("msg") == "invocation" and e.get("user") == client.user and e.get("conn")]
            if ids:
                return ids[-1]
            await asyncio.sleep(0.02)


async def test_connections_api_posts_gets_and_deletes_over_real_http(emulator):
    token = await signup(emulator.http_url, "emu-alice")
    alice = await WsClient.open(emulator.ws_url, token, "emu-alice")
    conn_id = await connection_id(emulator, alice)
    api = management(emulator)
    await asyncio.to_thread(api.post_to_connection, ConnectionId=conn_id, Data=b'{"type":"pong","rid":"from-api"}')
    assert await alice.expect("pong", rid="from-api")
    info = await asyncio.to_thread(api.get_connection, ConnectionId=conn_id)
    assert info["Identity"]["SourceIp"] == "127.0.0.1" and info["ConnectedAt"]
    await asyncio.to_thread(api.delete_connection, ConnectionId=conn_id)
    await alice.ws.wait_closed()
    assert alice.ws.close_code == 1000, "DeleteConnection without the emulator's close-code header"
    with pytest.raises(ClientError) as gone:
        await asyncio.to_thread(api.post_to_connection, ConnectionId=conn_id, Data=b"{}")
    assert gone.value.response["Error"]["Code"] == "GoneException"
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410


async def test_unknown_connections_are_gone_and_other_paths_not_found(emulator):
    async with httpx.AsyncClient() as http:
        gone = await http.post(f"{emulator.http_url}/local/@connections/nope", content=b"x")
        assert gone.status_code == 410 and gone.headers["x-amzn-errortype"] == "GoneException"
        assert (await http.post(f"{emulator.http_url}/other/@connections/nope", content=b"x")).status_code == 404
        assert (await http.get(f"{emulator.http_url}/healthz")).json() == {"status": "ok"}
        info = (await http.get(f"{emulator.http_url}/info")).json()
        assert info["auth"] == "accounts" and info["protocol"] == 2


async def test_handshake_statuses_come_from_the_authorizer_and_connect(emulator):
    token = await signup(emulator.http_url, "emu-bob")
    for query, status in [
        ("device=device-0001", 401),  # no token: API Gateway does not even call the authorizer
        ("device=device-0001&token=garbage", 401),  # the authorizer raises Unauthorized
        (f"token={token}&device=bad", 400),  # $connect answers 400
    ]:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{emulator.ws_url}?{query}")
        assert refused.value.response.status_code == status, query


async def test_replaced_uses_the_close_code_header(emulator):
    token = await signup(emulator.http_url, "emu-carol")
    old = await WsClient.open(emulator.ws_url, token, "emu-carol", device="same-device")
    await WsClient.open(emulator.ws_url, token, "emu-carol", device="same-device")
    assert (await old.recv())["type"] == "replaced"
    await old.ws.wait_closed()
    assert old.ws.close_code == 4000


async def test_injected_faults_answer_with_api_gateways_own_error_frames(emulator):
    """A Lambda that fails, or a throttled frame: API Gateway's frame (no ``type``), which the
    protocol module recognises; nothing of the failed send is stored."""
    control = EmulatorControl(emulator.http_url)
    assert (await control.stats())["concurrent"] is False, "one frame of a connection at a time unless asked"
    token = await signup(emulator.http_url, "emu-dave")
    await signup(emulator.http_url, "emu-erin")
    dave = await WsClient.open(emulator.ws_url, token, "emu-dave")
    conn_id = await connection_id(emulator, dave)
    await control.fault("fail_before", "sendMessage", user="emu-dave")
    await control.fault("throttle", "ping", user="emu-dave")

    await dave.send({"action": "sendMessage", "id": "lost-00001", "to": "emu-erin", "body": "lost"})
    failed = await dave.recv()
    await dave.send({"action": "ping"})
    throttled = await dave.recv()

    assert {k: failed[k] for k in ("message", "connectionId")} == {"message": "Internal server error", "connectionId": conn_id}
    assert throttled["message"] == "Too Many Requests" and throttled["connectionId"] == conn_id
    assert failed["requestId"] and throttled["requestId"] and failed["requestId"] != throttled["requestId"]
    assert p.is_gateway_error(json.dumps(failed)) and p.is_gateway_error(json.dumps(throttled))
    assert (await dave.request({"action": "getMessages", "with": "emu-erin", "after": 0}))["items"] == []
    assert (await control.stats())["faultsPending"] == 0
    await dave.close()


async def test_the_control_endpoints_refuse_what_they_cannot_do(emulator):
    control = EmulatorControl(emulator.http_url)
    for bad in (control.fault("explode", "ping"), control.fault("throttle", "ping", count=0),
                control.frames(concurrent=True, jitter_ms=60_000)):  # fmt: skip
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await bad
        assert refused.value.response.status_code == 400
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{emulator.http_url}/_emulator/nothing")).status_code == 404
    assert (await control.stats())["faultsPending"] == 0 and (await control.stats())["jitterMs"] == 0


@pytest.mark.parametrize("runtime", ["local", "lambda"])
async def test_cognito_sign_in_on_both_runtimes(tmp_path, cognito_pool, runtime):
    """serve --auth cognito: the self-hosted server's verifier, and the emulator's Lambda authorizer,
    accept moto-issued ID tokens (the JWKS comes over HTTP from moto's server) and enforce the group."""
    if runtime == "local" and importlib.util.find_spec("tui_chat.server.stores.sqlite") is None:
        pytest.skip("the self-hosted SQLite store is not there yet")
    server = start_server(
        tmp_path, auth="cognito", runtime=runtime,
        extra_args=("--cognito-region", REGION, "--cognito-user-pool-id", cognito_pool["pool_id"],
                    "--cognito-client-id", cognito_pool["client_id"], "--cognito-group", "chatters"),
        env={"TUI_CHAT_COGNITO_JWKS_URL": cognito_pool["jwks_url"]},
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as http:
            info = (await http.get(server.http_url + "/info")).json()
            assert info["auth"] == "cognito"
            assert info["cognito"] == {"region": REGION, "userPoolId": cognito_pool["pool_id"], "clientId": cognito_pool["client_id"]}
            refused = await http.post(server.http_url + "/auth/login", json={"username": "alice", "password": "x" * 10})
            assert refused.status_code == 404, "no password sign-in on a Cognito server"
        config = CognitoConfig(REGION, cognito_pool["pool_id"], cognito_pool["client_id"], cognito_pool["endpoint"])
        alice_token = (await asyncio.to_thread(sign_in, config, "Alice", "Correct-Horse-9")).id_token
        alice = await WsClient.open(server.ws_url, alice_token, "alice")
        assert (await alice.request({"action": "ping"}))["type"] == "pong"
        listing = await alice.request({"action": "getClients"})
        assert "alice" in [u["user"] for u in listing["users"]], "the first sign-in created the user"
        mallory_token = (await asyncio.to_thread(sign_in, config, "mallory", "Correct-Horse-9")).id_token
        with pytest.raises(InvalidStatus) as refused:
            await WsClient.open(server.ws_url, mallory_token, "mallory")
        assert refused.value.response.status_code == 403, "not in the required group"
    finally:
        server.stop()
