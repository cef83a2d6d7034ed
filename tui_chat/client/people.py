"""Who is there: everyone's status, who is typing where, and our own status until the server has it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from tui_chat import protocol as p
from tui_chat.client.state import (
    ClientEvent,
    TypingChanged,
    User,
    UserChanged,
    UsersLoaded,
)

TYPING_SHOWN_S = 6.0


class People:
    def __init__(self, emit: Callable[[ClientEvent], None]) -> None:
        self.users: dict[str, User] = {}
        self.typing: dict[str, list[str]] = {}
        """Conversation (a user, or a room) → who is typing there, first to start first."""
        self.wanted_status: tuple[str, str] | None = None
        """A status set here that the server has not confirmed (with our own presence) yet."""
        self._emit = emit
        self._typing_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}

    def loaded(self, users: Iterable[p.ClientInfo], me: str) -> None:
        """The whole list, as the server has it after a (re)connect."""
        for info in users:
            self.users[info.user] = User(info.user, info.status, info.text, info.last_seen)
        mine = self.users.get(me)
        if mine is not None and self.wanted_status == (mine.status, mine.text):
            self.wanted_status = None  # the server has it already
        self._emit(UsersLoaded())

    def presence(self, event: p.PresenceEvent, me: str) -> None:
        user = User(event.user, event.status, event.text, event.last_seen)
        self.users[event.user] = user
        if event.user == me and self.wanted_status == (event.status, event.text):
            self.wanted_status = None  # the server has it
        self._emit(UserChanged(user))

    def want_status(self, me: str, status: str, text: str) -> None:
        """Our own status, shown at once and kept until the server confirms it."""
        self.wanted_status = (status, text)
        if me:
            old = self.users.get(me)
            user = User(me, status, text, old.last_seen if old else None)
            self.users[me] = user
            self._emit(UserChanged(user))

    def typing_seen(self, sender: str, conversation: str | None = None) -> None:
        """``sender`` is typing in ``conversation`` (their direct conversation with us when None)."""
        where = conversation or sender
        typers = self.typing.setdefault(where, [])
        if sender not in typers:
            typers.append(sender)
            self._emit(TypingChanged(where, True, sender))
        key = (where, sender)
        old = self._typing_timers.pop(key, None)
        if old:
            old.cancel()
        self._typing_timers[key] = asyncio.get_running_loop().call_later(TYPING_SHOWN_S, self.typing_ended, sender, where)

    def typing_ended(self, sender: str, conversation: str | None = None) -> None:
        """``sender`` stopped (their message arrived, or a hint expired)."""
        where = conversation or sender
        timer = self._typing_timers.pop((where, sender), None)
        if timer:
            timer.cancel()
        typers = self.typing.get(where, [])
        if sender in typers:
            typers.remove(sender)
            if not typers:
                del self.typing[where]
            self._emit(TypingChanged(where, False, sender))

    def typing_in(self, conversation: str) -> list[str]:
        return list(self.typing.get(conversation, ()))

    def stop(self) -> None:
        for timer in self._typing_timers.values():
            timer.cancel()
        self._typing_timers.clear()
