"""The client service: one connection, the outbox, the cache and the model, behind one facade.

A UI (or a script, or a test) owns a :class:`ChatClient`, calls its methods and reads
``events()`` (the small typed events of :mod:`tui_chat.client.state`); nothing here imports
Textual. Guarantees:

- ``send`` writes the message to the outbox before anything else; it leaves the outbox only
  once the server has stored it (its ``ack``, or the message itself seen in the server's
  history). After every reconnect everything unacked is resent in order with the same id, so
  the server stores it exactly once.
- After every (re)connect the history is caught up from the last seq known to be complete
  (``getConversations``, then ``getMessages`` with ``after`` until ``hasMore`` is false); only
  then does the outbox flush. A conversation never seen before starts from its newest page;
  older pages come with ``load_older``.
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
import itertools
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tui_chat import cognito_auth
from tui_chat import protocol as p
from tui_chat.client.auth import (
    AuthClient,
    ServerInfo,
    SignInError,
    Tokens,
    TokenVault,
    device_id,
    http_base,
    token_file_path,
    ws_url,
)
from tui_chat.client.cache import Cache
from tui_chat.client.connection import OFFLINE, ONLINE, Connection, LinkState, NeedsSignIn
from tui_chat.client.identity import KnownServers, account_folder, adopt_legacy_folder, valid_server_id
from tui_chat.client.localdb import open_db
from tui_chat.client.outbox import Outbox
from tui_chat.client.state import (
    ClientEvent,
    ConnectionChanged,
    Conversation,
    ConversationChanged,
    MessageReceived,
    Notice,
    TimelineChanged,
    TimelineItem,
    TypingChanged,
    User,
    UserChanged,
    UsersLoaded,
)

from tui_chat.paths import data_dir

if TYPE_CHECKING:
    from tui_chat.client.config import Config

log = logging.getLogger("tui_chat.client")

TYPING_SHOWN_S = 6.0
SEND_REPLY_TIMEOUT_S = 10.0
"""A send frame without an answer this long is sent again (PROTOCOL.md 7.3)."""
MAX_BATCH_BYTES = p.MAX_ACTION_BYTES - 512
"""A batch's messages, leaving room for the frame's own fields under the 32 KiB limit."""
REQUEST_TIMEOUT_S = 15.0
RATE_LIMIT_RETRIES = 5
INTERNAL_ERROR_RETRY_S = 2.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_message_id() -> str:
    return uuid.uuid4().hex


class SendRefused(ValueError):
    """A message or status that can never be sent (empty, too long, control characters):
    nothing was queued. ``str()`` says why, for people."""


class CatchUpFailed(Exception):
    """The server answered a catch-up request with an error; the link is dropped and retried."""


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
        self.cognito = cognito
        """A Cognito pool from the config: the cloud has no ``/info`` to ask."""
        self.cognito_endpoint = cognito_endpoint
        self.auth = AuthClient(server_url)
        self.known_servers = KnownServers(data_folder)
        self.server_id = self.known_servers.get(http_base(server_url))
        """The identity of the server at ``server_url`` (PROTOCOL.md 7.5): as last seen until
        ``discover`` asks, so that the right history opens while the server is unreachable."""
        self.vault = vault or TokenVault(server_url)
        self.vault.server_id = self.server_id
        self.data_folder = data_folder
        self.clock = clock
        self.new_id = new_id
        self.device = device or device_id(data_folder)
        self.connection_options = connection_options or {}
        self.info: ServerInfo | None = None
        self.me = ""
        self.tokens: Tokens | None = None
        self.users: dict[str, User] = {}
        self.typing_peers: set[str] = set()
        self.outbox: Outbox | None = None
        self.cache: Cache | None = None
        self.connection: Connection | None = None
        self._db: sqlite3.Connection | None = None
        self._events: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._link = LinkState(OFFLINE)
        self._vault_noticed = False
        self._adopt_legacy_folder = False
        self._replies: dict[str, asyncio.Future] = {}
        self._rids = itertools.count(1)
        self._ready_generation = 0
        """The connection on which catch-up finished: the outbox flushes only on it."""
        self._in_flight: set[str] = set()
        """Ids of the one send frame in flight (PROTOCOL.md 7.3): nothing else is sent until it is answered."""
        self._in_flight_rid: str | None = None
        self._sends = itertools.count(1)
        self._send_number = 0
        self._pump_wake = asyncio.Event()
        self._pump_task: asyncio.Task | None = None
        self._typing_timers: dict[str, asyncio.TimerHandle] = {}
        self._wanted_status: tuple[str, str] | None = None
        """A status set here that the server has not confirmed (with our own presence) yet."""

    @classmethod
    def from_config(cls, config: "Config", **options) -> "ChatClient":
        """A client for ``config``: its server, its Cognito pool, and tokens in a 0600 file
        when the person asked for that (``store_tokens_in_file``) and no keyring works."""
        url = config.server_url
        fallback = token_file_path(url) if config.store_tokens_in_file else None
        options.setdefault("vault", TokenVault(url, file_fallback=fallback))
        options.setdefault("cognito", config.cognito)
        return cls(url, **options)

    # -- signing in ----------------------------------------------------------------------

    async def discover(self) -> ServerInfo:
        """How this server signs people in (``GET /info``; the config for the cloud)."""
        if self.cognito is not None:
            pool = valid_server_id(f"cognito-{self.cognito.get('userPoolId', '')}")
            self.info = ServerInfo(auth="cognito", signup=False, cognito=self.cognito, server_id=pool)
        else:
            self.info = await self.auth.info()
        self._learn_server_id(self.info.server_id)
        return self.info

    def _learn_server_id(self, server_id: str) -> None:
        """Another id at this address is another server: say so, and keep its files apart."""
        if not server_id or server_id == self.server_id:
            return
        if self.server_id:
            self._emit(Notice(
                f"The server at {http_base(self.server_url)} is not the one you used before: it was set up anew. "
                "Its history starts empty; what you had with the old one is kept apart, and nothing queued for it is sent here."
            ))  # fmt: skip
            self._close_db()  # opened for the old server
        else:
            self._adopt_legacy_folder = True  # first id seen here: files kept for the address are this server's
        self.server_id = self.vault.server_id = server_id
        self.known_servers.remember(http_base(self.server_url), server_id)

    async def sign_in(self, username: str, password: str = "", *, create: bool = False) -> None:
        """Sign in (or sign up with ``create``); open mode needs only the nickname.
        Raises :class:`SignInError` whose ``kind`` says what went wrong."""
        info = self.info or await self.discover()
        try:
            name = p.normalize_username(username)
        except ValueError as exc:
            raise SignInError("invalid", str(exc)) from None
        if info.auth == "open":
            tokens = await self.auth.sign_in_open(name, self.device)
        elif info.auth == "accounts":
            tokens = await self.auth.sign_in(name, password, create=create)
        elif info.auth == "cognito" and info.cognito:
            tokens = await self._cognito(lambda config: cognito_auth.sign_in_async(config, username, password), name)
        else:
            raise SignInError("invalid", f"this server signs in with {info.auth}, which this client does not offer")
        self._signed_in(tokens)

    async def _cognito(self, call, user: str, old_refresh: str = "") -> Tokens:
        """Run a Cognito sign-in or refresh; its ID token is what the server verifies."""
        config = cognito_auth.CognitoConfig.from_info(self.info.cognito, endpoint_url=self.cognito_endpoint)
        try:
            result = await call(config)
        except cognito_auth.CognitoAuthError as exc:
            kind = {"credentials": "credentials", "expired": "expired", "throttled": "throttled"}.get(exc.reason, "unreachable")
            raise SignInError(kind, exc.message) from None
        return Tokens(access=result.id_token, refresh=result.refresh_token or old_refresh, user=user)

    async def _refresh_tokens(self, refresh_token: str, user: str) -> Tokens:
        info = self.info or await self.discover()
        if info.auth == "cognito" and info.cognito:
            return await self._cognito(lambda config: cognito_auth.refresh_async(config, refresh_token), user, refresh_token)
        return await self.auth.refresh(refresh_token, user)

    async def resume(self, username: str) -> bool:
        """Sign in with the refresh token kept from last time; False when there is none or it expired.

        With the server unreachable the session is resumed offline: history and outbox open from
        disk, and the connection renews the token once the server answers again (its first
        handshake is refused 401, which asks for a refresh)."""
        saved = self.vault.load(username)
        self._notice_vault()
        if not saved:
            return False
        try:
            tokens = await self._refresh_tokens(saved, username)
        except SignInError as exc:
            if exc.kind == "expired":
                self.vault.forget(username)
            if exc.kind != "unreachable":
                return False
            tokens = Tokens(access="", refresh=saved, user=username)
        self._signed_in(tokens)
        return True

    def _signed_in(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self.vault.save(tokens.user, tokens.refresh)
        self._notice_vault()
        if self.me != tokens.user or self._db is None:
            self.me = tokens.user
            self._close_db()
            self._db = open_db(self.account_folder(tokens.user) / "client.db")
            self.outbox = Outbox(self._db)
            self.cache = Cache(self._db, tokens.user)

    def account_folder(self, user: str) -> Path:
        """Where the outbox and history of ``user`` on this server live (keyed on the server id)."""
        root = self.data_folder if self.data_folder is not None else data_dir()
        if self._adopt_legacy_folder:
            return adopt_legacy_folder(root, self.server_url, self.server_id, user)
        return account_folder(root, self.server_url, self.server_id, user)

    def _notice_vault(self) -> None:
        """Say once, not on every start, where the session is kept when no keyring works."""
        if not self.vault.warning or self._vault_noticed:
            return
        self._vault_noticed = True
        marker = self.known_servers.path.with_name("keyring-notice")
        try:
            if marker.read_text(encoding="utf-8") == self.vault.warning:
                return  # told on an earlier start, and nothing changed since
        except OSError:
            pass
        self._emit(Notice(self.vault.warning))
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(self.vault.warning, encoding="utf-8")
        except OSError:
            pass  # then it is said again next time

    async def _refresh(self) -> None:
        """The connection's 401 handler: renew the access token, or say that sign-in is needed."""
        assert self.tokens is not None
        try:
            self._signed_in(await self._refresh_tokens(self.tokens.refresh, self.tokens.user))
        except SignInError as exc:
            if exc.kind in ("expired", "credentials"):
                self.vault.forget(self.tokens.user)
                raise NeedsSignIn(exc.message) from None
            raise

    async def sign_out(self) -> None:
        """Stop and forget the saved session (the outbox and history stay for next time)."""
        await self.stop()
        if self.me:
            self.vault.forget(self.me)

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and keep connected; a second call does nothing."""
        if self.tokens is None:
            raise RuntimeError("sign in first")
        if self.connection is None:
            self.connection = Connection(
                ws_url(self.server_url), self.device,
                token=lambda: self.tokens.access, refresh=self._refresh,
                on_event=self._on_event, on_state=self._on_link_state, on_open=self._on_open,
                token_in_header=self.cognito is None,
                **self.connection_options,
            )  # fmt: skip
        self.connection.start()
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.create_task(self._pump(), name="tui-chat-outbox")

    async def stop(self) -> None:
        """Close the connection; queued messages stay in the outbox for the next start."""
        if self._pump_task is not None:
            self._pump_task.cancel()
            self._pump_task = None
        for timer in self._typing_timers.values():
            timer.cancel()
        self._typing_timers.clear()
        if self.connection is not None:
            await self.connection.stop()

    async def close(self) -> None:
        """Stop and close the local database (the process is about to end)."""
        await self.stop()
        self._close_db()

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
            self.outbox = self.cache = None  # nothing may read the closed file (a second close, a late event)

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
        return len(self.outbox) if self.outbox is not None else 0

    # -- what the UI reads ---------------------------------------------------------------

    def remember(self, key: str, value: str) -> None:
        """Keep a small setting of this account on this server (e.g. the conversation left open)."""
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    def recall(self, key: str) -> str | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def conversation(self, peer: str) -> Conversation:
        record = self.cache.conversation(peer) if self.cache else None
        if record is None:
            return Conversation(peer)
        last = self.cache.last_message(peer)
        return Conversation(
            peer, unread=record.unread, read_seq=record.read_seq, peer_read_seq=record.peer_read_seq,
            last_seq=record.last_seq, last_ts=last.ts if last else 0, last_body=last.body if last else "",
        )  # fmt: skip

    def conversations(self) -> list[Conversation]:
        if self.cache is None:
            return []
        return [self.conversation(c.peer) for c in self.cache.conversations()]

    def timeline_length(self, peer: str) -> int:
        """Rows in the conversation with ``peer``: cached acked messages plus queued ones."""
        if self.cache is None or self.outbox is None:
            return 0
        return self.cache.count(peer) + self.outbox.count_for(peer)

    def timeline_slice(self, peer: str, start: int, stop: int) -> list[TimelineItem]:
        """Rows ``[start:stop]``: acked messages by seq, then this device's pending and failed
        ones in the order they were written. Costs one page, however long the history."""
        if self.cache is None or self.outbox is None:
            return []
        start, stop = max(0, start), max(0, stop)
        acked = self.cache.count(peer)
        record = self.cache.conversation(peer)
        peer_read = record.peer_read_seq if record else 0
        rows: list[TimelineItem] = []
        if start < acked:
            for m in self.cache.slice(peer, start, min(stop, acked)):
                state = "read" if m.sender == self.me and m.seq <= peer_read and peer != self.me else "sent"
                rows.append(TimelineItem(m.id, m.sender, m.to, m.body, m.ts, m.seq, state))
        if stop > acked:
            for entry in self.outbox.for_peer(peer, max(0, start - acked), stop - acked):
                rows.append(TimelineItem(entry.id, self.me, entry.to, entry.body, entry.created_ts, None, entry.state, entry.error))
        return rows

    def timeline(self, peer: str) -> list[TimelineItem]:
        return self.timeline_slice(peer, 0, self.timeline_length(peer))

    def has_older(self, peer: str) -> bool:
        """Whether the server may hold messages older than the cached ones."""
        if self.cache is None or self.cache.is_complete(peer):
            return False
        oldest = self.cache.oldest_seq(peer)
        if oldest is None:
            record = self.cache.conversation(peer)
            return record is not None and record.last_seq > 0
        return oldest > 1

    # -- what the UI does ----------------------------------------------------------------

    def send(self, to: str, body: str) -> str:
        """Queue a message (durably, before anything else) and send it when possible.
        Returns its id. Raises :class:`SendRefused` for a body or address that can never be sent."""
        problem = p.body_problem(body)
        if problem:
            raise SendRefused(problem)
        if isinstance(to, str) and to.startswith("#"):
            raise SendRefused("rooms are not supported yet")
        try:
            to = p.normalize_username(to)
        except ValueError as exc:
            raise SendRefused(str(exc)) from None
        if self.outbox is None:
            raise RuntimeError("sign in first")
        msg_id = self.new_id()
        self.outbox.add(msg_id, to, body, self.clock())
        self._emit(TimelineChanged(to, appended=1))
        self._emit_connection()
        self._pump_wake.set()
        return msg_id

    def retry(self, msg_id: str) -> bool:
        """Queue a failed message again (behind what is queued). False if it is not failed."""
        entry = self.outbox.get(msg_id) if self.outbox is not None else None
        if entry is None or not self.outbox.retry(msg_id):
            return False
        self._emit(TimelineChanged(entry.to))
        self._emit_connection()
        self._pump_wake.set()
        return True

    def discard(self, msg_id: str) -> bool:
        """Drop a failed message for good. False if it is not failed."""
        entry = self.outbox.get(msg_id) if self.outbox is not None else None
        if entry is None or not self.outbox.discard(msg_id):
            return False
        self._emit(TimelineChanged(entry.to))
        return True

    async def open_conversation(self, peer: str) -> Conversation:
        """The conversation the person is looking at: fetch its newest page if none is cached."""
        if self.cache is not None and self.online and self.cache.count(peer) == 0 and self.has_older(peer):
            await self.load_older(peer)
        return self.conversation(peer)

    async def load_older(self, peer: str, limit: int = 100) -> int:
        """Fetch the page before the oldest cached message (the newest page when none is
        cached); returns how many rows were added. 0 when offline or at the beginning;
        raises ``ConnectionError`` when the link drops during the request."""
        if self.cache is None or not self.online or self.cache.is_complete(peer):
            return 0
        oldest = self.cache.oldest_seq(peer)
        if oldest is not None and oldest <= 1:
            self.cache.set_complete(peer)
            return 0
        frame: dict = {"action": "getMessages", "with": peer, "limit": limit}
        if oldest is not None:
            frame["before"] = oldest
        try:
            reply = await self._ask(self.connection.generation, frame, p.Messages)
        except CatchUpFailed as exc:
            raise ConnectionError(str(exc)) from None
        new = self._store(peer, reply.items, hint=False)
        if not reply.has_more:
            self.cache.set_complete(peer)
        if new:
            self._emit(TimelineChanged(peer, prepended=len(new)))
        return len(new)

    async def mark_read(self, peer: str) -> None:
        """Everything shown in the conversation has been read (sent now, or on reconnect)."""
        if self.cache is None:
            return
        last = self.cache.last_message(peer)
        record = self.cache.conversation(peer)
        if last is None or record is None or (last.seq <= record.read_seq and record.unread == 0):
            return
        self.cache.set_read(peer, mine=last.seq)
        self._emit(ConversationChanged(self.conversation(peer)))
        if self.connection is not None:
            await self.connection.send({"action": "markRead", "with": peer, "seq": last.seq})

    async def set_status(self, status: str, text: str = "") -> None:
        """Set this user's status (online, away, busy) and note; kept until the server has it."""
        if status not in p.SETTABLE_STATUSES:
            raise SendRefused(f"status must be one of {', '.join(p.SETTABLE_STATUSES)}")
        problem = p.status_text_problem(text)
        if problem:
            raise SendRefused(problem)
        self._wanted_status = (status, text)
        if self.me:
            old = self.users.get(self.me)
            user = User(self.me, status, text, old.last_seen if old else None)
            self.users[self.me] = user
            self._emit(UserChanged(user))
        if self.connection is not None:
            await self.connection.send({"action": "setStatus", "status": status, "text": text})

    async def typing(self, to: str) -> None:
        """Tell ``to`` that this user is typing (dropped when offline: it is only a hint)."""
        if self.connection is not None:
            await self.connection.send({"action": "typing", "to": to})

    def reconnect_now(self) -> None:
        """Try to connect at once (skips the backoff wait; restarts after ``replaced``)."""
        if self.connection is not None:
            self.connection.reconnect_now()

    # -- the connection's callbacks ------------------------------------------------------

    def _on_link_state(self, state: LinkState) -> None:
        if state.kind != ONLINE:
            self._clear_in_flight()
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(ConnectionError("the connection was lost"))
            self._replies.clear()
        self._link = state
        self._emit_connection()

    def _emit_connection(self) -> None:
        state = self._link
        self._emit(ConnectionChanged(state.kind, state.retry_in, self.queued, state.detail))

    async def _on_open(self) -> None:
        """Catch up, then let the outbox flush. Runs beside the reader, so replies can arrive."""
        generation = self.connection.generation
        try:
            await self._load_users(generation)
            await self._catch_up(generation)
            me = self.users.get(self.me)
            if me is not None and self._wanted_status == (me.status, me.text):
                self._wanted_status = None  # the server has it already
            if self._wanted_status is not None:
                status, text = self._wanted_status
                await self.connection.send({"action": "setStatus", "status": status, "text": text}, generation=generation)
        except ConnectionError:
            return  # the link dropped: the next one catches up
        except (asyncio.TimeoutError, CatchUpFailed) as exc:
            log.warning("catch-up failed, reconnecting: %s", exc)
            self.connection.drop()
            return
        except Exception:  # noqa: BLE001 - never flush the outbox over a history with holes
            log.exception("catch-up failed, reconnecting")
            self.connection.drop()
            return
        self._ready_generation = generation
        self._pump_wake.set()

    async def _load_users(self, generation: int) -> None:
        cursor = None
        while True:
            reply = await self._ask(generation, {"action": "getClients", **({"cursor": cursor} if cursor else {})}, p.Clients)
            for info in reply.users:
                self.users[info.user] = User(info.user, info.status, info.text, info.last_seen)
            cursor = reply.next
            if cursor is None:
                break
        self._emit(UsersLoaded())

    async def _catch_up(self, generation: int) -> None:
        cursor = None
        while True:
            reply = await self._ask(generation, {"action": "getConversations", **({"cursor": cursor} if cursor else {})}, p.Conversations)
            for summary in reply.items:
                peer = summary.with_
                before = self.cache.conversation(peer)
                self.cache.apply_summary(summary)
                if before is not None and summary.peer_read_seq > before.peer_read_seq:
                    self._emit(TimelineChanged(peer))  # read while we were away: ✓ becomes ✓✓
                if summary.last_seq > self.cache.synced_seq(peer):
                    if self.cache.synced_seq(peer) == 0:
                        await self._fetch_newest(generation, peer)
                    else:
                        await self._fetch_after(generation, peer)
                await self._send_read_marker(generation, peer, summary.read_seq)
                self._emit(ConversationChanged(self.conversation(peer)))
            cursor = reply.next
            if cursor is None:
                return

    async def _fetch_after(self, generation: int, peer: str) -> None:
        """Everything after the last seq known complete, page by page (no gaps, no duplicates)."""
        after = self.cache.synced_seq(peer)
        while True:
            frame = {"action": "getMessages", "with": peer, "after": after, "limit": p.MAX_PAGE_LIMIT}
            reply = await self._ask(generation, frame, p.Messages)
            self._store(peer, reply.items)
            if reply.items:
                after = reply.items[-1].seq
                self.cache.mark_synced(peer, after)
            if not reply.has_more or not reply.items:
                return

    async def _fetch_newest(self, generation: int, peer: str) -> None:
        """A conversation never synced: its newest page, then older pages only as far down as
        messages already held (loaded earlier), so that what is cached has no hole."""
        frame = {"action": "getMessages", "with": peer, "limit": p.MAX_PAGE_LIMIT}
        reply = await self._ask(generation, frame, p.Messages)
        self._store(peer, reply.items)
        if not reply.items:
            return
        self.cache.mark_synced(peer, reply.items[-1].seq)
        first = reply.items[0].seq
        held_below = self.cache.highest_seq_below(peer, first)
        while reply.has_more and held_below is not None and first > held_below:
            reply = await self._ask(generation, {**frame, "before": first}, p.Messages)
            self._store(peer, reply.items)
            if not reply.items:
                break
            first = reply.items[0].seq
        if not reply.has_more:
            self.cache.set_complete(peer)

    async def _send_read_marker(self, generation: int, peer: str, server_read_seq: int) -> None:
        """A conversation read here while offline: tell the server now."""
        record = self.cache.conversation(peer)
        if record is not None and record.read_seq > server_read_seq:
            self.cache.recount_unread(peer)
            await self.connection.send({"action": "markRead", "with": peer, "seq": record.read_seq}, generation=generation)

    async def _request(self, generation: int, frame: dict) -> p.Event:
        rid = f"c{next(self._rids)}"
        future = asyncio.get_running_loop().create_future()
        self._replies[rid] = future
        try:
            if not await self.connection.send({**frame, "rid": rid}, generation=generation):
                raise ConnectionError("not connected")
            return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        finally:
            self._replies.pop(rid, None)

    async def _ask(self, generation: int, frame: dict, kind: type) -> p.Event:
        """A request whose reply must be ``kind``; waits out ``rate_limited`` answers."""
        for _ in range(RATE_LIMIT_RETRIES):
            reply = await self._request(generation, frame)
            if isinstance(reply, kind):
                return reply
            if isinstance(reply, p.Error) and reply.code == p.RATE_LIMITED:
                self.connection.pacer.hold((reply.retry_after_ms or 1000) / 1000)
                continue
            raise CatchUpFailed(f"{frame['action']} was answered {getattr(reply, 'code', reply)!r}: {getattr(reply, 'message', '')}")
        raise CatchUpFailed(f"{frame['action']} was refused for the rate {RATE_LIMIT_RETRIES} times")

    def _store(self, peer: str, messages: Iterable[p.Message], *, hint: bool = True) -> list[p.Message]:
        """Cache messages from the server; announce them (``hint``: as an append when they are)."""
        before = self.cache.highest_seq(peer)
        new = self.cache.add(messages)
        settled = self._settle_own(new)
        if new and hint:
            plain_append = not settled and (before is None or min(m.seq for m in new) > before)
            self._emit(self._timeline_grew(peer, len(new) if plain_append else 0))
        return new

    def _settle_own(self, messages: Iterable[p.Message]) -> int:
        """Messages of ours found in the server's history are stored: their ack was lost with
        a dropped link, so they leave the outbox now (no row shown twice, nothing resent)."""
        mine = [m.id for m in messages if m.sender == self.me]
        removed = self.outbox.remove(mine) if mine else 0
        if removed:
            self._emit_connection()
        return removed

    async def _on_event(self, event: p.Event) -> None:
        rid = getattr(event, "rid", None)
        if rid is not None and rid in self._replies and not isinstance(event, p.Ack):
            future = self._replies.pop(rid)
            if not future.done():
                future.set_result(event)
            return
        match event:
            case p.Ack():
                self._on_ack(event)
            case p.Acks() if event.rid is not None and event.rid == self._in_flight_rid:
                for item in event.items:
                    self._on_ack(item) if isinstance(item, p.Ack) else self._on_error(item)
                self._send_answered()
            case p.GatewayError() if self._in_flight:
                log.info("API Gateway did not hand on our send; sending it again")
                self._send_answered()
            case p.MessageEvent():
                self._on_message(event.message)
            case p.PresenceEvent():
                user = User(event.user, event.status, event.text, event.last_seen)
                self.users[event.user] = user
                if event.user == self.me and self._wanted_status == (event.status, event.text):
                    self._wanted_status = None  # the server has it
                self._emit(UserChanged(user))
            case p.Read():
                if event.by == self.me:
                    self.cache.set_read(event.with_, mine=event.seq)
                else:
                    self.cache.set_read(event.with_, theirs=event.seq)
                    self._emit(TimelineChanged(event.with_))
                self._emit(ConversationChanged(self.conversation(event.with_)))
            case p.TypingEvent():
                self._show_typing(event.sender)
            case p.Error():
                self._on_error(event)

    def _on_ack(self, ack: p.Ack) -> None:
        message = ack.message
        peer = message.other(self.me)
        self._in_flight.discard(ack.id)
        if not self._in_flight:
            self._pump_wake.set()  # the frame in flight is answered: the next may go
        self.outbox.acked(ack.id)
        self.cache.add([message])
        self.cache.set_read(peer, mine=message.seq)  # sending reads the conversation
        if self._ready_generation == self.connection.generation:
            self.cache.advance_synced(peer)
        self._emit(TimelineChanged(peer))
        self._emit(ConversationChanged(self.conversation(peer)))
        self._emit_connection()

    def _on_message(self, message: p.Message) -> None:
        peer = message.other(self.me)
        new = self._store(peer, [message])
        if self._ready_generation == self.connection.generation:
            self.cache.advance_synced(peer)  # only over what is held: an earlier one may still be on its way
        if not new:
            return
        if message.sender != self.me:
            self.cache.bump_unread(peer)
            self._clear_typing(message.sender)
            self._emit(MessageReceived(peer, message.sender, message.body))
        self._emit(ConversationChanged(self.conversation(peer)))

    def _timeline_grew(self, peer: str, count: int) -> TimelineChanged:
        """Acked messages go before this device's queued ones: only then is it a plain append."""
        return TimelineChanged(peer, appended=0 if self.outbox.count_for(peer) else count)

    def _clear_in_flight(self) -> None:
        self._in_flight.clear()
        self._in_flight_rid = None

    def _send_answered(self) -> None:
        """The frame in flight is answered (or given up on): the pump may send the next one."""
        self._clear_in_flight()
        self._pump_wake.set()

    def _on_error(self, error: p.Error) -> None:
        if error.id is None and error.rid is not None and error.rid == self._in_flight_rid:
            self._on_batch_refused(error)
            return
        if error.id is None or self.outbox is None:
            log.info("server error: %s %s", error.code, error.message)
            return
        entry = self.outbox.get(error.id)
        self._in_flight.discard(error.id)
        if not self._in_flight:
            self._pump_wake.set()
        if entry is None:
            return
        if error.code == p.RATE_LIMITED:
            # Not stored. Wait as told; the pump then sends it again, still before the ones
            # queued behind it.
            self.connection.pacer.hold((error.retry_after_ms or 1000) / 1000)
            self._pump_wake.set()
        elif error.code in p.PERMANENT_SEND_ERRORS:
            self.outbox.fail(error.id, error.message or error.code)
            self._emit(TimelineChanged(entry.to))
            self._emit_connection()
        else:  # internal and unknown codes: the message stays queued and is sent again soon
            asyncio.get_running_loop().call_later(INTERNAL_ERROR_RETRY_S, self._pump_wake.set)

    def _on_batch_refused(self, error: p.Error) -> None:
        """A whole batch was refused (nothing of it stored): wait as told, then send it again."""
        self._clear_in_flight()
        if error.code == p.RATE_LIMITED:
            self.connection.pacer.hold((error.retry_after_ms or 1000) / 1000)
            self._pump_wake.set()
        else:
            log.warning("a batch was refused: %s %s", error.code, error.message)
            asyncio.get_running_loop().call_later(INTERNAL_ERROR_RETRY_S, self._pump_wake.set)

    def _show_typing(self, sender: str) -> None:
        self.typing_peers.add(sender)
        self._emit(TypingChanged(sender, True))
        old = self._typing_timers.pop(sender, None)
        if old:
            old.cancel()
        self._typing_timers[sender] = asyncio.get_running_loop().call_later(TYPING_SHOWN_S, self._clear_typing, sender)

    def _clear_typing(self, sender: str) -> None:
        timer = self._typing_timers.pop(sender, None)
        if timer:
            timer.cancel()
        if sender in self.typing_peers:
            self.typing_peers.discard(sender)
            self._emit(TypingChanged(sender, False))

    # -- the outbox pump -----------------------------------------------------------------

    async def _pump(self) -> None:
        """Send the outbox in order, one frame in flight per connection (PROTOCOL.md 7.3): what
        is queued meanwhile goes in the next frame, as a batch. API Gateway runs one connection's
        frames concurrently, so two sends in flight could be stored in either order.

        A frame goes on one connection only (its ``generation``): when the link drops, the next
        connection starts again from the oldest unacked message. A frame without an answer
        within ``SEND_REPLY_TIMEOUT_S`` is sent again (it is idempotent).
        """
        while True:
            await self._pump_wake.wait()
            self._pump_wake.clear()
            generation = self._ready_generation
            if not self.online or generation != self.connection.generation or self._in_flight:
                continue
            entries = self._next_batch()
            if not entries:
                continue
            number = self._send_number = next(self._sends)
            if len(entries) == 1:
                entry = entries[0]
                frame: dict = {"action": "sendMessage", "id": entry.id, "to": entry.to, "body": entry.body}
                self._in_flight_rid = None
            else:
                self._in_flight_rid = f"send-{number}"
                frame = {"action": "sendMessages", "rid": self._in_flight_rid,
                         "messages": [{"id": e.id, "to": e.to, "body": e.body} for e in entries]}  # fmt: skip
            self._in_flight = {e.id for e in entries}
            if not await self.connection.send(frame, generation=generation, cost=p.batch_cost(len(entries))):
                if self._send_number == number:
                    self._clear_in_flight()
                continue
            asyncio.get_running_loop().call_later(SEND_REPLY_TIMEOUT_S, self._no_reply, number, generation)

    def _no_reply(self, number: int, generation: int) -> None:
        """No answer to a send in time: send it again on the same connection (it is idempotent)."""
        if self._send_number == number and self._in_flight and self.connection is not None and self.connection.generation == generation:
            log.info("no answer to a send in %g s; sending it again", SEND_REPLY_TIMEOUT_S)
            self._send_answered()

    def _next_batch(self) -> list:
        """The oldest pending messages that fit one frame: at most 50 and 32 KiB."""
        batch, size = [], 0
        for entry in self.outbox.pending(limit=p.MAX_BATCH_MESSAGES):
            item = len(p.encode({"id": entry.id, "to": entry.to, "body": entry.body}).encode()) + 1
            if batch and size + item > MAX_BATCH_BYTES:
                break
            batch.append(entry)
            size += item
        return batch
