"""Dialogs for rooms: create one (name, title, members picked from the people), pick a person
(to invite, or to remove), and a one-line text (a room's new title).

The create dialog stays open until the server has made the room, so a taken name or an unknown
member is said where it can be fixed; the others return what was chosen and the app acts on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, SelectionList, Static
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection

from tui_chat.protocol import MAX_ROOM_TITLE_CHARS, ROOM_PREFIX, normalize_room, room_title_problem
from tui_chat.ui.safe_text import safe_content
from tui_chat.ui.screens.focus_keys import FOCUS_KEYS

CreateRoom = Callable[[str, str, list[str]], Awaitable[str]]
"""Makes the room (name, title, members) and returns its ``#name``; ``ValueError`` says why not."""


def room_name_problem(name: str) -> str | None:
    """Why ``name`` (with or without its ``#``) cannot name a room, or None."""
    if not name:
        return "a room needs a name"
    try:
        normalize_room(name if name.startswith(ROOM_PREFIX) else ROOM_PREFIX + name)
    except ValueError as exc:
        return str(exc)
    return None


class MemberPicker(SelectionList[str]):
    """Space picks a member; enter creates the room, as it does in the fields above."""

    BINDINGS = [Binding("enter", "screen.create", "Create", show=False)]


class CreateRoomScreen(ModalScreen[str | None]):
    CSS_PATH = Path(__file__).with_name("dialogs.tcss")
    BINDINGS = [Binding("escape", "cancel", "Cancel"), *FOCUS_KEYS]

    def __init__(self, people: Sequence[str], create: CreateRoom | None = None, *, chosen: Sequence[str] = ()) -> None:
        super().__init__()
        self.people = list(people)
        self.create = create
        self.chosen = set(chosen)

    def compose(self) -> ComposeResult:
        with Vertical(id="room-box", classes="dialog"):
            yield Label("New room", classes="dialog-title")
            yield Input(placeholder="name, e.g. lab (people write to #lab)", max_length=33, id="room-name")
            yield Input(placeholder="title (optional)", max_length=MAX_ROOM_TITLE_CHARS, id="room-title")
            yield Label("Members: space picks, enter creates", classes="dialog-label")
            yield MemberPicker(
                *(Selection(safe_content(name), name, name in self.chosen) for name in self.people), id="room-members"
            )  # fmt: skip
            yield Static("", id="room-problem", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Create", variant="primary", id="room-create")
                yield Button("Cancel", id="room-cancel")

    def on_mount(self) -> None:
        self.query_one("#room-name", Input).focus()

    def _problem(self, text: str) -> None:
        self.query_one("#room-problem", Static).update(safe_content(text))

    @on(Input.Submitted)
    @on(Button.Pressed, "#room-create")
    def action_create(self) -> None:
        name = self.query_one("#room-name", Input).value.strip()
        title = self.query_one("#room-title", Input).value.strip()
        problem = room_name_problem(name) or room_title_problem(title)
        if problem:
            self._problem(problem)
            return
        members = list(self.query_one(MemberPicker).selected)
        if self.create is None:
            self.dismiss(name)
            return
        self._problem("creating…")
        self.query_one("#room-create", Button).disabled = True
        self._ask_server(name, title, members)

    @work(exclusive=True, exit_on_error=False)
    async def _ask_server(self, name: str, title: str, members: list[str]) -> None:
        try:
            room = await self.create(name, title, members)
        except ValueError as exc:
            self._problem(f"Not created: {exc}")
            self.query_one("#room-create", Button).disabled = False
            return
        self.dismiss(room)

    @on(Button.Pressed, "#room-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class PickPersonScreen(ModalScreen[str | None]):
    """Choose one of ``names``; typing narrows the list, enter chooses."""

    CSS_PATH = Path(__file__).with_name("dialogs.tcss")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, names: Sequence[str], *, empty: str = "Nobody to choose.") -> None:
        super().__init__()
        self.title_text = title
        self.names = list(names)
        self.empty = empty

    def compose(self) -> ComposeResult:
        with Vertical(id="pick-box", classes="dialog"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Input(placeholder="filter…", id="pick-filter")
            yield OptionList(id="pick-options")
            yield Static("", id="pick-problem", classes="dialog-problem")

    def on_mount(self) -> None:
        self._fill("")
        self.query_one("#pick-filter", Input).focus()

    def _fill(self, needle: str) -> None:
        options = self.query_one("#pick-options", OptionList)
        options.clear_options()
        shown = [name for name in self.names if needle in name.lower()]
        options.add_options([Option(safe_content(name), id=name) for name in shown])
        if shown:
            options.highlighted = 0
        self.query_one("#pick-problem", Static).update("" if shown else self.empty)

    @on(Input.Changed, "#pick-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value.strip().lower())

    def on_key(self, event) -> None:
        if event.key in ("up", "down") and self.focused is self.query_one("#pick-filter"):
            options = self.query_one("#pick-options", OptionList)
            options.action_cursor_up() if event.key == "up" else options.action_cursor_down()
            event.stop()

    @on(Input.Submitted, "#pick-filter")
    def _submitted(self) -> None:
        options = self.query_one("#pick-options", OptionList)
        if options.highlighted is not None:
            self.dismiss(options.get_option_at_index(options.highlighted).id)

    @on(OptionList.OptionSelected, "#pick-options")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option_id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RoomTitleScreen(ModalScreen[str | None]):
    """A room's new title (empty clears it)."""

    CSS_PATH = Path(__file__).with_name("dialogs.tcss")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, room: str, title: str) -> None:
        super().__init__()
        self.room = room
        self.title_now = title

    def compose(self) -> ComposeResult:
        with Vertical(id="retitle-box", classes="dialog"):
            yield Label(f"Title of {self.room}", classes="dialog-title", markup=False)
            yield Input(self.title_now, placeholder="no title", max_length=MAX_ROOM_TITLE_CHARS, id="retitle-text")
            yield Static("", id="retitle-problem", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Set", variant="primary", id="retitle-set")
                yield Button("Cancel", id="retitle-cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#retitle-set")
    def _set(self) -> None:
        title = self.query_one("#retitle-text", Input).value.strip()
        problem = room_title_problem(title)
        if problem:
            self.query_one("#retitle-problem", Static).update(problem)
            return
        self.dismiss(title)

    @on(Button.Pressed, "#retitle-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
