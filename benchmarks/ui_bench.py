"""How fast the conversation view is with long histories (a script, not a test).

    python benchmarks/ui_bench.py [--runs 7] [--messages 10000] [--memory-messages 100000]

Reports, as the median of several runs in a headless Textual app (120×40):

- first paint: from handing 10,000 messages to the conversation view until the frame that
  shows them has been written (targets ≤ 150 ms);
- one new message: from appending a message until the frame that shows it (≤ 10 ms);
  Textual paces frames (at most one every 1/TEXTUAL_FPS s, 60 by default: up to 16.7 ms of
  waiting that is not ours), so the widget's own share is shown too; run with
  ``TEXTUAL_FPS=120`` to see the figure at a 120 Hz frame rate;
- memory: the growth of the process (RSS) when 100,000 messages are held by the view,
  measured in a fresh subprocess per run.

The yardstick is Textual's own bare ``Log`` widget given the same messages as plain
"sender: body" lines (no wrapping, grouping, day separators or marks): what painting that much
text costs in Textual at all.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import subprocess
import sys
import time
from datetime import timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import Log  # noqa: E402

from tui_chat.ui.timefmt import Clock  # noqa: E402
from tui_chat.ui.view_model import MessageRow  # noqa: E402
from tui_chat.ui.widgets.conversation import ConversationView  # noqa: E402

T0 = 1_740_000_000_000
WORDS = "the a to and of we it is for on that this be with at deploy build review lunch ok thanks sure see you later tomorrow meeting".split()


def make_rows(count: int, seed: int = 7) -> list[MessageRow]:
    """A plausible chat: mostly short lines, some long ones, a few with line breaks."""
    rnd = random.Random(seed)
    rows = []
    ts = T0
    for i in range(count):
        ts += rnd.choice((5_000, 20_000, 60_000, 600_000, 7_200_000))
        kind = rnd.random()
        if kind < 0.70:
            body = " ".join(rnd.choices(WORDS, k=rnd.randint(1, 10)))
        elif kind < 0.95:
            body = " ".join(rnd.choices(WORDS, k=rnd.randint(20, 60)))
        else:
            body = "\n".join(" ".join(rnd.choices(WORDS, k=rnd.randint(2, 8))) for _ in range(rnd.randint(2, 5)))
        mine = rnd.random() < 0.5
        rows.append(MessageRow(f"m{i:09d}", "me" if mine else "alice", body, ts, mine=mine, mark="read" if mine else "none"))
    return rows


class BenchApp(App):
    def compose(self) -> ComposeResult:
        yield ConversationView(clock=Clock(now=lambda: T0, tz=timezone.utc))


class YardstickApp(App):
    def compose(self) -> ComposeResult:
        yield Log()


async def _next_frame(app: App, action) -> tuple[float, float]:
    """Run ``action`` and return (seconds in ``action``, seconds until the next frame is written)."""
    frame = asyncio.get_running_loop().create_future()
    display = app._display

    def spy(screen, renderable):
        display(screen, renderable)
        if not frame.done():
            frame.set_result(time.perf_counter())

    app._display = spy
    start = time.perf_counter()
    action()
    own = time.perf_counter() - start
    painted = await asyncio.wait_for(frame, 5)
    app._display = display
    return own, painted - start


def screen_lines(widget) -> list[str]:
    return [widget.render_line(y).text.strip() for y in range(widget.size.height)]


async def paint_times(app: App, widget_type: type, show, append, appended_shown) -> dict[str, float]:
    """Time ``show(widget)`` and then ``append(widget)`` to their frames in a headless ``app``;
    ``appended_shown(widget)`` must then hold."""
    async with app.run_test(size=(120, 40)) as pilot:
        widget = app.query_one(widget_type)
        await pilot.pause()
        show_own, show_frame = await _next_frame(app, lambda: show(widget))
        await pilot.pause()
        add_own, add_frame = await _next_frame(app, lambda: append(widget))
        await pilot.pause()
        assert appended_shown(widget), "the new message is on screen"
    return {"first_paint_ms": show_frame * 1000, "first_paint_widget_ms": show_own * 1000,
            "new_message_ms": add_frame * 1000, "new_message_widget_ms": add_own * 1000}  # fmt: skip


async def time_once(rows: list[MessageRow]) -> dict[str, float]:
    extra = MessageRow("new-1", "alice", "one more thing", rows[-1].ts + 1000)
    return await paint_times(BenchApp(), ConversationView, lambda view: view.show("alice", rows),
                             lambda view: view.append(extra), lambda view: screen_lines(view)[-1] == "one more thing")  # fmt: skip


async def yardstick_once(rows: list[MessageRow]) -> dict[str, float]:
    lines = [f"{row.sender}: {line}" for row in rows for line in row.body.split("\n")]
    return await paint_times(YardstickApp(), Log, lambda log: log.write_lines(lines),
                             lambda log: log.write_line("alice: one more thing"),
                             lambda log: "alice: one more thing" in screen_lines(log))  # fmt: skip


async def memory_once(count: int) -> float:
    import psutil

    process = psutil.Process()
    app = BenchApp()
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(ConversationView)
        await pilot.pause()
        gc.collect()
        before = process.memory_info().rss
        view.show("alice", make_rows(count))
        await pilot.pause()
        gc.collect()
        after = process.memory_info().rss
    return (after - before) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--memory-messages", type=int, default=100_000)
    parser.add_argument("--memory-runs", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE (used by report.py)")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(asyncio.run(memory_once(args.memory_child))))
        return 0

    rows = make_rows(args.messages)
    results = [asyncio.run(time_once(rows)) for _ in range(args.runs)]
    yardstick = [asyncio.run(yardstick_once(rows)) for _ in range(args.runs)]
    memory = [
        float(subprocess.run([sys.executable, __file__, "--memory-child", str(args.memory_messages)],
                             check=True, capture_output=True, text=True).stdout)
        for _ in range(args.memory_runs)
    ]  # fmt: skip

    def median(key: str, of: list[dict[str, float]] = results) -> float:
        return statistics.median(r[key] for r in of)

    from textual import constants

    print(f"conversation view, {args.messages:,} messages, 120x40, median of {args.runs} runs, {constants.MAX_FPS} fps")
    print(f"  first paint            {median('first_paint_ms'):7.1f} ms   (target <= 150; widget's own work {median('first_paint_widget_ms'):.1f} ms)")
    print(f"  one new message        {median('new_message_ms'):7.1f} ms   (target <= 10; widget's own work {median('new_message_widget_ms'):.2f} ms)")
    print(f"  memory, {args.memory_messages:,} messages  {statistics.median(memory):6.1f} MB   (RSS growth, median of {args.memory_runs} runs)")
    print(f"yardstick, Textual's Log widget with the same lines: first paint {median('first_paint_ms', yardstick):.1f} ms, "
          f"one new line {median('new_message_ms', yardstick):.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "messages": args.messages, "fps": constants.MAX_FPS,
            **{key: [r[key] for r in results] for key in results[0]},
            **{f"yardstick_{key}": [r[key] for r in yardstick] for key in yardstick[0]},
            "memory_mb": memory, "memory_messages": args.memory_messages,
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
