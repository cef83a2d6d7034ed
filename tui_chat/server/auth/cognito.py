"""Cognito ID tokens: how the Lambda authorizer and ``tui-chat serve --auth cognito`` know who connects.

PyJWT and httpx only (no boto3), so the self-hosted server can check a pool's tokens without
the ``cloud`` extra.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt

from tui_chat import protocol as p
from tui_chat.server.auth.identity import AuthError, Identity

log = logging.getLogger("tui_chat.auth")

JWKS_REFETCH_INTERVAL_S = 60.0
"""An unknown ``kid`` refetches the JWKS (key rotation), at most this often."""
JWKS_MAX_AGE_S = 24 * 60 * 60


class CognitoVerifier:
    """Checks Cognito ID tokens: RS256 against the pool's JWKS (cached), ``iss``, ``aud``,
    ``token_use`` = ``id``, ``exp``, and optionally membership of a group.

    ``verify_token`` blocks the first time (and on key rotation) while it fetches the JWKS: call it
    from a worker thread in async code. Failures raise :class:`AuthError` with 401 (bad token),
    403 (valid token, user not allowed) or 503 (the JWKS cannot be fetched).
    """

    mode = "cognito"

    def __init__(
        self,
        region: str,
        user_pool_id: str,
        client_id: str,
        *,
        required_group: str | None = None,
        jwks_url: str | None = None,
        fetch_jwks: Callable[[str], dict] | None = None,
        clock: Callable[[], float] = time.time,
        leeway_s: float = 0.0,
    ) -> None:
        self.region = region
        self.user_pool_id = user_pool_id
        self.client_id = client_id
        self.required_group = required_group or None
        self.issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
        self.jwks_url = jwks_url or os.environ.get("TUI_CHAT_COGNITO_JWKS_URL") or f"{self.issuer}/.well-known/jwks.json"
        self._fetch = fetch_jwks or _fetch_jwks
        self.clock = clock
        self.leeway_s = leeway_s
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def info(self) -> dict:
        """What ``/info`` tells clients: ``{"region", "userPoolId", "clientId"}``."""
        return {"region": self.region, "userPoolId": self.user_pool_id, "clientId": self.client_id}

    def load_keys(self) -> None:
        """Fetch the JWKS now (servers call it at start so the first sign-in does not wait)."""
        with self._lock:
            self._refresh_keys()

    def _refresh_keys(self) -> None:
        try:
            document = self._fetch(self.jwks_url)
            keys = {}
            for jwk in jwt.PyJWKSet.from_dict(document).keys:
                if jwk.key_id and jwk.public_key_use in (None, "sig"):
                    keys[jwk.key_id] = jwk.key
        except Exception as exc:
            log.error("cannot fetch the Cognito JWKS", extra={"url": self.jwks_url, "error": repr(exc)})
            raise AuthError(503, "the sign-in service's keys cannot be fetched; try again") from None
        self._keys = keys
        self._fetched_at = time.monotonic()

    def _key(self, kid: str) -> Any:
        with self._lock:
            age = None if self._fetched_at is None else time.monotonic() - self._fetched_at
            if age is None or age > JWKS_MAX_AGE_S or (kid not in self._keys and age > JWKS_REFETCH_INTERVAL_S):
                self._refresh_keys()
            key = self._keys.get(kid)
        if key is None:
            raise AuthError(401, "invalid token: signed with an unknown key")
        return key

    def verify_token(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:  # whatever a hostile token makes it raise
            raise AuthError(401, f"invalid token: {exc}") from None
        if header.get("alg") != "RS256":  # never 'none', never an HMAC keyed with a public key
            raise AuthError(401, "invalid token: not signed with RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError(401, "invalid token: no key id")
        try:
            claims = jwt.decode(
                token, self._key(kid), algorithms=["RS256"], audience=self.client_id, issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "token_use"]}, leeway=self.leeway_s,
            )  # fmt: skip
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:  # whatever a hostile token makes it raise
            raise AuthError(401, f"invalid token: {exc}") from None
        if claims.get("token_use") != "id":
            raise AuthError(401, "invalid token: not an ID token")
        if claims["exp"] + self.leeway_s <= self.clock():  # our clock too: tests move it
            raise AuthError(401, "invalid token: expired")
        try:
            username = p.normalize_username(claims.get("cognito:username"))
        except ValueError as exc:
            raise AuthError(403, f"this Cognito username cannot be used for chat: {exc}") from None
        if self.required_group is not None:
            groups = claims.get("cognito:groups") or []
            if not isinstance(groups, list) or self.required_group not in groups:
                raise AuthError(403, f"only members of the group {self.required_group!r} may use this server")
        return Identity(username=username, device=None)


def _fetch_jwks(url: str) -> dict:
    import httpx

    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return response.json()
