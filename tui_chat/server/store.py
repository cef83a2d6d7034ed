"""The storage interface of the chat core.

The core (``core.py``) only ever talks to a :class:`Store`; the self-hosted server plugs in
``stores/sqlite.py`` and the cloud backend ``stores/dynamodb.py``. Every method is a coroutine
and atomic on its own: the core never needs a transaction spanning two calls.

Conventions shared by every implementation:

- usernames are already normalised (lowercase, valid) when they reach the store;
- a conversation is the unordered pair of its two users (a user with themself is the
  notes-to-self conversation); ``seq`` is per conversation, starting at 1;
- ``read_seq`` is per (user, other) side of a conversation, 0 when never read;
- times are integers, milliseconds since the epoch, always passed in by the caller (the core
  owns the clock, so tests are deterministic);
- a room (PROTOCOL.md 7.2) is a conversation addressed ``#name``: its messages are stored once,
  with ``seq`` per room; each member has a side (read mark, unread count) from joining until
  leaving. The core checks who may do what; the store keeps membership atomic (the cap, the
  owner's hand-over, the room's deletion with its last member).
- a file (PROTOCOL.md 7.7) is a record the store keeps (who uploaded it, what it declared,
  whether its bytes are in); the bytes themselves live elsewhere (a folder, S3). A message may
  name one; the store says who may download it and which files nobody holds any more.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum

from tui_chat.protocol import Attachment, ConversationSummary, Message


@dataclass(frozen=True, slots=True)
class UserRecord:
    username: str
    password_hash: str | None
    """``None`` for users that sign in without a password (open mode, Cognito)."""
    status: str
    """The last status the user set (``online``, ``away``, ``busy``); ``online`` by default.
    Whether they are offline is decided by their connections, not by this field."""
    text: str
    last_seen: int | None
    """When the user's last connection closed; ``None`` if they never connected."""
    created_at: int


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    conn_id: str
    username: str
    device: str
    connected_at: int


@dataclass(frozen=True, slots=True)
class ConnectResult:
    replaced: ConnectionRecord | None
    """The older connection of the same (user, device), now removed from the store."""
    first_for_user: bool
    """True when the user had no other open connection: they just came online."""


@dataclass(frozen=True, slots=True)
class DisconnectResult:
    connection: ConnectionRecord | None
    """The removed connection, or ``None`` when it was unknown (already removed or replaced)."""
    last_for_user: bool
    """True when it was the user's last connection: they are now offline (``last_seen`` set)."""


@dataclass(frozen=True, slots=True)
class SaveResult:
    message: Message
    created: bool
    """False when ``(sender, id)`` was already stored: ``message`` is then the original."""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A file someone asked to upload (PROTOCOL.md 7.7)."""

    file_id: str
    owner: str
    name: str
    size: int
    type: str
    sha256: str
    """Lowercase hex: what the bytes must hash to."""
    created_at: int
    uploaded: bool = False
    """Every byte is in, with the declared length and hash."""


class FilesUnsupported(Exception):
    """This store keeps no files (yet): the server says so to ``requestUpload``."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One sign-in: the family of refresh tokens that descends from it (each rotation replaces
    the current token with its successor; the family ends at logout, on replay, or at its ends)."""

    family: str
    username: str
    device: str | None
    started_at: int
    ends_at: int
    """The absolute end: no refresh carries the session past it."""
    idle_until: int
    """It ends sooner when not refreshed by then (each rotation moves this, never past ``ends_at``)."""


class RotationOutcome(StrEnum):
    ROTATED = "rotated"
    """The presented token was the current one: its successor is current now."""
    REPEATED = "repeated"
    """The presented token was rotated moments ago (within the grace) and its successor is still
    unused: a retry after a lost response, answered with the same successor."""
    REPLAYED = "replayed"
    """An older token of the family: it was stolen or copied, so the whole family has ended."""
    UNKNOWN = "unknown"
    """No such session, or it has ended."""


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: RotationOutcome
    session: SessionRecord | None = None
    rotated_at: int = 0
    """When the presented token was rotated (now, for ``ROTATED``)."""


@dataclass(frozen=True, slots=True)
class RoomRecord:
    room: str
    """``#name``."""
    title: str
    """``""`` when it has none."""
    owner: str
    members: tuple[str, ...]
    """In the order they joined (the creator first), the owner among them."""


@dataclass(frozen=True, slots=True)
class Departure:
    room: RoomRecord | None
    """The room after the user left; ``None`` when they were its last member and it is gone."""
    left: bool
    """False when the user was not a member (nothing changed)."""


class RoomFull(Exception):
    """The room already has as many members as it may."""


class NotAMember(Exception):
    """A message to a room from someone who is not (any more) one of its members, or to a room
    that does not exist."""


class UnknownUser(Exception):
    """A user of the message does not exist (any more): removed by an operator meanwhile."""


class StoreUnavailable(Exception):
    """The store cannot be reached or written (disk full, table missing, ...)."""


class Store(ABC):
    """What the chat core and the account service need from storage."""

    server_id: str = ""
    """A random id created with the store and kept for its lifetime (PROTOCOL.md 7.5): a client
    that finds another id at a known address knows it reached another server. Set by ``open``."""

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or migrate the schema. Called once before any other method."""

    async def close(self) -> None:
        """Flush pending writes and release resources."""

    @abstractmethod
    async def healthy(self) -> bool:
        """Whether the store answers a trivial read right now."""

    # -- users ------------------------------------------------------------------------------

    @abstractmethod
    async def create_user(self, username: str, password_hash: str | None, now: int) -> bool:
        """Create a user; False if the name is taken."""

    @abstractmethod
    async def ensure_user(self, username: str, now: int) -> None:
        """Create a password-less user unless one exists (open mode, Cognito)."""

    @abstractmethod
    async def get_user(self, username: str) -> UserRecord | None: ...

    async def user_exists(self, username: str) -> bool:
        """On every send: stores that can answer from memory override this."""
        return await self.get_user(username) is not None

    @abstractmethod
    async def list_users(self, after: str | None, limit: int) -> list[UserRecord]:
        """Users by name, strictly after ``after``, at most ``limit``."""

    @abstractmethod
    async def set_status(self, username: str, status: str, text: str) -> None: ...

    # -- connections ------------------------------------------------------------------------

    @abstractmethod
    async def add_connection(self, conn: ConnectionRecord) -> ConnectResult:
        """Register a connection, removing any older one of the same (user, device)."""

    @abstractmethod
    async def remove_connection(self, conn_id: str, now: int) -> DisconnectResult:
        """Forget a connection; on the user's last one, set their ``last_seen`` to ``now``."""

    @abstractmethod
    async def get_connection(self, conn_id: str) -> ConnectionRecord | None: ...

    @abstractmethod
    async def user_connections(self, username: str) -> list[ConnectionRecord]: ...

    @abstractmethod
    async def watch_presence(self, conn_id: str) -> None:
        """Subscribe a connection to everyone's presence (it asked for the user list)."""

    @abstractmethod
    async def presence_audience(self, username: str) -> list[str]:
        """Connection ids that receive ``username``'s presence: the watchers and the user's own."""

    @abstractmethod
    async def presence_watchers(self) -> list[str]:
        """Connection ids that asked for the user list (``getClients``): everyone's presence goes to them."""

    @abstractmethod
    async def clear_connections(self) -> None:
        """Forget every connection (a self-hosted server starting after a crash)."""

    # -- messages ---------------------------------------------------------------------------

    @abstractmethod
    async def save_message(self, sender: str, msg_id: str, to: str, body: str, now: int, attachment: Attachment | None = None) -> SaveResult:
        """Store a message durably, once per (sender, id), with the file it carries, if any
        (the core has checked that the sender uploaded it).

        A new message gets the conversation's next ``seq`` and ``ts = now``, and moves the
        sender's own ``read_seq`` up to it. When (sender, id) already exists nothing is written
        and the original is returned with ``created=False``. Returns only after the write is
        durable: the caller acks on return.

        ``to`` may be a room: the sender must be a member at the moment of the write, else
        :class:`NotAMember` (also for a room that does not exist); every other member's unread
        count goes up by one.
        """

    @abstractmethod
    async def get_messages(
        self, user: str, other: str, *, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """A page of the conversation ascending by seq, and whether more exist in that direction.

        ``before``: the newest ``limit`` below it; ``after``: the oldest ``limit`` above it;
        neither: the newest ``limit``.
        """

    @abstractmethod
    async def list_conversations(
        self, user: str, cursor: str | None, limit: int
    ) -> tuple[list[ConversationSummary], str | None]:
        """The user's conversations, newest (by last message) first, and the next cursor: the
        rooms they are a member of among them (with their title; a room with no message yet
        counts as active from when they joined), not the ones they left."""

    # -- files (PROTOCOL.md 7.7) -------------------------------------------------------------

    async def create_file(self, record: FileRecord, *, max_pending: int) -> bool:
        """Keep a new file record; False when its owner already has ``max_pending`` files that
        are not attached to any message yet (each may cost the server its full size)."""
        raise FilesUnsupported

    async def get_file(self, file_id: str) -> FileRecord | None:
        raise FilesUnsupported

    async def file_uploaded(self, file_id: str) -> bool:
        """Every byte of ``file_id`` is in; False when it already was (or is unknown)."""
        raise FilesUnsupported

    async def may_download(self, user: str, file_id: str) -> bool:
        """Whether ``user`` uploaded ``file_id`` or is now a participant of a conversation
        holding a message with it (a room's current members, those who joined later too)."""
        raise FilesUnsupported

    async def unheld_files(self, unattached_before: int, limit: int) -> list[str]:
        """Up to ``limit`` files nobody holds: attached once and no message names them any more,
        or never attached and created before ``unattached_before``."""
        return []

    async def delete_files(self, file_ids: list[str]) -> None:
        """Forget these file records (their bytes are deleted by the caller first)."""

    async def purge_messages(self, older_than: int) -> int:
        """Delete the messages stored before ``older_than`` (retention); how many went.
        The default does nothing: for stores whose database expires items itself (DynamoDB TTL)."""
        return 0

    @abstractmethod
    async def mark_read(self, user: str, other: str, seq: int) -> int | None:
        """Move ``user``'s read marker in the conversation with ``other`` (a user or a room the
        user is a member of) forward to ``seq`` (clamped to the last seq). Returns the new value,
        or ``None`` when it did not move."""

    # -- rooms ------------------------------------------------------------------------------

    @abstractmethod
    async def create_room(self, room: str, owner: str, title: str, members: list[str], now: int) -> RoomRecord | None:
        """Create ``room`` with ``owner`` as its first member and owner, then ``members`` in order
        (repeats and the owner himself skipped; the caller has checked they exist and that there
        are not too many). ``None`` when the name is taken: nothing changes then."""

    @abstractmethod
    async def get_room(self, room: str) -> RoomRecord | None: ...

    @abstractmethod
    async def add_member(self, room: str, user: str, now: int, *, max_members: int) -> tuple[RoomRecord, bool] | None:
        """Add ``user`` as the newest member: the room, and whether they were added (False: they
        already were a member). ``None`` when the room does not exist. Raises :class:`RoomFull`
        when it has ``max_members`` already. A new member's read mark is 0, and every message of
        the room from someone else counts as unread for them."""

    @abstractmethod
    async def remove_member(self, room: str, user: str, now: int) -> Departure:
        """``user`` leaves (or is removed). When the owner leaves, the longest-standing remaining
        member becomes owner; when the last member leaves, the room is deleted with its messages,
        its ``seq`` and their idempotency keys (a room created again with that name starts at 1)."""

    @abstractmethod
    async def set_room_title(self, room: str, title: str) -> RoomRecord | None:
        """``None`` when the room does not exist."""

    @abstractmethod
    async def get_reads(self, room: str) -> list[tuple[str, int]]:
        """Every member with their read mark (0 when never read), in the order they joined."""

    @abstractmethod
    async def count_rooms(self, user: str) -> int:
        """How many rooms ``user`` is a member of (the core caps it)."""

    # -- accounts ---------------------------------------------------------------------------

    @abstractmethod
    async def create_session(self, session: SessionRecord, token_hash: str, *, keep_at_most: int) -> None:
        """Start a session whose current refresh token has ``token_hash``; when the user then has
        more than ``keep_at_most`` sessions, the oldest end. Ended sessions are purged here."""

    @abstractmethod
    async def rotate_session(
        self, family: str, presented_hash: str, successor_hash: str, now: int, *, grace_ms: int, idle_ms: int
    ) -> Rotation:
        """Atomically: when ``presented_hash`` is the family's current token, make ``successor_hash``
        current (``ROTATED``, idle end moved to ``now + idle_ms`` within ``ends_at``); when it is the
        token rotated at most ``grace_ms`` ago, change nothing (``REPEATED``); any other token of a
        live family ends it (``REPLAYED``). An ended or unknown family is ``UNKNOWN``."""

    @abstractmethod
    async def session_active(self, family: str, username: str, now: int) -> bool:
        """Whether ``username`` has this session and it has not ended (checked at each handshake)."""

    @abstractmethod
    async def end_session(self, family: str) -> bool:
        """End one session (sign-out); False when there was none."""

    @abstractmethod
    async def end_user_sessions(self, username: str) -> int:
        """End every session of a user (an operator's revoke, a new password); how many ended."""

    @abstractmethod
    async def list_sessions(self, username: str, now: int) -> list[SessionRecord]:
        """The user's live sessions, oldest first."""

    @abstractmethod
    async def record_login_failure(self, username: str, now: int) -> None: ...

    @abstractmethod
    async def count_login_failures(self, username: str, since: int) -> int: ...

    @abstractmethod
    async def clear_login_failures(self, username: str) -> None: ...
