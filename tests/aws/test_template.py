"""The CloudFormation template: cfn-lint clean (checkov findings as the README explains), every route wired
to a real handler and a real action, roles that grant what the handlers call, and the parts issue 16
asked for (deletion protection, access log, alarms, tracing, custom domain, attachment bucket, a
client config the client accepts); and the Powertools side of aws.py that the template configures."""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tui_chat import protocol
from tui_chat.server import aws

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "assets" / "cloud" / "template.yaml"
SPECIAL_ROUTES = {"$connect", "$disconnect", "$default"}


@pytest.fixture(scope="module")
def template() -> dict:
    if importlib.util.find_spec("cfnlint") is None:
        pytest.skip("cfn-lint is not installed (the test extra installs it)")
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(TEMPLATE))


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def ref_name(value) -> str:
    """The resource a ``!Sub "...${Name}..."`` or ``!Sub "...${Name.Arn}..."`` points at."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    names = re.findall(r"\$\{([A-Za-z0-9]+)(?:\.Arn)?\}", text)
    names = [n for n in names if not n.startswith("AWS")]
    assert len(names) == 1, text
    return names[0]


def protocol_actions() -> set[str]:
    """The actions of PROTOCOL.md's table when the shared folder is beside the repo, else the module's."""
    for candidate in (ROOT / "shared" / "PROTOCOL.md", ROOT.parent / "shared" / "PROTOCOL.md"):
        if candidate.is_file():
            text = candidate.read_text()
            section = text[text.index("## 3.") : text.index("## 4.")]  # "Client → server actions"
            actions = set(re.findall(r"^\| `([A-Za-z]+)` \|", section, flags=re.M))
            if "`sendMessages` `{messages" in text:  # section 7.3
                actions.add("sendMessages")
            rooms = text[text.index("### 7.2") : text.index("### 7.3")]  # the room actions' table
            files = text[text.index("### 7.7") : text.index("### 7.8")]  # the attachment actions' table
            return actions | {a for part in (rooms, files) for a in re.findall(r"^\| `([A-Za-z]+)` \|", part, flags=re.M)}
    return set(protocol.ACTIONS)


@pytest.fixture
def cloud():
    """A warm 'container' as in test_handlers: LambdaApp over moto's DynamoDB and S3 (the attachment
    bucket), a recorder as @connections."""
    from moto import mock_aws

    from tests.aws.test_handlers import CLIENT, POOL, REGION, RecordingClient, public_jwks
    from tui_chat.server.auth.cognito import CognitoVerifier
    from tui_chat.server.s3_files import S3FileLinks
    from tui_chat.server.stores.dynamodb import DynamoDBStore

    with mock_aws():
        store = DynamoDBStore(prefix="test-", region=REGION, create_tables=True)
        store.create_tables()
        client = RecordingClient()
        verifier = CognitoVerifier(REGION, POOL, CLIENT, fetch_jwks=public_jwks, required_group=None)
        files = S3FileLinks("test-files-bucket", region=REGION)
        files.client.create_bucket(Bucket=files.bucket)
        app = aws.LambdaApp(store, verifier=verifier, gateway_factory=lambda url: aws.AwsGateway(url, client=client), files=files)
        aws.configure(app)
        yield app, client
        aws.configure(None)


def test_cfn_lint_passes():
    command = [shutil.which("cfn-lint")] if shutil.which("cfn-lint") else [sys.executable, "-m", "cfnlint"]
    if importlib.util.find_spec("cfnlint") is None:
        pytest.skip("cfn-lint is not installed (the test extra installs it)")
    result = subprocess.run([*command, str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_route_maps_to_an_existing_handler_and_a_protocol_action(template):
    functions = resources(template, "AWS::Serverless::Function")
    integrations = resources(template, "AWS::ApiGatewayV2::Integration")
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in resources(template, "AWS::ApiGatewayV2::Route").values()}
    actions = protocol_actions()
    assert actions == set(protocol.ACTIONS), "PROTOCOL.md and tui_chat.protocol name the same actions"
    assert set(routes) == actions | SPECIAL_ROUTES, "one route per action, plus $connect/$disconnect/$default"
    for key, route in routes.items():
        integration = integrations[ref_name(route["Target"])]["Properties"]
        assert integration["IntegrationType"] == "AWS_PROXY"
        handler = functions[ref_name(integration["IntegrationUri"])]["Properties"]["Handler"]
        module, _, name = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), handler
        assert name == aws.ROUTE_HANDLERS[key], f"{key} is served by {aws.ROUTE_HANDLERS[key]} in the emulator"


def test_connect_is_authorized_by_the_cognito_authorizer_reading_the_query_string(template):
    api = resources(template, "AWS::ApiGatewayV2::Api")["WebSocketApi"]["Properties"]
    assert api["ProtocolType"] == "WEBSOCKET" and api["RouteSelectionExpression"] == "$request.body.action"
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in resources(template, "AWS::ApiGatewayV2::Route").values()}
    connect = routes["$connect"]
    assert connect["AuthorizationType"] == "CUSTOM"
    authorizer = template["Resources"][connect["AuthorizerId"]["Ref"]]["Properties"]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["IdentitySource"] == ["route.request.querystring.token"]
    function = template["Resources"][ref_name(authorizer["AuthorizerUri"])]["Properties"]
    assert function["Handler"] == "tui_chat.server.aws.authorizer_handler"
    assert all(r.get("AuthorizationType") == "NONE" for k, r in routes.items() if k != "$connect")


# Which tables each function's code touches: $connect/$disconnect only users and connections (the
# user's devices map, presence; test_the_roles_grant_exactly_what_the_handlers_use checks it against
# the calls the handlers make), the message function every table.
FUNCTION_TABLES = {
    "AuthorizerFunction": set(),
    "ConnectFunction": {"UsersTable", "ConnectionsTable"},
    "DisconnectFunction": {"UsersTable", "ConnectionsTable"},
    "MessageFunction": {"UsersTable", "ConnectionsTable", "MessagesTable", "ConversationsTable", "RoomsTable"},
}


def statements_of(function: dict) -> list[dict]:
    return [s for policy in function["Properties"].get("Policies", []) for s in policy["Statement"]]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def resource_key(target) -> tuple[str, str | None]:
    """A policy resource as (logical id, index): ``(T, None)`` the table, ``(T, "*")`` or ``(T, name)`` its indexes."""
    if isinstance(target, dict) and "Fn::GetAtt" in target:
        return target["Fn::GetAtt"][0], None
    text = target["Fn::Sub"]
    index = text.partition("/index/")[2] or None
    return ref_name(text), index


def test_functions_have_least_privilege(template):
    functions = resources(template, "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTION_TABLES)
    for name, function in functions.items():
        statements = statements_of(function)
        if name == "AuthorizerFunction":
            assert statements == [], "the authorizer reads no table and posts to no connection"
            continue
        named = set()
        for statement in statements:
            assert statement["Effect"] == "Allow"
            actions, targets = as_list(statement["Action"]), as_list(statement["Resource"])
            assert "*" not in targets and all("*" not in a for a in actions)
            if actions == ["execute-api:ManageConnections"]:
                assert ref_name(targets[0]["Fn::Sub"].replace("${StageName}", "stage")) == "WebSocketApi"
                assert targets[0]["Fn::Sub"].endswith("/@connections/*")
            elif all(a.startswith("s3:") for a in actions):
                assert name == "MessageFunction", "only the message function handles attachments"
                assert sorted(actions) == ["s3:GetObject", "s3:PutObject"], "no deletes: the lifecycle rules expire objects"
                assert targets == [{"Fn::Sub": "${FilesBucket.Arn}/*"}], "objects of the attachment bucket only"
            else:
                assert all(a.startswith("dynamodb:") for a in actions) and "dynamodb:Scan" not in actions
                named |= {resource_key(t)[0] for t in targets}
                # Rooms are served by the message function alone; it alone deletes in batches (a room's messages).
                assert ("dynamodb:BatchWriteItem" in actions) == (name == "MessageFunction"), name
        assert named == FUNCTION_TABLES[name], name


def test_tables_are_on_demand_with_point_in_time_recovery_and_the_code_expects_their_names(template):
    from tui_chat.server.stores.dynamodb import TABLES

    tables = resources(template, "AWS::DynamoDB::Table")
    assert {t["Properties"]["TableName"]["Fn::Sub"] for t in tables.values()} == {f"${{AWS::StackName}}-{n}" for n in TABLES}
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["TUI_CHAT_TABLE_PREFIX"] == {"Fn::Sub": "${AWS::StackName}-"}


def test_the_template_indexes_match_the_ones_the_store_creates(template):
    """The tests run against create_tables(); the cloud runs against the template: same shape."""
    from moto import mock_aws

    from tui_chat.server.stores.dynamodb import DynamoDBStore

    with mock_aws():
        store = DynamoDBStore(prefix="x-", region="us-east-1")
        store.create_tables()
        for resource in resources(template, "AWS::DynamoDB::Table").values():
            props = resource["Properties"]
            name = "x-" + props["TableName"]["Fn::Sub"].split("-", 1)[1]
            live = store.client.describe_table(TableName=name)["Table"]
            assert live["KeySchema"] == props["KeySchema"], name
            assert sorted(live["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str), name
            want = {g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in props.get("GlobalSecondaryIndexes", [])}
            have = {g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in live.get("GlobalSecondaryIndexes", [])}
            assert have == want, name


def test_cognito_client_is_srp_without_a_secret(template):
    client = template["Resources"]["UserPoolClient"]["Properties"]
    assert client["GenerateSecret"] is False
    assert set(client["ExplicitAuthFlows"]) == {"ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"}
    for group in resources(template, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


# -- least privilege against what the handlers really call -------------------------------------------

S3_PERMISSIONS = {"PutObject": {"s3:PutObject"}, "GetObject": {"s3:GetObject"}, "HeadObject": {"s3:GetObject"},
                  "CopyObject": {"s3:GetObject", "s3:PutObject"}, "DeleteObjects": {"s3:DeleteObject"}}  # fmt: skip
"""The IAM actions each S3 call of :class:`~tui_chat.server.s3_files.S3FileLinks` needs (no ListBucket)."""
FUNCTION_OF = {"authorize": "AuthorizerFunction", "connect": "ConnectFunction",
               "disconnect": "DisconnectFunction", "message": "MessageFunction"}  # fmt: skip
TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}


def dynamodb_permissions(operation: str, params: dict):
    """The IAM actions and resources (table name, index) one DynamoDB call needs."""
    if operation in ("BatchGetItem", "BatchWriteItem"):
        for table in params["RequestItems"]:
            yield f"dynamodb:{operation}", table, None
    elif operation == "TransactWriteItems":
        for item in params["TransactItems"]:
            [(kind, body)] = item.items()
            yield f"dynamodb:{TRANSACT_ACTIONS[kind]}", body["TableName"], None
    elif operation == "TransactGetItems":
        for item in params["TransactItems"]:
            yield "dynamodb:GetItem", item["Get"]["TableName"], None
    else:
        yield f"dynamodb:{operation}", params["TableName"], params.get("IndexName")


def granted(function: dict) -> set[tuple[str, str, str | None]]:
    return {
        (action, *resource_key(target))
        for statement in statements_of(function)
        for action in as_list(statement["Action"]) if action.startswith("dynamodb:")
        for target in as_list(statement["Resource"])
    }  # fmt: skip


def covers(grant: tuple[str, str, str | None], use: tuple[str, str, str | None]) -> bool:
    action, table, index = grant
    return (action, table) == use[:2] and (index == use[2] or (index == "*" and use[2] is not None))


def exercise_every_route(app, client) -> None:
    """Handshakes, frames and closes through the Lambda entry points, down every store path the
    connect, disconnect and message functions have (replacement, stale devices, 410s, rooms)."""
    from tests.aws.test_handlers import connect, context, disconnect, send
    from tui_chat.server.core import now_ms

    def frame(conn, who, device="device-0001", /, **body):
        assert send(conn, who, body, device)["statusCode"] == 200

    connect("c-watch", "wendy")
    frame("c-watch", "wendy", action="getClients", rid="w")  # a presence watcher
    connect("c-a1", "alice", "laptop-0001")
    connect("c-b1", "bob")
    connect("c-a2", "alice", "phone-00001")
    connect("c-a3", "alice", "laptop-0001")  # replaces c-a1
    disconnect("c-a1")  # API Gateway's $disconnect of the replaced socket
    app.clock = lambda: now_ms() - 3 * 3600 * 1000  # a connection whose $disconnect was lost
    connect("c-c0", "carol", "old-device1")
    app.clock = now_ms
    connect("c-c1", "carol", "new-device1")  # forgets the stale device
    client.gone.add("c-watch")
    connect("c-d1", "dave")  # presence to a dead watcher: 410, removed by $connect
    alice = ("c-a3", "alice", "laptop-0001")
    frame(*alice, action="sendMessage", id="msg-00000001", to="bob", body="hi")
    frame(*alice, action="sendMessages", messages=[{"id": "msg-00000002", "to": "bob", "body": "a"},
                                                    {"id": "msg-00000003", "to": "bob", "body": "b"}])  # fmt: skip
    frame(*alice, action="getMessages", **{"with": "bob", "after": 0})
    frame("c-b1", "bob", action="markRead", **{"with": "alice", "seq": 1})
    frame("c-b1", "bob", action="getConversations")
    frame(*alice, action="getClients")
    frame(*alice, action="setStatus", status="away", text="lunch")
    frame(*alice, action="typing", to="bob")
    frame(*alice, action="ping")
    data = b"minutes"  # an attachment: announced, PUT by the client (not the function), sent, fetched, sent again
    sha = hashlib.sha256(data).hexdigest()
    frame(*alice, action="requestUpload", name="a.txt", size=len(data), type="text/plain", sha256=sha)
    [upload] = client.take("c-a3", "upload")
    app.files.client.put_object(Bucket=app.files.bucket, Key="uploads/" + upload["fileId"], Body=data,
                                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha)).decode())  # fmt: skip
    attachment = {"fileId": upload["fileId"], "name": "a.txt", "size": len(data), "type": "text/plain"}
    frame(*alice, action="sendMessage", id="msg-0000000f", to="bob", attachment=attachment)
    frame("c-b1", "bob", action="requestDownload", fileId=upload["fileId"])
    assert client.take("c-b1", "download")
    frame(*alice, action="createRoom", room="#team", members=["bob"])
    frame(*alice, action="sendMessage", id="msg-0000001f", to="#team", attachment=attachment)
    frame(*alice, action="getRoom", room="#team")
    frame(*alice, action="invite", room="#team", user="carol")
    frame(*alice, action="setRoomTitle", room="#team", title="Team")
    frame(*alice, action="sendMessage", id="msg-00000004", to="#team", body="hello room")
    frame(*alice, action="sendMessages", messages=[{"id": "msg-00000005", "to": "#team", "body": "c"}])
    frame("c-b1", "bob", action="markRead", **{"with": "#team", "seq": 1})
    frame(*alice, action="typing", to="#team")
    frame(*alice, action="getReads", **{"with": "#team"})
    frame("c-b1", "bob", action="getConversations")
    frame(*alice, action="removeMember", room="#team", user="carol")
    frame("c-b1", "bob", action="leaveRoom", room="#team")
    frame(*alice, action="leaveRoom", room="#team")  # the last member: the room goes with its messages
    client.gone.add("c-b1")
    frame(*alice, action="sendMessage", id="msg-00000006", to="bob", body="still there?")  # 410: removed
    unknown = {"body": '{"action":"ping"}', "requestContext": context("c-a2", "ping", "MESSAGE")}
    assert aws.message_handler(unknown, None)["statusCode"] == 200  # no authorizer context: looked up
    connect("c-watch2", "wendy")
    frame("c-watch2", "wendy", action="getClients")
    disconnect("c-a2")  # alice still has c-a3: no presence
    client.gone.add("c-watch2")
    disconnect("c-a3")  # her last: lastSeen, presence to a dead watcher (410, removed by $disconnect)
    disconnect("c-nobody")  # never known
    errors = [f for frames in client.frames.values() for f in frames if f["type"] == "error"]
    assert errors == [], "every frame above was served, not refused"


def test_the_roles_grant_exactly_what_the_handlers_use(template, cloud, monkeypatch):
    """Every DynamoDB call each function makes (moto, recorded below boto3) is allowed by its role;
    for $connect and $disconnect every grant is also used: nothing more than they need."""
    app, client = cloud
    logical = {getattr(app.store, name): f"{name.capitalize()}Table" for name in
               ("users", "connections", "messages", "conversations", "rooms")}  # fmt: skip
    used: dict[str, set] = {name: set() for name in FUNCTION_OF.values()}
    current: list[str] = []

    def record(params, model, **_):
        if current:
            used[current[-1]].update((a, logical[t], i) for a, t, i in dynamodb_permissions(model.name, params))

    app.store.client.meta.events.register("before-parameter-build.dynamodb", record)
    s3_used: set[str] = set()

    def record_s3(params, model, **_):
        if current:  # presigning counts: a presigned request acts with the signer's permissions
            assert current[-1] == "MessageFunction", "only the message function handles attachments"
            s3_used.update(S3_PERMISSIONS[model.name])

    app.files.client.meta.events.register("before-parameter-build.s3", record_s3)
    real_invoke = aws._invoke

    def invoke(name, event, context):
        current.append(FUNCTION_OF[name])
        try:
            return real_invoke(name, event, context)
        finally:
            current.pop()

    monkeypatch.setattr(aws, "_invoke", invoke)
    exercise_every_route(app, client)

    functions = resources(template, "AWS::Serverless::Function")
    assert used["AuthorizerFunction"] == set(), "Cognito tokens are checked without the store"
    for name in ("ConnectFunction", "DisconnectFunction", "MessageFunction"):
        grants = granted(functions[name])
        missing = {u for u in used[name] if not any(covers(g, u) for g in grants)}
        assert not missing, f"{name} calls what its role does not allow: {sorted(missing, key=str)}"
        if name != "MessageFunction":
            unused = {g for g in grants if not any(covers(g, u) for u in used[name])}
            assert not unused, f"{name}'s role allows what it never does: {sorted(unused, key=str)}"
    s3_granted = {a for s in statements_of(functions["MessageFunction"]) for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert s3_used == s3_granted, "the attachment calls need exactly the object actions granted"


# -- data: protection and TTL ----------------------------------------------------------------------


def test_tables_and_user_pool_are_protected_from_deletion(template):
    for name, table in resources(template, "AWS::DynamoDB::Table").items():
        assert table["Properties"]["DeletionProtectionEnabled"] is True, name
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain", name
    pool = template["Resources"]["UserPool"]
    assert pool["Properties"]["DeletionProtection"] == "ACTIVE"
    assert pool["DeletionPolicy"] == pool["UpdateReplacePolicy"] == "Retain"
    bucket = template["Resources"]["FilesBucket"]
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"


def test_ttl_is_on_the_attribute_the_store_writes(template):
    """Same TTL as create_tables(), and the store does write ``expireAt`` on conversations (a
    direct conversation's inbox items, with retention); rooms have none by design."""
    from moto import mock_aws

    from tui_chat.server.stores.dynamodb import DynamoDBStore

    with mock_aws():
        store = DynamoDBStore(prefix="x-", region="us-east-1", retention_days=30)
        store.create_tables()
        for resource in resources(template, "AWS::DynamoDB::Table").values():
            props = resource["Properties"]
            name = "x-" + props["TableName"]["Fn::Sub"].split("-", 1)[1]
            live = store.client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            want = props.get("TimeToLiveSpecification")
            if want is None:
                assert live["TimeToLiveStatus"] == "DISABLED", name
            else:
                assert want == {"AttributeName": "expireAt", "Enabled": True}, name
                assert (live["TimeToLiveStatus"], live["AttributeName"]) == ("ENABLED", "expireAt"), name
        assert "TimeToLiveSpecification" in template["Resources"]["ConversationsTable"]["Properties"]
        for user in ("alice", "bob"):
            aws._run(store.create_user(user, None, 1_000))
        aws._run(store.save_message("alice", "msg-00000001", "bob", "hi", 2_000_000))
        items = store.client.scan(TableName="x-conversations")["Items"]
        assert len(items) == 2 and all(int(i["expireAt"]["N"]) == 2_000 + 30 * 86400 for i in items)


# -- observability -------------------------------------------------------------------------------------

ACCESS_LOG_CONTEXT = {
    "requestId", "extendedRequestId", "requestTime", "requestTimeEpoch", "eventType", "routeKey", "status",
    "connectionId", "connectedAt", "identity.sourceIp", "identity.userAgent", "authorizer.principalId",
    "authorize.status", "authorizer.error", "integration.status", "integration.latency", "integration.error",
    "error.message", "error.responseType",
}  # fmt: skip
"""$context variables of WebSocket APIs that carry nothing of the request's path, query or headers."""


def test_the_stage_access_log_is_json_without_the_query_string(template):
    import json

    stage = template["Resources"]["Stage"]["Properties"]
    log = stage["AccessLogSettings"]
    group = template["Resources"][log["DestinationArn"]["Fn::GetAtt"][0]]
    assert group["Type"] == "AWS::Logs::LogGroup" and group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    fields = json.loads(log["Format"])  # one JSON object a line
    variables = [v.removeprefix("$context.") for v in fields.values()]
    assert all(v.startswith("$context.") for v in fields.values()) and set(variables) <= ACCESS_LOG_CONTEXT
    assert not re.search(r"query|path|header|\$request|\$input|body|token", log["Format"], flags=re.I)
    routes = stage["DefaultRouteSettings"]
    assert routes["DataTraceEnabled"] is False and routes["LoggingLevel"] == "OFF", "a data trace logs frames and the token"
    assert "ApiGatewayLoggingReady" in as_list(template["Resources"]["Stage"]["DependsOn"])


def test_functions_run_on_arm64_traced_with_json_logs_in_their_own_groups(template):
    globals_ = template["Globals"]["Function"]
    assert globals_["Architectures"] == ["arm64"] and globals_["Tracing"] == "Active"
    env = globals_["Environment"]["Variables"]
    assert env["TUI_CHAT_MANAGEMENT_ENDPOINT"]["Fn::Sub"].startswith("https://${WebSocketApi}.execute-api.")
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"} <= set(env)
    for name, function in resources(template, "AWS::Serverless::Function").items():
        props = function["Properties"]
        logging_config = props["LoggingConfig"]
        assert logging_config["LogFormat"] == "JSON", name
        group = template["Resources"][logging_config["LogGroup"]["Ref"]]["Properties"]
        suffix = props["FunctionName"]["Fn::Sub"].removeprefix("${AWS::StackName}")
        assert group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}" + suffix}, name
        assert group["RetentionInDays"] == {"Ref": "LogRetentionInDays"}, name
    message = template["Resources"]["MessageFunction"]["Properties"]
    assert message["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasMessageReservedConcurrency", {"Ref": "MessageReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert all("ReservedConcurrentExecutions" not in f["Properties"]
               for n, f in resources(template, "AWS::Serverless::Function").items() if n != "MessageFunction")  # fmt: skip


def test_alarms_watch_functions_api_and_tables_and_notify_the_topic(template):
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    watched = set()
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert props["TreatMissingData"] == "notBreaching", name
        if "Metrics" in props:
            for query in props["Metrics"]:
                if "MetricStat" in query:
                    metric = query["MetricStat"]["Metric"]
                    watched.add((metric["MetricName"], metric["Dimensions"][0]["Value"]["Ref"], None))
            continue
        dims = {d["Name"]: d["Value"]["Ref"] for d in props["Dimensions"]}
        watched.add((props["MetricName"], dims.get("FunctionName") or dims["ApiId"], props.get("ExtendedStatistic")))
        if props["Namespace"] == "AWS/ApiGateway":
            assert dims == {"ApiId": "WebSocketApi", "Stage": "StageName"}, name
    for function in resources(template, "AWS::Serverless::Function"):
        assert {("Errors", function, None), ("Throttles", function, None), ("Duration", function, "p99")} <= watched
    assert {("IntegrationError", "WebSocketApi", None), ("ClientError", "WebSocketApi", None)} <= watched
    for table in resources(template, "AWS::DynamoDB::Table"):
        assert {("ReadThrottleEvents", table, None), ("WriteThrottleEvents", table, None)} <= watched
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert template["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""


def evaluate(condition, template: dict, params: dict) -> bool:
    """CloudFormation's condition functions over parameter values (enough for this template)."""
    [(fn, args)] = condition.items()
    if fn == "Condition":
        return evaluate(template["Conditions"][args], template, params)
    if fn == "Fn::Not":
        return not evaluate(args[0], template, params)
    if fn == "Fn::And":
        return all(evaluate(a, template, params) for a in args)
    if fn == "Fn::Or":
        return any(evaluate(a, template, params) for a in args)
    assert fn == "Fn::Equals", fn
    values = [params[a["Ref"]] if isinstance(a, dict) else a for a in args]
    return str(values[0]) == str(values[1])


def test_the_custom_domain_is_created_only_with_a_domain_name(template):
    defaults = {name: p.get("Default") for name, p in template["Parameters"].items()}
    domain_parts = {n for n, r in template["Resources"].items() if r["Type"].startswith(("AWS::ApiGatewayV2::DomainName",
                    "AWS::ApiGatewayV2::ApiMapping", "AWS::Route53::"))}  # fmt: skip
    assert domain_parts == {"CustomDomain", "CustomDomainMapping", "CustomDomainRecord"}
    with_domain = {**defaults, "DomainName": "chat.example.org",
                   "CertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/abc"}  # fmt: skip
    for params, created in ((defaults, set()), (with_domain, {"CustomDomain", "CustomDomainMapping"}),
                            ({**with_domain, "HostedZoneId": "Z123EXAMPLE"}, domain_parts)):  # fmt: skip
        made = {n for n in domain_parts if evaluate({"Condition": template["Resources"][n]["Condition"]}, template, params)}
        assert made == created, params
    domain = template["Resources"]["CustomDomain"]["Properties"]["DomainNameConfigurations"][0]
    assert domain["EndpointType"] == "REGIONAL" and domain["SecurityPolicy"] == "TLS_1_2"
    mapping = template["Resources"]["CustomDomainMapping"]["Properties"]
    assert mapping["Stage"] == {"Ref": "Stage"} and mapping["DomainName"] == {"Ref": "CustomDomain"}
    alias = template["Resources"]["CustomDomainRecord"]["Properties"]["AliasTarget"]
    assert alias["DNSName"] == {"Fn::GetAtt": ["CustomDomain", "RegionalDomainName"]}
    rule = template["Rules"]["CustomDomainNeedsItsCertificate"]
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}]}


# -- attachments ---------------------------------------------------------------------------------------


def test_the_attachment_bucket_is_private_encrypted_tls_only_and_expires_with_the_messages(template):
    bucket = template["Resources"]["FilesBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert "CorsConfiguration" not in bucket, "clients are not browsers"
    assert bucket.get("VersioningConfiguration", {}).get("Status") != "Enabled", "a deleted attachment must be gone"
    rules = bucket["LifecycleConfiguration"]["Rules"]
    plain = {r["Id"]: r for r in rules if "Fn::If" not in r}
    assert plain["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert (plain["expire-unattached-uploads"]["Prefix"], plain["expire-unattached-uploads"]["ExpirationInDays"]) == ("uploads/", 1)
    [conditional] = [r["Fn::If"] for r in rules if "Fn::If" in r]
    assert conditional[0] == "HasRetention" and conditional[2] == {"Ref": "AWS::NoValue"}
    assert conditional[1]["Prefix"] == "files/" and conditional[1]["ExpirationInDays"] == {"Ref": "MessageRetentionDays"}
    assert template["Conditions"]["HasRetention"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MessageRetentionDays"}, "0"]}]}
    policy = template["Resources"]["FilesBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "FilesBucket"}
    [tls] = [s for s in policy["PolicyDocument"]["Statement"] if "Bool" in s.get("Condition", {})]
    assert (tls["Effect"], tls["Principal"], tls["Action"]) == ("Deny", "*", "s3:*")
    assert tls["Condition"]["Bool"] == {"aws:SecureTransport": "false"}
    assert tls["Resource"] == [{"Fn::GetAtt": ["FilesBucket", "Arn"]}, {"Fn::Sub": "${FilesBucket.Arn}/*"}]
    for name, function in resources(template, "AWS::Serverless::Function").items():
        env = function["Properties"].get("Environment", {}).get("Variables", {})
        assert ("TUI_CHAT_FILES_BUCKET" in env) == (name == "MessageFunction"), name
    assert template["Resources"]["MessageFunction"]["Properties"]["Environment"]["Variables"]["TUI_CHAT_FILES_BUCKET"] == {"Ref": "FilesBucket"}


# -- the README and the client --------------------------------------------------------------------------

README = TEMPLATE.parent / "README.md"


def test_the_readme_client_config_is_what_the_client_accepts(tmp_path):
    from tui_chat.client.config import load_config

    text = README.read_text()
    section = text[text.index("## Point the client at it") :]
    [example] = re.findall(r"```toml\n(.*?)```", section[: section.index("\n## ", 3)], flags=re.S)
    path = tmp_path / "config.toml"
    path.write_text(example)
    config = load_config(path, env={})
    assert config.server.startswith("wss://") and config.cognito is not None


def test_the_template_client_config_output_is_what_the_client_accepts(template, tmp_path):
    from tui_chat.client.config import load_config

    body, variables = template["Outputs"]["ClientConfig"]["Value"]["Fn::Sub"]
    assert set(variables) == {"Url"} and variables["Url"]["Fn::If"][0] == "HasCustomDomain"
    values = {"Url": "wss://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod", "AWS::Region": "eu-west-1",
              "UserPool": "eu-west-1_AbCdEfGhI", "UserPoolClient": "1example23456789abcdefghij"}  # fmt: skip
    path = tmp_path / "config.toml"
    path.write_text(re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], body))
    config = load_config(path, env={})
    assert config.server == values["Url"]
    assert config.cognito == {"region": "eu-west-1", "userPoolId": "eu-west-1_AbCdEfGhI", "clientId": values["UserPoolClient"]}
    assert template["Outputs"]["WebSocketUrl"]["Value"] == variables["Url"], "the same URL in both outputs"


def test_checkov_finds_only_what_the_readme_explains():
    checkov = shutil.which("checkov") or str(Path(sys.executable).with_name("checkov"))
    if not Path(checkov).exists():
        pytest.skip("checkov is not installed (pip install checkov)")
    import json

    result = subprocess.run([checkov, "-f", str(TEMPLATE), "--framework", "cloudformation", "-o", "json", "--quiet"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    report = json.loads(result.stdout)
    found = {(c["check_id"], c["resource"].rpartition(".")[2]) for c in report["results"].get("failed_checks", [])}
    text = README.read_text()
    table = text[text.index("## Checks: cfn-lint and checkov") : text.index("## What it costs")]
    explained = {
        (check, resource)
        for check, names in re.findall(r"^\| `(CKV2?_AWS_\d+)`[^|]*\| ([^|]+) \|", table, flags=re.M)
        for resource in re.findall(r"`([A-Za-z0-9]+)`", names) + (
            list(resources_of_kind("AWS::Serverless::Function")) if "all four functions" in names else [])
    }  # fmt: skip
    assert found == explained, f"checkov found, unexplained: {sorted(found - explained)}; explained, not found: {sorted(explained - found)}"


def resources_of_kind(kind: str) -> list[str]:
    from cfnlint.decode import cfn_yaml

    return list(resources(cfn_yaml.load(str(TEMPLATE)), kind))


# -- Powertools in aws.py (what the template's LoggingConfig, Tracing and POWERTOOLS_* set up) ----------

TRACE_ROOT = "1-5759e988-bd862e3fe1be46a994272793"


@pytest.fixture
def in_lambda(monkeypatch):
    """aws.py as in a Lambda container (logging set up once, Powertools if installed); the
    process's logging is put back afterwards."""
    import logging

    for name, value in (("AWS_LAMBDA_FUNCTION_NAME", "tui-chat-message"), ("POWERTOOLS_SERVICE_NAME", "tui-chat-test"),
                        ("POWERTOOLS_METRICS_NAMESPACE", "tui-chat-test"),
                        ("_X_AMZN_TRACE_ID", f"Root={TRACE_ROOT};Parent=53995c3f42cd8ad8;Sampled=1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)  # Powertools' tracer stays off: nothing patched here
    monkeypatch.setattr(aws, "_logging_ready", False)
    monkeypatch.setattr(aws, "_powertools", None)
    ours, root = logging.getLogger("tui_chat"), logging.getLogger()
    saved = (ours.handlers[:], ours.propagate, ours.level, root.level, [(h, h.formatter) for h in root.handlers])
    yield
    ours.handlers[:], ours.propagate, ours.level = saved[0], saved[1], saved[2]
    root.setLevel(saved[3])
    for handler, formatter in saved[4]:
        handler.setFormatter(formatter)


def json_lines(text: str) -> list[dict]:
    import json

    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_powertools_logs_metrics_and_trace_correlation_in_lambda(cloud, in_lambda, capsys):
    pytest.importorskip("aws_lambda_powertools", reason="AWS Lambda Powertools is not installed")
    from tests.aws.test_handlers import connect, id_token, send

    _, client = cloud
    connect("conn-A1", "alice")
    connect("conn-A2", "alice", "phone-00001")
    connect("conn-B1", "bob")
    body = "a secret body that no log may hold"
    send("conn-A1", "alice", {"action": "sendMessage", "id": "msg-00000001", "to": "bob", "body": body})
    send("conn-A1", "alice", {"action": "sendMessages", "messages": [
        {"id": f"msg-0000001{i}", "to": "bob", "body": body} for i in range(3)]})  # fmt: skip
    client.gone.add("conn-B1")
    send("conn-A1", "alice", {"action": "sendMessage", "id": "msg-00000020", "to": "bob", "body": body})
    out = capsys.readouterr().out
    assert aws._powertools is not None
    assert body not in out and id_token("alice").split(".")[0] not in out and "token" not in out.lower()
    lines = json_lines(out)
    metrics = [line for line in lines if "_aws" in line]
    assert all(m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "tui-chat-test" and m["service"] == "tui-chat-test" for m in metrics)

    def values(name: str) -> list[float]:  # EMF holds each metric's values in a list
        return [v for m in metrics if name in m for v in (m[name] if isinstance(m[name], list) else [m[name]])]

    assert values("Sends") == [1, 3, 1], "one value per frame: the messages it carried"
    # bob's one connection and alice's phone for each stored message (a batch is posted message by message)
    assert values("FanOutSize") == [2, 6, 2]
    assert values("GoneConnections") == [1]
    invocations = [line for line in lines if line.get("message") == "invocation"]
    assert {i["route"] for i in invocations} >= {"$connect", "sendMessage", "sendMessages"}
    assert all(i["xray_trace_id"] == TRACE_ROOT and i["level"] == "INFO" and i["service"] == "tui-chat-test" for i in invocations)
    assert all({"route", "conn", "requestId", "status", "ms"} <= set(i) for i in invocations)
    assert all(i["user"] == "alice" for i in invocations if i["route"].startswith("send"))  # (None is left out)


def test_without_powertools_lambda_logs_are_json_lines_and_nothing_else_changes(cloud, in_lambda, monkeypatch, capsys):
    import logging
    import sys

    for name in [m for m in sys.modules if m == "aws_lambda_powertools" or m.startswith("aws_lambda_powertools.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "aws_lambda_powertools", None)  # import fails as if not installed
    from tests.aws.test_handlers import connect, send
    from tui_chat.server.logs import JsonFormatter

    handler = logging.StreamHandler(sys.stdout)
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])  # the runtime's handler
    connect("conn-A1", "alice")
    send("conn-A1", "alice", {"action": "ping"})
    assert aws._powertools is None and isinstance(handler.formatter, JsonFormatter)
    ping = [line for line in json_lines(capsys.readouterr().out) if line.get("route") == "ping"]
    assert ping and ping[0]["msg"] == "invocation" and "_aws" not in ping[0]


def test_each_invocation_is_a_subsegment_annotated_with_its_route():
    pytest.importorskip("aws_lambda_powertools", reason="AWS Lambda Powertools is not installed")
    import contextlib

    seen = []

    class Subsegment:
        def put_annotation(self, key, value):
            seen.append((key, value))

    class Provider:
        @contextlib.contextmanager
        def in_subsegment(self, name):
            seen.append(name)
            yield Subsegment()

    class Tracer:
        disabled = False
        provider = Provider()

    powertools = aws._Powertools.__new__(aws._Powertools)
    powertools.tracer = Tracer()
    with powertools.segment("message", "sendMessage"):
        pass
    assert seen == ["## message", ("route", "sendMessage")]
    powertools.tracer.disabled = True
    with powertools.segment("message", "ping"):
        pass
    assert len(seen) == 2, "a disabled tracer (outside Lambda) records nothing"
