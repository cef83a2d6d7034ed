"""Fixed data for snapshot and widget tests: a clock that never moves, users and messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timezone

from textual import events

from tui_chat.ui.timefmt import Clock
from tui_chat.ui.view_model import ConnectionRow, MessageRow, RoomInfo, UserRow

NOW_MS = 1_741_000_000_000  # Monday 3 March 2025, 11:06:40 UTC
MINUTE = 60_000
DAY = 86_400_000


def fixed_clock() -> Clock:
    return Clock(now=lambda: NOW_MS, tz=timezone.utc)


def sample_users() -> list[UserRow]:
    return [
        UserRow("alice", "online", "at my desk", unread=0),
        UserRow("bob", "away", "lunch", unread=2),
        UserRow("carol", "busy", "in a meeting [b]do not disturb[/b]"),
        UserRow("dave", "offline"),
        UserRow("erin", "online", is_me=True),
    ]


def sample_messages() -> list[MessageRow]:
    yesterday = NOW_MS - DAY - 3 * 60 * MINUTE
    today = NOW_MS - 40 * MINUTE
    return [
        MessageRow("m01", "alice", "Morning! Did the deploy go out?", yesterday),
        MessageRow("m02", "alice", "The dashboard still shows the old build.", yesterday + MINUTE),
        MessageRow("m03", "erin", "It did, give the CDN a minute.", yesterday + 2 * MINUTE, mine=True, mark="read"),
        MessageRow("m04", "alice", "Looks right now, thanks.", yesterday + 20 * MINUTE),
        MessageRow("m05", "alice", "Lunch today?\nThe new place on the corner opens at noon.", today),
        MessageRow("m06", "erin", "Sure, 12:30 works for me.", today + 2 * MINUTE, mine=True, mark="read"),
        MessageRow("m07", "erin", "I'll book a table for four, if Bob and Carol want to come along too.", today + 3 * MINUTE, mine=True, mark="sent"),
        MessageRow("m08", "erin", "Bringing the umbrella.", today + 4 * MINUTE, mine=True, mark="pending"),
        MessageRow("m09", "erin", "See you there.", today + 4 * MINUTE, mine=True, mark="failed", reason="rate limited, try again in a moment"),
    ]


def hostile_messages() -> list[MessageRow]:
    t = NOW_MS - 5 * MINUTE
    return [
        MessageRow("h01", "mallory", "[@click=app.quit]click me[/] and [b]bold?[/b]", t),
        MessageRow("h02", "mallory", "colours: \x1b[31mred\x1b[0m bell:\x07 del:\x7f c1:\x9b", t + MINUTE),
        MessageRow("h03", "mallory", "bidi: abc\u202eevil\u202c def \u2066iso\u2069 \u200fmark", t + 2 * MINUTE),
    ]


ROOM_PEOPLE = ["alice", "bob", "carol", "dave"] + [f"member{n:02}" for n in range(1, 37)]
"""A 41-member room with erin: the "read by" lines must stay readable at that size."""


def sample_room() -> RoomInfo:
    statuses = {"alice": "online", "bob": "away", "carol": "busy", "dave": "offline"}
    members = tuple(UserRow(name, statuses.get(name, "online" if n % 3 else "offline")) for n, name in enumerate(ROOM_PEOPLE))
    return RoomInfo("#lab", "Lab [b]stand-up[/b]", "alice", (members[0], UserRow("erin", "online", is_me=True), *members[1:]))


def room_users() -> list[UserRow]:
    return [
        UserRow("#lab", unread=0, room_title="Lab [b]stand-up[/b]", members=41),
        UserRow("#release", unread=4, room_title="Friday's release", members=3),
        UserRow("#quiet", room_title="", members=2),
        *sample_users(),
    ]


def room_messages() -> list[MessageRow]:
    """A room: several senders, one after another, with members' read marks spread over them."""
    t = NOW_MS - 30 * MINUTE
    everyone_else = tuple(sorted(name for name in ROOM_PEOPLE if name not in ("alice", "bob", "carol")))
    return [
        MessageRow("r01", "alice", "Stand-up in five minutes.", t),
        MessageRow("r02", "alice", "Agenda: the release, then the flaky test.", t + MINUTE, read_by=("carol",)),
        MessageRow("r03", "bob", "Running late, start without me.", t + 2 * MINUTE),
        MessageRow("r04", "carol", "\x1b[31mred?\x1b[0m the build is green again", t + 3 * MINUTE, read_by=("bob",)),
        MessageRow("r05", "erin", "Great, I'll cut the release after lunch.", t + 4 * MINUTE, mine=True, mark="sent",
                   read_by=("alice", *everyone_else)),
        MessageRow("r06", "erin", "Notes are in the wiki.", t + 5 * MINUTE, mine=True, mark="pending"),
    ]


def file_messages() -> list[MessageRow]:
    """Files: one with words, one alone, one with a hostile name, one of ours on its way up."""
    t = NOW_MS - 10 * MINUTE
    return [
        MessageRow("f01", "alice", "The floor plan, as promised.", t, attachment="floor-plan.pdf · 2.4 MB · application/pdf"),
        MessageRow("f02", "alice", "", t + MINUTE, attachment="IMG_0042.jpg · 640 KB · image/jpeg"),
        MessageRow("f03", "mallory", "", t + 2 * MINUTE, attachment="[b]invoice[/b]\x1b[2J\u202egpj.exe · 12 KB · application/x-msdownload"),
        MessageRow("f04", "erin", "Here are my notes", t + 3 * MINUTE, mine=True, mark="pending",
                   attachment="notes.md · 18 KB · text/markdown", transfer="uploading 40%"),
    ]


@dataclass
class FixedData:
    """A :class:`ChatData` with nothing behind it but lists."""

    me: str = "erin"
    user_rows: list[UserRow] = field(default_factory=sample_users)
    messages: dict[str, list[MessageRow]] = field(default_factory=lambda: {"alice": sample_messages()})
    typing_in: dict[str, list[str]] = field(default_factory=dict)
    room_info: dict[str, RoomInfo] = field(default_factory=dict)
    connection_row: ConnectionRow = field(default_factory=lambda: ConnectionRow("online", server="127.0.0.1:8765", user="erin"))

    def users(self):
        return self.user_rows

    def rows(self, conversation):
        return self.messages.get(conversation, [])

    def has_more(self, conversation):
        return False

    def typists(self, conversation):
        return self.typing_in.get(conversation, [])

    def room(self, conversation):
        return self.room_info.get(conversation)

    def connection(self):
        return self.connection_row


KEY_CHARACTERS = {"tab": "\t", "enter": "\r"}


def burst(app, *keys: str) -> None:
    """Keys that arrive in one read (a fast typist over SSH, a paste, a password manager): all
    queued before the app handles the first, unlike ``pilot.press``, which waits for each key."""
    for key in keys:
        app.post_message(events.Key(key, KEY_CHARACTERS.get(key, key if len(key) == 1 else None)))
