"""UI test fixtures: private folders, an in-memory keyring, a real server."""

from __future__ import annotations

import keyring
import pytest

from tui_chat_dev.memory_keyring import MemoryKeyring
from tui_chat_dev.serverproc import start_server


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def private_dirs(tmp_path, monkeypatch):
    for name in ("DATA", "CONFIG", "CACHE"):
        path = tmp_path / name.lower()
        path.mkdir()
        monkeypatch.setenv(f"TUI_CHAT_{name}_DIR", str(path))
    return tmp_path


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """One real ``tui-chat serve`` per module; tests use distinct usernames."""
    server = start_server(tmp_path_factory.mktemp("server"))
    yield server
    server.stop()
