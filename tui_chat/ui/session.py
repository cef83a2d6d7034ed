"""The one adapter between the UI and the client service (``tui_chat.client``).

It implements what the screens read (``ChatData``: users, rows, connection…), what the
sign-in screen needs (``SignInBackend``) and the calls the app makes, by delegating to
``ChatClient`` and translating its state into the UI's rows. Every client name lives in this
module, so widgets and screens never import the client.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Any

from textual.theme import BUILTIN_THEMES

from tui_chat.client import state as cs
from tui_chat.client.auth import SignInError, http_base
from tui_chat.client.config import DEFAULT_SERVER, Config, ConfigError, Settings, read_config, save_settings
from tui_chat.client.files import TransferFailed
from tui_chat.client.search import SearchHit
from tui_chat.client.service import ChatClient, RoomActionFailed, SendRefused
from tui_chat.ui.screens.sign_in import ServerInfo, SignInFailed
from tui_chat.ui.view_model import ConnectionRow, MessageRow, RoomInfo, UserRow
from tui_chat.ui.window import ConversationWindow

WINDOW_ROWS = 500
"""Sent rows read from the cache when a conversation is first shown (and per page scrolled
back past them); queued ones are always all shown."""


MAX_BATCH = 1000
"""Service events handled as one change at most (a burst is drained in slices this big)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A new message from someone else, for a notification."""

    conversation: str
    sender: str
    preview: str


@dataclass
class Change:
    """What a batch of service events touched, so the app refreshes only that, once."""

    users: bool = False
    connection: bool = False
    typing: bool = False
    conversations: dict[str, int] = field(default_factory=dict)
    """Conversations whose rows changed, with how many rows were appended (0: unknown)."""
    incoming: list[Incoming] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    """Rooms this user is no longer in: a conversation open in one of them closes."""
    signed_out: bool = False


FIELD_TO_FIX = {"credentials": "password", "throttled": "password", "taken": "username", "disabled": "username",
                "unreachable": "server", "tls": "server"}  # fmt: skip


def field_to_fix(error: SignInError) -> str:
    """The sign-in form's input that the person should change after ``error``."""
    if error.kind == "invalid":
        return "password" if "password" in error.message.lower() else "username"
    return FIELD_TO_FIX.get(error.kind, "password")


def friendly(error: SignInError, server: str, mode: str, *, signup: bool = False) -> str:
    """One sentence a person can act on, for each way signing in fails."""
    match error.kind:
        case "credentials":
            if signup:
                return "Wrong username or password. New here? Choose Create account to make this one."
            return "Wrong username or password."
        case "unreachable":
            return f"Cannot reach the server at {http_base(server)} — is it running? ({error.message})"
        case "tls":
            return (f"Cannot trust the server at {http_base(server)}: {error.message}. If it uses a private "
                    "certificate authority, start tui-chat with SSL_CERT_FILE set to that authority's PEM file.")  # fmt: skip
        case "taken":
            if mode == "open":
                return "That nickname is in use on another device; pick another or wait until it disconnects."
            return "That username is taken; pick another or sign in."
        case "throttled":
            return "Too many failed attempts for this name; wait a few minutes and try again."
        case "disabled":
            return "This server does not accept new accounts; ask its admin for one."
        case "expired":
            return "Your session has ended; sign in again."
    return error.message or "Signing in failed."


def config_warning(settings: Settings) -> str:
    """Every mistake in the settings, grouped by where it is, and what tui-chat does about it."""
    lines: list[str] = []
    for source, problems in groupby(settings.problems, key=lambda problem: problem.source):
        lines += [f"{source}:", *(f"• {problem.problem}" for problem in problems)]
    if any(problem.key for problem in settings.problems):
        lines.append("Skipped; every other setting applies.")
    if any(problem.hint for problem in settings.problems):
        lines.append("tui-chat doctor lists the settings and themes there are.")
    if settings.server_lost:
        lines.append("So no server is used: tui-chat does not fall back to another server. "
                     "Enter the server on the sign-in screen, or fix the mistake.")  # fmt: skip
    return "\n".join(lines)


class Session:
    """The client service as the UI sees it."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        server: str = "",
        username: str = "",
        client_factory: Callable[[str], ChatClient] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        config_error: str = "",
    ) -> None:
        self.config = config or Config()
        self.server = server or self.config.server
        self.username = username or self.config.username
        self.server_configured = bool(self.server)
        self.config_error = config_error
        self.embedded_note = ""
        self.last_conversation: str | None = None
        self.theme: str | None = self.config.theme
        self.bell = self.config.bell
        # The config decides the Cognito pool and whether tokens may go to a 0600 file.
        self._client_factory = client_factory or (lambda url: ChatClient.from_config(replace(self.config, server=url)))
        self._monotonic = monotonic
        self.client: ChatClient | None = None
        self._windows: dict[str, ConversationWindow] = {}
        """The conversations shown since signing in, each kept current in memory from events."""
        self._conversations: dict[str, cs.Conversation] = {}
        """Unread counts and read marks, loaded once and then kept current from events."""
        self._files: dict[str, tuple[str, Any]] = {}
        """Message key → (sender, attachment) of the files shown, for downloading them."""
        self._link: cs.ConnectionChanged | None = None
        self._link_at = monotonic()
        self._presence_fresh = False
        """Whether the statuses are current: from the first user list after connecting until the link drops."""

    @classmethod
    def from_config(cls, *, server: str | None = None, username: str | None = None) -> "Session":
        """The config file and ``TUI_CHAT_*`` variables, overridden by the command line.

        Mistakes do not stop the app: each bad setting is skipped and named in ``config_error``
        (shown as the app starts), and the others apply. A server given but not valid leaves no
        server, rather than the built-in one the user did not mean: the sign-in screen asks.
        """
        settings = read_config(overrides={"server": server, "username": username}, themes=BUILTIN_THEMES)
        session = cls(settings.config, config_error=config_warning(settings))
        session.server_configured = session.server_configured or settings.server_lost
        return session

    @property
    def me(self) -> str:
        return self.client.me if self.client is not None and self.client.me else self.username

    # --- SignInBackend --------------------------------------------------------------------

    def _client_for(self, server: str) -> ChatClient:
        if self.client is None or self.client.server_url != server:
            self.client = self._client_factory(server)
        return self.client

    async def server_info(self, server: str) -> ServerInfo:
        try:
            info = await self._client_for(server).discover()
        except SignInError as exc:
            raise SignInFailed(friendly(exc, server, "accounts"), "server") from None
        return ServerInfo(auth=info.auth, signup=info.signup)

    async def sign_in(self, server: str, username: str, password: str, *, create: bool, mode: str) -> None:
        client = self._client_for(server)
        try:
            await client.sign_in(username, password, create=create)
        except SignInError as exc:
            signup = client.info is not None and client.info.signup and not create and mode == "accounts"
            raise SignInFailed(friendly(exc, server, mode, signup=signup), field_to_fix(exc)) from None
        self.server, self.username = server, client.me
        self._remember()

    async def resume(self) -> bool:
        """Sign in silently with the session kept on this device: from disk at once when it
        was kept for this server (renewed once connected), else with the refresh token now."""
        if not (self.server and self.username):
            return False
        if self._client_for(self.server).open_saved(self.username):
            return True
        try:
            resumed = await self._client_for(self.server).resume(self.username)
        except SignInError:
            return False
        return resumed

    def _remember(self) -> None:
        """The last server and user, for next time. The default address is not pinned, so
        that next time the built-in server is started again when nothing listens there."""
        changes: dict[str, Any] = {"username": self.username}
        if self.server and http_base(self.server) != http_base(DEFAULT_SERVER):
            changes["server"] = self.server
        try:
            save_settings(changes)
        except (OSError, ConfigError):
            pass  # remembering is a convenience; never fail a sign-in over it

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Read what the chat screen shows first, from disk: the conversation open at the last
        quit and the unread counts."""
        assert self.client is not None
        if self.last_conversation is None:
            self.last_conversation = self.client.recall("last_conversation")
        self._load_conversations()

    def connect(self) -> None:
        """Start connecting (and keep connected) in the background."""
        assert self.client is not None
        self.client.start()

    def _load_conversations(self) -> None:
        self._conversations = {c.peer: c for c in self.client.conversations()} if self.client is not None else {}

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.stop()

    async def event_batches(self) -> AsyncIterator[list[Any]]:
        """The service's events, a burst at a time: the first one awaited, then whatever else
        is already queued. The consumer handles a batch before asking for the next, so while
        it redraws, new events pile up into one batch instead of one redraw each."""
        assert self.client is not None
        events = self.client.events()
        while True:
            batch = [await anext(events)]
            batch.extend(self.client.pending_events(MAX_BATCH - 1))
            yield batch

    def describe(self, events: list[Any]) -> Change:
        """Apply a batch of events to the UI's own state and say, once, what must be redrawn."""
        change = Change()
        for event in events:
            match event:
                case cs.ConnectionChanged():
                    self._link, self._link_at = event, self._monotonic()
                    if event.kind != cs.ConnectionState.ONLINE and self._presence_fresh:
                        self._presence_fresh = False
                        change.users = True
                    change.connection = True
                    change.signed_out = event.kind == cs.ConnectionState.SIGNED_OUT
                case cs.UsersLoaded():
                    self._presence_fresh = True
                    change.users = True
                case cs.UserChanged():
                    change.users = True
                case cs.ConversationChanged():
                    self._conversations[event.conversation.peer] = event.conversation
                    change.users = True  # unread counts; rows come with TimelineChanged
                case cs.TimelineChanged():
                    appended = self._apply(event)
                    if appended is not None:  # appends add up; anything else in the batch means "compare"
                        merged = change.conversations.get(event.peer)
                        change.conversations[event.peer] = appended if merged is None else (merged + appended if merged and appended else 0)
                case cs.HistoryReplaced():
                    self._windows.clear()
                    self._load_conversations()
                    change.users = True
                    change.conversations.update((peer, 0) for peer in self._conversations)
                case cs.MessageReceived():
                    change.incoming.append(Incoming(event.peer, event.sender, event.body))
                case cs.TypingChanged():
                    change.typing = True
                case cs.Notice():
                    change.notices.append(event.text)
                case cs.RoomChanged():
                    change.users = True  # the list and, when it is open, the room's header
                case cs.RoomLeft():
                    self._windows.pop(event.room, None)
                    self._conversations.pop(event.room, None)
                    change.users = True
                    change.left.append(event.room)
                    change.conversations.pop(event.room, None)
                    if not event.by_me:
                        change.notices.append(f"You are no longer in {event.room} (you left on another device, or its owner removed you).")
                case cs.ReadsChanged():
                    if event.room in self._windows:
                        change.conversations[event.room] = 0
                case cs.UploadProgress():
                    if self._show_progress(event):
                        change.conversations[event.peer] = 0
        return change

    def _apply(self, event: cs.TimelineChanged) -> int | None:
        """Bring the window of one conversation up to date from ``event`` alone. None when
        nothing shown changed; else how many rows were appended at the end, 0 when the change
        was anything other than a plain append."""
        window = self._windows.get(event.peer)
        if window is None:
            return None
        if event.reload:
            del self._windows[event.peer]
            return 0
        plain = not (event.removed or event.older)
        for key in event.removed:
            window.remove(key)
        if event.older:
            window.prepend(self._convert(event.older), [item.seq for item in event.older])
            window.more_on_server = self.client is not None and self.client.has_older(event.peer)
        appended = 0
        for item in event.rows:
            if window.put(self._convert([item])[0], item.seq):
                appended += 1
            else:
                plain = False
        if event.peer_read_seq is not None and window.read_up_to(event.peer_read_seq):
            plain = False
        if plain and not appended and not event.rows:
            return None  # e.g. a read mark that reached no row of ours
        return appended if plain else 0

    def _show_progress(self, event: cs.UploadProgress) -> bool:
        """Put "uploading N%" on the queued row (only when N moved: a 25 MB file is 100 events)."""
        window = self._windows.get(event.peer)
        if window is None:
            return False
        text = f"uploading {event.done * 100 // max(1, event.total)}%" if event.done < event.total else "uploaded, sending"
        for index, row in enumerate(window.rows):
            if row.key == event.message_id and row.transfer != text:
                window.rows[index] = replace(row, transfer=text)
                return True
        return False

    # --- ChatData ----------------------------------------------------------------------------

    def users(self) -> Sequence[UserRow]:
        """The people and the rooms of the list, each with its unread count."""
        client = self.client
        if client is None:
            return []
        unread = {peer: c.unread for peer, c in self._conversations.items()}
        known = dict(client.users)
        rows = [
            UserRow(name, self._shown_status(user.status), user.text, unread.get(name, 0), name == client.me, user.last_seen)
            for name, user in known.items()
        ]  # fmt: skip
        rooms = {room.name: room for room in client.rooms()}
        rows.extend(UserRow(room.name, unread=unread.get(room.name, 0), room_title=room.title, members=len(room.members)) for room in rooms.values())
        # People not (yet) in the user list: those with unread messages, and oneself (opened
        # offline, before the first list came).
        unlisted = dict.fromkeys([*([client.me] if client.me else []), *unread])
        rows.extend(
            UserRow(peer, self._shown_status("offline"), "", unread.get(peer, 0), is_me=peer == client.me)
            for peer in unlisted if peer not in known and peer not in rooms and not peer.startswith("#")
        )  # fmt: skip
        return rows

    def room(self, conversation: str) -> RoomInfo | None:
        """The room ``conversation`` with its members' presence; None for a person."""
        room = self.client.room(conversation) if self.client is not None else None
        if room is None:
            return None
        users = self.client.users
        members = tuple(
            UserRow(name, self._shown_status(users[name].status if name in users else "offline"), is_me=name == self.client.me)
            for name in room.members
        )  # fmt: skip
        return RoomInfo(room.name, room.title, room.owner, members)

    def _shown_status(self, status: str) -> str:
        """What we last heard holds only while connected, from the first user list on."""
        if not self._presence_fresh:
            return "unknown"
        return status if status in ("online", "away", "busy") else "offline"

    def rows(self, conversation: str) -> Sequence[MessageRow]:
        rows = self._window(conversation).rows
        reads = self.client.reads(conversation) if self.client is not None and conversation.startswith("#") else None
        return _with_read_marks(rows, self._window(conversation).seqs, reads, self.me) if reads else rows

    def has_more(self, conversation: str) -> bool:
        window = self._window(conversation)
        return not window.complete or window.more_on_server

    def _window(self, peer: str) -> ConversationWindow:
        """The conversation's window, read from the cache the first time it is shown: its
        newest ``WINDOW_ROWS`` sent rows and everything queued."""
        window = self._windows.get(peer)
        if window is None:
            client = self.client
            items = client.newest_rows(peer, WINDOW_ROWS) if client is not None else []
            sent = sum(1 for item in items if item.seq is not None)
            window = self._windows[peer] = ConversationWindow(
                self._convert(items), [item.seq for item in items],
                complete=client is None or sent < WINDOW_ROWS, more_on_server=client is not None and client.has_older(peer),
            )  # fmt: skip
        return window

    def _convert(self, items: Sequence[cs.TimelineItem]) -> list[MessageRow]:
        me = self.me
        rows = []
        for item in items:
            label = ""
            if item.attachment is not None:
                label = file_label(item.attachment.name, item.attachment.size, item.attachment.type)
                if item.attachment.file_id:
                    self._files[item.id] = (item.sender, item.attachment)
            rows.append(MessageRow(item.id, item.sender, item.body, item.ts, mine=item.sender == me,
                                   mark=item.state if item.sender == me else "none", reason=item.error or "",
                                   attachment=label))  # fmt: skip
        return rows

    def files(self, conversation: str, limit: int = 20) -> list[tuple[str, str, str]]:
        """The newest files shown in ``conversation``: (message key, sender, file name)."""
        window = self._windows.get(conversation)
        found = []
        for row in reversed(window.rows if window is not None else []):
            if row.key in self._files:
                sender, attachment = self._files[row.key]
                found.append((row.key, sender, attachment.name))
                if len(found) == limit:
                    break
        return found

    def file_of(self, message_key: str) -> Any | None:
        """The attachment (name, size, type) of message ``message_key``, if it is shown."""
        found = self._files.get(message_key)
        return found[1] if found is not None else None

    def typists(self, conversation: str) -> Sequence[str]:
        """Who is typing in ``conversation`` now."""
        return self.client.typing_in(conversation) if self.client is not None else []

    def connection(self) -> ConnectionRow:
        link = self._link
        state = link.kind if link is not None else cs.ConnectionState.CONNECTING
        retry_at = self._link_at + link.retry_in if link is not None and link.retry_in is not None else None
        queued = self.client.queued if self.client is not None else 0
        return ConnectionRow(state, retry_at=retry_at, queued=queued, server=_host(self.server), user=self.me,
                             note=self.embedded_note, detail=link.detail if link is not None else "")  # fmt: skip

    def unread_total(self) -> int:
        return sum(c.unread for c in self._conversations.values())

    def my_status(self) -> str:
        client = self.client
        user = client.users.get(client.me) if client is not None else None
        return user.status if user is not None else "online"

    def my_status_text(self) -> str:
        client = self.client
        user = client.users.get(client.me) if client is not None else None
        return user.text if user is not None else ""

    def reconnect_now(self) -> None:
        if self.client is not None:
            self.client.reconnect_now()

    def save_theme(self, theme: str) -> None:
        if theme != self.theme:
            self.theme = theme
            try:
                save_settings({"theme": theme})
            except (OSError, ConfigError):
                pass

    # --- actions -----------------------------------------------------------------------------

    async def send(self, to: str, body: str) -> None:
        assert self.client is not None
        try:
            self.client.send(to, body)
        except SendRefused as exc:
            raise ValueError(f"Not sent: {exc}") from None

    async def retry(self, message_id: str) -> None:
        if self.client is not None:
            self.client.retry(message_id)

    async def discard(self, message_id: str) -> None:
        if self.client is not None:
            self.client.discard(message_id)

    async def open_conversation(self, conversation: str) -> None:
        self.last_conversation = conversation
        if self.client is not None:
            self.client.remember("last_conversation", conversation)
            if conversation.startswith("#"):
                await self.client.follow_reads(conversation)  # who has read how far, kept current

    async def load_older(self, conversation: str) -> None:
        """Scrolled to the top: the page before the window, from the cache while it has one,
        else from the server (whose page then arrives as an event)."""
        window = self._window(conversation)
        client = self.client
        if client is None:
            return
        if not window.complete:
            oldest = window.oldest_seq
            items = client.older_rows(conversation, oldest, WINDOW_ROWS) if oldest is not None else []
            window.prepend(self._convert(items), [item.seq for item in items])
            window.complete = len(items) < WINDOW_ROWS
        elif window.more_on_server and not await client.load_older(conversation):
            window.more_on_server = False

    # --- search ----------------------------------------------------------------------------

    def search(self, text: str) -> list[SearchHit]:
        return self.client.search(text) if self.client is not None else []

    def not_fully_cached(self) -> list[str]:
        return self.client.not_fully_cached() if self.client is not None else []

    async def fetch_older_history(self, progress: Callable[[str, int], None]) -> int:
        """Older history from the server into the cache (for search); ``ValueError`` says why not."""
        if self.client is None or not self.client.online:
            raise ValueError("Not connected: older history can be fetched once the server is back.")
        try:
            return await self.client.fetch_older_history(progress)
        except (ConnectionError, TimeoutError):
            raise ValueError("The connection dropped while fetching; what came is searchable, try again for the rest.") from None

    def reveal(self, conversation: str, key: str) -> bool:
        """Load the conversation's window back from the cache until it holds message ``key``
        (a search result far back); False if the cache does not have it."""
        window = self._window(conversation)
        while not window.holds(key) and not window.complete:
            oldest = window.oldest_seq
            items = self.client.older_rows(conversation, oldest, WINDOW_ROWS) if self.client is not None and oldest is not None else []
            window.prepend(self._convert(items), [item.seq for item in items])
            window.complete = len(items) < WINDOW_ROWS
        return window.holds(key)

    async def mark_read(self, conversation: str) -> None:
        if self.client is not None:
            await self.client.mark_read(conversation)

    async def send_file(self, to: str, path: Path, words: str = "") -> None:
        assert self.client is not None
        try:
            await self.client.send_file(to, path, words)
        except SendRefused as exc:
            raise ValueError(f"Not sent: {exc}") from None

    async def download(self, message_key: str, progress: Callable[[int, int], None] | None = None) -> Path:
        """Save the file of a message shown; where it went. ``ValueError`` says why not."""
        found = self._files.get(message_key)
        if self.client is None or found is None:
            raise ValueError("that file is no longer shown")
        try:
            return await self.client.download(found[1], progress=progress)
        except TransferFailed as exc:
            raise ValueError(f"Not saved: {exc}") from None

    async def create_room(self, name: str, title: str, members: Sequence[str]) -> str:
        """Create a room; its ``#name``. ``ValueError`` says, for people, why it was not made."""
        assert self.client is not None
        try:
            return (await self.client.create_room(name, title, list(members))).name
        except RoomActionFailed as exc:
            raise ValueError(str(exc)) from None

    async def room_action(self, action: str, room: str, *args: str) -> None:
        """``invite``, ``leave_room``, ``remove_member`` or ``set_room_title`` on ``room``;
        ``ValueError`` says, for people, why it was not done."""
        assert self.client is not None and action in ("invite", "leave_room", "remove_member", "set_room_title")
        try:
            await getattr(self.client, action)(room, *args)
        except RoomActionFailed as exc:
            raise ValueError(str(exc)) from None

    async def typing_notice(self, to: str) -> None:
        if self.client is not None:
            await self.client.typing(to)

    async def set_status(self, status: str, text: str = "") -> None:
        if self.client is not None:
            await self.client.set_status(status, text)

    async def sign_out(self) -> bool:
        """Whether the server ended the session too (not when it could not be reached)."""
        heard = await self.client.sign_out() if self.client is not None else True
        self.client = None
        self._windows.clear()
        self._conversations.clear()
        self._files.clear()
        self._link = None
        self._presence_fresh = False
        return heard


def _with_read_marks(rows: list[MessageRow], seqs: list[int | None], reads: dict[str, int], me: str) -> list[MessageRow]:
    """``rows`` with each other member's name under the newest row they have read."""
    at: dict[int, list[str]] = {}
    sent = [(index, seq) for index, seq in enumerate(seqs) if seq is not None]
    if not sent:
        return rows
    sent_seqs = [seq for _, seq in sent]
    for user, mark in reads.items():
        if user == me or mark <= 0:
            continue
        position = bisect_right(sent_seqs, mark) - 1
        if position >= 0 and rows[sent[position][0]].sender != user:  # their own message: nothing to say
            at.setdefault(sent[position][0], []).append(user)
    if not at:
        return rows
    marked = list(rows)
    for index, users in at.items():
        marked[index] = replace(rows[index], read_by=tuple(sorted(users)))
    return marked


def file_label(name: str, size: int, kind: str) -> str:
    """ "photo.jpg · 196 KB · image/jpeg" """
    amount = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            break
        amount /= 1000
    shown = f"{size} bytes" if unit == "bytes" else f"{amount:.0f} {unit}" if amount >= 10 else f"{amount:.1f} {unit}"
    return " · ".join(part for part in (name, shown, kind) if part)


def _host(server: str) -> str:
    base = http_base(server) if server else ""
    return base.split("://", 1)[-1]
