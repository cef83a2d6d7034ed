"""Unloaded send→deliver latency (a script, not a test): one pair, one message at a time.

A real ``tui-chat serve --auth open`` (from ``--checkout``, this one by default) and, in the same
run, the raw ``websockets`` echo server of ``server_bench.py`` as the yardstick, each in its own
process on 127.0.0.1, all running at once and sampled in turn, one message each per round, so
that a slow moment of a shared machine falls on all of them alike. The sender sends a message,
the receiver's copy arrives, then the next one goes: nothing else is happening on the server. For the echo server the same frame makes a round
trip from one connection (the two hops a chat message makes: in, then out). Reported: p50 and
p99 over ``--count`` messages, the median over ``--runs``. This includes the durable commit
(``fsync``) before the ack and delivery; the disk's own ``fsync`` time is printed beside it.

    .venv/bin/python benchmarks/idle_latency.py [--count 2000] [--runs 3] [--checkout DIR] [--against DIR]

``--against`` runs a second checkout in the same rounds: the way to tell whether a change helped
on a machine whose speed drifts by a quarter from one minute to the next.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkout_server import ROOT, start_server  # noqa: E402

WARM_UP = 100


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def start_echo() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "server_bench.py"), "--_echo-server"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    return proc, int(json.loads(proc.stdout.readline())["port"])


class ChatPair:
    """A running ``tui-chat serve`` from one checkout, with its two signed-in sockets."""

    def __init__(self, checkout: Path, folder: Path) -> None:
        self.checkout, self.folder = checkout, folder
        self.sent = 0

    async def __aenter__(self) -> "ChatPair":
        # One message a millisecond is past the per-connection rate limit, which is not what is measured.
        self.proc, port = start_server(self.checkout, self.folder, "--auth", "open", "--rate-limit", "100000", "--rate-burst", "100000")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            tokens = [(await http.post("/auth/login", json={"username": n, "device": f"{n}-device"})).json()["token"]
                      for n in ("idlea", "idleb")]  # fmt: skip
        self.a = await connect(f"ws://127.0.0.1:{port}/ws?device=idlea-device", additional_headers={"Authorization": f"Bearer {tokens[0]}"})
        self.b = await connect(f"ws://127.0.0.1:{port}/ws?device=idleb-device", additional_headers={"Authorization": f"Bearer {tokens[1]}"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in (self.a, self.b):
            await ws.close()
        self.proc.terminate()
        self.proc.wait(30)

    async def sample(self) -> float:
        """One message from a to b: milliseconds from send to delivery."""
        self.sent += 1
        started = time.perf_counter()
        await self.a.send(json.dumps({"action": "sendMessage", "id": f"idle-{self.sent:08d}", "to": "idleb", "body": "x" * 40}))
        while '"type":"message"' not in await self.b.recv():
            pass
        elapsed = (time.perf_counter() - started) * 1000
        while '"type":"ack"' not in await self.a.recv():  # the ack left before the delivery
            pass
        return elapsed


class EchoRoundTrip:
    """The yardstick: the same frame through the raw ``websockets`` echo server and back."""

    async def __aenter__(self) -> "EchoRoundTrip":
        self.proc, port = start_echo()
        self.ws = await connect(f"ws://127.0.0.1:{port}", compression=None)
        self.frame = json.dumps({"action": "sendMessage", "id": "idle-00000000", "to": "idleb", "body": "x" * 40})
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        self.proc.terminate()
        self.proc.wait(30)

    async def sample(self) -> float:
        started = time.perf_counter()
        await self.ws.send(self.frame)
        await self.ws.recv()
        return (time.perf_counter() - started) * 1000


async def one_run(checkouts: list[Path], count: int) -> list[tuple[float, float]]:
    """Every server at once, sampled in turn (one message each, round after round), so a slow
    moment of this shared machine falls on all of them alike: p50 and p99 of each, echo last."""
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            targets = []
            for i, checkout in enumerate(checkouts):
                folder = Path(tmp) / str(i)
                folder.mkdir()
                targets.append(await stack.enter_async_context(ChatPair(checkout, folder)))
            targets.append(await stack.enter_async_context(EchoRoundTrip()))
            samples: list[list[float]] = [[] for _ in targets]
            for i in range(WARM_UP + count):
                for target, kept in zip(targets, samples):
                    elapsed = await target.sample()
                    if i >= WARM_UP:
                        kept.append(elapsed)
    return [percentiles(kept) for kept in samples]


def fsync_ms(seconds: float = 5.0) -> tuple[float, float, float]:
    """p50, p99 and p99.9 of ``fdatasync`` after a 16 KiB append (a commit's size), one every
    millisecond for ``seconds``: its tail is what a durable commit cannot go below."""
    with tempfile.TemporaryDirectory() as tmp:
        fd = os.open(os.path.join(tmp, "f"), os.O_WRONLY | os.O_CREAT)
        samples = []
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            os.write(fd, b"x" * 16384)
            started = time.perf_counter()
            os.fdatasync(fd)
            samples.append((time.perf_counter() - started) * 1000)
            time.sleep(0.001)
        os.close(fd)
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)], samples[int(len(samples) * 0.999)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument("--against", type=Path, help="another checkout, measured in the same rounds (an A/B comparison)")
    args = parser.parse_args()
    checkouts = [args.checkout] + ([args.against] if args.against else [])
    names = ["tui-chat"] if not args.against else [f"A {args.checkout}", f"B {args.against}"]
    runs = [asyncio.run(one_run(checkouts, args.count)) for _ in range(args.runs)]
    for column, name in enumerate([*names, "echo"]):
        p50 = statistics.median(run[column][0] for run in runs)
        p99 = statistics.median(run[column][1] for run in runs)
        print(f"{name:9} send->deliver  p50 {p50:5.2f} ms   p99 {p99:5.2f} ms   (median of {args.runs} runs of {args.count})")
    p50, p99, p999 = fsync_ms()
    print(f"fsync on this disk: p50 {p50:.2f} ms, p99 {p99:.2f} ms, p99.9 {p999:.2f} ms (a durable commit waits for one)")


if __name__ == "__main__":
    main()
