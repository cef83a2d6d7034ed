"""``tui-chat admin``: run a members-only server. Works on the server's SQLite database, also
while the server runs (SQLite serialises the writes, and the server reads what it checks from the
database: sign-ins, refreshes and handshakes see a change at once, and so does every message,
which checks both its users exist where it is written).

- ``add-user NAME``: create an account (the password is asked twice, or read from standard
  input with ``--password-stdin``); with ``serve --no-signup`` this is how members get in.
- ``reset-password NAME``: a new password; every session of theirs ends.
- ``remove-user NAME``: the account, its sessions and every conversation it was in.
- ``list``: the members (accounts and nicknames), when they were created and last seen, and
  how many sessions each has.
- ``revoke-sessions NAME``: sign them out everywhere (open connections end when they drop).
- ``backup FILE``: a consistent copy of the live database (SQLite's online backup).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from tui_chat import protocol as p

EXIT_CODES = "exit status: 0 done; 1 it could not be done (no such user, name taken, no database, no password given, not confirmed); 2 bad flags or a name that is not a username"


def add_admin_parser(commands: argparse._SubParsersAction, db_option) -> argparse.ArgumentParser:
    """``db_option(group, flag, **options)`` adds ``--db`` as ``serve`` has it (same variable)."""
    admin = commands.add_parser(
        "admin", help="manage the accounts of a self-hosted server",
        description="Manage the accounts of a self-hosted server: works on its database, also while it runs.",
        epilog=EXIT_CODES,
    )  # fmt: skip
    db_help = "the server's SQLite database (default: server.db in the user data folder, as for serve)"
    db_option(admin, "--db", type=Path, default=None, help=db_help)
    tasks = admin.add_subparsers(dest="task", metavar="TASK", required=True)
    # ``--db`` may also come after the task (``admin list --db x.db``), as after ``serve``.
    task_options = argparse.ArgumentParser(add_help=False)
    task_options.add_argument("--db", type=Path, default=argparse.SUPPRESS, help=db_help)
    add = tasks.add_parser("add-user", parents=[task_options], help="create an account (members-only servers: serve --no-signup)")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input (for scripts)")
    reset = tasks.add_parser("reset-password", parents=[task_options], help="set a new password; every session of the user ends")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input")
    remove = tasks.add_parser("remove-user", parents=[task_options], help="remove a user, their sessions and every conversation they were in")
    remove.add_argument("name")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    tasks.add_parser("list", parents=[task_options], help="the members: accounts and nicknames, created, last seen, sessions")
    revoke = tasks.add_parser("revoke-sessions", parents=[task_options], help="sign a user out on every device")
    revoke.add_argument("name")
    backup = tasks.add_parser("backup", parents=[task_options], help="copy the live database to FILE (a consistent snapshot; FILE must not exist)")
    backup.add_argument("file", type=Path)
    return admin


def run_admin(args: argparse.Namespace) -> int:
    from tui_chat.paths import NotADatabase, check_database
    from tui_chat.server.settings import Settings

    db_path = Settings(db=args.db).db_path
    if not db_path.exists():
        return _fail(f"no database at {db_path} (start tui-chat serve once, or give --db)")
    try:
        check_database(db_path, must_exist=True)  # never turns a wrong file into a database
    except NotADatabase as exc:
        return _fail(str(exc))
    name = None
    if getattr(args, "name", None) is not None:
        try:
            name = p.normalize_username(args.name)
        except ValueError as exc:
            return _fail(f"{args.name!r} is not a username: {exc}", status=2)
    password = None
    if args.task in ("add-user", "reset-password"):
        password = _new_password(args.password_stdin)
        if password is None:
            return 1
    if args.task == "remove-user" and not args.yes and not _confirmed(f"Remove {name}, their sessions and every conversation they were in?"):
        return _fail("nothing removed (without a terminal to ask, give --yes)" if not sys.stdin.isatty() else "nothing removed")
    try:
        return asyncio.run(_run(args.task, db_path, name, password, getattr(args, "file", None)))
    except Exception as exc:  # noqa: BLE001 - a locked, corrupt or too-new database: said in one line
        return _fail(f"cannot work on {db_path}: {exc}")


async def _run(task: str, db_path: Path, name: str | None, password: str | None, target: Path | None) -> int:
    from tui_chat.server.stores.sqlite import SQLiteStore

    store = SQLiteStore(db_path)
    await store.open()
    try:
        return await _do(store, task, name, password, target)
    finally:
        await store.close()


async def _do(store, task: str, name: str | None, password: str | None, target: Path | None) -> int:
    now = int(time.time() * 1000)
    if task == "list":
        _print_members(store, await _members(store, now))
        return 0
    if task == "backup":
        if target.exists():
            return _fail(f"{target} exists already; choose a new file")
        try:
            await store.backup(target)
        except OSError as exc:
            return _fail(f"cannot write the backup to {target}: {exc.strerror or exc}")
        print(f"backed up to {target}")
        return 0
    if task == "add-user":
        if not await store.create_user(name, await _hash(password), now):
            return _fail(f"{name} exists already")
        print(f"created the account {name}")
        return 0
    user = await store.get_user(name)
    if user is None:
        return _fail(f"there is no user {name}")
    if task == "reset-password":
        if user.password_hash is None:
            return _fail(f"{name} signs in without a password (a nickname or a Cognito user)")
        await store.set_password_hash(name, await _hash(password))
        ended = await store.end_user_sessions(name)
        print(f"new password set for {name}; {_sessions(ended)} ended")
    elif task == "revoke-sessions":
        print(f"{_sessions(await store.end_user_sessions(name))} of {name} ended")
    elif task == "remove-user":
        await store.delete_user(name)
        print(f"removed {name}")
    return 0


async def _members(store, now: int) -> list[tuple]:
    rows, after = [], None
    while True:
        page = await store.list_users(after, 500)
        for user in page:
            rows.append((user, len(await store.list_sessions(user.username, now))))
        if len(page) < 500:
            return rows
        after = page[-1].username


def _print_members(store, members: list[tuple]) -> None:
    head = ("NAME", "KIND", "CREATED", "LAST SEEN", "SESSIONS")
    lines = [head] + [
        (u.username, "account" if u.password_hash else "nickname", _when(u.created_at), _when(u.last_seen), str(sessions))
        for u, sessions in members
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    print(f"{len(members)} member{'s' if len(members) != 1 else ''}")


def _when(ms: int | None) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M") if ms else "never"


def _sessions(count: int) -> str:
    return f"{count} session{'s' if count != 1 else ''}"


async def _hash(password: str) -> str:
    from argon2 import PasswordHasher

    return await asyncio.to_thread(PasswordHasher().hash, password)


def _new_password(from_stdin: bool) -> str | None:
    import getpass  # here, not at import: every tui-chat start builds this parser

    from tui_chat.server.auth.accounts import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        _fail("no terminal to ask for the password: give --password-stdin and the password on standard input")
        return None
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            _fail("the two passwords differ")
            return None
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS or "\x00" in password:
        _fail(f"a password has {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters")
        return None
    return password


def _confirmed(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _fail(message: str, status: int = 1) -> int:
    print(f"tui-chat admin: {message}", file=sys.stderr)
    return status
