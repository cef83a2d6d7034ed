"""Cold start with the server down: process start to a usable chat screen from the cache (a script).

"Usable" is the first line painted of the cached conversation (the bare app: of its one widget).
A real ``tui-chat serve`` is started once to sign a user in (the session kept in a 0600 file, as
``store_tokens_in_file`` asks) and fill the cache with 500 messages, then stopped. Each run starts
a fresh Python process that builds the real app from the config and runs it headless until the
chat screen shows the cached conversation; the time is from spawning the process to that moment.
The yardstick, in the same run: a bare Textual app with one ``Static``, from spawn to mounted.
Both start from compiled bytecode, as an installed app does (pip compiles what it installs; an
editable checkout under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile tui-chat on every
start, and Textual never): one untimed start of each writes it and warms the file cache.

    .venv/bin/python benchmarks/cold_start.py [--runs 5] [--json FILE]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSWORD = "correct horse battery"
MESSAGES = 500


async def child_app() -> None:
    """In the measured process: the real app, from the config, with the server unreachable.
    Ready at the first line painted of the cached conversation."""
    from tui_chat.ui.app import ChatApp
    from tui_chat.ui.session import Session
    from tui_chat.ui.widgets.conversation import ConversationView

    painted = asyncio.Event()
    first_paint: list[float] = []
    paint = ConversationView.render_line

    def noting_first_paint(view, y):
        if view.rows and not first_paint:
            first_paint.append(time.time())
            painted.set()
        return paint(view, y)

    ConversationView.render_line = noting_first_paint
    session = Session.from_config()
    app = ChatApp(session, auto_away_minutes=None)
    async with app.run_test(size=(120, 40)):
        await painted.wait()
        print(f"ready {first_paint[0]}", flush=True)
        await app.shut_down()


async def child_bare() -> None:
    """The yardstick: a bare Textual app, ready at the first line its one widget paints."""
    from textual.app import App
    from textual.widgets import Static

    painted = asyncio.Event()
    first_paint: list[float] = []

    class Hello(Static):
        def render_line(self, y):
            if not first_paint:
                first_paint.append(time.time())
                painted.set()
            return super().render_line(y)

    class Bare(App):
        def compose(self):
            yield Hello("hello")

    app = Bare()
    async with app.run_test(size=(120, 40)):
        await painted.wait()
        print(f"ready {first_paint[0]}", flush=True)


def timed_start(kind: str, env: dict) -> float:
    """Seconds from spawning the child to its first paint (both on this machine's wall clock)."""
    started = time.time()
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind], env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    proc.wait(30)
    if len(line) != 2 or line[0] != "ready":
        raise RuntimeError(f"the {kind} child did not get ready")
    return float(line[1]) - started


async def prepare(home: Path) -> dict:
    """A user signed in once (session in a file), 500 messages cached; the server then stopped."""
    from tui_chat_dev.serverproc import signup, start_server
    from tui_chat.client.service import ChatClient
    from tui_chat.client.config import load_config

    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    for name in ("DATA", "CONFIG", "CACHE"):
        env[f"TUI_CHAT_{name}_DIR"] = os.environ[f"TUI_CHAT_{name}_DIR"] = str(home / name.lower())
    os.environ["PYTHON_KEYRING_BACKEND"] = env["PYTHON_KEYRING_BACKEND"]
    server = start_server(home / "server")
    try:
        await signup(server.http_url, "bob")
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "config" / "config.toml").write_text(
            f'server = "{server.http_url}"\nusername = "alice"\nstore_tokens_in_file = true\nnotifications = false\n'
        )
        client = ChatClient.from_config(load_config())
        await client.sign_in("alice", PASSWORD, create=True)
        client.start()
        for i in range(MESSAGES):
            client.send("bob", f"message {i} " + "words " * 6)
        while client.queued:
            await asyncio.sleep(0.05)
        client.remember("last_conversation", "bob")  # the app opens it, as after a real quit there
        await client.close()
    finally:
        server.stop()
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=("app", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child_app() if args.child == "app" else child_bare())
        return
    with tempfile.TemporaryDirectory() as tmp:
        env = asyncio.run(prepare(Path(tmp)))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        timed_start("bare", env), timed_start("app", env)  # untimed: bytecode written, files cached
        app_runs, bare_runs = [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine
            bare_runs.append(timed_start("bare", env))
            app_runs.append(timed_start("app", env))
    app_s, bare_s = statistics.median(app_runs), statistics.median(bare_runs)
    print(f"cold start, server down, to the cached conversation ({MESSAGES} messages): median {app_s * 1000:.0f} ms "
          f"(runs: {', '.join(f'{r * 1000:.0f}' for r in app_runs)})")  # fmt: skip
    print(f"  yardstick, a bare Textual app to its first paint: median {bare_s * 1000:.0f} ms "
          f"(runs: {', '.join(f'{r * 1000:.0f}' for r in bare_runs)})")  # fmt: skip
    print(f"  ratio: {app_s / bare_s:.2f}x (target <= 2x)")
    if args.json:
        args.json.write_text(json.dumps({"app_s": app_runs, "bare_s": bare_runs}))


if __name__ == "__main__":
    main()
