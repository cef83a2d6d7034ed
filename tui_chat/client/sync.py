"""Catching up with the server after every (re)connect, and paging older history.

One job: make the cache hold, without holes or duplicates, everything the server has from the
last seq known complete on (``getConversations``, then ``getMessages`` with ``after`` until
``hasMore`` is false). A conversation never seen before starts from its newest page; older
pages come with :meth:`Sync.older`. Read marks made here while offline are sent on.

Rooms (PROTOCOL.md 7.2) are caught up like direct conversations, and then described again
(``getRoom``), since members may have come and gone while this device was away; a room no
longer listed was left (or this user was removed) meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

from tui_chat import protocol as p
from tui_chat.client.requests import RequestFailed, Requests
from tui_chat.client.timeline import Timeline


class Sync:
    def __init__(self, requests: Requests, timeline: Timeline, room_gone: Callable[[str], None]) -> None:
        self.requests = requests
        self.timeline = timeline
        self.room_gone = room_gone
        """Called for a room this user turns out to be no longer in."""

    async def users(self, generation: int) -> list[p.ClientInfo]:
        """Everyone the server knows, with their statuses (all pages)."""
        found: list[p.ClientInfo] = []
        cursor = None
        while True:
            reply = await self.requests.ask(generation, p.GetClients(cursor=cursor), p.Clients)
            found.extend(reply.users)
            cursor = reply.next
            if cursor is None:
                return found

    async def conversations(self, generation: int) -> None:
        """Every conversation brought up to date with the server's."""
        cache = self.timeline.cache
        cursor = None
        rooms: list[str] = []
        listed_from = self.timeline.rooms.stamp()
        while True:
            reply = await self.requests.ask(generation, p.GetConversations(cursor=cursor), p.Conversations)
            for summary in reply.items:
                peer = summary.with_
                if p.is_room(peer):
                    rooms.append(peer)
                self.timeline.summary(summary)
                if summary.last_seq > cache.synced_seq(peer):
                    if cache.synced_seq(peer) == 0:
                        await self._fetch_newest(generation, peer)
                    else:
                        await self._fetch_after(generation, peer)
                    # Counted again with what was fetched: messages stored after the server's
                    # snapshot came in those pages, before their live events (which then count
                    # nothing, being held already), and are unread all the same.
                    cache.apply_summary(summary)
                await self._send_read_marker(generation, peer, summary.read_seq)
                self.timeline.announce(peer)
            cursor = reply.next
            if cursor is None:
                break
        await self._rooms(generation, rooms, listed_from)

    async def _rooms(self, generation: int, listed: list[str], listed_from: int) -> None:
        """Every room listed, described as it is now; rooms held here but not listed are gone,
        unless the server described them while it was listing (a room joined meanwhile)."""
        directory = self.timeline.rooms
        for room in [r.name for r in directory.all() if r.name not in listed]:
            if not directory.described_since(room, listed_from):
                self.room_gone(room)
        for room in listed:
            if not await self.describe_room(generation, room):
                continue
            if room in directory.watched():
                await self.reads(generation, room)

    async def describe_room(self, generation: int, room: str) -> bool:
        """Ask how ``room`` is now (the reply is applied as it arrives, like every ``room`` event);
        False when this user is not in it (any more)."""
        try:
            await self.requests.ask(generation, p.GetRoom(room=room), p.RoomEvent)
        except RequestFailed as exc:
            if exc.code != p.FORBIDDEN:
                raise
            self.room_gone(room)
            return False
        return True

    async def joined(self, generation: int, room: str) -> None:
        """A room this user was just added to: its history so far (a member sees it all)."""
        cache = self.timeline.cache
        if cache.synced_seq(room) == 0:
            await self._fetch_newest(generation, room)
        cache.recount_unread(room)
        self.timeline.announce(room)

    async def reads(self, generation: int, room: str) -> None:
        """Every member's read mark in ``room``; followed live from then on."""
        reply = await self.requests.ask(generation, p.GetReads(with_=room), p.Reads)
        self.timeline.room_reads(room, reply.items)

    async def older(self, peer: str, limit: int = 100) -> int:
        """Fetch the page before the oldest cached message (the newest page when none is
        cached); how many rows were added, 0 at the beginning. Raises ``ConnectionError``
        when the link drops or the server refuses."""
        cache = self.timeline.cache
        if cache.is_complete(peer):
            return 0
        oldest = cache.oldest_seq(peer)
        if oldest is not None and oldest <= 1:
            cache.set_complete(peer)
            return 0
        try:
            reply = await self.requests.ask(self.requests.connection.generation, p.GetMessages(with_=peer, before=oldest, limit=limit), p.Messages)
        except RequestFailed as exc:
            raise ConnectionError(str(exc)) from None
        new = self.timeline.store(peer, reply.items, older=True)
        if not reply.has_more:
            cache.set_complete(peer)
        return len(new)

    async def _fetch_after(self, generation: int, peer: str) -> None:
        """Everything after the last seq known complete, page by page."""
        after = self.timeline.cache.synced_seq(peer)
        while True:
            reply = await self.requests.ask(generation, p.GetMessages(with_=peer, after=after, limit=p.MAX_PAGE_LIMIT), p.Messages)
            self.timeline.store(peer, reply.items)
            if reply.items:
                after = reply.items[-1].seq
                self.timeline.cache.mark_synced(peer, after)
            if not reply.has_more or not reply.items:
                return

    async def _fetch_newest(self, generation: int, peer: str) -> None:
        """A conversation never synced: its newest page, then older pages only as far down as
        messages already held (loaded earlier), so that what is cached has no hole."""
        cache = self.timeline.cache
        action = p.GetMessages(with_=peer, limit=p.MAX_PAGE_LIMIT)
        reply = await self.requests.ask(generation, action, p.Messages)
        self.timeline.store(peer, reply.items)
        if not reply.items:
            return
        cache.mark_synced(peer, reply.items[-1].seq)
        first = reply.items[0].seq
        held_below = cache.highest_seq_below(peer, first)
        while reply.has_more and held_below is not None and first > held_below:
            reply = await self.requests.ask(generation, p.GetMessages(with_=peer, before=first, limit=p.MAX_PAGE_LIMIT), p.Messages)
            self.timeline.store(peer, reply.items)
            if not reply.items:
                break
            first = reply.items[0].seq
        if not reply.has_more:
            cache.set_complete(peer)

    async def _send_read_marker(self, generation: int, peer: str, server_read_seq: int) -> None:
        """A conversation read here while offline: tell the server now."""
        record = self.timeline.cache.conversation(peer)
        if record is not None and record.read_seq > server_read_seq:
            self.timeline.cache.recount_unread(peer)
            await self.requests.connection.send(p.MarkRead(with_=peer, seq=record.read_seq), generation=generation)
