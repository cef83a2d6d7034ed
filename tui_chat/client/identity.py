"""Which server is behind an address (PROTOCOL.md 7.5), and where this client keeps its files for it.

Everything the client keeps for an account (outbox, history cache, read marks) lives in a folder
named after the server's ``serverId`` and the username, never after the URL alone: another server
started at a known address (a new database, another person's built-in server) is another server,
and nothing of the old one is shown or sent to it. The last id seen at each address is remembered
in ``servers.json`` so that the client can open the right folder while the server is unreachable
and can tell the person when the server behind an address has changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from tui_chat.paths import data_dir, write_private

SERVER_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_server_id(value: object) -> str:
    """``value`` when it is a well-formed server id, else ``""`` (a server too old to send one)."""
    return value if isinstance(value, str) and SERVER_ID_RE.fullmatch(value) else ""


class KnownServers:
    """``servers.json`` in the data folder: the last ``serverId`` seen at each server address."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder or data_dir()) / "servers.json"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(url): valid_server_id(sid) for url, sid in data.items() if valid_server_id(sid)}

    def get(self, url: str) -> str:
        return self._load().get(url, "")

    def remember(self, url: str, server_id: str) -> None:
        known = self._load()
        if known.get(url) == server_id:
            return
        known[url] = server_id
        write_private(self.path, json.dumps(known, indent=1, sort_keys=True))


def account_folder(root: Path, server_url: str, server_id: str, username: str) -> Path:
    """``<root>/accounts/<host-port>-<user>-<hash>``: readable, and unique per (server, user).

    Without a server id (a server older than protocol 7.5) the hash is of the URL, which is also
    where every release before this one kept its files.
    """
    key = f"server:{server_id}\n{username}" if server_id else f"{server_url}\n{username}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", server_url.split("://", 1)[-1]).strip("-")[:40]
    return root / "accounts" / f"{slug}-{username}-{digest}"


def adopt_legacy_folder(root: Path, server_url: str, server_id: str, username: str) -> Path:
    """The account folder for ``server_id``; the first time a server id is known for an address,
    the folder kept for that address by earlier releases becomes this server's."""
    folder = account_folder(root, server_url, server_id, username)
    legacy = account_folder(root, server_url, "", username)
    if server_id and not folder.exists() and legacy.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        legacy.rename(folder)
    return folder
