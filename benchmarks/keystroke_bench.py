"""Keystroke latency of the real app while messages pour in (a script, not a test).

The real ``ChatApp`` (headless, 120×40) over the real client service and a real ``tui-chat serve``
on 127.0.0.1. A second process sends 100 messages/s for another conversation and 20/s for the
one on screen, for ``--seconds``; meanwhile a key is typed into the composer every 40 ms and
timed from the moment it reaches the app's queue to the moment the composer has taken it (its
``TextArea.Changed`` handled; the frame follows at Textual's next refresh, at most 16.7 ms at
60 fps). The yardstick is the same app, the same keys, in the same run, with nothing arriving.

    .venv/bin/python benchmarks/keystroke_bench.py [--seconds 10] [--runs 3] [--json FILE]
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
from textual import events  # noqa: E402

from tui_chat_dev.serverproc import signup, start_server  # noqa: E402
from tui_chat_dev.wsclient import login  # noqa: E402
from tui_chat.ui.app import ChatApp  # noqa: E402
from tui_chat.ui.screens.chat import ChatScreen  # noqa: E402
from tui_chat.ui.session import Session  # noqa: E402
from tui_chat.ui.widgets.composer import Composer  # noqa: E402

PASSWORD = "correct horse battery"
KEY_EVERY_S = 0.04
OTHER_RATE, OPEN_RATE = 100, 20


def send_load(ws_url: str, tokens: dict[str, str], me: str, seconds: float) -> None:
    """Run as its own process (``--load``): ``loud`` writes 100/s to ``me``, ``chatty`` 20/s,
    each paced evenly; prints ``ready`` once both are connected."""
    from tui_chat_dev.wsclient import WsClient

    async def main() -> None:
        clients = {name: await WsClient.open(ws_url, tokens[name], name, device=f"{name}-bench-1") for name in tokens}
        print("ready", flush=True)
        await asyncio.sleep(0.5)

        async def sender(name: str, rate: int) -> None:
            started = time.perf_counter()
            for i in range(int(seconds * rate)):
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
                body = f"{name} says {i}: " + "words " * 8
                await clients[name].send({"action": "sendMessage", "id": f"{name}-{int(started)}-{i:08d}", "to": me, "body": body})

        await asyncio.gather(sender("loud", OTHER_RATE), sender("chatty", OPEN_RATE))
        for client in clients.values():
            await client.close()

    asyncio.run(main())


async def measure(server, folder: Path, me: str, seconds: float, with_load: bool) -> list[float]:
    session = Session(server=server.http_url, username=me)
    await session.sign_in(server.http_url, me, PASSWORD, create=False, mode="accounts")
    app = ChatApp(session, auto_away_minutes=None)
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        while not (isinstance(app.screen, ChatScreen) and session.connection().state == "online"):
            await pilot.pause(0.05)
        screen: ChatScreen = app.screen
        screen.open_conversation("chatty")
        composer = screen.query_one("#composer")
        sent_at: list[float] = []
        original = Composer.on_text_area_changed

        def timed(self, event) -> None:  # Textual looks handlers up on the class
            original(self, event)
            if self.text and len(latencies) < len(sent_at):
                latencies.append(time.perf_counter() - sent_at[len(latencies)])

        Composer.on_text_area_changed = timed
        load = None
        if with_load:  # another process, as a real sender would be
            tokens = {name: await login(server.http_url, name) for name in ("loud", "chatty")}
            load = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--load", json.dumps([server.ws_url, tokens, me, seconds]),
                stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            assert (await load.stdout.readline()).strip() == b"ready"
            await asyncio.sleep(0.5)
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            sent_at.append(time.perf_counter())
            app.post_message(events.Key("x", "x"))
            await asyncio.sleep(KEY_EVERY_S)
            if len(latencies) == len(sent_at) and len(composer.text) > 100:
                composer.text = ""  # keep the composer one line: the figure is the key, not a growing area
        while len(latencies) < len(sent_at):
            await pilot.pause(0.05)
        Composer.on_text_area_changed = original
        if load is not None:
            await load.wait()
        await app.shut_down()
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    keyring.set_keyring(keyring.backends.fail.Keyring())  # never the OS keyring: tokens in memory
    results: dict[str, list[dict]] = {"loaded": [], "quiet": []}
    with tempfile.TemporaryDirectory() as tmp:
        import os

        for name in ("DATA", "CONFIG", "CACHE"):
            os.environ[f"TUI_CHAT_{name}_DIR"] = str(Path(tmp) / name.lower())
        server = start_server(Path(tmp) / "server")
        try:
            for name in ("loud", "chatty"):
                await signup(server.http_url, name)
            for run in range(args.runs):
                me = f"typist{run}"
                await signup(server.http_url, me)
                for label, load in (("quiet", False), ("loaded", True)):
                    lat = await measure(server, Path(tmp), me, args.seconds, load)
                    figures = {"keys": len(lat), "p50_ms": percentile(lat, 0.5) * 1000, "p99_ms": percentile(lat, 0.99) * 1000,
                               "max_ms": max(lat) * 1000}  # fmt: skip
                    results[label].append(figures)
                    print(f"run {run + 1} {label:6}: {figures['keys']} keys, p50 {figures['p50_ms']:.1f} ms, "
                          f"p99 {figures['p99_ms']:.1f} ms, max {figures['max_ms']:.1f} ms", flush=True)  # fmt: skip
        finally:
            server.stop()
    summary = {label: {k: statistics.median(r[k] for r in runs) for k in ("p50_ms", "p99_ms", "max_ms")} for label, runs in results.items()}
    print(f"median of {args.runs} runs, {OTHER_RATE} msg/s to another conversation + {OPEN_RATE}/s to the open one:")
    for label in ("loaded", "quiet"):
        s = summary[label]
        print(f"  {label:6}: keystroke p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms")
    print(f"  ratio loaded/quiet p99: {summary['loaded']['p99_ms'] / summary['quiet']['p99_ms']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "median": summary}, indent=1))


if __name__ == "__main__":
    if "--load" in sys.argv:  # the sender process runs its own loop
        send_load(*json.loads(sys.argv[sys.argv.index("--load") + 1]))
    else:
        asyncio.run(main())
