"""A reconnect storm (a script, not a test): N clients connect at once and each asks for the user
list, as the app does when an office's Wi-Fi comes back.

A real ``tui-chat serve --auth open`` (from ``--checkout``, this one by default, so an older
release can be measured the same way) on 127.0.0.1; the N nicknames are signed in beforehand.
Then every client connects at the same moment and sends ``getClients``. Reported, the median over
``--runs``: the time until every client has its ``clients`` reply, and the frames the clients
received until a second passed without any (the presence fan-out the storm cost). Before
PROTOCOL.md 7.1's coalescing that was about N²/2 frames.

    .venv/bin/python benchmarks/storm_bench.py [--clients 1000] [--runs 3] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

QUIET_S = 1.0


async def one_run(checkout: Path, clients: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(checkout, Path(tmp), "--auth", "open")
        server = psutil.Process(proc.pid)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                tokens = []
                for i in range(clients):
                    answer = await http.post("/auth/login", json={"username": f"storm{i:05d}", "device": f"storm-device-{i:05d}"})
                    tokens.append(answer.json()["token"])
            rss_before = server.memory_info().rss
            frames = 0
            replied = asyncio.Event()
            answered = 0
            last_frame = time.monotonic()
            sockets = []

            async def client(i: int) -> None:
                nonlocal frames, answered, last_frame
                ws = await connect(f"ws://127.0.0.1:{port}/ws?device=storm-device-{i:05d}", open_timeout=120,
                                   additional_headers={"Authorization": f"Bearer {tokens[i]}"}, max_size=2**20)  # fmt: skip
                sockets.append(ws)
                await ws.send(json.dumps({"action": "getClients", "rid": "c"}))
                async for raw in ws:
                    frames += 1
                    last_frame = time.monotonic()
                    if '"rid":"c"' in raw and '"clients"' in raw:
                        answered += 1
                        if answered == clients:
                            replied.set()

            started = time.monotonic()
            cpu_before = sum(server.cpu_times()[:2])
            tasks = [asyncio.create_task(client(i)) for i in range(clients)]
            await asyncio.wait_for(replied.wait(), 600)
            all_replied = time.monotonic() - started
            while time.monotonic() - last_frame < QUIET_S:
                await asyncio.sleep(0.1)
            cpu = sum(server.cpu_times()[:2]) - cpu_before
            rss = server.memory_info().rss
            for task in tasks:
                task.cancel()
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        finally:
            proc.terminate()
            proc.wait(60)
    return {"seconds": all_replied, "frames": frames, "server_cpu_s": cpu, "rss_growth_mib": (rss - rss_before) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    args = parser.parse_args()
    try:
        import uvloop  # the load generator too: 1,000 sockets in one process

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    runs = [asyncio.run(one_run(args.checkout, args.clients)) for _ in range(args.runs)]
    for key, unit in (("seconds", "s until every client has its clients reply"), ("frames", "frames received until 1 s of quiet"),
                      ("server_cpu_s", "s of server CPU"), ("rss_growth_mib", "MiB of server RSS growth")):  # fmt: skip
        values = [r[key] for r in runs]
        print(f"{statistics.median(values):12.2f}  {unit}   (runs: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
