"""Cognito sign-in for the client: SRP with pycognito, and refresh, without Textual.

The cloud deployment (``assets/cloud``) signs users in with an Amazon Cognito user pool; the
client then connects with the ID token (PROTOCOL.md section 6). This module is the whole
Cognito side of that: :func:`sign_in` runs the SRP exchange (the password never leaves the
machine), :func:`refresh` trades the refresh token for new ID and access tokens. Both block
(boto3): async code calls :func:`sign_in_async` / :func:`refresh_async`, which use a worker thread.

Errors are :class:`CognitoAuthError` with a ``reason`` the UI can act on: ``"credentials"``
(wrong username or password; Cognito does not say which), ``"new_password_required"``,
``"mfa_required"``, ``"not_confirmed"``, ``"expired"`` (refresh token no longer valid),
``"throttled"``, ``"unavailable"`` (network or service) and ``"config"`` (pool or client wrong).

Tokens are not verified here: the server (or the cloud's authorizer) verifies them, and the client
has no use for claims beyond the expiry it reads from ``ExpiresIn``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CognitoConfig:
    """What the client needs to know about a pool: ``/info``'s ``cognito`` object, or the config file."""

    region: str
    user_pool_id: str
    client_id: str
    endpoint_url: str | None = None
    """Only for tests and emulators (moto's server mode): the Cognito API's URL."""

    @classmethod
    def from_info(cls, info: dict, endpoint_url: str | None = None) -> "CognitoConfig":
        """From a ``{"region", "userPoolId", "clientId"}`` object (``GET /info``)."""
        try:
            return cls(info["region"], info["userPoolId"], info["clientId"], endpoint_url)
        except (KeyError, TypeError) as exc:
            raise CognitoAuthError("config", f"incomplete Cognito settings: missing {exc}") from None


@dataclass(frozen=True)
class CognitoTokens:
    id_token: str
    """What the client sends as ``token`` when it connects."""
    access_token: str
    refresh_token: str
    expires_at: float
    """When the ID token expires (seconds since the epoch, from the client's clock)."""

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        return (time.time() if now is None else now) + seconds >= self.expires_at


class CognitoAuthError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _client(config: CognitoConfig) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    # Sign-in calls are unauthenticated: no AWS credentials are needed (or used) on the client.
    return boto3.client(
        "cognito-idp", region_name=config.region, endpoint_url=config.endpoint_url,
        config=Config(signature_version=UNSIGNED, retries={"mode": "standard", "max_attempts": 3},
                      connect_timeout=5, read_timeout=15),
    )  # fmt: skip


def _tokens(result: dict, refresh_token: str | None = None) -> CognitoTokens:
    auth = result.get("AuthenticationResult") or {}
    try:
        return CognitoTokens(
            id_token=auth["IdToken"], access_token=auth["AccessToken"],
            refresh_token=auth.get("RefreshToken") or refresh_token or "",
            expires_at=time.time() + int(auth.get("ExpiresIn", 3600)),
        )  # fmt: skip
    except KeyError:
        raise CognitoAuthError("unavailable", "Cognito answered without tokens") from None


def _translate(exc: Exception, *, refreshing: bool = False) -> CognitoAuthError:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, CognitoAuthError):
        return exc
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NotAuthorizedException", "UserNotFoundException"):
            if refreshing:
                return CognitoAuthError("expired", "the session has expired; sign in again")
            return CognitoAuthError("credentials", "wrong username or password")
        if code == "PasswordResetRequiredException":
            return CognitoAuthError("new_password_required", "the password must be reset first")
        if code == "UserNotConfirmedException":
            return CognitoAuthError("not_confirmed", "the account is not confirmed yet")
        if code in ("TooManyRequestsException", "LimitExceededException", "TooManyFailedAttemptsException"):
            return CognitoAuthError("throttled", "too many attempts; wait a little and try again")
        if code in ("ResourceNotFoundException", "InvalidParameterException", "InvalidUserPoolConfigurationException"):
            return CognitoAuthError("config", f"the Cognito settings look wrong: {code}")
        return CognitoAuthError("unavailable", f"Cognito refused: {code or exc}")
    if isinstance(exc, BotoCoreError):
        return CognitoAuthError("unavailable", f"cannot reach Cognito: {exc}")
    return CognitoAuthError("unavailable", f"sign-in failed: {exc}")


def sign_in(config: CognitoConfig, username: str, password: str, *, method: str = "srp") -> CognitoTokens:
    """Sign in and return the tokens.

    ``method="srp"`` (the default, and the only flow the template's app client allows) runs the
    Secure Remote Password exchange through pycognito. ``method="password"`` uses
    ``USER_PASSWORD_AUTH`` (the password goes to Cognito over TLS) for pools that enable it.
    """
    from pycognito.aws_srp import AWSSRP
    from pycognito.exceptions import ForceChangePasswordException, MFAChallengeException

    client = _client(config)
    try:
        if method == "srp":
            srp = AWSSRP(username=username, password=password, pool_id=config.user_pool_id,
                         client_id=config.client_id, client=client)  # fmt: skip
            return _tokens(srp.authenticate_user())
        if method == "password":
            result = client.initiate_auth(
                ClientId=config.client_id, AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password},
            )  # fmt: skip
            if result.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
                raise CognitoAuthError("new_password_required", "a new password must be chosen first")
            if result.get("ChallengeName"):
                raise CognitoAuthError("mfa_required", f"Cognito asks for {result['ChallengeName']}")
            return _tokens(result)
        raise ValueError(f"unknown sign-in method {method!r}")
    except ForceChangePasswordException:
        raise CognitoAuthError("new_password_required", "a new password must be chosen first") from None
    except MFAChallengeException:
        raise CognitoAuthError("mfa_required", "this account needs a second factor, which tui-chat does not support yet") from None
    except (ValueError, NotImplementedError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith("unknown sign-in method"):
            raise
        raise CognitoAuthError("unavailable", f"sign-in failed: {exc}") from None
    except Exception as exc:
        raise _translate(exc) from None


def refresh(config: CognitoConfig, refresh_token: str) -> CognitoTokens:
    """New ID and access tokens for a refresh token (Cognito keeps the refresh token the same
    unless rotation is on; the returned tokens carry whichever is current)."""
    client = _client(config)
    try:
        result = client.initiate_auth(
            ClientId=config.client_id, AuthFlow="REFRESH_TOKEN_AUTH", AuthParameters={"REFRESH_TOKEN": refresh_token}
        )
    except Exception as exc:
        raise _translate(exc, refreshing=True) from None
    return _tokens(result, refresh_token)


def revoke(config: CognitoConfig, refresh_token: str) -> None:
    """Sign out: Cognito's RevokeToken ends the refresh token and the tokens it issued."""
    client = _client(config)
    try:
        client.revoke_token(Token=refresh_token, ClientId=config.client_id)
    except Exception as exc:
        raise _translate(exc, refreshing=True) from None


async def sign_in_async(config: CognitoConfig, username: str, password: str, *, method: str = "srp") -> CognitoTokens:
    return await asyncio.to_thread(sign_in, config, username, password, method=method)


async def refresh_async(config: CognitoConfig, refresh_token: str) -> CognitoTokens:
    return await asyncio.to_thread(refresh, config, refresh_token)


async def revoke_async(config: CognitoConfig, refresh_token: str) -> None:
    await asyncio.to_thread(revoke, config, refresh_token)
