"""The self-hosted server inside the client's own event loop, for ``tui-chat`` with no server
(started by ``tui_chat.launch``; the app only sees it as a ``BuiltInServer``).

``tui-chat`` with no server configured and nothing listening on the default address runs
``tui-chat serve`` in-process (SQLite in the user data folder), so one command is enough to
try it, and others on the machine can connect to it while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

from tui_chat.paths import data_dir, private_folder
from tui_chat.server.settings import DEFAULT_HOST, DEFAULT_PORT

START_TIMEOUT_S = 15.0


def default_server_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"http://{host}:{port}"


def something_listens(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, timeout: float = 0.3) -> bool:
    """True when a TCP connect to ``host:port`` succeeds (then we connect to it, whatever it is)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class EmbeddedServer:
    """``tui-chat serve`` as an asyncio task: ``await start()`` in the App's loop, ``await stop()``."""

    def __init__(self, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, db: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.db = db if db is not None else data_dir() / "server.db"
        self.url = default_server_url(host, port)
        self._server = None
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> str:
        """Start listening and return the server's URL; raises ``RuntimeError`` with a reason."""
        from tui_chat.server.serve import build_app, make_server  # only when needed
        from tui_chat.server.settings import Settings

        _log_to_file(self.db.with_name("server.log"))
        options = Settings(host=self.host, port=self.port, db=self.db, log_level="warning")
        app = await asyncio.to_thread(build_app, options)
        ready = asyncio.Event()

        def on_ready(url: str) -> None:
            self.url = url
            ready.set()

        server = make_server(options, app, on_ready)
        # Textual owns the terminal and its keys; uvicorn must not take over SIGINT/SIGTERM.
        server.capture_signals = contextlib.nullcontext
        self._server = server
        self._task = asyncio.create_task(server.serve(), name="embedded-server")
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({waiter, self._task}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            await self.stop()
            raise RuntimeError(f"the built-in server could not listen on {self.host}:{self.port}")
        return self.url

    def connections(self) -> int:
        """Open WebSockets on this server, this app's own included."""
        return len(self._server.chat_app.gateway.connections) if self.running and self._server is not None else 0

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        self._task = None


def _log_to_file(path: Path) -> None:
    """The server's log goes to a file: the terminal belongs to the UI."""
    private_folder(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # 0600 before the handler opens it
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for name in ("tui_chat.server", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
