from __future__ import annotations

import keyring
import pytest

from tui_chat.client.backoff import Backoff
from tui_chat.client.service import ChatClient
from tui_chat_dev.memory_keyring import MemoryKeyring
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.waiting import wait_until  # noqa: F401 - tests import it from here

PASSWORD = "correct horse battery"
FAST_LINK = {
    # Short enough that a dead link is found in about a second, not 30.
    "ping_interval": 0.3,
    "ping_timeout": 0.6,
    "open_timeout": 2.0,
    "backoff": None,
}


@pytest.fixture(autouse=True)
def memory_keyring(tmp_path, monkeypatch):
    """Never touch the OS keyring; keep data in the test's folder."""
    monkeypatch.setenv("TUI_CHAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TUI_CHAT_CONFIG_DIR", str(tmp_path / "config"))
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("chat-server"))
    yield running
    running.stop()


def fast_link(max_delay: float = 0.2) -> dict:
    return {**FAST_LINK, "backoff": Backoff(base=0.05, cap=max_delay)}


async def make_client(url: str, folder, name: str, *, create: bool = True, device: str | None = None, link: dict | None = None) -> ChatClient:
    client = ChatClient(url, data_folder=folder / name / (device or "main"), device=device or f"{name}-device-1", connection_options=link or fast_link())
    await client.sign_in(name, PASSWORD, create=create)
    return client
