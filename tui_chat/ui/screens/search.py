"""ctrl+f: search everything cached, results newest first, enter jumps to the message.

Each result shows who wrote it, where, when, and the part of the message around the first
match with the matched words highlighted. The text is someone else's: it is drawn literally
(placeholders for control characters), the highlights come from offsets, never from markup.
Conversations whose older history is not cached can be fetched from the server first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from tui_chat.client.search import MAX_RESULTS, SearchHit
from tui_chat.ui.safe_text import safe_content
from tui_chat.ui.timefmt import Clock

SNIPPET_CHARS = 90
CONTEXT_BEFORE = 24
"""Characters kept before the first match, so that it is seen with some of what leads to it."""
HIGHLIGHT = "bold reverse"


def snippet(text: str, spans: Sequence[tuple[int, int]], width: int = SNIPPET_CHARS) -> Content:
    """One line of ``text`` around its first span, the spans highlighted, all of it literal."""
    flat = text.replace("\r\n", " ").replace("\n", " ")  # same length: the spans stay where they were
    start = max(0, spans[0][0] - CONTEXT_BEFORE) if spans else 0
    if start:  # begin at a word, not in the middle of one
        space = flat.find(" ", start, spans[0][0])
        start = space + 1 if space != -1 else start
    end = min(len(flat), start + width)
    parts: list[Content] = [Content("…")] if start else []
    position = start
    for a, b in spans:
        a, b = max(a, position), min(b, end)
        if a >= b:
            continue
        parts += [safe_content(flat[position:a]), safe_content(flat[a:b], HIGHLIGHT)]
        position = b
    parts.append(safe_content(flat[position:end]))
    if end < len(flat):
        parts.append(Content("…"))
    return Content("").join(parts)


class SearchScreen(ModalScreen[SearchHit | None]):
    """Answers the result chosen (None when closed)."""

    CSS_PATH = Path(__file__).with_name("dialogs.tcss")
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("down", "to_results", show=False),
    ]

    def __init__(
        self, search: Callable[[str], list[SearchHit]], not_fully_cached: Callable[[], list[str]],
        fetch_older: Callable[[Callable[[str, int], None]], Awaitable[int]], *, me: str, clock: Clock | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self._search, self._not_fully_cached, self._fetch_older = search, not_fully_cached, fetch_older
        self.me = me
        self.clock = clock or Clock()
        self.hits: list[SearchHit] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="search-box", classes="dialog"):
            yield Static("Search your messages", classes="dialog-title")
            yield Input(placeholder="words, or their beginnings…", id="search-input")
            yield Static("", id="search-status")
            yield OptionList(id="search-results")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Search older history on the server", id="search-older")

    def on_mount(self) -> None:
        self.query_one("#search-results").display = False
        self._show_older_button()
        self.query_one("#search-input").focus()

    def _show_older_button(self) -> None:
        missing = self._not_fully_cached()
        button = self.query_one("#search-older", Button)
        button.display = bool(missing)
        button.tooltip = "older messages of: " + ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "") if missing else None

    # --- searching ------------------------------------------------------------------------

    @on(Input.Changed, "#search-input")
    def _changed(self, event: Input.Changed) -> None:
        self.run_search(event.value)

    def run_search(self, text: str) -> None:
        self.hits = self._search(text) if text.strip() else []
        results = self.query_one("#search-results", OptionList)
        results.clear_options()
        results.add_options([Option(self._describe(hit), id=str(n)) for n, hit in enumerate(self.hits)])
        results.display = bool(self.hits)
        if self.hits:
            results.highlighted = 0
        self.query_one("#search-status", Static).update(self._counted(text))

    def _counted(self, text: str) -> str:
        count = len(self.hits)
        if not text.strip():
            return ""
        if not count:
            return "No cached message has all these words."
        return f"{count} {'newest ' if count >= MAX_RESULTS else ''}match{'es' if count > 1 else ''}"

    def _describe(self, hit: SearchHit) -> Content:
        who = safe_content("you" if hit.sender == self.me else hit.sender, "bold")
        where = safe_content(hit.peer) if hit.peer.startswith("#") else Content("with ") + safe_content(hit.peer)
        when = f"{self.clock.day_label(hit.ts)} {self.clock.time_label(hit.ts)}"
        first = Content.assemble(who, " · ", where, (f" · {when}", "dim"))
        lines = [first]
        if hit.body:
            lines.append(snippet(hit.body, hit.body_spans))
        if hit.file_name:
            lines.append(Content("📎 ") + snippet(hit.file_name, hit.file_spans))
        return Content("\n").join(lines)

    # --- choosing -------------------------------------------------------------------------

    @on(Input.Submitted, "#search-input")
    def _submitted(self) -> None:
        if self.hits:
            self.dismiss(self.hits[self.query_one("#search-results", OptionList).highlighted or 0])

    @on(OptionList.OptionSelected, "#search-results")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.hits[int(event.option.id)])

    def action_to_results(self) -> None:
        results = self.query_one("#search-results", OptionList)
        if self.focused is not results and self.hits:
            results.focus()
            results.highlighted = 0

    def action_close(self) -> None:
        self.dismiss(None)

    # --- older history --------------------------------------------------------------------

    @on(Button.Pressed, "#search-older")
    def _older(self) -> None:
        self.query_one("#search-older", Button).disabled = True
        self.fetch_older()

    @work(exclusive=True, exit_on_error=False)
    async def fetch_older(self) -> None:
        status = self.query_one("#search-status", Static)

        def progress(conversation: str, fetched: int) -> None:
            status.update(Content.assemble(f"Fetching older history… {fetched} messages so far (", safe_content(conversation), ")"))

        status.update("Fetching older history…")
        try:
            fetched = await self._fetch_older(progress)
        except ValueError as exc:
            status.update(Content(str(exc)))
        else:
            text = self.query_one("#search-input", Input).value
            self.run_search(text)
            status.update(f"{fetched} older messages fetched. {self._counted(text)}".strip())
        button = self.query_one("#search-older", Button)
        button.disabled = False
        self._show_older_button()
