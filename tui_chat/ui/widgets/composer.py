"""Where a message is written: Enter sends, ctrl+j (or shift+enter) starts a new line.

Terminals send the same byte for Enter and shift+Enter unless they speak the kitty keyboard
protocol (kitty, WezTerm, foot, Ghostty do; Textual turns it on), so shift+enter works only
there; ctrl+j (a plain line feed) works in every terminal and is the documented key.
The body limits (``protocol.body_problem``) are checked here, before a message is queued.
"""

from __future__ import annotations

import time

from textual import events
from textual.message import Message
from textual.widgets import TextArea

from tui_chat.protocol import MAX_BODY_CHARS, body_problem

NEWLINE_KEYS = frozenset({"ctrl+j", "shift+enter", "alt+enter"})
TYPING_EVERY_S = 3.0
"""At most one typing notice this often (the server forwards every one)."""


class Composer(TextArea):
    DEFAULT_CSS = """
    Composer {
        height: auto;
        min-height: 3;
        max-height: 10;
        border: tall $border-blurred;
        &:focus { border: tall $border; }
        &.-invalid { border: tall $error; }
    }
    """

    class Submitted(Message):
        """The writer pressed Enter on a body that may be sent."""

        def __init__(self, composer: "Composer", body: str) -> None:
            super().__init__()
            self.composer = composer
            self.body = body

    class Problem(Message):
        """The body cannot be sent as it is (``problem`` is None again once it can)."""

        def __init__(self, composer: "Composer", problem: str | None) -> None:
            super().__init__()
            self.composer = composer
            self.problem = problem

    class Typing(Message):
        """The writer is typing (throttled to one every few seconds)."""

    def __init__(self, *, monotonic=time.monotonic, **kwargs) -> None:
        kwargs.setdefault("soft_wrap", True)
        kwargs.setdefault("show_line_numbers", False)
        kwargs.setdefault("compact", False)
        super().__init__(**kwargs)
        self._monotonic = monotonic
        self._last_typing = -TYPING_EVERY_S
        self._problem: str | None = None

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)

    def submit(self) -> None:
        body = self.text
        if not body.strip():
            return
        problem = body_problem(body)
        if problem:
            self._set_problem(problem)
            return
        self.post_message(self.Submitted(self, body))
        self.clear()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        text = self.text
        # Only the length limits are shown while typing; the rest is checked on Enter.
        problem = f"{len(text)}/{MAX_BODY_CHARS} characters: too long" if len(text) > MAX_BODY_CHARS else None
        if problem is None and self._problem is not None:
            problem = body_problem(text) if text.strip() else None
        self._set_problem(problem)
        if text and self._monotonic() - self._last_typing >= TYPING_EVERY_S:
            self._last_typing = self._monotonic()
            self.post_message(self.Typing())

    def _set_problem(self, problem: str | None) -> None:
        if problem != self._problem:
            self._problem = problem
            self.set_class(problem is not None, "-invalid")
            self.post_message(self.Problem(self, problem))
