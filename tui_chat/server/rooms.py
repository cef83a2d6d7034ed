"""The room actions of PROTOCOL.md 7.2 (``createRoom``, ``getRoom``, ``invite``, ``leaveRoom``,
``removeMember``, ``setRoomTitle``, ``getReads``) and who may take part in a room.

Every refusal to someone who is not a member is the same ``forbidden`` frame whether or not the
room exists, so room names cannot be probed; the one answer that reveals a name is ``conflict``
when creating a room that already exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui_chat import protocol as p
from tui_chat.server.store import RoomFull, RoomRecord

if TYPE_CHECKING:
    from tui_chat.server.core import Caller, ChatCore

NOT_A_MEMBER = "no such room, or you are not one of its members"


class RoomRoutes:
    def __init__(self, core: ChatCore) -> None:
        self.core = core
        self.store = core.store

    # -- membership -------------------------------------------------------------------------

    async def member_room(self, user: str, room: str) -> RoomRecord:
        """The room, when ``user`` is one of its members; else ``forbidden``."""
        record = await self.store.get_room(room)
        if record is None or user not in record.members:
            raise p.ProtocolError(p.FORBIDDEN, NOT_A_MEMBER)
        return record

    async def require_room_for(self, user: str, caller: Caller) -> None:
        """``too_large`` when ``user`` is in as many rooms as anyone may be (a bound on what one
        account can make the server keep; checked before the write, so a race can pass it by one)."""
        if await self.store.count_rooms(user) >= p.MAX_ROOMS_PER_USER:
            who = "you are" if user == caller.username else f"{user!r} is"
            raise p.ProtocolError(p.TOO_LARGE, f"{who} in {p.MAX_ROOMS_PER_USER} rooms, as many as one may be in")

    async def connections(self, users: tuple[str, ...] | list[str]) -> set[str]:
        targets: set[str] = set()
        for user in users:
            targets.update(await self.core.conn_ids(user))
        return targets

    # -- actions ----------------------------------------------------------------------------

    async def handle(self, caller: Caller, action: p.RoomAction) -> None:
        match action:
            case p.CreateRoom():
                await self.create(caller, action)
            case p.GetRoom():
                record = await self.member_room(caller.username, action.room)
                await self.core.reply(caller, _room_event(record, action.rid))
            case p.Invite():
                await self.invite(caller, action)
            case p.LeaveRoom():
                await self.leave(caller, action)
            case p.RemoveMember():
                await self.remove(caller, action)
            case p.SetRoomTitle():
                await self.member_room(caller.username, action.room)
                record = await self.store.set_room_title(action.room, action.title)
                if record is None:  # the last member left meanwhile
                    raise p.ProtocolError(p.FORBIDDEN, NOT_A_MEMBER)
                await self.tell_members(caller, record, action.rid)
            case p.GetReads():
                await self.member_room(caller.username, action.with_)
                reads = await self.store.get_reads(action.with_)
                await self.core.reply(caller, p.Reads(with_=action.with_, items=tuple(reads), rid=action.rid))

    async def create(self, caller: Caller, action: p.CreateRoom) -> None:
        for member in action.members:
            if not await self.store.user_exists(member):
                raise p.ProtocolError(p.UNKNOWN_USER, f"no user named {member!r}")
        for user in dict.fromkeys((caller.username, *action.members)):
            await self.require_room_for(user, caller)
        record = await self.store.create_room(action.room, caller.username, action.title, list(action.members), self.core.clock())
        if record is None:
            raise p.ProtocolError(p.CONFLICT, f"a room named {action.room!r} exists already")
        await self.core.reply(caller, _room_event(record, action.rid))
        others = await self.connections(record.members)
        others.discard(caller.conn_id)
        await self.core.fan_out(others, _text(_room_event(record, None)))

    async def invite(self, caller: Caller, action: p.Invite) -> None:
        current = await self.member_room(caller.username, action.room)
        if not await self.store.user_exists(action.user):
            raise p.ProtocolError(p.UNKNOWN_USER, f"no user named {action.user!r}")
        if action.user not in current.members:
            await self.require_room_for(action.user, caller)
        try:
            joined = await self.store.add_member(action.room, action.user, self.core.clock(), max_members=p.MAX_ROOM_MEMBERS)
        except RoomFull:
            raise p.ProtocolError(p.TOO_LARGE, f"a room has at most {p.MAX_ROOM_MEMBERS} members") from None
        if joined is None:
            raise p.ProtocolError(p.FORBIDDEN, NOT_A_MEMBER)
        record, added = joined
        if added:
            await self.tell_members(caller, record, action.rid)
        else:  # already a member: nothing changed, but the inviter hears how the room stands
            await self.core.reply(caller, _room_event(record, action.rid))

    async def leave(self, caller: Caller, action: p.LeaveRoom) -> None:
        await self.member_room(caller.username, action.room)
        departure = await self.store.remove_member(action.room, caller.username, self.core.clock())
        await self.tell_left(caller, caller.username, action.room, action.rid)
        if departure.room is not None:
            await self.core.fan_out(await self.connections(departure.room.members), _text(_room_event(departure.room, None)))

    async def remove(self, caller: Caller, action: p.RemoveMember) -> None:
        record = await self.member_room(caller.username, action.room)
        if record.owner != caller.username:
            raise p.ProtocolError(p.FORBIDDEN, "only the room's owner can remove members")
        if action.user == caller.username:
            raise p.ProtocolError(p.BAD_REQUEST, "the owner leaves the room (leaveRoom) rather than removing themself")
        departure = await self.store.remove_member(action.room, action.user, self.core.clock())
        if not departure.left or departure.room is None:
            await self.core.reply(caller, _room_event(departure.room or record, action.rid))  # not a member: no-op
            return
        await self.tell_left(caller, action.user, action.room, None)
        await self.tell_members(caller, departure.room, action.rid)

    # -- telling people ---------------------------------------------------------------------

    async def tell_members(self, caller: Caller, record: RoomRecord, rid: str | None) -> None:
        """The room as it now is to every member's connections; the acting one's copy has the rid."""
        targets = await self.connections(record.members)
        if caller.conn_id in targets:
            targets.discard(caller.conn_id)
            await self.core.reply(caller, _room_event(record, rid))
        await self.core.fan_out(targets, _text(_room_event(record, None)))

    async def tell_left(self, caller: Caller, user: str, room: str, rid: str | None) -> None:
        targets = await self.core.conn_ids(user)
        if caller.conn_id in targets:
            targets.discard(caller.conn_id)
            await self.core.reply(caller, p.Left(room=room, rid=rid))
        await self.core.fan_out(targets, _text(p.Left(room=room)))


def _room_event(record: RoomRecord, rid: str | None) -> p.RoomEvent:
    return p.RoomEvent(room=record.room, title=record.title, owner=record.owner, members=record.members, rid=rid)


def _text(event: p.Event) -> str:
    return p.encode(p.event_to_wire(event))
