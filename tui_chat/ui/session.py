"""The one adapter between the UI and the client service (``tui_chat.client``).

It implements what the screens read (``ChatData``: users, rows, connection…), what the
sign-in screen needs (``SignInBackend``) and the calls the app makes, by delegating to the
client service and translating its state into the UI's rows. Keeping every client name in
this module means the widgets and screens never import the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tui_chat.ui.screens.sign_in import ServerInfo, SignInFailed
from tui_chat.ui.view_model import ConnectionRow, MessageRow, UserRow


@dataclass
class Change:
    """What one service event touched, so the app refreshes only that."""

    users: bool = False
    connection: bool = False
    typing: bool = False
    conversations: set[str] = field(default_factory=set)
    incoming: str | None = None
    """The sender of a new message from someone else (for a notification)."""
    preview: str = ""
    replaced: bool = False
    signed_out: bool = False


class Session:
    """The client service as the UI sees it."""

    def __init__(self, server: str = "", username: str = "", *, client_factory=None) -> None:
        self.server = server
        self.username = username
        self.embedded_note = ""
        self.last_conversation: str | None = None
        self.theme: str | None = None
        self.bell = False
        self._client_factory = client_factory
        self.client: Any = None

    @classmethod
    def from_config(cls, *, server: str | None = None, username: str | None = None) -> "Session":
        raise NotImplementedError("waiting for tui_chat.client")

    # --- SignInBackend --------------------------------------------------------------------

    async def server_info(self, server: str) -> ServerInfo:
        raise SignInFailed("the client service is not available yet")

    async def sign_in(self, server: str, username: str, password: str, *, create: bool, mode: str) -> None:
        raise SignInFailed("the client service is not available yet")

    async def resume(self) -> bool:
        return False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def events(self) -> AsyncIterator[Any]:
        return
        yield

    def describe(self, event: Any) -> Change:
        return Change(users=True, connection=True, typing=True)

    # --- ChatData ----------------------------------------------------------------------------

    @property
    def me(self) -> str:
        return self.username

    def users(self) -> Sequence[UserRow]:
        return []

    def rows(self, conversation: str) -> Sequence[MessageRow]:
        return []

    def has_more(self, conversation: str) -> bool:
        return False

    def typing(self, conversation: str) -> bool:
        return False

    def connection(self) -> ConnectionRow:
        return ConnectionRow("offline", server=self.server, user=self.username, note=self.embedded_note)

    def unread_total(self) -> int:
        return sum(u.unread for u in self.users())

    def my_status(self) -> str:
        return "online"

    def save_theme(self, theme: str) -> None:
        self.theme = theme

    # --- actions -----------------------------------------------------------------------------

    async def send(self, to: str, body: str) -> None: ...

    async def retry(self, message_id: str) -> None: ...

    async def discard(self, message_id: str) -> None: ...

    async def open_conversation(self, conversation: str) -> None:
        self.last_conversation = conversation

    async def load_older(self, conversation: str) -> None: ...

    async def mark_read(self, conversation: str) -> None: ...

    async def typing_notice(self, to: str) -> None: ...

    async def set_status(self, status: str, text: str = "") -> None: ...

    async def sign_out(self) -> None: ...
