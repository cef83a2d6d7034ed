"""The sign-in form adapts to the server's mode and reports failures in words."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tui_chat.ui.app import ChatApp
from tui_chat.ui.screens.sign_in import ServerInfo, SignInFailed, SignInScreen


class FakeBackend:
    def __init__(self, infos: dict[str, ServerInfo | str]) -> None:
        self.infos = infos
        self.calls: list = []

    async def server_info(self, server: str) -> ServerInfo:
        info = self.infos.get(server, "Cannot reach the server (connection refused).")
        if isinstance(info, str):
            raise SignInFailed(info)
        return info

    async def sign_in(self, server, username, password, *, create, mode) -> None:
        self.calls.append((server, username, password, create, mode))
        if username == "taken":
            raise SignInFailed("That nickname is in use on another device.")


def app_with(backend: FakeBackend, **kwargs) -> ChatApp:
    return ChatApp(preview=lambda: SignInScreen(backend, **kwargs))


def shown(app, selector: str) -> bool:
    return app.screen.query_one(selector).display


async def test_accounts_server_offers_sign_up():
    backend = FakeBackend({"http://s": ServerInfo("accounts", signup=True)})
    app = app_with(backend, server="http://s", username="erin")
    async with app.run_test() as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert shown(app, "#password") and shown(app, "#create-account")
        await pilot.press(*"secret-pass")
        await pilot.click("#create-account")
        await app.workers.wait_for_complete()
        assert backend.calls == [("http://s", "erin", "secret-pass", True, "accounts")]


async def test_open_server_asks_only_for_a_nickname_and_explains_a_clash():
    backend = FakeBackend({"http://open": ServerInfo("open", signup=False)})
    app = app_with(backend, server="http://open")
    async with app.run_test() as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not shown(app, "#password") and not shown(app, "#create-account")
        assert "Nickname" in str(app.screen.query_one("#username-label").render())
        await pilot.click("#username")
        await pilot.press(*"taken", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert shown(app, "#sign-in-error")
        assert "nickname is in use" in str(app.screen.query_one("#sign-in-error").render())


async def test_unreachable_server_is_said_in_words():
    backend = FakeBackend({})
    app = app_with(backend, server="http://nowhere:1")
    async with app.run_test() as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "Cannot reach the server" in str(app.screen.query_one("#server-mode").render())
        app.screen.query_one("#server", Input).value = "http://open"
        backend.infos["http://open"] = ServerInfo("open")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        said = str(app.screen.query_one("#server-mode").render())
        assert "open server" in said and "Whoever takes a nickname later sees its conversations" in said


class RefusingBackend(FakeBackend):
    async def sign_in(self, server, username, password, *, create, mode) -> None:
        self.calls.append((server, username, password, create, mode))
        raise SignInFailed("a password needs at least 8 characters", "password")


async def test_after_a_failed_attempt_the_field_to_fix_has_the_focus():
    backend = RefusingBackend({"http://s": ServerInfo("accounts", signup=True)})
    app = app_with(backend, server="http://s", username="newbie")
    async with app.run_test() as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press(*"short")
        await pilot.click("#create-account")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "at least 8 characters" in str(app.screen.query_one("#sign-in-error").render())
        assert app.focused is not None and app.focused.id == "password"
        await pilot.press(*"long enough now")
        assert app.screen.query_one("#password", Input).value == "long enough now"
        assert app.screen.query_one("#server", Input).value == "http://s", "the server address is untouched"


def test_wrong_password_on_a_server_that_takes_new_accounts_points_to_create_account():
    from tui_chat.client.auth import SignInError
    from tui_chat.ui.session import field_to_fix, friendly

    wrong = SignInError("credentials", "invalid username or password")
    assert "Create account" in friendly(wrong, "http://s", "accounts", signup=True)
    assert "Create account" not in friendly(wrong, "http://s", "accounts", signup=False)
    assert field_to_fix(wrong) == "password"
    assert field_to_fix(SignInError("invalid", "a password needs at least 8 characters")) == "password"
    assert field_to_fix(SignInError("invalid", "a username is 2-32 characters")) == "username"
    assert field_to_fix(SignInError("unreachable", "cannot reach")) == "server"


async def test_an_unreachable_server_is_asked_again_until_it_answers(monkeypatch):
    import asyncio

    from tui_chat.ui.screens import sign_in

    monkeypatch.setattr(sign_in, "INFO_RETRY_S", 0.05)
    backend = FakeBackend({})
    app = app_with(backend, server="http://starting:1", username="erin")
    async with app.run_test() as pilot:
        mode = app.screen.query_one("#server-mode")
        async with asyncio.timeout(10):
            while "trying again" not in str(mode.render()):
                await pilot.pause()
        backend.infos["http://starting:1"] = ServerInfo("accounts", signup=True)  # the server is up now
        async with asyncio.timeout(10):
            while "accounts" not in str(mode.render()):
                await pilot.pause()
        assert shown(app, "#create-account")


async def test_name_tab_password_enter_in_one_burst_fills_both_fields():
    """A password manager's auto-type, or a paste: the whole line arrives in one read."""
    from tests.ui.fixtures import burst

    backend = FakeBackend({"http://s": ServerInfo("accounts", signup=True)})
    app = app_with(backend, server="http://s")
    async with app.run_test() as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.focused.id == "username"
        burst(app, *"alice", "tab", *"secret-pass", "enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.screen.query_one("#username", Input).value == "alice"
        assert backend.calls == [("http://s", "alice", "secret-pass", False, "accounts")]


@pytest.mark.parametrize("username", ["", "bob"])
async def test_keys_that_arrive_with_the_form_fill_the_fields_they_were_meant_for(username):
    """Typed while the app starts (or as a browser tab's page appears): the keys reach the form
    in the same moment it is built, and must not land in the server field, whose address is
    selected when it takes the focus and would be replaced by them."""
    from textual.screen import Screen

    from tests.ui.fixtures import burst

    backend = FakeBackend({"http://s": ServerInfo("accounts", signup=True)})
    app = ChatApp(preview=Screen)
    async with app.run_test() as pilot:
        await app.push_screen(SignInScreen(backend, server="http://s", username=username))  # mounted, no more
        assert app.focused.id == ("password" if username else "username"), "already, not a moment later"
        burst(app, *([] if username else [*"bob", "tab"]), *"hunter22", "enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen.query_one("#server", Input).value == "http://s"
        assert backend.calls == [("http://s", "bob", "hunter22", False, "accounts")]
