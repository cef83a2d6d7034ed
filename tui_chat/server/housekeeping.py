"""The self-hosted server's chores, run in the background once a minute: retention
(``serve --retention-days`` deletes messages older than that), forgetting nicknames
(``serve --auth open --forget-after`` removes a nickname, with its conversations, once it has been
gone that long), re-reading who exists (``tui-chat admin`` may have removed someone), and
deleting attachments no message holds any more (and uploads never attached, after a day)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from tui_chat.server.store import StoreUnavailable

if TYPE_CHECKING:
    from tui_chat.server.files import FileRoutes
    from tui_chat.server.stores.sqlite import SQLiteStore

log = logging.getLogger("tui_chat.server")

DAY_MS = 24 * 60 * 60 * 1000
MINUTE_MS = 60 * 1000
INTERVAL_S = 60.0
"""How often the chores run: ``--forget-after`` counts in minutes."""


class Housekeeper:
    def __init__(
        self,
        store: "SQLiteStore",
        clock: Callable[[], int],
        *,
        retention_days: int | None = None,
        forget_after_minutes: int | None = None,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.store = store
        self.clock = clock
        self.retention_days = retention_days
        self.forget_after_minutes = forget_after_minutes
        self.interval_s = interval_s
        self.files: FileRoutes | None = None
        """The server's attachments, when it takes them (set by the app that owns both)."""
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> tuple[int, list[str]]:
        """Do every chore once: how many messages were deleted, and which nicknames forgotten."""
        now = self.clock()
        await self.store.reload_usernames()
        purged = 0
        forgotten: list[str] = []
        if self.retention_days:
            purged = await self.store.purge_messages(now - self.retention_days * DAY_MS)
            if purged:
                log.info("retention: old messages deleted", extra={"count": purged, "days": self.retention_days})
        if self.forget_after_minutes:
            for name in await self.store.users_gone_since(now - self.forget_after_minutes * MINUTE_MS):
                if await self.store.delete_user(name):
                    forgotten.append(name)
            if forgotten:
                log.info("nicknames forgotten with their conversations", extra={"count": len(forgotten)})
        if self.files is not None:  # after the purges: the files they freed go now, not a minute later
            deleted = await self.files.delete_unheld(now)
            if deleted:
                log.info("attachments nobody holds deleted", extra={"count": deleted})
        return purged, forgotten

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except StoreUnavailable as exc:  # a full disk, say: try again next time
                log.warning("housekeeping skipped", extra={"reason": str(exc)})
            except Exception:
                log.exception("housekeeping failed")
            await asyncio.sleep(self.interval_s)
