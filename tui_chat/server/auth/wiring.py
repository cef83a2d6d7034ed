"""The one place that turns settings into the sign-in services a runtime uses."""

from __future__ import annotations

from collections.abc import Callable

from tui_chat.server.auth.accounts import AccountService
from tui_chat.server.auth.identity import TokenVerifier
from tui_chat.server.settings import Settings
from tui_chat.server.store import Store


def sign_in_services(settings: Settings, store: Store, secret: bytes | None, clock: Callable[[], int]) -> tuple[AccountService | None, TokenVerifier]:
    """The account service (None where nobody signs in through us) and what checks tokens.

    With ``cognito`` the pool's tokens are checked; a ``secret`` (the self-hosted servers have
    one) keeps an account service too, closed to sign-up, for the ``/auth`` endpoints to refuse
    properly. Raises ``RuntimeError`` with what is missing."""
    if settings.auth == "cognito":
        from tui_chat.server.auth.cognito import CognitoVerifier  # PyJWT and httpx only

        missing = [n for n in ("cognito_region", "cognito_user_pool_id", "cognito_client_id") if not getattr(settings, n)]
        if missing:
            raise RuntimeError(f"cognito sign-in needs {', '.join(missing)} (--cognito-* flags, or TUI_CHAT_COGNITO_* variables)")
        verifier = CognitoVerifier(
            settings.cognito_region, settings.cognito_user_pool_id, settings.cognito_client_id,
            required_group=settings.cognito_group, jwks_url=settings.cognito_jwks_url,
        )  # fmt: skip
        accounts = AccountService(store, secret, mode="accounts", allow_signup=False, clock=clock) if secret else None
        return accounts, verifier
    if settings.auth in ("accounts", "open"):
        if not secret or len(secret) < 32:
            raise RuntimeError("accounts and open sign-in need a token secret of 32 characters or more")
        accounts = AccountService(store, secret, mode=settings.auth, allow_signup=settings.signup, clock=clock)
        return accounts, accounts
    raise RuntimeError(f"unknown sign-in mode {settings.auth!r}")
