"""``tui-chat serve``: the self-hosted server on uvicorn, with graceful shutdown."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

import uvicorn

from tui_chat import protocol as p
from tui_chat.paths import private_database
from tui_chat.server.auth.accounts import load_or_create_secret
from tui_chat.server.auth.wiring import sign_in_services
from tui_chat.server.core import now_ms
from tui_chat.server.logs import filter_uvicorn_logs
from tui_chat.server.deadline import with_head_deadline
from tui_chat.server.file_transfer import FileFolder, FolderLinks
from tui_chat.server.housekeeping import Housekeeper
from tui_chat.server.local import ChatServerApp
from tui_chat.server.origins import Origins
from tui_chat.server.settings import Settings

log = logging.getLogger("tui_chat.server")

def build_app(settings: Settings, *, clock: Callable[[], int] = now_ms) -> ChatServerApp:
    """The self-hosted server over SQLite (the embedded default store)."""
    from tui_chat.server.stores.sqlite import SQLiteStore

    db_path = private_database(settings.db_path)  # 0600, and its folder 0700 when we create it
    store = SQLiteStore(db_path, group_commit_window_ms=settings.commit_window_ms)
    secret = load_or_create_secret(db_path.with_name(db_path.name + ".secret"))
    accounts, verifier = sign_in_services(settings, store, secret, clock)
    links = FolderLinks(secret, FileFolder(settings.files_path), ttl_s=settings.file_url_ttl_s)
    housekeeper = Housekeeper(store, clock, retention_days=settings.retention_days,
                              forget_after_minutes=settings.forget_after_minutes if settings.auth == "open" else None)  # fmt: skip
    return ChatServerApp(store, accounts, verifier=None if verifier is accounts else verifier, clock=clock,
                         rate_limit=settings.rate_limit, auth_per_minute=settings.auth_per_minute,
                         origins=Origins(settings.public_hosts, settings.allowed_origins), housekeeper=housekeeper,
                         files=links, max_file_bytes=settings.max_file_bytes)  # fmt: skip


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything else is created (a port in use is said at
    once, and no database is made for a server that cannot listen). Raises ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)  # SO_REUSEADDR, as uvicorn does
    sock.set_inheritable(True)
    return sock


class ChatServer(uvicorn.Server):
    """uvicorn, except that sockets are closed with 1001 (going away) before it shuts down,
    and the bound address is logged once it listens (``--port 0`` picks a free port)."""

    def __init__(self, config: uvicorn.Config, app: ChatServerApp, on_ready: Callable[[str], None] | None = None):
        super().__init__(config)
        self.chat_app = app
        self.on_ready = on_ready
        self.describe: dict[str, object] = {}
        """What the ``listening`` line also says: how people sign in and where the data is."""
        self.bound_port: int | None = None
        self.before_shutdown: list[Callable[[], Awaitable[None]]] = []
        """What ends before the sockets are closed (``serve --web``: the browser sessions, clients of this server)."""

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        self.bound_port = self.servers[0].sockets[0].getsockname()[1]
        scheme = "https" if self.config.ssl else "http"
        url = f"{scheme}://{_url_host(self.config.host)}:{self.bound_port}"
        log.info("listening", extra={"url": url, "port": self.bound_port, "ws": url.replace("http", "ws", 1) + "/ws", **self.describe})
        if self.on_ready is not None:
            self.on_ready(url)

    async def shutdown(self, sockets=None) -> None:
        for stop in self.before_shutdown:
            await stop()
        await self.chat_app.going_away()
        await super().shutdown(sockets)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def make_server(options: Settings, app: ChatServerApp, on_ready: Callable[[str], None] | None = None) -> ChatServer:
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
    server = ChatServer(config, app, on_ready)
    db = getattr(getattr(app, "store", None), "path", None)  # SQLite; the emulator's store is DynamoDB
    server.describe = {"auth": options.auth, **({"signup": options.signup} if options.auth == "accounts" else {}),
                       "store": str(db) if db else "DynamoDB"}  # fmt: skip
    return server
