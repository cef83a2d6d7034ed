"""The ``tui-chat`` command: the terminal client, and ``tui-chat serve`` for the server."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

from tui_chat import __version__
from tui_chat import protocol as p
from tui_chat.ratelimit import MAX_RATE
from tui_chat.server.deadline import (
    DEFAULT_REQUEST_HEAD_TIMEOUT_S,
    MAX_REQUEST_HEAD_TIMEOUT_S,
    MIN_REQUEST_HEAD_TIMEOUT_S,
)
from tui_chat.client.config import DEFAULT_SERVER
from tui_chat.web.settings import DEFAULT_MAX_SESSIONS, DEFAULT_WEB_PORT

MAX_COMMIT_WINDOW_MS = 10_000


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0 picks a free one), not {port}")
    return port


def _bounded(convert, low, high, what: str, name: str, unit: str):
    """An argparse type: ``convert`` the text, then keep it within [low, high] (nan and inf too)."""

    def parse(value: str):
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{name} is {low:g}-{high:g}{unit}, not {value}")
        return number

    return parse


_commit_window = _bounded(float, 0, MAX_COMMIT_WINDOW_MS, "a number of milliseconds", "the commit window", " ms")
_request_timeout = _bounded(float, MIN_REQUEST_HEAD_TIMEOUT_S, MAX_REQUEST_HEAD_TIMEOUT_S, "a number of seconds", "the request timeout", " s")
_rate = _bounded(float, 0.1, MAX_RATE, "a number of actions a second", "the rate limit", " actions a second")
_burst = _bounded(int, 1, MAX_RATE, "a whole number of actions", "the burst", " actions")
_auth_rate = _bounded(float, 1, MAX_RATE, "a number of requests a minute", "the sign-in rate", " requests a minute")
_retention = _bounded(int, 1, 36_500, "a whole number of days", "the retention", " days")
_forget_after = _bounded(int, 1, 525_600, "a whole number of minutes", "--forget-after", " minutes")
_max_file_size = _bounded(int, 0, 2**40, "a whole number of bytes", "--max-file-size", " bytes")
_file_url_ttl = _bounded(int, 10, 7 * 86_400, "a whole number of seconds", "--file-url-ttl", " s")
_max_sessions = _bounded(int, 1, 1000, "a whole number of sessions", "--max-sessions", " sessions")


def _existing_file(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return path


EXIT_CODES = "exit status: 0 stopped as asked (Ctrl-C, SIGTERM); 1 could not start (port in use, database, missing package); 2 bad flags"

ENV_PREFIX = "TUI_CHAT_"
ENV_RULE = (
    "Every flag can be set in the environment instead, for service managers: TUI_CHAT_ and the flag's name in capitals "
    "with underscores (--commit-window-ms 5 is TUI_CHAT_COMMIT_WINDOW_MS=5); an on/off flag takes true or false "
    "(TUI_CHAT_NO_SIGNUP=true is --no-signup), a repeatable flag a comma-separated list "
    "(TUI_CHAT_PUBLIC_HOST=chat.example.org,chat.internal). A flag on the command line wins; an empty variable counts as unset."
)


def env_variable(flag: str) -> str:
    """The environment variable that sets ``flag``: ``--commit-window-ms`` → ``TUI_CHAT_COMMIT_WINDOW_MS``."""
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


class _FromEnv(str):
    """A flag's default taken from the environment, as text. argparse runs a text default
    through the flag's ``type`` when the flag is not on the command line, and only then: that
    is where it is checked (see :func:`_option`), so a flag on the command line wins even over
    a bad variable, and a bad variable is an error of ``serve`` alone, not of ``--help`` or of
    the client."""


class _Switch(argparse.Action):
    """``store_true``/``store_false`` that also takes a ``type`` (to read its variable's true or false)."""

    def __init__(self, option_strings, dest, const, default=None, type=None, required=False, help=None):
        super().__init__(option_strings, dest, nargs=0, const=const, default=default, type=type, required=required, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const)


class _Repeatable(argparse.Action):
    """``append`` whose first use on the command line replaces the variable's list, not adds to it."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, [*(current if isinstance(current, list) else ()), values])


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _option(group, flag: str, **options) -> argparse.Action:
    """``group.add_argument(flag, **options)``, defaulting to ``TUI_CHAT_<FLAG>`` when that is set
    (``ENV_RULE``), whose value is checked by the flag's own ``type`` and ``choices``."""
    variable = env_variable(flag)
    kind, convert, choices = options.get("action", "store"), options.get("type"), options.get("choices")
    if "%(default" in options.get("help", ""):  # said now: the default below may become the variable's text
        options["help"] = (options["help"] % {"default": options.get("default")}).replace("%", "%%")

    def one(text: str):
        try:
            value = convert(text) if convert else text
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a valid value: {text!r}") from None
        if choices is not None and value not in choices:
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(map(str, choices))})")
        return value

    def switch(text: str):
        if text.lower() not in _TRUE + _FALSE:
            raise argparse.ArgumentTypeError(f"true or false, not {text!r}")
        return options["const"] if text.lower() in _TRUE else off

    def listed(text: str):
        return [one(part.strip()) for part in text.split(",") if part.strip()]

    read = one
    if kind in ("store_true", "store_false"):
        off = options.get("default", kind == "store_false")
        options.update(action=_Switch, const=kind == "store_true", default=off)
        read = switch
    elif kind == "append":
        options.update(action=_Repeatable, default=options.get("default") or [])
        read = listed

    def parse(value: str):
        """The flag's ``type``: ``convert`` for the command line (where argparse checks the
        choices itself), ``read`` for the variable, named in any error."""
        if not isinstance(value, _FromEnv):
            return convert(value) if convert else value
        try:
            return read(str(value).strip())
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"environment variable {variable}: {exc}") from None

    parse.__name__ = getattr(convert, "__name__", "str")  # argparse names the type in some errors
    options["type"] = parse
    if os.environ.get(variable, "").strip():
        options["default"] = _FromEnv(os.environ[variable])
    return group.add_argument(flag, **options)


def add_serve_parser(commands: argparse._SubParsersAction, name: str = "serve",
                     description: str = "Run the self-hosted chat server (WebSocket at /ws, sign-in over HTTP).") -> argparse.ArgumentParser:  # fmt: skip
    """The serve flags (the development tools reuse them for the Lambda emulator); each one may
    come from a ``TUI_CHAT_*`` variable instead (``ENV_RULE``)."""
    serve = commands.add_parser(name, help=description.split(" (")[0].rstrip(".").lower(), description=description,
                                epilog=f"{textwrap.fill(ENV_RULE, 78)}\n\n{textwrap.fill(EXIT_CODES, 78)}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    g0 = serve.add_argument_group("where it listens")
    _option(g0, "--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 for every interface)")
    _option(g0, "--port", type=_port, default=8765, help="port to listen on (default: %(default)s)")
    _option(g0, "--certfile", type=_existing_file, help="TLS certificate (PEM): serve wss:// and https://")
    _option(g0, "--keyfile", type=_existing_file, help="TLS private key (PEM), with --certfile")
    _option(g0, "--public-host", action="append", metavar="NAME", help="a name clients reach this server by, besides loopback names, IP addresses and this machine's own name (repeatable); requests for any other name are refused (DNS rebinding)")
    _option(g0, "--allow-origin", action="append", metavar="ORIGIN", help="a web origin (https://chat.example.org) whose pages may connect (repeatable; none by default)")
    _option(g0, "--request-timeout", type=_request_timeout, default=DEFAULT_REQUEST_HEAD_TIMEOUT_S, metavar="S", help="close a connection that has not sent a whole request, head and body (a WebSocket handshake included), within S seconds (default: %(default)g)")
    g1 = serve.add_argument_group("its data")
    _option(g1, "--db", type=Path, default=None, help="SQLite database file (default: server.db in the user data folder)")
    _option(g1, "--commit-window-ms", type=_commit_window, default=0.0, metavar="MS", help="wait up to MS for more writes before each commit: fewer fsyncs on a slow disk, MS more latency per ack (default: 0, group only what is already queued)")
    _option(g1, "--retention-days", type=_retention, default=None, metavar="DAYS", help="delete messages older than DAYS days (default: keep them)")
    _option(g1, "--max-file-size", type=_max_file_size, default=p.MAX_FILE_BYTES, metavar="BYTES", help="the largest attachment accepted; files are kept in a folder beside the database (default: %(default)s, 25 MiB)")
    _option(g1, "--file-url-ttl", type=_file_url_ttl, default=p.FILE_URL_TTL_S, metavar="SECONDS", help="how long an attachment's upload or download link works (default: %(default)s)")
    g2 = serve.add_argument_group("who may sign in")
    _option(g2, "--auth", choices=("accounts", "open", "cognito"), default="accounts", help="accounts: username and password; open: pick a nickname; cognito: Amazon Cognito ID tokens (default: %(default)s)")
    _option(g2, "--no-signup", dest="signup", action="store_false", help="refuse new accounts (accounts mode)")
    _option(g2, "--forget-after", type=_forget_after, default=None, metavar="MINUTES", help="--auth open: forget a nickname and its conversations once it has been offline MINUTES minutes (default: never)")
    _option(g2, "--auth-rate", type=_auth_rate, default=30.0, metavar="N", help="sign-up, sign-in and refresh requests each client address may make a minute; more get 429 (default: %(default)g)")
    _option(g2, "--cognito-region", help="--auth cognito: the user pool's AWS region")
    _option(g2, "--cognito-user-pool-id", help="--auth cognito: the user pool id")
    _option(g2, "--cognito-client-id", help="--auth cognito: the app client id (the tokens' audience)")
    _option(g2, "--cognito-group", help="--auth cognito: only members of this group may connect")
    g3 = serve.add_argument_group("limits per connection")
    _option(g3, "--rate-limit", type=_rate, default=p.RATE_LIMIT_PER_SECOND, metavar="N", help="actions a second each connection may sustain; more get rate_limited (default: %(default)g)")
    _option(g3, "--rate-burst", type=_burst, default=p.RATE_LIMIT_BURST, metavar="N", help="actions a connection may send at once before --rate-limit applies (default: %(default)s)")
    g4 = serve.add_argument_group("logging")
    _option(g4, "--log-level", choices=("debug", "info", "warning", "error"), default="info", help="how much the server says (default: %(default)s; debug redacts tokens too)")
    _option(g4, "--log-format", choices=("text", "json"), default="text", help="json: one JSON object a line")
    if name == "serve":
        g5 = serve.add_argument_group("the app in a browser (as tui-chat web, on a port of its own)")
        _option(g5, "--web", action="store_true", help="also serve the app to browsers, each tab its own app process signed in to this server")
        _option(g5, "--web-port", type=_port, default=None, metavar="PORT", help="--web: the page's port (default: --port + 1; 0 when --port is 0)")
        _option(g5, "--max-sessions", type=_max_sessions, default=None, metavar="N", help=f"--web: browser sessions at once, about 58 MiB each (default: {DEFAULT_MAX_SESSIONS})")
    return serve


def add_web_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``tui-chat web``: the app served to browsers (flags as ``serve``'s, from ``TUI_CHAT_*`` too)."""
    description = ("Serve the app to web browsers: each tab runs its own tui-chat, in a private folder that goes when the tab "
                   "closes, signed in to one chat server (--server) that visitors cannot change.")  # fmt: skip
    web = commands.add_parser("web", help="serve the app to web browsers", description=description,
                              epilog=f"{textwrap.fill(ENV_RULE, 78)}\n\n{textwrap.fill(EXIT_CODES, 78)}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    g0 = web.add_argument_group("where it listens")
    _option(g0, "--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 for every interface)")
    _option(g0, "--port", type=_port, default=DEFAULT_WEB_PORT, help="port to listen on (default: %(default)s)")
    _option(g0, "--certfile", type=_existing_file, help="TLS certificate (PEM): serve https:// and wss://")
    _option(g0, "--keyfile", type=_existing_file, help="TLS private key (PEM), with --certfile")
    _option(g0, "--public-host", action="append", metavar="NAME", help="a name browsers reach this page by, besides loopback names, IP addresses and this machine's own name (repeatable); requests for any other name are refused (DNS rebinding)")
    _option(g0, "--allow-origin", action="append", metavar="ORIGIN", help="another web origin whose pages may open sessions here (repeatable; the page's own origin always may)")
    g1 = web.add_argument_group("the sessions")
    g1.add_argument("--server", dest="web_server", metavar="URL", help=f"the chat server every session signs in to (default: tui-chat --server, else TUI_CHAT_SERVER, else {DEFAULT_SERVER})")
    _option(g1, "--max-sessions", type=_max_sessions, default=DEFAULT_MAX_SESSIONS, metavar="N", help="browser sessions at once, each an app process of about 58 MiB; more are told the server is busy (default: %(default)s)")
    g2 = web.add_argument_group("logging")
    _option(g2, "--log-level", choices=("debug", "info", "warning", "error"), default="info", help="how much it says (default: %(default)s)")
    _option(g2, "--log-format", choices=("text", "json"), default="text", help="json: one JSON object a line")
    return web


DOCTOR_EXIT_CODES = "exit status: 0 every check passed (warnings allowed); 1 a problem was found; 2 bad flags"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tui-chat", description="Real-time chat in the terminal.")
    parser.add_argument("--version", action="version", version=f"tui-chat {__version__}")
    parser.add_argument("--server", help="server URL, e.g. http://chat.example.org:8765 (default: from the config file)")
    parser.add_argument("--user", help="username to sign in as (default: the last one)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_serve_parser(commands)
    add_web_parser(commands)
    from tui_chat.admin import add_admin_parser

    add_admin_parser(commands, _option)
    commands.add_parser(
        "doctor", help="check what the client would use, and whether it works",
        description="Check what the client would use (data folder, config file, keyring, server, TLS) and whether it works, "
        "one line a check: ok, warning or problem. Another server: tui-chat --server URL doctor. Prints no token or password.",
        epilog=DOCTOR_EXIT_CODES,
    )  # fmt: skip
    return parser


def fast_loop():
    """uvloop where it is installed (Linux, macOS): about a fifth more messages per second."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_serve(args: argparse.Namespace, build=None) -> int:
    """``tui-chat serve``; ``build`` makes the ASGI app from the options (the self-hosted server
    by default; the development tools pass the API Gateway emulator)."""
    from tui_chat.paths import NotADatabase
    from tui_chat.server.logs import configure_logging
    from tui_chat.ratelimit import RateLimit
    from tui_chat.server.serve import build_app, listening_socket, make_server
    from tui_chat.server.settings import Settings

    if bool(args.certfile) != bool(args.keyfile):
        print("tui-chat serve: --certfile and --keyfile go together", file=sys.stderr)
        return 2
    cognito = (args.cognito_region, args.cognito_user_pool_id, args.cognito_client_id)
    if args.auth == "cognito" and not all(cognito):
        print("tui-chat serve: --auth cognito needs --cognito-region, --cognito-user-pool-id and --cognito-client-id", file=sys.stderr)
        return 2
    if args.forget_after is not None and args.auth != "open":
        print(f"tui-chat serve: --forget-after is for --auth open, not --auth {args.auth}", file=sys.stderr)
        return 2
    if not args.signup and args.auth != "accounts":
        print(f"tui-chat serve: --no-signup is for --auth accounts (--auth {args.auth} has no sign-up to refuse)", file=sys.stderr)
        return 2
    web = getattr(args, "web", False)  # the development tools' parser has no web flags
    if web or getattr(args, "web_port", None) is not None or getattr(args, "max_sessions", None) is not None:
        from tui_chat.web.run import WebFlagError, check_serve_flags

        try:
            check_serve_flags(args)
        except WebFlagError as exc:
            print(f"tui-chat serve: {exc}", file=sys.stderr)
            return 2
    configure_logging(args.log_level, args.log_format)
    try:
        sock = listening_socket(args.host, args.port)
    except OSError as exc:
        print(f"tui-chat serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    web_sock = web_settings = None
    if web:
        code, web_sock, web_settings = _web_beside(args, sock)
        if code:
            return code
    options = Settings(
        host=args.host, port=args.port, db=args.db, auth=args.auth, signup=args.signup,
        forget_after_minutes=args.forget_after, retention_days=args.retention_days,
        max_file_bytes=args.max_file_size, file_url_ttl_s=args.file_url_ttl,
        commit_window_ms=args.commit_window_ms, request_timeout_s=args.request_timeout,
        rate_limit=RateLimit(args.rate_limit, args.rate_burst), auth_per_minute=args.auth_rate,
        public_hosts=tuple(args.public_host), allowed_origins=tuple(args.allow_origin),
        certfile=args.certfile, keyfile=args.keyfile, log_level=args.log_level,
        cognito_region=args.cognito_region, cognito_user_pool_id=args.cognito_user_pool_id,
        cognito_client_id=args.cognito_client_id, cognito_group=args.cognito_group,
    )  # fmt: skip
    try:
        app = (build or build_app)(options)
    except (ImportError, NotADatabase, OSError, RuntimeError) as exc:
        for bound in (sock, web_sock):
            if bound is not None:
                bound.close()
        if isinstance(exc, ImportError):
            print(f"tui-chat serve: a package this needs is not installed: {exc.name}", file=sys.stderr)
        elif isinstance(exc, NotADatabase):  # said before anything was created or changed
            print(f"tui-chat serve: {exc}", file=sys.stderr)
        else:
            print(f"tui-chat serve: cannot open {options.db_path}: {exc}", file=sys.stderr)
        return 1
    server = make_server(options, app)
    # Ctrl-C and SIGTERM stop the server gracefully (uvicorn catches them, then raises them again
    # once it has shut down): with these handlers in place that is a normal exit, not a
    # KeyboardInterrupt traceback or a death by signal (exit 143).
    stops: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: stops.append(number)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with asyncio.Runner(loop_factory=fast_loop()) as runner:
            if web_settings is None:
                runner.run(server.serve(sockets=[sock]))
            else:
                from tui_chat.web.run import serve_beside

                runner.run(serve_beside(server, sock, web_sock, web_settings))
    except SystemExit:  # uvicorn's own exit when the app fails to start (it logged why)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def _web_beside(args: argparse.Namespace, chat_sock):
    """``serve --web``: (exit status or 0, the web front's socket, its settings), checked and
    bound before anything is created."""
    try:
        from tui_chat.web.run import bind, check_tls, settings_beside
    except ImportError as exc:
        chat_sock.close()
        print(f"tui-chat serve: --web needs a package that is not installed: {exc.name}", file=sys.stderr)
        return 1, None, None
    settings = settings_beside(args, chat_sock.getsockname()[1])
    problem = check_tls(settings)
    if problem:
        chat_sock.close()
        print(f"tui-chat serve: --web: {problem}", file=sys.stderr)
        return 1, None, None
    try:
        web_sock = bind(settings.host, settings.port)
    except OSError as exc:
        chat_sock.close()
        print(f"tui-chat serve: cannot listen on {settings.host}:{settings.port} for --web: {exc.strerror or exc}", file=sys.stderr)
        return 1, None, None
    return 0, web_sock, settings


def run_web_command(args: argparse.Namespace) -> int:
    """``tui-chat web``: its own checks, then :func:`tui_chat.web.run.run_web`."""
    if sys.platform == "win32":
        print("tui-chat web: serving the app to browsers needs Linux or macOS (process groups and signals)", file=sys.stderr)
        return 1
    if args.user:
        print("tui-chat web: --user is for the app in a terminal; in a browser each visitor signs in themselves", file=sys.stderr)
        return 2
    if bool(args.certfile) != bool(args.keyfile):
        print("tui-chat web: --certfile and --keyfile go together", file=sys.stderr)
        return 2
    server = args.web_server or args.server or os.environ.get("TUI_CHAT_SERVER", "").strip() or DEFAULT_SERVER
    from tui_chat.client.config import ConfigError, check_server_url

    try:
        check_server_url(server, "--server")
    except ConfigError as exc:
        print(f"tui-chat web: {exc}", file=sys.stderr)
        return 2
    from tui_chat.web.run import run_web

    return run_web(args, server)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "web":
        return run_web_command(args)
    if args.command == "admin":
        from tui_chat.admin import run_admin

        return run_admin(args)
    if args.command == "doctor":
        from tui_chat.doctor import run_doctor  # imported lazily, like the app

        return run_doctor(args)
    from tui_chat.launch import run_app  # imported lazily: the server needs none of Textual

    return run_app(args)


if __name__ == "__main__":
    sys.exit(main())
