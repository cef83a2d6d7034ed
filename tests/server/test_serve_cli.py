"""``tui-chat serve`` refuses bad flags with a clear message before it touches anything."""

from __future__ import annotations

import subprocess
import sys

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
