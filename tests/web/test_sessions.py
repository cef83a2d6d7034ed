"""``tui-chat web`` without a browser: sessions opened on its WebSocket as the page opens them.
What each session gets, the cap, who may open one, and that nothing is left behind."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tui_chat_dev.webproc import RunningWeb, process_alive

pytest.importorskip("pyte", reason="the session tests read the terminal with pyte (the test extra installs it)")

from tui_chat_dev.browser import SocketTerminal  # noqa: E402

pytestmark = pytest.mark.timeout(90)


async def open_terminal(web: RunningWeb, **kwargs) -> tuple[SocketTerminal, dict]:
    name = f"s{len(web.logged('session started')) + 1}"
    terminal = await SocketTerminal.open(web.url, **kwargs)
    return terminal, await web.wait_for_log("session started", session=name)


async def test_a_session_shows_the_sign_in_form_for_the_host_s_server_and_ends_with_its_socket(open_server, web):
    terminal, session = await open_terminal(web)
    screen = await terminal.wait_for_text("sign in", open_server.http_url, "open server: pick a nickname")
    assert "Nickname" in screen
    await terminal.close()
    await web.wait_for_log("session ended", session=session["session"])
    assert not process_alive(session["pid"])


async def test_the_app_quitting_closes_the_page_s_socket(web):
    terminal, session = await open_terminal(web)
    await terminal.wait_for_text("open server: pick a nickname")
    await terminal.type("\x11")  # ctrl+q
    assert await terminal.closed() is not None
    await web.wait_for_log("session ended", session=session["session"])
    assert not process_alive(session["pid"])


async def test_another_site_s_page_cannot_open_a_session(web):
    with pytest.raises(InvalidStatus) as refused:
        await SocketTerminal.open(web.url, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    own = f"http://127.0.0.1:{web.port}"
    terminal, session = await open_terminal(web, origin=own)  # the page's own origin may
    await terminal.close()
    await web.wait_for_log("session ended", session=session["session"])


async def test_a_name_this_machine_does_not_go_by_is_refused(web):
    async with httpx.AsyncClient() as http:
        rebound = await http.get(web.url, headers={"Host": f"attacker.example:{web.port}"})
        page = await http.get(web.url)
    assert rebound.status_code == 421
    assert page.status_code == 200 and "/static/js/textual.js" in page.text
    assert page.headers["X-Frame-Options"] == "DENY" and "aiohttp" not in page.headers.get("Server", "")
    assert "googleapis" not in page.text, "the page loads nothing from third parties"


@pytest.fixture
def small_web(open_server):
    running = RunningWeb(open_server.http_url, extra_args=("--max-sessions", "1")).start()
    yield running
    running.stop()


async def test_past_the_cap_the_page_and_the_terminal_say_the_server_is_busy(small_web):
    terminal, session = await open_terminal(small_web)
    async with httpx.AsyncClient() as http:
        busy = await http.get(small_web.url)
    assert busy.status_code == 503 and "The one session this server allows is in use" in busy.text
    late = await SocketTerminal.open(small_web.url)  # the page was loaded before the cap was reached
    assert await late.closed() == 1013
    assert "tui-chat is busy" in late.text() and "session this server allows is in use" in late.text()
    assert len(small_web.logged("session started")) == 1, "no process was started for it"

    await terminal.close()
    await small_web.wait_for_log("session ended", session=session["session"])
    async with httpx.AsyncClient() as http:
        assert (await http.get(small_web.url)).status_code == 200


async def test_stopping_the_web_front_ends_every_session_and_removes_their_folders(open_server):
    web = RunningWeb(open_server.http_url).start()
    root = Path(web.logged("web listening")[0]["sessions_folder"])
    sessions = []
    for _ in range(2):
        terminal, session = await open_terminal(web)
        await terminal.wait_for_text("open server: pick a nickname")
        sessions.append(session)
    assert len(list(root.iterdir())) == 2 and all((p.stat().st_mode & 0o777) == 0o700 for p in root.iterdir())
    assert web.stop() == 0
    assert not any(process_alive(s["pid"]) for s in sessions)
    assert not root.exists()


async def test_an_app_whose_front_was_killed_ends_too(open_server):
    web = RunningWeb(open_server.http_url).start()
    terminal, session = await open_terminal(web)
    await terminal.wait_for_text("open server: pick a nickname")
    web.proc.send_signal(signal.SIGKILL)
    web.proc.wait(10)
    await terminal.closed()
    async with asyncio.timeout(15):
        while process_alive(session["pid"]):  # the kernel signals it (PR_SET_PDEATHSIG): no event to await here
            await asyncio.sleep(0.05)
    root = Path(web.logged("web listening")[0]["sessions_folder"])
    shutil.rmtree(root, ignore_errors=True)  # a killed front cannot tidy up; the system's tmp cleaning does


async def test_serve_web_serves_the_app_beside_the_chat_server(tmp_path):
    both = RunningWeb("", command=("serve", "--auth", "open", "--port", "0", "--web", "--db", str(tmp_path / "s.db"),
                                   "--auth-rate", "100000")).start()  # fmt: skip
    chat_port = both.wait_for_log_sync("listening")[0]["port"]
    assert both.port != chat_port
    terminal, session = await open_terminal(both)
    await terminal.wait_for_text(f"http://127.0.0.1:{chat_port}", "open server: pick a nickname")
    await terminal.type("erinweb\r")
    await terminal.wait_for_text("● connected", "erinweb@127.0.0.1")
    assert both.stop() == 0, "Ctrl-C and SIGTERM stop both cleanly"
    assert both.logged("session ended", session=session["session"])
    assert not process_alive(session["pid"])
    web_lines = [line for line in both.log_lines if line.get("logger") == "tui_chat.web"]
    assert web_lines and "erinweb" not in json.dumps(web_lines), "the web front logs no keys (the chat server logs who connects)"
