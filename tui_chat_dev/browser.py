"""A browser tab on ``tui-chat web``, for tests and by-hand checks: Debian's Chromium driven by
Playwright (no browser download), keys typed into the page's terminal, and the screen read back.

xterm.js draws on a canvas, so the screen is read the way the page gets it: every frame the app
sends over the page's WebSocket is fed into a terminal emulator (pyte) of the page's size.
Waiting for text wakes on each frame; nothing here sleeps in steps of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from urllib.parse import parse_qs, urlsplit

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    """Debian's Chromium (``TUI_CHAT_CHROMIUM`` overrides), or None."""
    override = os.environ.get("TUI_CHAT_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


async def launch(playwright, executable: str):
    """Headless Chromium; ``--no-sandbox`` because tests run as root in CI. Its popup blocker is
    kept on (Playwright turns it off), as in a person's browser: a download opens a new window."""
    return await playwright.chromium.launch(executable_path=executable, headless=True,
                                            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
                                            ignore_default_args=["--disable-popup-blocking"])  # fmt: skip


class TerminalTab:
    """One page of ``tui-chat web`` and what its terminal shows."""

    def __init__(self, page) -> None:
        import pyte

        self.page = page
        self.screen = pyte.Screen(80, 24)
        self.stream = pyte.ByteStream(self.screen)
        self.frames = 0
        self.messages: list[str] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        page.on("websocket", self._websocket)

    @classmethod
    async def open(cls, context, url: str, timeout: float = 30.0) -> "TerminalTab":
        """A new tab on ``url``, once its app has drawn its first screen."""
        tab = cls(await context.new_page())
        await tab.page.goto(url)
        await tab.page.wait_for_function("document.body.classList.contains('-first-byte')", timeout=timeout * 1000)
        return tab

    def _websocket(self, ws) -> None:
        query = parse_qs(urlsplit(ws.url).query)
        self._resize(query.get("width", ["80"])[0], query.get("height", ["24"])[0])
        ws.on("framereceived", self._received)
        ws.on("framesent", self._sent)
        ws.on("close", lambda _ws: (self.closed.set(), self._changed.set()))

    def _resize(self, width, height) -> None:
        self.screen.resize(int(height), int(width))

    def _sent(self, payload) -> None:
        if isinstance(payload, str) and payload.startswith('["resize"'):
            size = json.loads(payload)[1]
            self._resize(size["width"], size["height"])

    def _received(self, payload) -> None:
        if isinstance(payload, str):
            self.messages.append(payload)  # textual-serve's own: pong, open_url, deliver_file_start
        elif isinstance(payload, (bytes, bytearray)):
            self.stream.feed(bytes(payload))
            self.frames += 1
            self._changed.set()

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    async def wait_for_text(self, *texts: str, timeout: float = 20.0) -> str:
        """The screen, once it shows every one of ``texts``."""
        try:
            async with asyncio.timeout(timeout):
                while not all(t in (screen := self.text()) for t in texts):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"the page never showed {texts!r}; it shows:\n{self.text()}") from None
        return screen

    async def focus(self) -> None:
        """Keys to the terminal (its hidden text area), without a click the app would see."""
        await self.page.focus(".xterm-helper-textarea")

    async def type(self, text: str) -> None:
        await self.page.keyboard.type(text)

    async def press(self, key: str) -> None:
        await self.page.keyboard.press(key)


class SocketTerminal:
    """A session of ``tui-chat web`` without a browser: its WebSocket opened directly (as the
    page would), keys sent as the page sends them, the screen read with pyte."""

    def __init__(self, ws, width: int, height: int) -> None:
        import pyte

        self.ws = ws
        self.screen = pyte.Screen(width, height)
        self.stream = pyte.ByteStream(self.screen)
        self.close_code: int | None = None

    @classmethod
    async def open(cls, page_url: str, *, width: int = 100, height: int = 30, origin: str | None = None) -> "SocketTerminal":
        from websockets.asyncio.client import connect

        ws_url = page_url.replace("http", "ws", 1).rstrip("/") + f"/ws?width={width}&height={height}"
        ws = await connect(ws_url, origin=origin, max_size=None)
        return cls(ws, width, height)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    async def wait_for_text(self, *texts: str, timeout: float = 20.0) -> str:
        """The screen once it shows every one of ``texts`` (or the session closed: then raises)."""
        from websockets.exceptions import ConnectionClosed

        try:
            async with asyncio.timeout(timeout):
                while not all(t in self.text() for t in texts):
                    frame = await self.ws.recv()
                    if isinstance(frame, bytes):
                        self.stream.feed(frame)
        except TimeoutError:
            raise TimeoutError(f"the session never showed {texts!r}; it shows:\n{self.text()}") from None
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else None
            if not all(t in self.text() for t in texts):
                raise
        return self.text()

    async def closed(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes the session; its close code."""
        from websockets.exceptions import ConnectionClosed

        try:
            async with asyncio.timeout(timeout):
                async for frame in self.ws:
                    if isinstance(frame, bytes):
                        self.stream.feed(frame)
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        return self.close_code

    async def type(self, text: str) -> None:
        await self.ws.send(json.dumps(["stdin", text]))

    async def close(self) -> None:
        await self.ws.close()
