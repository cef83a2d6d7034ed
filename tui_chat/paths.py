"""Where tui-chat keeps its files: platformdirs, overridable for tests and portable installs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "tui-chat"


def _dir(env: str, default: Path) -> Path:
    override = os.environ.get(env)
    return Path(override).expanduser() if override else default


def data_dir() -> Path:
    return _dir("TUI_CHAT_DATA_DIR", platformdirs.user_data_path(APP_NAME))


def config_dir() -> Path:
    return _dir("TUI_CHAT_CONFIG_DIR", platformdirs.user_config_path(APP_NAME))


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file only its owner can read (0600 from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def cache_dir() -> Path:
    return _dir("TUI_CHAT_CACHE_DIR", platformdirs.user_cache_path(APP_NAME))
