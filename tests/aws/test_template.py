"""The CloudFormation template: cfn-lint clean, and every route wired to a real handler and a real action."""

from __future__ import annotations

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
            return actions | set(re.findall(r"^\| `([A-Za-z]+)` \|", rooms, flags=re.M))
    return set(protocol.ACTIONS)


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


def test_functions_have_least_privilege(template):
    tables = set(resources(template, "AWS::DynamoDB::Table"))
    for name, function in resources(template, "AWS::Serverless::Function").items():
        statements = [s for policy in function["Properties"].get("Policies", []) for s in policy["Statement"]]
        if name == "AuthorizerFunction":
            assert statements == [], "the authorizer reads no table and posts to no connection"
            continue
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert "*" not in targets and all("*" != a.split(":")[1] for a in actions)
            if actions == ["execute-api:ManageConnections"]:
                assert ref_name(targets[0]["Fn::Sub"].replace("${StageName}", "stage")) == "WebSocketApi"
                assert targets[0]["Fn::Sub"].endswith("/@connections/*")
            else:
                assert all(a.startswith("dynamodb:") for a in actions) and "dynamodb:Scan" not in actions
                named = {t["Fn::GetAtt"][0] if "Fn::GetAtt" in t else ref_name(t) for t in targets}
                # Rooms are served by the message function alone; it alone deletes in batches (a room's messages).
                serves_rooms = name == "MessageFunction"
                assert named == (tables if serves_rooms else tables - {"RoomsTable"}), name
                assert ("dynamodb:BatchWriteItem" in actions) == serves_rooms, name


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
