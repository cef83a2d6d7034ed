"""What the widgets display: small immutable rows, independent of the client service.

The widgets never see the client's own types; ``tui_chat.ui.adapt`` turns client state into
these rows. That keeps the widgets testable (and snapshot-able) with fixed data and no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tui_chat.client.state import ConnectionState  # the link's one vocabulary (a plain data module)

Mark = Literal["none", "pending", "sent", "read", "failed"]
"""``none`` for other people's messages; the rest describe one of our own."""

PresenceName = Literal["online", "away", "busy", "offline", "unknown"]
"""``unknown``: we are not connected, so whatever we last heard may no longer be true."""


@dataclass(frozen=True, slots=True)
class MessageRow:
    key: str
    """The message id: stable from the moment it is queued to after the server stored it."""
    sender: str
    body: str
    ts: int
    """Milliseconds since the epoch (the server's time once stored, ours while pending)."""
    mine: bool = False
    mark: Mark = "none"
    reason: str = ""
    """Why a ``failed`` message was not sent, for people."""
    read_by: tuple[str, ...] = ()
    """In a room: the members whose read mark is at this message (no further row is read by them)."""
    attachment: str = ""
    """The file it carries, for people: "photo.jpg · 196 KB · image/jpeg" (the name is someone's
    text: drawn literally)."""
    transfer: str = ""
    """How the file's transfer goes: "uploading 40%"."""


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    status: PresenceName = "offline"
    text: str = ""
    unread: int = 0
    is_me: bool = False
    last_seen: int | None = None
    """When an offline user's last connection closed (ms), if the server knows."""
    room_title: str | None = None
    """Set for a room (``name`` is its ``#name``; ``""`` when untitled); None for a person."""
    members: int = 0
    """A room's members."""

    @property
    def is_room(self) -> bool:
        return self.room_title is not None


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """The open room, for the conversation's header."""

    name: str
    title: str
    owner: str
    members: tuple[UserRow, ...]
    """Every member with their presence, in the order they joined."""


STATUS_MARKS: dict[str, str] = {"online": "●", "away": "◐", "busy": "⊘", "offline": "○", "unknown": "◌"}
"""Status marks that differ in shape, not only in colour."""



@dataclass(frozen=True, slots=True)
class ConnectionRow:
    state: ConnectionState = ConnectionState.CONNECTING
    retry_at: float | None = None
    """``time.monotonic()`` of the next reconnect attempt, while ``reconnecting``."""
    queued: int = 0
    """Messages in the outbox, waiting for the connection."""
    server: str = ""
    user: str = ""
    note: str = ""
    """Extra words, e.g. that the server runs inside this process."""
    detail: str = ""
    """Why we are offline, from the client service (shown literally)."""
