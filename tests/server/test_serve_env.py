"""Every ``tui-chat serve`` flag can come from a ``TUI_CHAT_*`` variable (systemd, docker):
checked like the flag, named when it is wrong, and a flag on the command line wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tui_chat.cli import build_parser, env_variable, main, run_serve
from tui_chat.server.deadline import DEFAULT_REQUEST_HEAD_TIMEOUT_S
from tui_chat_dev.serverproc import CHECKOUT


@pytest.fixture(autouse=True)
def no_serve_variables(monkeypatch):
    """Whatever the machine running the tests has set does not leak into them."""
    for name in list(os.environ):
        if name.startswith("TUI_CHAT_") and not name.endswith("_DIR"):
            monkeypatch.delenv(name)


def serve_args(*flags: str, **env: str):
    """``tui-chat serve`` parsed with ``env`` set (the parser reads the variables when it is built)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return build_parser().parse_args(["serve", *flags])


def test_the_variable_is_the_flag_in_capitals():
    assert env_variable("--port") == "TUI_CHAT_PORT"
    assert env_variable("--commit-window-ms") == "TUI_CHAT_COMMIT_WINDOW_MS"
    assert env_variable("--no-signup") == "TUI_CHAT_NO_SIGNUP"


def test_without_variables_the_defaults_are_unchanged():
    args = serve_args()
    assert (args.host, args.port, args.auth, args.signup, args.db) == ("127.0.0.1", 8765, "accounts", True, None)
    assert (args.public_host, args.allow_origin, args.retention_days, args.forget_after) == ([], [], None, None)
    assert (args.commit_window_ms, args.request_timeout, args.log_level) == (0.0, DEFAULT_REQUEST_HEAD_TIMEOUT_S, "info")


@pytest.mark.parametrize(
    ("variable", "value", "dest", "expected"),
    [
        ("TUI_CHAT_PORT", "9001", "port", 9001),  # int
        ("TUI_CHAT_RATE_BURST", "40", "rate_burst", 40),
        ("TUI_CHAT_RETENTION_DAYS", "30", "retention_days", 30),
        ("TUI_CHAT_FORGET_AFTER", "90", "forget_after", 90),
        ("TUI_CHAT_COMMIT_WINDOW_MS", "2.5", "commit_window_ms", 2.5),  # float
        ("TUI_CHAT_REQUEST_TIMEOUT", " 7 ", "request_timeout", 7.0),  # spaces around are ignored
        ("TUI_CHAT_AUTH", "open", "auth", "open"),  # choice
        ("TUI_CHAT_LOG_FORMAT", "json", "log_format", "json"),
        ("TUI_CHAT_NO_SIGNUP", "true", "signup", False),  # on/off
        ("TUI_CHAT_NO_SIGNUP", "1", "signup", False),
        ("TUI_CHAT_NO_SIGNUP", "False", "signup", True),
        ("TUI_CHAT_NO_SIGNUP", "off", "signup", True),
        ("TUI_CHAT_PUBLIC_HOST", "chat.example.org, chat.internal,", "public_host", ["chat.example.org", "chat.internal"]),  # repeatable
        ("TUI_CHAT_ALLOW_ORIGIN", "https://chat.example.org", "allow_origin", ["https://chat.example.org"]),
        ("TUI_CHAT_DB", "/srv/chat/server.db", "db", Path("/srv/chat/server.db")),  # path
        ("TUI_CHAT_HOST", "0.0.0.0", "host", "0.0.0.0"),  # plain text
        ("TUI_CHAT_COGNITO_REGION", "eu-west-1", "cognito_region", "eu-west-1"),
    ],
)
def test_each_kind_of_flag_reads_its_variable(variable, value, dest, expected):
    value_read = getattr(serve_args(**{variable: value}), dest)
    assert value_read == expected and type(value_read) is type(expected)


def test_a_file_flag_reads_its_variable_and_checks_the_file(tmp_path, capsys):
    cert = tmp_path / "cert.pem"
    cert.write_text("not checked here")
    assert serve_args(TUI_CHAT_CERTFILE=str(cert)).certfile == cert
    with pytest.raises(SystemExit) as exit:
        serve_args(TUI_CHAT_CERTFILE=str(tmp_path / "missing.pem"))
    assert exit.value.code == 2
    assert "environment variable TUI_CHAT_CERTFILE: no such file" in capsys.readouterr().err


def test_an_empty_variable_counts_as_unset():
    args = serve_args(TUI_CHAT_PORT="", TUI_CHAT_AUTH="  ", TUI_CHAT_PUBLIC_HOST="")
    assert (args.port, args.auth, args.public_host) == (8765, "accounts", [])


def test_a_flag_on_the_command_line_beats_the_variable():
    args = serve_args("--port", "9002", "--auth", "accounts", "--public-host", "flag.example", "--request-timeout", "3",
                      TUI_CHAT_PORT="9001", TUI_CHAT_AUTH="open", TUI_CHAT_PUBLIC_HOST="env.example,other.example",
                      TUI_CHAT_REQUEST_TIMEOUT="not even a number")  # fmt: skip
    assert (args.port, args.auth, args.public_host, args.request_timeout) == (9002, "accounts", ["flag.example"], 3.0)
    twice = serve_args("--allow-origin", "https://a.example", "--allow-origin", "https://b.example", TUI_CHAT_ALLOW_ORIGIN="https://env.example")
    assert twice.allow_origin == ["https://a.example", "https://b.example"], "the flags replace the variable's list"
    assert serve_args(TUI_CHAT_NO_SIGNUP="false").signup is True
    assert serve_args("--no-signup", TUI_CHAT_NO_SIGNUP="false").signup is False


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TUI_CHAT_PORT", "eighty", "not a port number: 'eighty'"),
        ("TUI_CHAT_PORT", "70000", "a port is 0-65535"),
        ("TUI_CHAT_COMMIT_WINDOW_MS", "nan", "the commit window is 0-10000 ms"),
        ("TUI_CHAT_RATE_BURST", "2.5", "not a whole number of actions"),
        ("TUI_CHAT_RETENTION_DAYS", "0", "the retention is 1-36500 days"),
        ("TUI_CHAT_FORGET_AFTER", "525601", "--forget-after is 1-525600 minutes"),
        ("TUI_CHAT_AUTH", "magic", "invalid choice: 'magic'"),
        ("TUI_CHAT_LOG_LEVEL", "loud", "invalid choice: 'loud'"),
        ("TUI_CHAT_NO_SIGNUP", "maybe", "true or false, not 'maybe'"),
    ],
)
def test_a_bad_variable_exits_2_naming_it(capsys, variable, value, message):
    with pytest.raises(SystemExit) as exit:
        serve_args(**{variable: value})
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert f"environment variable {variable}: {message}" in err
    assert "Traceback" not in err


def test_a_bad_variable_is_an_error_of_serve_alone(capsys, monkeypatch):
    """The client (no subcommand) and ``--help`` do not care what the server's variables say."""
    monkeypatch.setenv("TUI_CHAT_PORT", "eighty")
    assert build_parser().parse_args(["--server", "http://127.0.0.1:1"]).command is None
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["serve", "--help"])
    assert exit.value.code == 0
    assert "TUI_CHAT_COMMIT_WINDOW_MS" in capsys.readouterr().out, "--help states the rule"


def test_forget_after_is_for_open_mode_only(tmp_path, capsys, monkeypatch):
    assert main(["serve", "--forget-after", "60", "--db", str(tmp_path / "s.db")]) == 2
    assert "--forget-after is for --auth open, not --auth accounts" in capsys.readouterr().err
    monkeypatch.setenv("TUI_CHAT_FORGET_AFTER", "60")
    assert main(["serve", "--auth", "cognito", "--cognito-region", "r", "--cognito-user-pool-id", "p", "--cognito-client-id", "c",
                 "--db", str(tmp_path / "s.db")]) == 2  # fmt: skip
    assert "is for --auth open, not --auth cognito" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()


def test_no_signup_is_for_accounts_mode_only(tmp_path, capsys, monkeypatch):
    assert main(["serve", "--auth", "open", "--no-signup", "--db", str(tmp_path / "s.db")]) == 2
    assert "--no-signup is for --auth accounts" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()


def test_the_new_flags_reach_the_settings(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("tui_chat.server.logs.configure_logging", lambda *args: None)  # the root logger is the test run's
    seen = []

    def build(options):
        seen.append(options)
        raise ImportError("stop here", name="stop-here")  # run_serve says so and returns 1: no server runs

    args = build_parser().parse_args(["serve", "--port", "0", "--auth", "open", "--forget-after", "45", "--retention-days", "30",
                                      "--db", str(tmp_path / "s.db")])  # fmt: skip
    assert run_serve(args, build=build) == 1
    assert (seen[0].forget_after_minutes, seen[0].retention_days, seen[0].auth) == (45, 30, "open")
    args = build_parser().parse_args(["serve", "--port", "0", "--db", str(tmp_path / "s.db")])
    assert run_serve(args, build=build) == 1
    assert (seen[1].forget_after_minutes, seen[1].retention_days) == (None, None)
    capsys.readouterr()


def test_a_server_configured_only_by_its_environment(tmp_path):
    """``tui-chat serve`` with no flags at all, as a service manager would start it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TUI_CHAT_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH", "")])),
        TUI_CHAT_HOST="127.0.0.1", TUI_CHAT_PORT="0", TUI_CHAT_DB=str(tmp_path / "env.db"), TUI_CHAT_AUTH="open",
        TUI_CHAT_LOG_FORMAT="json", TUI_CHAT_PUBLIC_HOST="chat.example.org,chat.internal", TUI_CHAT_FORGET_AFTER="60",
    )  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "tui_chat", "serve"], stderr=subprocess.PIPE, text=True, env=env, cwd=CHECKOUT)
    try:
        port = None
        for line in proc.stderr:  # the server says when it listens, and on which port
            if '"listening"' in line:
                listening = json.loads(line)
                port = int(listening["port"])
                break
        assert port, "the server never listened"
        assert (listening["auth"], listening["store"]) == ("open", str(tmp_path / "env.db")), "its first line says how it runs"
        info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=10)
        assert info.status_code == 200 and info.json()["auth"] == "open"
        named = httpx.get(f"http://127.0.0.1:{port}/info", headers={"Host": f"chat.internal:{port}"}, timeout=10)
        assert named.status_code == 200, "a name from TUI_CHAT_PUBLIC_HOST is answered"
        stranger = httpx.get(f"http://127.0.0.1:{port}/info", headers={"Host": "elsewhere.example"}, timeout=10)
        assert stranger.status_code == 421, "any other name is not"
        assert (tmp_path / "env.db").exists(), "the database is where TUI_CHAT_DB says"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
        proc.stderr.close()
