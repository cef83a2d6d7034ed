"""Signing in, and knowing which server we signed in to.

One job: turn a server URL and a person's name (and password, or saved session) into
:class:`Tokens`, keep the refresh token in the vault, and key everything kept on disk on the
server's identity (PROTOCOL.md 7.5), so that a new server at a known address never shows the
old one's history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from tui_chat import cognito_auth
from tui_chat import protocol as p
from tui_chat.client.auth import (
    AuthClient,
    ServerInfo,
    SignInError,
    Tokens,
    TokenVault,
    http_base,
)
from tui_chat.client.connection import NeedsSignIn
from tui_chat.client.identity import (
    KnownServers,
    account_folder,
    adopt_legacy_folder,
    valid_server_id,
)
from tui_chat.paths import data_dir

log = logging.getLogger("tui_chat.client")

COGNITO_KINDS = {"credentials": "credentials", "expired": "expired", "throttled": "throttled"}
"""Cognito's failure reasons that mean the same as ours; any other is "unreachable"."""
SIGN_OUT_TIMEOUT_S = 3.0
"""How long signing out waits for the server to end the session before forgetting it anyway."""


class Account:
    """Who we are on which server: ``me``, ``tokens``, ``server_id``, ``info``.

    ``say`` tells the person something once (no keyring; a new server at this address);
    ``on_new_server`` is called when the address turns out to hold another server, before
    anything is read for it, so that the owner closes what it opened for the old one.
    """

    def __init__(
        self,
        server_url: str,
        *,
        vault: TokenVault,
        data_folder: Path | None,
        device: str,
        say: Callable[[str], None],
        on_new_server: Callable[[], None],
        cognito: dict | None = None,
        cognito_endpoint: str | None = None,
    ) -> None:
        self.server_url = server_url
        self.cognito = cognito
        """A Cognito pool from the config: the cloud has no ``/info`` to ask."""
        self.cognito_endpoint = cognito_endpoint
        self.auth = AuthClient(server_url)
        self.known_servers = KnownServers(data_folder)
        self.server_id = self.known_servers.get(http_base(server_url))
        """As last seen until ``discover`` asks, so that the right history opens while the server is unreachable."""
        self.vault = vault
        self.vault.server_id = self.server_id
        self.data_folder = data_folder
        self.device = device
        self.info: ServerInfo | None = None
        self.tokens: Tokens | None = None
        self._say = say
        self._on_new_server = on_new_server
        self._vault_noticed = False
        self._adopt_legacy_folder = False

    @property
    def me(self) -> str:
        return self.tokens.user if self.tokens is not None else ""

    async def discover(self) -> ServerInfo:
        """How this server signs people in (``GET /info``; the config for the cloud)."""
        if self.cognito is not None:
            pool = valid_server_id(f"cognito-{self.cognito.get('userPoolId', '')}")
            self.info = ServerInfo(auth="cognito", signup=False, cognito=self.cognito, server_id=pool)
        else:
            self.info = await self.auth.info()
        self._learn_server_id(self.info.server_id)
        return self.info

    def _learn_server_id(self, server_id: str) -> None:
        """Another id at this address is another server: say so, and keep its files apart."""
        if not server_id or server_id == self.server_id:
            return
        if self.server_id:
            self._say(
                f"The server at {http_base(self.server_url)} is not the one you used before: it was set up anew. "
                "Its history starts empty; what you had with the old one is kept apart, and nothing queued for it is sent here."
            )  # fmt: skip
            self._on_new_server()
        else:
            self._adopt_legacy_folder = True  # first id seen here: files kept for the address are this server's
        self.server_id = self.vault.server_id = server_id
        self.known_servers.remember(http_base(self.server_url), server_id)

    async def sign_in(self, username: str, password: str = "", *, create: bool = False) -> Tokens:
        """Sign in (or sign up with ``create``); open mode needs only the nickname.
        Raises :class:`SignInError` whose ``kind`` says what went wrong."""
        info = self.info or await self.discover()
        try:
            name = p.normalize_username(username)
        except ValueError as exc:
            raise SignInError("invalid", str(exc)) from None
        if info.auth == "open":
            tokens = await self.auth.sign_in_open(name, self.device)
        elif info.auth == "accounts":
            tokens = await self.auth.sign_in(name, password, create=create)
        elif info.auth == "cognito" and info.cognito:
            tokens = await self._cognito(lambda config: cognito_auth.sign_in_async(config, username, password), name)
        else:
            raise SignInError("invalid", f"this server signs in with {info.auth}, which this client does not offer")
        return self._keep(tokens)

    async def resume(self, username: str) -> Tokens | None:
        """The session kept from last time, renewed; None when there is none or it expired.

        With the server unreachable the session is resumed offline (an empty access token):
        history and outbox open from disk, and the first handshake, refused 401, renews it."""
        saved = self.vault.load(username)
        self._notice_vault()
        if not saved:
            return None
        try:
            tokens = await self._renew(saved, username)
        except SignInError as exc:
            if exc.kind == "expired":
                self.vault.forget(username)
            if exc.kind != "unreachable":
                return None
            tokens = Tokens(access="", refresh=saved, user=username)
        return self._keep(tokens)

    def assume(self, username: str) -> None:
        """Act as ``username`` before any token is at hand (the app opened from disk): the
        connection's first handshake is refused, and :meth:`refresh` then reads the vault."""
        self.tokens = Tokens(access="", refresh="", user=username)

    def folder_exists(self, username: str) -> bool:
        """Whether this device keeps files for ``username`` on the server last seen here."""
        return bool(self.server_id) and (self.folder(username) / "client.db").is_file()

    async def refresh(self) -> None:
        """The connection's 401 handler: renew the access token, or say that sign-in is needed."""
        assert self.tokens is not None
        if not self.tokens.refresh:  # assumed: the saved session is read only now, off the start path
            saved = self.vault.load(self.tokens.user)
            self._notice_vault()
            if not saved:
                raise NeedsSignIn("no session is kept for this account on this device")
            self.tokens = Tokens(access="", refresh=saved, user=self.tokens.user)
        try:
            self._keep(await self._renew(self.tokens.refresh, self.tokens.user))
        except SignInError as exc:
            if exc.kind in ("expired", "credentials"):
                self.vault.forget(self.tokens.user)
                raise NeedsSignIn(exc.message) from None
            raise

    async def sign_out(self, timeout: float = SIGN_OUT_TIMEOUT_S) -> bool:
        """Sign out: end the session on the server, then forget it here (what is kept on disk
        stays). Forgetting never waits on the network for long: with the server unreachable the
        session is forgotten anyway (and ends there by itself). Whether the server heard it."""
        refresh = (self.tokens.refresh if self.tokens else "") or (self.vault.load(self.me) if self.me else "")
        ended = False
        if refresh:
            try:
                async with asyncio.timeout(timeout):
                    info = self.info or await self.discover()
                    if info.auth == "cognito" and info.cognito:
                        config = cognito_auth.CognitoConfig.from_info(info.cognito, endpoint_url=self.cognito_endpoint)
                        await cognito_auth.revoke_async(config, refresh)
                    else:
                        await self.auth.sign_out(refresh)
                ended = True
            except (TimeoutError, SignInError, cognito_auth.CognitoAuthError) as exc:
                log.info("could not end the session on the server: %s", getattr(exc, "message", exc.__class__.__name__))
        self.forget()
        return ended

    def forget(self) -> None:
        """The saved session is forgotten on this device (what is kept on disk stays)."""
        if self.me:
            self.vault.forget(self.me)

    def folder(self, user: str) -> Path:
        """Where the outbox and history of ``user`` on this server live (keyed on the server id)."""
        root = self.data_folder if self.data_folder is not None else data_dir()
        if self._adopt_legacy_folder:
            return adopt_legacy_folder(root, self.server_url, self.server_id, user)
        return account_folder(root, self.server_url, self.server_id, user)

    def _keep(self, tokens: Tokens) -> Tokens:
        self.tokens = tokens
        self.vault.save(tokens.user, tokens.refresh)
        self._notice_vault()
        return tokens

    async def _renew(self, refresh_token: str, user: str) -> Tokens:
        info = self.info or await self.discover()
        if info.auth == "cognito" and info.cognito:
            return await self._cognito(lambda config: cognito_auth.refresh_async(config, refresh_token), user, refresh_token)
        return await self.auth.refresh(refresh_token, user)

    async def _cognito(self, call, user: str, old_refresh: str = "") -> Tokens:
        """Run a Cognito sign-in or refresh; its ID token is what the server verifies."""
        config = cognito_auth.CognitoConfig.from_info(self.info.cognito, endpoint_url=self.cognito_endpoint)
        try:
            result = await call(config)
        except cognito_auth.CognitoAuthError as exc:
            raise SignInError(COGNITO_KINDS.get(exc.reason, "unreachable"), exc.message) from None
        return Tokens(access=result.id_token, refresh=result.refresh_token or old_refresh, user=user)

    def _notice_vault(self) -> None:
        """Say once, not on every start, where the session is kept when no keyring works."""
        if not self.vault.warning or self._vault_noticed:
            return
        self._vault_noticed = True
        marker = self.known_servers.path.with_name("keyring-notice")
        try:
            if marker.read_text(encoding="utf-8") == self.vault.warning:
                return  # told on an earlier start, and nothing changed since
        except OSError:
            pass
        self._say(self.vault.warning)
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(self.vault.warning, encoding="utf-8")
        except OSError:
            pass  # then it is said again next time
