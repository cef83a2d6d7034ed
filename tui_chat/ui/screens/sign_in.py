"""Sign in: server, username and password (or only a nickname on an open server).

The screen asks the server how it signs people in (``GET /info``) whenever the server field
changes, and shows "Create account" only where sign-up is allowed. Every failure becomes one
line of plain words under the form, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from tui_chat.ui.safe_text import safe_content
from tui_chat.ui.screens.focus_keys import FOCUS_KEYS

INFO_RETRY_S = 5.0
"""While the server cannot be reached, it is asked again this often (it may be starting up)."""


@dataclass(frozen=True)
class ServerInfo:
    auth: str = "accounts"
    """``accounts``, ``open`` or ``cognito``."""
    signup: bool = False


class SignInFailed(Exception):
    """A failure a person can act on; ``str()`` is the sentence to show, ``field`` the input
    to fix (``server``, ``username`` or ``password``; the form focuses it)."""

    def __init__(self, message: str, field: str = "password") -> None:
        super().__init__(message)
        self.field = field


class SignInBackend(Protocol):
    async def server_info(self, server: str) -> ServerInfo:
        """How ``server`` signs people in; raises :class:`SignInFailed` when unreachable."""

    async def sign_in(self, server: str, username: str, password: str, *, create: bool, mode: str) -> None:
        """Sign in (or create the account) or raise :class:`SignInFailed`."""


class SignInScreen(Screen[None]):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [
        Binding("f1", "app.help", "Keys"),
        *FOCUS_KEYS,
    ]

    class SignedIn(Message):
        """Signed in: the app moves on to the chat screen."""

        def __init__(self, server: str, username: str) -> None:
            super().__init__()
            self.server = server
            self.username = username

    def __init__(self, backend: SignInBackend, *, server: str = "", username: str = "", note: str = "", error: str = "") -> None:
        super().__init__()
        self.backend = backend
        self.initial_server = server
        self.initial_username = username
        self.note = note
        self.initial_error = error
        self.info: ServerInfo | None = None
        self._retry = None
        # The field typing starts in, focused as the screen is composed (Textual's auto-focus):
        # keys that arrive with the screen (typed while the app starts, or as a browser tab's page
        # appears) go there. Focused later, they would go to the first field, the server's, whose
        # address is selected on focus and so replaced by the username.
        self.AUTO_FOCUS = ("#password" if username else "#username") if server else "#server"

    def compose(self) -> ComposeResult:
        with Vertical(id="sign-in-box"):
            yield Static(Content.assemble(("tui-chat", "bold $accent"), "  sign in"), id="sign-in-title")
            yield Label("Server", classes="field-label")
            yield Input(self.initial_server, placeholder="http://host:8765", id="server")
            yield Static("", id="server-mode")
            yield Label("Username", id="username-label", classes="field-label")
            yield Input(self.initial_username, placeholder="your name", id="username", max_length=32)
            yield Label("Password", id="password-label", classes="field-label")
            yield Input(placeholder="password", password=True, id="password")
            yield Static(safe_content(self.initial_error), id="sign-in-error")
            with Horizontal(id="sign-in-buttons"):
                yield Button("Sign in", variant="primary", id="sign-in")
                yield Button("Create account", id="create-account")
            if self.note:
                yield Static(safe_content(self.note), id="sign-in-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#create-account").display = False
        self.query_one("#sign-in-error").display = bool(self.initial_error)
        if self.focused is None:  # auto-focus skips a screen composed while the app is blurred
            self.set_focus(self.query_one(self.AUTO_FOCUS, Input))
        if self.initial_server:
            self.load_info(self.initial_server)

    # --- the server's mode ------------------------------------------------------------------

    @on(Input.Changed, "#server")
    def _server_changed(self, event: Input.Changed) -> None:
        self.info = None
        self.load_info(event.value.strip())

    @work(exclusive=True, exit_on_error=False, group="server-info")
    async def load_info(self, server: str) -> None:
        if self._retry is not None:
            self._retry.stop()
            self._retry = None
        mode = self.query_one("#server-mode", Static)
        if not server:
            mode.update("")
            return
        if self.info is None:
            mode.update(Content.styled("asking the server…", "dim"))
        try:
            info = await self.backend.server_info(server)
        except SignInFailed as exc:
            retry = f" — trying again every {INFO_RETRY_S:g} s"
            mode.update(Content.assemble(("✗ ", "$error"), safe_content(str(exc), "dim"), (retry, "dim")))
            self._retry = self.set_timer(INFO_RETRY_S, lambda: self.load_info(server))
            return
        self.apply_info(info)

    def apply_info(self, info: ServerInfo) -> None:
        self.info = info
        open_mode = info.auth == "open"
        for selector in ("#password", "#password-label"):
            self.query_one(selector).display = not open_mode
        self.query_one("#username-label", Label).update("Nickname" if open_mode else "Username")
        self.query_one("#create-account").display = info.signup and not open_mode
        if open_mode:
            # Said before anyone signs in (issue 13): a nickname's conversations stay with the name.
            text = "open server: pick a nickname, no password. Whoever takes a nickname later sees its conversations"
        elif info.auth == "cognito":
            text = "Amazon Cognito accounts"
        else:
            text = "accounts" + (" — new accounts welcome" if info.signup else " — sign-up is closed")
        self.query_one("#server-mode", Static).update(Content.styled(f"✓ {text}", "dim"))

    # --- signing in -------------------------------------------------------------------------

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "server":
            self.query_one("#username", Input).focus()
        elif event.input.id == "username" and (self.info is None or self.info.auth != "open"):
            self.query_one("#password", Input).focus()
        else:
            self.attempt(create=False)

    @on(Button.Pressed, "#sign-in")
    def _sign_in_pressed(self) -> None:
        self.attempt(create=False)

    @on(Button.Pressed, "#create-account")
    def _create_pressed(self) -> None:
        self.attempt(create=True)

    def show_error(self, message: str) -> None:
        error = self.query_one("#sign-in-error", Static)
        error.update(Content.assemble(("✗ ", "bold"), safe_content(message)))
        error.display = bool(message)

    def attempt(self, *, create: bool) -> None:
        server = self.query_one("#server", Input).value.strip()
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
        mode = self.info.auth if self.info else "accounts"
        if not server:
            self.show_error("Which server? Enter its address, e.g. http://127.0.0.1:8765")
            return
        if not username:
            self.show_error("Enter a nickname." if mode == "open" else "Enter your username.")
            self.query_one("#username", Input).focus()
            return
        if mode != "open" and not password:
            self.show_error("Enter your password.")
            self.query_one("#password", Input).focus()
            return
        self.run_sign_in(server, username, password, create, mode)

    @work(exclusive=True, exit_on_error=False, group="sign-in")
    async def run_sign_in(self, server: str, username: str, password: str, create: bool, mode: str) -> None:
        self.show_error("")
        buttons = self.query("#sign-in-buttons Button")
        buttons.set(disabled=True)
        try:
            await self.backend.sign_in(server, username, password, create=create, mode=mode)
        except SignInFailed as exc:
            self.show_error(str(exc))
            self.query_one("#password", Input).value = ""
            field = self.query_one(f"#{exc.field}", Input)
            # The button that was pressed was disabled meanwhile and lost the focus: give it to
            # the field to fix, so the next key is not typed into (or Tab taken to) another one.
            self.set_focus(field if field.display else self.query_one("#username", Input))
            return
        finally:
            buttons.set(disabled=False)
        self.post_message(self.SignedIn(server, username))
