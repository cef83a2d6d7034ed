"""What the UI renders, and the small events that say which part of it changed.

The UI never asks the network: it reads this model (users, conversations, timelines) and
redraws only what an event names. Timelines are read by index (``timeline_length`` /
``timeline_slice`` on the service), so a conversation of 100,000 messages costs one page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TimelineState = Literal["sent", "read", "pending", "failed"]


@dataclass(frozen=True, slots=True)
class User:
    name: str
    status: str = "offline"
    """online, away, busy or offline."""
    text: str = ""
    last_seen: int | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    peer: str
    unread: int = 0
    read_seq: int = 0
    peer_read_seq: int = 0
    """How far the other side has read: own messages up to it are shown as read."""
    last_seq: int = 0
    last_ts: int = 0
    last_body: str = ""


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """One row of a conversation: an acked message (``seq`` set) or an outbox entry."""

    id: str
    sender: str
    to: str
    body: str
    ts: int
    seq: int | None
    state: TimelineState
    error: str | None = None


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    """``kind``: connecting, online, reconnecting, offline, replaced, signed_out, stopped."""

    kind: str
    retry_in: float | None
    queued: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class UserChanged:
    user: User


@dataclass(frozen=True, slots=True)
class UsersLoaded:
    """The whole user list was (re)loaded."""


@dataclass(frozen=True, slots=True)
class ConversationChanged:
    conversation: Conversation


@dataclass(frozen=True, slots=True)
class TimelineChanged:
    """Rows of one conversation changed: new messages, marks, or older pages loaded."""

    peer: str
    appended: int = 0
    """How many rows were added at the end (0: something else changed)."""
    prepended: int = 0


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message from someone else arrived live (for notifications)."""

    peer: str
    sender: str
    body: str


@dataclass(frozen=True, slots=True)
class TypingChanged:
    peer: str
    typing: bool


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the person should be told once (e.g. no keyring on this machine)."""

    text: str


ClientEvent = (
    ConnectionChanged | UserChanged | UsersLoaded | ConversationChanged | TimelineChanged
    | MessageReceived | TypingChanged | Notice
)  # fmt: skip
