"""Command palette (ctrl+p): open a conversation with…, set status, keys, reconnect, sign out.
Textual's own entries stand beside them (Theme, Quit, Screenshot…), except its "Keys", which
would be a second entry of that name (``ChatApp.get_system_commands``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from tui_chat.ui.safe_text import safe_content


class ChatCommands(Provider):
    def _commands(self) -> Iterator[tuple[str, Content, Callable[[], object], str]]:
        app = self.app
        session = getattr(app, "session", None)
        chat = getattr(app, "chat_screen", None)
        names = [u.name for u in chat.data.users() if not u.is_me] if chat is not None else []
        for name in names:
            text = f"Open conversation with {name}"
            display = Content.assemble("Open conversation with ", safe_content(name, "bold"))
            yield text, display, partial(app.action_open_conversation, name), "show the messages and write to them"
        for status, word in (("online", "Online"), ("away", "Away"), ("busy", "Busy")):
            text = f"Set status: {word}"
            yield text, Content(text), partial(app.set_status, status, ""), "others see it next to your name"
        yield "Set status with text…", Content("Set status with text…"), app.action_set_status, "status and a short note"
        yield "Keys", Content("Keys"), app.action_help, "every key binding"
        if session is not None:
            yield "Reconnect now", Content("Reconnect now"), app.action_reconnect, "skip the wait before the next attempt"
            yield "Sign out", Content("Sign out"), app.action_sign_out, "end this session, on this device and on the server"

    async def discover(self) -> Hits:
        for text, display, command, help_text in self._commands():
            yield DiscoveryHit(display, command, text=text, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, display, command, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, text=text, help=help_text)
