"""``tui-chat serve`` refuses bad flags with a clear message before it touches anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "70000"], "a port is 0-65535"),
        (["--port", "eighty"], "not a port number"),
        (["--commit-window-ms", "-1"], "the commit window is 0-10000 ms"),
        (["--commit-window-ms", "nan"], "the commit window is 0-10000 ms"),
        (["--commit-window-ms", "soon"], "not a number of milliseconds"),
        (["--request-timeout", "0"], "the request timeout is 0.5-300 s"),
        (["--request-timeout", "inf"], "the request timeout is 0.5-300 s"),
        (["--request-timeout", "nan"], "the request timeout is 0.5-300 s"),
        (["--request-timeout", "later"], "not a number of seconds"),
        (["--rate-limit", "0"], "the rate limit is 0.1-100000 actions a second"),
        (["--rate-limit", "nan"], "the rate limit is 0.1-100000 actions a second"),
        (["--rate-limit", "fast"], "not a number of actions a second"),
        (["--rate-burst", "0"], "the burst is 1-100000 actions"),
        (["--rate-burst", "2.5"], "not a whole number of actions"),
        (["--auth", "magic"], "invalid choice: 'magic'"),
        (["--certfile", "/no/such/cert.pem"], "no such file"),
        (["--runtime", "lambda"], "unrecognized arguments: --runtime"),  # the emulator is a development tool now
    ],
)
def test_bad_flags_exit_2_with_a_reason(tmp_path, flags, message):
    result = subprocess.run(
        [sys.executable, "-m", "tui_chat", "serve", "--db", str(tmp_path / "s.db"), *flags],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "s.db").exists(), "nothing was created"


def _serve(tmp_path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tui_chat", "serve", "--port", "0", "--log-format", "json", *flags],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _until_listening(proc: subprocess.Popen) -> int:
    for line in proc.stderr:
        if '"listening"' in line:
            return int(json.loads(line)["port"])
    raise AssertionError("the server never listened")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_the_server_cleanly_with_exit_0(tmp_path, stop):
    proc = _serve(tmp_path, "--db", str(tmp_path / "s.db"))
    _until_listening(proc)
    proc.send_signal(stop)
    rest = proc.stderr.read()
    assert proc.wait(30) == 0, "a requested stop is a normal exit (SIGTERM was 143, Ctrl-C a traceback and 130)"
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest


def test_a_port_in_use_is_said_at_once_and_creates_no_database(tmp_path):
    first = _serve(tmp_path, "--db", str(tmp_path / "first.db"))
    try:
        port = _until_listening(first)
        second = subprocess.run([sys.executable, "-m", "tui_chat", "serve", "--port", str(port), "--db", str(tmp_path / "new" / "s.db")],
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert second.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr and "Traceback" not in second.stderr
        assert not (tmp_path / "new").exists(), "nothing was created for a server that cannot listen"
    finally:
        first.terminate()
        first.wait(30)


def test_a_file_that_is_not_a_database_is_said_in_one_line(tmp_path):
    bad = tmp_path / "s.db"
    bad.write_bytes(b"this is not a database, just some bytes someone left here" * 10)
    result = subprocess.run([sys.executable, "-m", "tui_chat", "serve", "--port", "0", "--db", str(bad)],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 1
    assert f"{bad} is not a SQLite database" in result.stderr and "Traceback" not in result.stderr
    assert not bad.with_name("s.db.secret").exists(), "nothing is created beside a wrong path"


def test_a_wrong_db_path_is_left_exactly_as_it_was(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir(mode=0o755)
    (folder / "inside.txt").write_text("keep me")
    text = tmp_path / "notes.txt"
    text.write_text("my notes")
    text.chmod(0o644)
    for wrong, said in ((folder, "is not a file"), (text, "is not a SQLite database")):
        result = subprocess.run([sys.executable, "-m", "tui_chat", "serve", "--port", "0", "--db", str(wrong)],
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert result.returncode == 1 and said in result.stderr and "Traceback" not in result.stderr
        assert not wrong.with_name(wrong.name + ".secret").exists()
    assert folder.stat().st_mode & 0o777 == 0o755 and (folder / "inside.txt").read_text() == "keep me"
    assert text.stat().st_mode & 0o777 == 0o644 and text.read_text() == "my notes"


def test_a_damaged_database_is_said_in_one_line(tmp_path):
    bad = tmp_path / "s.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)  # the right header, nothing sane after it
    result = subprocess.run([sys.executable, "-m", "tui_chat", "serve", "--port", "0", "--db", str(bad)],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 1
    assert "cannot open its store" in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_dynamodb_is_said_in_one_line(tmp_path):
    pytest.importorskip("moto", reason="serve-lambda is a development tool: the test extra installs it")
    result = subprocess.run(
        [sys.executable, "-m", "tui_chat_dev", "serve-lambda", "--port", "0", "--db", str(tmp_path / "s.db"),
         "--dynamodb-endpoint", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot open its store: DynamoDB: Could not connect" in result.stderr and "Traceback" not in result.stderr
