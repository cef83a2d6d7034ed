"""Fixtures for the cloud backend: moto only, and nothing leaves 127.0.0.1."""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
from importlib import resources

import pytest

pytest.importorskip("boto3", reason="the cloud extra (boto3) is not installed")
pytest.importorskip("moto", reason="moto is not installed (the test extra installs it)")

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """Fake credentials and a region, so no test can reach a real account."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", REGION), ("AWS_REGION", REGION)):
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "TUI_CHAT_COGNITO_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The Lambda handlers behind the API Gateway emulator (``serve-lambda``), one per module."""
    pytest.importorskip("flask", reason="moto's server mode needs moto[server]")
    from tui_chat_dev.serverproc import start_server

    running = start_server(tmp_path_factory.mktemp("emulator"), runtime="lambda")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def moto_server():
    """moto's server mode on 127.0.0.1 (a free port), for code that talks HTTP: JWKS, pycognito.

    Per module: it shares moto's in-process state, which every ``mock_aws`` test resets."""
    pytest.importorskip("flask", reason="moto's server mode needs moto[server]")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def cognito_pool(moto_server):
    """A user pool, an SRP app client without a secret, a group and two users, in moto's server."""
    import boto3

    idp = boto3.client("cognito-idp", region_name=REGION, endpoint_url=moto_server,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    pool_id = idp.create_user_pool(PoolName="tui-chat-test")["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="tui-chat", GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    idp.create_group(UserPoolId=pool_id, GroupName="chatters")
    for user, group in (("Alice", "chatters"), ("mallory", None)):
        idp.admin_create_user(UserPoolId=pool_id, Username=user, MessageAction="SUPPRESS")
        idp.admin_set_user_password(UserPoolId=pool_id, Username=user, Password="Correct-Horse-9", Permanent=True)
        if group:
            idp.admin_add_user_to_group(UserPoolId=pool_id, Username=user, GroupName=group)
    return {"endpoint": moto_server, "region": REGION, "pool_id": pool_id, "client_id": client_id,
            "jwks_url": f"{moto_server}/{pool_id}/.well-known/jwks.json", "idp": idp}


@functools.lru_cache(maxsize=1)
def moto_signing_key():
    """That key, loaded once (loading an RSA private key takes tens of milliseconds)."""
    import jwt

    return jwt.PyJWK(moto_private_jwk()).key


@functools.lru_cache(maxsize=1)
def moto_private_jwk() -> dict:
    """The RSA key moto signs its tokens with: tests forge tokens a real pool key would sign."""
    data = resources.files("moto.cognitoidp").joinpath("resources/jwks-private.json.gz").read_bytes()
    return json.loads(gzip.decompress(data))
