"""``tui-chat admin`` against the database of a real, running ``serve --no-signup``: a members-only
server whose members the operator adds, resets, signs out, removes and backs up."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import httpx
import pytest

from tests.security.helpers import handshake_status
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import WsClient

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def members_only(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("members"), extra_args=("--no-signup",))
    yield running
    running.stop()


def admin(server, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui_chat", "admin", "--db", str(server.db_path), *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def login(server, name: str, password: str = PASSWORD) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        return await http.post("/auth/login", json={"username": name, "password": password})


async def refresh(server, token: str) -> int:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        return (await http.post("/auth/refresh", json={"refreshToken": token})).status_code


async def test_a_fresh_members_only_server_gets_its_members_from_the_admin(members_only):
    async with httpx.AsyncClient(base_url=members_only.http_url) as http:
        assert (await http.post("/auth/signup", json={"username": "ann", "password": PASSWORD})).status_code == 403
    added = admin(members_only, "add-user", "Ann", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert (await login(members_only, "ann")).status_code == 200, "ann signs in with the password the admin set"
    again = admin(members_only, "add-user", "ann", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "exists already" in again.stderr
    short = admin(members_only, "add-user", "bea", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "characters" in short.stderr
    no_terminal = admin(members_only, "add-user", "bea")
    assert no_terminal.returncode == 1 and "--password-stdin" in no_terminal.stderr, "never hangs on a prompt nobody sees"
    listed = admin(members_only, "list")
    assert listed.returncode == 0
    assert [line.split()[:2] for line in listed.stdout.splitlines()[1:-1]] == [["ann", "account"]]
    assert "ann" in listed.stdout and "1 member" in listed.stdout


async def test_reset_password_and_revoke_sessions_sign_the_user_out(members_only):
    assert admin(members_only, "add-user", "cid", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    first = (await login(members_only, "cid")).json()
    reset = admin(members_only, "reset-password", "cid", "--password-stdin", stdin="a brand new password\n")
    assert reset.returncode == 0 and "1 session ended" in reset.stdout
    assert await refresh(members_only, first["refreshToken"]) == 401
    assert (await login(members_only, "cid")).status_code == 401, "the old password is gone"
    second = (await login(members_only, "cid", "a brand new password")).json()
    assert admin(members_only, "revoke-sessions", "cid").returncode == 0
    assert await refresh(members_only, second["refreshToken"]) == 401
    assert await handshake_status(members_only, second["token"]) == 401, "its access token opens nothing either"


async def test_remove_user_takes_the_account_and_its_conversations(members_only):
    for name in ("dee", "eve"):
        assert admin(members_only, "add-user", name, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    dee, eve = (await login(members_only, "dee")).json(), (await login(members_only, "eve")).json()
    ws = await WsClient.open(members_only.ws_url, dee["token"], "dee", "device-0001")
    assert (await ws.request({"action": "sendMessage", "id": "rm-000001", "to": "eve", "body": "hello eve"}))["type"] == "ack"
    await ws.close()
    refused = admin(members_only, "remove-user", "dee")
    assert refused.returncode == 1 and "--yes" in refused.stderr, "no terminal to confirm: nothing removed"
    removed = admin(members_only, "remove-user", "dee", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert (await login(members_only, "dee")).status_code == 401
    assert await handshake_status(members_only, dee["token"], "device-0002") == 401
    reader = await WsClient.open(members_only.ws_url, eve["token"], "eve", "device-0001")
    assert (await reader.request({"action": "getConversations"}))["items"] == [], "eve's copy of it went too"
    await reader.close()
    assert admin(members_only, "remove-user", "dee", "--yes").returncode == 1


async def test_backup_is_a_private_consistent_copy_of_the_live_database(members_only, tmp_path):
    assert admin(members_only, "add-user", "fay", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    target = tmp_path / "backup.db"
    made = admin(members_only, "backup", str(target))
    assert made.returncode == 0, made.stderr
    assert os.stat(target).st_mode & 0o777 == 0o600
    with sqlite3.connect(target) as copy:
        assert ("fay",) in copy.execute("SELECT username FROM users").fetchall()
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    again = admin(members_only, "backup", str(target))
    assert again.returncode == 1 and "exists" in again.stderr, "never overwrites"


def test_admin_takes_db_after_the_task_and_never_turns_a_wrong_file_into_a_database(members_only, tmp_path):
    listed = subprocess.run([sys.executable, "-m", "tui_chat", "admin", "list", "--db", str(members_only.db_path)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert listed.returncode == 0 and "member" in listed.stdout
    empty = tmp_path / "empty.db"
    empty.touch()
    result = subprocess.run([sys.executable, "-m", "tui_chat", "admin", "--db", str(empty), "list"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "not a SQLite database" in result.stderr
    assert empty.stat().st_size == 0, "left as it was"
    missing_folder = tmp_path / "no" / "such" / "folder" / "b.db"
    backup = admin(members_only, "backup", str(missing_folder))
    assert backup.returncode == 1 and f"cannot write the backup to {missing_folder}" in backup.stderr


def test_admin_without_a_database_says_so(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tui_chat", "admin", "--db", str(tmp_path / "none.db"), "list"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1 and "no database" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "none.db").exists(), "and does not create one"


async def test_a_removed_user_can_send_nothing_more_and_nothing_reaches_the_next_owner_of_the_name(members_only):
    for name in ("gus", "hal"):
        assert admin(members_only, "add-user", name, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    gus, hal = (await login(members_only, "gus")).json(), (await login(members_only, "hal")).json()
    gus_ws = await WsClient.open(members_only.ws_url, gus["token"], "gus", "device-0001")
    hal_ws = await WsClient.open(members_only.ws_url, hal["token"], "hal", "device-0001")
    assert (await gus_ws.request({"action": "sendMessage", "id": "gone-00001", "to": "hal", "body": "before"}))["type"] == "ack"
    assert admin(members_only, "remove-user", "gus", "--yes").returncode == 0
    # Both still connected (a connection outlives its session), within the server's minute:
    to_gone = await hal_ws.request({"action": "sendMessage", "id": "gone-00002", "to": "gus", "body": "are you there?"})
    assert (to_gone["type"], to_gone.get("code")) == ("error", "unknown_user")
    from_gone = await gus_ws.request({"action": "sendMessage", "id": "gone-00003", "to": "hal", "body": "still here"})
    assert (from_gone["type"], from_gone.get("code")) == ("error", "unknown_user")
    assert admin(members_only, "add-user", "gus", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    new_gus = await WsClient.open(members_only.ws_url, (await login(members_only, "gus")).json()["token"], "gus", "device-0009")
    assert (await new_gus.request({"action": "getMessages", "with": "hal"}))["items"] == [], "the new gus inherits nothing"
    for ws in (gus_ws, hal_ws, new_gus):
        await ws.close()
