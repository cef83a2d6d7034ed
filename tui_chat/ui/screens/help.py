"""A screen that lists every key, so nothing depends on remembering the footer."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from tui_chat.ui.widgets.conversation import DISCARD_KEY, RETRY_KEY

KEYS: list[tuple[str, list[tuple[str, str]]]] = [
    ("Writing", [
        ("enter", "send the message"),
        ("ctrl+j", "new line (shift+enter too, in terminals that report it)"),
        ("tab / shift+tab", "move between the people, the conversation and the composer"),
    ]),
    ("Conversation", [
        ("pageup / pagedown", "scroll (older messages load as you reach the top)"),
        ("end", "jump to the newest message"),
        ("up / down", "(tab to the conversation) move from message to message"),
        ("enter", "on a file: save it (and open it); on a failed one: retry"),
        (RETRY_KEY, "retry the failed message"),
        (DISCARD_KEY, "discard the failed message"),
        ("ctrl+t", "send a file (ctrl+p has \"Download …\" for the files shown)"),
        ("ctrl+f", "search every conversation; enter jumps to the message"),
    ]),
    ("People and rooms", [
        ("ctrl+o", "go to the list of people and rooms; type to filter, enter to open"),
        ("up / down", "choose a person or a room"),
        ("ctrl+n", "create a room; invite, rename, leave, remove: ctrl+p in the room"),
    ]),
    ("Everything else", [
        ("ctrl+p", "command palette: conversations, status, theme, sign out"),
        ("f2", "set your status (online, away, busy) and its text"),
        ("f1", "this help"),
        ("ctrl+q", "quit"),
    ]),
]  # fmt: skip


def help_content() -> Content:
    parts: list = []
    for title, rows in KEYS:
        parts.append((f"{title}\n", "bold underline"))
        for key, what in rows:
            parts.extend([(f"  {key:<20}", "bold $accent"), f" {what}\n"])
        parts.append("\n")
    parts.append(("Status marks: ● online  ◐ away  ⊘ busy  ○ offline\n", ""))
    parts.append(("Message marks: ◷ queued  ✓ sent  ✓✓ read (in a room: by everyone)  ✗ not sent\n", ""))
    parts.append(("\nescape or f1 closes this screen", "dim"))
    return Content.assemble(*parts)


class HelpScreen(ModalScreen[None]):
    CSS_PATH = Path(__file__).with_suffix(".tcss")
    BINDINGS = [Binding("escape,f1,q", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Keys"
            yield Static(help_content(), id="help-text")
