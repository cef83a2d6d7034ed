"""``tui-chat doctor``: what the client would use, and whether it works, in plain words.

One line a check, each ``ok``, ``warning`` (it works, but you may want to know) or ``problem``
(something will fail); exit status 1 when there is a problem. It needs no server running and no
config file, and it prints no token or password: the keyring is only asked for an entry that
does not exist, and no sign-in is attempted.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import platform
import ssl
import sys
import tomllib
from collections import Counter
from typing import TextIO
from urllib.parse import urlsplit

from tui_chat import __version__
from tui_chat import protocol as p
from tui_chat.client.auth import http_base, token_file_path, ws_url
from tui_chat.client.config import Config, config_path, read_config
from tui_chat.client.identity import valid_server_id
from tui_chat.paths import data_dir

OK, WARNING, PROBLEM = "ok", "warning", "problem"
INFO_TIMEOUT_S = 5.0
"""How long to wait for ``GET /info``: shorter than the app's sign-in timeout, it is a check."""


class Report:
    """Prints one line a check and counts them."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.counts: Counter[str] = Counter()

    def __call__(self, status: str, what: str, detail: str) -> None:
        self.counts[status] += 1
        print(f"{status:<8} {what}: {detail}", file=self.out, flush=True)

    def summary(self) -> str:
        problems, warnings = self.counts[PROBLEM], self.counts[WARNING]
        if problems:
            return f"{_count(problems, 'problem')} found" + (f", and {_count(warnings, 'warning')}" if warnings else "") + "."
        if warnings:
            return f"No problems; {_count(warnings, 'warning')}."
        return "Every check passed."


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def run_doctor(args: argparse.Namespace, out: TextIO | None = None) -> int:
    say = Report(out or sys.stdout)
    say(OK, "version", f"tui-chat {__version__}, Python {platform.python_version()} ({sys.executable})")
    _guarded(say, "data folder", _data_folder, say)
    config, origin = _config(say, args)
    _guarded(say, "keyring", _keyring, say, config)
    if origin is None:
        say(PROBLEM, "server", "not checked: the server given cannot be used (see above). "
                               "tui-chat does not fall back to another server: its sign-in screen asks for one")  # fmt: skip
    else:
        _guarded(say, "server", _server, say, config, origin)
    print(say.summary(), file=say.out, flush=True)
    return 1 if say.counts[PROBLEM] else 0


def _guarded(say: Report, what: str, check, *args) -> None:
    """A check that fails in a way nobody foresaw is a problem line, not a traceback."""
    try:
        check(*args)
    except Exception as exc:  # noqa: BLE001 - reported, and the other checks still run
        say(PROBLEM, what, f"the check itself failed ({exc.__class__.__name__}: {exc})")


# --- files ------------------------------------------------------------------------------------


def _data_folder(say: Report) -> None:
    folder = data_dir()
    what = f"data folder {folder}" + (" (from TUI_CHAT_DATA_DIR)" if os.environ.get("TUI_CHAT_DATA_DIR") else "")
    if not folder.exists():
        parent = next(parent for parent in folder.parents if parent.exists())
        if os.access(parent, os.W_OK | os.X_OK):
            say(OK, what, "not there yet; tui-chat creates it (0700) when it first needs it")
        else:
            say(PROBLEM, what, f"not there, and it cannot be created: you may not write in {parent}")
        return
    if not folder.is_dir():
        say(PROBLEM, what, "it is not a folder")
        return
    if not os.access(folder, os.W_OK | os.X_OK):
        say(PROBLEM, what, "you may not write in it: tui-chat cannot keep your history, device id or sessions there")
        return
    if os.name != "posix":
        say(OK, what, "exists, and you may write in it")
        return
    status = folder.stat()
    mode = status.st_mode & 0o777
    if status.st_uid != os.getuid():
        say(WARNING, what, f"belongs to another user (uid {status.st_uid}), mode {mode:04o}")
    elif mode & 0o077:
        say(WARNING, what, f"mode {mode:04o}: other users of this machine may look inside (chmod 700 {folder} to keep it private)")
    else:
        say(OK, what, f"exists, only you may open it ({mode:04o})")


def _config(say: Report, args: argparse.Namespace) -> tuple[Config, str | None]:
    """The settings the app would use, and where its server comes from ("" when none is set,
    None when the address given is not valid). Each mistake is a line of its own."""
    from textual.theme import BUILTIN_THEMES  # the app's themes (it registers none of its own)

    path = config_path()
    what = f"config file {path}"
    config, problems, server_lost = read_config(path, overrides={"server": args.server, "username": args.user}, themes=BUILTIN_THEMES)
    in_file = [problem for problem in problems if problem.source == str(path)]
    if not path.exists():
        say(OK, what, "none, so the defaults are used")
    elif not in_file:
        keys = list(tomllib.loads(path.read_text(encoding="utf-8")))
        say(OK, what, f"read; it sets {', '.join(keys)}" if keys else "read; it is empty")
    for problem in problems:
        skipped = "; tui-chat skips this setting" if problem.key else ""
        if problem in in_file:
            say(PROBLEM, what, str(problem).removeprefix(f"{path}: ") + skipped)
        else:  # a TUI_CHAT_* variable or a flag
            say(PROBLEM, "settings", str(problem) + skipped)
    if server_lost:
        return config, None
    if args.server:
        origin = "--server"
    elif config.server and os.environ.get("TUI_CHAT_SERVER"):
        origin = "TUI_CHAT_SERVER"
    elif config.server:
        origin = "the config file"
    else:
        origin = ""
    return config, origin


def _keyring(say: Report, config: Config) -> None:
    import keyring
    from keyring.backends import fail, null

    backend = keyring.get_keyring()
    kind = f"{type(backend).__module__}.{type(backend).__qualname__}"
    name = f"{getattr(backend, 'name', type(backend).__name__)} ({kind})"
    if isinstance(backend, (fail.Keyring, null.Keyring)):
        why = "no system keyring works here"
    else:
        try:
            backend.get_password("tui-chat:doctor", "nobody")  # an entry nobody keeps: nothing secret is read
            why = ""
        except Exception as exc:  # noqa: BLE001 - a keyring that fails in any way is reported the same
            why = f"the keyring fails when asked ({exc.__class__.__name__})"
    if not why:
        say(OK, "keyring", f"{name}: your session is kept there")
    elif config.store_tokens_in_file:
        say(OK, "keyring", f"{name}: {why}; the session is kept in a 0600 file, as configured ({token_file_path(config.server_url)})")
    else:
        say(WARNING, "keyring", f"{name}: {why}; the session is kept in memory only, so you sign in again each time "
                                "(store_tokens_in_file = true in the config file keeps it in a 0600 file instead)")  # fmt: skip


# --- the server -------------------------------------------------------------------------------


def _server(say: Report, config: Config, origin: str) -> None:
    from tui_chat.server.embedded import something_listens

    url = config.server_url
    base = http_base(url)
    websocket = ws_url(url, cloud=config.cognito is not None)
    if origin:
        say(OK, "server", f"{base} (from {origin}); WebSocket {websocket}")
    elif config.cognito is None:
        if not something_listens():
            say(OK, "server", f"none configured and nothing listens at {base}: tui-chat starts its built-in server there "
                              f"(database {data_dir() / 'server.db'}), WebSocket {websocket}")  # fmt: skip
            return
        say(OK, "server", f"{base} (none configured: whatever listens at the default address); WebSocket {websocket}")
    else:
        say(OK, "server", f"{base} (the default address); WebSocket {websocket}")
    try:
        import httpx

        from tui_chat.client.tls import client_ssl_context

        verify = client_ssl_context()
    except (OSError, ssl.SSLError) as exc:  # SSL_CERT_FILE names a file that is not there, or not PEM
        say(PROBLEM, "TLS", f"SSL_CERT_FILE={os.environ.get('SSL_CERT_FILE')} cannot be loaded ({exc}): no https:// connection can be made")
        return
    path = "/" if config.cognito else "/info"  # the cloud deployment has no /info: the config names its pool
    try:
        with httpx.Client(timeout=INFO_TIMEOUT_S, verify=verify) as http:
            response = http.get(base + path)
    except httpx.HTTPError as exc:
        kind, reason = _why(exc)
        if kind == "certificate":
            say(PROBLEM, "TLS", f"{base} presented a certificate this machine does not trust ({reason}); "
                                "if it comes from your own certificate authority, set SSL_CERT_FILE to that authority's PEM file")  # fmt: skip
        elif kind == "tls":
            say(PROBLEM, "TLS", f"the TLS handshake with {base} failed ({reason})")
        else:
            say(PROBLEM, "connection", f"{base} cannot be reached ({reason}): is the server running, and is the address right?")
        return
    if config.cognito:
        pool = config.cognito
        say(OK, "connection", f"{base} answers (HTTP {response.status_code}; a cloud deployment has no /info)")
        say(OK, "sign-in", f"Amazon Cognito user pool {pool['userPoolId']} in {pool['region']}, from the config file")
    else:
        _info(say, base, response)
    if base.startswith("https://"):
        extra = f", with SSL_CERT_FILE={os.environ['SSL_CERT_FILE']}" if os.environ.get("SSL_CERT_FILE") else ""
        say(OK, "TLS", f"the certificate of {urlsplit(base).hostname} is trusted (the system's trust store{extra})")
    elif _loopback(base):
        say(OK, "TLS", "not used; fine, the server is on this machine")
    else:
        say(WARNING, "TLS", "not used: what you type, passwords too, crosses the network unencrypted "
                            "(the server needs --certfile and --keyfile, and you an https:// address)")  # fmt: skip


def _info(say: Report, base: str, response) -> None:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200 or not isinstance(data, dict) or data.get("auth") not in ("accounts", "open", "cognito"):
        said = f": {data['error']}" if isinstance(data, dict) and isinstance(data.get("error"), str) else ""
        say(PROBLEM, "connection", f"something answers at {base}, but not as a tui-chat server would (GET /info: HTTP {response.status_code}{said[:200]})")
        return
    server_id = valid_server_id(data.get("serverId"))
    say(OK, "connection", f"{base} answers: tui-chat {data.get('version') or '(version not said)'}, protocol {data.get('protocol')}, "
                      f"server id {server_id or '(none)'}")  # fmt: skip
    if data.get("protocol") != p.PROTOCOL_VERSION:
        say(WARNING, "protocol", f"the server speaks protocol {data.get('protocol')}, this client {p.PROTOCOL_VERSION}: some things may not work")
    if not server_id:
        say(WARNING, "server id", "the server sends none (an older release) or an unusable one: the client cannot tell it from another server at the same address")
    auth = data["auth"]
    if auth == "accounts":
        detail = "accounts: a username and password" + ("; anyone may create an account" if data.get("signup") else "; no new accounts")
    elif auth == "open":
        detail = "open: pick a nickname, no password (whoever takes a nickname later sees its conversations)"
    else:
        pool = data.get("cognito") if isinstance(data.get("cognito"), dict) else {}
        detail = f"cognito: Amazon Cognito user pool {pool.get('userPoolId', '?')} in {pool.get('region', '?')}"
    say(OK, "sign-in", detail)


def _why(exc: BaseException) -> tuple[str, str]:
    """``(kind, reason)``: ``certificate`` (with the verify message), ``tls``, ``timeout`` or
    ``unreachable`` (with the system's words: connection refused, name not known…)."""
    import httpx

    reason = ""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "certificate", str(cause.verify_message)
        if isinstance(cause, ssl.SSLError):
            return "tls", str(cause.reason or cause)
        if isinstance(cause, OSError) and cause.strerror and not reason:
            reason = cause.strerror[0].lower() + cause.strerror[1:]
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", f"no answer within {INFO_TIMEOUT_S:g} s"
    return "unreachable", reason or str(exc) or exc.__class__.__name__


def _loopback(base: str) -> bool:
    host = urlsplit(base).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

