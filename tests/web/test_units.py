"""The web front's parts on their own: a session's environment and folder, its keyring, the
pinned server, download headers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tui_chat.web import isolation
from tui_chat.web.front import _attachment, _port_of
from tui_chat.web.memory_keyring import SessionKeyring


def test_a_session_s_environment_keeps_only_what_the_app_needs(tmp_path):
    host = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "SSL_CERT_FILE": "/etc/ca.pem",
            "HOME": "/root", "AWS_SECRET_ACCESS_KEY": "x", "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/0/bus",
            "SSH_AUTH_SOCK": "/tmp/agent", "TUI_CHAT_USERNAME": "host-user", "TUI_CHAT_STORE_TOKENS_IN_FILE": "true",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring", "TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver",
            "COLUMNS": "100", "DISPLAY": ":0"}  # fmt: skip
    folder = isolation.make_session_folder(tmp_path)
    env = isolation.session_environment(host, folder, server_url="http://127.0.0.1:8765", import_root=Path("/src"))
    for gone in ("AWS_SECRET_ACCESS_KEY", "DBUS_SESSION_BUS_ADDRESS", "SSH_AUTH_SOCK", "TUI_CHAT_USERNAME", "DISPLAY"):
        assert gone not in env
    assert {env[k] for k in ("PATH", "LANG", "LC_ALL", "SSL_CERT_FILE", "TEXTUAL_DRIVER", "COLUMNS")} == {
        "/usr/bin", "C.UTF-8", "/etc/ca.pem", "textual.drivers.web_driver:WebDriver", "100"}
    assert env["HOME"] == str(folder)
    for name in ("TUI_CHAT_DATA_DIR", "TUI_CHAT_CONFIG_DIR", "TUI_CHAT_CACHE_DIR", "TUI_CHAT_DOWNLOADS_DIR", "TMPDIR",
                 "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):  # fmt: skip
        assert Path(env[name]).parent == folder and Path(env[name]).is_dir()
    assert env["PYTHON_KEYRING_BACKEND"] == "tui_chat.web.memory_keyring.SessionKeyring"
    assert env["TUI_CHAT_STORE_TOKENS_IN_FILE"] == "false" and env["TUI_CHAT_SERVER"] == "http://127.0.0.1:8765"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == "/src"
    assert env[isolation.PARENT_VARIABLE] == str(os.getpid())


def test_session_folders_are_private_apart_and_removed(tmp_path):
    root = isolation.make_root(tmp_path)
    one, two = isolation.make_session_folder(root), isolation.make_session_folder(root)
    assert one != two
    for folder in (root, one, two, *one.iterdir()):
        assert folder.stat().st_mode & 0o777 == 0o700
    (one / "data" / "cache.db").write_text("x")
    isolation.remove(one)
    isolation.remove(one)  # twice is fine
    assert not one.exists() and two.exists()
    isolation.remove(root)
    assert not root.exists()


def test_the_session_keyring_is_the_process_s_own():
    import keyring

    backend = keyring.core.load_keyring("tui_chat.web.memory_keyring.SessionKeyring")
    assert isinstance(backend, SessionKeyring)
    backend.set_password("tui-chat:http://x", "alice", "token")
    assert backend.get_password("tui-chat:http://x", "alice") == "token"
    assert SessionKeyring().get_password("tui-chat:http://x", "alice") is None, "another process starts empty"
    backend.delete_password("tui-chat:http://x", "alice")
    backend.delete_password("tui-chat:http://x", "alice")
    assert backend.get_password("tui-chat:http://x", "alice") is None


def test_a_session_signs_in_to_the_host_s_server_only():
    from tui_chat.ui.screens.sign_in import SignInFailed
    from tui_chat.web.browser_app import PinnedSession

    session = PinnedSession(server="http://127.0.0.1:8765")
    session.pinned = "http://127.0.0.1:8765"
    assert session._client_for("http://127.0.0.1:8765/").server_url  # the same server, however written
    with pytest.raises(SignInFailed) as refused:
        session._client_for("http://attacker.example:8765")
    assert refused.value.field == "server" and "signs in to http://127.0.0.1:8765 only" in str(refused.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
        ("a\"b;c\\d.txt", "attachment; filename=\"a_b_c_d.txt\"; filename*=UTF-8''a%22b%3Bc%5Cd.txt"),
        ("résumé (1).pdf", "attachment; filename=\"r_sum_ (1).pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%281%29.pdf"),
    ],
)
def test_a_download_is_always_an_attachment_with_its_name_quoted(name, expected):
    assert _attachment(name) == expected


@pytest.mark.parametrize(("host", "port"), [("127.0.0.1:8766", "8766"), ("[::1]:8766", "8766"), ("example.org", ""), ("[::1]", "")])
def test_ports_in_host_headers(host, port):
    assert _port_of(host) == port


async def test_the_sign_in_form_s_server_field_cannot_be_changed_in_a_browser(tmp_path, monkeypatch):
    from textual.widgets import Input

    from tui_chat.ui.screens.sign_in import SignInScreen
    from tui_chat.web.browser_app import BrowserChatApp, PinnedSession

    for name in ("DATA", "CONFIG", "CACHE"):
        monkeypatch.setenv(f"TUI_CHAT_{name}_DIR", str(tmp_path / name.lower()))
    session = PinnedSession(server="http://127.0.0.1:9")  # nothing listens: the form keeps asking
    session.pinned = session.server
    app = BrowserChatApp(session)
    async with app.run_test() as pilot:
        for _ in range(50):  # bounded: each pause lets the app handle what is queued
            if isinstance(app.screen, SignInScreen) and app.screen.query_one("#server", Input).disabled:
                break
            await pilot.pause()
        field = app.screen.query_one("#server", Input)
        assert field.disabled and field.value == "http://127.0.0.1:9"
        assert app.focused is not None and app.focused.id == "username"
        await pilot.press("shift+tab")
        assert app.focused is None or app.focused.id != "server", "the field is out of the tab order"
