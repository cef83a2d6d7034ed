"""Client figures against a real server (a script, not a test):

1. time from link restored to outbox empty for 1,000 queued messages (median of runs);
   next to it the yardstick: a bare ``websockets`` client that connects to the raw echo server
   and sends the same 1,000 frames exactly as fast as the protocol's rate limit allows
   (100/s, bursts of 500), until every echo is back. That is the floor any client can reach;
2. the reconnect delays the client actually chose over 20 cuts, with the real backoff.

    .venv/bin/python benchmarks/client_flush.py [--runs 3] [--json FILE]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keyring  # noqa: E402
import keyring.backends.fail  # noqa: E402

from tui_chat_dev.waiting import wait_until as until  # noqa: E402
from tui_chat_dev.faultproxy import FaultProxy  # noqa: E402
from tui_chat_dev.serverproc import start_server  # noqa: E402
from benchmarks.server_bench import ServerProcess  # noqa: E402
from tui_chat.client.service import ChatClient  # noqa: E402
from tui_chat.protocol import RATE_LIMIT_BURST, RATE_LIMIT_PER_SECOND  # noqa: E402
from tui_chat.ratelimit import TokenBucket  # noqa: E402


async def flush_run(server, folder: Path, run: int, count: int) -> float:
    proxy = await FaultProxy(server.port).start()
    url = f"http://127.0.0.1:{proxy.port}"
    receiver = ChatClient(server.http_url, data_folder=folder / f"r{run}", device=f"recv-device-{run}")
    await receiver.sign_in(f"recv{run}", "correct horse battery", create=True)
    sender = ChatClient(url, data_folder=folder / f"s{run}", device=f"send-device-{run}")
    await sender.sign_in(f"send{run}", "correct horse battery", create=True)
    proxy.refuse = True  # offline: everything typed now waits in the outbox
    sender.start()
    await until(sender, lambda: not sender.online)
    for i in range(count):
        sender.send(f"recv{run}", f"queued {i}")
    proxy.refuse = False
    sender.reconnect_now()
    started = time.perf_counter()
    await until(sender, lambda: sender.queued == 0, timeout=120)
    elapsed = time.perf_counter() - started
    await sender.stop()
    await proxy.stop()
    return elapsed


async def yardstick_run(echo_url: str, count: int) -> float:
    """Connect a bare websockets client and push ``count`` chat-sized frames through the
    protocol's own token bucket into the echo server; seconds until the last echo is back."""
    from websockets.asyncio.client import connect

    started = time.perf_counter()
    async with connect(echo_url, compression=None) as ws:
        bucket = TokenBucket(RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST, time.monotonic)

        async def pump() -> None:
            for i in range(count):
                while wait_ms := bucket.take():
                    await asyncio.sleep(wait_ms / 1000)
                frame = {"action": "sendMessage", "id": f"yardstick-{i:06d}", "to": "recv", "body": f"queued {i}"}
                await ws.send(json.dumps(frame))

        sender = asyncio.create_task(pump())
        for _ in range(count):
            await ws.recv()
        await sender
    return time.perf_counter() - started


async def reconnect_delays(server, folder: Path, cuts: int) -> list[float]:
    proxy = await FaultProxy(server.port).start()
    client = ChatClient(f"http://127.0.0.1:{proxy.port}", data_folder=folder / "cuts", device="cuts-device-1")
    await client.sign_in("cutter", "correct horse battery", create=True)
    client.start()
    observed: list[float] = []
    for _ in range(cuts):
        await until(client, lambda: client.online, timeout=60)
        went_down = time.perf_counter()
        proxy.cut()
        await until(client, lambda: not client.online)
        await until(client, lambda: client.online, timeout=60)
        observed.append(time.perf_counter() - went_down)
    chosen = list(client.connection.delays)
    await client.stop()
    await proxy.stop()
    return [round(d, 2) for d in chosen], [round(d, 2) for d in observed]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--cuts", type=int, default=20)
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE (used by report.py)")
    args = parser.parse_args()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = start_server(folder / "server")
        try:
            flushes = [await flush_run(server, folder, run, args.count) for run in range(args.runs)]
            echo = ServerProcess("echo", folder).start()
            try:
                floors = [await yardstick_run(echo.ws_url, args.count) for _ in range(args.runs)]
            finally:
                echo.stop()
            chosen, observed = await reconnect_delays(server, folder, args.cuts)
        finally:
            server.stop()
        print(f"outbox flush of {args.count} queued messages after the link returns: "
              f"median {statistics.median(flushes):.2f} s (runs: {', '.join(f'{f:.2f}' for f in flushes)})")
        floor = max(0.0, (args.count - RATE_LIMIT_BURST) / RATE_LIMIT_PER_SECOND)
        print(f"  yardstick, raw websockets at the protocol's rate limit into an echo server: "
              f"median {statistics.median(floors):.2f} s (runs: {', '.join(f'{f:.2f}' for f in floors)}; "
              f"the limit alone needs {floor:.1f} s)")
        print(f"reconnect delays chosen over {args.cuts} cuts (s): {chosen}")
        print(f"  time from cut to online again (s): median {statistics.median(observed):.2f}, max {max(observed):.2f}")
        if args.json:
            Path(args.json).write_text(json.dumps({"flush": flushes, "flush_yardstick": floors, "count": args.count,
                                                   "reconnect_observed": observed}))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
