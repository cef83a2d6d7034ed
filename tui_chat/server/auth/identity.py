"""What every way of signing in has in common: who a token speaks for, and how a refusal is said."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class AuthError(Exception):
    """A refusal with the HTTP status to answer."""

    def __init__(self, status: int, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s
        """With 429 and 503: when to try again."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid access token speaks for."""

    username: str
    device: str | None
    """Open-mode tokens are bound to the device they were issued for."""
    session: str | None = None
    """The sign-in the token belongs to (our own tokens): a handshake checks it has not ended."""


class TokenVerifier(Protocol):
    """Checks tokens issued elsewhere (Cognito's) in place of the server's own accounts."""

    mode: str

    def verify_token(self, token: str) -> Identity:
        """The token's user, or ``AuthError`` (401 bad token, 403 not allowed, 503 keys unreachable)."""

    def load_keys(self) -> None: ...

    def info(self) -> dict: ...
