"""The app in a real browser: Debian's Chromium, headless, on ``tui-chat web`` in front of a real
``tui-chat serve --auth open`` (or, for signing in with a password, ``--auth accounts``); keys typed
into the page's terminal, the screen read back from the page's own WebSocket frames. Skips, saying
why, where there is no Chromium."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path

import httpx
import pytest

from tests.web.conftest import terminal_user
from tui_chat_dev.browser import TerminalTab
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.webproc import RunningWeb, process_alive
from tui_chat_dev.wsclient import signup

pytestmark = pytest.mark.timeout(120)

VIEWPORT = {"width": 1100, "height": 700}


async def open_session(web, context) -> tuple[TerminalTab, dict]:
    """A new tab, and the web front's log line for its session (its name and app pid)."""
    name = f"s{len(web.logged('session started')) + 1}"
    tab = await TerminalTab.open(context, web.url)
    return tab, await web.wait_for_log("session started", session=name)


async def sign_in(tab: TerminalTab, nickname: str) -> None:
    await tab.wait_for_text("open server: pick a nickname")  # the form knows the server is open
    await tab.focus()
    await tab.type(nickname)
    await tab.press("Enter")
    await tab.wait_for_text("● connected", f"{nickname}@127.0.0.1")


def environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


async def test_a_tab_signs_in_talks_with_a_terminal_and_its_app_ends_when_it_closes(open_server, web, browser):
    folder_root = Path(web.logged("web listening")[0]["sessions_folder"])
    bob = await terminal_user(open_server, "bobterm")
    context = await browser.new_context(viewport=VIEWPORT)
    tab, session = await open_session(web, context)
    pid = session["pid"]

    env = environment(pid)
    home = Path(env["HOME"])
    assert home.parent == folder_root and (home.stat().st_mode & 0o777) == 0o700
    assert env["TUI_CHAT_DATA_DIR"].startswith(str(home)) and env["TUI_CHAT_DOWNLOADS_DIR"].startswith(str(home))
    assert env["PYTHON_KEYRING_BACKEND"] == "tui_chat.web.memory_keyring.SessionKeyring"
    assert "AWS_SECRET_ACCESS_KEY" not in env, "the host's variables stay with the host"

    await sign_in(tab, "alicetab")
    await tab.wait_for_text("bobterm")
    await tab.press("Control+o")
    await tab.type("bobterm")
    await tab.press("Enter")
    await tab.type("hello from the browser")
    await tab.press("Enter")
    got = await bob.expect("message", timeout=15)
    assert (got["message"]["from"], got["message"]["body"]) == ("alicetab", "hello from the browser")

    await bob.send({"action": "sendMessage", "id": f"reply-{uuid.uuid4().hex[:12]}", "to": "alicetab", "body": "hi back from a terminal"})
    await tab.wait_for_text("hi back from a terminal")

    assert not any(p.name.startswith("refresh") for p in home.rglob("*")), "no token on disk"
    await tab.page.close()
    await web.wait_for_log("session ended", session=session["session"])
    assert not process_alive(pid), "closing the tab ended its app"
    assert not home.exists(), "and removed its folder"
    await bob.ws.close()
    await context.close()


async def test_two_tabs_at_once_are_two_people_and_share_nothing(web, browser):
    first_context = await browser.new_context(viewport=VIEWPORT)
    second_context = await browser.new_context(viewport=VIEWPORT)
    carol, carol_session = await open_session(web, first_context)
    dave, dave_session = await open_session(web, second_context)
    assert carol_session["pid"] != dave_session["pid"]
    carol_home, dave_home = (environment(s["pid"])["HOME"] for s in (carol_session, dave_session))
    assert carol_home != dave_home

    await sign_in(carol, "caroltab")
    await sign_in(dave, "davetab")
    await carol.wait_for_text("davetab")
    await carol.press("Control+o")
    await carol.type("davetab")
    await carol.press("Enter")
    await carol.type("one tab to another")
    await carol.press("Enter")
    await dave.press("Control+o")
    await dave.type("caroltab")
    await dave.press("Enter")
    await dave.wait_for_text("one tab to another")

    await first_context.close()
    await second_context.close()
    for session in (carol_session, dave_session):
        await web.wait_for_log("session ended", session=session["session"])
        assert not process_alive(session["pid"])
    assert not any(map(os.path.exists, (carol_home, dave_home)))

    # A new tab is a new session: nobody is signed in there.
    third_context = await browser.new_context(viewport=VIEWPORT)
    third, third_session = await open_session(web, third_context)
    await third.wait_for_text("open server: pick a nickname", "Nickname")
    await third_context.close()
    await web.wait_for_log("session ended", session=third_session["session"])


async def send_file(sender, to: str, name: str, data: bytes) -> None:
    """What a terminal client does to send a file: announce it, PUT the bytes, name it in a message."""
    ticket = await sender.request({"action": "requestUpload", "name": name, "size": len(data),
                                   "type": "application/pdf", "sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip
    assert ticket["type"] == "upload", ticket
    async with httpx.AsyncClient() as http:
        put = await http.request(ticket["method"], ticket["url"], content=data, headers=ticket["headers"])
    assert put.status_code == 200, put.text
    attachment = {"fileId": ticket["fileId"], "name": name, "size": len(data), "type": "application/pdf"}
    ack = await sender.request({"action": "sendMessage", "id": f"file-{uuid.uuid4().hex[:12]}", "to": to, "attachment": attachment})
    assert ack["type"] == "ack", ack


async def test_a_file_from_a_terminal_lands_in_the_browser_s_downloads_and_leaves_nothing_on_the_host(open_server, web, browser):
    erin = await terminal_user(open_server, "erinterm")
    context = await browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    downloads: asyncio.Queue = asyncio.Queue()
    # The page opens the download link in a new window (textual-serve's way): catch it there.
    context.on("page", lambda page: page.on("download", downloads.put_nowait))
    tab, session = await open_session(web, context)
    home = Path(environment(session["pid"])["HOME"])
    await sign_in(tab, "frankfile")
    await tab.wait_for_text("erinterm")

    data = os.urandom(200_000)
    name = "résumé (final).pdf"
    await send_file(erin, "frankfile", name, data)
    await tab.press("Control+o")
    await tab.type("erinterm")
    await tab.press("Enter")
    await tab.wait_for_text("résumé (final).pdf")
    await tab.press("Shift+Tab")  # from the composer to the conversation: the cursor on the newest message, the file
    await tab.press("Enter")

    download = await asyncio.wait_for(downloads.get(), 30)
    assert download.suggested_filename == name
    assert Path(await download.path()).read_bytes() == data, "byte-identical in the browser"
    await tab.wait_for_text("went to your browser's downloads")
    assert not any(p.is_file() and p.name == name for p in home.rglob("*")), "no copy stays on the host"

    await context.close()
    await web.wait_for_log("session ended", session=session["session"])
    await erin.ws.close()


@pytest.fixture(scope="module")
def accounts_web(tmp_path_factory):
    """A real ``tui-chat serve`` with accounts (username and password) and a ``tui-chat web`` in front of it."""
    server = start_server(tmp_path_factory.mktemp("accounts-server"), auth="accounts")
    try:
        running = RunningWeb(server.http_url).start()
    except BaseException:
        server.stop()
        raise
    yield server, running
    running.stop()
    server.stop()


async def test_a_sign_in_typed_in_one_burst_as_the_page_appears_fills_username_and_password(accounts_web, browser):
    """The README's promise, ``alice<Tab>secret<Enter>`` in one burst fills both sign-in fields, in a
    browser tab on an accounts server: typed the moment the page's session starts (its app still
    starting, nothing drawn yet), and again the moment the page first shows the terminal. The sign-in
    screen once focused its username field only after it was on screen, so the first keys went to the
    server field (its address selected, so replaced), the password to the username field, and the
    server field, locked in a browser, could not be put right."""
    server, web = accounts_web
    password = "correct horse battery"
    for name in ("bobburst", "carolburst"):
        await signup(server.http_url, name, password)

    # The page loaded and its socket open, the app not yet running: keys the page sends now wait for it.
    context = await browser.new_context(viewport=VIEWPORT)
    name = f"s{len(web.logged('session started')) + 1}"
    tab = TerminalTab(await context.new_page())
    await tab.page.goto(web.url)
    session = await web.wait_for_log("session started", session=name)
    await tab.focus()
    await tab.page.keyboard.type(f"bobburst\t{password}\n")  # key by key, without waiting for the screen
    await tab.wait_for_text("● connected", "bobburst@127.0.0.1", timeout=15)
    await context.close()
    await web.wait_for_log("session ended", session=session["session"])

    # The page just shown (its first bytes arrived), the form not necessarily drawn yet.
    context = await browser.new_context(viewport=VIEWPORT)
    tab, session = await open_session(web, context)
    await tab.focus()
    await tab.page.keyboard.type(f"carolburst\t{password}\n")
    await tab.wait_for_text("● connected", "carolburst@127.0.0.1", timeout=15)
    await context.close()
    await web.wait_for_log("session ended", session=session["session"])
