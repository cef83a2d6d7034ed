"""What a room costs next to direct messages (a script, not a test): delivered messages per second
into a 50-member room, and send->deliver latency to the last member of a 256-member room, each
beside the direct-message figure of the same run.

    .venv/bin/python benchmarks/room_bench.py [--runs N] [--quick] [--senders N] [--wait-quiet S]

Every run starts a fresh real server for each measurement (``tui-chat serve --auth open --port 0
--auth-rate 100000 --rate-limit 100000 --rate-burst 100000`` with an empty database, through
``checkout_server.start_server``; the limits are lifted so that the benchmark's own clients are not
rate limited), on 127.0.0.1. Load comes from client processes separate from the server (this
script re-run with ``--_worker``: one or two asyncio processes, all connections of a process in
one event loop). Every member signs in (open mode: ``POST /auth/login {username, device}``) and is
connected for the whole run; the room is made with ``createRoom`` (PROTOCOL.md 7.2). Each run has
a room phase and a direct phase on the same server with the same connections open, one after the
other (their order alternates from run to run); each phase has a warm-up, then a fixed window.

1. Delivered msgs/s: ``--senders`` (4) members of a 50-member room each send their next
   ``sendMessage`` to ``#room`` once the previous ``ack`` arrived (closed loop); counted are the
   ``message`` events the members' connections receive within the window (deliveries, not sends:
   one send is 49 deliveries, the sending connection gets the ack). Beside it, the same number of
   direct sender/receiver pairs doing the same: deliveries per second in both.
2. p50/p99 send->deliver latency to the LAST member (the 256th, last in ``members``) of a
   256-member room at 10 msgs/s offered (open loop, ~20 s), every member online. The send time
   (CLOCK_MONOTONIC, ns, the same system-wide clock in every process) travels in the body, as in
   ``server_bench.py``; the last member's connection subtracts it from its own clock. The senders
   and the 254 other members are in one client process, the last member (and the direct receiver)
   in another, so the measuring connection is not queued behind 254 other copies of the frame in
   its own process. Beside it: a direct message at 10 msgs/s, p50/p99 at its receiver. Where the
   last member is in the server's fan-out order is the server's business.

Reported for every phase: the server's CPU per delivered message (psutil, user + system over the
window), the client processes' CPU, and what other processes took (the two cores are shared: a
run where others took more than a quarter of a core is marked noisy; before each measurement the
script waits, at most ``--wait-quiet`` seconds, for a calmer moment). The figures are the median
of ``--runs`` runs (3); ``--quick`` is one short run for smoke testing, not figures to quote.
Every wait is bounded; workers exit by themselves (alarm) if the orchestrator vanishes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkout_server import ROOT, start_server  # noqa: E402
from server_bench import (  # noqa: E402
    BenchError,
    Worker,
    BODY_PAD,
    connect_many,
    cpu_seconds,
    device_of,
    emit,
    machine_busy_s,
    machine_info,
    percentile,
    raise_nofile_limit,
    read_stdin_line,
    sent_ns_of,
    sign_in,
    wait_until_quiet,
)

SCRIPT = Path(__file__).resolve()
"""Client workers are this script re-run with ``--_worker``."""
SERVE_ARGS = ("--auth", "open", "--auth-rate", "100000", "--rate-limit", "100000", "--rate-burst", "100000")
START_TIMEOUT_S = 30.0
SETUP_TIMEOUT_S = 120.0
"""How long a worker may take to sign in, connect and create its room."""
ACK_TIMEOUT_S = 10.0
WORKER_MAX_S = 900
"""A worker process ends itself (SIGALRM) after this long, whatever happens."""
MAX_FRAMES = 50_000_000
MAX_SENDS = 10_000_000
NOISY_PCT = 25.0

THROUGHPUT_ROOM = 50
LATENCY_ROOM = 256
LATENCY_RATE = 10.0

MSG = b'"type":"message"'
ACK = b'"type":"ack"'
ERR = b'"type":"error"'


# ---------------------------------------------------------------------------------------------
# Client workers (run with --_worker): a spec line, set up, "ready"; then one "go" line per phase
# ---------------------------------------------------------------------------------------------


def body_frame(msg_id: str, to: str, sent_ns: int) -> str:
    return json.dumps({"action": "sendMessage", "id": msg_id, "to": to, "body": f"t {sent_ns} {BODY_PAD}"}, separators=(",", ":"))


class Conn:
    __slots__ = ("name", "ws", "waiter", "measure", "latencies", "got")

    def __init__(self, name: str, ws: Any) -> None:
        self.name, self.ws = name, ws
        self.waiter: asyncio.Future | None = None
        self.measure = False
        self.latencies: list[float] = []
        self.got = 0


class Phase:
    """Counters of one phase; the readers add to whichever phase is current."""

    def __init__(self, t0: float = 0.0, warmup: float = 0.0, duration: float = 0.0) -> None:
        self.t0, self.w0, self.w1 = t0, t0 + warmup, t0 + warmup + duration
        self.t0_ns, self.w0_ns, self.w1_ns = int(self.t0 * 1e9), int(self.w0 * 1e9), int(self.w1 * 1e9)
        self.delivered = 0  # message events received by this process's connections within the window
        self.sent = 0
        self.acked = 0  # acks within the window (closed loop)
        self.acks_total = 0
        self.rate_limited = 0
        self.errors = 0
        self.timeouts = 0
        self.closed = 0
        self.ack_ms: list[float] = []
        self.lags: list[float] = []


class State:
    phase = Phase()


async def reader(conn: Conn, state: State) -> None:
    ws = conn.ws
    try:
        for _ in range(MAX_FRAMES):
            raw = await ws.recv(decode=False)
            now_ns = time.monotonic_ns()
            ph = state.phase
            if MSG in raw:
                if ph.w0_ns <= now_ns < ph.w1_ns:
                    ph.delivered += 1
                if conn.measure:
                    sent_ns = sent_ns_of(json.loads(raw)["message"]["body"])
                    if sent_ns >= ph.t0_ns:
                        conn.got += 1
                    if ph.w0_ns <= sent_ns < ph.w1_ns:
                        conn.latencies.append((now_ns - sent_ns) / 1e6)
            elif ACK in raw or ERR in raw:
                if ACK in raw:
                    ph.acks_total += 1
                else:
                    frame = json.loads(raw)
                    if frame.get("code") == "rate_limited":
                        ph.rate_limited += 1
                    else:
                        ph.errors += 1
                        if ph.errors <= 3:
                            print("error frame:", frame, file=sys.stderr, flush=True)
                waiter = conn.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(raw)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the connection closed: counted, and the phase's figures show it
        state.phase.closed += 1
        print(f"reader {conn.name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


async def closed_sender(idx: int, conn: Conn, to: str, ph: Phase, tag: str) -> None:
    """One message in flight: the next goes when this one's ack (or error) is back."""
    loop = asyncio.get_running_loop()
    for i in range(MAX_SENDS):
        if time.monotonic() >= ph.w1:
            return
        fut = loop.create_future()
        conn.waiter = fut
        sent_at = time.monotonic()
        await conn.ws.send(body_frame(f"{tag}-{idx:03d}-{i:08d}", to, time.monotonic_ns()))
        ph.sent += 1
        try:
            raw = await asyncio.wait_for(fut, ACK_TIMEOUT_S)
        except TimeoutError:
            ph.timeouts += 1
            return
        finally:
            conn.waiter = None
        now = time.monotonic()
        if ACK in raw:
            if ph.w0 <= now < ph.w1:
                ph.acked += 1
                ph.ack_ms.append((now - sent_at) * 1000)
        else:
            await asyncio.sleep(0.01)  # refused: do not spin


async def open_loop(senders: list[tuple[Conn, str]], rate: float, ph: Phase, tag: str) -> None:
    """``rate`` sends a second, round-robin over the senders, from t0 to the window's end; each at
    the middle of its slot, so that none falls on the window's edges (a timer may fire a little early)."""
    interval = 1.0 / rate
    for k in range(MAX_SENDS):
        scheduled = ph.t0 + (k + 0.5) * interval
        if scheduled >= ph.w1:
            return
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ph.lags.append((time.monotonic() - scheduled) * 1000)
        conn, to = senders[k % len(senders)]
        await conn.ws.send(body_frame(f"{tag}-{k:08d}", to, time.monotonic_ns()))
        ph.sent += 1


async def create_room(conn: Conn, room: str, members: list[str]) -> None:
    """``createRoom`` from ``conn``; returns once its ``room`` reply came (before any reader runs)."""
    rid = "create-" + room.lstrip("#")
    await conn.ws.send(json.dumps({"action": "createRoom", "room": room, "members": members, "rid": rid}))
    async with asyncio.timeout(30):
        for _ in range(10_000):
            frame = json.loads(await conn.ws.recv())
            if frame.get("rid") == rid:
                if frame.get("type") != "room" or len(frame.get("members", [])) != len(members) + 1:
                    raise RuntimeError(f"createRoom {room}: {str(frame)[:300]}")
                return
    raise RuntimeError(f"createRoom {room}: no reply")


async def sample_cpu(ph: Phase, cpu: dict[str, float]) -> None:
    """This process's CPU seconds at the window's start and end."""
    await asyncio.sleep(max(0.0, ph.w0 - time.monotonic()))
    cpu["w0"] = cpu_seconds()
    await asyncio.sleep(max(0.0, ph.w1 - time.monotonic()))
    cpu["w1"] = cpu_seconds()


async def worker(spec: dict) -> None:
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    names: list[str] = spec["names"]
    tokens = await sign_in(spec["http"], names, deadline)
    urls = [f"{spec['ws']}?token={tokens[n]}&device={device_of(n)}" for n in names]
    socks, errors = await connect_many(urls, deadline)
    if errors:
        emit({"ready": True, "connected": sum(s is not None for s in socks), "errors": errors[:5]})
        return
    conns = {n: Conn(n, ws) for n, ws in zip(names, socks)}
    if spec.get("create"):
        c = spec["create"]
        await create_room(conns[c["by"]], c["room"], c["members"])
    emit({"ready": True, "connected": len(conns), "errors": []})
    state = State()
    readers = [asyncio.create_task(reader(c, state)) for c in conns.values()]
    for _ in range(100):  # phases
        line = await read_stdin_line()
        if not line:
            break
        cmd = json.loads(line)
        if cmd.get("cmd") != "go":
            break
        ph = Phase(float(cmd["t0"]), cmd["warmup"], cmd["duration"])
        measure = set(cmd.get("measure", []))
        for c in conns.values():
            c.measure, c.latencies, c.got = c.name in measure, [], 0
        state.phase = ph
        senders = [(conns[s], to) for s, to in cmd.get("senders", [])]
        if ph.t0 > time.monotonic():
            await asyncio.sleep(ph.t0 - time.monotonic())
        cpu: dict[str, float] = {}
        sampler = asyncio.create_task(sample_cpu(ph, cpu))
        try:
            async with asyncio.timeout(ph.w1 - time.monotonic() + ACK_TIMEOUT_S + 5):
                if cmd["mode"] == "closed":
                    await asyncio.gather(*(closed_sender(i, c, to, ph, cmd["tag"]) for i, (c, to) in enumerate(senders)))
                elif senders:
                    await open_loop(senders, cmd["rate"], ph, cmd["tag"])
                await asyncio.sleep(max(0.0, ph.w1 - time.monotonic()))
                await sampler
        except TimeoutError:
            ph.timeouts += 1
            print("phase timed out", file=sys.stderr, flush=True)
        await asyncio.sleep(cmd.get("drain", 1.0))  # the last copies still under way (bounded)
        emit({
            "result": True, "delivered": ph.delivered, "sent": ph.sent, "acked": ph.acked, "acks_total": ph.acks_total,
            "rate_limited": ph.rate_limited, "errors": ph.errors, "timeouts": ph.timeouts, "closed": ph.closed,
            "ack_p50_ms": percentile(ph.ack_ms, 50), "lag_p99_ms": percentile(ph.lags, 99),
            "cpu_s": cpu.get("w1", cpu_seconds()) - cpu.get("w0", cpu_seconds()),
            "measured": {c.name: {"latencies": c.latencies, "got": c.got} for c in conns.values() if c.measure},
        })  # fmt: skip
    for task in readers:
        task.cancel()


def worker_main() -> None:
    signal.alarm(WORKER_MAX_S)  # the default action ends the process: never outlive a lost orchestrator
    raise_nofile_limit()
    spec = json.loads(sys.stdin.readline() or "{}")
    try:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            loop_factory = None
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(worker(spec))
    except Exception as exc:
        emit({"fatal": f"{type(exc).__name__}: {exc}"[:500]})
    sys.stdout.flush()
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# The orchestrator
# ---------------------------------------------------------------------------------------------


class Server:
    """A fresh ``tui-chat serve`` (checkout_server.start_server), with a bounded start."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        box: queue.Queue = queue.Queue()

        def start() -> None:
            try:
                box.put(start_server(ROOT, folder, *SERVE_ARGS))
            except Exception as exc:
                box.put(exc)

        before = self._my_children()
        threading.Thread(target=start, daemon=True).start()
        try:
            got = box.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            for pid in self._my_children() - before:  # the server we started, by its id
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            raise BenchError(f"the server did not start within {START_TIMEOUT_S:.0f} s") from None
        if isinstance(got, Exception):
            raise BenchError(f"the server did not start: {got}")
        self.proc, self.port = got
        import psutil

        self.ps = psutil.Process(self.proc.pid)

    @staticmethod
    def _my_children() -> set[int]:
        import psutil

        return {p.pid for p in psutil.Process().children()}

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_phase(server: Server, workers: list[Worker], cmds: list[dict], warmup: float, duration: float) -> tuple[list[dict], dict]:
    """Start one phase in every worker at the same t0; the server's CPU and the machine's over the window."""
    t0 = time.monotonic() + 0.3
    for w, cmd in zip(workers, cmds):
        w.send({**cmd, "cmd": "go", "t0": t0, "warmup": warmup, "duration": duration})
    sleep_until(t0 + warmup)
    s0, m0 = server.cpu(), machine_busy_s()
    sleep_until(t0 + warmup + duration)
    s1, m1 = server.cpu(), machine_busy_s()
    results = [w.expect(duration + warmup + ACK_TIMEOUT_S + 40) for w in workers]
    client_cpu = sum(r["cpu_s"] for r in results)
    info = {
        "server_cpu_s": s1 - s0, "client_cpu_s": client_cpu,
        "other_pct": max(0.0, (m1 - m0) - (s1 - s0) - client_cpu) / duration * 100,
    }  # fmt: skip
    return results, info


@dataclass
class Settings:
    runs: int
    quick: bool
    senders: int = 4
    tput_warmup_s: float = 1.0
    tput_s: float = 8.0
    lat_warmup_s: float = 2.0
    lat_s: float = 20.0


def machine_load(info: dict, seconds: float) -> dict[str, float]:
    """The server's and the clients' CPU over a window (percent of one core), and the others'."""
    return {"server_pct": info["server_cpu_s"] / seconds * 100, "client_pct": info["client_cpu_s"] / seconds * 100,
            "other_pct": info["other_pct"]}  # fmt: skip


def measure_throughput(cfg: Settings, run: int, tmp: Path) -> dict[str, dict]:
    """Measurement 1 on a fresh server: room phase and direct phase, deliveries/s of each."""
    server = Server(tmp / f"tput-{run}")
    workers: list[Worker] = []
    try:
        room = f"#tput{run}"
        members = [f"tm{i:03d}" for i in range(THROUGHPUT_ROOM)]
        pairs = [[f"ts{i:03d}", f"tr{i:03d}"] for i in range(cfg.senders)]
        names = members + [n for pair in pairs for n in pair]
        spec = {"http": server.http, "ws": server.ws, "names": names,
                "create": {"by": members[0], "room": room, "members": members[1:]}}  # fmt: skip
        workers.append(Worker(spec, tmp, script=SCRIPT, label=f"tput{run}"))
        workers[0].expect(SETUP_TIMEOUT_S + 30)
        order = ["room", "direct"] if run % 2 == 0 else ["direct", "room"]
        out: dict[str, dict] = {}
        for phase in order:
            senders = [[m, room] for m in members[: cfg.senders]] if phase == "room" else pairs
            cmd = {"mode": "closed", "senders": senders, "tag": f"t{run}{phase}", "drain": 0.5}
            (r,), info = run_phase(server, workers, [cmd], cfg.tput_warmup_s, cfg.tput_s)
            if r["timeouts"] or r["closed"] or r["errors"]:
                raise BenchError(f"{phase} phase: {r['timeouts']} ack timeouts, {r['closed']} connections closed, {r['errors']} errors")
            out[phase] = {
                "rate": r["delivered"] / cfg.tput_s, "sends": r["acked"] / cfg.tput_s,
                "fanout": r["delivered"] / max(1, r["acked"]), "ack_p50_ms": r["ack_p50_ms"],
                "us_per_delivery": info["server_cpu_s"] / max(1, r["delivered"]) * 1e6,
                **machine_load(info, cfg.tput_s), "rate_limited": r["rate_limited"],
            }  # fmt: skip
        return out
    finally:
        for w in workers:
            w.stop()
        server.stop()


def measure_latency(cfg: Settings, run: int, tmp: Path) -> dict[str, dict]:
    """Measurement 2 on a fresh server: 10 msgs/s into a 256-member room, measured at the last
    member; then (or before) 10 msgs/s direct, measured at the receiver."""
    server = Server(tmp / f"lat-{run}")
    workers: list[Worker] = []
    try:
        room = f"#lat{run}"
        members = [f"lm{i:03d}" for i in range(LATENCY_ROOM)]
        last, dm_sender, dm_receiver = members[-1], "lds000", "ldr000"
        probe_names = [last, dm_receiver]
        bulk_names = members[:-1] + [dm_sender]
        # The probe process signs in first, so the room's creator (in the bulk process) can list its member.
        probe = {"http": server.http, "ws": server.ws, "names": probe_names}
        bulk = {"http": server.http, "ws": server.ws, "names": bulk_names,
                "create": {"by": members[0], "room": room, "members": members[1:]}}  # fmt: skip
        workers.append(Worker(probe, tmp, script=SCRIPT, label=f"lat{run}-probe"))
        workers[0].expect(SETUP_TIMEOUT_S + 30)
        workers.append(Worker(bulk, tmp, script=SCRIPT, label=f"lat{run}-bulk"))
        workers[1].expect(SETUP_TIMEOUT_S + 30)
        order = ["room", "direct"] if run % 2 == 0 else ["direct", "room"]
        out: dict[str, dict] = {}
        for phase in order:
            target = last if phase == "room" else dm_receiver
            senders = [[members[0], room]] if phase == "room" else [[dm_sender, dm_receiver]]
            cmds = [
                {"mode": "open", "measure": [target], "drain": 2.0},
                {"mode": "open", "senders": senders, "rate": LATENCY_RATE, "tag": f"l{run}{phase}", "drain": 2.0},
            ]  # fmt: skip
            (rp, rb), info = run_phase(server, workers, cmds, cfg.lat_warmup_s, cfg.lat_s)
            lat = rp["measured"][target]["latencies"]
            got = rp["measured"][target]["got"]
            delivered = rp["delivered"] + rb["delivered"]
            if rb["closed"] or rp["closed"] or rb["errors"]:
                raise BenchError(f"{phase} phase: {rb['closed'] + rp['closed']} connections closed, {rb['errors']} errors")
            out[phase] = {
                "p50": percentile(lat, 50), "p99": percentile(lat, 99), "samples": len(lat),
                "lost": rb["sent"] - got, "sent": rb["sent"], "lag_p99_ms": rb["lag_p99_ms"],
                "us_per_delivery": info["server_cpu_s"] / max(1, delivered) * 1e6, "deliveries_per_s": delivered / cfg.lat_s,
                **machine_load(info, cfg.lat_s), "rate_limited": rb["rate_limited"],
            }  # fmt: skip
        return out
    finally:
        for w in workers:
            w.stop()
        server.stop()


def med(runs: list[dict], phase: str, key: str) -> float:
    values = [r[phase][key] for r in runs if phase in r and not math.isnan(r[phase][key])]
    return statistics.median(values) if values else float("nan")


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "us":
        return f"{value:.1f} us"
    return f"{value:.2f}"


def noisy(entry: dict) -> str:
    return " NOISY" if entry["other_pct"] > NOISY_PCT else ""


def quiet_note(max_wait_s: float) -> None:
    """Other people's work shares the two cores: wait (bounded) for a calmer moment before a measurement."""
    busy = wait_until_quiet(max_wait_s, NOISY_PCT)
    if busy:
        print(f"      warning: {busy}")


def orchestrate(args: argparse.Namespace) -> int:
    raise_nofile_limit()  # inherited by the server and the workers
    cfg = Settings(runs=args.runs or (1 if args.quick else 3), quick=args.quick, senders=args.senders)
    if args.wait_quiet is None:
        args.wait_quiet = 0.0 if args.quick else 10.0
    if args.quick:
        cfg.tput_warmup_s, cfg.tput_s = 0.5, 3.0
        cfg.lat_warmup_s, cfg.lat_s = 1.0, 6.0
    started = time.monotonic()
    print("tui-chat room benchmark" + (" (--quick)" if args.quick else ""))
    for line in machine_info():
        print("  " + line)
    print(f"  {cfg.runs} run(s), a fresh server per measurement and run, server flags: {' '.join(SERVE_ARGS)}")
    sys.stdout.flush()
    tmp = Path(tempfile.mkdtemp(prefix="tui-chat-room-bench-"))
    tput_runs: list[dict] = []
    lat_runs: list[dict] = []
    failures: list[str] = []
    try:
        for run in range(cfg.runs):
            try:
                quiet_note(args.wait_quiet)
                t = measure_throughput(cfg, run, tmp)
                tput_runs.append(t)
                for phase in ("room", "direct"):
                    e = t[phase]
                    who = f"{THROUGHPUT_ROOM}-member room, {cfg.senders} senders" if phase == "room" else f"{cfg.senders} pairs"
                    print(
                        f"[{time.monotonic() - started:5.0f} s] throughput run {run + 1} {phase:6} ({who}): "
                        f"{e['rate']:,.0f} deliveries/s = {e['sends']:,.0f} sends/s x {e['fanout']:.1f}, send->ack p50 {e['ack_p50_ms']:.1f} ms, "
                        f"server CPU {e['server_pct']:.0f}% = {e['us_per_delivery']:.1f} us/delivery, clients CPU {e['client_pct']:.0f}%, "
                        f"other processes ~{e['other_pct']:.0f}%{noisy(e)}"
                    )  # fmt: skip
            except BenchError as exc:
                failures.append(f"throughput run {run + 1}: {exc}")
                print(f"[{time.monotonic() - started:5.0f} s] throughput run {run + 1} FAILED: {exc}")
            sys.stdout.flush()
            try:
                quiet_note(args.wait_quiet)
                lat = measure_latency(cfg, run, tmp)
                lat_runs.append(lat)
                for phase in ("room", "direct"):
                    e = lat[phase]
                    where = f"member {LATENCY_ROOM} of {LATENCY_ROOM}" if phase == "room" else "the receiver"
                    print(
                        f"[{time.monotonic() - started:5.0f} s] latency run {run + 1} {phase:6} at {where}: p50 {e['p50']:.2f} ms, "
                        f"p99 {e['p99']:.2f} ms, {e['samples']} samples, sent {e['sent']}"
                        + (f" LOST {e['lost']}" if e["lost"] else "")
                        + f", schedule lag p99 {e['lag_p99_ms']:.2f} ms, {e['deliveries_per_s']:,.0f} deliveries/s, "
                        f"server CPU {e['server_pct']:.0f}% = {e['us_per_delivery']:.1f} us/delivery, clients CPU {e['client_pct']:.0f}%, "
                        f"other processes ~{e['other_pct']:.0f}%{noisy(e)}"
                    )  # fmt: skip
            except BenchError as exc:
                failures.append(f"latency run {run + 1}: {exc}")
                print(f"[{time.monotonic() - started:5.0f} s] latency run {run + 1} FAILED: {exc}")
            sys.stdout.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    n_t, n_l = len(tput_runs), len(lat_runs)
    rows = [
        (f"1. delivered msgs/s ({cfg.senders} senders, closed loop)", tput_runs, "rate", "/s", True),
        ("1.   (sends acked/s)", tput_runs, "sends", "/s", True),
        ("1.   server CPU per delivery", tput_runs, "us_per_delivery", "us", False),
        (f"2. send->deliver p50 @{LATENCY_RATE:g} msgs/s", lat_runs, "p50", "ms", False),
        (f"2. send->deliver p99 @{LATENCY_RATE:g} msgs/s", lat_runs, "p99", "ms", False),
    ]
    print()
    head = f"{'measurement (median of runs: 1. ' + str(n_t) + ', 2. ' + str(n_l) + ')':<46} {'room':>14} {'direct':>14} {'room/direct':>12}"
    print(head)
    print("-" * len(head))
    for label, runs, key, unit, _ in rows:
        room_v, direct_v = med(runs, "room", key), med(runs, "direct", key)
        ratio = room_v / direct_v if direct_v and not math.isnan(direct_v) else float("nan")
        print(f"{label:<46} {fmt(room_v, unit):>14} {fmt(direct_v, unit):>14} {fmt(ratio, 'x'):>12}")
    print()
    print("server CPU per delivery: the server's user + system time over the window / the deliveries in it (psutil);")
    print("in measurement 2 (10 msgs/s) it is mostly the server's idle cost, so it is only in the per-run lines above.")
    print(f"room: 1. a {THROUGHPUT_ROOM}-member room (deliveries = message events at the members), "
          f"2. the last member of a {LATENCY_ROOM}-member room; direct: 1. {cfg.senders} sender/receiver pairs, 2. one pair;")
    print("all members online; the same server and connections for both columns of a run.")
    if any(e["other_pct"] > NOISY_PCT for r in tput_runs + lat_runs for e in r.values()):
        print(f"WARNING: other processes took more than {NOISY_PCT:.0f}% of a core during some phases (NOISY above).")
    if any(e["client_pct"] > 85 for r in tput_runs for e in r.values()):
        print("NOTE: the client process was near a full core in some throughput phase: that figure may be the client's limit.")
    if args.quick:
        print("--quick: one short run; not the figures to quote.")
    for failure in failures:
        print(f"\nFAILED {failure}")
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=0, help="runs (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="one short run for smoke testing")
    parser.add_argument("--senders", type=int, default=4, help="room senders in measurement 1, and direct pairs beside them (default %(default)s)")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="S",
                        help="before each measurement wait up to S seconds for other processes to leave the CPUs "
                             "idle (default 10, --quick 0)")
    parser.add_argument("--_worker", dest="worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return 0
    if not 1 <= args.senders <= THROUGHPUT_ROOM:
        parser.error(f"--senders must be 1..{THROUGHPUT_ROOM}")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
