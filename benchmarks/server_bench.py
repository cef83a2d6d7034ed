"""How fast and how lean the self-hosted server is, next to a raw ``websockets`` echo server
(a script, not a test).

    python benchmarks/server_bench.py [--quick] [--yardstick-only] [--runs N] [--only tput,lat,rss]
    python benchmarks/server_bench.py --runs 1 --only tput --profile DIR [--profile-gil]   # py-spy
    python benchmarks/report.py   # this and the client and UI figures in one table

It starts the real server (``python -m tui_chat serve --auth open --port 0 --db <tmp>/bench.db
--log-level warning --log-format json``) and, in the same run, a bare echo server written with
``websockets.asyncio.server.serve`` (compression off) as the yardstick; each in its own process.
Load comes from separate client processes (this script re-run with ``--_worker``), never from a
server's process. Everything is on 127.0.0.1, every loop is bounded in count and time.

Measured, each as the median of ``--runs`` runs (3; ``--quick``: 1 run, smaller sizes), each run
on freshly started servers with an empty database:

1. delivered msgs/s with durable acks: 100 sender/receiver pairs, each sender sends its next
   ``sendMessage`` as soon as the previous ``ack`` arrives; messages received by the receivers per
   second over a fixed window (after a warm-up). Yardstick: 100 clients each sending a frame of
   the same size and awaiting its echo. Target >= 5,000 msgs/s.
2. p50/p99 send->deliver latency at 1,000 msg/s offered with 1,000 connections (500 pairs, an
   open-loop schedule spread over the senders; the send time, CLOCK_MONOTONIC in ns, travels in
   the body and the receiver subtracts it from its own clock: the same system-wide clock).
   Yardstick: round trip through the echo server at the same offered rate, 1,000 connections.
   Target p99 <= 10 ms.
3. server RSS per idle connection with 5,000 connected: RSS after connecting N minus RSS before
   (all nicknames already signed in, a few warm-up connections open), divided by N. Same for the
   echo server. Target <= 60 KB.

Two cores are shared by the server and the load generators, so the client processes' CPU time
is reported too: a figure is a fraction of what this machine can do *with* its own clients.
Server CPU per message (us/msg) is printed next to each rate: it moves far less than msgs/s when
something else runs on the machine. Runs during which other processes took more than a quarter of
a core are marked "noisy", and the medians of the quiet runs are printed as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

TARGET_MSGS_PER_S = 5_000
TARGET_P99_MS = 10.0
TARGET_RSS_KB = 60.0

START_TIMEOUT_S = 30.0
SETUP_TIMEOUT_S = 180.0
"""How long a worker may take to sign in and connect all its sockets."""
LOGIN_CONCURRENCY = 16
CONNECT_CONCURRENCY = 64
BODY_PAD = "lorem ipsum dolor sit amet, consectetur adipiscing elit"
"""A short chat line: the benchmark's frames are ~150 bytes, like real chat."""


# ---------------------------------------------------------------------------------------------
# Small helpers shared by every process
# ---------------------------------------------------------------------------------------------


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def device_of(name: str) -> str:
    return f"dev-{name}".ljust(8, "x")[:64]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------
# The yardstick: a bare websockets echo server (run with --_echo-server)
# ---------------------------------------------------------------------------------------------


async def echo_server_main() -> None:
    from websockets.asyncio.server import serve

    async def echo(ws) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except Exception:
            pass

    stop = asyncio.Event()
    import signal

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=128 * 1024) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"msg": "listening", "port": port}), flush=True)
        await stop.wait()


# ---------------------------------------------------------------------------------------------
# Client workers (run with --_worker): read a spec line, set up, say "ready", wait for "go"
# ---------------------------------------------------------------------------------------------


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_stdin_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def connect_ws(url: str):
    from websockets.asyncio.client import connect

    return await connect(
        url, compression=None, proxy=None, open_timeout=60, close_timeout=1,
        ping_interval=None, max_size=1024 * 1024, user_agent_header=None,
    )  # fmt: skip


async def sign_in(http_url: str, names: list[str], deadline: float) -> dict[str, str]:
    """Open-mode sign-in: POST /auth/login {username, device} -> token, a few at a time."""
    import httpx

    tokens: dict[str, str] = {}
    gate = asyncio.Semaphore(LOGIN_CONCURRENCY)
    limits = httpx.Limits(max_connections=LOGIN_CONCURRENCY, max_keepalive_connections=LOGIN_CONCURRENCY)
    async with httpx.AsyncClient(base_url=http_url, trust_env=False, limits=limits, timeout=30) as client:

        async def one(name: str) -> None:
            async with gate:
                for attempt in range(5):
                    response = await client.post("/auth/login", json={"username": name, "device": device_of(name)})
                    if response.status_code == 200:
                        tokens[name] = response.json()["token"]
                        return
                    if response.status_code < 500 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1 * (attempt + 1))
                raise RuntimeError(f"login {name} failed: {response.status_code} {response.text[:200]}")

        async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
            await asyncio.gather(*(one(n) for n in names))
    return tokens


async def connect_many(urls: list[str], deadline: float) -> tuple[list[Any], list[str]]:
    """Open every URL (a few at a time); returns the sockets (None where it failed) and errors."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sockets: list[Any] = [None] * len(urls)
    errors: list[str] = []

    async def one(i: int) -> None:
        async with gate:
            if time.monotonic() > deadline:
                errors.append("setup deadline passed")
                return
            try:
                sockets[i] = await connect_ws(urls[i])
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(one(i) for i in range(len(urls))))
    return sockets, errors


def chat_urls(spec: dict, tokens: dict[str, str], names: list[str]) -> list[str]:
    return [f"{spec['ws']}?token={tokens[n]}&device={device_of(n)}" for n in names]


async def wait_for_go() -> float:
    line = await read_stdin_line()
    cmd = json.loads(line)
    if cmd.get("cmd") != "go":
        raise SystemExit(0)
    t0 = float(cmd["t0"])
    delay = t0 - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    return t0


def send_frame(msg_id: str, to: str, sent_ns: int) -> str:
    return json.dumps(
        {"action": "sendMessage", "id": msg_id, "to": to, "body": f"t {sent_ns} {BODY_PAD}"},
        separators=(",", ":"),
    )


def sent_ns_of(body: str) -> int:
    return int(body.split(" ", 2)[1])


async def worker_chat_closed(spec: dict) -> None:
    """Measurement 1, ours: each sender sends as fast as its acks allow."""
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    pairs: list[list[str]] = spec["pairs"]
    names = [n for pair in pairs for n in pair]
    tokens = await sign_in(spec["http"], names, deadline)
    socks, errors = await connect_many(chat_urls(spec, tokens, names), deadline)
    emit({"ready": True, "connected": sum(s is not None for s in socks), "errors": errors[:5]})
    if errors:
        return
    by_name = dict(zip(names, socks))
    t0 = await wait_for_go()
    cpu0 = cpu_seconds()
    w0, w1 = t0 + spec["warmup"], t0 + spec["warmup"] + spec["duration"]
    stats = {"delivered": 0, "acked": 0, "rate_limited": 0, "errors": 0, "other_frames": 0}
    latencies: list[float] = []
    ack_latencies: list[float] = []
    sent_total = [0]
    received_total = [0]

    async def sender(idx: int, name: str, to: str) -> None:
        """One message in flight: the next is sent only once this one's ``ack`` came back."""
        ws = by_name[name]
        i = 0
        while time.monotonic() < w1 and i < 10_000_000:
            msg_id = f"{spec['tag']}-{idx}-{i}"
            i += 1
            for _attempt in range(100):  # resent (same id) only when refused as rate-limited
                sent_at = time.monotonic()
                await ws.send(send_frame(msg_id, to, time.monotonic_ns()))
                sent_total[0] += 1
                frame = json.loads(await ws.recv())
                while frame.get("id") != msg_id:  # presence and the like: not this message's reply
                    stats["other_frames"] += 1
                    frame = json.loads(await ws.recv())
                kind = frame.get("type")
                if kind == "ack":
                    now = time.monotonic()
                    if w0 <= now < w1:
                        stats["acked"] += 1
                        ack_latencies.append((now - sent_at) * 1000)
                    break
                if kind == "error" and frame.get("code") == "rate_limited":
                    sent_total[0] -= 1
                    stats["rate_limited"] += 1
                    await asyncio.sleep(frame.get("retryAfterMs", 10) / 1000)
                    continue
                stats["errors"] += 1
                if stats["errors"] <= 3:
                    print("error frame:", frame, file=sys.stderr)
                break

    async def receiver(name: str) -> None:
        ws = by_name[name]
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") != "message":
                stats["other_frames"] += 1
                continue
            now = time.monotonic()
            received_total[0] += 1
            if w0 <= now < w1:
                stats["delivered"] += 1
                latencies.append((time.monotonic_ns() - sent_ns_of(frame["message"]["body"])) / 1e6)

    receivers = [asyncio.create_task(receiver(r)) for _, r in pairs]
    try:
        async with asyncio.timeout(w1 - time.monotonic() + 10):
            await asyncio.gather(*(sender(i, s, r) for i, (s, r) in enumerate(pairs)))
    except TimeoutError:
        print("senders timed out", file=sys.stderr)
    cpu1 = cpu_seconds()
    drain_until = time.monotonic() + 2
    while received_total[0] < sent_total[0] and time.monotonic() < drain_until:
        await asyncio.sleep(0.01)
    for task in receivers:
        task.cancel()
    emit({
        "result": True, **stats, "window_s": spec["duration"], "cpu_s": cpu1 - cpu0, "run_s": w1 - t0,
        "sent": sent_total[0], "received": received_total[0],
        "lat_p50_ms": percentile(latencies, 50), "lat_p99_ms": percentile(latencies, 99),
        "ack_p50_ms": percentile(ack_latencies, 50),
    })  # fmt: skip


async def worker_echo_closed(spec: dict) -> None:
    """Measurement 1, yardstick: each client sends a frame and awaits its echo, in a loop."""
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    socks, errors = await connect_many([spec["ws"]] * spec["clients"], deadline)
    emit({"ready": True, "connected": sum(s is not None for s in socks), "errors": errors[:5]})
    if errors:
        return
    t0 = await wait_for_go()
    cpu0 = cpu_seconds()
    w0, w1 = t0 + spec["warmup"], t0 + spec["warmup"] + spec["duration"]
    stats = {"delivered": 0, "mismatched": 0}

    async def client(idx: int, ws) -> None:
        i = 0
        while time.monotonic() < w1 and i < 10_000_000:
            text = send_frame(f"{spec['tag']}-{idx}-{i}", "echo", time.monotonic_ns())
            i += 1
            await ws.send(text)
            frame = json.loads(await ws.recv())
            if frame.get("action") != "sendMessage":
                stats["mismatched"] += 1
            if w0 <= time.monotonic() < w1:
                stats["delivered"] += 1

    try:
        async with asyncio.timeout(w1 - time.monotonic() + 10):
            await asyncio.gather(*(client(i, ws) for i, ws in enumerate(socks)))
    except TimeoutError:
        print("clients timed out", file=sys.stderr)
    emit({"result": True, **stats, "window_s": spec["duration"], "cpu_s": cpu_seconds() - cpu0, "run_s": w1 - t0})


async def open_loop(spec: dict, send_one, t0: float) -> list[float]:
    """Fire ``rate`` sends a second, round-robin over the senders, from ``t0`` to the window end.
    Returns the scheduling lag of each send (ms): how late the client itself was."""
    interval = 1.0 / spec["rate"]
    n_senders = spec["senders"]
    end = t0 + spec["warmup"] + spec["duration"]
    lags: list[float] = []
    k = 0
    # Each worker starts at its own phase so that several workers interleave evenly.
    phase = spec.get("phase", 0.0) * interval
    while k < 10_000_000:
        scheduled = t0 + phase + k * interval
        if scheduled >= end:
            break
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append((time.monotonic() - scheduled) * 1000)
        await send_one(k % n_senders, k)
        k += 1
    return lags


async def worker_chat_open(spec: dict) -> None:
    """Measurement 2, ours: an open-loop schedule of sendMessage over the senders."""
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    pairs: list[list[str]] = spec["pairs"]
    names = [n for pair in pairs for n in pair]
    tokens = await sign_in(spec["http"], names, deadline)
    socks, errors = await connect_many(chat_urls(spec, tokens, names), deadline)
    emit({"ready": True, "connected": sum(s is not None for s in socks), "errors": errors[:5]})
    if errors:
        return
    by_name = dict(zip(names, socks))
    spec["senders"] = len(pairs)
    t0 = await wait_for_go()
    cpu0 = cpu_seconds()
    w0, w1 = t0 + spec["warmup"], t0 + spec["warmup"] + spec["duration"]
    w0_ns = int(w0 * 1e9)
    stats = {"sent": 0, "acked": 0, "received": 0, "rate_limited": 0, "errors": 0}
    latencies: list[float] = []

    async def ack_reader(name: str) -> None:
        async for raw in by_name[name]:
            frame = json.loads(raw)
            if frame.get("type") == "ack":
                stats["acked"] += 1
            elif frame.get("type") == "error":
                stats["rate_limited" if frame.get("code") == "rate_limited" else "errors"] += 1

    async def receiver(name: str) -> None:
        async for raw in by_name[name]:
            frame = json.loads(raw)
            if frame.get("type") != "message":
                continue
            now_ns = time.monotonic_ns()
            stats["received"] += 1
            sent_ns = sent_ns_of(frame["message"]["body"])
            if sent_ns >= w0_ns:
                latencies.append((now_ns - sent_ns) / 1e6)

    async def send_one(i: int, k: int) -> None:
        sender, receiver_name = pairs[i]
        stats["sent"] += 1
        await by_name[sender].send(send_frame(f"{spec['tag']}-{i}-{k}", receiver_name, time.monotonic_ns()))

    readers = [asyncio.create_task(ack_reader(s)) for s, _ in pairs]
    readers += [asyncio.create_task(receiver(r)) for _, r in pairs]
    lags: list[float] = []
    try:
        async with asyncio.timeout(w1 - time.monotonic() + 10):
            lags = await open_loop(spec, send_one, t0)
    except TimeoutError:
        print("schedule timed out", file=sys.stderr)
    cpu1 = cpu_seconds()
    drain_until = time.monotonic() + 3
    while stats["received"] < stats["sent"] and time.monotonic() < drain_until:
        await asyncio.sleep(0.01)
    for task in readers:
        task.cancel()
    emit({"result": True, **stats, "latencies": latencies, "lag_p99_ms": percentile(lags, 99), "cpu_s": cpu1 - cpu0, "run_s": w1 - t0})


async def worker_echo_open(spec: dict) -> None:
    """Measurement 2, yardstick: the same open-loop schedule through the echo server."""
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    socks, errors = await connect_many([spec["ws"]] * spec["clients"], deadline)
    emit({"ready": True, "connected": sum(s is not None for s in socks), "errors": errors[:5]})
    if errors:
        return
    spec["senders"] = len(socks)
    t0 = await wait_for_go()
    cpu0 = cpu_seconds()
    w0 = t0 + spec["warmup"]
    w0_ns = int(w0 * 1e9)
    stats = {"sent": 0, "received": 0}
    latencies: list[float] = []

    async def reader(ws) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            now_ns = time.monotonic_ns()
            stats["received"] += 1
            sent_ns = sent_ns_of(frame["body"])
            if sent_ns >= w0_ns:
                latencies.append((now_ns - sent_ns) / 1e6)

    async def send_one(i: int, k: int) -> None:
        stats["sent"] += 1
        await socks[i].send(send_frame(f"{spec['tag']}-{i}-{k}", "echo", time.monotonic_ns()))

    readers = [asyncio.create_task(reader(ws)) for ws in socks]
    lags: list[float] = []
    try:
        async with asyncio.timeout(spec["warmup"] + spec["duration"] + 10):
            lags = await open_loop(spec, send_one, t0)
    except TimeoutError:
        print("schedule timed out", file=sys.stderr)
    cpu1 = cpu_seconds()
    drain_until = time.monotonic() + 3
    while stats["received"] < stats["sent"] and time.monotonic() < drain_until:
        await asyncio.sleep(0.01)
    for task in readers:
        task.cancel()
    emit({"result": True, **stats, "latencies": latencies, "lag_p99_ms": percentile(lags, 99), "cpu_s": cpu1 - cpu0, "run_s": 0})


async def worker_idle(spec: dict) -> None:
    """Measurement 3: sign in everyone, open the warm-up sockets, say "warm"; on "go" open the
    rest, say "connected"; hold them idle until "release"."""
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    warm_n, main_n = spec["warm"], spec["main"]
    if spec["server"] == "chat":
        names = [f"{spec['tag']}{i}" for i in range(spec["first"], spec["first"] + warm_n + main_n)]
        tokens = await sign_in(spec["http"], names, deadline)
        urls = chat_urls(spec, tokens, names)
    else:
        urls = [spec["ws"]] * (warm_n + main_n)
    warm_socks, warm_errors = await connect_many(urls[:warm_n], deadline)
    emit({"ready": True, "connected": sum(s is not None for s in warm_socks), "errors": warm_errors[:5]})
    if warm_errors:
        return
    started = time.monotonic()
    await wait_for_go()
    socks, errors = await connect_many(urls[warm_n:], time.monotonic() + SETUP_TIMEOUT_S)
    emit({
        "result": True, "connected": sum(s is not None for s in socks), "errors": errors[:5],
        "failed": len(errors), "connect_s": time.monotonic() - started,
    })  # fmt: skip
    await read_stdin_line()  # "release" (or EOF): the process exits and the kernel closes the sockets


WORKERS = {
    "chat_closed": worker_chat_closed,
    "echo_closed": worker_echo_closed,
    "chat_open": worker_chat_open,
    "echo_open": worker_echo_open,
    "idle": worker_idle,
}


def worker_main() -> None:
    raise_nofile_limit()
    spec = json.loads(sys.stdin.readline())
    try:
        asyncio.run(WORKERS[spec["kind"]](spec))
    except Exception as exc:
        emit({"fatal": f"{type(exc).__name__}: {exc}"[:500]})
    sys.stdout.flush()
    os._exit(0)  # skip closing thousands of sockets one by one


# ---------------------------------------------------------------------------------------------
# The orchestrator: servers, workers, repetitions, the table
# ---------------------------------------------------------------------------------------------


class BenchError(RuntimeError):
    pass


@dataclass
class ServerProcess:
    """One server in its own process, on 127.0.0.1, on a port it picked."""

    kind: str  # "chat" or "echo"
    workdir: Path
    profile_path: Path | None = None
    """Run the chat server under ``py-spy record`` (raw collapsed stacks written here)."""
    profile_gil: bool = False
    """py-spy ``--gil``: only samples of the thread holding the GIL (where the interpreter's time goes)."""
    proc: subprocess.Popen | None = None
    pid: int = 0
    """The server's own process (py-spy's child when profiling)."""
    port: int = 0
    log_path: Path | None = None

    def start(self) -> "ServerProcess":
        self.log_path = self.workdir / f"{self.kind}-{time.monotonic_ns()}.log"
        log = open(self.log_path, "w")
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        if self.kind == "chat":
            db = self.workdir / f"bench-{time.monotonic_ns()}" / "bench.db"
            db.parent.mkdir(parents=True)
            cmd = [
                sys.executable, "-m", "tui_chat", "serve", "--auth", "open", "--host", "127.0.0.1", "--port", "0",
                "--db", str(db), "--log-level", "warning", "--log-format", "json",
                "--auth-rate", "100000",  # every nickname signs in from this address: the limit is for strangers
            ]  # fmt: skip
            if self.profile_path is not None:
                pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                cmd = [pyspy, "record", "--format", "raw", "--nolineno", "--threads", "--rate", "200",
                       *(["--gil"] if self.profile_gil else []), "-o", str(self.profile_path), "--", *cmd]  # fmt: skip
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
            self.pid = self._server_pid()
            self.port = self._wait_listening_port()
            self._wait_healthy()
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_echo-server"]
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True)
            line = _readline_with_timeout(self.proc.stdout, START_TIMEOUT_S)
            if not line:
                self.stop()
                raise BenchError(f"the echo server did not start:\n{self.log_tail()}")
            self.port = int(json.loads(line)["port"])
            self.pid = self.proc.pid
        return self

    def _server_pid(self) -> int:
        if self.profile_path is None:
            return self.proc.pid
        import psutil

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            children = psutil.Process(self.proc.pid).children()
            if children:
                return children[0].pid
            time.sleep(0.02)
        raise BenchError(f"py-spy did not start the server:\n{self.log_tail()}")

    def _wait_listening_port(self) -> int:
        """``--log-level warning`` hides the "listening" line, so ask the kernel which port it bound."""
        import psutil

        deadline = time.monotonic() + START_TIMEOUT_S
        ps = psutil.Process(self.pid)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the chat server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                for conn in ps.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.ip == "127.0.0.1":
                        return conn.laddr.port
            except psutil.Error:
                pass
            for entry in self._log_entries():  # in case someone runs it with info logging
                if entry.get("msg") == "listening" and entry.get("port"):
                    return int(entry["port"])
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"the chat server did not listen within {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def _wait_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.http_url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"the chat server never became healthy:\n{self.log_tail()}")

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws" if self.kind == "chat" else f"ws://127.0.0.1:{self.port}/"

    def _log_entries(self) -> list[dict]:
        entries = []
        try:
            for line in self.log_path.read_text(errors="replace").splitlines():
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    entries.append({"msg": line})
        except OSError:
            pass
        return entries

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def warnings(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self._log_entries():
            if entry.get("level") in ("warning", "error", "critical"):
                counts[entry.get("msg", "?")[:80]] = counts.get(entry.get("msg", "?")[:80], 0) + 1
        return counts

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.pid).memory_info().rss

    def cpu(self) -> float:
        user, system = self.cpu_split()
        return user + system

    def cpu_split(self) -> tuple[float, float]:
        import psutil

        t = psutil.Process(self.pid).cpu_times()
        return t.user, t.system

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.pid and self.pid != self.proc.pid:  # py-spy: stop the server, py-spy then writes its file
            try:
                os.kill(self.pid, 15)
            except OSError:
                pass
        else:
            self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _readline_with_timeout(stream, timeout: float) -> str:
    box: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: box.put(stream.readline()), daemon=True).start()
    try:
        return box.get(timeout=timeout)
    except queue.Empty:
        return ""


class Worker:
    """A client process running one ``WORKERS`` function (of this script, or of ``script``, which
    takes the same ``--_worker`` flag); JSON lines both ways."""

    def __init__(self, spec: dict, log_dir: Path, *, script: Path | None = None, label: str | None = None) -> None:
        self.log_path = log_dir / f"worker-{label or spec['kind']}-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(script or Path(__file__).resolve()), "--_worker"], cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log_path, "w"), text=True,
        )  # fmt: skip
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.send(spec)

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def send(self, obj: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def expect(self, timeout: float) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"a client worker said nothing for {timeout:.0f} s; its log:\n{self.log_tail()}") from None
        if not line:
            raise BenchError(f"a client worker exited early; its log:\n{self.log_tail()}")
        reply = json.loads(line)
        if "fatal" in reply:
            raise BenchError(f"a client worker failed: {reply['fatal']}\n{self.log_tail()}")
        if reply.get("errors"):
            raise BenchError(f"a client worker could not connect: {reply['errors']}\n{self.log_tail()}")
        return reply

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.send({"cmd": "stop"})
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def machine_busy_s() -> float:
    """CPU seconds spent by everything on the machine (all cores) since boot."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def wait_until_quiet(max_wait_s: float, threshold_pct: float = 25.0) -> str:
    """Other engineers' test runs share these cores: wait (bounded) for the machine to calm down."""
    if max_wait_s <= 0:
        return ""
    deadline = time.monotonic() + max_wait_s
    busy_pct = 0.0
    while True:
        b0 = machine_busy_s()
        time.sleep(1.0)
        busy_pct = (machine_busy_s() - b0) * 100
        if busy_pct < threshold_pct or time.monotonic() > deadline:
            break
    return "" if busy_pct < threshold_pct else f"machine still {busy_pct:.0f}% busy (of one core) before the run"


def run_workers(specs: list[dict], log_dir: Path, run_timeout: float, server: ServerProcess | None = None) -> tuple[list[dict], dict]:
    """Start the workers, wait until all are ready, start them together, collect results."""
    workers = [Worker(spec, log_dir) for spec in specs]
    try:
        setup_started = time.monotonic()
        ready = [w.expect(SETUP_TIMEOUT_S + 30) for w in workers]
        info = {"setup_s": time.monotonic() - setup_started, "connected": sum(r["connected"] for r in ready)}
        t0 = time.monotonic() + 0.3
        for w in workers:
            w.send({"cmd": "go", "t0": t0})
        cpu0 = server.cpu_split() if server else (0.0, 0.0)
        busy0, wall0 = machine_busy_s(), time.monotonic()
        results = [w.expect(run_timeout) for w in workers]
        info["machine_busy_s"] = machine_busy_s() - busy0
        info["wall_s"] = time.monotonic() - wall0
        if server:
            cpu1 = server.cpu_split()
            info["server_user_s"], info["server_sys_s"] = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            info["server_cpu_s"] = info["server_user_s"] + info["server_sys_s"]
        # Whatever else ran meanwhile (other people's tests): busy time not ours.
        ours = info.get("server_cpu_s", 0.0) + sum(r["cpu_s"] for r in results)
        info["other_pct"] = max(0.0, info["machine_busy_s"] - ours) / info["wall_s"] * 100
        return results, info
    finally:
        for w in workers:
            w.stop()


def split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts)]


# -- the three measurements ----------------------------------------------------------------------


@dataclass
class Settings:
    quick: bool
    runs: int
    procs: int
    throughput_pairs: int = 100
    throughput_s: float = 10.0
    throughput_warmup_s: float = 1.0
    latency_pairs: int = 500
    latency_rate: float = 1000.0
    latency_s: float = 6.0
    latency_warmup_s: float = 1.0
    idle_conns: int = 5000
    idle_warm: int = 20


@dataclass
class Figure:
    runs: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    noisy: list[bool] = field(default_factory=list)
    """Other processes took a noticeable share of the CPUs during that run."""

    def add(self, value: float, note: str = "", noisy: bool = False) -> None:
        self.runs.append(value)
        self.noisy.append(noisy)
        if note:
            self.notes.append(note)

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def quiet_median(self) -> float:
        quiet = [v for v, n in zip(self.runs, self.noisy) if not n]
        return statistics.median(quiet) if quiet else float("nan")


NOISY_PCT = 25.0
"""A run during which other processes took more than this share of a core is flagged as noisy."""


def measure_throughput(cfg: Settings, server: ServerProcess, run: int, tmp: Path) -> tuple[float, str, bool]:
    procs = min(cfg.procs, cfg.throughput_pairs)
    if server.kind == "chat":
        pairs = [[f"t{run}s{i}", f"t{run}r{i}"] for i in range(cfg.throughput_pairs)]
        specs = [
            {"kind": "chat_closed", "http": server.http_url, "ws": server.ws_url, "pairs": chunk, "tag": f"t{run}p{j}",
             "warmup": cfg.throughput_warmup_s, "duration": cfg.throughput_s}
            for j, chunk in enumerate(split(pairs, procs))
        ]  # fmt: skip
    else:
        specs = [
            {"kind": "echo_closed", "ws": server.ws_url, "clients": len(chunk), "tag": f"e{run}p{j}",
             "warmup": cfg.throughput_warmup_s, "duration": cfg.throughput_s}
            for j, chunk in enumerate(split(list(range(cfg.throughput_pairs)), procs))
        ]  # fmt: skip
    results, info = run_workers(specs, tmp, cfg.throughput_warmup_s + cfg.throughput_s + 30, server)
    delivered = sum(r["delivered"] for r in results)
    rate = delivered / cfg.throughput_s
    window = cfg.throughput_warmup_s + cfg.throughput_s
    client_cpu = sum(r["cpu_s"] for r in results) / window * 100
    server_cpu = info["server_cpu_s"] / (window + 0.3) * 100
    # Server CPU per delivered message: far less sensitive than msgs/s to other processes on the machine.
    cpu_us = info["server_cpu_s"] / max(1, sum(r.get("delivered", 0) for r in results) * window / cfg.throughput_s) * 1e6
    sys_pct = info["server_sys_s"] / max(1e-9, info["server_cpu_s"]) * 100
    note = (
        f"server CPU {server_cpu:.0f}% ({sys_pct:.0f}% of it in the kernel) = {cpu_us:.0f} us/msg, "
        f"clients CPU {client_cpu:.0f}%, other processes ~{info['other_pct']:.0f}% (of one core)"
    )  # fmt: skip
    if server.kind == "chat":
        rl = sum(r["rate_limited"] for r in results)
        errs = sum(r["errors"] for r in results)
        lat50 = statistics.median(r["lat_p50_ms"] for r in results)
        ack50 = statistics.median(r["ack_p50_ms"] for r in results)
        note += f", closed loop: send->ack p50 {ack50:.1f} ms, send->deliver p50 {lat50:.1f} ms, rate_limited {rl}, errors {errs}"
    return rate, note, info["other_pct"] > NOISY_PCT


def measure_latency(cfg: Settings, server: ServerProcess, run: int, tmp: Path) -> tuple[float, float, str, bool]:
    procs = min(cfg.procs, cfg.latency_pairs)
    rate_per_proc = cfg.latency_rate / procs
    common = {"warmup": cfg.latency_warmup_s, "duration": cfg.latency_s, "rate": rate_per_proc}
    if server.kind == "chat":
        pairs = [[f"l{run}s{i}", f"l{run}r{i}"] for i in range(cfg.latency_pairs)]
        specs = [
            {"kind": "chat_open", "http": server.http_url, "ws": server.ws_url, "pairs": chunk, "tag": f"l{run}p{j}",
             "phase": j / procs, **common}
            for j, chunk in enumerate(split(pairs, procs))
        ]  # fmt: skip
    else:
        specs = [
            {"kind": "echo_open", "ws": server.ws_url, "clients": len(chunk), "tag": f"e{run}p{j}", "phase": j / procs, **common}
            for j, chunk in enumerate(split(list(range(2 * cfg.latency_pairs)), procs))
        ]  # fmt: skip
    results, info = run_workers(specs, tmp, cfg.latency_warmup_s + cfg.latency_s + 30, server)
    latencies = [x for r in results for x in r["latencies"]]
    sent = sum(r["sent"] for r in results)
    received = sum(r["received"] for r in results)
    lag = max(r["lag_p99_ms"] for r in results)
    window = cfg.latency_warmup_s + cfg.latency_s
    server_cpu = info["server_cpu_s"] / (window + 0.3) * 100
    client_cpu = sum(r["cpu_s"] for r in results) / window * 100
    cpu_us = info["server_cpu_s"] / max(1, received) * 1e6
    sys_pct = info.get("server_sys_s", 0.0) / max(1e-9, info["server_cpu_s"]) * 100
    note = (
        f"{info['connected']} connections, {len(latencies)} samples, sent {sent}, delivered {received}, "
        f"client schedule lag p99 {lag:.2f} ms, server CPU {server_cpu:.0f}% ({sys_pct:.0f}% kernel) = {cpu_us:.0f} us/msg, clients CPU {client_cpu:.0f}%, "
        f"other processes ~{info['other_pct']:.0f}%, setup {info['setup_s']:.1f} s"
    )  # fmt: skip
    if server.kind == "chat":
        note += f", rate_limited {sum(r['rate_limited'] for r in results)}, errors {sum(r['errors'] for r in results)}"
    if received < sent:
        note += f"  LOST {sent - received}"
    return percentile(latencies, 50), percentile(latencies, 99), note, info["other_pct"] > NOISY_PCT


def measure_idle_rss(cfg: Settings, server: ServerProcess, run: int, tmp: Path) -> tuple[float, str]:
    procs = max(1, min(cfg.procs, cfg.idle_conns))
    specs = []
    first = 0
    for j in range(procs):
        main_n = cfg.idle_conns // procs + (1 if j < cfg.idle_conns % procs else 0)
        warm_n = cfg.idle_warm // procs
        specs.append({
            "kind": "idle", "server": server.kind, "http": server.http_url, "ws": server.ws_url,
            "tag": f"i{run}u", "first": first, "warm": warm_n, "main": main_n,
        })  # fmt: skip
        first += warm_n + main_n
    workers = [Worker(spec, tmp) for spec in specs]
    try:
        setup_started = time.monotonic()
        for w in workers:
            w.expect(SETUP_TIMEOUT_S + 30)
        signin_s = time.monotonic() - setup_started
        time.sleep(1.0)
        before = statistics.median(_rss_samples(server, 5))
        t0 = time.monotonic() + 0.1
        for w in workers:
            w.send({"cmd": "go", "t0": t0})
        results = [w.expect(SETUP_TIMEOUT_S + 30) for w in workers]
        connect_s = time.monotonic() - t0
        connected = sum(r["connected"] for r in results)
        time.sleep(2.0)  # let the writers and the store settle
        after = statistics.median(_rss_samples(server, 5))
    finally:
        for w in workers:
            w.stop()
    if connected < cfg.idle_conns:
        raise BenchError(f"only {connected} of {cfg.idle_conns} idle connections opened")
    per_conn_kb = (after - before) / connected / 1024
    note = (
        f"RSS {before / 2**20:.1f} MB -> {after / 2**20:.1f} MB for {connected} connections; "
        f"connecting them took {connect_s:.1f} s" + (f" (sign-in before that {signin_s:.1f} s)" if server.kind == "chat" else "")
    )  # fmt: skip
    return per_conn_kb, note


def _rss_samples(server: ServerProcess, n: int) -> list[int]:
    samples = []
    for _ in range(n):
        samples.append(server.rss())
        time.sleep(0.1)
    return samples


# -- output ----------------------------------------------------------------------------------------


def machine_info() -> list[str]:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil
    import uvicorn
    import websockets

    mem = psutil.virtual_memory().total / 2**30
    return [
        f"machine: {model}, {os.cpu_count()} logical cores ({psutil.cpu_count(logical=False)} physical), {mem:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"python {platform.python_version()} ({platform.python_implementation()}), websockets {websockets.__version__}, "
        f"uvicorn {uvicorn.__version__}, servers on {loop_name()}, RLIMIT_NOFILE {raise_nofile_limit()}",
    ]  # fmt: skip


def server_loop_factory():
    from tui_chat.cli import fast_loop

    return fast_loop()


def loop_name() -> str:
    try:
        import uvloop
    except ImportError:
        return "the default asyncio loop"
    return f"uvloop {uvloop.__version__}"


def fmt_num(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "-"
    if unit == "msgs/s":
        return f"{value:,.0f} msgs/s"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:.1f} KB"


def print_table(rows: list[tuple[str, Figure, Figure, str, str, float, bool]], cfg: Settings) -> None:
    """rows: (label, ours, yardstick, unit, target text, target value, higher_is_better)."""
    print()
    runs = "median of 1 run" if cfg.runs == 1 else f"median of {cfg.runs} runs"
    header = f"{'measurement (' + runs + ')':<58} {'tui-chat':>16} {'yardstick':>16} {'ratio':>8}   {'target':<14} meets"
    print(header)
    print("-" * len(header))
    for label, ours, yard, unit, target_text, target, higher_better in rows:
        o, y = ours.median, yard.median
        ratio = (o / y) if (ours.runs and yard.runs and y) else float("nan")
        ratio_text = "-" if ratio != ratio else f"{ratio:.2f}x"
        if target_text and ours.runs:
            ok = o >= target if higher_better else o <= target
            verdict = "YES" if ok else "NO  <-- missed"
        else:
            verdict = ""
        print(f"{label:<58} {fmt_num(o, unit):>16} {fmt_num(y, unit):>16} {ratio_text:>8}   {target_text:<14} {verdict}")
    print()
    print("ratio = tui-chat / yardstick (throughput: the share of raw websockets we reach; latency and memory: times the yardstick)")


def print_runs(title: str, fig: Figure, unit: str) -> None:
    if not fig.runs:
        return
    print(f"  {title}: " + ", ".join(fmt_num(v, unit) + (" (noisy)" if n else "") for v, n in zip(fig.runs, fig.noisy)))
    for note in fig.notes:
        print(f"      {note}")


def summarize_profile(path: Path, top: int = 25) -> list[str]:
    """py-spy raw output (collapsed stacks, one "frame;frame;... count" a line): where the server's
    busy samples went, by the function on top of the stack (self) and by any function on it."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return [f"no profile at {path}: {exc}"]
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames and frames[0].startswith("thread ("):
            threads[frames[0]] = threads.get(frames[0], 0) + count
            frames = frames[1:]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for frame in set(frames):
            incl_counts[frame] = incl_counts.get(frame, 0) + count
    if not total:
        return ["the profile holds no samples"]
    lines = [f"{total} samples (200/s per thread; threads waiting in epoll or on a lock are not counted)"]
    if len(threads) > 1:
        lines.append("by thread: " + ", ".join(f"{t} {c / total:.0%}" for t, c in sorted(threads.items(), key=lambda kv: -kv[1])))
    lines.append("self (the function on top of the stack):")
    for frame, count in sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {count / total:6.1%}  {frame}")
    lines.append("inclusive (the function anywhere on the stack):")
    for frame, count in sorted(incl_counts.items(), key=lambda kv: -kv[1])[: top + 10]:
        lines.append(f"  {count / total:6.1%}  {frame}")
    return lines


# -- main ----------------------------------------------------------------------------------------


def orchestrate(args: argparse.Namespace) -> int:
    raise_nofile_limit()  # inherited by the servers and the workers
    cfg = Settings(quick=args.quick, runs=args.runs or (1 if args.quick else 3), procs=args.procs)
    if args.wait_quiet is None:
        args.wait_quiet = 0.0 if args.quick else 15.0
    if args.quick:
        cfg.throughput_s, cfg.throughput_warmup_s = 3.0, 0.5
        cfg.latency_pairs, cfg.latency_s, cfg.latency_warmup_s = 250, 3.0, 0.5
        cfg.idle_conns = 1000
    started = time.monotonic()
    print("tui-chat server benchmark" + (" (--quick)" if args.quick else "") + (" (--yardstick-only)" if args.yardstick_only else ""))
    for line in machine_info():
        print("  " + line)
    print(
        f"  {cfg.runs} run(s) per figure, {cfg.procs} client processes per measurement, fresh servers for every run"
    )
    sys.stdout.flush()
    kinds = ["echo"] if args.yardstick_only else ["chat", "echo"]
    figs: dict[tuple[str, str], Figure] = {(m, k): Figure() for m in ("tput", "p50", "p99", "rss") for k in ("chat", "echo")}
    tmp = Path(tempfile.mkdtemp(prefix="tui-chat-bench-"))
    failures: list[str] = []
    measurements = [m for m in ("tput", "lat", "rss") if not args.only or m in args.only.split(",")]
    profiles: list[tuple[str, Path]] = []
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    try:
        for measurement in measurements:
            for run in range(cfg.runs):
                for kind in kinds:
                    label = {"chat": "tui-chat", "echo": "yardstick"}[kind]
                    profile_path = None
                    if args.profile and kind == "chat":
                        profile_path = Path(args.profile).resolve() / f"{measurement}-run{run + 1}.txt"
                        profiles.append((f"{measurement} run {run + 1}", profile_path))
                    server = ServerProcess(kind, tmp, profile_path, args.profile_gil)
                    try:
                        noisy = wait_until_quiet(args.wait_quiet)
                        if noisy:
                            print(f"      warning: {noisy}")
                        server.start()
                        if measurement == "tput":
                            value, note, noisy = measure_throughput(cfg, server, run, tmp)
                            figs["tput", kind].add(value, note, noisy)
                            print(f"[{time.monotonic() - started:5.0f} s] throughput run {run + 1} {label}: {value:,.0f} msgs/s ({note})")
                        elif measurement == "lat":
                            p50, p99, note, noisy = measure_latency(cfg, server, run, tmp)
                            figs["p50", kind].add(p50, "", noisy)
                            figs["p99", kind].add(p99, note, noisy)
                            print(f"[{time.monotonic() - started:5.0f} s] latency run {run + 1} {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({note})")
                        else:  # memory is not disturbed by other processes' CPU use
                            kb, note = measure_idle_rss(cfg, server, run, tmp)
                            figs["rss", kind].add(kb, note)
                            print(f"[{time.monotonic() - started:5.0f} s] idle memory run {run + 1} {label}: {kb:.1f} KB/connection ({note})")
                        if kind == "chat":
                            for msg, count in server.warnings().items():
                                print(f"      server logged {count}x: {msg}")
                    except BenchError as exc:
                        failures.append(f"{measurement} run {run + 1} {label}: {exc}")
                        print(f"[{time.monotonic() - started:5.0f} s] {measurement} run {run + 1} {label} FAILED: {exc}")
                    finally:
                        server.stop()
                    sys.stdout.flush()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs and databases kept in {tmp}")

    pairs_t, pairs_l, n_idle = cfg.throughput_pairs, cfg.latency_pairs, cfg.idle_conns
    rate = f"{cfg.latency_rate:,.0f} msg/s"
    rows = [
        (f"1. delivered msgs/s, durable acks ({pairs_t} pairs)", figs["tput", "chat"], figs["tput", "echo"], "msgs/s", f">= {TARGET_MSGS_PER_S:,}", TARGET_MSGS_PER_S, True),
        (f"2. send->deliver p50 @{rate}, {2 * pairs_l:,} conns", figs["p50", "chat"], figs["p50", "echo"], "ms", "", 0, False),
        (f"2. send->deliver p99 @{rate}, {2 * pairs_l:,} conns", figs["p99", "chat"], figs["p99", "echo"], "ms", f"<= {TARGET_P99_MS:g} ms", TARGET_P99_MS, False),
        (f"3. server RSS per idle connection ({n_idle:,} conns)", figs["rss", "chat"], figs["rss", "echo"], "KB", f"<= {TARGET_RSS_KB:g} KB", TARGET_RSS_KB, False),
    ]  # fmt: skip
    print_table(rows, cfg)
    noisy_rows = [(label, ours, yard, unit) for label, ours, yard, unit, *_ in rows if any(ours.noisy) or any(yard.noisy)]
    if noisy_rows:
        print(f"\nWARNING: other processes took more than {NOISY_PCT:.0f}% of a core during some runs (marked 'noisy' below);")
        print("the CPUs are shared, so those runs understate us. Medians of the quiet runs only:")
        for label, ours, yard, unit in noisy_rows:
            print(f"  {label:<58} {fmt_num(ours.quiet_median, unit):>16} {fmt_num(yard.quiet_median, unit):>16}"
                  f"   (quiet runs: {ours.noisy.count(False)} and {yard.noisy.count(False)})")
    print("\nper run:")
    for key, title, unit in (
        (("tput", "chat"), "1. tui-chat", "msgs/s"), (("tput", "echo"), "1. yardstick", "msgs/s"),
        (("p50", "chat"), "2. tui-chat p50", "ms"), (("p99", "chat"), "2. tui-chat p99", "ms"),
        (("p50", "echo"), "2. yardstick p50", "ms"), (("p99", "echo"), "2. yardstick p99", "ms"),
        (("rss", "chat"), "3. tui-chat", "KB"), (("rss", "echo"), "3. yardstick", "KB"),
    ):  # fmt: skip
        print_runs(title, figs[key], unit)
    if args.quick:
        print("\n--quick: one short run with smaller sizes (latency with "
              f"{2 * pairs_l} connections, memory with {n_idle} connections); not the figures to quote.")  # fmt: skip
    for title, path in profiles:
        print(f"\nprofile of the tui-chat server, {title} ({path}):")
        for line in summarize_profile(path):
            print("  " + line)
    if profiles:
        print("\n(profiled runs are slowed by py-spy: quote the figures of a run without --profile)")
    for failure in failures:
        print(f"\nFAILED {failure}")
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    if args.json:
        write_json(Path(args.json), figs, failures)
    return 1 if failures else 0


def write_json(path: Path, figs: dict[tuple[str, str], Figure], failures: list[str]) -> None:
    """The per-run figures for ``benchmarks/report.py``: {"tput": {"chat": {...}, "echo": {...}}, ...}."""
    out: dict = {"machine": machine_info(), "failures": failures}
    for (measurement, kind), fig in figs.items():
        out.setdefault(measurement, {})[kind] = {"runs": fig.runs, "noisy": fig.noisy, "median": fig.median}
    path.write_text(json.dumps(out, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short run with smaller sizes (< 60 s)")
    parser.add_argument("--yardstick-only", action="store_true", help="measure only the raw websockets echo server")
    parser.add_argument("--runs", type=int, default=0, help="runs per figure (default 3, --quick 1)")
    parser.add_argument("--procs", type=int, default=2, help="client processes per measurement (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder with logs and databases")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="S",
                        help="before each run wait up to S seconds for other processes to leave the CPUs idle "
                             "(default 15, --quick 0); the CPU other processes took during each run is reported anyway")
    parser.add_argument("--only", default="", help="comma-separated subset of tput,lat,rss")
    parser.add_argument("--profile", metavar="DIR", help="run the tui-chat server under py-spy and write raw stacks to DIR")
    parser.add_argument("--profile-gil", action="store_true", help="with --profile: sample only the thread holding the GIL")
    parser.add_argument("--json", metavar="FILE", help="also write the per-run figures to FILE (used by report.py)")
    parser.add_argument("--_echo-server", dest="echo_server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_worker", dest="worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        raise_nofile_limit()
        # The same event loop as `tui-chat serve` (uvloop where installed): a fair yardstick.
        with asyncio.Runner(loop_factory=server_loop_factory()) as runner:
            runner.run(echo_server_main())
        return 0
    if args.worker:
        worker_main()
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
