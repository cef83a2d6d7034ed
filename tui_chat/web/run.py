"""Starting the web front: on its own (``tui-chat web``), or beside the chat server (``serve --web``).

Beside the chat server it listens on a port of its own, in the same process and event loop.
One port would need one of two things, both worse: textual-serve's aiohttp handlers rewritten as
ASGI inside the chat server (and its routes, ``/ws`` among them, moved under a prefix), or a proxy
hop in front of one of them for every frame. Two ports keep each server as it is tested: the
chat server's protocol, limits and TLS untouched, and the sessions connect to it over the
loopback like any other client.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import ssl
import sys

from tui_chat.web.settings import WebSettings

log = logging.getLogger("tui_chat.web")


class WebFlagError(ValueError):
    """A web flag that does not fit (exit status 2); ``str()`` says why."""


def bind(host: str, port: int) -> socket.socket:
    """The web front's socket, bound before anything is created. Raises ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=512)


def check_tls(settings: WebSettings) -> str | None:
    """Why the certificate and key cannot serve TLS, or None."""
    try:
        settings.ssl_context()
    except (ssl.SSLError, OSError) as exc:
        return f"cannot use {settings.certfile} and {settings.keyfile} for TLS: {getattr(exc, 'reason', None) or exc}"
    return None


def chat_server_url(args: argparse.Namespace, port: int) -> str:
    """How the sessions beside ``serve`` reach it: over the loopback when it listens there (or
    everywhere); with TLS by its first ``--public-host``, the name its certificate is for."""
    host = args.host
    if args.certfile and args.public_host:
        host = args.public_host[0]
    elif host in ("0.0.0.0", ""):  # nosec B104 - a comparison: listening everywhere, reached over the loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if args.certfile else 'http'}://{shown}:{port}"


def web_port_beside(args: argparse.Namespace) -> int:
    """``--web-port``, or the chat server's port + 1 (a free one when that is 0)."""
    if args.web_port is not None:
        return args.web_port
    return 0 if args.port == 0 else args.port + 1


def check_serve_flags(args: argparse.Namespace) -> None:
    """The web flags of ``serve``: raises :class:`WebFlagError`."""
    if not args.web:
        given = [flag for flag, value in (("--web-port", args.web_port), ("--max-sessions", args.max_sessions)) if value is not None]
        if given:
            raise WebFlagError(f"{' and '.join(given)} {'go' if len(given) > 1 else 'goes'} with --web")
        return
    if args.port != 0 and web_port_beside(args) == args.port:
        raise WebFlagError(f"--web-port must differ from --port ({args.port})")
    if args.port == 65535 and args.web_port is None:
        raise WebFlagError("--port 65535 leaves no port after it for the web page: give --web-port")


def settings_beside(args: argparse.Namespace, chat_port: int) -> WebSettings:
    from tui_chat.web.settings import DEFAULT_MAX_SESSIONS

    return WebSettings(server_url=chat_server_url(args, chat_port), host=args.host, port=web_port_beside(args),
                       max_sessions=args.max_sessions or DEFAULT_MAX_SESSIONS, certfile=args.certfile, keyfile=args.keyfile,
                       public_hosts=tuple(args.public_host), allowed_origins=tuple(args.allow_origin))  # fmt: skip


async def serve_beside(server, chat_sock: socket.socket, web_sock: socket.socket, settings: WebSettings) -> None:
    """The chat server (a ``ChatServer``) and the web front in one event loop. On the way out the
    sessions end first, while the chat server can still say goodbye to them."""
    from tui_chat.web.front import WebFront

    front = WebFront(settings)
    await front.start(web_sock)
    server.before_shutdown.append(front.stop)
    try:
        await server.serve(sockets=[chat_sock])
    finally:
        await front.stop()  # again if the chat server never started (nothing left to do then)


def run_web(args: argparse.Namespace, server_url: str) -> int:
    """``tui-chat web``: the flags are checked; exit status as ``serve``'s."""
    from tui_chat.server.logs import configure_logging

    settings = WebSettings(server_url=server_url, host=args.host, port=args.port, max_sessions=args.max_sessions,
                           certfile=args.certfile, keyfile=args.keyfile, public_hosts=tuple(args.public_host),
                           allowed_origins=tuple(args.allow_origin))  # fmt: skip
    try:
        from tui_chat.web.front import WebFront
    except ImportError as exc:
        print(f"tui-chat web: a package this needs is not installed: {exc.name}", file=sys.stderr)
        return 1
    problem = check_tls(settings)
    if problem:
        print(f"tui-chat web: {problem}", file=sys.stderr)
        return 1
    configure_logging(args.log_level, args.log_format)
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))  # a line per request is noise
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        print(f"tui-chat web: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        front = WebFront(settings)
        await front.start(sock)
        checking = asyncio.create_task(_check_server(server_url))
        try:
            await stop.wait()
        finally:
            checking.cancel()
            await front.stop()

    from tui_chat.cli import fast_loop

    with asyncio.Runner(loop_factory=fast_loop()) as runner:
        runner.run(main())
    return 0


async def _check_server(server_url: str) -> None:
    """Say at once when the chat server does not answer (sessions would only show it retrying)."""
    import httpx

    from tui_chat.client.auth import http_base
    from tui_chat.client.tls import client_ssl_context

    try:
        async with httpx.AsyncClient(timeout=5, verify=client_ssl_context()) as client:
            (await client.get(http_base(server_url) + "/info")).raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("the chat server does not answer; sessions will wait for it", extra={"server": server_url, "error": str(exc) or type(exc).__name__})
