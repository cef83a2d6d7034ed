"""Attach a file: a path with completion (→ takes the suggestion), and optional words.

The path is completed from what is on disk as it is typed (``PathSuggester``); the dialog checks
the file exists and is a file before it closes, and returns the path and the words.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, Static

from tui_chat.protocol import MAX_BODY_CHARS, body_problem
from tui_chat.ui.safe_text import safe_content
from tui_chat.ui.screens.focus_keys import FOCUS_KEYS

MAX_LISTED = 2000
"""Entries of one folder looked at for a suggestion (a huge folder must not stall typing)."""


class PathSuggester(Suggester):
    """The first entry of the typed folder that starts with what follows the last ``/``."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        typed = os.path.expanduser(value)
        folder, _, start = typed.rpartition(os.sep)
        folder = folder or ("/" if typed.startswith(os.sep) else ".")
        try:
            with os.scandir(folder) as entries:
                names = sorted(
                    entry.name + (os.sep if entry.is_dir() else "")
                    for _, entry in zip(range(MAX_LISTED), entries)
                    if entry.name.startswith(start) and (start.startswith(".") or not entry.name.startswith("."))
                )  # fmt: skip
        except OSError:
            return None
        if not names or names[0] == start:
            return None
        return value + names[0][len(start):]


class AttachScreen(ModalScreen[tuple[Path, str] | None]):
    CSS_PATH = Path(__file__).with_name("dialogs.tcss")
    BINDINGS = [Binding("escape", "cancel", "Cancel"), *FOCUS_KEYS]

    def __init__(self, conversation: str, start: str = "") -> None:
        super().__init__()
        self.conversation = conversation
        self.start = start

    def compose(self) -> ComposeResult:
        with Vertical(id="attach-box", classes="dialog"):
            yield Label(safe_content(f"Send a file to {self.conversation}"), classes="dialog-title")
            yield Input(self.start, placeholder="path, e.g. ~/Pictures/photo.jpg (→ completes)", suggester=PathSuggester(), id="attach-path")
            yield Input(placeholder="a few words with it (optional)", max_length=MAX_BODY_CHARS, id="attach-words")
            yield Static("", id="attach-problem", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Send", variant="primary", id="attach-send")
                yield Button("Cancel", id="attach-cancel")

    def on_mount(self) -> None:
        self.query_one("#attach-path", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#attach-send")
    def _send(self) -> None:
        path = Path(os.path.expanduser(self.query_one("#attach-path", Input).value.strip()))
        words = self.query_one("#attach-words", Input).value
        problem = None if path.is_file() else f"no such file: {path}" if str(path) != "." else "choose a file"
        if problem is None and words.strip():
            problem = body_problem(words)
        if problem:
            self.query_one("#attach-problem", Static).update(safe_content(problem))
            return
        self.dismiss((path, words))

    @on(Button.Pressed, "#attach-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
