"""Rooms in the whole app over the REAL client service and a REAL server, driven as a person does:
create one from the dialog, write in it, see who writes, reads and types; invite, rename, remove
and leave from the command palette; be removed by its owner.

The other members are raw WebSocket clients, so each test sees what the others receive.
"""

from __future__ import annotations

from textual.command import CommandList, CommandPalette
from textual.widgets import SelectionList

import pytest

from tests.ui.test_live_flows import PASSWORD, LiveApp, fast_client, peer, sign_in, unique, view_text
from tui_chat.ui.screens.chat import ChatScreen
from tui_chat.ui.screens.confirm import ConfirmScreen
from tui_chat.ui.screens.rooms import CreateRoomScreen, PickPersonScreen, RoomTitleScreen
from tui_chat.ui.session import Session
from tui_chat_dev.wsclient import signup


@pytest.fixture
def make_app(live_server, memory_keyring, private_dirs):
    return lambda name: LiveApp(Session(server=live_server.http_url, username=name, client_factory=fast_client))


def header(screen: ChatScreen) -> str:
    return str(screen.query_one("#conversation-title").render())


def listed(screen: ChatScreen) -> list[str]:
    return [row.name for row in screen.data.users()]


async def palette(app: LiveApp, pilot, query: str) -> None:
    """Run the first command palette entry that matches ``query``."""
    await pilot.press("ctrl+p")
    await pilot.press(*query)

    def found() -> bool:  # the palette searches in a worker of its own
        return isinstance(app.screen, CommandPalette) and app.screen.query_one(CommandList).option_count > 0

    await app.wait_for(found, pilot, f"a palette entry for {query!r}")
    await pilot.press("enter")
    await pilot.pause()


async def test_create_a_room_in_the_dialog_then_talk_read_and_type_in_it(live_server, make_app):
    me, ben_name, room = unique("rann"), unique("rben"), unique("rlab")
    await signup(live_server.http_url, me, PASSWORD)
    ben = await peer(live_server, ben_name)
    app = make_app(me)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await sign_in(app, pilot)
        await app.wait_for(lambda: ben_name in listed(screen), pilot, "ben listed")
        await pilot.press("ctrl+n")
        await app.wait_for(lambda: isinstance(app.screen, CreateRoomScreen), pilot, "the dialog")
        await pilot.press(*room, "tab", *"Our lab", "tab")
        members = app.screen.query_one(SelectionList)
        members.highlighted = [members.get_option_at_index(i).value for i in range(members.option_count)].index(ben_name)
        await pilot.press("space", "tab", "enter")
        await app.wait_for(lambda: isinstance(app.screen, ChatScreen) and screen.conversation == f"#{room}", pilot, "the room open")
        assert (await ben.expect("room"))["members"] == [me, ben_name]
        assert f"#{room}" in listed(screen)
        assert f"#{room}" in header(screen) and "Our lab" in header(screen) and "2 members" in header(screen)

        await pilot.press(*"hello room", "enter")
        said = await ben.expect("message")
        assert (said["message"]["to"], said["message"]["body"]) == (f"#{room}", "hello room")
        await ben.send({"action": "markRead", "with": f"#{room}", "seq": said["message"]["seq"]})
        await app.wait_for(lambda: f"read by {ben_name}" in view_text(screen), pilot, "ben's read mark")
        assert "✓✓" in view_text(screen), "everyone else has read it"
        await ben.send({"action": "typing", "to": f"#{room}"})
        await app.wait_for(lambda: f"{ben_name} is typing" in str(screen.query_one("#typing").render()), pilot, "ben typing")
        await ben.request({"action": "sendMessage", "id": "room-msg-0001", "to": f"#{room}", "body": "hi all"})
        await app.wait_for(lambda: "hi all" in view_text(screen), pilot, "ben's message")
        assert f"{ben_name}  " in view_text(screen), "the sender is named over their message"
        assert "read by" not in view_text(screen), "a mark on one's own message says nothing"

        await pilot.press("ctrl+n")  # the same name again: said in the dialog, which stays open
        await app.wait_for(lambda: isinstance(app.screen, CreateRoomScreen), pilot, "the dialog")
        await pilot.press(*room, "enter")
        await app.wait_for(lambda: "taken" in str(app.screen.query_one("#room-problem").render()), pilot, "taken")
        await pilot.press("escape")
    await ben.close()


async def test_invite_rename_remove_and_leave_from_the_palette(live_server, make_app):
    me, ben_name, cat_name, room = unique("pann"), unique("pben"), unique("pcat"), unique("plab")
    await signup(live_server.http_url, me, PASSWORD)
    ben, cat = await peer(live_server, ben_name), await peer(live_server, cat_name)
    app = make_app(me)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await sign_in(app, pilot)
        await app.session.create_room(room, "", [ben_name])
        await ben.expect("room")
        await app.wait_for(lambda: f"#{room}" in listed(screen) and cat_name in listed(screen), pilot, "the room listed")
        screen.open_conversation(f"#{room}")

        await palette(app, pilot, "invite someone")
        await app.wait_for(lambda: isinstance(app.screen, PickPersonScreen), pilot, "the picker")
        await pilot.press(*cat_name, "enter")
        assert (await cat.expect("room"))["members"] == [me, ben_name, cat_name]
        await app.wait_for(lambda: "3 members" in header(screen), pilot, "three members")

        await palette(app, pilot, "rename")
        await app.wait_for(lambda: isinstance(app.screen, RoomTitleScreen), pilot, "the title dialog")
        await pilot.press(*"Renamed", "enter")
        await ben.expect("room", title="Renamed")
        await app.wait_for(lambda: "Renamed" in header(screen), pilot, "the new title")

        await palette(app, pilot, "remove someone")
        await app.wait_for(lambda: isinstance(app.screen, PickPersonScreen), pilot, "the picker")
        await pilot.press(*cat_name, "enter")
        assert (await cat.expect("left"))["room"] == f"#{room}"
        await app.wait_for(lambda: "2 members" in header(screen), pilot, "two members")

        await palette(app, pilot, "leave")
        await app.wait_for(lambda: isinstance(app.screen, ConfirmScreen), pilot, "the question")
        await pilot.click("#confirm-yes")
        await ben.expect("room", owner=ben_name, members=[ben_name])
        await app.wait_for(lambda: f"#{room}" not in listed(screen) and screen.conversation is None, pilot, "the room gone")
        assert "no longer in" in view_text(screen)
    await ben.close()
    await cat.close()


async def test_removed_by_the_owner_closes_the_room_and_says_so(live_server, make_app):
    me, ben_name, room = unique("xann"), unique("xben"), unique("xlab")
    await signup(live_server.http_url, me, PASSWORD)
    ben = await peer(live_server, ben_name)
    app = make_app(me)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await sign_in(app, pilot)
        await ben.request({"action": "createRoom", "room": f"#{room}", "members": [me]})
        await ben.request({"action": "sendMessage", "id": "room-msg-0002", "to": f"#{room}", "body": "welcome"})
        await app.wait_for(lambda: f"#{room}" in listed(screen), pilot, "the room listed")
        screen.open_conversation(f"#{room}")
        await app.wait_for(lambda: "welcome" in view_text(screen), pilot, "its history")
        await ben.request({"action": "removeMember", "room": f"#{room}", "user": me})
        await app.wait_for(lambda: screen.conversation is None and f"#{room}" not in listed(screen), pilot, "closed")
        assert "no longer in" in view_text(screen)
        assert any("no longer in" in n.message for n in app._notifications)
    await ben.close()
