"""The client's configuration: a TOML file, overridden by ``TUI_CHAT_*`` variables, overridden
by command-line flags. A bad file gets a precise message for people, never a traceback.

Example ``config.toml`` (in the platform's config folder, e.g. ``~/.config/tui-chat/``)::

    server = "https://chat.example.org"
    username = "alice"
    theme = "nord"
    notifications = true
    bell = false
    auto_away_minutes = 10
    store_tokens_in_file = false   # only where no OS keyring works
    # The cloud deployment (assets/cloud): sign in with its Cognito user pool.
    cognito_region = "eu-west-1"
    cognito_user_pool_id = "eu-west-1_AbCdEfGhI"
    cognito_client_id = "1example23456789"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

from tui_chat.paths import config_dir

DEFAULT_SERVER = "http://127.0.0.1:8765"


class ConfigError(Exception):
    """A configuration problem, worded for the person who has to fix it."""


@dataclass(frozen=True)
class Config:
    server: str = ""
    """Empty means: the local default, started in-process when nothing listens there."""
    username: str = ""
    theme: str = "textual-dark"
    notifications: bool = True
    bell: bool = False
    images: bool = True
    """Preview images in the terminal (asks the terminal what it can draw as the app starts)."""
    auto_away_minutes: int = 10
    store_tokens_in_file: bool = False
    cognito_region: str = ""
    """A Cognito user pool to sign in with (the cloud deployment, which has no ``/info``)."""
    cognito_user_pool_id: str = ""
    cognito_client_id: str = ""

    @property
    def cognito(self) -> dict | None:
        """The pool as ``/info`` would describe it, when the config names one."""
        if not (self.cognito_region and self.cognito_user_pool_id and self.cognito_client_id):
            return None
        return {"region": self.cognito_region, "userPoolId": self.cognito_user_pool_id, "clientId": self.cognito_client_id}

    @property
    def server_url(self) -> str:
        return self.server or DEFAULT_SERVER


_TYPES = {f.name: f.type for f in fields(Config)}


def config_path() -> Path:
    return config_dir() / "config.toml"


def _check(source: str, key: str, value: Any) -> Any:
    kind = _TYPES.get(key)
    if kind is None:
        raise ConfigError(f"{source}: unknown setting {key!r} (known: {', '.join(sorted(_TYPES))})")
    if kind == "bool":
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, not {value!r}")
        return value
    if kind == "int":
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 24 * 60:
            raise ConfigError(f"{source}: {key} must be a whole number of minutes from 0 to 1440, not {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key} must be a string, not {value!r}")
    if key == "server" and value:
        check_server_url(value, source)
    return value


def check_server_url(value: str, source: str) -> None:
    """A server address: a scheme we speak and a host; no user name, password, query or
    fragment (where a secret pasted by mistake would be shown back, and sent, in the clear)."""
    if not value.startswith(("http://", "https://", "ws://", "wss://")):
        raise ConfigError(f"{source}: server must be a URL starting with http://, https://, ws:// or wss://, not {value!r}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{source}: server is not a valid URL") from None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError(f"{source}: server must be a plain address (scheme, host, port), without a user name, password, query or fragment")
    if not parts.hostname:
        raise ConfigError(f"{source}: server needs a host name, as in http://chat.example.org:8765")


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """The file, then ``TUI_CHAT_<SETTING>`` variables, then ``overrides`` (CLI flags; ``None`` values ignored)."""
    path = path or config_path()
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read: {exc}") from None
        for key, value in data.items():
            values[key] = _check(str(path), key, value)
    for key in _TYPES:
        name = f"TUI_CHAT_{key.upper()}"
        if name in env:
            values[key] = _check(f"environment variable {name}", key, env[name])
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _check(f"--{key.replace('_', '-')}", key, value)
    return replace(Config(), **values)


def save_settings(changes: Mapping[str, Any], path: Path | None = None) -> None:
    """Remember settings chosen in the app (last server and user, theme) in the config file."""
    path = path or config_path()
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            return  # never overwrite a file the user must fix by hand
    for key, value in changes.items():
        current[key] = _check("setting", key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in current.items()), encoding="utf-8")
    tmp.replace(path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
