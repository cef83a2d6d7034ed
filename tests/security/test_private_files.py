"""Data nobody else on the machine may read: folders 0700, databases and their side files 0600,
on the server and the client, whatever the umask (022 here, the common default)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tui_chat_dev.memory_keyring import MemoryKeyring
from tui_chat_dev.serverproc import RunningServer, signup
from tui_chat_dev.waiting import wait_until


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def database_files(db: Path) -> list[Path]:
    return [p for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")) if p.exists()]


async def test_the_server_keeps_its_database_and_side_files_private(tmp_path, umask_022):
    db = tmp_path / "new-folder" / "server.db"
    server = RunningServer(db).start()
    try:
        await signup(server.http_url, "privy")
        files = database_files(db)
        assert {f.name for f in files} >= {"server.db", "server.db-wal", "server.db-shm"}
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(db.with_name("server.db.secret")) == 0o600
        assert mode(db.parent) == 0o700, "a folder the server created for its data"
    finally:
        server.stop()


async def test_files_an_earlier_release_left_readable_are_tightened(tmp_path, umask_022):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    db = data / "server.db"
    first = RunningServer(db, env={"TUI_CHAT_DATA_DIR": str(data)}).start()
    first.stop()
    for f in database_files(db):
        os.chmod(f, 0o644)  # as the previous release left them
    server = RunningServer(db, env={"TUI_CHAT_DATA_DIR": str(data)}).start()
    try:
        assert {f.name: mode(f) for f in database_files(db)} == {f.name: 0o600 for f in database_files(db)}
        assert mode(data) == 0o700, "the data folder is tui-chat's own"
    finally:
        server.stop()


async def test_the_client_keeps_its_history_outbox_and_ids_private(tmp_path, monkeypatch, umask_022):
    import keyring

    from tui_chat.client.service import ChatClient

    data = tmp_path / "data"
    monkeypatch.setenv("TUI_CHAT_DATA_DIR", str(data))
    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    server = RunningServer(tmp_path / "srv" / "server.db").start()
    client = ChatClient(server.http_url)
    try:
        await client.sign_in("privclient", "correct horse battery", create=True)
        client.start()
        client.send("privclient", "a note only I may read")
        await wait_until(client, lambda: client.queued == 0)
        folder = client.account_folder("privclient")
        files = database_files(folder / "client.db") + [data / "device-id", data / "servers.json"]
        assert {str(f.relative_to(data)): mode(f) for f in files} == {str(f.relative_to(data)): 0o600 for f in files}
        assert {str(p.relative_to(tmp_path)): mode(p) for p in (data, folder.parent, folder)} == {
            str(p.relative_to(tmp_path)): 0o700 for p in (data, folder.parent, folder)}
    finally:
        await client.close()
        server.stop()
        keyring.set_keyring(previous)
