"""Where tui-chat keeps its files: platformdirs, overridable for tests and portable installs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "tui-chat"


def _dir(env: str, default: Path) -> Path:
    override = os.environ.get(env)
    return Path(override).expanduser() if override else default


def data_dir() -> Path:
    return _dir("TUI_CHAT_DATA_DIR", platformdirs.user_data_path(APP_NAME))


def config_dir() -> Path:
    return _dir("TUI_CHAT_CONFIG_DIR", platformdirs.user_config_path(APP_NAME))


def private_folder(path: Path) -> Path:
    """Create ``path`` (and its parents) for files nobody else may read: a folder tui-chat
    creates is 0700, and so is every folder of its own data folder on the way (tightened if an
    earlier release left it 0755). A folder someone else chose and created (``--db /srv/chat/…``)
    keeps its mode: the files in it are 0600."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    ours = data_dir()
    for folder in [*missing, *_ancestors_within(path, ours)]:
        _owner_only(folder, 0o700)
    return path


def _ancestors_within(path: Path, root: Path) -> list[Path]:
    try:
        relative = path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return []
    folders = [root]
    for part in relative.parts:
        folders.append(folders[-1] / part)
    return folders


def _owner_only(path: Path, mode: int) -> None:
    try:
        if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
    except (OSError, AttributeError):  # gone meanwhile, not ours, or no getuid (Windows)
        pass


SQLITE_HEADER = b"SQLite format 3\x00"


class NotADatabase(OSError):
    """A path given for a database holds something else (a folder, a text file)."""


def check_database(path: Path, *, must_exist: bool = False) -> None:
    """Raise :class:`NotADatabase` unless ``path`` is a SQLite database, or (unless
    ``must_exist``) nothing yet or an empty file (what a first start leaves)."""
    if not path.exists():
        if must_exist:
            raise NotADatabase(f"there is no database at {path}")
        return
    if not path.is_file():
        raise NotADatabase(f"{path} is not a file (a database is a file)")
    with open(path, "rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER and (header or must_exist):
        raise NotADatabase(f"{path} is not a SQLite database")


def private_database(path: Path) -> Path:
    """Make ``path`` a SQLite database only its owner can read: the file exists 0600 before
    SQLite opens it, so its ``-wal`` and ``-shm`` files are created 0600 too (SQLite gives them
    the database's own mode); ones an earlier release left readable are tightened."""
    path = Path(path)
    check_database(path)  # before anything is created or changed: a wrong path is left alone
    private_folder(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            _owner_only(file, 0o600)
    return path


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file only its owner can read (0600 from the start)."""
    private_folder(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def downloads_dir() -> Path:
    """Where files from others are saved: the user's downloads folder."""
    return _dir("TUI_CHAT_DOWNLOADS_DIR", platformdirs.user_downloads_path())


def cache_dir() -> Path:
    return _dir("TUI_CHAT_CACHE_DIR", platformdirs.user_cache_path(APP_NAME))
