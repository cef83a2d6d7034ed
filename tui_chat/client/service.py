"""The client service: one connection, the outbox, the cache and the model, behind one facade.

A UI (or a script, or a test) owns a :class:`ChatClient`, calls its methods and reads
``events()``; nothing here imports Textual. Guarantees:

- ``send`` writes the message to the outbox before anything else; it leaves the outbox only
  when the server acks it. After every reconnect everything unacked is resent in order with
  the same id, so the server stores it exactly once.
- After every (re)connect the history is caught up from the last seq known to be complete
  (``getConversations``, then ``getMessages`` with ``after`` until ``hasMore`` is false).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from tui_chat import cognito_auth
from tui_chat import protocol as p
from tui_chat.client.auth import AuthClient, ServerInfo, SignInError, Tokens, TokenVault, device_id, ws_url
from tui_chat.client.cache import Cache
from tui_chat.client.connection import ONLINE, Connection, LinkState, NeedsSignIn
from tui_chat.client.localdb import account_db_path, open_db
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
from tui_chat.ratelimit import TokenBucket

log = logging.getLogger("tui_chat.client")

TYPING_SHOWN_S = 6.0
REQUEST_TIMEOUT_S = 15.0
# Stay a little under the server's limit (100/s, bursts of 500) so sends are never refused.
SEND_RATE_PER_S = 95
SEND_BURST = 450


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_message_id() -> str:
    return uuid.uuid4().hex


class SendRefused(ValueError):
    """A message that can never be sent (empty, too long, control characters): not queued."""


class ChatClient:
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
        self.vault = vault or TokenVault(server_url)
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
        self._events: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._replies: dict[str, asyncio.Future] = {}
        self._rids = itertools.count(1)
        self._in_flight: set[str] = set()
        self._pump_wake = asyncio.Event()
        self._pump_task: asyncio.Task | None = None
        self._caught_up = False
        self._typing_timers: dict[str, asyncio.TimerHandle] = {}
        self._bucket = TokenBucket(SEND_RATE_PER_S, SEND_BURST)

    # -- signing in ----------------------------------------------------------------------

    async def discover(self) -> ServerInfo:
        if self.cognito is not None:
            self.info = ServerInfo(auth="cognito", signup=False, cognito=self.cognito)
        else:
            self.info = await self.auth.info()
        return self.info

    async def sign_in(self, username: str, password: str = "", *, create: bool = False) -> None:
        """Sign in (or sign up with ``create``); open mode needs only the nickname."""
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
        """Sign in with the refresh token kept from last time; False when there is none or it expired."""
        saved = self.vault.load(username)
        self._notice_vault()
        if not saved:
            return False
        try:
            tokens = await self._refresh_tokens(saved, username)
        except SignInError as exc:
            if exc.kind == "expired":
                self.vault.forget(username)
            return False
        self._signed_in(tokens)
        return True

    def _signed_in(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self.vault.save(tokens.user, tokens.refresh)
        self._notice_vault()
        if self.me != tokens.user:
            self.me = tokens.user
            db = open_db(account_db_path(self.server_url, tokens.user) if self.data_folder is None
                         else self.data_folder / "accounts" / tokens.user / "client.db")  # fmt: skip
            self.outbox = Outbox(db)
            self.cache = Cache(db, tokens.user)

    def _notice_vault(self) -> None:
        if self.vault.warning and not getattr(self, "_vault_noticed", False):
            self._vault_noticed = True
            self._emit(Notice(self.vault.warning))

    async def _refresh(self) -> None:
        assert self.tokens is not None
        try:
            self._signed_in(await self._refresh_tokens(self.tokens.refresh, self.tokens.user))
        except SignInError as exc:
            if exc.kind == "expired":
                self.vault.forget(self.tokens.user)
                raise NeedsSignIn(exc.message) from None
            raise

    async def sign_out(self) -> None:
        await self.stop()
        if self.me:
            self.vault.forget(self.me)

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        if self.tokens is None:
            raise RuntimeError("sign in first")
        if self.connection is None:
            self.connection = Connection(
                ws_url(self.server_url), self.device,
                token=lambda: self.tokens.access, refresh=self._refresh,
                on_event=self._on_event, on_state=self._on_link_state, on_open=self._on_open,
                **self.connection_options,
            )  # fmt: skip
        self.connection.start()
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.create_task(self._pump(), name="tui-chat-outbox")

    async def stop(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            self._pump_task = None
        if self.connection is not None:
            await self.connection.stop()

    async def events(self) -> AsyncIterator[ClientEvent]:
        while True:
            yield await self._events.get()

    def _emit(self, event: ClientEvent) -> None:
        self._events.put_nowait(event)

    @property
    def online(self) -> bool:
        return self.connection is not None and self.connection.online

    @property
    def queued(self) -> int:
        return len(self.outbox) if self.outbox is not None else 0

    # -- what the UI reads ---------------------------------------------------------------

    def conversation(self, peer: str) -> Conversation:
        record = self.cache.conversation(peer) if self.cache else None
        last = self.cache.last_message(peer) if self.cache else None
        if record is None:
            return Conversation(peer)
        return Conversation(
            peer, unread=record.unread, read_seq=record.read_seq, peer_read_seq=record.peer_read_seq,
            last_seq=record.last_seq, last_ts=last.ts if last else 0, last_body=last.body if last else "",
        )  # fmt: skip

    def conversations(self) -> list[Conversation]:
        if self.cache is None:
            return []
        return [self.conversation(c.peer) for c in self.cache.conversations()]

    def timeline_length(self, peer: str) -> int:
        if self.cache is None or self.outbox is None:
            return 0
        return self.cache.count(peer) + len(self.outbox.for_peer(peer))

    def timeline_slice(self, peer: str, start: int, stop: int) -> list[TimelineItem]:
        """Rows ``[start:stop]``: acked messages by seq, then this device's pending and failed ones."""
        if self.cache is None or self.outbox is None:
            return []
        acked = self.cache.count(peer)
        peer_read = self.cache.conversation(peer).peer_read_seq if self.cache.conversation(peer) else 0
        rows: list[TimelineItem] = []
        if start < acked:
            for m in self.cache.slice(peer, start, min(stop, acked)):
                state = "read" if m.sender == self.me and m.seq <= peer_read and peer != self.me else "sent"
                rows.append(TimelineItem(m.id, m.sender, m.to, m.body, m.ts, m.seq, state))
        if stop > acked:
            for entry in self.outbox.for_peer(peer)[max(0, start - acked) : stop - acked]:
                rows.append(TimelineItem(entry.id, self.me, entry.to, entry.body, entry.created_ts, None, entry.state, entry.error))
        return rows

    def timeline(self, peer: str) -> list[TimelineItem]:
        return self.timeline_slice(peer, 0, self.timeline_length(peer))

    # -- what the UI does ----------------------------------------------------------------

    def send(self, to: str, body: str) -> str:
        """Queue a message (durably) and send it when possible; returns its id."""
        problem = p.body_problem(body)
        if problem:
            raise SendRefused(problem)
        try:
            to = p.normalize_username(to)
        except ValueError as exc:
            raise SendRefused(str(exc)) from None
        assert self.outbox is not None, "sign in first"
        msg_id = self.new_id()
        self.outbox.add(msg_id, to, body, self.clock())
        self._emit(TimelineChanged(to, appended=1))
        self._emit_connection()
        self._pump_wake.set()
        return msg_id

    def retry(self, msg_id: str) -> bool:
        entry = self.outbox.get(msg_id) if self.outbox is not None else None
        if entry is None or not self.outbox.retry(msg_id):
            return False
        self._emit(TimelineChanged(entry.to))
        self._pump_wake.set()
        return True

    def discard(self, msg_id: str) -> bool:
        entry = self.outbox.get(msg_id) if self.outbox is not None else None
        if entry is None or not self.outbox.discard(msg_id):
            return False
        self._emit(TimelineChanged(entry.to))
        return True

    def has_older(self, peer: str) -> bool:
        """Whether the server may hold messages older than the cached ones."""
        if self.cache is None:
            return False
        oldest = self.cache.oldest_seq(peer)
        return oldest is not None and oldest > 1

    async def load_older(self, peer: str, limit: int = 100) -> int:
        """Fetch the page before the oldest cached message; returns how many were new."""
        if self.cache is None or not self.online:
            return 0
        oldest = self.cache.oldest_seq(peer)
        if oldest is not None and oldest <= 1:
            return 0
        frame = {"action": "getMessages", "with": peer, "limit": limit}
        if oldest is not None:
            frame["before"] = oldest
        reply = await self._request(frame)
        new = self.cache.add(reply.items) if isinstance(reply, p.Messages) else []
        if new:
            self._emit(TimelineChanged(peer, prepended=len(new)))
        return len(new)

    async def mark_read(self, peer: str) -> None:
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
        if self.connection is not None:
            await self.connection.send({"action": "setStatus", "status": status, "text": text})

    async def typing(self, to: str) -> None:
        if self.connection is not None:
            await self.connection.send({"action": "typing", "to": to})

    def reconnect_now(self) -> None:
        if self.connection is not None:
            self.connection.reconnect_now()

    # -- the connection's callbacks ------------------------------------------------------

    def _on_link_state(self, state: LinkState) -> None:
        if state.kind != ONLINE:
            self._caught_up = False
            self._in_flight.clear()
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(ConnectionError("the connection was lost"))
            self._replies.clear()
        self._link = state
        self._emit_connection()

    def _emit_connection(self) -> None:
        state = getattr(self, "_link", LinkState("offline"))
        self._emit(ConnectionChanged(state.kind, state.retry_in, self.queued, state.detail))

    async def _on_open(self) -> None:
        """Catch up, then let the outbox flush. Runs beside the reader, so replies can arrive."""
        try:
            await self._load_users()
            await self._catch_up()
        except ConnectionError:
            return
        except asyncio.TimeoutError:
            log.warning("catch-up timed out")
            return
        self._caught_up = True
        self._pump_wake.set()

    async def _load_users(self) -> None:
        cursor = None
        while True:
            reply = await self._request({"action": "getClients", **({"cursor": cursor} if cursor else {})})
            if not isinstance(reply, p.Clients):
                return
            for info in reply.users:
                self.users[info.user] = User(info.user, info.status, info.text, info.last_seen)
            cursor = reply.next
            if cursor is None:
                break
        self._emit(UsersLoaded())

    async def _catch_up(self) -> None:
        cursor = None
        while True:
            reply = await self._request({"action": "getConversations", **({"cursor": cursor} if cursor else {})})
            if not isinstance(reply, p.Conversations):
                return
            for summary in reply.items:
                self.cache.apply_summary(summary)
                if summary.last_seq > self.cache.synced_seq(summary.with_):
                    await self._fetch_after(summary.with_)
                self._emit(ConversationChanged(self.conversation(summary.with_)))
            cursor = reply.next
            if cursor is None:
                return

    async def _fetch_after(self, peer: str) -> None:
        after = self.cache.synced_seq(peer)
        while True:
            reply = await self._request({"action": "getMessages", "with": peer, "after": after, "limit": p.MAX_PAGE_LIMIT})
            if not isinstance(reply, p.Messages):
                return
            new = self.cache.add(reply.items)
            if reply.items:
                after = reply.items[-1].seq
                self.cache.mark_synced(peer, after)
            if new:
                self._emit(self._timeline_grew(peer, len(new)))
            if not reply.has_more:
                return

    async def _request(self, frame: dict) -> p.Event:
        rid = f"c{next(self._rids)}"
        future = asyncio.get_running_loop().create_future()
        self._replies[rid] = future
        if not await self.connection.send({**frame, "rid": rid}):
            self._replies.pop(rid, None)
            raise ConnectionError("not connected")
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        finally:
            self._replies.pop(rid, None)

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
            case p.MessageEvent():
                self._on_message(event.message)
            case p.PresenceEvent():
                user = User(event.user, event.status, event.text, event.last_seen)
                self.users[event.user] = user
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
        self.outbox.acked(ack.id)
        self.cache.add([message])
        self.cache.set_read(peer, mine=message.seq)  # sending reads the conversation
        if self._caught_up:
            self.cache.mark_synced(peer, message.seq)
        self._emit(TimelineChanged(peer))
        self._emit(ConversationChanged(self.conversation(peer)))
        self._emit_connection()

    def _on_message(self, message: p.Message) -> None:
        peer = message.other(self.me)
        new = self.cache.add([message])
        if self._caught_up:
            self.cache.mark_synced(peer, message.seq)
        if not new:
            return
        if message.sender != self.me:
            self.cache.bump_unread(peer)
            self._clear_typing(message.sender)
            self._emit(MessageReceived(peer, message.sender, message.body))
        self._emit(self._timeline_grew(peer, 1))
        self._emit(ConversationChanged(self.conversation(peer)))

    def _timeline_grew(self, peer: str, count: int) -> TimelineChanged:
        """Acked messages go before this device's queued ones: only then is it a plain append."""
        return TimelineChanged(peer, appended=0 if self.outbox.for_peer(peer) else count)

    def _on_error(self, error: p.Error) -> None:
        if error.id is None or self.outbox is None:
            log.info("server error: %s %s", error.code, error.message)
            return
        entry = self.outbox.get(error.id)
        self._in_flight.discard(error.id)
        if entry is None:
            return
        if error.code == p.RATE_LIMITED:
            delay = (error.retry_after_ms or 1000) / 1000
            asyncio.get_running_loop().call_later(delay, self._pump_wake.set)
        elif error.code in p.PERMANENT_SEND_ERRORS:
            self.outbox.fail(error.id, error.message or error.code)
            self._emit(TimelineChanged(entry.to))
            self._emit_connection()
        # internal and unknown codes: the message stays queued and is resent on the next pass

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
        """Send every queued message not yet in flight on this connection, in order."""
        while True:
            await self._pump_wake.wait()
            self._pump_wake.clear()
            if not (self.online and self._caught_up):
                continue
            for entry in self.outbox.pending():
                if entry.id in self._in_flight:
                    continue
                while wait_ms := self._bucket.take():
                    await asyncio.sleep(wait_ms / 1000)
                if not (self.online and self._caught_up):
                    break
                self._in_flight.add(entry.id)
                if not await self.connection.send({"action": "sendMessage", "id": entry.id, "to": entry.to, "body": entry.body}):
                    self._in_flight.discard(entry.id)
                    break
