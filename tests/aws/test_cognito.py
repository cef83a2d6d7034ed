"""Cognito: the client's SRP sign-in and refresh, and the server's ID-token verifier, against moto's server."""

from __future__ import annotations

import base64
import hashlib
import hmac as hmac_module
import json
import time

import httpx
import jwt
import pytest

from tests.aws.conftest import moto_signing_key
from tui_chat.cognito_auth import CognitoAuthError, CognitoConfig, refresh, sign_in, sign_in_async
from tui_chat.server.auth.cognito import CognitoVerifier
from tui_chat.server.auth.identity import AuthError

pytest.importorskip("pycognito", reason="the cloud extra (pycognito) is not installed")


@pytest.fixture(scope="module")
def config(cognito_pool) -> CognitoConfig:
    return CognitoConfig(cognito_pool["region"], cognito_pool["pool_id"], cognito_pool["client_id"], cognito_pool["endpoint"])


@pytest.fixture(scope="module")
def tokens(config):
    return sign_in(config, "Alice", "Correct-Horse-9")


def verifier(pool, **kwargs) -> CognitoVerifier:
    # The JWKS comes over real HTTP from moto's server (PyJWKClient's urllib would work too, but
    # httpx is what the verifier uses); the issuer stays the real AWS one, as in moto's tokens.
    return CognitoVerifier(pool["region"], pool["pool_id"], pool["client_id"], jwks_url=pool["jwks_url"], **kwargs)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def forge(pool, **overrides) -> str:
    """A token signed with moto's own key (so only the claims are wrong), like moto's ID tokens."""
    now = int(time.time())
    claims = {
        "iss": f"https://cognito-idp.{pool['region']}.amazonaws.com/{pool['pool_id']}", "sub": "abc",
        "aud": pool["client_id"], "token_use": "id", "iat": now, "auth_time": now, "exp": now + 3600,
        "cognito:username": "alice",
    }  # fmt: skip
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    key = moto_signing_key()
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "dummy"})


# -- the client's sign-in ----------------------------------------------------------------------


def test_srp_sign_in_returns_an_id_token_for_the_pool_and_client(tokens, cognito_pool):
    claims = jwt.decode(tokens.id_token, options={"verify_signature": False})
    assert claims["token_use"] == "id" and claims["aud"] == cognito_pool["client_id"]
    assert claims["cognito:username"] == "Alice" and tokens.refresh_token
    assert not tokens.expires_within(60) and tokens.expires_within(4000)


def test_refresh_gives_new_tokens_and_keeps_the_refresh_token(config, tokens):
    renewed = refresh(config, tokens.refresh_token)
    assert jwt.decode(renewed.id_token, options={"verify_signature": False})["token_use"] == "id"
    assert renewed.refresh_token == tokens.refresh_token


def test_refresh_with_a_bad_token_says_sign_in_again(config):
    with pytest.raises(CognitoAuthError) as failed:
        refresh(config, "not-a-refresh-token")
    assert failed.value.reason == "expired"


def test_wrong_password_and_unknown_user_are_the_same_credentials_error(config):
    # moto's SRP does not check passwords, so the refusal is checked through USER_PASSWORD_AUTH.
    for user, password in (("Alice", "wrong-password-1"), ("nobody-at-all", "Correct-Horse-9")):
        with pytest.raises(CognitoAuthError) as failed:
            sign_in(config, user, password, method="password")
        assert failed.value.reason == "credentials" and failed.value.message == "wrong username or password"


def test_a_user_who_must_change_their_password_is_told_so(config, cognito_pool):
    cognito_pool["idp"].admin_create_user(UserPoolId=cognito_pool["pool_id"], Username="newbie",
                                          TemporaryPassword="Temp-Pass-123", MessageAction="SUPPRESS")  # fmt: skip
    with pytest.raises(CognitoAuthError) as failed:
        sign_in(config, "newbie", "Temp-Pass-123")
    assert failed.value.reason == "new_password_required"


def test_an_unreachable_cognito_is_unavailable_not_a_crash():
    dead = CognitoConfig("us-east-1", "us-east-1_nothing", "client", "http://127.0.0.1:9")
    with pytest.raises(CognitoAuthError) as failed:
        sign_in(dead, "alice", "whatever-pass")
    assert failed.value.reason == "unavailable"


async def test_async_sign_in_runs_off_the_event_loop(config):
    tokens = await sign_in_async(config, "mallory", "Correct-Horse-9")
    assert tokens.id_token.count(".") == 2


def test_config_from_info_matches_the_servers_info_object(cognito_pool):
    info = {"region": "eu-west-1", "userPoolId": "eu-west-1_abc", "clientId": "xyz"}
    assert CognitoConfig.from_info(info) == CognitoConfig("eu-west-1", "eu-west-1_abc", "xyz")
    with pytest.raises(CognitoAuthError):
        CognitoConfig.from_info({"region": "eu-west-1"})


# -- the server's verifier ----------------------------------------------------------------------


def test_verifier_accepts_a_moto_issued_id_token(tokens, cognito_pool):
    identity = verifier(cognito_pool).verify_token(tokens.id_token)
    assert identity.username == "alice" and identity.device is None  # lowercased, as the protocol stores it


@pytest.mark.parametrize(
    "overrides,status",
    [
        ({"exp": int(time.time()) - 10}, 401),
        ({"aud": "some-other-client"}, 401),
        ({"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_evil"}, 401),
        ({"token_use": "access"}, 401),
        ({"token_use": None}, 401),
        ({"cognito:username": "not a valid name!"}, 403),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "access-token", "no-token-use", "unusable-username"],
)
def test_verifier_refuses_wrong_claims(cognito_pool, overrides, status):
    with pytest.raises(AuthError) as refused:
        verifier(cognito_pool).verify_token(forge(cognito_pool, **overrides))
    assert refused.value.status == status


def test_verifier_refuses_a_real_access_token(tokens, cognito_pool):
    with pytest.raises(AuthError) as refused:
        verifier(cognito_pool).verify_token(tokens.access_token)
    assert refused.value.status == 401


def test_verifier_refuses_alg_none_hmac_and_tampered_tokens(tokens, cognito_pool):
    v = verifier(cognito_pool)
    header, payload, signature = tokens.id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    public = httpx.get(cognito_pool["jwks_url"]).content  # the key-confusion attack: HS256 keyed with public material
    hmac_header = _b64(json.dumps({"alg": "HS256", "kid": "dummy", "typ": "JWT"}).encode())
    hmac_body = f"{hmac_header}.{payload}"
    hmac = f"{hmac_body}.{_b64(hmac_module.new(public, hmac_body.encode(), hashlib.sha256).digest())}"
    claims["cognito:username"] = "mallory"
    forged_payload = _b64(json.dumps(claims).encode())
    tampered = f"{header}.{forged_payload}.{signature}"
    for token in (unsigned, hmac, tampered, "not.a.jwt", ""):
        with pytest.raises(AuthError) as refused:
            v.verify_token(token)
        assert refused.value.status == 401, token


def test_required_group_admits_members_only(cognito_pool, config):
    v = verifier(cognito_pool, required_group="chatters")
    assert v.verify_token(sign_in(config, "Alice", "Correct-Horse-9").id_token).username == "alice"
    with pytest.raises(AuthError) as refused:
        v.verify_token(sign_in(config, "mallory", "Correct-Horse-9").id_token)
    assert refused.value.status == 403


def test_jwks_is_fetched_once_and_refetched_only_for_an_unknown_key(cognito_pool, tokens):
    fetched = []

    def fetch(url):
        fetched.append(url)
        return httpx.get(url).json()

    v = verifier(cognito_pool, fetch_jwks=fetch)
    for _ in range(3):
        v.verify_token(tokens.id_token)
    assert fetched == [cognito_pool["jwks_url"]]
    other = jwt.encode({"sub": "x"}, moto_signing_key(), algorithm="RS256", headers={"kid": "rotated"})
    with pytest.raises(AuthError):
        v.verify_token(other)
    assert len(fetched) == 1, "a refetch for an unknown kid waits a minute (no refetch storms)"


def test_unreachable_jwks_is_503_not_401(cognito_pool, tokens):
    v = CognitoVerifier(cognito_pool["region"], cognito_pool["pool_id"], cognito_pool["client_id"],
                        jwks_url="http://127.0.0.1:9/jwks.json")  # fmt: skip
    with pytest.raises(AuthError) as failed:
        v.verify_token(tokens.id_token)
    assert failed.value.status == 503
