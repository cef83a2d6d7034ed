"""The keyring of a browser session's app: a dict in the app process's memory.

Given to each session's app through ``PYTHON_KEYRING_BACKEND`` (``isolation``): the refresh
token lives exactly as long as the tab's process, is never written anywhere, and no other
session, nor the host's own keyring, can read it. (keyring's null backend would do as much, but
the client takes it for "no keyring" and says so to every visitor after each sign-in.)
"""

from __future__ import annotations

from keyring.backend import KeyringBackend


class SessionKeyring(KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self._secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._secrets.pop((service, username), None)
