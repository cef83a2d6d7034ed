"""The Textual app: screens on top of one client session, service events turned into Messages.

The app owns the session (``tui_chat.ui.session.Session``, the adapter over the client
service) and one long-lived worker that reads the service's event stream a burst at a time and
posts one typed message per kind of change the burst made (users, link, a conversation,
typing, arrivals, notices), each handler refreshing only its part, once per burst.
Nothing here touches a socket or SQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from textual import events, on, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from tui_chat.ui import images
from tui_chat.ui.commands import ChatCommands
from tui_chat.ui.screens.sign_in import SignInScreen
from tui_chat.ui.timefmt import Clock
from tui_chat.ui.view_model import ConnectionState, RoomInfo


class BuiltInServer(Protocol):
    """The server started inside this process when none runs (``tui_chat.server.embedded``,
    started by the launcher): the UI only starts, stops and names it, never imports it."""

    db: Path

    async def start(self) -> str: ...

    async def stop(self) -> None: ...

    def connections(self) -> int:
        """Open connections to it, this app's own included."""
        ...


if TYPE_CHECKING:
    from tui_chat.ui.screens.chat import ChatScreen
    from tui_chat.ui.session import Change, Incoming, Session

AUTO_AWAY_MINUTES = 10
INCOMING_TOAST_S = 4.0


def terminal_title_sequence(title: str) -> str:
    """OSC 2, which sets the terminal's window or tab title; nothing that could end it early."""
    return "\x1b]2;" + "".join(c for c in title if c.isprintable()) + "\x07"


class ChatApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "tui-chat"
    COMMANDS = App.COMMANDS | {ChatCommands}
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("f1", "help", "Keys"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    # --- what the service changed: one message per kind, one of each per burst ---------------

    class UsersChanged(Message):
        """Statuses, the user list or unread counts changed."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ChatApp.UsersChanged)

    class LinkChanged(Message):
        """The connection's state (or the number of queued messages) changed."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ChatApp.LinkChanged)

    class TypingChanged(Message):
        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ChatApp.TypingChanged)

    class ConversationChanged(Message):
        """Rows of one conversation changed; ``appended`` of them at the end (0: other changes)."""

        def __init__(self, conversation: str, appended: int) -> None:
            super().__init__()
            self.conversation = conversation
            self.appended = appended

    class MessagesArrived(Message):
        def __init__(self, messages: list["Incoming"]) -> None:
            super().__init__()
            self.messages = messages

    class Noticed(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class LeftRoom(Message):
        """This user is no longer in ``room``: close it if it is open."""

        def __init__(self, room: str) -> None:
            super().__init__()
            self.room = room

    class SessionEnded(Message):
        """The server refused the session: back to signing in."""

    class BurstHandled(Message):
        """Every message of one burst before this one is handled: the worker may read the next."""

        def __init__(self, handled: asyncio.Event) -> None:
            super().__init__()
            self.handled = handled

    def __init__(
        self,
        session: "Session | None" = None,
        *,
        clock: Clock | None = None,
        embedded: BuiltInServer | None = None,
        preview: Callable[[], Screen] | None = None,
        bell: bool = False,
        auto_away_minutes: float | None = AUTO_AWAY_MINUTES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.session = session
        self.clock = clock or Clock()
        self.embedded = embedded
        self._preview = preview
        self.bell_on_message = bell
        self.auto_away_minutes = auto_away_minutes
        self._monotonic = monotonic
        self._last_input = monotonic()
        self._auto_away = False
        self._text_before_away = ""
        self._idle_timer = None
        self._incoming_toast = None
        self._incoming_unseen: list = []

    def get_system_commands(self, screen: Screen):
        """Textual's palette entries, without its "Keys": ours (every key of the app) is the one."""
        for command in super().get_system_commands(screen):
            if command.title != "Keys":
                yield command

    # --- start and stop ---------------------------------------------------------------------

    def on_mount(self) -> None:
        if self._preview is not None:  # fixed data, no service: snapshots and widget tests
            self.push_screen(self._preview())
            return
        if self.session is not None and self.session.theme in self.available_themes:
            self.theme = self.session.theme
        # Set the terminal's title now: the image-support query that ran before the app (an APC
        # sequence) is taken by tmux and screen as a title, and would stay there otherwise.
        self.update_title(always=True)
        self.start_up()

    @work(exclusive=True, exit_on_error=False, group="start-up")
    async def start_up(self) -> None:
        session = self.session
        assert session is not None
        note = ""
        if session.config_error:  # shown whatever happens next: signed in, embedded server or not
            self.notify(session.config_error, title="Mistakes in the settings", severity="warning", markup=False, timeout=20)
        if self.embedded is not None:
            try:
                url = await self.embedded.start()
            except RuntimeError as exc:
                self.push_screen(SignInScreen(session, server=session.server, username=session.username, error=str(exc)))
                return
            session.server = url
            session.embedded_note = f"built-in server, data in {self.embedded.db.parent}"
            note = f"No server was running, so tui-chat started one here ({url}); others on this machine can connect to it."
        if await session.resume():
            await self.enter_chat()
            return
        self.push_screen(SignInScreen(session, server=session.server, username=session.username, note=note))

    async def enter_chat(self) -> None:
        from tui_chat.ui.screens.chat import ChatScreen  # not needed before signing in

        session = self.session
        assert session is not None
        session.open()
        screen = ChatScreen(session, clock=self.clock, open_first=session.last_conversation)
        if isinstance(self.screen, SignInScreen):
            self.switch_screen(screen)
        else:
            self.push_screen(screen)
        self.consume_events()
        self.call_after_refresh(session.connect)  # the cached chat first; the network after it is on screen
        if self._idle_timer is None:
            self._idle_timer = self.set_interval(30, self._check_idle)
        self.update_title()

    @on(SignInScreen.SignedIn)
    async def _signed_in(self, event: SignInScreen.SignedIn) -> None:
        if self.session is not None:
            await self.enter_chat()

    @work(exclusive=True, exit_on_error=False, group="service-events")
    async def consume_events(self) -> None:
        """The one long-lived worker: service events become typed Messages on this app, a burst
        at a time. It waits until a burst is handled before taking the next, so a burst of
        incoming messages costs one redraw, not one each, and keys never queue behind a pile
        of redraws."""
        assert self.session is not None
        async for batch in self.session.event_batches():
            change = self.session.describe(batch)
            for message in self._messages_for(change):
                self.post_message(message)
            handled = asyncio.Event()
            self.post_message(self.BurstHandled(handled))
            await handled.wait()

    def _messages_for(self, change: "Change") -> list[Message]:
        messages: list[Message] = [self.Noticed(text) for text in change.notices]
        if change.signed_out:
            return [*messages, self.SessionEnded()]
        messages.extend(self.LeftRoom(room) for room in change.left)
        if change.users:
            messages.append(self.UsersChanged())
        if change.connection:
            messages.append(self.LinkChanged())
        messages.extend(self.ConversationChanged(c, appended) for c, appended in change.conversations.items())
        if change.typing:
            messages.append(self.TypingChanged())
        if change.incoming:
            messages.append(self.MessagesArrived(change.incoming))
        return messages

    async def action_quit(self) -> None:
        others = self._others_on_built_in_server()
        if others:
            from tui_chat.ui.screens.confirm import ConfirmScreen

            question = (f"{others} other {'person is' if others == 1 else 'people are'} connected to the server running "
                        "inside this app. Quitting stops it for them: they reconnect when somebody starts it again. Quit anyway?")  # fmt: skip
            self.push_screen(ConfirmScreen(question, yes="Quit", no="Stay"), self._quit_if_confirmed)
            return
        await self.shut_down()
        self.exit(0)

    async def _quit_if_confirmed(self, confirmed: bool | None) -> None:
        if confirmed:
            await self.shut_down()
            self.exit(0)

    def _others_on_built_in_server(self) -> int:
        if self.embedded is None:
            return 0
        own = 1 if self.session is not None and self.session.connection().state == ConnectionState.ONLINE else 0
        return max(0, self.embedded.connections() - own)

    async def shut_down(self) -> None:
        # No more service events: what stopping reports would reach screens being torn down.
        self.workers.cancel_group(self, "service-events")
        if self.session is not None:
            await self.session.stop()
        if self.embedded is not None:
            await self.embedded.stop()

    # --- service events ---------------------------------------------------------------------

    @property
    def chat_screen(self) -> "ChatScreen | None":
        from tui_chat.ui.screens.chat import ChatScreen

        if not self.is_running:
            return None  # the app is being taken down: its screens' widgets go first, events still arrive
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ChatScreen):
                # Its widgets exist from its mount on (it reads everything then) until it is
                # removed; `display` turns False as soon as its removal begins.
                return screen if screen.ready and screen.display else None
        return None

    @on(BurstHandled)
    def _burst_handled(self, message: BurstHandled) -> None:
        message.handled.set()

    @on(Noticed)
    def _noticed(self, message: Noticed) -> None:
        self.notify(message.text, severity="warning", markup=False, timeout=8)

    @on(SessionEnded)
    def _session_ended(self) -> None:
        self.back_to_sign_in("Your session has ended; sign in again.")

    @on(UsersChanged)
    def _users_changed(self) -> None:
        if (screen := self.chat_screen) is not None:
            screen.refresh_users()
            self.update_title()

    @on(LeftRoom)
    def _left_room(self, message: LeftRoom) -> None:
        if (screen := self.chat_screen) is not None:
            screen.conversation_left(message.room)

    @on(LinkChanged)
    def _link_changed(self) -> None:
        if (screen := self.chat_screen) is not None:
            screen.refresh_connection()

    @on(ConversationChanged)
    def _conversation_changed(self, message: ConversationChanged) -> None:
        if (screen := self.chat_screen) is not None:
            screen.refresh_conversation(message.conversation, appended=message.appended)

    @on(TypingChanged)
    def _typing_changed(self) -> None:
        if (screen := self.chat_screen) is not None:
            screen.refresh_typing()

    @on(MessagesArrived)
    def _messages_arrived(self, message: MessagesArrived) -> None:
        screen = self.chat_screen
        if screen is None:
            return
        elsewhere = [m for m in message.messages if m.conversation != screen.conversation or not self.app_focus]
        if elsewhere:
            self.notify_incoming(elsewhere)

    def notify_incoming(self, messages: list["Incoming"]) -> None:
        """At most one toast about new messages on screen: while it shows, later messages
        update it ("9 new messages from …") instead of stacking a toast each."""
        from textual.notifications import Notification, Notify

        from tui_chat.ui.safe_text import safe_str

        if self.session is not None and not self.session.config.notifications:
            return
        previous = self._incoming_toast
        if previous is not None and not previous.has_expired and previous in self._notifications:
            self._unnotify(previous)  # Textual 8 has no public way to update a toast
            self._incoming_unseen += messages
        else:
            self._incoming_unseen = list(messages)
        unseen = self._incoming_unseen
        senders = list(dict.fromkeys(m.sender for m in unseen))
        if len(unseen) == 1:
            where = f" in {safe_str(unseen[0].conversation)}" if unseen[0].conversation.startswith("#") else ""
            title, text = f"Message from {safe_str(senders[0])}{where}", safe_str(unseen[0].preview)[:120]
        else:
            title = f"{len(unseen)} new messages"
            text = "from " + ", ".join(safe_str(s) for s in senders[:3]) + (f" and {len(senders) - 3} more" if len(senders) > 3 else "")
        self._incoming_toast = Notification(text, title, "information", INCOMING_TOAST_S, markup=False)
        self.post_message(Notify(self._incoming_toast))
        if self.bell_on_message:
            self.bell()

    def update_title(self, *, always: bool = False) -> None:
        unread = self.session.unread_total() if self.session is not None else 0
        title = f"tui-chat — {unread} unread" if unread else "tui-chat"
        if title != self.title or always:
            self.title = title
            if self._driver is not None and not self.is_headless:  # the terminal's tab or window title too
                self._driver.write(terminal_title_sequence(title))

    # --- what the chat screen asks for --------------------------------------------------------

    def _chat_action(self, call: Callable[["Session"], Any]) -> None:
        """Run one service call; a failure is shown, never raised into the UI."""
        if self.session is not None:  # previews have no service behind them
            self.run_service_call(call(self.session))

    @work(exit_on_error=False, group="service-calls")
    async def run_service_call(self, coro) -> None:
        try:
            await coro
        except Exception as exc:  # noqa: BLE001 - any failure becomes a notification
            from tui_chat.ui.safe_text import safe_str

            self.notify(safe_str(str(exc) or type(exc).__name__), title="Something went wrong", severity="error", markup=False)

    def on_chat_screen_send(self, message) -> None:
        self._chat_action(lambda s: s.send(message.to, message.body))

    def on_chat_screen_open(self, message) -> None:
        self._chat_action(lambda s: s.open_conversation(message.conversation))

    def on_chat_screen_load_older(self, message) -> None:
        self._chat_action(lambda s: self._load_older(s, message.conversation))

    async def _load_older(self, session: "Session", conversation: str) -> None:
        """Older rows from the cache come at once (from the server, as events): show them."""
        await session.load_older(conversation)
        if (screen := self.chat_screen) is not None:
            screen.refresh_conversation(conversation)

    def on_chat_screen_mark_read(self, message) -> None:
        if self.app_focus:
            self._chat_action(lambda s: s.mark_read(message.conversation))

    def on_chat_screen_retry(self, message) -> None:
        self._chat_action(lambda s: s.retry(message.message_id))

    def on_chat_screen_save_file(self, message) -> None:
        attachment = self.session.file_of(message.key) if self.session is not None else None
        if attachment is not None:
            self.download(message.key, attachment.name)

    def on_chat_screen_discard(self, message) -> None:
        self._chat_action(lambda s: s.discard(message.message_id))

    def on_chat_screen_typing(self, message) -> None:
        self._chat_action(lambda s: s.typing_notice(message.to))

    # --- status, auto-away, themes, help, sign out --------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        # Every key and click passes through the app first: the one place to notice activity.
        if isinstance(event, (events.Key, events.MouseDown)):
            self._last_input = self._monotonic()
            if self._auto_away:
                self._auto_away = False
                text = self._text_before_away
                self._chat_action(lambda s: s.set_status("online", text))
        if isinstance(event, events.Key) and not event.is_forwarded and self._take_key_now(event):
            return
        await super().on_event(event)

    def _take_key_now(self, event: events.Key) -> bool:
        """Textual hands a key to the focused widget's queue and goes on to the next key, so a
        focus change made while a widget handles a key comes too late for the keys behind it.
        The people filter's keys are therefore handled here, in arrival order (enter there moves
        to the composer with the person chosen, and what follows in the same burst lands there)."""
        from tui_chat.ui.screens.chat import ChatScreen

        screen = self.screen
        if not isinstance(screen, ChatScreen) or self._binding_for(event.key):
            return False
        return screen.take_key(event)

    def _binding_for(self, key: str) -> bool:
        """Whether a priority binding of the app or the screen claims ``key`` (those run first)."""
        for bindings in (self._bindings, self.screen._bindings):
            if any(b.priority for b in bindings.key_to_bindings.get(key, [])):
                return True
        return False

    def _check_idle(self) -> None:
        if self.auto_away_minutes is None or self.session is None or self._auto_away:
            return
        if self.session.my_status() != "online":
            return  # never override a status the person chose
        if self._monotonic() - self._last_input >= self.auto_away_minutes * 60:
            self._auto_away = True
            self._text_before_away = text = self.session.my_status_text()
            self._chat_action(lambda s: s.set_status("away", text))

    def set_status(self, status: str, text: str = "") -> None:
        if self.session is not None:
            self._auto_away = False
            self._chat_action(lambda s: s.set_status(status, text))

    def action_set_status(self) -> None:
        from tui_chat.ui.screens.status import StatusScreen

        current = self.session.my_status() if self.session is not None else "online"
        text = self.session.my_status_text() if self.session is not None else ""

        def chosen(result: tuple[str, str] | None) -> None:
            if result is not None:
                self.set_status(*result)

        self.push_screen(StatusScreen(current, text), chosen)  # what is set now, to change rather than retype

    def action_reconnect(self) -> None:
        if self.session is not None:
            self.session.reconnect_now()

    def action_help(self) -> None:
        from tui_chat.ui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_open_conversation(self, name: str) -> None:
        screen = self.chat_screen
        if screen is not None:
            screen.write_to(name)

    # --- files -------------------------------------------------------------------------------

    def action_attach(self) -> None:
        from tui_chat.ui.screens.attach import AttachScreen

        screen = self.chat_screen
        if screen is None or screen.conversation is None:
            self.notify("Choose someone (or a room) to send a file to first.", severity="warning")
            return
        to = screen.conversation

        def chosen(result) -> None:
            if result is not None:
                path, words = result
                self._chat_action(lambda s: s.send_file(to, path, words))

        self.push_screen(AttachScreen(to), chosen)

    def download(self, message_key: str, name: str) -> None:
        if self.session is not None:
            self.run_download(message_key, name)

    @work(exit_on_error=False, group="downloads")
    async def run_download(self, message_key: str, name: str) -> None:
        """Save a file, then offer to open it with the system's program for it."""
        from tui_chat.ui.safe_text import safe_str
        from tui_chat.ui.screens.confirm import ConfirmScreen

        self.notify(f"Downloading {safe_str(name)}…", markup=False, timeout=3)
        try:
            saved = await self.session.download(message_key)
        except ValueError as exc:
            self.notify(safe_str(str(exc)), title="Not saved", severity="error", markup=False)
            return

        def answered(open_it: bool | None) -> None:
            if open_it:
                from tui_chat.ui.opener import open_with_system

                problem = open_with_system(saved)
                if problem:
                    self.notify(safe_str(problem), severity="warning", markup=False)

        attachment = self.session.file_of(message_key) if self.session is not None else None
        if attachment is not None and images.is_previewable(attachment.type):
            from tui_chat.ui.screens.preview import ImagePreviewScreen

            self.push_screen(ImagePreviewScreen(saved, name), answered)
            return
        question = f"Saved as {safe_str(str(saved))}. Open it with the program your system uses for it?"
        self.push_screen(ConfirmScreen(question, yes="Open", no="Not now"), answered)

    # --- search --------------------------------------------------------------------------------

    def action_search(self) -> None:
        from tui_chat.ui.screens.search import SearchScreen

        session = self.session
        if session is None or self.chat_screen is None:
            return
        screen = SearchScreen(session.search, session.not_fully_cached, session.fetch_older_history, me=session.me, clock=self.clock)
        self.push_screen(screen, self.show_search_hit)

    def show_search_hit(self, hit) -> None:
        """Open the result's conversation with the history back to it, the cursor on it."""
        screen = self.chat_screen
        if hit is None or screen is None or self.session is None:
            return
        found = self.session.reveal(hit.peer, hit.id)
        screen.open_conversation(hit.peer)
        view = screen.conversation_view
        if found and view.move_cursor_to(hit.id):
            screen.set_focus(view)
        else:
            self.notify("That message is no longer in this device's history.", severity="warning")

    # --- rooms ---------------------------------------------------------------------------------

    def _open_room(self) -> RoomInfo | None:
        """The room open on the chat screen, if a room is open."""
        screen = self.chat_screen
        conversation = screen.conversation if screen is not None else None
        return screen.data.room(conversation) if conversation is not None and conversation.startswith("#") else None

    def _people(self) -> list[str]:
        screen = self.chat_screen
        return sorted(u.name for u in screen.data.users() if not u.is_me and not u.is_room) if screen is not None else []

    def action_create_room(self) -> None:
        from tui_chat.ui.screens.rooms import CreateRoomScreen

        if self.session is None or self.chat_screen is None:
            return
        session = self.session
        self.push_screen(CreateRoomScreen(self._people(), session.create_room), self._room_created)

    def _room_created(self, room: str | None) -> None:
        if room is not None:
            self.action_open_conversation(room)

    def action_invite(self) -> None:
        from tui_chat.ui.screens.rooms import PickPersonScreen

        info = self._open_room()
        if info is None:
            return
        room, members = info.name, {m.name for m in info.members}
        people = [name for name in self._people() if name not in members]
        self.push_screen(PickPersonScreen(f"Invite to {room}", people, empty="Everyone is in this room already."),
                         lambda user: user and self._room_call("invite", room, user, done=f"{user} is now in {room}."))  # fmt: skip

    def action_remove_member(self) -> None:
        from tui_chat.ui.screens.rooms import PickPersonScreen

        info = self._open_room()
        if info is None:
            return
        room, others = info.name, [m.name for m in info.members if not m.is_me]
        self.push_screen(PickPersonScreen(f"Remove from {room}", others, empty="Nobody else is in this room."),
                         lambda user: user and self._room_call("remove_member", room, user, done=f"{user} is no longer in {room}."))  # fmt: skip

    def action_rename_room(self) -> None:
        from tui_chat.ui.screens.rooms import RoomTitleScreen

        info = self._open_room()
        if info is None:
            return
        room = info.name
        self.push_screen(RoomTitleScreen(room, info.title),
                         lambda title: title is not None and self._room_call("set_room_title", room, title))  # fmt: skip

    def action_leave_room(self) -> None:
        from tui_chat.ui.screens.confirm import ConfirmScreen

        info = self._open_room()
        if info is None:
            return
        room = info.name
        question = f"Leave {room}? Its messages go from this device too; a member can invite you back."
        self.push_screen(ConfirmScreen(question, yes="Leave", no="Stay"),
                         lambda yes: yes and self._room_call("leave_room", room, done=f"You left {room}."))  # fmt: skip

    def _room_call(self, action: str, room: str, *args: str, done: str = "") -> None:
        if self.session is not None:
            self.run_room_call(self.session.room_action(action, room, *args), done)

    @work(exit_on_error=False, group="service-calls")
    async def run_room_call(self, coro, done: str) -> None:
        """A room change the server makes: said when done, and why when it was not."""
        from tui_chat.ui.safe_text import safe_str

        try:
            await coro
        except ValueError as exc:
            self.notify(safe_str(str(exc)), title="Not done", severity="error", markup=False)
            return
        if done:
            self.notify(safe_str(done), markup=False, timeout=4)

    def watch_theme(self, theme: str) -> None:
        if self.session is not None and self._preview is None:
            self.session.save_theme(theme)

    async def action_sign_out(self) -> None:
        if self.session is None:
            return
        heard = await self.session.sign_out()
        self.back_to_sign_in("")
        if not heard:
            self.notify("Signed out on this device. The server could not be reached to end the session there; "
                        "it ends by itself after 30 days unused.", severity="warning", timeout=10)  # fmt: skip

    def back_to_sign_in(self, error: str) -> None:
        """Leave the chat (signed out, or the server refused our session) for the sign-in form."""
        assert self.session is not None
        self.workers.cancel_group(self, "service-events")
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(SignInScreen(self.session, server=self.session.server, username=self.session.username, error=error))
