"""Fixtures for ``tui-chat web``: a real open chat server, a real web front, and Debian's Chromium."""

from __future__ import annotations

import importlib.util

import httpx
import pytest

from tui_chat_dev.browser import chromium_path
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.webproc import RunningWeb
from tui_chat_dev.wsclient import WsClient


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """One real ``tui-chat serve --auth open`` per module; tests use distinct nicknames."""
    server = start_server(tmp_path_factory.mktemp("server"), auth="open")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def web(open_server):
    """One real ``tui-chat web`` in front of ``open_server``; a canary variable in its
    environment that no session may see."""
    running = RunningWeb(open_server.http_url, env={"AWS_SECRET_ACCESS_KEY": "canary-not-for-sessions"}).start()
    yield running
    running.stop()


@pytest.fixture
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium; .ci/run installs it)")
    if importlib.util.find_spec("playwright") is None or importlib.util.find_spec("pyte") is None:
        pytest.skip("the browser tests need playwright and pyte (the test extra installs them)")
    return path


@pytest.fixture
async def browser(chromium):
    from playwright.async_api import async_playwright

    from tui_chat_dev.browser import launch

    async with async_playwright() as playwright:
        running = await launch(playwright, chromium)
        yield running
        await running.close()


async def terminal_user(server, nickname: str) -> WsClient:
    """Someone in a terminal: open sign-in over HTTP, then the chat WebSocket (the real protocol)."""
    device = f"{nickname}-terminal"
    async with httpx.AsyncClient() as http:
        response = await http.post(server.http_url + "/auth/login", json={"username": nickname, "device": device})
        response.raise_for_status()
    return await WsClient.open(server.ws_url, response.json()["token"], nickname, device)
