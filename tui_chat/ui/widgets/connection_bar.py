"""One line that says whether messages go out now: online, reconnecting in N s, offline, …"""

from __future__ import annotations

import math
import time

from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from tui_chat.ui.safe_text import safe_content
from tui_chat.ui.view_model import ConnectionRow, ConnectionState

LABELS = {
    ConnectionState.CONNECTING: ("◌", "connecting…"),
    ConnectionState.ONLINE: ("●", "connected"),  # not "online": that is a presence, and yours may be away or busy
    ConnectionState.RECONNECTING: ("◌", "reconnecting"),
    ConnectionState.OFFLINE: ("○", "offline"),
    ConnectionState.STOPPED: ("○", "offline"),
    ConnectionState.REPLACED: ("⊘", "replaced by another session of this device — not reconnecting"),
    ConnectionState.SIGNED_OUT: ("○", "signed out"),
}


class ConnectionBar(Static):
    DEFAULT_CSS = """
    ConnectionBar {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
        &.-online { color: $text; }
        &.-reconnecting, &.-connecting { background: $warning-muted; color: $text; }
        &.-offline, &.-stopped, &.-replaced, &.-signed_out { background: $error-muted; color: $text; }
    }
    """

    connection: reactive[ConnectionRow] = reactive(ConnectionRow, always_update=True)

    def __init__(self, *, monotonic=time.monotonic, **kwargs) -> None:
        super().__init__(**kwargs)
        self._monotonic = monotonic

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        if self.connection.state == ConnectionState.RECONNECTING and self.connection.retry_at is not None:
            self.update(self.describe(self.connection))

    def watch_connection(self, old: ConnectionRow, new: ConnectionRow) -> None:
        self.set_class(False, f"-{old.state}")
        self.set_class(True, f"-{new.state}")
        self.update(self.describe(new))

    def describe(self, row: ConnectionRow) -> Content:
        mark, label = LABELS.get(row.state, ("?", row.state))
        if row.state == ConnectionState.RECONNECTING and row.retry_at is not None:
            seconds = max(0, math.ceil(row.retry_at - self._monotonic()))
            label = f"reconnecting in {seconds} s" if seconds else "reconnecting now"
        parts: list[Content | str | tuple[str, str]] = [(f"{mark} {label}", "bold")]
        if row.queued and row.state != ConnectionState.ONLINE:
            parts.append(f" — {row.queued} queued")
        elif row.queued:
            parts.append(f" — sending {row.queued}")
        if row.detail and row.state != ConnectionState.ONLINE:
            parts.extend([" (", safe_content(row.detail), ")"])
        where = f"{row.user}@{row.server}" if row.user else row.server
        if where:
            parts.extend(["  ·  ", safe_content(where)])
        if row.note:
            parts.extend(["  ·  ", safe_content(row.note)])
        return Content.assemble(*parts)
