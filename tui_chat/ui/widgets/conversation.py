"""The conversation: a Line-API ``ScrollView`` that draws only the rows on screen.

One widget for the whole history, never one per message: the layout is a list of row counts
per message (and their running sums) for the current width; ``render_line`` finds the message
under a row by bisection and draws it from an LRU cache of rendered strips. Height of a
message is computed by the same wrapping code that draws it, with a fast path for the common
short single-line message, so 10,000 messages lay out in a few milliseconds.

Rows of one message, top to bottom: a blank line before a new group, a day separator,
a header (sender and time, once per run from one sender within ``GROUP_GAP_MS``), the wrapped
body (with our own messages' mark in the right gutter), for a failed message the reason, and
in a room the members who have read up to this message ("read by ann, bob, carol and 4 more").

With the focus on it, a cursor marks one message (up/down move it, enter chooses it: a file is
saved). The cursor follows its message, not its place, when rows come and go.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

from rich.cells import cell_len, chop_cells
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui_chat.ui.safe_text import fragments, is_plain
from tui_chat.ui.timefmt import Clock
from tui_chat.ui.view_model import MessageRow

GROUP_GAP_MS = 5 * 60_000
INDENT = 2
GUTTER = 3
MIN_BODY_WIDTH = 8
MARKS = {"pending": "◷", "sent": "✓", "read": "✓✓", "failed": "✗", "none": ""}
FILE_MARK = "📎"
READ_BY_NAMES = 3
"""Names spelled out on a "read by" line before "and N more": one line even in a 40-member room."""
RETRY_KEY = "ctrl+r"
DISCARD_KEY = "ctrl+g"

Line = list[tuple[str, bool]]
"""One wrapped body line as ``(text, is_placeholder)`` pieces."""


def wrap_body(body: str, width: int) -> list[Line]:
    """Word-wrap a (sanitised) body to ``width`` cells; long words are cut."""
    lines: list[Line] = []
    line: Line = []
    col = 0

    def newline() -> None:
        nonlocal line, col
        lines.append(line)
        line, col = [], 0

    for piece, is_placeholder in fragments(body, multiline=True):
        tokens = [piece] if is_placeholder else _split_words(piece)
        for token in tokens:
            # (bandit takes the comparison with a line break for a password: B105 silenced)
            if token == "\n":  # nosec B105
                newline()
                continue
            w = len(token) if token.isascii() else cell_len(token)
            if col + w <= width:
                line.append((token, is_placeholder))
                col += w
            elif token.isspace():
                newline()  # a break at a space swallows the space
            elif w <= width:
                newline()
                line.append((token, is_placeholder))
                col = w
            else:  # a word wider than a line starts a line of its own and is cut
                if col:
                    newline()
                chunks = chop_cells(token, width)
                for chunk in chunks[:-1]:
                    line.append((chunk, is_placeholder))
                    newline()
                line.append((chunks[-1], is_placeholder))
                col = cell_len(chunks[-1])
    lines.append(line)
    return lines


_WORDS_RE = re.compile(r"\n|[^\S\n]+|[^\s]+")


def _split_words(text: str) -> list[str]:
    """Words, runs of blanks and line breaks, in order."""
    return _WORDS_RE.findall(text)


def body_height(body: str, width: int) -> int:
    """Rows ``body`` takes at ``width``, as :func:`wrap_body` would wrap it.

    Printable ASCII (most chat) is counted without building lines, and a short line at once.
    """
    if not (body.isascii() and body.isprintable()):
        return len(wrap_body(body, width))
    if len(body) <= width:
        return 1
    # Greedy wrapping by searching for spaces (C speed) instead of walking tokens; gives
    # exactly what wrap_body gives for printable ASCII (checked by tests/ui/test_wrap.py).
    n = len(body)
    rows, pos = 0, 0
    while True:
        rows += 1
        limit = pos + width
        if n <= limit:
            return rows
        if body[limit] == " ":  # everything up to the limit fits; skip the break's spaces
            pos = limit
            while pos < n and body[pos] == " ":
                pos += 1
            continue
        start = body.rfind(" ", pos, limit) + 1
        if start > pos:  # the word across the limit starts the next line
            pos = start
            continue
        end_of_word = body.find(" ", pos)  # a word wider than a line: cut into full rows
        end_of_word = n if end_of_word < 0 else end_of_word
        full, rest = divmod(end_of_word - pos, width)
        if rest == 0:
            full -= 1
        rows += full - 1
        pos += full * width


class ConversationView(ScrollView, can_focus=True):
    """All messages of one conversation, drawn line by line."""

    COMPONENT_CLASSES = {
        "conversation--sender",
        "conversation--me",
        "conversation--time",
        "conversation--day",
        "conversation--mark",
        "conversation--read",
        "conversation--failed",
        "conversation--placeholder",
        "conversation--empty",
        "conversation--file",
        "conversation--cursor",
    }
    BINDINGS = [
        Binding("home", "scroll_home", "Oldest", show=False),
        Binding("end", "scroll_end", "Newest", show=False),
        Binding("up", "cursor(-1)", "Previous", show=False),
        Binding("down", "cursor(1)", "Next", show=False),
        Binding("enter", "choose", "Save file", show=False),
    ]
    DEFAULT_CSS = """
    ConversationView {
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        /* The scrollbar's column is always kept: rows are laid out for one width, and a
           scrollbar appearing as the history grows must not make them wrap differently. */
        scrollbar-gutter: stable;
        & > .conversation--sender { text-style: bold; color: $text-secondary; }
        & > .conversation--me { text-style: bold; color: $text-accent; }
        & > .conversation--time { color: $text-muted; }
        & > .conversation--day { color: $text-muted; }
        & > .conversation--mark { color: $text-muted; }
        & > .conversation--read { color: $success; }
        & > .conversation--failed { color: $error; }
        & > .conversation--placeholder { color: $text-muted; text-style: dim; }
        & > .conversation--empty { color: $text-muted; text-style: italic; }
        & > .conversation--file { color: $text-accent; }
        & > .conversation--cursor { background: $block-cursor-blurred-background; }
    }
    """

    unseen: reactive[int] = reactive(0)
    """Messages that arrived below the view while it was scrolled up ("N new ↓")."""

    class NearTop(Message):
        """Scrolled close to the oldest loaded message: time to load an older page."""

        def __init__(self, view: "ConversationView") -> None:
            super().__init__()
            self.view = view
            self.key = view.conversation

    class Chosen(Message):
        """Enter on a message (the owner saves its file, if it has one)."""

        def __init__(self, view: "ConversationView", row: MessageRow) -> None:
            super().__init__()
            self.view = view
            self.row = row

    class ReachedBottom(Message):
        """The newest message is on screen (the conversation can be marked read)."""

        def __init__(self, view: "ConversationView") -> None:
            super().__init__()
            self.view = view
            self.key = view.conversation

    def __init__(self, *, clock: Clock | None = None, empty_text: str = "No messages yet.", **kwargs) -> None:
        super().__init__(**kwargs)
        self.clock = clock or Clock()
        self.empty_text = empty_text
        self.conversation: str | None = None
        self.has_more = False
        """Older messages exist on the server (the owner keeps this up to date)."""
        self._loading_older = False
        self._rows: list[MessageRow] = []
        self._positions: dict[str, int] = {}
        self._flags: list[int] = []  # per row: FIRST | DAY | HEADER bits
        self._days: list[int] = []
        self._heights: list[int] = []
        self._offsets: list[int] = [0]  # running sum of heights, one longer than rows
        self._layout_width = 0
        self._following = True
        """The view shows the newest row and keeps showing it as rows come and the size changes."""
        self._strips: LRUCache[tuple, list[Strip]] = LRUCache(2048)
        self.cursor_key: str | None = None
        """The message the cursor is on (shown while the view has the focus)."""

    # --- public API -------------------------------------------------------------------------

    @property
    def rows(self) -> Sequence[MessageRow]:
        return self._rows

    @property
    def at_bottom(self) -> bool:
        return self.scroll_y >= self.max_scroll_y

    def show(self, conversation: str | None, rows: Sequence[MessageRow], *, has_more: bool = False) -> None:
        """Switch to another conversation in one step: no intermediate empty frame."""
        self.conversation = conversation
        self.has_more = has_more
        self._loading_older = False
        self.unseen = 0
        self._replace(list(rows))
        self._update_virtual_size()
        self._scroll_rows(self.max_scroll_y)
        self.refresh()

    def set_rows(self, rows: Sequence[MessageRow], *, has_more: bool | None = None, appended: int = 0) -> None:
        """Merge a new state of the same conversation: keep what is on screen where it is.

        Appends stick to the bottom only if the view was there; otherwise they count as
        ``unseen``. Older rows added above keep the visible rows in place. ``appended``, when
        the owner knows it, skips comparing the whole history on the common path.
        """
        if has_more is not None:
            self.has_more = has_more
        rows = list(rows)
        old = self._rows
        was_at_bottom = self.at_bottom or not old
        old_top_key, old_top_offset = self._anchor()
        if appended and len(rows) == len(old) + appended and (not old or rows[len(old) - 1] == old[-1]):
            added = rows[len(old) :]  # the owner says what was added: no need to compare it all
            self._append(added)
            if not was_at_bottom:
                self.unseen += sum(1 for row in added if not row.mine)
        elif old and len(rows) > len(old) and rows[: len(old)] == old:
            added = rows[len(old) :]
            self._append(added)
            if not was_at_bottom:
                self.unseen += sum(1 for row in added if not row.mine)
        elif old and len(rows) > len(old) and rows[len(rows) - len(old) :] == old:
            self._prepend(rows[: len(rows) - len(old)])
        elif rows != old:
            self._replace(rows, keep=_common_prefix(old, rows))
        else:
            self._loading_older = False
            return
        self._loading_older = False
        self._update_virtual_size()
        if was_at_bottom:
            self._scroll_rows(self.max_scroll_y)
        elif old_top_key is not None and old_top_key in self._positions:
            y = self._offsets[self._positions[old_top_key]] + old_top_offset
            self._scroll_rows(y)
        self.refresh()

    def append(self, row: MessageRow) -> None:
        """Add one message at the end (the fast path for a new message)."""
        self._append_one(row)

    def replace_row(self, row: MessageRow) -> None:
        """Redraw one message whose mark or text changed (e.g. pending → sent)."""
        index = self._positions.get(row.key)
        if index is None:
            return
        self._rows[index] = row
        height = self._height(index, self._layout_width)
        if height != self._heights[index]:
            self._heights[index] = height
            self._offsets = [0, *accumulate(self._heights)]
            self._update_virtual_size()
        self.refresh()

    def scroll_to_newest(self) -> None:
        self._scroll_rows(self.max_scroll_y)

    @property
    def cursor_row(self) -> MessageRow | None:
        index = self._positions.get(self.cursor_key) if self.cursor_key is not None else None
        return self._rows[index] if index is not None else None

    def move_cursor_to(self, key: str) -> bool:
        """Put the cursor on message ``key`` a third of the way down the view, with what led to
        it above (a search result); False if it is not loaded."""
        if key not in self._positions:
            return False
        self.cursor_key = key
        self._scroll_rows(min(max(0, self._offsets[self._positions[key]] - self.size.height // 3), self.max_scroll_y))
        self.refresh()
        return True

    # --- the cursor -------------------------------------------------------------------------

    def on_focus(self) -> None:
        if self.cursor_row is None and self._rows:
            self.cursor_key = self._rows[self._lowest_visible()].key  # where the eyes are: the bottom of the view
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def action_cursor(self, step: int) -> None:
        if not self._rows:
            return
        index = self._positions.get(self.cursor_key) if self.cursor_key is not None else None
        index = self._lowest_visible() if index is None else min(max(index + step, 0), len(self._rows) - 1)
        self.cursor_key = self._rows[index].key
        self._show_cursor()
        self.refresh()

    def action_choose(self) -> None:
        row = self.cursor_row
        if row is not None:
            self.post_message(self.Chosen(self, row))

    def _lowest_visible(self) -> int:
        """The last message whose first line is on screen."""
        bottom = int(self.scroll_y) + max(self.size.height, 1) - 1
        return min(max(0, bisect_right(self._offsets, bottom) - 1), len(self._rows) - 1)

    def _show_cursor(self) -> None:
        index = self._positions[self.cursor_key]
        top, bottom = self._offsets[index], self._offsets[index + 1]
        height = max(self.size.height, 1)
        if top < self.scroll_y:
            self._scroll_rows(top)
        elif bottom > self.scroll_y + height:
            self._scroll_rows(min(top, bottom - height))

    # --- layout -----------------------------------------------------------------------------

    _FIRST, _DAY, _HEADER = 1, 2, 4

    def _body_width(self, width: int) -> int:
        return max(MIN_BODY_WIDTH, width - INDENT - GUTTER)

    def _flag(self, index: int) -> int:
        row = self._rows[index]
        if index == 0:
            return self._FIRST | self._DAY | self._HEADER
        prev = self._rows[index - 1]
        if self._days[index] != self._days[index - 1]:
            return self._DAY | self._HEADER
        if row.sender != prev.sender or row.mine != prev.mine or row.ts - prev.ts > GROUP_GAP_MS:
            return self._HEADER
        return 0

    def _height(self, index: int, width: int) -> int:
        flags = self._flags[index]
        row = self._rows[index]
        height = body_height(row.body, self._body_width(width)) if row.body or not row.attachment else 0
        if row.attachment:
            height += 1
        if flags & self._HEADER:
            height += 1
            if not flags & self._FIRST:
                height += 1  # blank line between groups
        if flags & self._DAY:
            height += 1
        if row.mark == "failed":
            height += 2  # the reason, then the keys
        if row.read_by:
            height += 1
        return height

    def _relayout(self, start: int = 0) -> None:
        """Recompute flags and heights from ``start`` on (the rows before it are unchanged)."""
        width = self._layout_width
        day = self.clock.day_number
        rows = self._rows
        del self._days[start:], self._flags[start:], self._heights[start:]
        self._days.extend(day(row.ts) for row in rows[start:])
        for index in range(start, len(rows)):
            self._flags.append(self._flag(index))
            self._heights.append(self._height(index, width))
        self._offsets = [0, *accumulate(self._heights)]

    def _replace(self, rows: list[MessageRow], *, keep: int = 0) -> None:
        """Show ``rows``; the first ``keep`` are unchanged and keep their layout (a mark that
        changed near the end costs the rows after it, not the whole conversation)."""
        width = self._current_width()
        if width != self._layout_width:
            keep = 0
        for row in self._rows[keep:]:
            self._positions.pop(row.key, None)
        if keep == 0:
            self._positions = {}
        self._rows = rows
        self._positions.update((row.key, i) for i, row in enumerate(rows[keep:], keep))
        self._layout_width = width
        self._relayout(keep)

    def _append(self, added: list[MessageRow]) -> None:
        start = len(self._rows)
        for offset, row in enumerate(added):
            self._positions[row.key] = start + offset
        self._rows.extend(added)
        self._relayout(start)

    def _append_one(self, row: MessageRow) -> None:
        if row.key in self._positions:
            self.replace_row(row)
            return
        was_at_bottom = self.at_bottom
        self._append([row])
        self._update_virtual_size()
        if was_at_bottom:
            self._scroll_rows(self.max_scroll_y)
        elif not row.mine:
            self.unseen += 1
        self.refresh()

    def _prepend(self, added: list[MessageRow]) -> None:
        self._rows[:0] = added
        self._positions = {row.key: i for i, row in enumerate(self._rows)}
        # Only the old first row's flags can change; everything below keeps its layout.
        self._relayout_prefix(len(added) + 1)

    def _relayout_prefix(self, count: int) -> None:
        width = self._layout_width
        day = self.clock.day_number
        count = min(count, len(self._rows))
        new_days = [day(row.ts) for row in self._rows[: count]]
        old_tail = len(self._rows) - count
        self._days = new_days + self._days[len(self._days) - old_tail :] if old_tail else new_days
        self._flags = [0] * count + (self._flags[len(self._flags) - old_tail :] if old_tail else [])
        self._heights = [0] * count + (self._heights[len(self._heights) - old_tail :] if old_tail else [])
        for index in range(count):
            self._flags[index] = self._flag(index)
            self._heights[index] = self._height(index, width)
        self._offsets = [0, *accumulate(self._heights)]

    def _current_width(self) -> int:
        return max(self.scrollable_content_region.width, 1) if self.is_mounted else 80

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(self._layout_width, max(self._offsets[-1], 1))

    def _anchor(self) -> tuple[str | None, int]:
        """The message at the top of the view and how far into it the view starts."""
        if not self._rows:
            return None, 0
        y = int(self.scroll_y)
        index = max(0, bisect_right(self._offsets, y) - 1)
        index = min(index, len(self._rows) - 1)
        return self._rows[index].key, y - self._offsets[index]

    def on_resize(self) -> None:
        # The size has already changed: whether the view was at the bottom is what
        # ``_following`` remembers (a shorter view is no longer at the bottom by itself).
        width = self._current_width()
        if width != self._layout_width:
            key, _ = self._anchor()
            self._layout_width = width
            self._relayout(0)
            self._update_virtual_size()
            if not self._following and key is not None:
                self._scroll_rows(self._offsets[self._positions[key]])
        if self._following:
            self._scroll_rows(self.max_scroll_y)
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # the theme changed: cached strips carry the old colours

    # --- scrolling --------------------------------------------------------------------------

    def _scroll_rows(self, y: float) -> None:
        """Scroll now, without waiting for a refresh (the virtual size is already known)."""
        self.scroll_target_y = y
        self.scroll_y = y

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._following = new_value >= self.max_scroll_y
        if new_value >= self.max_scroll_y:
            if self.unseen:
                self.unseen = 0
            self.post_message(self.ReachedBottom(self))
        if self.has_more and not self._loading_older and new_value < max(self.size.height, 5):
            self._loading_older = True
            self.post_message(self.NearTop(self))

    # --- drawing ----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        line = int(self.scroll_y) + y
        if not self._rows:
            if y == 0:
                style = self.get_component_rich_style("conversation--empty")
                return Strip([Segment(self.empty_text[:width], style)]).extend_cell_length(width, base)
            return Strip.blank(width, base)
        if line >= self._offsets[-1]:
            return Strip.blank(width, base)
        index = bisect_right(self._offsets, line) - 1
        strips = self._strips_for(index, width)
        row = line - self._offsets[index]
        return strips[row] if row < len(strips) else Strip.blank(width, base)

    def _strips_for(self, index: int, width: int) -> list[Strip]:
        row = self._rows[index]
        flags = self._flags[index]
        cursor = row.key == self.cursor_key and self.has_focus
        key = (row, flags, width, cursor)
        cached = self._strips.get(key)
        if cached is None:
            cached = self._render_row(row, flags, width)
            if cursor:
                cached = self._with_cursor(cached, flags)
            self._strips[key] = cached
        return cached

    def _with_cursor(self, strips: list[Strip], flags: int) -> list[Strip]:
        """The message's own lines (not the gap or day line above it) on the cursor's background."""
        above = (1 if flags & self._HEADER and not flags & self._FIRST else 0) + (1 if flags & self._DAY else 0)
        style = self.get_component_rich_style("conversation--cursor")
        # over each segment's own style (which carries the view's background)
        return strips[:above] + [Strip(Segment.apply_style(strip, post_style=style), strip.cell_length) for strip in strips[above:]]

    def _render_row(self, row: MessageRow, flags: int, width: int) -> list[Strip]:
        base = self.rich_style
        style = self.get_component_rich_style
        strips: list[Strip] = []

        def finish(segments: list[Segment]) -> Strip:
            return Strip(segments).adjust_cell_length(width, base)

        if flags & self._HEADER and not flags & self._FIRST:
            strips.append(Strip.blank(width, base))
        if flags & self._DAY:
            label = f" {self.clock.day_label(row.ts)} "
            side = max(0, width - cell_len(label))
            left = side // 2
            day_style = style("conversation--day")
            strips.append(finish([Segment("─" * left + label + "─" * (side - left), day_style)]))
        if flags & self._HEADER:
            name_style = style("conversation--me" if row.mine else "conversation--sender")
            segments = _safe_segments(row.sender if not row.mine else "you", base + name_style, style("conversation--placeholder"))
            segments.append(Segment("  " + self.clock.time_label(row.ts), base + style("conversation--time")))
            strips.append(finish(segments))
        body_width = self._body_width(width)
        if not row.body and row.attachment:
            lines: list[Line] = []  # a file alone: its line is the message
        elif is_plain(row.body) and len(row.body) <= body_width and row.body.isascii():
            lines = [[(row.body, False)]]
        else:
            lines = wrap_body(row.body, body_width)
        placeholder_style = base + style("conversation--placeholder")
        if row.attachment:
            file_style = base + style("conversation--file")
            segments = [Segment(" " * INDENT + FILE_MARK + " ", file_style)]
            segments.extend(_safe_segments(row.attachment, file_style, placeholder_style))
            if row.transfer:
                segments.append(Segment("  " + row.transfer, base + style("conversation--time")))
            lines.append([])  # its own line, drawn below from these segments
            file_segments = segments
        mark = MARKS.get(row.mark, "") if row.mine else ""
        mark_style = style("conversation--read" if row.mark == "read" else "conversation--failed" if row.mark == "failed" else "conversation--mark")
        for number, line in enumerate(lines):
            if row.attachment and number == len(lines) - 1:
                segments = file_segments
            else:
                segments = [Segment(" " * INDENT, base)]
                segments.extend(Segment(text, placeholder_style if ph else base) for text, ph in line)
            strip = Strip(segments).adjust_cell_length(INDENT + body_width, base)
            if number == len(lines) - 1 and mark:
                strip = Strip.join([strip, Strip([Segment(mark.rjust(GUTTER - 1) + " ", base + mark_style)])])
            strips.append(strip.adjust_cell_length(width, base))
        if row.mark == "failed":
            failed = base + style("conversation--failed")
            segments = [Segment(" " * INDENT + "✗ not sent: ", failed)]
            segments.extend(_safe_segments(row.reason or "unknown error", failed, placeholder_style))
            strips.append(finish(segments))
            keys = f"{RETRY_KEY} retry · {DISCARD_KEY} discard"
            strips.append(finish([Segment(" " * (INDENT + 2) + keys, failed)]))
        if row.read_by:
            read_style = base + style("conversation--time")
            shown, more = row.read_by[:READ_BY_NAMES], len(row.read_by) - READ_BY_NAMES
            segments = [Segment(" " * INDENT + "✓ read by ", read_style)]
            for number, name in enumerate(shown):
                if number:
                    segments.append(Segment(", " if number < len(shown) - 1 or more > 0 else " and ", read_style))
                segments.extend(_safe_segments(name, read_style, placeholder_style))
            if more > 0:
                segments.append(Segment(f" and {more} more", read_style))
            strips.append(finish(segments))
        return strips


def _common_prefix(old: Sequence[MessageRow], new: Sequence[MessageRow]) -> int:
    """How many leading rows two states share."""
    count = 0
    for before, after in zip(old, new):
        if before != after:
            break
        count += 1
    return count


def _safe_segments(text: str, style: Style, placeholder_style: Style) -> list[Segment]:
    """One-line text from outside as segments, control characters replaced."""
    return [Segment(piece, placeholder_style if ph else style) for piece, ph in fragments(text)]

