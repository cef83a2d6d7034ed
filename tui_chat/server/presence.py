"""Presence for the self-hosted server, coalesced (PROTOCOL.md 7.1).

A user coming online or going offline concerns every connection watching the user list. Sent
one by one, a storm of N arrivals (an office's Wi-Fi coming back) costs N frames per watcher,
N² in all. Here changes are collected for ``WINDOW_S``: each watcher gets at most one frame per
window, holding the latest state of every user that changed (``presence`` for one, ``presences``
for several, split where a frame would pass 128 KiB). The first change after a quiet window goes
at once, so a single arrival is not delayed. Each frame is encoded once for all watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from tui_chat import protocol as p

WINDOW_S = 0.25


class PresenceHub:
    def __init__(
        self,
        watchers: Callable[[], Awaitable[list[str]]],
        send: Callable[[str, str], Awaitable[bool]],
        gone: Callable[[str], Awaitable[None]],
        *,
        window_s: float = WINDOW_S,
    ) -> None:
        """``watchers()`` lists the connections to tell; ``send(conn_id, text)`` queues a frame
        (False when the connection is gone, which ``gone(conn_id)`` then cleans up)."""
        self._watchers = watchers
        self._send = send
        self._gone = gone
        self.window_s = window_s
        self._pending: dict[str, p.PresenceEvent] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.frames_sent = 0
        """Frames pushed to watchers so far (tests and benchmarks read it)."""

    def publish(self, presence: p.PresenceEvent) -> None:
        """Queue a user's new state for every watcher; a newer one replaces it if still queued."""
        self._pending.pop(presence.user, None)  # re-inserted last: the frame lists changes in order
        self._pending[presence.user] = presence
        self._wake.set()
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="presence")

    async def close(self) -> None:
        self._closed = True  # the server is stopping: the sockets are closed already
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self.window_s)  # at most one frame (batch) per window

    async def flush(self) -> None:
        """Send what is queued now (also called directly by tests)."""
        if not self._pending:
            return
        states = list(self._pending.values())
        self._pending.clear()
        frames = _frames(states)
        gone = []
        for conn_id in await self._watchers():
            for text in frames:
                if not await self._send(conn_id, text):
                    gone.append(conn_id)
                    break
                self.frames_sent += 1
        for conn_id in gone:
            await self._gone(conn_id)


def _frames(states: list[p.PresenceEvent]) -> list[str]:
    """The states as ``presence`` (one) or ``presences`` frames of at most 128 KiB each."""
    if len(states) == 1:
        return [p.encode(p.event_to_wire(states[0]))]
    budget = p.MAX_FRAME_BYTES - 64  # the envelope: {"type": "presences", "items": [...]}
    frames, batch, size = [], [], 0
    for state in states:
        item = len(p.encode(p.event_to_wire(state)).encode()) + 2
        if batch and size + item > budget:
            frames.append(p.Presences(items=tuple(batch)))
            batch, size = [], 0
        batch.append(state)
        size += item
    frames.append(p.Presences(items=tuple(batch)))
    return [p.encode(p.event_to_wire(frame)) for frame in frames]
