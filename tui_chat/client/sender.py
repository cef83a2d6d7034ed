"""The outbox pump: queued messages go out in order, one send frame in flight (PROTOCOL.md 7.3).

One job: turn the outbox into ``sendMessage``/``sendMessages`` frames and settle them from the
server's answers. API Gateway runs one connection's frames concurrently, so two sends in flight
could be stored in either order: what is queued while a frame is in flight goes in the next
one, as a batch (at most 50 messages and 32 KiB). A frame goes on one connection only (its
``generation``); when the link drops, the next connection starts again from the oldest unacked
message, once catch-up has finished on it. A frame without an answer within
``SEND_REPLY_TIMEOUT_S``, or answered by API Gateway's own error frame, is sent again (sends
are idempotent by id).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable

from tui_chat import protocol as p
from tui_chat.client.connection import Connection
from tui_chat.client.files import TransferFailed
from tui_chat.client.outbox import OutboxEntry
from tui_chat.client.timeline import Timeline

log = logging.getLogger("tui_chat.client")

SEND_REPLY_TIMEOUT_S = 10.0
"""A send frame without an answer this long is sent again (PROTOCOL.md 7.3)."""
MAX_BATCH_BYTES = p.MAX_ACTION_BYTES - 512
"""A batch's messages, leaving room for the frame's own fields under the 32 KiB limit."""
INTERNAL_ERROR_RETRY_S = 2.0
UPLOAD_RETRY_S = 2.0
"""After an upload was cut while the link stayed up (a stalled HTTP request, say)."""

Upload = Callable[[OutboxEntry, int], Awaitable[str]]
"""Puts an entry's file on the server over connection ``generation``; the ``fileId``. Raises
:class:`~tui_chat.client.files.TransferFailed`."""


class Sender:
    def __init__(self, connection: Connection, timeline: Timeline, upload: Upload | None = None) -> None:
        self.connection = connection
        self.timeline = timeline
        self.upload = upload
        """Puts a queued message's file on the server (PROTOCOL.md 7.7); its ``fileId``."""
        self.ready_generation = 0
        """The connection on which catch-up finished: the outbox flushes only on it."""
        self._in_flight: set[str] = set()
        """Ids in the one send frame in flight: nothing else is sent until it is answered."""
        self._in_flight_rid: str | None = None
        self._sends = itertools.count(1)
        self._send_number = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def synced(self) -> bool:
        """Catch-up has finished on the current connection (live messages may move sync marks)."""
        return self.ready_generation == self.connection.generation

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._pump(), name="tui-chat-outbox")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def wake(self) -> None:
        """Something was queued (or may be sendable again): look at the outbox."""
        self._wake.set()

    def ready(self, generation: int) -> None:
        """Catch-up finished on connection ``generation``: the outbox may flush on it."""
        self.ready_generation = generation
        self._wake.set()

    def link_lost(self) -> None:
        self._clear_in_flight()

    def take(self, event: p.Event) -> bool:
        """Settle the frame in flight from ``event``; False when the event is not about it."""
        match event:
            case p.Ack():
                self._acked(event)
            case p.Acks() if event.rid is not None and event.rid == self._in_flight_rid:
                for item in event.items:
                    self._acked(item) if isinstance(item, p.Ack) else self._refused(item)
                self._answered()
            case p.GatewayError() if self._in_flight:
                log.info("API Gateway did not hand on our send; sending it again")
                self._answered()
            case p.Error() if event.id is None and event.rid is not None and event.rid == self._in_flight_rid:
                self._batch_refused(event)
            case p.Error() if event.id is not None:
                self._refused(event)
            case _:
                return False
        return True

    # -- answers ---------------------------------------------------------------------------

    def _acked(self, ack: p.Ack) -> None:
        self._in_flight.discard(ack.id)
        if not self._in_flight:
            self._wake.set()  # the frame in flight is answered: the next may go
        self.timeline.acked(ack.message, synced=self.synced)

    def _refused(self, error: p.Error) -> None:
        entry = self.timeline.outbox.get(error.id)
        self._in_flight.discard(error.id)
        if not self._in_flight:
            self._wake.set()
        if entry is None:
            return
        if error.code == p.RATE_LIMITED:
            # Not stored. Wait as told; the pump then sends it again, still before the ones queued behind it.
            self.connection.pacer.hold((error.retry_after_ms or 1000) / 1000)
            self._wake.set()
        elif error.code in p.PERMANENT_SEND_ERRORS:
            self.timeline.failed(error.id, error.message or error.code)
        else:  # internal and unknown codes: the message stays queued and is sent again soon
            asyncio.get_running_loop().call_later(INTERNAL_ERROR_RETRY_S, self._wake.set)

    def _batch_refused(self, error: p.Error) -> None:
        """A whole batch was refused (nothing of it stored): wait as told, then send it again."""
        self._clear_in_flight()
        if error.code == p.RATE_LIMITED:
            self.connection.pacer.hold((error.retry_after_ms or 1000) / 1000)
            self._wake.set()
        else:
            log.warning("a batch was refused: %s %s", error.code, error.message)
            asyncio.get_running_loop().call_later(INTERNAL_ERROR_RETRY_S, self._wake.set)

    def _answered(self) -> None:
        """The frame in flight is answered (or given up on): the next one may go."""
        self._clear_in_flight()
        self._wake.set()

    def _clear_in_flight(self) -> None:
        self._in_flight.clear()
        self._in_flight_rid = None

    # -- the pump --------------------------------------------------------------------------

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            generation = self.ready_generation
            if not self.connection.online or generation != self.connection.generation or self._in_flight:
                continue
            entries = self._next_batch()
            if not entries:
                continue
            first = entries[0]
            if first.attachment is not None and first.attachment.file_id is None:
                await self._upload(first, generation)  # its file first; the pump comes back for the message
                continue
            number = self._send_number = next(self._sends)
            messages = tuple(
                p.SendMessage(id=e.id, to=e.to, body=e.body, attachment=e.attachment.attachment() if e.attachment else None)
                for e in entries
            )  # fmt: skip
            if len(messages) == 1:
                self._in_flight_rid = None
                action: p.Action = messages[0]
            else:
                self._in_flight_rid = f"send-{number}"
                action = p.SendMessages(items=messages, rid=self._in_flight_rid)
            self._in_flight = {e.id for e in entries}
            if not await self.connection.send(action, generation=generation):
                if self._send_number == number:
                    self._clear_in_flight()
                continue
            asyncio.get_running_loop().call_later(SEND_REPLY_TIMEOUT_S, self._no_reply, number, generation)

    def _no_reply(self, number: int, generation: int) -> None:
        """No answer to a send in time: send it again on the same connection (it is idempotent)."""
        if self._send_number == number and self._in_flight and self.connection.generation == generation:
            log.info("no answer to a send in %g s; sending it again", SEND_REPLY_TIMEOUT_S)
            self._answered()

    async def _upload(self, entry: OutboxEntry, generation: int) -> None:
        """Put ``entry``'s file on the server. Cut or refused for now: tried again (a new link
        each time) once the link is back, or after a pause; refused for good: the message fails."""
        try:
            file_id = await self.upload(entry, generation)
        except TransferFailed as exc:
            if exc.permanent:
                self.timeline.failed(entry.id, str(exc))
                self._wake.set()
            else:
                log.info("an upload did not complete; trying again: %s", exc)
                asyncio.get_running_loop().call_later(UPLOAD_RETRY_S, self._wake.set)
            return
        self.timeline.file_uploaded(entry.id, file_id)
        self._wake.set()

    def _next_batch(self) -> list[OutboxEntry]:
        """The oldest pending messages that fit one frame: at most 50 and 32 KiB, and none after
        one whose file is not on the server yet (it goes up first, in its turn)."""
        batch: list[OutboxEntry] = []
        size = 0
        for entry in self.timeline.outbox.pending(limit=p.MAX_BATCH_MESSAGES):
            if batch and entry.attachment is not None and entry.attachment.file_id is None:
                break
            item = len(p.encode({"id": entry.id, "to": entry.to, "body": entry.body}).encode()) + 1
            if entry.attachment is not None:
                item += len(entry.attachment.name.encode()) + len(entry.attachment.type.encode()) + 120
            if batch and size + item > MAX_BATCH_BYTES:
                break
            batch.append(entry)
            size += item
        return batch
