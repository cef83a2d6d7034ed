"""A saved image, shown over the conversation, with the offer to open it with the system's program."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui_chat.ui import images
from tui_chat.ui.safe_text import safe_str


class ImagePreviewScreen(ModalScreen[bool]):
    """Answers True when the person asks to open the file with the system's program."""

    DEFAULT_CSS = """
    ImagePreviewScreen { align: center middle; background: $background 60%; }
    #preview-box { width: 90%; height: 90%; border: round $accent; padding: 0 1; background: $surface; }
    #preview-title { text-style: bold; height: 1; }
    #preview-image { height: 1fr; width: auto; max-width: 100%; }
    .preview-placeholder { height: 1fr; content-align: center middle; color: $text-muted; }
    #preview-saved { color: $text-muted; height: auto; }
    #preview-buttons { height: auto; & > Button { margin-right: 2; } }
    """
    BINDINGS = [Binding("escape", "answer(False)", "Close"), Binding("o", "answer(True)", "Open")]

    def __init__(self, path: Path, name: str) -> None:
        super().__init__()
        self.path, self.name_shown = path, name

    def compose(self) -> ComposeResult:
        with Vertical(id="preview-box"):
            yield Static(safe_str(self.name_shown), id="preview-title", markup=False)
            yield images.preview(self.path, id="preview-image")
            yield Static(f"Saved as {safe_str(str(self.path))}", id="preview-saved", markup=False)
            with Horizontal(id="preview-buttons"):
                yield Button("Close", variant="primary", id="preview-close")
                yield Button("Open (o)", id="preview-open")

    def on_mount(self) -> None:
        self.query_one("#preview-close").focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "preview-open")

    def action_answer(self, open_it: bool) -> None:
        self.dismiss(open_it)
