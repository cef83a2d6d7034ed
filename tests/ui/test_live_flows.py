"""The whole app over the REAL client service and a REAL server: what a person does and sees.

Each test signs a fresh user in through the sign-in screen; the other side of the
conversation is a raw WebSocket test client. Waiting is on the app's own service events
(``LiveApp.wait_for``), never on wall-clock sleeps.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tui_chat_dev.wsclient import WsClient, login, signup
from tui_chat.client.backoff import Backoff
from tui_chat.client.service import ChatClient
from tui_chat.ui.app import ChatApp
from tui_chat.ui.screens.chat import ChatScreen
from tui_chat.ui.screens.sign_in import SignInScreen
from tui_chat.ui.session import Session

PASSWORD = "correct horse battery"
WAIT_S = 10.0
_names = itertools.count(1)


class LiveApp(ChatApp):
    """The real app; tests can wait until a condition holds after the next service event."""

    def __init__(self, session: Session) -> None:
        super().__init__(session, auto_away_minutes=None)
        self.changed = asyncio.Event()

    def on_chat_app_burst_handled(self, message) -> None:
        self.call_next(self.changed.set)  # after the app's own handler has redrawn

    async def wait_for(self, predicate, pilot, what: str = "condition") -> None:
        async with asyncio.timeout(WAIT_S):
            while True:
                await pilot.pause()
                if predicate():
                    return
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), 1.0)
                except TimeoutError:
                    pass  # re-check: some changes (a screen switch) are not service events
        raise AssertionError(what)


def fast_client(url: str) -> ChatClient:
    """A client that reconnects within a fraction of a second (tests restart the server)."""
    return ChatClient(url, connection_options={"backoff": Backoff(base=0.05, cap=0.3)})


@pytest.fixture
def make_app(live_server, memory_keyring, private_dirs):
    def make(name: str) -> LiveApp:
        return LiveApp(Session(server=live_server.http_url, username=name, client_factory=fast_client))

    return make


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


async def sign_in(app: LiveApp, pilot) -> ChatScreen:
    await app.wait_for(lambda: isinstance(app.screen, SignInScreen), pilot, "the sign-in screen")
    await pilot.click("#password")
    await pilot.press(*PASSWORD, "enter")
    await app.wait_for(lambda: isinstance(app.screen, ChatScreen) and app.screen.data.connection().state == "online", pilot, "online")
    return app.screen


def bar(screen: ChatScreen) -> str:
    return str(screen.query_one("#connection").render())


def view_text(screen: ChatScreen) -> str:
    view = screen.conversation_view
    return "\n".join(view.render_line(y).text for y in range(view.size.height))


async def peer(live_server, name: str) -> WsClient:
    token = await signup(live_server.http_url, name, PASSWORD)
    return await WsClient.open(live_server.ws_url, token, name)


async def test_sign_in_and_send_while_online(live_server, make_app):
    me, other = unique("ann"), unique("ben")
    await signup(live_server.http_url, me, PASSWORD)
    ben = await peer(live_server, other)
    app = make_app(me)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(app, pilot)
        assert f"{me}@127.0.0.1" in bar(screen) and "● connected" in bar(screen)
        await app.wait_for(lambda: other in [u.name for u in screen.data.users()], pilot, "the other user listed")
        screen.open_conversation(other)
        await pilot.press(*"hello ben", "enter")
        await app.wait_for(lambda: [r.mark for r in screen.conversation_view.rows] == ["sent"], pilot, "sent mark")
        assert "hello ben" in view_text(screen) and "✓" in view_text(screen)
        frame = await ben.expect("message")
        assert frame["message"]["body"] == "hello ben" and frame["message"]["from"] == me
        await ben.send({"action": "markRead", "with": me, "seq": frame["message"]["seq"]})
        await app.wait_for(lambda: [r.mark for r in screen.conversation_view.rows] == ["read"], pilot, "read mark")
        assert "✓✓" in view_text(screen)
    await ben.close()


async def test_send_offline_then_reconnect(live_server, make_app):
    me, other = unique("cat"), unique("dan")
    await signup(live_server.http_url, me, PASSWORD)
    await signup(live_server.http_url, other, PASSWORD)
    app = make_app(me)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(app, pilot)
        screen.open_conversation(other)
        live_server.stop()
        await app.wait_for(lambda: screen.data.connection().state != "online", pilot, "offline")
        await pilot.press(*"queued while offline", "enter")
        await app.wait_for(lambda: [r.mark for r in screen.conversation_view.rows] == ["pending"], pilot, "pending mark")
        assert "1 queued" in bar(screen) and "◷" in view_text(screen)
        live_server.start()
        await app.wait_for(lambda: [r.mark for r in screen.conversation_view.rows] == ["sent"], pilot, "sent after reconnect")
        assert "connected" in bar(screen) and "queued" not in bar(screen)


async def test_message_in_another_conversation_counts_and_notifies(live_server, make_app):
    me, writer, quiet = unique("eve"), unique("fay"), unique("gus")
    await signup(live_server.http_url, me, PASSWORD)
    await signup(live_server.http_url, quiet, PASSWORD)
    fay = await peer(live_server, writer)
    app = make_app(me)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(app, pilot)
        screen.open_conversation(quiet)
        await fay.request({"action": "sendMessage", "id": "msg-from-fay-1", "to": me, "body": "psst [b]over here[/b]"})
        await app.wait_for(lambda: any(u.name == writer and u.unread == 1 for u in screen.data.users()), pilot, "unread count")
        users = screen.query_one("#users").users
        assert users[0].name == writer  # unread first
        assert any("psst [b]over here[/b]" in str(n.message) and writer in n.title for n in app._notifications)
        assert "1 unread" in app.title
        screen.open_conversation(writer)
        await app.wait_for(lambda: all(u.unread == 0 for u in screen.data.users()), pilot, "read when opened")
        assert "psst [b]over here[/b]" in view_text(screen) and app.title == "tui-chat"
    await fay.close()


async def test_failed_message_can_be_retried_and_discarded(live_server, make_app):
    me = unique("hal")
    await signup(live_server.http_url, me, PASSWORD)
    app = make_app(me)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(app, pilot)
        screen.open_conversation("nobody-here")  # the server knows no such user
        await pilot.press(*"into the void", "enter")
        await app.wait_for(lambda: [r.mark for r in screen.conversation_view.rows] == ["failed"], pilot, "failed mark")
        assert "not sent: " in view_text(screen) and "ctrl+r retry" in view_text(screen)
        await pilot.press("ctrl+r")
        await app.wait_for(lambda: [r.mark for r in screen.conversation_view.rows] == ["failed"], pilot, "failed again")
        await pilot.press("ctrl+g")
        await app.wait_for(lambda: not screen.conversation_view.rows, pilot, "discarded")
        assert "into the void" not in view_text(screen)


async def test_replaced_by_another_session_of_this_device(live_server, make_app):
    me = unique("ivy")
    await signup(live_server.http_url, me, PASSWORD)
    app = make_app(me)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(app, pilot)
        client = app.session.client
        same_device = await WsClient.open(live_server.ws_url, client.tokens.access, me, device=client.device)
        await app.wait_for(lambda: screen.data.connection().state == "replaced", pilot, "replaced")
        assert "replaced by another session" in bar(screen)
        await same_device.close()


async def test_signs_in_without_asking_when_the_keyring_has_a_session(live_server, make_app, memory_keyring, private_dirs):
    me = unique("jan")
    await signup(live_server.http_url, me, PASSWORD)
    first = make_app(me)
    async with first.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(first, pilot)
        screen.open_conversation(me)  # notes to self
        await pilot.pause()
    assert memory_keyring.passwords  # the refresh token, never the password
    assert PASSWORD not in memory_keyring.passwords.values()
    remembered = (private_dirs / "config" / "config.toml").read_text()
    assert f'username = "{me}"' in remembered and live_server.http_url in remembered
    assert Session.from_config().username == me  # the next start fills the form in
    again = make_app(me)
    async with again.run_test(size=(100, 30)) as pilot:
        await again.wait_for(lambda: isinstance(again.screen, ChatScreen), pilot, "straight to the chat")
        assert not any(isinstance(s, SignInScreen) for s in again.screen_stack)
        assert again.screen.conversation == me, "the conversation open at the last quit is open again"


async def test_typing_status_theme_and_auto_away(live_server, make_app, private_dirs):
    me, other = unique("kim"), unique("lou")
    await signup(live_server.http_url, me, PASSWORD)
    lou = await peer(live_server, other)
    app = make_app(me)
    clock = [0.0]
    app._monotonic = lambda: clock[0]
    app.auto_away_minutes = 10
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(app, pilot)
        screen.open_conversation(other)
        await lou.send({"action": "typing", "to": me})
        await app.wait_for(lambda: "is typing" in str(screen.query_one("#typing").render()), pilot, "typing shown")
        assert other in str(screen.query_one("#typing").render())

        clock[0] += 11 * 60  # idle for eleven minutes
        app._check_idle()
        await app.wait_for(lambda: app.session.my_status() == "away", pilot, "auto-away")
        await pilot.press("x")  # back at the keyboard
        await app.wait_for(lambda: app.session.my_status() == "online", pilot, "back online")

        app.set_status("busy", "deep work")
        await app.wait_for(lambda: app.session.my_status_text() == "deep work", pilot, "status set")
        await pilot.press("f2")
        await pilot.pause()
        assert app.screen.query_one("#status-text").value == "deep work", "F2 shows the status set now"
        assert app.screen.query_one("#status-busy").value
        await pilot.press("escape")

        app.theme = "nord"
        await pilot.pause()
    assert 'theme = "nord"' in (private_dirs / "config" / "config.toml").read_text()
    await lou.close()


async def test_built_in_server_when_none_is_configured(tmp_path, memory_keyring, private_dirs):
    from tui_chat.server.embedded import EmbeddedServer

    embedded = EmbeddedServer(port=0, db=tmp_path / "embedded" / "server.db")
    app = LiveApp(Session(client_factory=fast_client))
    app.embedded = embedded
    async with app.run_test(size=(100, 34)) as pilot:
        await app.wait_for(lambda: isinstance(app.screen, SignInScreen), pilot, "sign-in")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "started one here" in str(app.screen.query_one("#sign-in-note").render())
        await pilot.click("#username")
        await pilot.press(*"newbie")
        await pilot.click("#password")
        await pilot.press(*PASSWORD)
        await pilot.click("#create-account")
        await app.wait_for(lambda: isinstance(app.screen, ChatScreen) and app.screen.data.connection().state == "online", pilot, "online")
        assert "built-in server" in bar(app.screen)
        await app.shut_down()
    assert not embedded.running


async def test_wrong_password_and_unreachable_server_are_said_in_words(live_server, make_app):
    me = unique("max")
    await signup(live_server.http_url, me, PASSWORD)
    app = make_app(me)
    async with app.run_test(size=(100, 34)) as pilot:
        await app.wait_for(lambda: isinstance(app.screen, SignInScreen), pilot, "sign-in")
        await pilot.click("#password")
        await pilot.press(*"not the password", "enter")
        error = app.screen.query_one("#sign-in-error")
        await app.wait_for(lambda: "Wrong username or password." in str(error.render()), pilot, "wrong password")
        app.screen.query_one("#server").value = "http://127.0.0.1:9"  # nothing listens on the discard port
        await app.wait_for(lambda: "Cannot reach the server" in str(app.screen.query_one("#server-mode").render()), pilot, "unreachable")
        assert "Traceback" not in str(error.render())


async def test_switching_between_real_conversations_never_shows_an_empty_view(live_server, make_app, monkeypatch):
    from tui_chat.ui.widgets.conversation import ConversationView

    me, first, second = unique("ned"), unique("oli"), unique("pam")
    await signup(live_server.http_url, me, PASSWORD)
    for name in (first, second):
        writer = await peer(live_server, name)
        for i in range(30):
            await writer.request({"action": "sendMessage", "id": f"{name}-msg-{i:04d}", "to": me, "body": f"{name} line {i}"})
        await writer.close()
    drawn: list[tuple[str | None, int]] = []
    original = ConversationView.render_line

    def spy(self, y):
        drawn.append((self.conversation, len(self.rows)))
        return original(self, y)

    monkeypatch.setattr(ConversationView, "render_line", spy)
    app = make_app(me)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(app, pilot)
        await app.wait_for(lambda: len(screen.data.rows(first)) == 30 and len(screen.data.rows(second)) == 30, pilot, "history")
        for name in (first, second, first):
            screen.open_conversation(name)
            await pilot.pause()
            assert f"{name} line 29" in view_text(screen)
    assert (first, 0) not in drawn and (second, 0) not in drawn


async def test_without_a_keyring_the_session_is_kept_in_a_file_when_the_config_asks(live_server, private_dirs):
    import keyring
    from keyring.backends.fail import Keyring as NoKeyring

    from tui_chat.client.config import Config

    name = unique("filetok")
    await signup(live_server.http_url, name)
    previous = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())
    try:
        config = Config(server=live_server.http_url, username=name, store_tokens_in_file=True)
        first = Session(config)
        await first.sign_in(live_server.http_url, name, PASSWORD, create=False, mode="accounts")
        kept = list((private_dirs / "data").rglob("refresh-*"))
        assert len(kept) == 1 and (kept[0].stat().st_mode & 0o777) == 0o600
        assert PASSWORD not in kept[0].read_text()
        assert await Session(config).resume(), "the next start signs in from the file"
        assert not await Session(Config(server=live_server.http_url, username=name)).resume(), "only when asked"
    finally:
        keyring.set_keyring(previous)


async def test_statuses_are_shown_unknown_while_disconnected(live_server, make_app):
    me, other = unique("gus"), unique("hal")
    await signup(live_server.http_url, me, PASSWORD)
    hal = await peer(live_server, other)
    app = make_app(me)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(app, pilot)

        def status_of(name: str) -> str | None:
            return next((u.status for u in screen.query_one("#users").users if u.name == name), None)

        await app.wait_for(lambda: status_of(other) == "online", pilot, "the other user online")
        screen.open_conversation(other)
        live_server.stop()
        await app.wait_for(lambda: status_of(other) == "unknown", pilot, "shown unknown while we are not connected")
        assert "status unknown" in str(screen.query_one("#conversation-title").render())
        prompt = str(screen.query_one("#users").options.get_option(other).prompt)
        assert "◌" in prompt and "status unknown" in prompt and "online" not in prompt
        live_server.start()
        await app.wait_for(lambda: status_of(other) == "offline", pilot, "fresh again: hal's socket died with the server")
    await hal.close()


async def test_with_a_saved_session_the_app_opens_offline_from_the_cache_and_delivers_once(live_server, make_app):
    me, other = unique("ola"), unique("pia")
    await signup(live_server.http_url, me, PASSWORD)
    pia = await peer(live_server, other)
    first = make_app(me)
    async with first.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(first, pilot)
        screen.open_conversation(other)
        await pilot.press(*"before the outage", "enter")
        await first.wait_for(lambda: [r.mark for r in screen.conversation_view.rows] == ["sent"], pilot, "sent")
        await first.action_quit()
    live_server.stop()
    try:
        again = make_app(me)
        async with again.run_test(size=(100, 30)) as pilot:
            await again.wait_for(lambda: isinstance(again.screen, ChatScreen), pilot, "the chat screen, from the cache")
            screen = again.screen
            assert screen.data.connection().state != "online"
            assert [(row.name, row.is_me) for row in screen.data.users() if row.is_me] == [(me, True)], "you are in the list offline too"
            screen.open_conversation(other)
            await pilot.pause()
            assert "before the outage" in view_text(screen), "history from the cache"
            await pilot.press(*"typed while the server is down", "enter")
            await again.wait_for(lambda: [r.mark for r in screen.conversation_view.rows] == ["sent", "pending"], pilot, "queued")
            assert "1 queued" in bar(screen)
            live_server.start()
            await again.wait_for(lambda: [r.mark for r in screen.conversation_view.rows] == ["sent", "sent"], pilot, "delivered after the server came back")
            await again.action_quit()
    finally:
        if live_server.proc is None or live_server.proc.poll() is not None:
            live_server.start()
    pia = await WsClient.open(live_server.ws_url, await login(live_server.http_url, other, PASSWORD), other, device="second-device")
    page = await pia.request({"action": "getMessages", "with": me})
    assert [m["body"] for m in page["items"]] == ["before the outage", "typed while the server is down"], "each stored once"


async def test_a_burst_of_messages_is_one_notification_and_none_for_the_open_conversation(live_server, make_app):
    me, loud, open_peer = unique("ivy"), unique("jon"), unique("kit")
    await signup(live_server.http_url, me, PASSWORD)
    jon = await peer(live_server, loud)
    kit = await peer(live_server, open_peer)
    app = make_app(me)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(app, pilot)
        screen.open_conversation(open_peer)
        for i in range(7):  # in flight together: they reach the app as one burst
            await kit.send({"action": "sendMessage", "id": f"kit-open-{i:04d}", "to": me, "body": f"here {i}"})
        await app.wait_for(lambda: len(screen.conversation_view.rows) == 7, pilot, "the open conversation shows all")
        assert not app._notifications, "no toast for the conversation on screen"
        for i in range(7):
            await jon.send({"action": "sendMessage", "id": f"jon-burst-{i:04d}", "to": me, "body": f"burst {i}"})
        await app.wait_for(lambda: any(u.name == loud and u.unread == 7 for u in screen.data.users()), pilot, "7 unread")
        toasts = list(app._notifications)
        assert [t.title for t in toasts] == ["7 new messages"], "one toast, kept up to date, however the burst arrived"
        assert loud in str(toasts[0].message)
    await jon.close(), await kit.close()


async def test_a_broken_config_file_is_said_even_when_the_app_goes_on(live_server, memory_keyring, private_dirs):
    (private_dirs / "config" / "config.toml").write_text('server = "ftp://nowhere"\n')
    session = Session.from_config(server=live_server.http_url)
    app = LiveApp(session)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.wait_for(lambda: isinstance(app.screen, SignInScreen), pilot, "the sign-in screen")
        warnings = [n for n in app._notifications if n.severity == "warning"]
        assert warnings and "server must be a URL" in str(warnings[0].message)


async def test_following_a_conversation_reads_nothing_from_the_cache_and_shows_what_it_holds(live_server, make_app, monkeypatch):
    """The UI keeps the shown conversation in memory from the service's events: arrivals, our
    sends and their acks, read receipts. Only opening it and scrolling back read the cache."""
    me, other = unique("lea"), unique("max")
    await signup(live_server.http_url, me, PASSWORD)
    mx = await peer(live_server, other)
    app = make_app(me)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await sign_in(app, pilot)
        screen.open_conversation(other)
        await pilot.pause()
        client = app.session.client
        reads: list[str] = []
        for name in ("timeline_slice", "newest_rows", "older_rows", "conversations", "timeline_length"):
            real = getattr(client, name)
            monkeypatch.setattr(client, name, lambda *a, _real=real, _name=name, **k: (reads.append(_name), _real(*a, **k))[1])
        for i in range(20):
            await mx.send({"action": "sendMessage", "id": f"max-follow-{i:04d}", "to": me, "body": f"from max {i}"})
            if i % 5 == 0:
                await pilot.press(*f"reply {i}", "enter")
        await app.wait_for(lambda: len(screen.conversation_view.rows) == 24 and all(r.mark in ("none", "read") for r in screen.conversation_view.rows), pilot, "all 24 shown")
        # max wrote after each of our replies, and writing moves his read mark: ✓✓ without a read event
        await pilot.press(*"last word", "enter")  # after all of max's: his read marker can reach it
        await app.wait_for(lambda: screen.conversation_view.rows[-1].mark == "sent", pilot, "the last word sent")
        while (frame := await mx.expect("message"))["message"]["body"] != "last word":
            pass
        await mx.send({"action": "markRead", "with": me, "seq": frame["message"]["seq"]})
        await app.wait_for(lambda: {r.mark for r in screen.conversation_view.rows if r.mine} == {"read"}, pilot, "ours read")
        assert reads == [], "following along read the cache"
        shown = [(r.key, r.mark) for r in screen.conversation_view.rows]
        monkeypatch.undo()
        kept = [(item.id, item.state if item.sender == me else "none") for item in client.timeline(other)]
        assert shown == kept, "the window is exactly what the cache holds, in server order"
    await mx.close()


async def test_service_events_arriving_while_the_app_closes_are_dropped_not_raised(live_server, make_app):
    """Presence and messages keep coming while the app is taken down: an event reaching a chat
    screen whose widgets are already gone must be dropped (it raised NoMatches on a busy machine)."""
    me = unique("zed")
    await signup(live_server.http_url, me, PASSWORD)
    app = make_app(me)
    storm: asyncio.Task | None = None
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(app, pilot)

        async def keep_posting() -> None:
            while True:
                for event in (ChatApp.UsersChanged(), ChatApp.LinkChanged(), ChatApp.TypingChanged()):
                    app.post_message(event)
                await asyncio.sleep(0)

        storm = asyncio.create_task(keep_posting())
        await pilot.pause()
    storm.cancel()
    assert app.return_code in (0, None)


@pytest.mark.parametrize("how", ["ctrl+q", "shut_down then exit"])
async def test_quitting_while_the_link_reports_its_stop_ends_cleanly(live_server, make_app, how):
    """Quitting stops the connection, which reports "stopped": that must not reach a chat screen
    whose widgets are already being taken down (it raised NoMatches on the way out)."""
    me = unique("quin")
    await signup(live_server.http_url, me, PASSWORD)
    app = make_app(me)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(app, pilot)
        if how == "ctrl+q":
            await pilot.press("ctrl+q")
        else:
            await app.shut_down()  # what the app's embedder does; run_test then exits the app
    assert app.return_code in (0, None)
