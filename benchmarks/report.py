"""One benchmark report: the server, client and UI figures next to their yardsticks, in one run.

    python benchmarks/report.py [--quick] [--markdown] [--verbose]

It runs, one after the other on this machine (each in its own processes, all on 127.0.0.1):

- ``server_bench.py``: delivered msgs/s, send->deliver p50/p99, RSS per idle connection, for the
  real server and for a bare ``websockets`` echo server (the physical limit of the transport);
- ``client_flush.py``: outbox flush of 1,000 queued messages after the link returns, and a bare
  ``websockets`` client sending the same frames exactly at the protocol's rate limit;
- ``ui_bench.py``: opening a conversation of 10,000 messages until its first frame, and one new
  message until its frame, next to Textual's bare ``Log`` widget given the same lines.

and prints one table: our figure, the yardstick's, the ratio (ours / yardstick). Every figure is
the median of 3 runs (``--quick``: 1 run of each server and client measurement with smaller sizes,
a few minutes in all; not the figures to quote). ``--markdown`` prints the table as the README
shows it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Row:
    label: str
    ours: float
    yardstick: float
    unit: str
    yardstick_name: str

    @property
    def ratio(self) -> float:
        return self.ours / self.yardstick if self.yardstick else float("nan")


def run_stage(title: str, script: str, args: list[str], json_path: Path, verbose: bool) -> dict:
    """Run one benchmark script; its own report goes to the terminal only with --verbose."""
    print(f"{title}: python benchmarks/{script} {' '.join(args)}", flush=True)
    started = time.monotonic()
    cmd = [sys.executable, str(HERE / script), *args, "--json", str(json_path)]
    done = subprocess.run(cmd, stdout=None if verbose else subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0 or not json_path.exists():
        if done.stdout:
            print(done.stdout[-4000:])
        raise SystemExit(f"{script} failed (exit code {done.returncode})")
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
    return json.loads(json_path.read_text())


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def build_rows(server: dict, client: dict, ui: dict) -> list[Row]:
    def fig(measurement: str, kind: str) -> float:
        return server[measurement][kind]["median"]

    count = client["count"]
    messages = ui["messages"]
    echo = "websockets echo server"
    return [
        Row("delivered msgs/s, durable acks, 100 pairs", fig("tput", "chat"), fig("tput", "echo"), "msgs/s", echo),
        Row("send->deliver p50 at 1,000 msg/s", fig("p50", "chat"), fig("p50", "echo"), "ms", echo),
        Row("send->deliver p99 at 1,000 msg/s", fig("p99", "chat"), fig("p99", "echo"), "ms", echo),
        Row("server RSS per idle connection", fig("rss", "chat"), fig("rss", "echo"), "KB", echo),
        Row(f"conversation open, {messages:,} messages, to first frame", median(ui["first_paint_ms"]),
            median(ui["yardstick_first_paint_ms"]), "ms", "Textual Log widget"),
        Row("one new message to its frame", median(ui["new_message_ms"]),
            median(ui["yardstick_new_message_ms"]), "ms", "Textual Log widget"),
        Row(f"outbox flush, {count:,} queued, link back to empty", median(client["flush"]),
            median(client["flush_yardstick"]), "s", "websockets at the rate limit"),
    ]  # fmt: skip


def fmt(value: float, unit: str) -> str:
    if value != value:  # NaN: the measurement failed
        return "-"
    if unit == "msgs/s":
        return f"{value:,.0f} msgs/s"
    if unit == "ms":
        return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.1f} KB"


def fmt_ratio(value: float) -> str:
    return "-" if value != value else f"{value:.2f}x"


def print_table(rows: list[Row], markdown: bool) -> None:
    if markdown:
        print("| measurement | tui-chat | yardstick | ratio | yardstick is |")
        print("|---|--:|--:|--:|---|")
        for r in rows:
            print(f"| {r.label} | {fmt(r.ours, r.unit)} | {fmt(r.yardstick, r.unit)} | {fmt_ratio(r.ratio)} | {r.yardstick_name} |")
        return
    header = f"{'measurement':<52} {'tui-chat':>14} {'yardstick':>14} {'ratio':>7}   yardstick is"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.label:<52} {fmt(r.ours, r.unit):>14} {fmt(r.yardstick, r.unit):>14} {fmt_ratio(r.ratio):>7}   {r.yardstick_name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short run of each measurement, smaller sizes")
    parser.add_argument("--markdown", action="store_true", help="print the table in Markdown (for the README)")
    parser.add_argument("--verbose", action="store_true", help="show each benchmark's own report as it runs")
    args = parser.parse_args()
    started = time.monotonic()
    runs = "1" if args.quick else "3"
    with tempfile.TemporaryDirectory(prefix="tui-chat-report-") as tmp:
        folder = Path(tmp)
        server = run_stage("server and echo yardstick", "server_bench.py", ["--quick"] if args.quick else [],
                           folder / "server.json", args.verbose)  # fmt: skip
        client = run_stage("client outbox flush and rate-limit yardstick", "client_flush.py",
                           ["--runs", runs, "--cuts", "3"], folder / "client.json", args.verbose)  # fmt: skip
        ui = run_stage("conversation view and Log yardstick", "ui_bench.py",
                       ["--runs", "3" if args.quick else "7", "--memory-runs", "1" if args.quick else "3"], folder / "ui.json", args.verbose)  # fmt: skip
    print()
    for line in server["machine"]:
        print(line)
    print(f"median of {runs} run(s) for the server and client figures, {7 if not args.quick else 3} for the UI; "
          f"ratio = tui-chat / yardstick (throughput: below 1 is slower; time and memory: above 1 is more)")  # fmt: skip
    if args.quick:
        print("--quick: smaller sizes (latency with 500 connections, memory with 1,000); not the figures to quote")
    print()
    print_table(build_rows(server, client, ui), args.markdown)
    print()
    print(f"conversation view memory with {ui['memory_messages']:,} messages: {median(ui['memory_mb']):.1f} MB; "
          f"UI frames paced at {ui['fps']} fps (up to {1000 / ui['fps']:.1f} ms of any frame figure is Textual's wait)")  # fmt: skip
    for failure in server.get("failures", []):
        print(f"FAILED {failure}")
    print(f"total time {time.monotonic() - started:.0f} s")
    return 1 if server.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main())
