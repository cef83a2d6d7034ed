"""What a browser tab on ``tui-chat web`` costs (a script, not a test): how long until it can be
used, how much memory its app process takes, and how soon that process goes when the tab closes.

Each run: a fresh real ``tui-chat serve --auth open`` and a fresh ``tui-chat web`` in front of it,
both on 127.0.0.1 on free ports (``tui_chat_dev.serverproc``, ``tui_chat_dev.webproc``), and
Debian's Chromium, headless, through Playwright (``tui_chat_dev.browser``). ``--sessions`` tabs are
opened one after another, each in its own browser context (a person of its own) and each signed in
with its own nickname, and left open, so the later ones start beside the earlier ones; then they
are closed one after another. Per tab:

- first screen: from ``page.goto`` until the page's terminal shows the sign-in form ("open
  server: pick a nickname"): the page, its WebSocket, the app process started and drawn;
- sign-in: from pressing Enter on the nickname until the signed-in screen shows ("● connected");
- RSS: the resident memory (MiB) of the tab's app process (the pid the web front logs in
  "session started", with any children), read just after the sign-in. Shared pages (the Python
  interpreter, libraries) count in every process, so N tabs take less than N times this;
- exit: from closing the tab until its app process is gone (polled every 5 ms).

Reported: the p50 of each run's samples, the median of those over ``--runs``, and the largest
single sample; then a one-line summary.

    .venv/bin/python benchmarks/web_bench.py [--runs 3] [--sessions 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui_chat_dev.browser import TerminalTab, chromium_path, launch  # noqa: E402
from tui_chat_dev.serverproc import start_server  # noqa: E402
from tui_chat_dev.webproc import RunningWeb, process_alive  # noqa: E402

VIEWPORT = {"width": 1100, "height": 700}  # as tests/web/test_browser.py
SIGN_IN_FORM = "open server: pick a nickname"
SIGNED_IN = "● connected"
EXIT_TIMEOUT_S = 15.0
"""Longer than the web front's bounded stop (quit, 3 s, SIGTERM, 3 s, SIGKILL)."""
POLL_S = 0.005
METRICS = (("first", "first screen", "ms"), ("sign_in", "sign-in", "ms"), ("rss", "RSS", "MiB"), ("exit", "exit", "ms"))


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (the app starts none today, but would count)."""
    process = psutil.Process(pid)
    processes = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes) / (1024 * 1024)


async def gone(pid: int, timeout: float = EXIT_TIMEOUT_S) -> None:
    """Once ``pid`` is no longer a live process (the web front reaps it; a zombie counts as gone)."""
    async with asyncio.timeout(timeout):
        while process_alive(pid):
            await asyncio.sleep(POLL_S)


async def open_and_sign_in(web: RunningWeb, context, nickname: str) -> tuple[TerminalTab, dict, dict]:
    """A new tab signed in as ``nickname``: the tab, its "session started" log line, its timings.

    The steps of tests/web/test_browser.py's ``open_session`` and ``sign_in``, with clocks between
    them (``TerminalTab.open`` would also wait for the page's first byte, which the form implies)."""
    name = f"s{len(web.logged('session started')) + 1}"  # the web front numbers sessions s1, s2, ...
    tab = TerminalTab(await context.new_page())
    started = time.perf_counter()
    await tab.page.goto(web.url)
    await tab.wait_for_text(SIGN_IN_FORM)
    first = time.perf_counter() - started
    session = await web.wait_for_log("session started", session=name)
    await tab.focus()
    await tab.type(nickname)
    started = time.perf_counter()
    await tab.press("Enter")
    await tab.wait_for_text(SIGNED_IN, f"{nickname}@127.0.0.1")
    return tab, session, {"first": first * 1000, "sign_in": (time.perf_counter() - started) * 1000}


async def one_run(chromium: str, sessions: int, run: int) -> dict[str, list[float]]:
    from playwright.async_api import async_playwright

    samples: dict[str, list[float]] = {key: [] for key, _, _ in METRICS}
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), auth="open")
        web = None
        try:
            web = RunningWeb(server.http_url).start()
            async with async_playwright() as playwright:
                browser = await launch(playwright, chromium)
                try:
                    opened = []
                    for i in range(sessions):
                        context = await browser.new_context(viewport=VIEWPORT)
                        # Open mode: 2-32 of a-z 0-9 _ . -, and one device per nickname at a time.
                        tab, session, timings = await open_and_sign_in(web, context, f"bench-r{run}-t{i + 1}")
                        samples["first"].append(timings["first"])
                        samples["sign_in"].append(timings["sign_in"])
                        samples["rss"].append(rss_mib(session["pid"]))
                        opened.append((context, tab, session))
                    for context, tab, session in opened:
                        started = time.perf_counter()
                        await tab.page.close()
                        await gone(session["pid"])
                        samples["exit"].append((time.perf_counter() - started) * 1000)
                        await web.wait_for_log("session ended", session=session["session"])  # its folder removed too
                        await context.close()
                finally:
                    await browser.close()
        finally:
            if web is not None:
                web.stop()
            server.stop()
    return samples


def p50(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=5, help="tabs per run (the web front allows 20 by default)")
    args = parser.parse_args()
    chromium = chromium_path()
    if chromium is None:
        sys.exit("no Chromium at /usr/bin/chromium (apt-get install chromium)")

    runs = []
    for run in range(1, args.runs + 1):
        # Everything a run waits for has its own timeout; this bounds the run as a whole.
        runs.append(asyncio.run(asyncio.wait_for(one_run(chromium, args.sessions, run), 60 + 30 * args.sessions)))

    header = "".join(f"  {label:>12} {unit:<3}" for _, label, unit in METRICS)
    print(f"tui-chat web: {args.runs} runs of {args.sessions} tabs (p50 of each run's tabs)")
    print(f"{'':8}{header}")
    for number, samples in enumerate(runs, 1):
        print(f"{'run ' + str(number):8}" + "".join(f"  {p50(samples[key]):12.1f}    " for key, _, _ in METRICS))
    medians = {key: statistics.median(p50(samples[key]) for samples in runs) for key, _, _ in METRICS}
    print(f"{'median':8}" + "".join(f"  {medians[key]:12.1f}    " for key, _, _ in METRICS))
    print(f"{'max':8}" + "".join(f"  {max(max(s[key]) for s in runs):12.1f}    " for key, _, _ in METRICS))
    print(f"tui-chat web ({args.runs} runs x {args.sessions} tabs, medians): first screen {medians['first']:.0f} ms after "
          f"opening the tab, signed in {medians['sign_in']:.0f} ms after Enter, {medians['rss']:.0f} MiB RSS per "
          f"signed-in session, app gone {medians['exit']:.0f} ms after the tab closes")  # fmt: skip


if __name__ == "__main__":
    main()
