"""A real ``tui-chat serve`` from any checkout (this one by default), for the benchmarks that
compare a release with an older one the same way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_server(checkout: Path, folder: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """``tui-chat serve --port 0`` with ``args``, its database in ``folder``; the process and its port.

    Every sign-in comes from 127.0.0.1: where the checkout has the per-address sign-in limit, it
    is lifted (it is for strangers, not what is measured)."""
    help_text = subprocess.run([sys.executable, "-m", "tui_chat", "serve", "--help"], cwd=checkout, capture_output=True, text=True).stdout
    limit = ["--auth-rate", "100000"] if "--auth-rate" in help_text else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui_chat", "serve", "--port", "0", "--db", str(folder / "s.db"), "--log-format", "json", *limit, *args],
        cwd=checkout, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(checkout)},
    )  # fmt: skip
    for line in proc.stderr:
        entry = json.loads(line) if line.startswith("{") else {}
        if entry.get("msg") == "listening":
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # a full pipe would block the server
            return proc, int(entry["port"])
    raise RuntimeError("the server did not start")
