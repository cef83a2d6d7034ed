"""Run the real ``tui-chat web`` in a subprocess on 127.0.0.1, for tests and by-hand checks.

Its JSON log lines are read on a thread; ``wait_for_log`` waits for one without sleeping in
steps of its own (each line read wakes the waiters)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tui_chat_dev.serverproc import CHECKOUT

START_TIMEOUT_S = 20.0


class RunningWeb:
    def __init__(self, server_url: str, *, extra_args: tuple[str, ...] = (), command: tuple[str, ...] = ("web",),
                 env: dict | None = None) -> None:  # fmt: skip
        self.server_url = server_url
        self.extra_args = tuple(extra_args)
        self.command = command
        self.env = env
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_lines: list[dict] = []
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "RunningWeb":
        server = ("--server", self.server_url) if self.command == ("web",) else ()
        cmd = [sys.executable, "-m", "tui_chat", *self.command, "--host", "127.0.0.1", *server,
               "--log-format", "json", *self.extra_args]  # fmt: skip
        if self.command == ("web",) and "--port" not in self.extra_args:
            cmd += ["--port", "0"]
        env = {**os.environ, **(self.env or {})}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        lines = self.wait_for_log_sync("web listening", START_TIMEOUT_S)
        if not lines:
            self.stop()
            raise RuntimeError("tui-chat web did not start:\n" + "\n".join(map(str, self.log_lines[-20:])))
        self.port = int(lines[0]["port"])
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"msg": line.rstrip()}
            with self._changed:
                self.log_lines.append(entry)
                self._changed.notify_all()
        with self._changed:
            self.log_lines.append({"msg": "<exited>"})
            self._changed.notify_all()

    def logged(self, msg: str, **match) -> list[dict]:
        return [line for line in self.log_lines if line.get("msg") == msg and all(line.get(k) == v for k, v in match.items())]

    def wait_for_log_sync(self, msg: str, timeout: float = 10.0, **match) -> list[dict]:
        with self._changed:
            self._changed.wait_for(lambda: self.logged(msg, **match) or self.logged("<exited>"), timeout)
            return self.logged(msg, **match)

    async def wait_for_log(self, msg: str, timeout: float = 10.0, **match) -> dict:
        """The first line saying ``msg`` (with fields ``match``), once it is there."""
        lines = await asyncio.to_thread(self.wait_for_log_sync, msg, timeout, **match)
        if not lines:
            raise TimeoutError(f"no {msg!r} {match or ''} logged in {timeout} s; last lines: {self.log_lines[-5:]}")
        return lines[0]

    def stop(self) -> int | None:
        """SIGTERM and wait (the sessions are ended first)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        return self.proc.returncode if self.proc else None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state != "Z"
