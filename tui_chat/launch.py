"""``tui-chat`` (no subcommand): choose the server, maybe start the built-in one, run the app.

Launch logic lives here, above both layers: it may use the server (the built-in one) and the UI,
which knows neither sockets nor the server."""

from __future__ import annotations

import argparse
import sys


def run_app(args: argparse.Namespace) -> int:
    from tui_chat.ui.app import ChatApp
    from tui_chat.server.embedded import EmbeddedServer, default_server_url, something_listens
    from tui_chat.ui import images
    from tui_chat.ui.session import Session

    session = Session.from_config(server=args.server, username=args.user)
    embedded = None
    if not session.server_configured:
        # Nothing configured: use whatever listens on the default address, or start our own.
        if not something_listens():
            embedded = EmbeddedServer()
        session.server = default_server_url()
    away = session.config.auto_away_minutes or None  # 0 turns auto-away off
    if sys.stdout.isatty():
        images.prepare(session.config.images)  # asks the terminal, which only works before the app starts
    app = ChatApp(session, embedded=embedded, bell=session.bell, auto_away_minutes=away)
    result = app.run()
    return result if isinstance(result, int) else (app.return_code or 0)
