"""Client figures against a real server (a script, not a test):

1. time from link restored to outbox empty for 1,000 queued messages (median of runs);
2. the reconnect delays the client actually chose over 20 cuts, with the real backoff.

    .venv/bin/python benchmarks/client_flush.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keyring  # noqa: E402
import keyring.backends.fail  # noqa: E402

from tests.client.conftest import wait_until as until  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402
from tests.serverproc import start_server  # noqa: E402
from tui_chat.client.service import ChatClient  # noqa: E402


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
    args = parser.parse_args()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = start_server(folder / "server")
        try:
            flushes = [await flush_run(server, folder, run, args.count) for run in range(args.runs)]
            print(f"outbox flush of {args.count} queued messages after the link returns: "
                  f"median {statistics.median(flushes):.2f} s (runs: {', '.join(f'{f:.2f}' for f in flushes)})")
            floor = max(0.0, (args.count - 500) / 100)
            print(f"  the protocol's rate limit (100/s, bursts of 500) alone needs {floor:.1f} s for {args.count}")
            chosen, observed = await reconnect_delays(server, folder, args.cuts)
            print(f"reconnect delays chosen over {args.cuts} cuts (s): {chosen}")
            print(f"  time from cut to online again (s): median {statistics.median(observed):.2f}, max {max(observed):.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
