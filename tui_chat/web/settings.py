"""The web front's settings: where it listens, which chat server its sessions use, how many at once."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WEB_PORT = 8766
"""Beside the chat server's 8765."""

DEFAULT_MAX_SESSIONS = 20
"""Browser sessions at once; each is one app process of about 58 MiB."""

MAX_MAX_SESSIONS = 1000


@dataclass(frozen=True)
class WebSettings:
    server_url: str
    """The chat server every session's app signs in to (visitors cannot choose another)."""
    host: str = "127.0.0.1"
    port: int = DEFAULT_WEB_PORT
    max_sessions: int = DEFAULT_MAX_SESSIONS
    certfile: Path | None = None
    keyfile: Path | None = None
    public_hosts: tuple[str, ...] = ()
    """Names (``Host``) the page may be reached by besides loopback names, IP addresses and this machine's name."""
    allowed_origins: tuple[str, ...] = ()
    """Other web origins whose pages may open sessions (the page's own origin always may)."""
    sessions_parent: Path | None = None
    """Where the folder of the sessions' folders is made (default: the system's temporary folder)."""

    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for the page and its WebSocket; ``ssl.SSLError``/``OSError`` when the
        certificate or key cannot be used (said before anything listens)."""
        if not self.certfile:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.certfile), str(self.keyfile))
        return context
