"""Tab and shift+tab for screens with more than one field, safe for keys that arrive in a burst.

They are priority bindings, so focus moves before the next key is routed: "alice<Tab>secret<Enter>"
from a password manager, a paste, or a fast typist over SSH arrives in one read, and without
priority Textual hands "secret" to the first field (the tab's binding would run only after it).
"""

from __future__ import annotations

from textual.binding import Binding

FOCUS_KEYS = [
    Binding("tab", "app.focus_next", show=False, priority=True),
    Binding("shift+tab", "app.focus_previous", show=False, priority=True),
]
