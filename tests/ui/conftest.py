"""UI test fixtures: private folders, an in-memory keyring, a real server."""

from __future__ import annotations

import keyring
import pytest
from keyring.backend import KeyringBackend

from tests.serverproc import start_server


class MemoryKeyring(KeyringBackend):
    """Never the OS keyring: passwords live in a dict for one test."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.items.get((service, username))

    def set_password(self, service, username, password):
        self.items[(service, username)] = password

    def delete_password(self, service, username):
        self.items.pop((service, username), None)


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
