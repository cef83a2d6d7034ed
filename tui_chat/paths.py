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


def cache_dir() -> Path:
    return _dir("TUI_CHAT_CACHE_DIR", platformdirs.user_cache_path(APP_NAME))
