"""Unloaded send→deliver latency (a script, not a test): one pair, one message at a time.

A real ``tui-chat serve --auth open`` (from ``--checkout``, this one by default) and, in the same
run, the raw ``websockets`` echo server of ``server_bench.py`` as the yardstick, each in its own
process on 127.0.0.1. The sender sends a message, the receiver's copy arrives, then the next one
goes: nothing else is happening on the server. For the echo server the same frame makes a round
trip from one connection (the two hops a chat message makes: in, then out). Reported: p50 and
p99 over ``--count`` messages, the median over ``--runs``. This includes the durable commit
(``fsync``) before the ack and delivery; the disk's own ``fsync`` time is printed beside it.

    .venv/bin/python benchmarks/idle_latency.py [--count 2000] [--runs 3] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import asyncio
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


async def chat_run(checkout: Path, count: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        # One message a millisecond is past the per-connection rate limit, which is not what is measured.
        proc, port = start_server(checkout, Path(tmp), "--auth", "open", "--rate-limit", "100000", "--rate-burst", "100000")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                tokens = [(await http.post("/auth/login", json={"username": n, "device": f"{n}-device"})).json()["token"]
                          for n in ("idlea", "idleb")]  # fmt: skip
            headers = [{"Authorization": f"Bearer {t}"} for t in tokens]
            async with connect(f"ws://127.0.0.1:{port}/ws?device=idlea-device", additional_headers=headers[0]) as a, \
                       connect(f"ws://127.0.0.1:{port}/ws?device=idleb-device", additional_headers=headers[1]) as b:  # fmt: skip
                samples = []
                for i in range(WARM_UP + count):
                    started = time.perf_counter()
                    await a.send(json.dumps({"action": "sendMessage", "id": f"idle-{i:08d}", "to": "idleb", "body": "x" * 40}))
                    while '"type":"message"' not in await b.recv():
                        pass
                    if i >= WARM_UP:
                        samples.append((time.perf_counter() - started) * 1000)
                    while '"type":"ack"' not in await a.recv():  # the ack left before the delivery
                        pass
        finally:
            proc.terminate()
            proc.wait(30)
    return percentiles(samples)


async def echo_run(count: int) -> tuple[float, float]:
    proc, port = start_echo()
    try:
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            frame = json.dumps({"action": "sendMessage", "id": "idle-00000000", "to": "idleb", "body": "x" * 40})
            samples = []
            for i in range(WARM_UP + count):
                started = time.perf_counter()
                await ws.send(frame)
                await ws.recv()
                if i >= WARM_UP:
                    samples.append((time.perf_counter() - started) * 1000)
    finally:
        proc.terminate()
        proc.wait(30)
    return percentiles(samples)


def fsync_ms(count: int = 300) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        fd = os.open(os.path.join(tmp, "f"), os.O_WRONLY | os.O_CREAT)
        samples = []
        for _ in range(count):
            os.write(fd, b"x" * 100)
            started = time.perf_counter()
            os.fsync(fd)
            samples.append((time.perf_counter() - started) * 1000)
        os.close(fd)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    args = parser.parse_args()
    chat, echo = [], []
    for _ in range(args.runs):  # interleaved, so both see the same machine
        chat.append(asyncio.run(chat_run(args.checkout, args.count)))
        echo.append(asyncio.run(echo_run(args.count)))
    for name, runs in (("tui-chat", chat), ("echo", echo)):
        p50, p99 = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"{name:9} send->deliver  p50 {p50:5.2f} ms   p99 {p99:5.2f} ms   (median of {args.runs} runs of {args.count})")
    print(f"fsync on this disk: p50 {fsync_ms():.2f} ms (one durable commit waits for at least one)")


if __name__ == "__main__":
    main()
