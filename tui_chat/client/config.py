"""The client's configuration: a TOML file, overridden by ``TUI_CHAT_*`` variables, overridden
by command-line flags. A mistake gets a precise message for people, never a traceback: a bad
setting is skipped and named, and the others still apply.

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

import difflib
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from tui_chat.paths import config_dir

DEFAULT_SERVER = "http://127.0.0.1:8765"


class ConfigError(Exception):
    """A configuration problem, worded for the person who has to fix it: ``problem`` says what
    is wrong, ``source`` where (the file, variable or flag), ``key`` which setting ("" when it
    is about the whole file), ``hint`` what would be right (a list, too long for a toast)."""

    def __init__(self, problem: str, source: str = "", key: str = "", hint: str = "") -> None:
        full = f"{problem} ({hint})" if hint else problem
        super().__init__(f"{source}: {full}" if source else full)
        self.problem, self.source, self.key, self.hint = problem, source, key, hint


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


class Settings(NamedTuple):
    config: Config
    problems: list[ConfigError]
    """Every mistake, in the order met; each setting named is skipped (keeps its default)."""
    server_lost: bool
    """A server was given but cannot be used: then none is (``config.server`` is empty), rather
    than the default one, which the user did not mean."""


_TYPES = {f.name: f.type for f in fields(Config)}
_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def config_path() -> Path:
    return config_dir() / "config.toml"


def _from_text(key: str, text: str) -> Any:
    """An environment variable (always text) as the setting's type, when it reads as one."""
    if _TYPES.get(key) == "bool":
        return _WORDS.get(text.strip().lower(), text)
    if _TYPES.get(key) == "int" and text.strip().isdigit():
        return int(text)
    return text


def _check(source: str, key: str, value: Any, themes: Collection[str] = ()) -> Any:
    """``value`` when it is right for setting ``key``, else a ConfigError that says why."""
    if key not in _TYPES:
        raise _not_one_of("unknown setting", key, _TYPES, "known", source, key)
    kind = _TYPES[key]
    quoted = " (without quotes)" if isinstance(value, str) and _from_text(key, value) != value else ""
    problem = ""
    if kind == "bool" and not isinstance(value, bool):
        problem = f"{key} must be true or false{quoted}, not {value!r}"
    elif kind == "int" and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 24 * 60):
        problem = f"{key} must be a whole number of minutes from 0 to 1440{quoted}, not {value!r}"
    elif kind == "str" and not isinstance(value, str):
        problem = f"{key} must be text in quotes, not {value!r}"
    elif key == "server" and value:
        problem = _server_problem(value)
    elif key == "theme" and themes and value not in themes:
        raise _not_one_of("there is no theme", value, themes, "themes", source, key)
    if problem:
        raise ConfigError(problem, source, key)
    return value


def _not_one_of(what: str, word: str, choices: Collection[str], label: str, source: str, key: str) -> ConfigError:
    """A name that is not one of ``choices``: the closest one, or (as the hint) them all."""
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return ConfigError(f"{what} {word!r} (did you mean {close[0]!r}?)", source, key)
    return ConfigError(f"{what} {word!r}", source, key, f"{label}: {', '.join(sorted(choices))}")


def check_server_url(value: str, source: str) -> None:
    problem = _server_problem(value)
    if problem:
        raise ConfigError(problem, source, "server")


def _server_problem(value: str) -> str:
    """A server address: a scheme we speak and a host; no user name, password, query or
    fragment (where a secret pasted by mistake would be shown back, and sent, in the clear)."""
    if not value.startswith(("http://", "https://", "ws://", "wss://")):
        return f"server must be a URL starting with http://, https://, ws:// or wss://, not {value!r}"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "server is not a valid URL"
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return "server must be a plain address (scheme, host, port), without a user name, password, query or fragment"
    if not parts.hostname:
        return "server needs a host name, as in http://chat.example.org:8765"
    return ""


def read_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    themes: Collection[str] = (),
) -> Settings:
    """The file, then ``TUI_CHAT_<SETTING>`` variables, then ``overrides`` (CLI flags; ``None``
    values ignored), and every mistake in them. A bad setting is skipped; a file that is not
    valid TOML is not used at all. ``themes``: the theme names the app has, to check ``theme``
    against (the client cannot know them)."""
    path = path or config_path()
    env = os.environ if env is None else env
    problems: list[ConfigError] = []
    given: list[tuple[str, str, Any]] = []  # (source, setting, value), lowest precedence first
    unreadable_server = False
    if path.exists():
        text = ""
        try:
            text = path.read_text(encoding="utf-8")
            given += [(str(path), key, value) for key, value in tomllib.loads(text).items()]
        except tomllib.TOMLDecodeError as exc:
            problems.append(ConfigError(f"not valid TOML, so none of it is used: {exc}", str(path)))
            unreadable_server = re.search(r"^\s*server\s*=", text, re.MULTILINE) is not None
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(ConfigError(f"cannot be read, so none of it is used: {exc}", str(path)))
    for key in _TYPES:
        name = f"TUI_CHAT_{key.upper()}"
        if name in env:
            given.append((f"environment variable {name}", key, _from_text(key, env[name])))
    given += [(f"--{key.replace('_', '-')}", key, value) for key, value in (overrides or {}).items() if value is not None]
    values: dict[str, Any] = {}
    for source, key, value in given:
        try:
            values[key] = _check(source, key, value, themes)
        except ConfigError as exc:
            problems.append(exc)
            if key == "server":
                values.pop("server", None)  # not a server from below the one that was meant
    server_lost = "server" not in values and (unreadable_server or any(p.key == "server" for p in problems))
    return Settings(replace(Config(), **values), problems, server_lost)


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """The settings as :func:`read_config` reads them, or a ConfigError naming every mistake."""
    config, problems, _ = read_config(path, env=env, overrides=overrides)
    if problems:
        raise ConfigError("; ".join(map(str, problems)))
    return config


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
