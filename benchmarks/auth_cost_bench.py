"""What a crowd of sign-ins costs the server (a script, not a test).

A real ``tui-chat serve`` (from ``--checkout``, this one by default, so an older release can be
measured the same way) on 127.0.0.1. One chat connection pings every 20 ms throughout; after a
quiet second, ``--logins`` sign-ins with random names are sent at once, as a stranger could.
Reported: the server's peak RSS, and the chat's ping round trip (p50/p99) while it is quiet and
while the sign-ins are being handled, the median over ``--runs``.

    .venv/bin/python benchmarks/auth_cost_bench.py [--logins 50] [--runs 3] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkout_server import ROOT, start_server  # noqa: E402


async def one_run(checkout: Path, logins: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(checkout, Path(tmp))
        server = psutil.Process(proc.pid)
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=120) as http:
                token = (await http.post("/auth/signup", json={"username": "pinger", "password": "long enough"})).json()["token"]
                quiet, busy, peak = [], [], server.memory_info().rss
                async with connect(f"ws://127.0.0.1:{port}/ws?device=pinger-device-1", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                    phase = quiet

                    async def ping_loop() -> None:
                        nonlocal peak
                        n = 0
                        while True:
                            n += 1
                            sent = time.perf_counter()
                            await ws.send(json.dumps({"action": "ping", "rid": f"p{n}"}))
                            while json.loads(await ws.recv()).get("rid") != f"p{n}":
                                pass
                            phase.append((time.perf_counter() - sent) * 1000)
                            peak = max(peak, server.memory_info().rss)
                            await asyncio.sleep(0.02)

                    pinging = asyncio.create_task(ping_loop())
                    await asyncio.sleep(1.0)
                    phase = busy
                    started = time.perf_counter()
                    answers = await asyncio.gather(*(
                        http.post("/auth/login", json={"username": f"guess{secrets.token_hex(4)}", "password": "whatever it is"})
                        for _ in range(logins)
                    ))  # fmt: skip
                    elapsed = time.perf_counter() - started
                    pinging.cancel()
            statuses = sorted({a.status_code for a in answers})
            return {"peak_rss_mib": peak / 2**20, "quiet": quiet, "busy": busy, "seconds": elapsed, "statuses": statuses}
        finally:
            proc.terminate()
            proc.wait(10)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args.checkout, args.logins)) for _ in range(args.runs)]
    med = lambda key: statistics.median(key(r) for r in runs)  # noqa: E731
    print(f"{args.logins} sign-ins at once, {args.checkout} (median of {args.runs}; answers {runs[0]['statuses']}):")
    print(f"  server peak RSS {med(lambda r: r['peak_rss_mib']):.0f} MiB; all answered in {med(lambda r: r['seconds']):.2f} s")
    print(f"  chat ping while quiet p50/p99 {med(lambda r: pct(r['quiet'], .5)):.1f} / {med(lambda r: pct(r['quiet'], .99)):.1f} ms;"
          f" during the sign-ins {med(lambda r: pct(r['busy'], .5)):.1f} / {med(lambda r: pct(r['busy'], .99)):.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
