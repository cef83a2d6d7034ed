"""The people and the rooms: a person's status mark differs in shape (● ◐ ⊘ ○) beside the status
word and text; a room shows ``#``, its title and its size; each shows its unread count. Unread
first, then rooms, then people online, then by name; typing filters the list."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from tui_chat.ui.safe_text import safe_content
from tui_chat.ui.timefmt import Clock
from tui_chat.ui.view_model import STATUS_MARKS, UserRow

STATUS_STYLES = {"online": "$success", "away": "$warning", "busy": "$error", "offline": "$text-muted", "unknown": "$text-muted"}


def sort_key(user: UserRow) -> tuple:
    return (user.unread == 0, not user.is_room, user.status == "offline", user.name)


def room_prompt(room: UserRow) -> Content:
    parts: list = [safe_content(room.name, "bold" if room.unread else "")]
    if room.unread:
        parts.extend(["  ", (f" {room.unread} ", "reverse bold")])
    second: list = ["\n  ", (f"{room.members} member{'s' if room.members != 1 else ''}", "dim")]
    if room.room_title:
        second.extend([("  ", "dim"), safe_content(room.room_title, "dim italic")])
    return Content.assemble(*parts, *second)


def user_prompt(user: UserRow, clock: Clock | None = None) -> Content:
    if user.is_room:
        return room_prompt(user)
    mark = STATUS_MARKS.get(user.status, "?")
    parts: list = [(mark, STATUS_STYLES.get(user.status, "")), " ", safe_content(user.name, "bold" if user.unread else "")]
    if user.is_me:
        parts.append((" (you)", "dim"))
    if user.unread:
        parts.extend(["  ", (f" {user.unread} ", "reverse bold")])
    second: list = ["\n  ", ("status unknown" if user.status == "unknown" else user.status, "dim")]
    if user.status == "offline" and user.last_seen and clock is not None:
        second.append((f" · seen {clock.ago_label(user.last_seen)}", "dim"))
    if user.text and user.status != "unknown":
        second.extend([("  ", "dim"), safe_content(user.text, "dim italic")])
    return Content.assemble(*parts, *second)


class UserOptions(OptionList):
    """The list itself; printable keys go to the filter above it."""

    def on_key(self, event) -> None:
        if event.character and event.character.isprintable() and len(event.character) == 1 and event.key != "space":
            filter_input = self.parent.query_one(PeopleFilter)
            self.screen.set_focus(filter_input)  # now, not later: the next key must go there too
            filter_input.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()


class PeopleFilter(Input):
    """Typing narrows the list; up and down move through what is left, enter opens it.

    The app hands keys to it with :meth:`take_key` as they arrive, not through its message
    queue: enter moves the focus to the composer, and keys typed right after it (in the same
    burst) must already go there, with the person they are meant for already chosen."""

    def take_key(self, key: str, character: str | None) -> bool:
        """Handle ``key`` now; False for keys this filter leaves to the usual routing (enter
        among them: the screen chooses with :meth:`UserList.choose_now`)."""
        user_list = self.parent
        if key in ("up", "down"):
            options = user_list.query_one(UserOptions)
            options.action_cursor_up() if key == "up" else options.action_cursor_down()
        elif key == "backspace":
            self.action_delete_left()
            user_list.filter_now()
        elif character is not None and len(character) == 1 and character.isprintable():
            self.insert_text_at_cursor(character)
            user_list.filter_now()
        else:
            return False
        return True


class UserList(Vertical):
    DEFAULT_CSS = """
    UserList {
        height: 1fr;
        & > Input { border: none; height: 1; padding: 0 1; background: $boost; }
        & > UserOptions { height: 1fr; border: none; padding: 0; background: transparent; text-wrap: nowrap; text-overflow: ellipsis; }
    }
    """

    class Selected(Message):
        """A user was chosen: open the conversation with them."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, *, clock: Clock | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clock = clock or Clock()
        self._users: list[UserRow] = []
        self._needle = ""
        """The filter text the list was last built for."""
        self._shown: list[str] = []

    def compose(self) -> ComposeResult:
        yield PeopleFilter(placeholder="filter people…", id="user-filter", compact=True, select_on_focus=False)
        yield UserOptions(id="user-options")

    @property
    def options(self) -> UserOptions:
        return self.query_one(UserOptions)

    @property
    def users(self) -> Sequence[UserRow]:
        return self._users

    def set_users(self, users: Sequence[UserRow]) -> None:
        users = sorted(users, key=sort_key)
        if users == self._users:
            return  # nothing a person could see changed: no rebuild, no layout
        self._users = users
        self._rebuild()

    def _rebuild(self) -> None:
        needle = self._needle = self.query_one(Input).value.strip().lower()
        shown = [u for u in self._users if needle in u.name.lower()] if needle else self._users
        options = self.options
        highlighted = self._shown[options.highlighted] if options.highlighted is not None and options.highlighted < len(self._shown) else None
        self._shown = [u.name for u in shown]
        # One synchronous swap: the list never appears empty between two frames.
        options.clear_options()
        options.add_options([Option(user_prompt(u, self.clock), id=u.name) for u in shown])
        if highlighted in self._shown:
            options.highlighted = self._shown.index(highlighted)

    def filter_now(self) -> None:
        """Narrow the list to the filter's text at once (the Changed message comes later)."""
        self._rebuild()
        if self._shown:
            self.options.highlighted = 0

    def choose_now(self) -> str | None:
        """The highlighted person, chosen now (the filter is cleared); None when nobody is shown."""
        if not self._shown:
            return None
        name = self._shown[self.options.highlighted or 0]
        self.query_one(PeopleFilter).value = ""
        return name

    def start_filtering(self) -> None:
        """Focus the filter at once, empty, with the whole list shown."""
        self.clear_filter()
        self.screen.set_focus(self.query_one(PeopleFilter))

    def clear_filter(self) -> None:
        people_filter = self.query_one(PeopleFilter)
        if people_filter.value:
            people_filter.value = ""
            self._rebuild()

    def highlight(self, name: str | None) -> None:
        if name in self._shown:
            self.options.highlighted = self._shown.index(name)

    @on(Input.Changed, "#user-filter")
    def _filter_changed(self) -> None:
        if self.query_one(PeopleFilter).value.strip().lower() != self._needle:
            self.filter_now()  # a paste, say; keys typed were already applied by take_key

    @on(OptionList.OptionSelected)
    def _option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_id:
            self.post_message(self.Selected(event.option_id))
