"""The ``tui-chat`` command: the terminal client, and ``tui-chat serve`` for the server."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from tui_chat import __version__
from tui_chat import protocol as p
from tui_chat.ratelimit import MAX_RATE
from tui_chat.server.deadline import (
    DEFAULT_REQUEST_HEAD_TIMEOUT_S,
    MAX_REQUEST_HEAD_TIMEOUT_S,
    MIN_REQUEST_HEAD_TIMEOUT_S,
)

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


def _existing_file(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return path


EXIT_CODES = "exit status: 0 stopped as asked (Ctrl-C, SIGTERM); 1 could not start (port in use, database, missing package); 2 bad flags"


def add_serve_parser(commands: argparse._SubParsersAction, name: str = "serve",
                     description: str = "Run the self-hosted chat server (WebSocket at /ws, sign-in over HTTP).") -> argparse.ArgumentParser:  # fmt: skip
    """The serve flags (the development tools reuse them for the Lambda emulator)."""
    serve = commands.add_parser(name, help=description.split(" (")[0].rstrip(".").lower(), description=description, epilog=EXIT_CODES)
    g0 = serve.add_argument_group("where it listens")
    g0.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 for every interface)")
    g0.add_argument("--port", type=_port, default=8765, help="port to listen on (default: %(default)s)")
    g0.add_argument("--certfile", type=_existing_file, help="TLS certificate (PEM): serve wss:// and https://")
    g0.add_argument("--keyfile", type=_existing_file, help="TLS private key (PEM), with --certfile")
    g0.add_argument("--public-host", action="append", default=[], metavar="NAME", help="a name clients reach this server by, besides loopback names, IP addresses and this machine's own name (repeatable); requests for any other name are refused (DNS rebinding)")
    g0.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN", help="a web origin (https://chat.example.org) whose pages may connect (repeatable; none by default)")
    g0.add_argument("--request-timeout", type=_request_timeout, default=DEFAULT_REQUEST_HEAD_TIMEOUT_S, metavar="S", help="close a connection that has not sent a whole request head (a WebSocket handshake included) within S seconds (default: %(default)g)")
    g1 = serve.add_argument_group("its data")
    g1.add_argument("--db", type=Path, default=None, help="SQLite database file (default: server.db in the user data folder)")
    g1.add_argument("--commit-window-ms", type=_commit_window, default=0.0, metavar="MS", help="wait up to MS for more writes before each commit: fewer fsyncs on a slow disk, MS more latency per ack (default: 0, group only what is already queued)")
    g2 = serve.add_argument_group("who may sign in")
    g2.add_argument("--auth", choices=("accounts", "open", "cognito"), default="accounts", help="accounts: username and password; open: pick a nickname; cognito: Amazon Cognito ID tokens (default: %(default)s)")
    g2.add_argument("--no-signup", dest="signup", action="store_false", help="refuse new accounts (accounts mode)")
    g2.add_argument("--auth-rate", type=_auth_rate, default=30.0, metavar="N", help="sign-up, sign-in and refresh requests each client address may make a minute; more get 429 (default: %(default)g)")
    g2.add_argument("--cognito-region", help="--auth cognito: the user pool's AWS region")
    g2.add_argument("--cognito-user-pool-id", help="--auth cognito: the user pool id")
    g2.add_argument("--cognito-client-id", help="--auth cognito: the app client id (the tokens' audience)")
    g2.add_argument("--cognito-group", help="--auth cognito: only members of this group may connect")
    g3 = serve.add_argument_group("limits per connection")
    g3.add_argument("--rate-limit", type=_rate, default=p.RATE_LIMIT_PER_SECOND, metavar="N", help="actions a second each connection may sustain; more get rate_limited (default: %(default)g)")
    g3.add_argument("--rate-burst", type=_burst, default=p.RATE_LIMIT_BURST, metavar="N", help="actions a connection may send at once before --rate-limit applies (default: %(default)s)")
    g4 = serve.add_argument_group("logging")
    g4.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info", help="how much the server says (default: %(default)s; debug redacts tokens too)")
    g4.add_argument("--log-format", choices=("text", "json"), default="text", help="json: one JSON object a line")
    return serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tui-chat", description="Real-time chat in the terminal.")
    parser.add_argument("--version", action="version", version=f"tui-chat {__version__}")
    parser.add_argument("--server", help="server URL, e.g. http://chat.example.org:8765 (default: from the config file)")
    parser.add_argument("--user", help="username to sign in as (default: the last one)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_serve_parser(commands)
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
    configure_logging(args.log_level, args.log_format)
    try:
        sock = listening_socket(args.host, args.port)
    except OSError as exc:
        print(f"tui-chat serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    options = Settings(
        host=args.host, port=args.port, db=args.db, auth=args.auth, signup=args.signup,
        commit_window_ms=args.commit_window_ms, request_timeout_s=args.request_timeout,
        rate_limit=RateLimit(args.rate_limit, args.rate_burst), auth_per_minute=args.auth_rate,
        public_hosts=tuple(args.public_host), allowed_origins=tuple(args.allow_origin),
        certfile=args.certfile, keyfile=args.keyfile, log_level=args.log_level,
        cognito_region=args.cognito_region, cognito_user_pool_id=args.cognito_user_pool_id,
        cognito_client_id=args.cognito_client_id, cognito_group=args.cognito_group,
    )  # fmt: skip
    try:
        app = (build or build_app)(options)
    except ImportError as exc:
        sock.close()
        print(f"tui-chat serve: a package this needs is not installed: {exc.name}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        sock.close()
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
            runner.run(server.serve(sockets=[sock]))
    except SystemExit:  # uvicorn's own exit when the app fails to start (it logged why)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_serve(args)
    from tui_chat.launch import run_app  # imported lazily: the server needs none of Textual

    return run_app(args)


if __name__ == "__main__":
    sys.exit(main())
