"""The self-hosted runtime: one ASGI app (served by uvicorn) for ``/ws`` and the HTTP endpoints.

Each WebSocket gets a :class:`~tui_chat.server.asgi.LiveConnection` (a bounded outgoing buffer
with its own writer task, so fan-out never waits on a slow reader) and the shared frame loop.
"""

from __future__ import annotations

import asyncio
import math
import logging
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from tui_chat import __version__
from tui_chat import protocol as p
from tui_chat.server.asgi import (
    LiveConnection,
    Receive,
    Scope,
    Send,
    client_address,
    close_all,
    declared_too_large,
    deny,
    header,
    json_response,
    read_json_body,
    run_lifespan,
    serve_frames,
)
from tui_chat.server.auth.accounts import AccountService
from tui_chat.server.auth.admission import check_devices, check_session, check_user
from tui_chat.server.auth.identity import AuthError, TokenVerifier
from tui_chat.server.core import Caller, ChatCore, Gateway, now_ms
from tui_chat.server.file_transfer import FileTransfer, FolderLinks
from tui_chat.server.housekeeping import Housekeeper
from tui_chat.server.origins import Origins
from tui_chat.ratelimit import BucketsByKey, RateLimit
from tui_chat.server.store import Store, StoreUnavailable

log = logging.getLogger("tui_chat.server")

MAX_HTTP_BODY_BYTES = 64 * 1024


class LocalGateway(Gateway):
    def __init__(self) -> None:
        self.connections: dict[str, LiveConnection] = {}

    async def send(self, conn_id: str, text: str) -> bool:
        conn = self.connections.get(conn_id)
        return conn is not None and conn.push(text)

    async def close(self, conn_id: str, code: int, reason: str = "") -> None:
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.close(code, reason)


class ChatServerApp:
    """The ASGI application."""

    def __init__(
        self,
        store: Store,
        accounts: AccountService,
        *,
        verifier: TokenVerifier | None = None,
        clock: Callable[[], int] = now_ms,
        rate_limit: RateLimit = RateLimit(),
        auth_per_minute: float = 30.0,
        origins: Origins | None = None,
        housekeeper: Housekeeper | None = None,
        files: FolderLinks | None = None,
        max_file_bytes: int = p.MAX_FILE_BYTES,
    ) -> None:
        """``verifier`` (Cognito sign-in) checks tokens instead of ``accounts``, whose HTTP
        endpoints are then off: users sign in with Cognito, not with this server."""
        self.store = store
        self.housekeeper = housekeeper
        self.rate_limit = rate_limit
        self.origins = origins or Origins()
        self.auth_limits = BucketsByKey(RateLimit(auth_per_minute / 60, max(1, int(auth_per_minute))))
        """Per client address on ``/auth/*``: each request there may cost a password hash."""
        self.accounts = accounts
        self.verifier = verifier
        self.gateway = LocalGateway()
        self.core = ChatCore(store, self.gateway, clock=clock, coalesce_presence=True, files=files, max_file_bytes=max_file_bytes)
        self.files = FileTransfer(store, files, clock) if files is not None else None
        """Attachments' bytes over HTTP (``/files/{fileId}``); None: the server takes no files."""
        if housekeeper is not None:
            housekeeper.files = self.core.files
        self._routes: dict[tuple[str, str], Callable[[dict, str], Awaitable[tuple[int, dict]]]] = {
            ("POST", "/auth/signup"): self._signup,
            ("POST", "/auth/login"): self._login,
            ("POST", "/auth/refresh"): self._refresh,
            ("POST", "/auth/logout"): self._logout,
        }
        if verifier is not None:
            self._routes = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan ---------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await run_lifespan(receive, send, startup=self._start, shutdown=self._stop)

    async def _start(self) -> None:
        if self.files is not None:
            await asyncio.to_thread(self.files.folder.open)
        await self.store.open()
        await self.store.clear_connections()  # sockets from a previous run are gone
        if self.verifier is not None:
            await self._load_verifier_keys()
        if self.housekeeper is not None:
            self.housekeeper.start()

    async def _stop(self) -> None:
        if self.housekeeper is not None:
            await self.housekeeper.stop()
        await self.going_away()
        await self.core.close()
        await self.store.close()

    async def going_away(self, timeout: float = 2.0) -> None:
        """Close every socket with 1001 and give the writers a moment to flush."""
        await close_all(list(self.gateway.connections.values()), timeout)

    # -- HTTP -------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if not self.origins.host_allowed(header(scope, "host")):
            await json_response(send, 421, {"error": "this server does not answer to that name (see serve --public-host)"})
            return
        if path == "/healthz" and method in ("GET", "HEAD"):
            ok = await self._healthy()
            await json_response(send, 200 if ok else 503, {"status": "ok" if ok else "unavailable"})
            return
        if path == "/info" and method in ("GET", "HEAD"):
            await json_response(send, 200, self.info())
            return
        if self.files is not None and self.files.handles(path):
            try:
                await self.files(scope, receive, send)
            except StoreUnavailable:
                await json_response(send, 503, {"error": "the server cannot reach its store; try again"})
            return
        handler = self._routes.get((method, path))
        if handler is None:
            known = any(route_path == path for _, route_path in self._routes) or path in ("/healthz", "/info")
            status = 405 if known else 404
            await json_response(send, status, {"error": "method not allowed" if known else "not found"})
            return
        if declared_too_large(scope, MAX_HTTP_BODY_BYTES):
            await json_response(send, 413, {"error": f"the body is larger than {MAX_HTTP_BODY_BYTES // 1024} KiB"})
            return
        if header(scope, "content-type").split(";", 1)[0].strip().lower() != "application/json":
            await json_response(send, 415, {"error": "send the body as application/json"})
            return
        if not self.origins.origin_allowed(header(scope, "origin")):
            await json_response(send, 403, {"error": "requests from this web origin are not allowed (see serve --allow-origin)"})
            return
        wait_ms = self.auth_limits.take(client_address(scope))
        if wait_ms:
            retry_s = math.ceil(wait_ms / 1000)
            await json_response(send, 429, {"error": f"too many sign-in requests from your address; try again in {retry_s} s"}, retry_after_s=retry_s)
            return
        body, problem = await read_json_body(receive, MAX_HTTP_BODY_BYTES)
        if problem is not None:
            await json_response(send, problem[0], {"error": problem[1]})
            return
        retry_after_s = None
        try:
            status, payload = await handler(body, client_address(scope))
        except AuthError as exc:
            status, payload, retry_after_s = exc.status, {"error": exc.message}, exc.retry_after_s
        except StoreUnavailable:
            status, payload = 503, {"error": "the server cannot reach its store; try again"}
        except Exception:
            log.exception("HTTP handler failed", extra={"path": path})
            status, payload = 500, {"error": "internal error"}
        await json_response(send, status, payload, retry_after_s=retry_after_s)

    async def _load_verifier_keys(self) -> None:
        try:  # fetched now so the first sign-in does not wait; a failure is retried on first use
            await asyncio.to_thread(self.verifier.load_keys)
        except AuthError as exc:
            log.warning("cannot load the token keys yet", extra={"reason": exc.message})

    def info(self) -> dict:
        if self.verifier is not None:
            return {
                "auth": self.verifier.mode, "protocol": p.PROTOCOL_VERSION, "version": __version__,
                "signup": False, self.verifier.mode: self.verifier.info(), "serverId": self.store.server_id,
            }  # fmt: skip
        return {
            "auth": self.accounts.mode, "protocol": p.PROTOCOL_VERSION, "version": __version__,
            "signup": self.accounts.allow_signup, "serverId": self.store.server_id,
        }  # fmt: skip

    async def _healthy(self) -> bool:
        try:
            return await asyncio.wait_for(self.store.healthy(), timeout=2)
        except Exception:
            return False

    async def _signup(self, body: dict, address: str) -> tuple[int, dict]:
        return 201, await self.accounts.signup(body)

    async def _login(self, body: dict, address: str) -> tuple[int, dict]:
        return 200, await self.accounts.login(body, address)

    async def _refresh(self, body: dict, address: str) -> tuple[int, dict]:
        return 200, await self.accounts.refresh(body)

    async def _logout(self, body: dict, address: str) -> tuple[int, dict]:
        await self.accounts.logout(body)
        return 200, {"status": "signed out"}

    # -- WebSocket --------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] != "/ws":
            await deny(send, 404, "not found")
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if not self.origins.host_allowed(header(scope, "host")):
            await deny(send, 403, "this server does not answer to that name (see serve --public-host)")
            return
        if not self.origins.origin_allowed(header(scope, "origin")):
            await deny(send, 403, "connections from this web origin are not allowed (see serve --allow-origin)")
            return
        try:
            caller = await self._authenticate(scope)
        except AuthError as exc:
            await deny(send, exc.status, exc.message)
            return
        except StoreUnavailable:
            await deny(send, 503, "the server cannot reach its store")
            return
        await send({"type": "websocket.accept"})
        conn = LiveConnection(caller, send, self.rate_limit.bucket())
        self.gateway.connections[caller.conn_id] = conn
        conn.start()
        log.info("connected", extra={"user": caller.username, "device": caller.device, "conn": caller.conn_id})
        try:
            await self.core.connect(caller.conn_id, caller.username, caller.device, caller.attempt)
            await self._serve_frames(conn, receive)
        finally:
            self.gateway.connections.pop(caller.conn_id, None)
            await conn.finish()
            await self.core.disconnect(caller.conn_id)
            log.info("disconnected", extra={"user": caller.username, "conn": caller.conn_id})

    async def _authenticate(self, scope: Scope) -> Caller:
        """Handshake checks in PROTOCOL.md order: device (400), token (401), permission (403),
        nickname (409), then the device cap (429)."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        devices, tokens = query.get("device", []), query.get("token", [])
        if len(devices) != 1 or not p.is_valid_device_id(devices[0]):
            raise AuthError(400, "'device' must be 8-64 characters of A-Z, a-z, 0-9, '_', '-'")
        device = devices[0]
        attempts = query.get("attempt", [])
        if len(attempts) > 1 or (attempts and not p.is_valid_attempt_id(attempts[0])):
            raise AuthError(400, "'attempt' must be 8-64 characters of A-Z, a-z, 0-9, '_', '-'")
        bearer = p.bearer_token(header(scope, "authorization"))
        if bearer is not None:
            tokens = [bearer]  # PROTOCOL.md 7.6: the header wins over the query parameter
        if len(tokens) != 1 or not tokens[0]:
            raise AuthError(401, "a token is required")
        if self.verifier is not None:  # may fetch the signing keys: not on the event loop
            identity = await asyncio.to_thread(self.verifier.verify_token, tokens[0])
            await self.store.ensure_user(identity.username, self.core.clock())  # first sign-in
        else:
            identity = self.accounts.verify_token(tokens[0])
        if identity.device is not None and identity.device != device:
            raise AuthError(401, "this token was issued for another device")
        await check_session(self.store, identity, self.core.clock())
        await check_user(self.store, identity)
        await check_devices(self.store, identity.username, device, open_mode=self.accounts.mode == "open")
        return Caller(conn_id=uuid.uuid4().hex, username=identity.username, device=device, attempt=attempts[0] if attempts else None,
                      base_url=f"{'https' if scope.get('scheme') == 'wss' else 'http'}://{header(scope, 'host')}")  # fmt: skip

    async def _serve_frames(self, conn: LiveConnection, receive: Receive) -> None:
        caller = conn.caller
        await serve_frames(receive, conn, lambda text: self.core.handle_frame(caller, text))
