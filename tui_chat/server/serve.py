"""``tui-chat serve``: the self-hosted server on uvicorn, with graceful shutdown."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from tui_chat import protocol as p
from tui_chat.paths import data_dir
from tui_chat.ratelimit import RateLimit
from tui_chat.server.auth.accounts import AccountService, load_or_create_secret
from tui_chat.server.core import now_ms
from tui_chat.server.logs import filter_uvicorn_logs
from tui_chat.server.deadline import DEFAULT_REQUEST_HEAD_TIMEOUT_S, with_head_deadline
from tui_chat.server.local import ChatServerApp

log = logging.getLogger("tui_chat.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class ServeOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db: Path | None = None
    auth: str = "accounts"
    signup: bool = True
    commit_window_ms: float = 0.0
    """How long the SQLite writer waits for more writes to commit with the first."""
    request_timeout_s: float = DEFAULT_REQUEST_HEAD_TIMEOUT_S
    """How long a connection may take to send each request head before it is closed."""
    rate_limit: RateLimit = RateLimit()
    """Each connection's token bucket (PROTOCOL.md section 5's default: 100/s, bursts of 500)."""
    certfile: Path | None = None
    keyfile: Path | None = None
    log_level: str = "info"
    cognito_region: str | None = None
    cognito_user_pool_id: str | None = None
    cognito_client_id: str | None = None
    cognito_group: str | None = None

    @property
    def db_path(self) -> Path:
        return self.db if self.db is not None else data_dir() / "server.db"

    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"


def build_app(options: ServeOptions, *, clock: Callable[[], int] = now_ms) -> ChatServerApp:
    from tui_chat.server.stores.sqlite import SQLiteStore  # the embedded default store

    db_path = options.db_path
    db_path.parent.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(db_path, group_commit_window_ms=options.commit_window_ms)
    secret = load_or_create_secret(db_path.with_name(db_path.name + ".secret"))
    if options.auth == "cognito":
        from tui_chat.server.auth.cognito import CognitoVerifier

        verifier = CognitoVerifier(
            options.cognito_region, options.cognito_user_pool_id, options.cognito_client_id,
            required_group=options.cognito_group,
        )  # fmt: skip
        accounts = AccountService(store, secret, mode="accounts", allow_signup=False, clock=clock)
        return ChatServerApp(store, accounts, verifier=verifier, clock=clock, rate_limit=options.rate_limit)
    accounts = AccountService(store, secret, mode=options.auth, allow_signup=options.signup, clock=clock)
    return ChatServerApp(store, accounts, clock=clock, rate_limit=options.rate_limit)


class ChatServer(uvicorn.Server):
    """uvicorn, except that sockets are closed with 1001 (going away) before it shuts down,
    and the bound address is logged once it listens (``--port 0`` picks a free port)."""

    def __init__(self, config: uvicorn.Config, app: ChatServerApp, on_ready: Callable[[str], None] | None = None):
        super().__init__(config)
        self.chat_app = app
        self.on_ready = on_ready
        self.bound_port: int | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        self.bound_port = self.servers[0].sockets[0].getsockname()[1]
        scheme = "https" if self.config.ssl else "http"
        url = f"{scheme}://{_url_host(self.config.host)}:{self.bound_port}"
        log.info("listening", extra={"url": url, "port": self.bound_port, "ws": url.replace("http", "ws", 1) + "/ws"})
        if self.on_ready is not None:
            self.on_ready(url)

    async def shutdown(self, sockets=None) -> None:
        await self.chat_app.going_away()
        await super().shutdown(sockets)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def make_server(options: ServeOptions, app: ChatServerApp, on_ready: Callable[[str], None] | None = None) -> ChatServer:
    filter_uvicorn_logs()
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        http=with_head_deadline(options.request_timeout_s),  # h11, with a deadline for silent sockets
        ws="websockets-sansio",
        ws_max_size=p.MAX_FRAME_BYTES,  # larger frames are closed with 1009
        # Chat frames are small; compression would double the memory of every idle connection.
        ws_per_message_deflate=False,
        ws_ping_interval=p.PING_INTERVAL_S,
        ws_ping_timeout=p.PING_TIMEOUT_S * 2,
        lifespan="on",
        log_config=None,
        log_level=options.log_level,
        server_header=False,
        access_log=options.log_level == "debug",  # a line per HTTP request is noise for a chat server
        timeout_graceful_shutdown=5,
        ssl_certfile=str(options.certfile) if options.certfile else None,
        ssl_keyfile=str(options.keyfile) if options.keyfile else None,
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
    )
    return ChatServer(config, app, on_ready)
