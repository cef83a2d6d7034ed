"""One browser session's app: the terminal app, with what a browser visitor must not reach taken out.

Run by the web front as ``python -m tui_chat.web.browser_app --server URL``, in the session's
own folder and environment (``isolation``). It is the same ``ChatApp`` as in a terminal, except:

- The server is the host's choice: the sign-in form's server field cannot be changed, and a
  session that was asked for any other address refuses it (the visitor would otherwise make the
  host connect wherever they like).
- Sending a file is off: the files around the app are the host's, not the visitor's.
- A file downloaded from the chat goes to the visitor's browser, not to a program on the host.
- The process ends when the web front does, even if the front was killed (Linux).
"""

from __future__ import annotations

import argparse
import os
import sys

from pathlib import Path

from textual import events, work
from textual.screen import Screen
from textual.widgets import Input

from tui_chat.client.auth import http_base
from tui_chat.ui.app import ChatApp
from tui_chat.ui.screens.sign_in import SignInFailed, SignInScreen
from tui_chat.ui.session import Session
from tui_chat.web.isolation import PARENT_VARIABLE


class PinnedSession(Session):
    """A session whose server is fixed: a client for any other address is refused."""

    pinned = ""

    def _client_for(self, server: str):
        if http_base(server) != http_base(self.pinned):
            raise SignInFailed(f"This page signs in to {http_base(self.pinned)} only.", "server")
        return super()._client_for(server)


class BrowserChatApp(ChatApp):
    """``ChatApp`` for a browser tab (see the module's docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._delivering: dict[str, Path] = {}
        """Files handed to the browser, by delivery key, until it has them."""

    def on_mount(self) -> None:
        self.screen_change_signal.subscribe(self, self._screen_changed)
        super().on_mount()

    def _screen_changed(self, screen: Screen) -> None:
        if isinstance(screen, SignInScreen):
            # After the screen has composed its fields (the signal comes as it is pushed).
            screen.call_after_refresh(self._lock_server_field, screen)

    @staticmethod
    def _lock_server_field(screen: SignInScreen) -> None:
        for field in screen.query("#server").results(Input):
            field.disabled = True

    def action_attach(self) -> None:
        self.notify("Files cannot be sent from the browser: the files here are the server's, not yours. "
                    "Use tui-chat in a terminal to send one.", severity="warning", timeout=8)  # fmt: skip

    @work(exit_on_error=False, group="downloads")
    async def run_download(self, message_key: str, name: str) -> None:
        """Fetch the file in this session's own folder, then hand it to the browser."""
        from tui_chat.ui.safe_text import safe_str

        self.notify(f"Downloading {safe_str(name)}…", markup=False, timeout=3)
        try:
            saved = await self.session.download(message_key)
        except ValueError as exc:
            self.notify(safe_str(str(exc)), title="Not saved", severity="error", markup=False)
            return
        self._delivering[self.deliver_binary(saved, open_method="download", name=saved.name) or ""] = saved
        # The page opens the link in a new window, which a popup blocker may stop when the fetch
        # took longer than the browser's few seconds of grace after a key press.
        self.notify(f"Handing {safe_str(name)} to your browser. If nothing comes, allow pop-ups for this page "
                    "and press enter on the file again.", markup=False, timeout=8)  # fmt: skip

    def on_delivery_complete(self, event: events.DeliveryComplete) -> None:
        from tui_chat.ui.safe_text import safe_str

        saved = self._delivering.pop(event.key, None)
        if saved is not None:
            saved.unlink(missing_ok=True)  # the browser has it: no copy stays on the server
            self.notify(f"{safe_str(saved.name)} went to your browser's downloads.", markup=False, timeout=5)

    def on_delivery_failed(self, event: events.DeliveryFailed) -> None:
        saved = self._delivering.pop(event.key, None)
        if saved is not None:
            saved.unlink(missing_ok=True)
            self.notify("The file did not reach your browser; choose it in the palette again.", severity="error", markup=False)


def _end_with_parent() -> None:
    """Linux: be sent SIGTERM when the web front's process ends, however it ends; and end at
    once if it has already (the front's pid is in ``TUI_CHAT_WEB_PARENT``)."""
    expected = os.environ.get(PARENT_VARIABLE, "")
    if not sys.platform.startswith("linux") or not expected.isdigit():
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(expected):
        sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui_chat.web.browser_app",
                                     description="One browser session's tui-chat (started by tui-chat web).")  # fmt: skip
    parser.add_argument("--server", required=True, help="the chat server, fixed for this session")
    args = parser.parse_args(argv)
    _end_with_parent()
    session = PinnedSession.from_config(server=args.server)
    session.pinned = args.server
    session.server = args.server
    away = session.config.auto_away_minutes or None
    app = BrowserChatApp(session, bell=session.bell, auto_away_minutes=away)
    result = app.run()
    return result if isinstance(result, int) else (app.return_code or 0)


if __name__ == "__main__":
    sys.exit(main())
