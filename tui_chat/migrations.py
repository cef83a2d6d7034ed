"""The one way both databases (the server's SQLite store, the client's outbox and cache) change
their schema: ``PRAGMA user_version`` is the version, ``migrations[i]`` takes a database from
version i to i + 1 in one transaction, and a database newer than this code is refused rather
than misread."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence

log = logging.getLogger("tui_chat.migrations")

Migration = Callable[[sqlite3.Connection], None] | str
"""A function of the connection, or an SQL script (statements separated by ``;``)."""


class SchemaTooNew(RuntimeError):
    """The database was written by a newer tui-chat."""


def run_script(db: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, and a migration must stay one transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration], *, what: str = "the database") -> int:
    """Bring ``db`` (in autocommit mode) up to ``len(migrations)``; returns the version it had."""
    latest = len(migrations)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > latest:
        raise SchemaTooNew(f"{what} has schema version {version}, newer than this tui-chat understands ({latest}); upgrade tui-chat")
    for target in range(version + 1, latest + 1):
        step = migrations[target - 1]
        db.execute("BEGIN IMMEDIATE")
        try:
            run_script(db, step) if isinstance(step, str) else step(db)
            db.execute(f"PRAGMA user_version = {int(target)}")  # PRAGMA takes no parameters
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.info("database migrated", extra={"schema_version": target})
    return version
