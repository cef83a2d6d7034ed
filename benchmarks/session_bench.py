"""What sessions cost (a script, not a test): the handshake and the refresh, with and without them.

A real ``tui-chat serve`` (from ``--checkout``, this one by default, so the release before
sessions can be measured the same way) on 127.0.0.1. One account; then, one after another,
``--count`` WebSocket handshakes (open, then close) and ``--count`` refreshes. Reported: the p50 and
p99 of each, the median over ``--runs``. With sessions a handshake reads the session once more
and a refresh is one UPDATE instead of a DELETE and an INSERT.

    .venv/bin/python benchmarks/session_bench.py [--count 300] [--runs 3] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkout_server import ROOT, start_server  # noqa: E402


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def one_run(checkout: Path, count: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(checkout, Path(tmp))
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                issued = (await http.post("/auth/signup", json={"username": "bench", "password": "long enough"})).json()
                handshakes = []
                for i in range(count):
                    started = time.perf_counter()
                    async with connect(f"ws://127.0.0.1:{port}/ws?device=bench-device-{i % 4}",
                                       additional_headers={"Authorization": f"Bearer {issued['token']}"}):  # fmt: skip
                        handshakes.append((time.perf_counter() - started) * 1000)
                refreshes, token = [], issued["refreshToken"]
                for _ in range(count):
                    started = time.perf_counter()
                    answer = await http.post("/auth/refresh", json={"refreshToken": token})
                    refreshes.append((time.perf_counter() - started) * 1000)
                    token = answer.json()["refreshToken"]
        finally:
            proc.terminate()
            proc.wait(30)
    return {"handshake": percentiles(handshakes), "refresh": percentiles(refreshes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args.checkout, args.count)) for _ in range(args.runs)]
    for what in ("handshake", "refresh"):
        p50 = statistics.median(r[what][0] for r in runs)
        p99 = statistics.median(r[what][1] for r in runs)
        print(f"{what:9}  p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   (median of {args.runs} runs of {args.count})")


if __name__ == "__main__":
    main()
