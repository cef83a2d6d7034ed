"""Command palette (ctrl+p): open a conversation with… (a person or a room), the room actions
(create; for the open room invite, rename, leave, and remove for its owner), set status, keys,
reconnect, sign out.
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
        rows = [u for u in chat.data.users() if not u.is_me] if chat is not None else []
        for row in rows:
            name = row.name
            words = "Open room" if row.is_room else "Open conversation with"
            text = f"{words} {name}"
            display = Content.assemble(f"{words} ", safe_content(name, "bold"))
            yield text, display, partial(app.action_open_conversation, name), "show the messages and write to them"
        if chat is not None:
            yield "Create a room…", Content("Create a room…"), app.action_create_room, "a conversation with several people (ctrl+n)"
            yield "Search messages…", Content("Search messages…"), app.action_search, "every conversation on this device (ctrl+f)"
            yield from _room_commands(app, chat)
            yield from _file_commands(app, chat, session)
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


def _room_commands(app, chat) -> Iterator[tuple[str, Content, Callable[[], object], str]]:
    """The actions on the open room, named with it."""
    room = chat.data.room(chat.conversation) if chat.conversation else None
    if room is None:
        return
    name = room.name

    def entry(words: str, after: str, action, help_text: str):
        text = f"{words} {name}{after}"
        return text, Content.assemble(f"{words} ", safe_content(name, "bold"), after), action, help_text

    yield entry("Invite someone to", "…", app.action_invite, "any member may invite")
    yield entry("Rename", "…", app.action_rename_room, "set or clear its title")
    yield entry("Leave", "", app.action_leave_room, "its history goes from this device")
    if room.owner == chat.data.me:
        yield entry("Remove someone from", "…", app.action_remove_member, "only the owner may")


def _file_commands(app, chat, session) -> Iterator[tuple[str, Content, Callable[[], object], str]]:
    """Send a file to the open conversation; save one of the newest files shown in it."""
    if chat.conversation is None:
        return
    yield "Send a file…", Content("Send a file…"), app.action_attach, "to this conversation (ctrl+t)"
    files = session.files(chat.conversation) if session is not None and hasattr(session, "files") else []
    for key, sender, name in files:
        text = f"Download {name} from {sender}"
        display = Content.assemble("Download ", safe_content(name, "bold"), " from ", safe_content(sender))
        yield text, display, partial(app.download, key, name), "to your downloads folder, then open it if you like"
