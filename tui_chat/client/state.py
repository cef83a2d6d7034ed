"""What the UI renders, and the small events that say which part of it changed.

The UI never asks the network: it reads this model (users, conversations, timelines) and
redraws only what an event names. Timelines are read by index (``timeline_length`` /
``timeline_slice`` on the service), so a conversation of 100,000 messages costs one page.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from tui_chat.protocol import Attachment

TimelineState = Literal["sent", "read", "pending", "failed"]


class ConnectionState(StrEnum):
    """The one vocabulary for the link, from the socket up to the connection bar."""

    CONNECTING = "connecting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"
    REPLACED = "replaced"
    """Another session of this device took over: not reconnecting until asked."""
    SIGNED_OUT = "signed_out"
    """The server refused the session: the person has to sign in again."""
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    status: str = "offline"
    """online, away, busy or offline."""
    text: str = ""
    last_seen: int | None = None


@dataclass(frozen=True, slots=True)
class Room:
    """A room this user is a member of (PROTOCOL.md 7.2), as the server last described it."""

    name: str
    """``#name``, the room's address."""
    title: str = ""
    owner: str = ""
    members: tuple[str, ...] = ()
    """In the order they joined (the owner first once it has been handed over)."""


@dataclass(frozen=True, slots=True)
class Conversation:
    peer: str
    """The other user, or a room's ``#name``."""
    unread: int = 0
    read_seq: int = 0
    peer_read_seq: int = 0
    """How far the other side has read (in a room: every other member): own messages up to it
    are shown as read."""
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
    attachment: Attachment | None = None
    """The file it carries (``file_id`` is ``""`` while a queued one is not uploaded yet)."""


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    kind: ConnectionState
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
    """Rows of one conversation changed, with the rows themselves, so that a view keeps its
    window up to date without reading the cache.

    A row in ``rows`` replaces the row of the same id, or is new; either way it belongs where
    its seq puts it among the sent rows, or (pending, failed) after all of them in outbox
    order. ``older`` is a page that goes before everything held. ``removed`` rows are gone;
    own rows up to ``peer_read_seq`` are now read. ``reload``: anything else (re-read it all).
    """

    peer: str
    rows: tuple[TimelineItem, ...] = ()
    older: tuple[TimelineItem, ...] = ()
    removed: tuple[str, ...] = ()
    peer_read_seq: int | None = None
    reload: bool = False


@dataclass(frozen=True, slots=True)
class HistoryReplaced:
    """Everything kept was swapped for another account's or another server's: re-read it all."""


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message from someone else arrived live (for notifications)."""

    peer: str
    sender: str
    body: str


@dataclass(frozen=True, slots=True)
class TypingChanged:
    """``sender`` started or stopped typing in ``peer`` (the sender themself, or a room)."""

    peer: str
    typing: bool
    sender: str = ""


@dataclass(frozen=True, slots=True)
class UploadProgress:
    """Bytes of a queued message's file on their way to the server."""

    message_id: str
    peer: str
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class RoomChanged:
    """A room was created, joined, renamed, or its members changed."""

    room: Room


@dataclass(frozen=True, slots=True)
class RoomLeft:
    """This user is no longer in ``room`` (left, or removed): it and its history are gone here."""

    room: str
    by_me: bool = False
    """This user left from this device (else: left on another device, or removed)."""


@dataclass(frozen=True, slots=True)
class ReadsChanged:
    """How far members of ``room`` have read changed (``Room`` read marks, from ``getReads``/``read``)."""

    room: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the person should be told once (e.g. no keyring on this machine)."""

    text: str


ClientEvent = (
    ConnectionChanged | UserChanged | UsersLoaded | ConversationChanged | TimelineChanged
    | HistoryReplaced | MessageReceived | TypingChanged | Notice | RoomChanged | RoomLeft | ReadsChanged | UploadProgress
)  # fmt: skip
