"""Signing in: discovery (``GET /info``), accounts and open mode over HTTP, tokens in the keyring.

The refresh token is kept with ``keyring`` under the service ``tui-chat:<server URL>``. Where no
keyring backend works (headless Linux raises ``NoKeyringError``), the vault says so once and
keeps the token in memory only; it writes a token to a file (0600) only when the user asked
for that in the config (``store_tokens_in_file = true``).
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tui_chat.client.identity import valid_server_id
from tui_chat.client.tls import client_ssl_context
from tui_chat.paths import data_dir, write_private
from tui_chat.protocol import is_valid_device_id

if TYPE_CHECKING:
    import httpx

# httpx and keyring are imported where first used, not here: the app shows the cached chat
# before it needs either, and importing them costs about 130 ms of a cold start.

HTTP_TIMEOUT_S = 10.0


class SignInError(Exception):
    """Why signing in failed, for people; ``kind`` lets a screen react (e.g. offer sign-up)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # credentials, unreachable, taken, throttled, disabled, invalid, expired
        self.message = message


@dataclass(frozen=True)
class ServerInfo:
    auth: str
    signup: bool
    version: str = ""
    cognito: dict | None = None
    server_id: str = ""
    """The server's identity (PROTOCOL.md 7.5); ``""`` from a server too old to send one."""


@dataclass(frozen=True)
class Tokens:
    access: str
    refresh: str
    user: str


def http_base(server_url: str) -> str:
    url = server_url.rstrip("/")
    if url.startswith("ws://"):
        url = "http://" + url[5:]
    elif url.startswith("wss://"):
        url = "https://" + url[6:]
    return url.removesuffix("/ws")


def ws_url(server_url: str, *, cloud: bool = False) -> str:
    """The WebSocket address for ``server_url``.

    A self-hosted server takes WebSockets at ``/ws``, whatever form its address was written in.
    API Gateway takes them only at its stage URL (``wss://…/prod``) or at a custom domain's root:
    a ``ws(s)://`` address with another path, or any ``ws(s)://`` address of a cloud (Cognito)
    configuration, is used as written.
    """
    written = server_url.rstrip("/")
    if written.startswith(("ws://", "wss://")):
        path = urlsplit(written).path
        if cloud or path not in ("", "/ws"):
            return written
    base = http_base(server_url)
    return ("wss://" + base[8:] if base.startswith("https://") else "ws://" + base[7:]) + "/ws"


def device_id(folder: Path | None = None) -> str:
    """This install's stable device id, created once and kept in the data folder."""
    path = (folder or data_dir()) / "device-id"
    try:
        existing = path.read_text(encoding="ascii").strip()
        if is_valid_device_id(existing):
            return existing
    except (OSError, UnicodeDecodeError):
        pass
    new = "dev-" + secrets.token_hex(8)
    write_private(path, new + "\n")
    return new


class AuthClient:
    """The HTTP side of signing in to a self-hosted server."""

    def __init__(self, server_url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base = http_base(server_url)
        self.transport = transport

    def _http(self) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(base_url=self.base, timeout=HTTP_TIMEOUT_S, transport=self.transport, verify=client_ssl_context())

    async def _post(self, path: str, body: dict) -> httpx.Response:
        import httpx

        try:
            async with self._http() as http:
                return await http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> SignInError:
        """Why the server could not be reached: an untrusted certificate is not "is it running?"."""
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return SignInError("tls", f"{self.base} presented a certificate this machine does not trust ({cause.verify_message})")
            if isinstance(cause, ssl.SSLError):
                return SignInError("tls", f"the TLS handshake with {self.base} failed ({cause.reason or cause})")
            cause = cause.__cause__ or cause.__context__
        return SignInError("unreachable", f"cannot reach {self.base}: {exc.__class__.__name__}")

    async def info(self) -> ServerInfo:
        import httpx

        try:
            async with self._http() as http:
                response = await http.get("/info")
            data = response.json()
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        except ValueError:
            raise SignInError("invalid", f"{self.base} is not a tui-chat server") from None
        if not isinstance(data, dict) or data.get("auth") not in ("accounts", "open", "cognito"):
            raise SignInError("invalid", f"{self.base} is not a tui-chat server")
        return ServerInfo(
            auth=data["auth"], signup=bool(data.get("signup", data["auth"] == "accounts")),
            version=str(data.get("version", "")), cognito=data.get("cognito") if isinstance(data.get("cognito"), dict) else None,
            server_id=valid_server_id(data.get("serverId")),
        )  # fmt: skip

    async def sign_in(self, username: str, password: str, *, create: bool = False) -> Tokens:
        response = await self._post("/auth/signup" if create else "/auth/login", {"username": username, "password": password})
        return self._tokens(response)

    async def sign_in_open(self, nickname: str, device: str) -> Tokens:
        return self._tokens(await self._post("/auth/login", {"username": nickname, "device": device}))

    async def refresh(self, refresh_token: str, user: str) -> Tokens:
        response = await self._post("/auth/refresh", {"refreshToken": refresh_token})
        if response.status_code == 401:
            raise SignInError("expired", "your session has ended; sign in again")
        data = self._json(response)
        return Tokens(access=data["token"], refresh=data["refreshToken"], user=user)

    async def sign_out(self, refresh_token: str) -> None:
        """End the session on the server (its refresh token and access tokens stop working)."""
        response = await self._post("/auth/logout", {"refreshToken": refresh_token})
        if response.status_code >= 500:
            raise SignInError("unreachable", f"the server could not sign out (HTTP {response.status_code})")

    def _tokens(self, response: httpx.Response) -> Tokens:
        data = self._json(response)
        return Tokens(access=data["token"], refresh=data["refreshToken"], user=data["user"])

    @staticmethod
    def _json(response: httpx.Response) -> dict:
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code in (200, 201) and isinstance(data.get("token"), str):
            return data
        message = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), str) else f"HTTP {response.status_code}"
        kind = {401: "credentials", 409: "taken", 429: "throttled", 403: "disabled", 400: "invalid"}.get(response.status_code, "unreachable")
        raise SignInError(kind, message)


def token_file_path(server_url: str) -> Path:
    """Where tokens go when the config asks for a file (``store_tokens_in_file``): one per server."""
    digest = hashlib.sha256(http_base(server_url).encode()).hexdigest()[:12]
    return data_dir() / "tokens" / f"refresh-{digest}"


class TokenVault:
    """Refresh tokens in the OS keyring, or in memory where there is none."""

    def __init__(self, server_url: str, *, file_fallback: Path | None = None) -> None:
        self.service = f"tui-chat:{http_base(server_url)}"
        self.file_fallback = file_fallback
        self.server_id = ""
        """Tokens are kept per (server id, user): another server at this address never gets them."""
        self.memory: dict[str, str] = {}
        self.warning: str | None = None
        """Set once when no keyring works; the app shows it."""
        self.kept_in = ""
        """Where the last token saved outlives this process: "keyring", "file", or "" (memory)."""

    def _key(self, user: str) -> str:
        return f"{user}#{self.server_id}" if self.server_id else user

    def _no_keyring(self, exc: Exception) -> None:
        if self.warning is None:
            where = "a 0600 file, as configured" if self.file_fallback else "memory only: you will sign in again next time"
            self.warning = f"No system keyring is available ({exc.__class__.__name__}); the session is kept in {where}."

    def save(self, user: str, refresh_token: str) -> None:
        keyring = _keyring()
        key = self._key(user)
        try:
            _usable_keyring()
            keyring.set_password(self.service, key, refresh_token)
            if key != user:
                _forget_in_keyring(self.service, user)  # kept by an earlier release under the name alone
            self.kept_in = "keyring"
            return
        except keyring.errors.KeyringError as exc:
            self._no_keyring(exc)
        self.memory[key] = refresh_token
        self.kept_in = "file" if self.file_fallback is not None else ""
        if self.file_fallback is not None:
            write_private(self.file_fallback, f"{key}\n{refresh_token}\n")

    def load(self, user: str) -> str | None:
        """The saved token; one an earlier release kept under the name alone is taken too (the
        server it was for refuses it if this is another one)."""
        keys = [self._key(user), user] if self.server_id else [user]
        keyring = _keyring()
        try:
            _usable_keyring()
            for key in keys:
                found = keyring.get_password(self.service, key)
                if found:
                    return found
        except keyring.errors.KeyringError as exc:
            self._no_keyring(exc)
        for key in keys:
            if key in self.memory:
                return self.memory[key]
        if self.file_fallback is not None and self.file_fallback.exists():
            lines = self.file_fallback.read_text().splitlines()
            if len(lines) >= 2 and lines[0] in keys:
                return lines[1]
        return None

    def may_hold(self, kept_in: str) -> bool:
        """Whether a token kept in ``kept_in`` by an earlier start can be read now, judged
        without importing the keyring (a file must still be there, and allowed)."""
        if kept_in == "file":
            return self.file_fallback is not None and self.file_fallback.exists()
        return kept_in == "keyring"

    def forget(self, user: str) -> None:
        for key in {self._key(user), user}:
            self.memory.pop(key, None)
            _forget_in_keyring(self.service, key)
        if self.file_fallback is not None:
            self.file_fallback.unlink(missing_ok=True)


def _keyring():
    import keyring
    import keyring.errors

    return keyring


def _usable_keyring() -> None:
    """Raise ``NoKeyringError`` for the null backend (``PYTHON_KEYRING_BACKEND`` set to it to
    turn keyrings off): it accepts every token and keeps none, so the fallback must be used."""
    from keyring.backends import null

    keyring = _keyring()
    if isinstance(keyring.get_keyring(), null.Keyring):
        raise keyring.errors.NoKeyringError("the null keyring keeps nothing")


def _forget_in_keyring(service: str, key: str) -> None:
    keyring = _keyring()
    try:
        keyring.delete_password(service, key)
    except keyring.errors.KeyringError:
        pass  # nothing there, or no keyring
