"""One browser session's app process, over textual-serve's bridge (``AppService``).

textual-serve starts the app with a shell command in the server's own environment and stops it
by asking it to quit and waiting for as long as that takes. Here the app is started without a
shell, in the session's environment and folder (``isolation``), in a process group of its own,
and stopping is bounded: asked to quit, then SIGTERM, then SIGKILL, to the whole group, so a
closed tab never leaves a process behind. The app's stderr is never copied anywhere (a crash
report of a signed-in app can hold what the visitor typed); only its exit status is logged.

This reaches into ``AppService`` (``_build_environment``, ``_open_app_process``, ``run``,
``_process``, ``_stdin``, ``_task``): pyproject.toml bounds textual-serve below 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

log = logging.getLogger("tui_chat.web")

QUIT_GRACE_S = 3.0
"""How long an app asked to quit may take before it is sent SIGTERM (and as long again before SIGKILL)."""

PRELUDE = b"__GANGLION__\n"
"""What Textual's web driver writes first: the app is up."""


class SessionProcess(AppService):
    """An app process for one browser session (see the module's docstring)."""

    def __init__(self, argv: list[str], *, folder: Path, environment: Callable[[Mapping[str, str]], dict[str, str]],
                 write_bytes: Callable[[bytes], Awaitable[None]], write_str: Callable[[str], Awaitable[None]],
                 close: Callable[[], Awaitable[None]], download_manager: DownloadManager) -> None:  # fmt: skip
        super().__init__(" ".join(argv), write_bytes=write_bytes, write_str=write_str, close=close,
                         download_manager=download_manager)  # fmt: skip
        self.argv = argv
        self.folder = folder
        self._environment = environment
        self.started_at = time.monotonic()
        self.ready = asyncio.Event()
        """Set once the app has said it is up (its first output)."""
        self._stop_lock = asyncio.Lock()
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        return self._environment(super()._build_environment(width, height))

    async def _open_app_process(self, width: int = 80, height: int = 24):
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env=self._build_environment(width, height), cwd=self.folder, start_new_session=True,
        )  # fmt: skip
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def run(self) -> None:
        """Relay the app's output to the browser until it ends (textual-serve's ``run``, without
        copying the app's stderr to our stdout)."""
        process = self._process
        assert process is not None and process.stdout is not None
        stdout = process.stdout
        try:
            for _ in range(10):  # Textual may print a few lines before its prelude
                line = await stdout.readline()
                if not line or line == PRELUDE:
                    break
            self.ready.set()
            while True:
                kind = await stdout.readexactly(1)
                size = int.from_bytes(await stdout.readexactly(4), "big")
                payload = await stdout.readexactly(size)
                if kind == b"D":
                    await self.on_data(payload)
                elif kind == b"M":
                    await self.on_meta(payload)
                elif kind == b"P":
                    await self.on_packed(payload)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the app ended, or the browser went away
        except Exception:  # a bad packet from the app, or the browser's socket failing mid-write
            log.warning("session output relay failed", exc_info=True)
        finally:
            self.ready.set()
            if not self._stopping:  # the app ended by itself (quit, or crashed): the tab is told
                with contextlib.suppress(Exception):  # unless the browser is gone already
                    await self.remote_close()

    async def stop(self) -> None:
        """Ask the app to quit; SIGTERM after ``QUIT_GRACE_S``, SIGKILL as long after that;
        then make sure nothing of its process group is left. Safe to call more than once."""
        self._stopping = True
        async with self._stop_lock:
            process = self._process
            if process is None:
                return
            await self._download_manager.cancel_app_downloads(app_service_id=self.app_service_id)
            if process.returncode is None:
                await self.send_meta({"type": "quit"})
                if not await _exited(process, QUIT_GRACE_S):
                    _signal_group(process.pid, signal.SIGTERM)
                    if not await _exited(process, QUIT_GRACE_S):
                        _signal_group(process.pid, signal.SIGKILL)
                        await process.wait()
            _signal_group(process.pid, signal.SIGKILL)  # anything the app itself started
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
                self._task = None


async def _exited(process: asyncio.subprocess.Process, timeout: float) -> bool:
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        return False
    return True


def _signal_group(pid: int, sig: int) -> None:
    if sys.platform == "win32":
        return
    try:
        os.killpg(pid, sig)  # the app leads its own group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass
