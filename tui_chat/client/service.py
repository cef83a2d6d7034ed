"""The client service: one connection, the outbox, the cache and the model, behind one facade.

A UI (or a script, or a test) owns a :class:`ChatClient`, calls its methods and reads
``events()`` (the small typed events of :mod:`tui_chat.client.state`); nothing here imports
Textual. The work is done by collaborators with one job each:

- :class:`~tui_chat.client.account.Account`: signing in, tokens, the server's identity;
- :class:`~tui_chat.client.timeline.Timeline`: the history cache and outbox on disk, and the rows;
- :class:`~tui_chat.client.requests.Requests`: requests matched to their replies;
- :class:`~tui_chat.client.sync.Sync`: catch-up after every (re)connect, older pages;
- :class:`~tui_chat.client.sender.Sender`: the outbox pump, one send frame in flight;
- :class:`~tui_chat.client.people.People`: statuses and typing.

Guarantees:

- ``send`` writes the message to the outbox before anything else; it leaves the outbox only
  once the server has stored it (its ``ack``, or the message itself seen in the server's
  history). After every reconnect everything unacked is resent in order with the same id, so
  the server stores it exactly once.
- After every (re)connect the history is caught up before the outbox flushes.
- Read markers and the status set while offline reach the server on the next connection.

Typical use::

    client = ChatClient.from_config(load_config())
    await client.sign_in("alice", "password")       # or: await client.resume("alice")
    client.start()
    msg_id = client.send("bob", "hello")             # shown at once as pending
    async for event in client.events(): ...          # redraw what the event names
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tui_chat import protocol as p
from tui_chat.client.account import Account
from tui_chat.client.auth import (
    ServerInfo,
    Tokens,
    TokenVault,
    device_id,
    token_file_path,
    ws_url,
)
from tui_chat.client.connection import Connection, LinkState, NeedsSignIn
from tui_chat.client.files import TransferFailed, get_file, put_file, safe_file_name, take_into_outbox, unique_path
from tui_chat.client.localdb import open_db
from tui_chat.client.outbox import Outbox
from tui_chat.client.people import People
from tui_chat.client.requests import RequestFailed, Requests
from tui_chat.client.search import MAX_RESULTS, SearchHit, SearchIndex
from tui_chat.client.sender import Sender
from tui_chat.client.state import (
    ClientEvent,
    ConnectionChanged,
    ConnectionState,
    Conversation,
    HistoryReplaced,
    MessageReceived,
    Notice,
    Room,
    RoomLeft,
    TimelineItem,
    UploadProgress,
    User,
)
from tui_chat.client.sync import Sync
from tui_chat.client.timeline import Timeline
from tui_chat.paths import downloads_dir

if TYPE_CHECKING:
    from tui_chat.client.cache import Cache
    from tui_chat.client.config import Config

log = logging.getLogger("tui_chat.client")

SESSION_KEPT = "session_kept"
"""A setting of the account: where this device keeps its session ("keyring" or "file"), or ""."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_message_id() -> str:
    return uuid.uuid4().hex


class SendRefused(ValueError):
    """A message or status that can never be sent (empty, too long, control characters):
    nothing was queued. ``str()`` says why, for people."""


class RoomActionFailed(Exception):
    """A room could not be created or changed; ``str()`` says why, for people."""


ROOM_REFUSALS = {
    p.CONFLICT: "that name is taken; choose another",
    p.FORBIDDEN: "you are not a member of that room (or it does not exist)",
    p.TOO_LARGE: "too many: a room has at most 256 members, and one person may be in at most 500 rooms",
}
"""What the server's refusal of a room action means, for people (else its own message is shown)."""


class ChatClient:
    """Everything a UI needs from the chat service (see the module docstring).

    State the UI reads: ``me``, ``users`` (name → :class:`User`), ``typing_peers``, ``online``,
    ``queued``, ``conversation(peer)``, ``conversations()``, ``timeline_length(peer)``,
    ``timeline_slice(peer, start, stop)``. Tests inject ``clock`` (ms) and ``new_id``.
    """

    def __init__(
        self,
        server_url: str,
        *,
        vault: TokenVault | None = None,
        data_folder: Path | None = None,
        clock: Callable[[], int] = now_ms,
        new_id: Callable[[], str] = new_message_id,
        device: str | None = None,
        connection_options: dict | None = None,
        cognito: dict | None = None,
        cognito_endpoint: str | None = None,
    ) -> None:
        self.server_url = server_url
        self.clock = clock
        self.new_id = new_id
        self.device = device or device_id(data_folder)
        self.connection_options = connection_options or {}
        self.account = Account(
            server_url, vault=vault or TokenVault(server_url), data_folder=data_folder, device=self.device,
            say=lambda text: self._emit(Notice(text)), on_new_server=self._close_timeline,
            cognito=cognito, cognito_endpoint=cognito_endpoint,
        )  # fmt: skip
        self.people = People(self._emit)
        self.local: Timeline | None = None
        """The history and outbox of the signed-in user on this server, once signed in."""
        self.connection: Connection | None = None
        self.requests: Requests | None = None
        self.sync: Sync | None = None
        self.sender: Sender | None = None
        self._events: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._link = LinkState(ConnectionState.OFFLINE)
        self._background: set[asyncio.Task] = set()
        """Requests the client makes on its own (a room just joined); cancelled on stop."""

    @classmethod
    def from_config(cls, config: Config, **options) -> ChatClient:
        """A client for ``config``: its server, its Cognito pool, and tokens in a 0600 file
        when the person asked for that (``store_tokens_in_file``) and no keyring works."""
        url = config.server_url
        fallback = token_file_path(url) if config.store_tokens_in_file else None
        options.setdefault("vault", TokenVault(url, file_fallback=fallback))
        options.setdefault("cognito", config.cognito)
        return cls(url, **options)

    # -- who we are ------------------------------------------------------------------------

    @property
    def me(self) -> str:
        return self.account.me

    @property
    def tokens(self) -> Tokens | None:
        return self.account.tokens

    @property
    def info(self) -> ServerInfo | None:
        return self.account.info

    @property
    def server_id(self) -> str:
        return self.account.server_id

    @property
    def vault(self) -> TokenVault:
        return self.account.vault

    @property
    def users(self) -> dict[str, User]:
        return self.people.users

    @property
    def typing_peers(self) -> set[str]:
        """Conversations (people, rooms) where someone is typing now."""
        return set(self.people.typing)

    def typing_in(self, conversation: str) -> list[str]:
        """Who is typing in ``conversation`` (a user, or a room), first to start first."""
        return self.people.typing_in(conversation)

    @property
    def cache(self) -> Cache | None:
        return self.local.cache if self.local is not None else None

    @property
    def outbox(self) -> Outbox | None:
        return self.local.outbox if self.local is not None else None

    async def discover(self) -> ServerInfo:
        """How this server signs people in (``GET /info``; the config for the cloud)."""
        return await self.account.discover()

    async def sign_in(self, username: str, password: str = "", *, create: bool = False) -> None:
        """Sign in (or sign up with ``create``); open mode needs only the nickname. Raises
        :class:`~tui_chat.client.auth.SignInError` whose ``kind`` says what went wrong."""
        await self.account.sign_in(username, password, create=create)
        self._open_timeline()
        self._session_kept(True)

    async def resume(self, username: str) -> bool:
        """Sign in with the session kept from last time; False when there is none or it
        expired. With the server unreachable, history and outbox open from disk all the same."""
        if await self.account.resume(username) is None:
            return False
        self._open_timeline()
        self._session_kept(True)
        return True

    def open_saved(self, username: str) -> bool:
        """Open the session this device kept for ``username`` from disk alone, with no network
        and no keyring: history and outbox show at once, and the saved token is read and renewed
        when the connection first asks (a session that turns out to be gone ends in
        ``signed_out``). False when no session was kept here; then use :meth:`resume`."""
        if self.account.tokens is not None and self.account.me == username:
            return True  # signed in already (e.g. just now, on the sign-in screen)
        if not self.account.folder_exists(username):
            return False
        self.account.assume(username)
        self._open_timeline()
        if self.account.vault.may_hold(self.local.recall(SESSION_KEPT) or ""):
            return True
        self._close_timeline()
        self.account.tokens = None
        return False

    def _session_kept(self, kept: bool) -> None:
        """Note in the account's files whether a session outlives this process, for :meth:`open_saved`."""
        if self.local is not None:
            self.local.remember(SESSION_KEPT, self.account.vault.kept_in if kept else "")

    async def _refresh(self) -> None:
        """The connection's 401 handler (a new server found there opens its own files)."""
        try:
            await self.account.refresh()
        except NeedsSignIn:
            self._session_kept(False)
            raise
        self._open_timeline()
        self._session_kept(True)

    async def sign_out(self) -> bool:
        """Stop, end the session on the server and forget it here (the outbox and history stay
        for next time). Whether the server heard it (it cannot when unreachable)."""
        await self.stop()
        self._session_kept(False)
        return await self.account.sign_out()

    def account_folder(self, user: str) -> Path:
        return self.account.folder(user)

    def _open_timeline(self) -> None:
        """Open the files of the signed-in user on this server, unless they are open already."""
        me = self.account.me
        if self.local is not None and self.local.me == me:
            return
        replaced = self.local is not None or self.sender is not None
        self._close_timeline()
        self.local = Timeline(open_db(self.account.folder(me) / "client.db"), me, self._emit, self._emit_connection)
        for part in (self.sync, self.sender):
            if part is not None:
                part.timeline = self.local
        if replaced:
            self._emit(HistoryReplaced())

    def _close_timeline(self) -> None:
        if self.local is not None:
            self.local.close()
            self.local = None  # nothing may read the closed file (a second close, a late event)

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and keep connected; a second call does nothing."""
        if self.account.tokens is None or self.local is None:
            raise RuntimeError("sign in first")
        if self.connection is None:
            self.connection = Connection(
                ws_url(self.server_url, cloud=self.account.cognito is not None), self.device,
                token=lambda: self.account.tokens.access, refresh=self._refresh,
                on_event=self._on_event, on_state=self._on_link_state, on_open=self._on_open,
                token_in_header=self.account.cognito is None,
                **self.connection_options,
            )  # fmt: skip
            self.requests = Requests(self.connection)
            self.sync = Sync(self.requests, self.local, self._room_gone)
            self.sender = Sender(self.connection, self.local, upload=self._upload)
        self.connection.start()
        self.sender.start()

    async def stop(self) -> None:
        """Close the connection; queued messages stay in the outbox for the next start."""
        if self.sender is not None:
            self.sender.stop()
        for task in self._background:
            task.cancel()
        self.people.stop()
        if self.connection is not None:
            await self.connection.stop()

    async def close(self) -> None:
        """Stop and close the local database (the process is about to end)."""
        await self.stop()
        self._close_timeline()

    async def events(self) -> AsyncIterator[ClientEvent]:
        """Every change, in order, as small typed events (:mod:`tui_chat.client.state`).
        Meant for one consumer; events are kept until read."""
        while True:
            yield await self._events.get()

    def pending_events(self, limit: int) -> list[ClientEvent]:
        """Up to ``limit`` events already queued, without waiting (a consumer drains bursts)."""
        events: list[ClientEvent] = []
        while len(events) < limit and not self._events.empty():
            events.append(self._events.get_nowait())
        return events

    def _emit(self, event: ClientEvent) -> None:
        self._events.put_nowait(event)

    @property
    def online(self) -> bool:
        return self.connection is not None and self.connection.online

    @property
    def link(self) -> LinkState:
        """The connection's state as last reported (``ConnectionChanged`` carries the same)."""
        return self._link

    @property
    def queued(self) -> int:
        """Messages waiting to be sent (failed ones excluded)."""
        return self.local.queued if self.local is not None else 0

    # -- what the UI reads ---------------------------------------------------------------

    def remember(self, key: str, value: str) -> None:
        """Keep a small setting of this account on this server (e.g. the conversation left open)."""
        if self.local is not None:
            self.local.remember(key, value)

    def recall(self, key: str) -> str | None:
        return self.local.recall(key) if self.local is not None else None

    def conversation(self, peer: str) -> Conversation:
        return self.local.conversation(peer) if self.local is not None else Conversation(peer)

    def conversations(self) -> list[Conversation]:
        return self.local.conversations() if self.local is not None else []

    def timeline_length(self, peer: str) -> int:
        """Rows in the conversation with ``peer``: cached acked messages plus queued ones."""
        return self.local.length(peer) if self.local is not None else 0

    def timeline_slice(self, peer: str, start: int, stop: int) -> list[TimelineItem]:
        """Rows ``[start:stop]``: acked messages by seq, then this device's pending and failed
        ones in the order they were written. Costs one page, however long the history."""
        return self.local.slice(peer, start, stop) if self.local is not None else []

    def newest_rows(self, peer: str, limit: int) -> list[TimelineItem]:
        """The newest ``limit`` sent rows and every queued one (a view's first window)."""
        return self.local.newest(peer, limit) if self.local is not None else []

    def older_rows(self, peer: str, before_seq: int, limit: int) -> list[TimelineItem]:
        """The ``limit`` cached rows just before ``before_seq`` (a view scrolling back)."""
        return self.local.before(peer, before_seq, limit) if self.local is not None else []

    def timeline(self, peer: str) -> list[TimelineItem]:
        return self.timeline_slice(peer, 0, self.timeline_length(peer))

    def has_older(self, peer: str) -> bool:
        """Whether the server may hold messages older than the cached ones."""
        return self.local is not None and self.local.has_older(peer)

    def rooms(self) -> list[Room]:
        """The rooms this user is in, as last described by the server (kept on disk)."""
        return self.local.rooms.all() if self.local is not None else []

    def room(self, name: str) -> Room | None:
        return self.local.rooms.get(name) if self.local is not None else None

    def reads(self, room: str) -> dict[str, int] | None:
        """Member → how far they have read in ``room``, once fetched (:meth:`follow_reads`)."""
        return self.local.rooms.reads(room) if self.local is not None else None

    # -- what the UI does ----------------------------------------------------------------

    def send(self, to: str, body: str) -> str:
        """Queue a message (durably, before anything else) and send it when possible.
        Returns its id. Raises :class:`SendRefused` for a body or address that can never be sent."""
        problem = p.body_problem(body)
        if problem:
            raise SendRefused(problem)
        to = _address(to)
        if self.local is None:
            raise RuntimeError("sign in first")
        msg_id = self.new_id()
        self.local.queue(msg_id, to, body, self.clock())
        self._wake_sender()
        return msg_id

    async def send_file(self, to: str, path: Path | str, body: str = "") -> str:
        """Queue a file (with optional words) for ``to``: it is copied into this account's folder
        at once, so it goes as it is now, uploaded when the link allows, then sent like any
        message, once. Returns the message id. Raises :class:`SendRefused` with the reason."""
        if body.strip():
            problem = p.body_problem(body)
            if problem:
                raise SendRefused(problem)
        to = _address(to)
        if self.local is None:
            raise RuntimeError("sign in first")
        source = Path(path).expanduser()
        if not source.is_file():
            raise SendRefused(f"no such file: {source}")
        try:
            file = await asyncio.to_thread(take_into_outbox, source, self.account_folder(self.me) / "outgoing")
        except ValueError as exc:
            raise SendRefused(str(exc)) from None
        except OSError as exc:
            raise SendRefused(f"cannot read {source.name}: {exc.strerror or exc}") from None
        msg_id = self.new_id()
        self.local.queue(msg_id, to, body, self.clock(), file)
        self._wake_sender()
        return msg_id

    async def _upload(self, entry, generation: int) -> str:
        """The sender's upload: a fresh link for the file, then its bytes (PROTOCOL.md 7.7)."""
        file = entry.attachment
        action = p.RequestUpload(name=file.name, size=file.size, type=file.type, sha256=file.sha256)
        try:
            upload = await self.requests.ask(generation, action, p.Upload)
        except RequestFailed as exc:
            permanent = exc.code in (p.TOO_LARGE, p.BAD_REQUEST)
            raise TransferFailed(exc.detail or str(exc), permanent=permanent) from None
        except (ConnectionError, TimeoutError) as exc:
            raise TransferFailed(f"the link dropped: {exc}") from None
        await put_file(upload, file, lambda done, total: self._emit(UploadProgress(entry.id, entry.to, done, total)))
        return upload.file_id

    async def download(self, attachment: p.Attachment, folder: Path | None = None, progress: Callable[[int, int], None] | None = None) -> Path:
        """Save a message's file in ``folder`` (the downloads folder) under a safe name that
        overwrites nothing; where it went. Raises :class:`TransferFailed` saying why not."""
        if not self.online or self.requests is None:
            raise TransferFailed("not connected; files can be fetched once the connection is back")
        try:
            ticket = await self.requests.ask(self.connection.generation, p.RequestDownload(file_id=attachment.file_id), p.Download)
        except RequestFailed as exc:
            raise TransferFailed(exc.detail or str(exc), permanent=True) from None
        except (ConnectionError, TimeoutError):
            raise TransferFailed("the link dropped before the server answered") from None
        target_folder = folder or downloads_dir()
        target_folder.mkdir(parents=True, exist_ok=True)
        target = unique_path(target_folder, safe_file_name(attachment.name))
        await get_file(ticket, attachment.size, target, progress)
        return target

    def retry(self, msg_id: str) -> bool:
        """Queue a failed message again (behind what is queued). False if it is not failed."""
        if self.local is None or not self.local.retry(msg_id):
            return False
        self._wake_sender()
        return True

    def discard(self, msg_id: str) -> bool:
        """Drop a failed message for good. False if it is not failed."""
        return self.local is not None and self.local.discard(msg_id)

    async def open_conversation(self, peer: str) -> Conversation:
        """The conversation the person is looking at: fetch its newest page if none is cached;
        for a room, follow how far its members have read."""
        if self.local is not None and self.online and self.local.cache.count(peer) == 0 and self.has_older(peer):
            await self.load_older(peer)
        if p.is_room(peer):
            await self.follow_reads(peer)
        return self.conversation(peer)

    async def follow_reads(self, room: str) -> None:
        """Fetch every member's read mark in ``room`` (``reads``) and keep them current from
        now on, across reconnects (offline: from the next connection on)."""
        if self.local is None or room not in self.local.rooms:
            return
        if not self.online:
            self.local.rooms.watch(room)  # fetched when catch-up is done
            return
        try:
            await self.sync.reads(self.connection.generation, room)
        except RequestFailed as exc:
            if exc.code == p.FORBIDDEN:
                self._room_gone(room)
                return
            raise ConnectionError(str(exc)) from None

    # -- rooms ---------------------------------------------------------------------------

    async def create_room(self, name: str, title: str = "", members: list[str] | tuple[str, ...] = ()) -> Room:
        """Create a room (``name`` with or without its ``#``) with this user as owner and
        ``members`` in it; raises :class:`RoomActionFailed` saying why not."""
        try:
            room = p.normalize_room(name if name.startswith(p.ROOM_PREFIX) else p.ROOM_PREFIX + name)
            others = tuple(dict.fromkeys(p.normalize_username(m) for m in members if m != self.me))
        except ValueError as exc:
            raise RoomActionFailed(str(exc)) from None
        self._check_title(title)
        if len(others) >= p.MAX_ROOM_MEMBERS:
            raise RoomActionFailed(f"a room has at most {p.MAX_ROOM_MEMBERS} members")
        reply = await self._room_request(p.CreateRoom(room=room, title=title, members=others), p.RoomEvent)
        return self.room(reply.room) or _room(reply)

    async def invite(self, room: str, user: str) -> None:
        try:
            user = p.normalize_username(user)
        except ValueError as exc:
            raise RoomActionFailed(str(exc)) from None
        await self._room_request(p.Invite(room=room, user=user), p.RoomEvent)

    async def leave_room(self, room: str) -> None:
        """Leave ``room``: its history goes from this device too (a room without members is deleted)."""
        await self._room_request(p.LeaveRoom(room=room), p.Left)

    async def remove_member(self, room: str, user: str) -> None:
        """Take ``user`` out of ``room`` (only its owner may)."""
        await self._room_request(p.RemoveMember(room=room, user=user), p.RoomEvent)

    async def set_room_title(self, room: str, title: str) -> None:
        self._check_title(title)
        await self._room_request(p.SetRoomTitle(room=room, title=title), p.RoomEvent)

    @staticmethod
    def _check_title(title: str) -> None:
        problem = p.room_title_problem(title)
        if problem:
            raise RoomActionFailed(problem)

    async def _room_request(self, action: p.Action, kind: type) -> p.Event:
        """Room changes are made by the server, so they need the connection (they are not
        queued like messages: a room created or joined an hour later would surprise people)."""
        if not self.online or self.requests is None:
            raise RoomActionFailed("not connected; rooms can be changed once the connection is back")
        try:
            return await self.requests.ask(self.connection.generation, action, kind)
        except RequestFailed as exc:
            raise RoomActionFailed(ROOM_REFUSALS.get(exc.code) or exc.detail or str(exc)) from None
        except (ConnectionError, TimeoutError):
            raise RoomActionFailed("the connection was lost before the server answered; try again") from None

    # -- search ------------------------------------------------------------------------------

    def search(self, text: str, *, limit: int = MAX_RESULTS) -> list[SearchHit]:
        """The newest cached messages matching every word of ``text`` (as prefixes)."""
        return SearchIndex(self.local.db).search(text, limit=limit) if self.local is not None else []

    def not_fully_cached(self) -> list[str]:
        """Conversations whose older messages are not all in the cache (search misses them)."""
        return self.local.cache.incomplete() if self.local is not None else []

    async def fetch_older_history(self, progress: Callable[[str, int], None] | None = None, *, page: int = 200) -> int:
        """Bring every conversation's older history into the cache, page by page, so that
        search sees it; how many messages came. ``progress(conversation, fetched so far)``
        after each page. Stops quietly when offline; ``ConnectionError`` if the link drops."""
        fetched = 0
        for peer in self.not_fully_cached():
            while self.online and (added := await self.sync.older(peer, page)):
                fetched += added
                if progress is not None:
                    progress(peer, fetched)
        return fetched

    async def load_older(self, peer: str, limit: int = 100) -> int:
        """Fetch the page before the oldest cached message (the newest page when none is
        cached); returns how many rows were added. 0 when offline or at the beginning;
        raises ``ConnectionError`` when the link drops during the request."""
        if self.local is None or not self.online:
            return 0
        return await self.sync.older(peer, limit)

    async def mark_read(self, peer: str) -> None:
        """Everything shown in the conversation has been read (sent now, or on reconnect)."""
        seq = self.local.read_up_to_newest(peer) if self.local is not None else None
        if seq is not None and self.connection is not None:
            await self.connection.send(p.MarkRead(with_=peer, seq=seq))

    async def set_status(self, status: str, text: str = "") -> None:
        """Set this user's status (online, away, busy) and note; kept until the server has it."""
        if status not in p.SETTABLE_STATUSES:
            raise SendRefused(f"status must be one of {', '.join(p.SETTABLE_STATUSES)}")
        problem = p.status_text_problem(text)
        if problem:
            raise SendRefused(problem)
        self.people.want_status(self.me, status, text)
        if self.connection is not None:
            await self.connection.send(p.SetStatus(status=status, text=text))

    async def typing(self, to: str) -> None:
        """Tell ``to`` that this user is typing (dropped when offline: it is only a hint)."""
        if self.connection is not None:
            await self.connection.send(p.Typing(to=to))

    def reconnect_now(self) -> None:
        """Try to connect at once (skips the backoff wait; restarts after ``replaced``)."""
        if self.connection is not None:
            self.connection.reconnect_now()

    def _wake_sender(self) -> None:
        if self.sender is not None:
            self.sender.wake()

    # -- the connection's callbacks ------------------------------------------------------

    def _on_link_state(self, state: LinkState) -> None:
        if state.kind != ConnectionState.ONLINE:
            self.sender.link_lost()
            self.requests.link_lost()
        self._link = state
        self._emit_connection()

    def _emit_connection(self) -> None:
        state = self._link
        self._emit(ConnectionChanged(state.kind, state.retry_in, self.queued, state.detail))

    async def _on_open(self) -> None:
        """Catch up, then let the outbox flush. Runs beside the reader, so replies can arrive."""
        generation = self.connection.generation
        try:
            self.people.loaded(await self.sync.users(generation), self.me)
            await self.sync.conversations(generation)
            if self.people.wanted_status is not None:
                status, text = self.people.wanted_status
                await self.connection.send(p.SetStatus(status=status, text=text), generation=generation)
        except ConnectionError:
            return  # the link dropped: the next one catches up
        except (TimeoutError, RequestFailed) as exc:
            log.warning("catch-up failed, reconnecting: %s", exc)
            self.connection.drop()
            return
        except Exception:
            log.exception("catch-up failed, reconnecting")
            self.connection.drop()
            return
        self.sender.ready(generation)

    async def _on_event(self, event: p.Event) -> None:
        if self.local is not None:
            self._room_news(event)  # news even when it answers a request of ours
        if isinstance(event, p.GatewayError):
            self.requests.gateway_error()  # it may have been a request's frame as well as a send's
        if self.requests.answer(event) or self.local is None or self.sender.take(event):
            return
        match event:
            case p.MessageEvent():
                message = event.message
                peer = message.other(self.me)
                if self.local.received(message, synced=self.sender.synced):
                    self.people.typing_ended(message.sender, peer)
                    self._emit(MessageReceived(peer, message.sender, message.body))
                if p.is_room(peer):
                    self.local.room_read(peer, message.sender, message.seq)  # sending moves the sender's mark
                    if peer not in self.local.rooms:
                        self._in_background(self._learn_room(peer))  # its room event was missed
            case p.PresenceEvent():
                self.people.presence(event, self.me)
            case p.Presences():
                for presence in event.items:
                    self.people.presence(presence, self.me)
            case p.Read():
                if event.by == self.me:
                    self.local.own_read(event.with_, event.seq)
                elif p.is_room(event.with_):
                    self.local.room_read(event.with_, event.by, event.seq)
                else:
                    self.local.peer_read(event.with_, event.seq)
            case p.TypingEvent():
                self.people.typing_seen(event.sender, event.room)
            case p.Error():
                log.info("server error: %s %s", event.code, event.message)

    def _room_news(self, event: p.Event) -> None:
        """A room was described (created, joined, changed) or this user left it."""
        match event:
            case p.RoomEvent() if self.me in event.members:
                new = event.room not in self.local.rooms
                self.local.rooms.update(_room(event))
                if new and self.sender.synced:  # during catch-up, catch-up fetches it
                    self._in_background(self._learn_room(event.room, described=True))
            case p.Left():
                self._room_gone(event.room, by_me=event.rid is not None)

    def _room_gone(self, room: str, *, by_me: bool = False) -> None:
        """This user is no longer in ``room`` (left, removed, or the room was found gone)."""
        if self.local is None:
            return
        known = room in self.local.rooms or self.local.cache.conversation(room) is not None
        dropped = self.local.forget_room(room)
        if known:
            self._emit(RoomLeft(room, by_me=by_me))
        if dropped:
            self._emit(Notice(f"{dropped} unsent message{'s' if dropped != 1 else ''} to {room} "
                              "could not be sent: you are no longer in that room."))  # fmt: skip

    async def _learn_room(self, room: str, *, described: bool = False) -> None:
        """A room met outside catch-up: how it is, and its history so far."""
        generation = self.connection.generation
        try:
            if described or await self.sync.describe_room(generation, room):
                await self.sync.joined(generation, room)
        except (ConnectionError, TimeoutError, RequestFailed) as exc:
            log.info("could not fetch a room just joined (the next catch-up will): %s", exc)

    def _in_background(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _address(to: object) -> str:
    """A person or a room to send to, normalised; :class:`SendRefused` saying why not."""
    try:
        return p.normalize_room(to) if isinstance(to, str) and to.startswith(p.ROOM_PREFIX) else p.normalize_username(to)
    except ValueError as exc:
        raise SendRefused(str(exc)) from None


def _room(event: p.RoomEvent) -> Room:
    return Room(event.room, event.title, event.owner, event.members)
