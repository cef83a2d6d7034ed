"""Set your status: online, away or busy, and an optional short text."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from tui_chat.protocol import MAX_STATUS_TEXT_CHARS, SETTABLE_STATUSES, status_text_problem
from tui_chat.ui.screens.focus_keys import FOCUS_KEYS
from tui_chat.ui.view_model import STATUS_MARKS


class StatusScreen(ModalScreen[tuple[str, str] | None]):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [Binding("escape", "cancel", "Cancel"), *FOCUS_KEYS]

    def __init__(self, current: str = "online", text: str = "") -> None:
        super().__init__()
        self.current = current if current in SETTABLE_STATUSES else "online"
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="status-box"):
            yield Label("Your status", id="status-title")
            with RadioSet(id="status-choice"):
                for status in SETTABLE_STATUSES:
                    yield RadioButton(f"{STATUS_MARKS[status]} {status}", value=status == self.current, id=f"status-{status}")
            yield Input(self.text, placeholder="what you are up to (optional)", max_length=MAX_STATUS_TEXT_CHARS, id="status-text")
            yield Static("", id="status-problem")
            with Horizontal(id="status-buttons"):
                yield Button("Set", variant="primary", id="status-set")
                yield Button("Cancel", id="status-cancel")

    def _chosen(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return pressed.id.removeprefix("status-") if pressed is not None and pressed.id else self.current

    @on(Button.Pressed, "#status-set")
    @on(Input.Submitted, "#status-text")
    def _set(self) -> None:
        text = self.query_one("#status-text", Input).value.strip()
        problem = status_text_problem(text)
        if problem:
            self.query_one("#status-problem", Static).update(problem)
            return
        self.dismiss((self._chosen(), text))

    @on(Button.Pressed, "#status-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
