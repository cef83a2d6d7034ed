"""The web front: an aiohttp server that gives each browser tab its own app process.

- ``GET /`` the terminal page (``page``); when every session is taken, a page that says so (503).
- ``GET /ws`` one session: a private folder and environment (``isolation``), an app process
  (``process``), keys and sizes in, the screen out; closing the tab ends the process and removes
  the folder. Beyond ``max_sessions`` the terminal says the server is busy and closes (1013).
- ``GET /download/{key}`` a file the app hands to the browser (a download from the chat),
  always as an attachment, never shown inline (where a file from a stranger would run as a page
  of this origin).
- ``GET /static/…`` textual-serve's terminal (xterm.js) and its font.

The page and its WebSocket answer only to names this machine goes by (``Host``, against DNS
rebinding, as the chat server does), and the WebSocket only to the page's own origin or one
allowed with ``--allow-origin``: another site cannot start sessions from its visitors' browsers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import sys
import time
from pathlib import Path
from urllib.parse import quote

from aiohttp import WSMsgType, web
from textual_serve.download_manager import DownloadManager

import tui_chat
from tui_chat.server.origins import Origins, host_name
from tui_chat.web import isolation
from tui_chat.web.page import busy_page, busy_terminal_text, terminal_page
from tui_chat.web.process import SessionProcess
from tui_chat.web.settings import WebSettings

log = logging.getLogger("tui_chat.web")

STATIC = Path(__import__("textual_serve").__file__).with_name("static")
MAX_INPUT_BYTES = 1 << 20
"""The largest message a browser may send (a paste); larger ones close the session (1009)."""
MAX_TERMINAL = 1000
"""Columns or rows a browser may ask for, at most."""
HEARTBEAT_S = 15.0
"""A tab that stops answering pings (a sleeping laptop, a cut) is taken as closed after about this long."""

SECURITY_HEADERS = {
    "Server": "tui-chat",  # not aiohttp's name and version
    "X-Frame-Options": "DENY",  # no other site may frame the terminal and steer a visitor's keys
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def app_command() -> list[str]:
    """The command that runs one session's app (the very app of the terminal, made for a browser)."""
    return [sys.executable, "-m", "tui_chat.web.browser_app"]


class WebFront:
    def __init__(self, settings: WebSettings, *, title: str = "tui-chat") -> None:
        self.settings = settings
        self.title = title
        self.origins = Origins(settings.public_hosts, settings.allowed_origins)
        self.downloads = DownloadManager()
        self.sessions: dict[str, SessionProcess] = {}
        self.taken = 0
        """Sessions counted against the cap: those running and those starting."""
        self.closing = False
        self.root: Path | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)
        self._ending: set[asyncio.Task] = set()
        """Sessions being ended (they finish even when their handler was cancelled)."""

    # --- lifecycle -------------------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._headers], client_max_size=1 << 16)
        app.add_routes([
            web.get("/", self.index),
            web.get("/ws", self.websocket),
            web.get("/download/{key}", self.download),
            web.static("/static", STATIC, show_index=False, follow_symlinks=False),
        ])  # fmt: skip
        return app

    async def start(self, sock: socket.socket) -> str:
        """Serve on ``sock`` (bound already); the page's URL."""
        self.root = isolation.make_root(self.settings.sessions_parent)
        self._runner = web.AppRunner(self.application(), handle_signals=False, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=self.settings.ssl_context()).start()
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{self.settings.scheme}://{shown}:{port}/"
        log.info("web listening", extra={"url": self.url, "port": port, "server": self.settings.server_url,
                                         "max_sessions": self.settings.max_sessions, "sessions_folder": str(self.root)})  # fmt: skip
        return self.url

    async def stop(self) -> None:
        """End every session (each bounded), then stop listening and remove the sessions' folders."""
        self.closing = True
        await asyncio.gather(*(session.stop() for session in list(self.sessions.values())), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.gather(*self._ending, return_exceptions=True)
        if self.root is not None:
            isolation.remove(self.root)
            self.root = None

    # --- checks ----------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler):
        if not self.origins.host_allowed(request.host):
            # A name this machine does not go by: DNS rebinding, or a misdirected request.
            return web.Response(status=421, text="This server does not answer to that name.\n")
        response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def _origin_allowed(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin", "")
        if not origin:
            return True  # not a browser: it could do anything a browser can without one
        if self.origins.origin_allowed(origin):
            return True
        scheme, _, rest = origin.partition("://")
        own = scheme.lower() == self.settings.scheme and host_name(rest.rstrip("/")) == host_name(request.host)
        return own and _port_of(rest) == _port_of(request.host)

    @property
    def full(self) -> bool:
        return self.taken >= self.settings.max_sessions

    # --- handlers --------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        if self.full or self.closing:
            return web.Response(status=503, text=busy_page(self.title, self.settings.max_sessions), content_type="text/html",
                                headers={"Retry-After": "60", "Cache-Control": "no-store"})  # fmt: skip
        font_size = _int(request.query.get("fontsize"), 16, low=6, high=64)
        return web.Response(text=terminal_page(self.title, font_size), content_type="text/html", headers={"Cache-Control": "no-store"})

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_allowed(request):
            log.warning("session refused: another site's page", extra={"origin": request.headers.get("Origin", "")[:200]})
            return web.Response(status=403, text="Sessions start from this server's own page.\n")
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_INPUT_BYTES)
        if self.full or self.closing:
            await ws.prepare(request)
            await ws.send_bytes(busy_terminal_text(self.settings.max_sessions))
            await ws.close(code=1013, message=b"busy")  # try again later
            log.warning("session refused: every session is taken", extra={"max_sessions": self.settings.max_sessions})
            return ws
        self.taken += 1  # before any await: the cap holds however many arrive at once
        try:
            await ws.prepare(request)
            await self._session(request, ws)
        finally:
            self.taken -= 1
        return ws

    async def _session(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        name = f"s{next(self._ids)}"
        assert self.root is not None
        folder = isolation.make_session_folder(self.root)
        import_root = Path(tui_chat.__file__).resolve().parents[1]
        process = SessionProcess(
            [*app_command(), "--server", self.settings.server_url], folder=folder,
            environment=lambda inherited: isolation.session_environment(inherited, folder, server_url=self.settings.server_url,
                                                                        import_root=import_root),
            write_bytes=ws.send_bytes, write_str=ws.send_str, close=ws.close, download_manager=self.downloads,
        )  # fmt: skip
        width = _int(request.query.get("width"), 80, low=1, high=MAX_TERMINAL)
        height = _int(request.query.get("height"), 24, low=1, high=MAX_TERMINAL)
        began = time.monotonic()
        try:
            await process.start(width, height)
            self.sessions[name] = process
            log.info("session started", extra={"session": name, "pid": process.pid, "peer": request.remote,
                                               "sessions": len(self.sessions)})  # fmt: skip
            await self._relay(ws, process)
        except OSError as exc:
            log.error("session could not start", extra={"session": name, "error": exc.strerror or str(exc)})
        finally:
            ending = asyncio.ensure_future(self._end(name, process, folder, began))
            self._ending.add(ending)
            ending.add_done_callback(self._ending.discard)
            await asyncio.shield(ending)

    async def _end(self, name: str, process: SessionProcess, folder: Path, began: float) -> None:
        await process.stop()
        self.sessions.pop(name, None)
        isolation.remove(folder)
        log.info("session ended", extra={"session": name, "seconds": round(time.monotonic() - began, 1), "exit_status": process.returncode,
                                         "sessions": len(self.sessions)})  # fmt: skip

    async def _relay(self, ws: web.WebSocketResponse, process: SessionProcess) -> None:
        """Keys, sizes and focus from the browser to the app until either side goes."""
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                kind, data = json.loads(message.data)[:2]
            except (ValueError, TypeError):
                continue  # not an envelope: ignored, as textual-serve's own page never sends one
            if kind == "stdin" and isinstance(data, str):
                await process.send_bytes(data.encode("utf-8"))
            elif kind == "resize" and isinstance(data, dict):
                await process.set_terminal_size(_int(data.get("width"), 80, low=1, high=MAX_TERMINAL),
                                                _int(data.get("height"), 24, low=1, high=MAX_TERMINAL))  # fmt: skip
            elif kind == "ping":
                await ws.send_json(["pong", data])
            elif kind == "blur":
                await process.blur()
            elif kind == "focus":
                await process.focus()

    async def download(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        try:
            meta = await self.downloads.get_download_metadata(key)
        except KeyError:
            raise web.HTTPNotFound(text="No such download (each link works once, while its session lasts).\n") from None
        response = web.StreamResponse(headers={
            "Content-Type": "application/octet-stream",  # whatever the sender said it is: never rendered here
            "Content-Disposition": _attachment(meta.file_name),
            "Cache-Control": "no-store",
            **SECURITY_HEADERS,
        })  # fmt: skip
        await response.prepare(request)
        async for chunk in self.downloads.download(key):
            await response.write(chunk)
        await response.write_eof()
        return response


def _attachment(file_name: str) -> str:
    """``Content-Disposition`` for a download: an ASCII fallback and the real name (RFC 6266)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in file_name) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


def _port_of(host: str) -> str:
    """The port in a ``host[:port]``, or "" (the scheme's default)."""
    host = host.strip().lower()
    tail = host.rsplit("]", 1)[-1] if host.startswith("[") else host
    return tail.rsplit(":", 1)[1] if ":" in tail else ""


def _int(value, default: int, *, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return min(max(number, low), high)
