"""Run the real ``tui-chat serve`` (or, with ``runtime="lambda"``, the Lambda handlers behind the
API Gateway emulator) in a subprocess on 127.0.0.1, for integration tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

CHECKOUT = Path(__file__).resolve().parents[1]

START_TIMEOUT_S = 20.0


class RunningServer:
    """A ``tui-chat serve`` subprocess; ``restart()`` keeps its port and database."""

    def __init__(self, db_path: Path, *, auth: str = "accounts", extra_args: tuple[str, ...] = (), env: dict | None = None,
                 runtime: str = "local"):  # fmt: skip
        self.db_path = Path(db_path)
        self.auth = auth
        self.runtime = runtime
        """``local``: ``tui-chat serve``; ``lambda``: ``python -m tui_chat_dev serve-lambda``."""
        self.extra_args = tuple(extra_args)
        self.env = env
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_lines: list[dict] = []
        self._log_reader: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> "RunningServer":
        command = ["tui_chat", "serve"] if self.runtime == "local" else ["tui_chat_dev", "serve-lambda"]
        cmd = [
            sys.executable, "-m", *command, "--host", "127.0.0.1", "--port", str(self.port),
            "--db", str(self.db_path), "--auth", self.auth, "--log-format", "json",
            # Every test user signs up from 127.0.0.1: the per-address sign-in limit is for strangers.
            *(() if "--auth-rate" in self.extra_args else ("--auth-rate", "100000")), *self.extra_args,
        ]  # fmt: skip
        env = {**os.environ, **(self.env or {})}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH", "")]))  # tui_chat_dev
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
        ready = threading.Event()
        self._log_reader = threading.Thread(target=self._read_logs, args=(self.proc, ready), daemon=True)
        self._log_reader.start()
        if not ready.wait(START_TIMEOUT_S) or self.proc.poll() is not None:
            self.kill()
            raise RuntimeError("the server did not start:\n" + "\n".join(map(str, self.log_lines[-20:])))
        self._wait_healthy()
        return self

    def _read_logs(self, proc: subprocess.Popen, ready: threading.Event) -> None:
        for line in proc.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"msg": line.rstrip()}
            self.log_lines.append(entry)
            if entry.get("msg") == "listening" and not ready.is_set():
                self.port = int(entry["port"])
                ready.set()
        ready.set()  # the process ended: let start() report it

    async def wait_for_log(self, msg: str, timeout: float = 10.0) -> list[dict]:
        """The log lines saying ``msg``, once there is one: they are read from stderr by another
        thread, so a line the server has written may not be in ``log_lines`` yet."""
        async with asyncio.timeout(timeout):
            while not (lines := [line for line in self.log_lines if line.get("msg") == msg]):
                await asyncio.sleep(0.02)
        return lines

    def _finish_reading_logs(self) -> None:
        """After the process has ended: every line it wrote is in ``log_lines``."""
        if self._log_reader is not None:
            self._log_reader.join(10)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.http_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise RuntimeError("the server never became healthy")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush (what a crash or the OOM killer does)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._finish_reading_logs()

    def stop(self) -> int | None:
        """SIGTERM and wait: the graceful path."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._finish_reading_logs()
        return self.proc.returncode if self.proc else None

    def restart(self, *, kill: bool = False) -> "RunningServer":
        self.kill() if kill else self.stop()
        return self.start()


def start_server(tmp_path: Path, *, auth: str = "accounts", extra_args: tuple[str, ...] = (), env: dict | None = None,
                 runtime: str = "local") -> RunningServer:  # fmt: skip
    return RunningServer(Path(tmp_path) / "server.db", auth=auth, extra_args=extra_args, env=env, runtime=runtime).start()


async def signup(http_url: str, username: str, password: str = "correct horse battery") -> dict:
    async with httpx.AsyncClient() as client:
        response = await client.post(http_url + "/auth/signup", json={"username": username, "password": password})
        response.raise_for_status()
        return response.json()
