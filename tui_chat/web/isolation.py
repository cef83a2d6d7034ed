"""What keeps one browser session's app from every other's: a private folder and an environment.

Every session's app process runs with its own folder (0700, removed when the session ends) as its
home, data, config, cache, downloads and temporary folder, and with an environment built from an
allow-list, so nothing of the host's (its keyring, its D-Bus session, an SSH agent, cloud
credentials, its ``TUI_CHAT_*`` settings) and nothing of another session's reaches it.

Tokens: the app's keyring is ``memory_keyring.SessionKeyring`` (``PYTHON_KEYRING_BACKEND``), a
dict in the app process: the refresh token is never in the host's keyring (where one browser
visitor would resume another's login), never on disk, and goes with the tab's process. A
per-session file keyring would gain nothing: the folder it lived in is removed with the session,
and a new tab gets a new folder, so it would only put the token on disk for the session's life.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

SESSION_KEYRING = "tui_chat.web.memory_keyring.SessionKeyring"

PASSED_THROUGH = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "SYSTEMROOT",  # SYSTEMROOT: Python needs it on Windows
    "SSL_CERT_FILE", "SSL_CERT_DIR",  # a private CA the chat server's certificate is signed by
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY", "all_proxy",
    "VIRTUAL_ENV", "PYTHONPATH",
})  # fmt: skip
"""Host variables a session's app may see; besides these only ``LC_*`` and textual-serve's own."""

TEXTUAL_SERVE_VARIABLES = frozenset({"TEXTUAL_DRIVER", "TEXTUAL_FPS", "TEXTUAL_COLOR_SYSTEM", "TERM_PROGRAM",
                                     "TERM_PROGRAM_VERSION", "COLUMNS", "ROWS", "TEXTUAL", "TEXTUAL_LOG"})  # fmt: skip

PARENT_VARIABLE = "TUI_CHAT_WEB_PARENT"
"""The web front's pid, for the app to end with it (``browser_app``)."""

FOLDERS = ("data", "config", "cache", "downloads", "tmp")


def make_root(parent: Path | None = None) -> Path:
    """The folder every session's folder is made in, 0700 (removed with :func:`remove`)."""
    return Path(tempfile.mkdtemp(prefix="tui-chat-web-", dir=parent))


def make_session_folder(root: Path) -> Path:
    """A new private folder for one session, with its sub-folders, all 0700."""
    folder = Path(tempfile.mkdtemp(prefix="session-", dir=root))  # 0700, a name nobody can guess
    for name in FOLDERS:
        (folder / name).mkdir(mode=0o700)
    return folder


def remove(folder: Path) -> None:
    """Remove a session's (or the root) folder and everything in it; gone already is fine."""
    shutil.rmtree(folder, ignore_errors=True)


def session_environment(inherited: Mapping[str, str], folder: Path, *, server_url: str, import_root: Path) -> dict[str, str]:
    """The environment of one session's app: the allowed part of ``inherited`` (the host's,
    with textual-serve's additions), every folder inside ``folder``, the null keyring, the chat
    server's address, and ``import_root`` first on the import path (the very tui_chat this
    process runs, whichever folder it was started from)."""
    env = {key: value for key, value in inherited.items()
           if key in PASSED_THROUGH or key in TEXTUAL_SERVE_VARIABLES or key.startswith("LC_")}  # fmt: skip
    env.update(
        HOME=str(folder),
        TMPDIR=str(folder / "tmp"),
        XDG_CONFIG_HOME=str(folder / "config"),
        XDG_DATA_HOME=str(folder / "data"),
        XDG_CACHE_HOME=str(folder / "cache"),
        XDG_RUNTIME_DIR=str(folder / "tmp"),
        TUI_CHAT_DATA_DIR=str(folder / "data"),
        TUI_CHAT_CONFIG_DIR=str(folder / "config"),
        TUI_CHAT_CACHE_DIR=str(folder / "cache"),
        TUI_CHAT_DOWNLOADS_DIR=str(folder / "downloads"),
        TUI_CHAT_SERVER=server_url,
        TUI_CHAT_STORE_TOKENS_IN_FILE="false",
        PYTHON_KEYRING_BACKEND=SESSION_KEYRING,
        **{PARENT_VARIABLE: str(os.getpid())},
        PYTHONPATH=os.pathsep.join(filter(None, [str(import_root), env.get("PYTHONPATH", "")])),
    )
    env.setdefault("TERM", "xterm-256color")
    return env
