"""The client service signs in with Cognito (SRP, from the config: the cloud has no /info),
keeps the refresh token in the keyring, and talks to a server that verifies Cognito ID tokens."""

from __future__ import annotations

import asyncio

import keyring

from tests.aws.conftest import REGION
from tests.client.conftest import MemoryKeyring, wait_until
from tui_chat_dev.serverproc import start_server
from tui_chat import cognito_auth
from tui_chat.client.service import ChatClient


async def test_cognito_sign_in_send_and_resume_from_the_keyring(tmp_path, cognito_pool, monkeypatch):
    monkeypatch.setenv("TUI_CHAT_DATA_DIR", str(tmp_path / "data"))
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    server = start_server(
        tmp_path, auth="cognito",
        extra_args=("--cognito-region", REGION, "--cognito-user-pool-id", cognito_pool["pool_id"],
                    "--cognito-client-id", cognito_pool["client_id"]),
        env={"TUI_CHAT_COGNITO_JWKS_URL": cognito_pool["jwks_url"]},
    )  # fmt: skip
    pool = {"region": REGION, "userPoolId": cognito_pool["pool_id"], "clientId": cognito_pool["client_id"]}
    try:
        client = ChatClient(server.http_url, cognito=pool, cognito_endpoint=cognito_pool["endpoint"], data_folder=tmp_path / "c")
        assert (await client.discover()).auth == "cognito"
        await client.sign_in("Alice", "Correct-Horse-9")
        assert client.me == "alice"
        assert any(value for (service, user), value in backend.passwords.items() if user.split("#")[0] == "alice"), "refresh token kept"
        client.start()
        await wait_until(client, lambda: client.online)
        client.send("alice", "note to self, through Cognito")
        await wait_until(client, lambda: client.queued == 0)
        await client.stop()

        again = ChatClient(server.http_url, cognito=pool, cognito_endpoint=cognito_pool["endpoint"], data_folder=tmp_path / "c")
        assert await again.resume("alice"), "signed in again with the refresh token alone"
        again.start()
        await wait_until(again, lambda: again.online)
        assert [row.body for row in again.timeline("alice")] == ["note to self, through Cognito"]
        await again.stop()

        # Signing out revokes the refresh token at Cognito (moto has no RevokeToken: the request
        # itself is checked in test_revoke_sends_cognitos_revoke_token_request).
        revoked = []
        monkeypatch.setattr(cognito_auth, "revoke", lambda config, token: revoked.append((config.client_id, token)))
        kept = again.account.tokens.refresh
        assert await again.sign_out() is True
        assert revoked == [(cognito_pool["client_id"], kept)] and kept
        assert not any(user.split("#")[0] == "alice" and value for (service, user), value in backend.passwords.items()), "forgotten here"

        wrong = ChatClient(server.http_url, cognito=pool, cognito_endpoint=cognito_pool["endpoint"], data_folder=tmp_path / "w")
        try:
            await asyncio.wait_for(wrong.sign_in("nobody-here", "Wrong-Horse-1"), 30)
        except Exception as exc:  # SignInError with a reason for people
            assert getattr(exc, "kind", None) in ("credentials", "unreachable")
        else:
            raise AssertionError("an unknown user must not sign in")
    finally:
        server.stop()


def test_revoke_sends_cognitos_revoke_token_request(monkeypatch):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.stub import Stubber

    client = boto3.client("cognito-idp", region_name=REGION, config=Config(signature_version=UNSIGNED))
    config = cognito_auth.CognitoConfig(region=REGION, user_pool_id=f"{REGION}_pool", client_id="app-client-1")
    monkeypatch.setattr(cognito_auth, "_client", lambda _: client)
    with Stubber(client) as stub:
        stub.add_response("revoke_token", {}, {"Token": "the-refresh-token", "ClientId": "app-client-1"})
        cognito_auth.revoke(config, "the-refresh-token")
        stub.assert_no_pending_responses()
        stub.add_client_error("revoke_token", "UnauthorizedException")
        try:
            cognito_auth.revoke(config, "the-refresh-token")
        except cognito_auth.CognitoAuthError as exc:
            assert exc.reason == "unavailable"
        else:
            raise AssertionError("a refused revoke is said, so sign-out can tell the person")
