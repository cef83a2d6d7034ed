"""The chat screen: people on the left, the open conversation and the composer on the right.

The screen only displays what a :class:`ChatData` gives it and posts what the person asks
for as Messages (``ChatScreen.Send``, ``ChatScreen.Open``, …); the App turns those into client
service calls. Snapshot tests drive it with fixed data and no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tui_chat.ui.safe_text import safe_content
from tui_chat.ui.screens.focus_keys import FOCUS_KEYS
from tui_chat.ui.timefmt import Clock
from tui_chat.ui.view_model import STATUS_MARKS, ConnectionRow, MessageRow, RoomInfo, UserRow
from tui_chat.ui.widgets.composer import Composer
from tui_chat.ui.widgets.connection_bar import ConnectionBar
from tui_chat.ui.widgets.conversation import DISCARD_KEY, RETRY_KEY, ConversationView
from tui_chat.ui.widgets.user_list import UserList

NARROW_WIDTH = 80
"""Below this many columns the people list gets narrower."""
TYPISTS_NAMED = 2
"""Names spelled out on the typing line before "and N more"."""
PRESENCE_ORDER = {"online": 0, "away": 1, "busy": 2}
"""A room's header lists members who are there first."""


class ChatData(Protocol):
    """What the chat screen reads; the App's adapter over the client service implements it."""

    me: str

    def users(self) -> Sequence[UserRow]: ...

    def rows(self, conversation: str) -> Sequence[MessageRow]: ...

    def has_more(self, conversation: str) -> bool: ...

    def typists(self, conversation: str) -> Sequence[str]: ...

    def room(self, conversation: str) -> RoomInfo | None: ...

    def connection(self) -> ConnectionRow: ...


class ChatScreen(Screen[None]):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [
        Binding("f1", "app.help", "Keys"),
        Binding("f2", "app.set_status", "Status"),
        Binding("ctrl+n", "app.create_room", "New room", show=False),
        Binding("ctrl+t", "app.attach", "Send a file", show=False),
        Binding("ctrl+f", "app.search", "Search", show=False),
        # Keys that move focus are priority bindings: the app runs them before it routes the next
        # key, and they move focus at once (``set_focus``, not the deferred ``focus()``), so keys
        # that arrive in one burst (over SSH, from a paste) land where the person sent them.
        Binding("ctrl+o", "focus_people", "People", priority=True),
        *FOCUS_KEYS,
        Binding(RETRY_KEY, "retry", "Retry", priority=True),
        Binding(DISCARD_KEY, "discard", "Discard", priority=True),
        Binding("escape", "focus_composer", "Write", show=False, priority=True),
        # From the composer, paging scrolls the conversation (a message being written is short).
        Binding("pageup", "page_conversation(-1)", "Older", show=False, priority=True),
        Binding("pagedown", "page_conversation(1)", "Newer", show=False, priority=True),
    ]

    conversation: reactive[str | None] = reactive(None, init=False)
    narrow: reactive[bool] = reactive(False)

    # --- what the person asks for (handled by the App) -------------------------------------

    class Send(Message):
        def __init__(self, to: str, body: str) -> None:
            super().__init__()
            self.to = to
            self.body = body

    class Open(Message):
        def __init__(self, conversation: str) -> None:
            super().__init__()
            self.conversation = conversation

    class LoadOlder(Message):
        def __init__(self, conversation: str) -> None:
            super().__init__()
            self.conversation = conversation

    class SaveFile(Message):
        """Save the file of the message ``key`` (enter on it)."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class MarkRead(Message):
        def __init__(self, conversation: str) -> None:
            super().__init__()
            self.conversation = conversation

    class Retry(Message):
        def __init__(self, message_id: str) -> None:
            super().__init__()
            self.message_id = message_id

    class Discard(Message):
        def __init__(self, message_id: str) -> None:
            super().__init__()
            self.message_id = message_id

    class Typing(Message):
        def __init__(self, to: str) -> None:
            super().__init__()
            self.to = to

    def __init__(self, data: ChatData, *, clock: Clock | None = None, open_first: str | None = None) -> None:
        super().__init__()
        self.data = data
        self.clock = clock or Clock()
        self._open_first = open_first
        self._shown: dict[str, object] = {}
        """What each one-line Static shows: updating one re-lays the screen out, so only on change."""
        self._had_failed = False
        self.ready = False
        """True from its mount on: its widgets exist, and it has read everything once."""

    def _show(self, selector: str, content) -> None:
        """Update a Static only when its content changes (a burst would re-lay out the screen each time)."""
        if self._shown.get(selector) != content:
            self._shown[selector] = content
            self.query_one(selector, Static).update(content)

    def compose(self) -> ComposeResult:
        yield Header(icon="", show_clock=False)
        with Horizontal(id="chat-body"):
            with Vertical(id="sidebar"):
                yield UserList(id="users", clock=self.clock)
            with Vertical(id="main"):
                yield Static("", id="conversation-title")
                with Vertical(id="conversation-pane"):
                    yield ConversationView(clock=self.clock, id="conversation", empty_text="Choose someone on the left to talk to.")
                    yield Static("", id="new-below")
                yield Static("", id="typing")
                yield Static("", id="composer-problem")
                yield Composer(id="composer", placeholder="Write a message — enter sends, ctrl+j new line")
        yield ConnectionBar(id="connection")
        yield Footer()

    def on_mount(self) -> None:
        self.ready = True
        self.watch(self.conversation_view, "unseen", self._unseen_changed)
        self.query_one("#new-below").display = False
        self.query_one("#composer-problem").display = False
        self.refresh_users()
        self.refresh_connection()
        self.narrow = self.app.size.width < NARROW_WIDTH
        self.query_one(Composer).focus()
        if self._open_first:
            self.open_conversation(self._open_first)

    def on_resize(self) -> None:
        self.narrow = self.size.width < NARROW_WIDTH

    def watch_narrow(self, narrow: bool) -> None:
        self.set_class(narrow, "-narrow")

    @property
    def conversation_view(self) -> ConversationView:
        return self.query_one(ConversationView)

    # --- updates from the App ---------------------------------------------------------------

    def refresh_users(self) -> None:
        users = self.data.users()
        self.query_one(UserList).set_users(users)
        self._update_title_line(users)

    def refresh_connection(self) -> None:
        self.query_one(ConnectionBar).connection = self.data.connection()

    def refresh_conversation(self, conversation: str | None = None, *, appended: int = 0) -> None:
        """The open conversation changed: merge, never clear (no flicker, no lost scroll)."""
        if conversation is not None and conversation != self.conversation:
            return
        if self.conversation is None:
            return
        view = self.conversation_view
        view.set_rows(self.data.rows(self.conversation), has_more=self.data.has_more(self.conversation), appended=appended)
        self.refresh_typing()
        self._refresh_failed_bindings()
        if view.at_bottom:
            self.post_message(self.MarkRead(self.conversation))

    def _refresh_failed_bindings(self) -> None:
        """Retry/discard show in the footer only while something failed; the footer is rebuilt
        on every binding refresh, so only when that changes."""
        failed = self._first_failed() is not None
        if failed != self._had_failed:
            self._had_failed = failed
            self.refresh_bindings()

    def refresh_typing(self) -> None:
        typists = list(self.data.typists(self.conversation)) if self.conversation else []
        self._show("#typing", typing_line(typists))

    def open_conversation(self, conversation: str) -> None:
        """Show ``conversation`` at once from what is cached; the server's reply merges in later."""
        self.set_reactive(ChatScreen.conversation, conversation)
        self.conversation_view.empty_text = "No messages yet — say hello."
        self.conversation_view.show(conversation, self.data.rows(conversation), has_more=self.data.has_more(conversation))
        self.query_one(UserList).highlight(conversation)
        self._update_title_line(self.data.users())
        self.refresh_typing()
        self._refresh_failed_bindings()
        self.post_message(self.Open(conversation))
        if self.conversation_view.at_bottom:  # everything is on screen: it has been seen
            self.post_message(self.MarkRead(conversation))

    def _update_title_line(self, users: Sequence[UserRow]) -> None:
        if self.conversation is None:
            self._show("#conversation-title", Content.styled("No conversation open", "dim"))
            return
        room = self.data.room(self.conversation)
        if room is not None:
            self._show("#conversation-title", room_header(room))
            return
        user = next((u for u in users if u.name == self.conversation), None)
        parts: list = [safe_content(self.conversation, "bold")]
        if user is not None:
            word = "status unknown until reconnected" if user.status == "unknown" else user.status
            parts.extend(["  ", STATUS_MARKS.get(user.status, "?"), " ", (word, "dim")])
            if user.text and user.status != "unknown":
                parts.extend([("  ", "dim"), safe_content(user.text, "dim italic")])
        self._show("#conversation-title", Content.assemble(*parts))

    def conversation_left(self, room: str) -> None:
        """This user is no longer in ``room``: if it is open, close it (nothing of it is kept)."""
        if self.conversation != room:
            return
        self.set_reactive(ChatScreen.conversation, None)
        view = self.conversation_view
        view.empty_text = f"You are no longer in {room}. Choose someone or a room on the left."
        view.show(None, [])
        self._update_title_line(self.data.users())
        self.refresh_typing()

    def _unseen_changed(self, unseen: int) -> None:
        marker = self.query_one("#new-below", Static)
        marker.display = unseen > 0
        marker.update(f"{unseen} new ↓  (end)")

    # --- events from the widgets ------------------------------------------------------------

    @on(UserList.Selected)
    def _user_selected(self, event: UserList.Selected) -> None:
        self.open_conversation(event.name)
        self.set_focus(self.query_one(Composer))

    @on(Composer.Submitted)
    def _composer_submitted(self, event: Composer.Submitted) -> None:
        if self.conversation is None:
            self.notify("Choose someone to write to first.", severity="warning")
            event.composer.text = event.body
            return
        self.conversation_view.scroll_to_newest()
        self.post_message(self.Send(self.conversation, event.body))

    @on(Composer.Problem)
    def _composer_problem(self, event: Composer.Problem) -> None:
        problem = self.query_one("#composer-problem", Static)
        problem.display = event.problem is not None
        problem.update(Content.styled(f"✗ {event.problem}", "") if event.problem else "")

    @on(Composer.Typing)
    def _composer_typing(self) -> None:
        if self.conversation is not None:
            self.post_message(self.Typing(self.conversation))

    @on(ConversationView.NearTop)
    def _near_top(self, event: ConversationView.NearTop) -> None:
        if event.key is not None:
            self.post_message(self.LoadOlder(event.key))

    @on(ConversationView.ReachedBottom)
    def _reached_bottom(self, event: ConversationView.ReachedBottom) -> None:
        if event.key is not None and event.key == self.conversation:
            self.post_message(self.MarkRead(event.key))

    @on(ConversationView.Chosen)
    def _message_chosen(self, event: ConversationView.Chosen) -> None:
        if event.row.attachment:
            self.post_message(self.SaveFile(event.row.key))
        elif event.row.mark == "failed":
            self.post_message(self.Retry(event.row.key))

    def on_click(self, event: events.Click) -> None:
        if event.widget is not None and event.widget.id == "new-below":
            self.conversation_view.scroll_to_newest()

    # --- actions ----------------------------------------------------------------------------

    def _first_failed(self) -> MessageRow | None:
        """The failed message the cursor is on, else the oldest failed one."""
        view = self.conversation_view
        if view.has_focus and (row := view.cursor_row) is not None and row.mark == "failed":
            return row
        return next((row for row in view.rows if row.mark == "failed"), None)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("retry", "discard"):
            return self._first_failed() is not None if self.is_mounted else False
        if action == "focus_composer":  # escape in the composer is the composer's own
            return self.is_mounted and self.focused is not self.query_one(Composer)
        if action == "page_conversation":  # elsewhere the focused widget pages itself
            return self.is_mounted and self.focused is self.query_one(Composer)
        return True

    def action_page_conversation(self, direction: int) -> None:
        view = self.conversation_view
        view.scroll_page_up(animate=False) if direction < 0 else view.scroll_page_down(animate=False)

    def action_retry(self) -> None:
        failed = self._first_failed()
        if failed is not None:
            self.post_message(self.Retry(failed.key))

    def action_discard(self) -> None:
        failed = self._first_failed()
        if failed is not None:
            self.post_message(self.Discard(failed.key))

    def take_key(self, event: events.Key) -> bool:
        """Keys for the people filter, handled as they arrive (see ``PeopleFilter``); True if taken.
        Text typed while the conversation has the focus (after a jump from search, a file saved)
        goes to the composer, the key included: the conversation has no use for it."""
        if self.focused is self.conversation_view and event.is_printable:
            self.set_focus(self.query_one(Composer))
            return False
        people_filter = self.query_one("#user-filter")
        if self.focused is not people_filter:
            return False
        if event.key == "enter":
            name = self.query_one(UserList).choose_now()
            if name is not None:
                self.open_conversation(name)
                self.set_focus(self.query_one(Composer))
            return True
        return people_filter.take_key(event.key, event.character)

    def write_to(self, conversation: str) -> None:
        """Open ``conversation`` ready to write in it (from the palette, a room just created)."""
        self.open_conversation(conversation)
        self.query_one(UserList).clear_filter()
        self.set_focus(self.query_one(Composer))

    def action_focus_people(self) -> None:
        self.query_one(UserList).start_filtering()

    def action_focus_composer(self) -> None:
        self.query_one(UserList).clear_filter()
        self.set_focus(self.query_one(Composer))


def typing_line(typists: Sequence[str]) -> Content:
    """"ann is typing…", "ann and bob are typing…", "ann, bob and 3 more are typing…"."""
    if not typists:
        return Content("")
    named = list(typists[:TYPISTS_NAMED])
    more = len(typists) - len(named)
    parts: list = []
    for number, name in enumerate(named):
        if number:
            parts.append(" and " if number == len(named) - 1 and not more else ", ")
        parts.append(safe_content(name, "bold"))
    if more:
        parts.append(f" and {more} more")
    parts.append((" is typing…" if len(typists) == 1 else " are typing…", "italic"))
    return Content.assemble(*parts)


def room_header(room: RoomInfo) -> Content:
    """Two lines: the room and its title; its members with their presence, those there first."""
    present = sum(1 for m in room.members if m.status in PRESENCE_ORDER)
    count = len(room.members)
    first: list = [safe_content(room.name, "bold")]
    if room.title:
        first.extend(["  ", safe_content(room.title, "italic")])
    first.append((f"  {count} member{'s' if count != 1 else ''}, {present} here", "dim"))
    second: list = []
    for member in sorted(room.members, key=lambda m: PRESENCE_ORDER.get(m.status, 3)):
        second.extend([STATUS_MARKS.get(member.status, "?"), " ", safe_content(member.name, "")])
        if member.name == room.owner:
            second.append((" (owner)", "dim"))
        second.append("  ")
    return Content.assemble(*first, "\n", *second)
