"""``tui-chat web`` and ``tui-chat serve --web`` refuse bad flags with a clear message (exit 2),
and say why they cannot start (exit 1), before anything is created."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui_chat", *args], capture_output=True, text=True, timeout=30, env=env)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["web", "--max-sessions", "0"], "--max-sessions is 1-1000 sessions, not 0"),
        (["web", "--max-sessions", "many"], "not a whole number of sessions"),
        (["web", "--port", "70000"], "a port is 0-65535"),
        (["web", "--certfile", "/no/such/cert.pem"], "no such file"),
        (["web", "--server", "ftp://chat.example.org"], "server must be a URL starting with http://"),
        (["web", "--server", "http://user:secret@chat.example.org"], "without a user name, password"),
        (["--server", "chat.example.org", "web"], "server must be a URL starting with http://"),
        (["--user", "alice", "web"], "--user is for the app in a terminal"),
        (["serve", "--web-port", "9000"], "--web-port goes with --web"),
        (["serve", "--max-sessions", "5"], "--max-sessions goes with --web"),
        (["serve", "--web", "--max-sessions", "0"], "--max-sessions is 1-1000 sessions, not 0"),
        (["serve", "--web", "--port", "9000", "--web-port", "9000"], "--web-port must differ from --port (9000)"),
    ],
)
def test_bad_flags_exit_2_with_a_reason(tmp_path, args, message):
    if args[0] == "serve":
        args = [*args, "--db", str(tmp_path / "s.db")]
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "s.db").exists(), "nothing was created"


def test_a_certificate_without_its_key_is_refused(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    result = run("web", "--certfile", str(cert))
    assert result.returncode == 2 and "--certfile and --keyfile go together" in result.stderr


def test_a_certificate_that_cannot_serve_tls_is_said_at_start(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    result = run("web", "--certfile", str(cert), "--keyfile", str(key), "--port", "0")
    assert result.returncode == 1 and "cannot use" in result.stderr and "for TLS" in result.stderr


def test_a_port_in_use_is_said_before_anything_is_created(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        web = run("web", "--port", str(port))
        serve = run("serve", "--port", "0", "--web", "--web-port", str(port), "--db", str(tmp_path / "s.db"))
    assert web.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in web.stderr
    assert serve.returncode == 1 and f"cannot listen on 127.0.0.1:{port} for --web" in serve.stderr
    assert not (tmp_path / "s.db").exists()


def test_the_variables_set_web_flags_too(tmp_path):
    import os

    result = run("web", env={**os.environ, "TUI_CHAT_MAX_SESSIONS": "lots"})
    assert result.returncode == 2 and "environment variable TUI_CHAT_MAX_SESSIONS: not a whole number of sessions: 'lots'" in result.stderr
