"""``tui-chat doctor``: one plain line a check, exit 1 only for a problem, never a traceback or a secret.

The client conftest gives every test its own data and config folders (``TUI_CHAT_DATA_DIR``,
``TUI_CHAT_CONFIG_DIR``) and an in-memory keyring."""

from __future__ import annotations

import os
import socket

import httpx
import keyring
import pytest
from keyring.backends import fail

from tests.server.test_tls import TlsServer, self_signed
from tui_chat.cli import main
from tui_chat_dev.serverproc import signup, start_server


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def doctor(capsys, *flags: str) -> tuple[int, list[str]]:
    status = main([*flags, "doctor"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out.splitlines()


def line(lines: list[str], status: str, what: str) -> str:
    found = [text for text in lines if text.startswith(f"{status:<8} {what}")]
    assert found, f"no {status} line for {what} in:\n" + "\n".join(lines)
    return found[0]


def test_a_working_setup_passes_and_says_what_the_server_is(chat_server, capsys, tmp_path):
    info = httpx.get(chat_server.http_url + "/info").json()
    status, lines = doctor(capsys, "--server", chat_server.http_url)
    assert status == 0, "\n".join(lines)
    assert line(lines, "ok", "version").startswith("ok       version: tui-chat ")
    assert str(tmp_path / "data") in line(lines, "ok", "data folder")
    assert "none, so the defaults are used" in line(lines, "ok", "config file")
    assert "MemoryKeyring" in line(lines, "ok", "keyring")
    assert f"{chat_server.http_url} (from --server); WebSocket ws://127.0.0.1:{chat_server.port}/ws" in line(lines, "ok", "server")
    assert f"answers: tui-chat {info['version']}, protocol {info['protocol']}, server id {info['serverId']}" in line(lines, "ok", "connection")
    assert "accounts: a username and password" in line(lines, "ok", "sign-in")
    assert "not used; fine, the server is on this machine" in line(lines, "ok", "TLS")
    assert not [text for text in lines if text.startswith(("warning", "problem"))]
    assert lines[-1] == "Every check passed."


def test_an_open_server_and_a_server_from_the_config_file(tmp_path, capsys, monkeypatch):
    server = start_server(tmp_path / "open", auth="open")
    try:
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.toml").write_text(f'server = "{server.ws_url}"\nusername = "ann"\n')
        status, lines = doctor(capsys)
        assert status == 0, "\n".join(lines)
        assert "read; it sets server, username" in line(lines, "ok", "config file")
        assert f"{server.http_url} (from the config file); WebSocket {server.ws_url}" in line(lines, "ok", "server")
        assert "open: pick a nickname" in line(lines, "ok", "sign-in")
        monkeypatch.setenv("TUI_CHAT_SERVER", server.http_url)
        assert "(from TUI_CHAT_SERVER)" in line(doctor(capsys)[1], "ok", "server")
    finally:
        server.stop()


def test_a_server_that_is_down_is_a_problem(closed_port, capsys):
    status, lines = doctor(capsys, "--server", f"http://127.0.0.1:{closed_port}")
    assert status == 1
    problem = line(lines, "problem", "connection")
    assert f"http://127.0.0.1:{closed_port} cannot be reached (connection refused)" in problem
    assert "is the server running" in problem
    assert lines[-1] == "1 problem found."


def test_a_broken_config_file_is_a_clear_problem(closed_port, tmp_path, capsys):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text('server = "http://127.0.0.1:8765\ntheme = nord\n')
    status, lines = doctor(capsys, "--server", f"http://127.0.0.1:{closed_port}")
    assert status == 1
    problem = line(lines, "problem", "config file")
    assert str(tmp_path / "config" / "config.toml") in problem and "not valid TOML" in problem and "(at line 1" in problem
    (tmp_path / "config" / "config.toml").write_text("bell = 'loud'\n")
    assert "bell must be true or false, not 'loud'" in line(doctor(capsys)[1], "problem", "config file")


def test_every_mistake_in_the_config_file_is_a_line_of_its_own(chat_server, tmp_path, capsys):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text(f'server = "{chat_server.http_url}"\nbell = "yes"\nauto_away_minutes = -5\ntheme = "nope"\nfoo = 1\n')
    status, lines = doctor(capsys)
    assert status == 1
    problems = [text for text in lines if text.startswith("problem")]
    assert [text.removeprefix(f"problem  config file {tmp_path / 'config' / 'config.toml'}: ") for text in problems] == [
        "bell must be true or false (without quotes), not 'yes'; tui-chat skips this setting",
        "auto_away_minutes must be a whole number of minutes from 0 to 1440, not -5; tui-chat skips this setting",
        "there is no theme 'nope' (themes: ansi-dark, ansi-light, atom-one-dark, atom-one-light, catppuccin-frappe, "
        "catppuccin-latte, catppuccin-macchiato, catppuccin-mocha, dracula, flexoki, gruvbox, monokai, nord, rose-pine, "
        "rose-pine-dawn, rose-pine-moon, solarized-dark, solarized-light, textual-dark, textual-light, tokyo-night); tui-chat skips this setting",
        "unknown setting 'foo' (known: auto_away_minutes, bell, cognito_client_id, cognito_region, cognito_user_pool_id, "
        "images, notifications, server, store_tokens_in_file, theme, username); tui-chat skips this setting",
    ]
    assert f"{chat_server.http_url} (from the config file)" in line(lines, "ok", "server"), "the good settings still apply"


def test_a_bad_server_in_the_config_file_is_not_replaced_by_the_default(tmp_path, capsys):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text('server = "127.0.0.1:9200"\n')
    status, lines = doctor(capsys)
    assert status == 1
    assert "server must be a URL starting with http://, https://, ws:// or wss://" in line(lines, "problem", "config file")
    said = line(lines, "problem", "server")
    assert "not checked: the server given cannot be used" in said and "does not fall back to another server" in said
    assert "8765" not in "\n".join(lines)


def test_a_bad_setting_in_the_environment_is_named(chat_server, capsys, monkeypatch):
    monkeypatch.setenv("TUI_CHAT_BELL", "sometimes")
    status, lines = doctor(capsys, "--server", chat_server.http_url)
    assert status == 1
    assert "environment variable TUI_CHAT_BELL" in line(lines, "problem", "settings")


def test_a_data_folder_others_may_read_is_a_warning(chat_server, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    status, lines = doctor(capsys, "--server", chat_server.http_url)
    assert status == 0, "a warning is not a failure"
    assert f"mode 0755: other users of this machine may look inside (chmod 700 {folder}" in line(lines, "warning", "data folder")
    os.chmod(folder, 0o700)
    assert "exists, only you may open it (0700)" in line(doctor(capsys, "--server", chat_server.http_url)[1], "ok", "data folder")


def test_no_keyring_is_a_warning_unless_a_token_file_was_asked_for(chat_server, tmp_path, capsys):
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        status, lines = doctor(capsys, "--server", chat_server.http_url)
        assert status == 0
        assert "the session is kept in memory only" in line(lines, "warning", "keyring")
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.toml").write_text("store_tokens_in_file = true\n")
        kept = line(doctor(capsys, "--server", chat_server.http_url)[1], "ok", "keyring")
        assert "the session is kept in a 0600 file, as configured" in kept and str(tmp_path / "data" / "tokens") in kept
    finally:
        keyring.set_keyring(previous)


async def test_no_token_or_password_is_ever_printed(chat_server, memory_keyring, capsys):
    tokens = await signup(chat_server.http_url, "doctorpatient", "a secret password")
    memory_keyring.set_password(f"tui-chat:{chat_server.http_url}", "doctorpatient", tokens["refreshToken"])
    status, lines = doctor(capsys, "--server", chat_server.http_url, "--user", "doctorpatient")
    assert status == 0
    text = "\n".join(lines)
    assert tokens["refreshToken"] not in text and tokens["token"] not in text and "a secret password" not in text


def test_an_untrusted_certificate_is_a_tls_problem_and_ssl_cert_file_fixes_it(tmp_path, capsys, monkeypatch):
    cert, key = self_signed(tmp_path)
    server = TlsServer(tmp_path / "tls.db", extra_args=("--certfile", str(cert), "--keyfile", str(key)), env={"SSL_CERT_FILE": str(cert)})
    server._wait_healthy = lambda: None  # over https, with a trust store of its own
    server.start()
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        status, lines = doctor(capsys, "--server", server.http_url)
        assert status == 1
        problem = line(lines, "problem", "TLS")
        assert "presented a certificate this machine does not trust (self-signed certificate)" in problem and "SSL_CERT_FILE" in problem
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        status, lines = doctor(capsys, "--server", server.http_url)
        assert status == 0, "\n".join(lines)
        assert f"the certificate of 127.0.0.1 is trusted (the system's trust store, with SSL_CERT_FILE={cert})" in line(lines, "ok", "TLS")
        assert f"wss://127.0.0.1:{server.port}/ws" in line(lines, "ok", "server")
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))
        status, lines = doctor(capsys, "--server", server.http_url)
        assert status == 1 and "cannot be loaded" in line(lines, "problem", "TLS")
    finally:
        server.stop()


def test_something_else_on_the_port_is_not_taken_for_a_tui_chat_server(tmp_path, capsys):
    """A web server that answers 404 to /info (here: a bare HTTP responder in a thread)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    http = HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        status, lines = doctor(capsys, "--server", f"http://127.0.0.1:{http.server_port}")
        assert status == 1
        assert "but not as a tui-chat server would (GET /info: HTTP 404)" in line(lines, "problem", "connection")
    finally:
        http.shutdown()
        http.server_close()


def test_with_nothing_configured_and_nothing_listening_the_built_in_server_is_said(tmp_path, capsys, monkeypatch):
    import tui_chat.server.embedded

    monkeypatch.setattr(tui_chat.server.embedded, "something_listens", lambda *args, **kwargs: False)
    status, lines = doctor(capsys)
    assert status == 0, "\n".join(lines)
    said = line(lines, "ok", "server")
    assert "none configured and nothing listens at http://127.0.0.1:8765: tui-chat starts its built-in server there" in said
    assert str(tmp_path / "data" / "server.db") in said and "WebSocket ws://127.0.0.1:8765/ws" in said
    assert not [text for text in lines if text.startswith("ok       connection")], "nothing to ask yet"


def test_a_cognito_pool_from_the_config_needs_no_info(chat_server, tmp_path, capsys):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text(
        'cognito_region = "eu-west-1"\ncognito_user_pool_id = "eu-west-1_AbCdEfGhI"\ncognito_client_id = "1example23456789"\n'
    )
    status, lines = doctor(capsys, "--server", chat_server.http_url)
    assert status == 0, "\n".join(lines)
    assert "a cloud deployment has no /info" in line(lines, "ok", "connection")
    assert "Amazon Cognito user pool eu-west-1_AbCdEfGhI in eu-west-1, from the config file" in line(lines, "ok", "sign-in")


def test_a_malformed_server_address_is_one_problem_and_is_never_echoed_with_secrets(capsys):
    for address in ("127.0.0.1:8910", "ftp://x", "http://user:s3cret-pass@127.0.0.1:8910/?token=s3cret-token", "http://:99x"):
        status, lines = doctor(capsys, "--server", address)
        text = "\n".join(lines)
        assert status == 1 and "not checked: the server given cannot be used" in text, address
        assert "s3cret" not in text and "WebSocket" not in text, "no half-parsed WebSocket address, no secret shown back"
