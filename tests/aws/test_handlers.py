"""The Lambda entry points with API Gateway-shaped events, over DynamoDB (moto ``mock_aws``).

moto's own ``apigatewaymanagementapi`` concatenates posted frames and never answers 410, so the
``@connections`` client here is boto3's real one under botocore's ``Stubber`` (to check a 410) or
a recorder with the same two methods (to check each frame).
"""

from __future__ import annotations

import json
import time

import boto3
import jwt
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from moto import mock_aws

from tests.aws.conftest import REGION, moto_private_jwk, moto_signing_key
from tui_chat.server import aws
from tui_chat.server.settings import Settings
from tui_chat.server.auth.cognito import CognitoVerifier
from tui_chat.server.stores.dynamodb import DynamoDBStore

POOL = "us-east-1_testpool"
CLIENT = "test-client-id"
ENDPOINT = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"


class RecordingClient:
    """``post_to_connection`` / ``delete_connection`` that record each frame; ids in ``gone`` answer 410."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict]] = {}
        self.deleted: list[str] = []
        self.gone: set[str] = set()
        self.meta = boto3.client("apigatewaymanagementapi", region_name=REGION, endpoint_url=ENDPOINT).meta

    def _gone(self, op: str) -> ClientError:
        return ClientError({"Error": {"Code": "GoneException", "Message": "gone"},
                            "ResponseMetadata": {"HTTPStatusCode": 410}}, op)  # fmt: skip

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict:
        if ConnectionId in self.gone:
            raise self._gone("PostToConnection")
        self.frames.setdefault(ConnectionId, []).append(json.loads(Data))
        return {}

    def delete_connection(self, ConnectionId: str) -> dict:
        if ConnectionId in self.gone:
            raise self._gone("DeleteConnection")
        self.deleted.append(ConnectionId)
        return {}

    def take(self, conn_id: str, kind: str | None = None) -> list[dict]:
        frames = self.frames.pop(conn_id, [])
        return [f for f in frames if kind is None or f["type"] == kind]


def id_token(username: str, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": f"https://cognito-idp.{REGION}.amazonaws.com/{POOL}", "aud": CLIENT, "token_use": "id",
              "iat": now, "exp": now + 3600, "cognito:username": username, "sub": username, **overrides}  # fmt: skip
    return jwt.encode(claims, moto_signing_key(), algorithm="RS256", headers={"kid": "dummy"})


def public_jwks(_url: str) -> dict:
    key = {k: v for k, v in moto_private_jwk().items() if k in ("kty", "kid", "n", "e", "alg", "use")}
    return {"keys": [key]}


@pytest.fixture
def cloud():
    """A warm 'container': LambdaApp over moto's DynamoDB, the recorder as @connections."""
    with mock_aws():
        store = DynamoDBStore(prefix="test-", region=REGION, create_tables=True)
        store.create_tables()
        client = RecordingClient()
        verifier = CognitoVerifier(REGION, POOL, CLIENT, fetch_jwks=public_jwks, required_group=None)
        app = aws.LambdaApp(store, verifier=verifier, gateway_factory=lambda url: aws.AwsGateway(url, client=client))
        aws.configure(app)
        yield app, client
        aws.configure(None)


def context(conn_id: str, route: str, event_type: str, authorizer: dict | None = None) -> dict:
    ctx = {"routeKey": route, "eventType": event_type, "connectionId": conn_id, "stage": "prod",
           "domainName": "abc123.execute-api.us-east-1.amazonaws.com", "apiId": "abc123",
           "requestId": f"req-{conn_id}", "requestTimeEpoch": int(time.time() * 1000)}  # fmt: skip
    if authorizer is not None:
        ctx["authorizer"] = authorizer
    return ctx


def authorize(token: str | None, device: str | None = "device-0001") -> dict:
    query = {k: v for k, v in (("token", token), ("device", device)) if v is not None}
    event = {"type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/$connect",
             "queryStringParameters": query, "requestContext": context("pending", "$connect", "CONNECT")}  # fmt: skip
    return aws.authorizer_handler(event, None)


def connect(conn_id: str, user: str, device: str = "device-0001") -> dict:
    """The authorizer then $connect, as API Gateway chains them; returns $connect's response."""
    policy = authorize(id_token(user), device)
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    authorizer = {"principalId": policy["principalId"], **policy["context"]}
    event = {"queryStringParameters": {"token": "…", "device": device},
             "requestContext": context(conn_id, "$connect", "CONNECT", authorizer)}  # fmt: skip
    return aws.connect_handler(event, None)


def send(conn_id: str, user: str, frame: dict | str, device: str = "device-0001") -> dict:
    body = frame if isinstance(frame, str) else json.dumps(frame)
    route = frame.get("action", "$default") if isinstance(frame, dict) else "$default"
    event = {"body": body, "isBase64Encoded": False,
             "requestContext": context(conn_id, route, "MESSAGE", {"principalId": user, "username": user, "device": device})}
    return aws.message_handler(event, None)


def disconnect(conn_id: str) -> dict:
    return aws.disconnect_handler({"requestContext": context(conn_id, "$disconnect", "DISCONNECT")}, None)


# -- authorizer ---------------------------------------------------------------------------------


def test_authorizer_allows_a_valid_id_token_and_passes_user_and_device(cloud):
    policy = authorize(id_token("Alice"), "laptop-0001")
    assert policy["principalId"] == "alice"
    assert policy["context"] == {"username": "alice", "device": "laptop-0001"}
    [statement] = policy["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Resource"].endswith("/prod/$connect")


@pytest.mark.parametrize("token", [None, "", "garbage", "not.a.jwt"])
def test_authorizer_answers_unauthorized_for_missing_or_bad_tokens(cloud, token):
    with pytest.raises(Exception, match="^Unauthorized$"):  # API Gateway's cue for 401
        authorize(token)


def test_authorizer_refuses_expired_and_foreign_tokens(cloud):
    for token in (id_token("alice", exp=int(time.time()) - 1), id_token("alice", aud="other"),
                  id_token("alice", token_use="access")):  # fmt: skip
        with pytest.raises(Exception, match="^Unauthorized$"):
            authorize(token)


def test_authorizer_denies_outside_the_required_group_403(cloud):
    app, _ = cloud
    app.verifier.required_group = "chatters"
    denied = authorize(id_token("alice"))
    assert denied["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    allowed = authorize(id_token("alice", **{"cognito:groups": ["chatters"]}))
    assert allowed["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_a_malformed_device_is_refused_400_by_connect(cloud):
    policy = authorize(id_token("alice"), "bad")
    assert policy["context"]["device"] == ""  # the authorizer cannot answer 400; $connect does
    event = {"queryStringParameters": {"device": "bad"},
             "requestContext": context("c-bad", "$connect", "CONNECT", {"principalId": "alice", **policy["context"]})}
    assert aws.connect_handler(event, None)["statusCode"] == 400


def test_connect_without_authorizer_context_is_refused(cloud):
    event = {"queryStringParameters": {"device": "device-0001"}, "requestContext": context("c-x", "$connect", "CONNECT")}
    assert aws.connect_handler(event, None)["statusCode"] == 401


# -- routes ---------------------------------------------------------------------------------------


def test_connect_creates_the_cognito_user_and_never_posts_to_the_connecting_socket(cloud):
    app, client = cloud
    assert connect("conn-A1", "alice")["statusCode"] == 200
    assert client.frames == {}, "a post during $connect would be 410 in API Gateway"
    assert [c.conn_id for c in aws._run(app.store.user_connections("alice"))] == ["conn-A1"]


def test_send_message_acks_the_sender_and_posts_to_each_recipient_connection(cloud):
    app, client = cloud
    connect("conn-A1", "alice", "laptop-0001")
    connect("conn-A2", "alice", "phone-00001")
    connect("conn-B1", "bob")
    client.frames.clear()
    assert send("conn-A1", "alice", {"action": "sendMessage", "id": "msg-00000001", "to": "bob", "body": "hi", "rid": "r1"})["statusCode"] == 200
    [ack] = client.take("conn-A1")
    assert ack["type"] == "ack" and ack["rid"] == "r1" and ack["message"]["seq"] == 1 and ack["message"]["from"] == "alice"
    assert [f["message"]["body"] for f in client.take("conn-B1", "message")] == ["hi"]
    assert [f["message"]["body"] for f in client.take("conn-A2", "message")] == ["hi"]
    # a retry: the original ack, no second message
    send("conn-A1", "alice", {"action": "sendMessage", "id": "msg-00000001", "to": "bob", "body": "changed"})
    [again] = client.take("conn-A1")
    assert again["message"] == ack["message"] and client.take("conn-B1") == []


def test_the_stale_recipient_is_removed_on_410_never_the_sender(cloud):
    app, client = cloud
    connect("conn-A1", "alice")
    connect("conn-B1", "bob")
    client.gone.add("conn-B1")  # bob's socket died without a $disconnect
    send("conn-A1", "alice", {"action": "sendMessage", "id": "msg-00000002", "to": "bob", "body": "are you there"})
    assert client.take("conn-A1", "ack"), "the sender got its ack"
    assert aws._run(app.store.get_connection("conn-B1")) is None, "the stale connection is deleted"
    assert aws._run(app.store.get_connection("conn-A1")) is not None, "the sender's connection stays"
    assert aws._run(app.store.get_user("bob")).last_seen is not None, "bob is offline now"


def test_gone_with_the_real_client_under_stubber(cloud):
    """The same, through boto3's real apigatewaymanagementapi client: frame by frame, then a 410."""
    app, _ = cloud
    real = boto3.client("apigatewaymanagementapi", region_name=REGION, endpoint_url=ENDPOINT)
    app._gateways.clear()
    app._gateway_factory = lambda url: aws.AwsGateway(url, client=real)
    with Stubber(real) as stub:
        connect("conn-A1", "alice")
        connect("conn-B1", "bob")
        stub.add_response("post_to_connection", {}, {"ConnectionId": "conn-A1", "Data": ANY})
        stub.add_client_error("post_to_connection", service_error_code="GoneException", http_status_code=410,
                              expected_params={"ConnectionId": "conn-B1", "Data": ANY})  # fmt: skip
        send("conn-A1", "alice", {"action": "sendMessage", "id": "msg-00000003", "to": "bob", "body": "hello?"})
        stub.assert_no_pending_responses()
    assert aws._run(app.store.get_connection("conn-B1")) is None
    assert aws._run(app.store.get_connection("conn-A1")) is not None


def test_a_gone_caller_is_cleaned_up_by_its_own_reply(cloud):
    app, client = cloud
    connect("conn-A1", "alice")
    client.gone.add("conn-A1")
    send("conn-A1", "alice", {"action": "ping"})
    assert aws._run(app.store.get_connection("conn-A1")) is None


def test_replacing_a_device_sends_replaced_and_deletes_the_old_connection(cloud):
    app, client = cloud
    connect("conn-old", "alice", "same-device")
    connect("conn-new", "alice", "same-device")
    assert client.take("conn-old") == [{"type": "replaced"}]
    assert client.deleted == ["conn-old"]
    disconnect("conn-old")  # API Gateway's $disconnect for the replaced socket: not a presence change
    assert [c.conn_id for c in aws._run(app.store.user_connections("alice"))] == ["conn-new"]


def test_presence_reaches_watchers_and_disconnect_announces_offline(cloud):
    app, client = cloud
    connect("conn-W", "watcher")
    send("conn-W", "watcher", {"action": "getClients", "rid": "list"})
    assert client.take("conn-W")[0]["type"] == "clients"
    connect("conn-B1", "bob")
    [online] = client.take("conn-W", "presence")
    assert (online["user"], online["status"]) == ("bob", "online")
    assert disconnect("conn-B1")["statusCode"] == 200
    [offline] = client.take("conn-W", "presence")
    assert offline["status"] == "offline" and isinstance(offline["lastSeen"], int)


def test_default_route_answers_bad_frames_and_unknown_actions(cloud):
    _, client = cloud
    connect("conn-A1", "alice")
    send("conn-A1", "alice", "this is not json")
    send("conn-A1", "alice", {"action": "selfDestruct", "rid": "x"})
    codes = [f["code"] for f in client.take("conn-A1", "error")]
    assert codes == ["bad_request", "unknown_action"]


def test_history_and_conversations_through_the_routes(cloud):
    _, client = cloud
    connect("conn-A1", "alice")
    connect("conn-B1", "bob")
    for i in range(3):
        send("conn-A1", "alice", {"action": "sendMessage", "id": f"hist-{i:07d}", "to": "bob", "body": f"m{i}"})
    client.frames.clear()
    send("conn-B1", "bob", {"action": "getMessages", "with": "alice", "after": 0, "rid": "h"})
    [page] = client.take("conn-B1")
    assert [m["body"] for m in page["items"]] == ["m0", "m1", "m2"] and page["hasMore"] is False
    send("conn-B1", "bob", {"action": "markRead", "with": "alice", "seq": 2})
    assert client.take("conn-A1") == [{"type": "read", "with": "bob", "by": "bob", "seq": 2}]
    send("conn-B1", "bob", {"action": "getConversations", "rid": "c"})
    [convs] = client.take("conn-B1", "conversations")
    assert [(c["with"], c["lastSeq"], c["readSeq"], c["unread"]) for c in convs["items"]] == [("alice", 3, 2, 1)]


def test_base64_bodies_and_missing_authorizer_context_fall_back_to_the_store(cloud):
    import base64

    _, client = cloud
    connect("conn-A1", "alice")
    event = {"body": base64.b64encode(b'{"action":"ping","rid":"b64"}').decode(), "isBase64Encoded": True,
             "requestContext": context("conn-A1", "ping", "MESSAGE")}  # fmt: skip
    assert aws.message_handler(event, None)["statusCode"] == 200
    assert client.take("conn-A1") == [{"type": "pong", "rid": "b64"}]
    unknown = {"body": "{}", "requestContext": context("conn-nobody", "$default", "MESSAGE")}
    assert aws.message_handler(unknown, None)["statusCode"] == 403


def test_logs_are_json_lines_with_route_connection_and_user(cloud, monkeypatch, capsys):
    import logging

    from tui_chat.server.logs import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("tui_chat.aws").addHandler(handler)
    logging.getLogger("tui_chat.aws").setLevel(logging.INFO)
    try:
        connect("conn-A1", "alice")
        send("conn-A1", "alice", {"action": "ping"})
    finally:
        logging.getLogger("tui_chat.aws").removeHandler(handler)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    ping = [entry for entry in lines if entry.get("route") == "ping"]
    assert ping and ping[0]["msg"] == "invocation" and ping[0]["conn"] == "conn-A1" and ping[0]["user"] == "alice"
    assert ping[0]["status"] == 200 and isinstance(ping[0]["ms"], float)


def test_settings_from_the_environment():
    settings = Settings.from_env({
        "AWS_REGION": "eu-west-1", "TUI_CHAT_TABLE_PREFIX": "prod-chat-", "TUI_CHAT_COGNITO_USER_POOL_ID": "eu-west-1_x",
        "TUI_CHAT_COGNITO_CLIENT_ID": "cid", "TUI_CHAT_RETENTION_DAYS": "0",
    })  # fmt: skip
    assert (settings.table_prefix, settings.cognito_region, settings.retention_days, settings.auth) == (
        "prod-chat-", "eu-west-1", None, "cognito")
    with pytest.raises(RuntimeError, match="TUI_CHAT_COGNITO"):
        aws.LambdaApp.from_settings(Settings(auth="cognito"))
