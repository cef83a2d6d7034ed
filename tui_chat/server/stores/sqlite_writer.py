"""The SQLite store's one writer: a thread that owns the only writing connection and commits
what callers queue in groups.

Callers queue write jobs; the writer takes everything already queued (or, with a group-commit
window, whatever arrives within it), runs it in ONE ``BEGIN IMMEDIATE … COMMIT`` and resolves
each caller's future on its event loop. Each job runs in its own SAVEPOINT, so a job that fails on
its own (bad input) is rolled back alone and only its caller gets the exception; when the
database itself fails (disk full, I/O error) the whole batch is rolled back and every caller of
it gets :class:`StoreUnavailable`. Under load this batching is automatic: while one commit is
being fsynced the next batch queues up, so a hundred concurrent senders share one fsync.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tui_chat.server.store import StoreUnavailable
from tui_chat.server.stores.sqlite_schema import connect, migrate_store

log = logging.getLogger("tui_chat.store")


# SQLite result codes that mean "the database cannot be used right now", as opposed to one
# statement being wrong: they fail a whole batch.
_UNAVAILABLE_CODES = {
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PERM,
}  # fmt: skip


def is_unavailable(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and (code & 0xFF) in _UNAVAILABLE_CODES


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite may already have rolled back on its own after an I/O error


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    result: Any = None
    error: BaseException | None = None


_STOP = object()


def _settle(jobs: list[_Job]) -> None:
    """On the caller's event loop: hand each job's outcome to its awaiting caller."""
    for job in jobs:
        if job.future.cancelled():
            continue  # the caller gave up; the write itself stands (or failed) all the same
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


class GroupCommitWriter:
    """``window_s``: how long to wait for more jobs after the first one of a batch (0: take only
    what is already queued: no added latency when idle). ``max_batch`` bounds one transaction."""

    def __init__(self, path: str, *, window_s: float = 0.0, max_batch: int = 1000) -> None:
        self.path = path
        self.group_commit_window = max(0.0, window_s)
        self.max_batch = max(1, max_batch)
        self.commit_count = 0
        """Transactions committed (tests and benchmarks read it)."""
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Open and migrate the database on the writer's own thread; raises what that raised."""
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._write_loop, args=(ready,), name="sqlite-writer", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def stop(self) -> None:
        """Commit every queued job, then end the thread."""
        if self._thread is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(self._thread.join)

    async def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` on the writer's connection, inside the next group commit."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, loop.create_future())
        self._jobs.put(job)
        return await job.future

    def queued(self) -> int:
        return self._jobs.qsize()

    def _write_loop(self, ready: concurrent.futures.Future) -> None:
        try:
            db = connect(self.path, writer=True)
            try:
                migrate_store(db)
            except BaseException:
                db.close()
                raise
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                batch, stopping = self._take_batch()
                if batch:
                    self._run_batch(db, batch)
        finally:
            db.close()
            # Anything that raced in behind the stop marker is refused, never left waiting.
            leftovers = []
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not _STOP:
                    job.error = StoreUnavailable("the store is closed")
                    leftovers.append(job)
            self._settle_batch(leftovers)

    def _take_batch(self) -> tuple[list[_Job], bool]:
        """The next batch: the first job (waiting for it), then whatever else is queued."""
        first = self._jobs.get()
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.group_commit_window
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            batch.append(job)
        return batch, False

    def _run_batch(self, db: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            for job in batch:
                db.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(db)
                except Exception as exc:
                    if is_unavailable(exc):
                        raise  # the database is failing, not this job: fail the batch
                    db.execute("ROLLBACK TO job")  # undo this job alone
                    job.error = exc
                db.execute("RELEASE job")
            db.execute("COMMIT")
            self.commit_count += 1
        except Exception as exc:
            log.error("commit failed", extra={"error": str(exc), "jobs": len(batch)})
            _rollback(db)
            failure = StoreUnavailable(f"the database could not be written: {exc}")
            for job in batch:
                job.result, job.error = None, failure
        self._settle_batch(batch)

    @staticmethod
    def _settle_batch(batch: list[_Job]) -> None:
        # One wake-up per event loop, not one per job.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in batch:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, jobs)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting any more
