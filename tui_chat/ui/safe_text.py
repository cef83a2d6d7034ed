"""Show text from other people and the server literally, and never let it drive the terminal.

Every string that did not come from this program (message bodies, usernames, status text,
server error messages) goes through this module before it is displayed:

- it becomes ``Content``/``Text`` built from plain strings, never markup, so ``[b]x[/b]`` and
  ``[@click=app.quit]x[/]`` show their brackets and do nothing;
- C0/C1 control characters, DEL, ESC, lone surrogates, line/paragraph separators and the bidi
  controls are replaced by visible placeholders (shown dim), so nothing reaches the terminal
  that could move the cursor, change colours or reorder what is on screen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rich.text import Text
from textual.content import Content

PLACEHOLDER_STYLE = "dim"
TAB = "    "
"""Tabs are allowed in bodies; a literal tab would let the terminal decide the layout."""

_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
# Everything we replace, as one character class: C0 and DEL, C1, bidi controls,
# U+2028/U+2029 (line breaks to some terminals), lone surrogates (unencodable).
_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f" + _BIDI + "\u2028\u2029\ud800-\udfff]")


def placeholder(ch: str) -> str:
    """The visible stand-in for one unsafe character: a control picture or a ``\\x..`` escape."""
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␛ … ␟
    if code == 0x7F:
        return "\u2421"  # ␡
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def fragments(text: str, *, multiline: bool = False) -> Iterator[tuple[str, bool]]:
    """Split ``text`` into ``(piece, is_placeholder)`` runs, unsafe characters replaced.

    With ``multiline`` a ``\\n`` (or ``\\r\\n``) stays a line break and a tab becomes spaces;
    otherwise both are shown as placeholders, as in a one-line name or status.
    """
    if multiline:
        text = text.replace("\r\n", "\n").replace("\t", TAB)
    pos = 0
    for match in _UNSAFE_RE.finditer(text):
        start = match.start()
        ch = match.group()
        if multiline and ch == "\n":
            continue
        if start > pos:
            yield text[pos:start], False
        yield placeholder(ch), True
        pos = start + 1
    if pos < len(text):
        yield text[pos:], False


def is_plain(text: str) -> bool:
    """True when ``text`` needs no replacement at all (the common, fast case)."""
    return _UNSAFE_RE.search(text) is None


def safe_str(text: str) -> str:
    """A one-line plain string with placeholders, for places that take ``str`` without markup."""
    if is_plain(text):
        return text
    return "".join(piece for piece, _ in fragments(text))


def safe_content(text: str, style: str = "", *, multiline: bool = False) -> Content:
    """``text`` as literal :class:`Content`; placeholders dim, the rest in ``style``."""
    parts: list[tuple[str, str]] = []
    for piece, is_placeholder in fragments(text, multiline=multiline):
        if is_placeholder:
            parts.append((piece, f"{style} {PLACEHOLDER_STYLE}".strip()))
        else:
            parts.append((piece, style))
    return Content.assemble(*parts, strip_control_codes=False)


def safe_text(text: str, style: str = "", *, multiline: bool = False) -> Text:
    """``text`` as a literal Rich :class:`Text` (for Rich renderables and Line API widgets)."""
    result = Text(end="", no_wrap=False)
    for piece, is_placeholder in fragments(text, multiline=multiline):
        result.append(piece, f"{style} {PLACEHOLDER_STYLE}".strip() if is_placeholder else style or None)
    return result
