"""The chat logic: one plain async handler per route, the seed design's Lambda functions.

The handlers know nothing of sockets, HTTP, SQLite or DynamoDB: they read and write through a
:class:`~tui_chat.server.store.Store` and reach connections through a :class:`Gateway`. The
self-hosted server (``local.py``) and the Lambda runtime (``aws.py``) both drive this class,
so a fix here is a fix everywhere.

The caller's identity always comes from the authenticated connection (:class:`Caller`), never
from the frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tui_chat import protocol as p
from tui_chat.server.files import FileLinks, FileRoutes
from tui_chat.server.store import ConnectionRecord, NotAMember, SaveResult, Store, StoreUnavailable, UnknownUser
from tui_chat.server.presence import PresenceHub
from tui_chat.server.rooms import NOT_A_MEMBER, RoomRoutes

log = logging.getLogger("tui_chat.core")

CONVERSATIONS_PAGE = 50
CLIENTS_PAGE = 100


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a frame: fixed when the connection was authenticated."""

    conn_id: str
    username: str
    device: str
    attempt: str | None = None
    """The handshake's ``attempt`` id (PROTOCOL.md 7.8), told to the connection it replaces."""
    base_url: str = ""
    """``http(s)://host:port`` as the handshake arrived: where this client reaches the server's
    own HTTP endpoints (attachments, PROTOCOL.md 7.7)."""


class Gateway(ABC):
    """How the core reaches connections: the socket table locally, ``@connections`` in AWS."""

    concurrent_sends: int = 0
    """How many sends of one fan-out may be in flight at once. 0: one after another (a send only
    queues the frame, as on the self-hosted server). A gateway whose send is a network request
    sets a bound: a room of 256 members on several devices each must not take one round trip per
    connection (at 10 ms a post, 2,900 of them would pass API Gateway's 29 s limit)."""

    @abstractmethod
    async def send(self, conn_id: str, text: str) -> bool:
        """Queue one encoded frame for a connection; False when the connection is gone."""

    @abstractmethod
    async def close(self, conn_id: str, code: int, reason: str = "") -> None:
        """Close a connection (no-op when it is already gone)."""


class ChatCore:
    def __init__(
        self, store: Store, gateway: Gateway, *, clock: Callable[[], int] = now_ms, coalesce_presence: bool = False,
        files: FileLinks | None = None, max_file_bytes: int = p.MAX_FILE_BYTES,
    ) -> None:  # fmt: skip
        """``coalesce_presence``: watchers get presence in batches (PROTOCOL.md 7.1; the
        self-hosted server, whose core lives as long as the process, not the Lambda's).
        ``files``: where attachments' bytes go (PROTOCOL.md 7.7); None: no attachments."""
        self.store = store
        self.gateway = gateway
        self.clock = clock
        self.presence = PresenceHub(store.presence_watchers, gateway.send, self.disconnect) if coalesce_presence else None
        self.rooms = RoomRoutes(self)
        self.files = FileRoutes(self, files, max_file_bytes=max_file_bytes)

    async def close(self) -> None:
        if self.presence is not None:
            await self.presence.close()

    # -- connection lifecycle ($connect / $disconnect) -------------------------------------

    async def connect(self, conn_id: str, username: str, device: str, attempt: str | None = None) -> None:
        """Register an authenticated connection; replace an older one of the same device.

        The user must exist: the runtime creates password-less users when it issues their
        token (open mode) or on their first Cognito sign-in.
        """
        result = await self.store.add_connection(ConnectionRecord(conn_id, username, device, self.clock()))
        if result.replaced is not None:
            old = result.replaced.conn_id
            await self.gateway.send(old, p.encode(p.event_to_wire(p.Replaced(attempt=attempt))))
            await self.gateway.close(old, p.CLOSE_REPLACED, "replaced by a newer connection")
        if result.first_for_user:
            await self._announce(username)

    async def disconnect(self, conn_id: str) -> None:
        result = await self.store.remove_connection(conn_id, self.clock())
        if result.connection is not None and result.last_for_user:
            await self._announce(result.connection.username)

    # -- frames ---------------------------------------------------------------------------

    async def handle_frame(self, caller: Caller, raw: str | bytes) -> None:
        """Parse and act on one frame; every failure becomes an ``error`` frame, never a crash."""
        try:
            action = p.parse_action(raw)
        except p.ProtocolError as exc:
            await self.reply(caller, exc.to_event())
            return
        await self.dispatch(caller, action)

    async def dispatch(self, caller: Caller, action: p.Action) -> None:
        msg_id = action.id if isinstance(action, p.SendMessage) else None
        try:
            await self._route(caller, action)
        except p.ProtocolError as exc:
            await self._error(caller, exc.code, exc.message, rid=action.rid, id=msg_id)
        except StoreUnavailable:
            log.error("store unavailable", extra={"action": action.action, "user": caller.username})
            await self._error(caller, p.INTERNAL, "the server cannot reach its store; try again", rid=action.rid, id=msg_id)
        except Exception:
            log.exception("handler failed", extra={"action": action.action, "user": caller.username})
            await self._error(caller, p.INTERNAL, "internal error", rid=action.rid, id=msg_id)

    async def _route(self, caller: Caller, action: p.Action) -> None:
        match action:
            case p.SendMessage():
                await self.send_message(caller, action)
            case p.SendMessages():
                await self.send_messages(caller, action)
            case p.GetMessages():
                await self.get_messages(caller, action)
            case p.GetConversations():
                await self.get_conversations(caller, action)
            case p.GetClients():
                await self.get_clients(caller, action)
            case p.SetStatus():
                await self.set_status(caller, action)
            case p.MarkRead():
                await self.mark_read(caller, action)
            case p.Typing():
                await self.typing(caller, action)
            case p.Ping():
                await self.reply(caller, p.Pong(rid=action.rid))
            case p.CreateRoom() | p.GetRoom() | p.Invite() | p.LeaveRoom() | p.RemoveMember() | p.SetRoomTitle() | p.GetReads():
                await self.rooms.handle(caller, action)
            case p.RequestUpload() | p.RequestDownload():
                await self.files.handle(caller, action)

    # -- routes ---------------------------------------------------------------------------

    async def send_message(self, caller: Caller, action: p.SendMessage) -> None:
        await self._require_address(caller, action.to)
        await self.files.check_attachment(caller, action.attachment, rid=action.rid, msg_id=action.id)
        saved = await self._save(caller, action.id, action.to, action.body, action.attachment)
        message = saved.message
        await self.reply(caller, p.Ack(id=message.id, message=message, rid=action.rid))
        if saved.created:  # a retry stores nothing: the recipients already have it
            await self._deliver(caller, message)

    async def send_messages(self, caller: Caller, action: p.SendMessages) -> None:
        """A batch (PROTOCOL.md 7.3): stored in the order given, one ``acks`` reply with what each
        message alone would have got; a refused one does not stop the rest."""
        entries: list[p.Ack | p.Error] = []
        created: list[p.Message] = []

        def refused(code: str, message: str, msg_id: str | None) -> None:
            entries.append(p.Error(code=code, message=message, id=msg_id))

        for item in action.items:
            if isinstance(item, p.ProtocolError):
                refused(item.code, item.message, item.id)
                continue
            try:
                await self._require_address(caller, item.to)
                await self.files.check_attachment(caller, item.attachment, rid=None, msg_id=item.id)
                saved = await self._save(caller, item.id, item.to, item.body, item.attachment)
            except p.ProtocolError as exc:
                refused(exc.code, exc.message, item.id)
                continue
            except StoreUnavailable:
                log.error("store unavailable", extra={"action": action.action, "user": caller.username})
                refused(p.INTERNAL, "the server cannot reach its store; try again", item.id)
                continue
            entries.append(p.Ack(id=item.id, message=saved.message))
            if saved.created:
                created.append(saved.message)
        await self.reply(caller, p.Acks(items=tuple(entries), rid=action.rid))
        for message in created:
            await self._deliver(caller, message)

    async def _save(self, caller: Caller, msg_id: str, to: str, body: str, attachment: p.Attachment | None = None) -> SaveResult:
        try:
            return await self.store.save_message(caller.username, msg_id, to, body, self.clock(), attachment)
        except NotAMember:  # left or removed since the check above
            raise p.ProtocolError(p.FORBIDDEN, NOT_A_MEMBER) from None
        except UnknownUser as gone:  # removed by an operator since the check above
            who = "your account" if str(gone) == caller.username else repr(str(gone))
            raise p.ProtocolError(p.UNKNOWN_USER, f"{who} no longer exists") from None

    async def _deliver(self, caller: Caller, message: p.Message) -> None:
        """A newly stored message to the recipient's connections and the sender's other ones."""
        frame = _text(p.MessageEvent(message))
        if p.is_room(message.to):  # every member's connections, the sender's other ones included
            room = await self.store.get_room(message.to)
            targets = await self.rooms.connections(room.members) if room is not None else set()
            targets.discard(caller.conn_id)
            await self.fan_out(targets, frame)
            return
        targets = {c.conn_id for c in await self.store.user_connections(message.to)}
        if message.to != caller.username:
            targets.update(c.conn_id for c in await self.store.user_connections(caller.username))
        targets.discard(caller.conn_id)
        await self.fan_out(targets, frame)

    async def get_messages(self, caller: Caller, action: p.GetMessages) -> None:
        await self._require_address(caller, action.with_)
        items, has_more = await self.store.get_messages(
            caller.username, action.with_, before=action.before, after=action.after, limit=action.limit
        )
        empty = p.Messages(with_=action.with_, items=(), has_more=has_more, rid=action.rid)
        kept = _fit(items, len(_text(empty).encode()), drop_from_start=action.after is None)
        await self.reply(caller, p.Messages(with_=action.with_, items=tuple(kept), has_more=has_more or len(kept) < len(items), rid=action.rid))

    async def get_conversations(self, caller: Caller, action: p.GetConversations) -> None:
        limit = CONVERSATIONS_PAGE
        while True:
            try:
                items, next_cursor = await self.store.list_conversations(caller.username, action.cursor, limit)
            except ValueError:
                raise p.ProtocolError(p.BAD_REQUEST, "'cursor' is not valid") from None
            reply = p.Conversations(items=tuple(items), next=next_cursor, rid=action.rid)
            # Each item may carry a 16 KiB body: ask for fewer until the reply fits.
            if limit == 1 or p.frame_size(_text(reply)) <= p.MAX_FRAME_BYTES:
                await self.reply(caller, reply)
                return
            limit //= 2

    async def get_clients(self, caller: Caller, action: p.GetClients) -> None:
        await self.store.watch_presence(caller.conn_id)
        users = await self.store.list_users(action.cursor, CLIENTS_PAGE + 1)
        page, more = users[:CLIENTS_PAGE], len(users) > CLIENTS_PAGE
        listed = []
        for user in page:
            online = bool(await self.store.user_connections(user.username))
            listed.append(p.ClientInfo(user.username, user.status if online else "offline", user.text, None if online else user.last_seen))
        await self.reply(caller, p.Clients(users=tuple(listed), next=page[-1].username if more else None, rid=action.rid))

    async def set_status(self, caller: Caller, action: p.SetStatus) -> None:
        user = await self.store.get_user(caller.username)
        if user is not None and (user.status, user.text) == (action.status, action.text):
            return  # nothing visible changed: no presence
        await self.store.set_status(caller.username, action.status, action.text)
        await self._announce(caller.username)

    async def mark_read(self, caller: Caller, action: p.MarkRead) -> None:
        await self._require_address(caller, action.with_)
        moved = await self.store.mark_read(caller.username, action.with_, action.seq)
        if moved is None:
            return
        me, other = caller.username, action.with_
        if p.is_room(other):  # every member's connections, the reader's included
            room = await self.store.get_room(other)
            members = room.members if room is not None else (me,)
            await self.fan_out(await self.rooms.connections(members), _text(p.Read(with_=other, by=me, seq=moved)))
            return
        await self.fan_out(await self.conn_ids(me), _text(p.Read(with_=other, by=me, seq=moved)))
        if other != me:
            await self.fan_out(await self.conn_ids(other), _text(p.Read(with_=me, by=me, seq=moved)))

    async def typing(self, caller: Caller, action: p.Typing) -> None:
        if p.is_room(action.to):  # the other members' connections, none of the typer's
            room = await self.rooms.member_room(caller.username, action.to)
            targets = await self.rooms.connections([m for m in room.members if m != caller.username])
            await self.fan_out(targets, _text(p.TypingEvent(sender=caller.username, room=action.to)))
            return
        await self._require_user(action.to)
        targets = await self.conn_ids(action.to)
        targets.discard(caller.conn_id)
        await self.fan_out(targets, _text(p.TypingEvent(sender=caller.username)))

    # -- helpers --------------------------------------------------------------------------

    async def _require_address(self, caller: Caller, address: str) -> None:
        """A user that exists, or a room the caller is a member of."""
        if p.is_room(address):
            await self.rooms.member_room(caller.username, address)
        else:
            await self._require_user(address)

    async def _require_user(self, username: str) -> None:
        if not await self.store.user_exists(username):
            raise p.ProtocolError(p.UNKNOWN_USER, f"no user named {username!r}")

    async def conn_ids(self, username: str) -> set[str]:
        return {c.conn_id for c in await self.store.user_connections(username)}

    async def _announce(self, username: str) -> None:
        """Send a user's visible presence to everyone watching it."""
        user = await self.store.get_user(username)
        if user is None:
            return
        online = bool(await self.store.user_connections(username))
        presence = p.PresenceEvent(username, user.status if online else "offline", user.text, None if online else user.last_seen)
        if self.presence is None:
            await self.fan_out(await self.store.presence_audience(username), _text(presence))
            return
        await self.fan_out(await self.conn_ids(username), _text(presence))  # the user's own devices: at once
        self.presence.publish(presence)

    async def reply(self, caller: Caller, event: p.Event) -> None:
        if not await self.gateway.send(caller.conn_id, _text(event)):
            await self.disconnect(caller.conn_id)

    async def _error(self, caller: Caller, code: str, message: str, *, rid: str | None, id: str | None) -> None:
        await self.reply(caller, p.Error(code=code, message=message, id=id, rid=rid))

    async def fan_out(self, conn_ids: Iterable[str], text: str) -> None:
        targets = list(conn_ids)
        bound = self.gateway.concurrent_sends
        if bound and len(targets) > 1:
            limit = asyncio.Semaphore(bound)

            async def send(cid: str) -> bool:
                async with limit:
                    return await self.gateway.send(cid, text)

            delivered = await asyncio.gather(*(send(cid) for cid in targets))
        else:
            delivered = [await self.gateway.send(cid, text) for cid in targets]
        for cid, ok in zip(targets, delivered):
            if not ok:  # a stale connection is removed, never the sender's
                await self.disconnect(cid)


def _text(event: p.Event) -> str:
    """An event as the frame sent for it: protocol's typed events are the only source of frames."""
    return p.encode(p.event_to_wire(event))


def _fit(items: list[p.Message], overhead: int, *, drop_from_start: bool) -> list[p.Message]:
    """Keep as many messages as fit in one server frame, dropping from the far end of the page."""
    budget = p.MAX_FRAME_BYTES - overhead
    order = reversed(items) if drop_from_start else iter(items)
    kept: list[p.Message] = []
    for item in order:
        size = len(p.encode(item.to_wire()).encode()) + 1  # +1 for the comma between items
        if size > budget:
            break
        budget -= size
        kept.append(item)
    return kept[::-1] if drop_from_start else kept
