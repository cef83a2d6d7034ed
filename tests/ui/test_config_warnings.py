"""Mistakes in the settings as a person meets them: the warning as the app starts, the server
actually used, the theme shown. A bad setting is skipped and named; the good ones still apply."""

from __future__ import annotations

import argparse

import pytest
from textual.theme import BUILTIN_THEMES
from textual.widgets import Input

import tui_chat.server.embedded
import tui_chat.ui.app
from tui_chat.launch import run_app
from tui_chat.ui.app import ChatApp
from tui_chat.ui.screens.sign_in import SignInScreen
from tui_chat.ui.session import Session


@pytest.fixture
def config_file(private_dirs, memory_keyring):
    return private_dirs / "config" / "config.toml"


def launched(monkeypatch, *flags: str) -> ChatApp:
    """What ``tui-chat`` would run, with nothing listening on the default address."""
    apps: list[ChatApp] = []
    monkeypatch.setattr(tui_chat.server.embedded, "something_listens", lambda *args, **kwargs: False)
    monkeypatch.setattr(tui_chat.ui.app.ChatApp, "run", lambda self: apps.append(self) or 0)
    args = argparse.Namespace(server=None, user=None)
    for flag, value in zip(flags[::2], flags[1::2]):
        setattr(args, flag.removeprefix("--"), value)
    assert run_app(args) == 0
    return apps[0]


def test_a_typo_does_not_lose_the_server(config_file, monkeypatch):
    config_file.write_text('server = "http://127.0.0.1:9200"\nthemee = "nord"\n')
    app = launched(monkeypatch)
    assert app.session.server == "http://127.0.0.1:9200" and app.embedded is None, "no built-in server instead"
    assert app.session.config_error == f"{config_file}:\n• unknown setting 'themee' (did you mean 'theme'?)\nSkipped; every other setting applies."


def test_a_bad_server_is_not_swapped_for_the_built_in_one(config_file, monkeypatch):
    config_file.write_text('server = "127.0.0.1:9200"\n')
    app = launched(monkeypatch)
    assert app.embedded is None and app.session.server == ""
    assert "tui-chat does not fall back to another server" in app.session.config_error
    config_file.write_text('server = "http://127.0.0.1:9200"\n')
    app = launched(monkeypatch, "--server", "http:/typo")
    assert app.embedded is None and app.session.server == "", "not the file's server instead of the one asked for"


async def test_the_warning_names_every_mistake_and_the_sign_in_screen_asks_for_the_server(config_file):
    config_file.write_text('server = "127.0.0.1:9200"\nbell = "yes"\nauto_away_minutes = -5\ntheme = "nope"\nfoo = 1\n')
    app = ChatApp(Session.from_config(), auto_away_minutes=None)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(50):
            if isinstance(app.screen, SignInScreen):
                break
            await pilot.pause(0.05)
        assert app.screen.query_one("#server", Input).value == "", "no server filled in that the user did not give"
        [warning] = [n for n in app._notifications if n.severity == "warning"]
        said = str(warning.message)
    assert said == f"""{config_file}:
• server must be a URL starting with http://, https://, ws:// or wss://, not '127.0.0.1:9200'
• bell must be true or false (without quotes), not 'yes'
• auto_away_minutes must be a whole number of minutes from 0 to 1440, not -5
• there is no theme 'nope'
• unknown setting 'foo'
Skipped; every other setting applies.
tui-chat doctor lists the settings and themes there are.
So no server is used: tui-chat does not fall back to another server. Enter the server on the sign-in screen, or fix the mistake."""


async def test_a_theme_from_the_config_is_shown_and_a_wrong_one_is_said(config_file):
    config_file.write_text('theme = "nord"\n')
    app = ChatApp(Session.from_config(), auto_away_minutes=None)
    async with app.run_test(size=(100, 30)):
        assert app.theme == "nord"
    config_file.write_text('theme = "nordd"\n')
    assert "there is no theme 'nordd' (did you mean 'nord'?)" in Session.from_config().config_error


def test_the_themes_the_config_accepts_are_the_themes_the_app_has():
    assert set(ChatApp().available_themes) == set(BUILTIN_THEMES), "a theme the app registers must be accepted in the config too"
