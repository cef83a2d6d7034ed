"""Where typed keys go after a dialog closes or a jump: always somewhere a person can see them
land. Each case once lost what was typed next (the text vanished, nothing was sent)."""

from __future__ import annotations

import pytest
from textual.widgets import SelectionList

from tests.ui.test_live_flows import PASSWORD, peer, sign_in, unique, view_text
from tests.ui.test_live_rooms import make_app  # noqa: F401 - the fixture
from tui_chat.ui.screens.chat import ChatScreen
from tui_chat.ui.screens.rooms import CreateRoomScreen
from tui_chat.ui.widgets.composer import Composer
from tui_chat_dev.wsclient import signup


@pytest.mark.parametrize("start", ["composer", "people", "conversation"])
async def test_after_creating_a_room_what_is_typed_goes_to_it(live_server, make_app, start):  # noqa: F811
    me, ben_name, room = unique("fann"), unique("fben"), unique("flab")
    await signup(live_server.http_url, me, PASSWORD)
    ben = await peer(live_server, ben_name)
    app = make_app(me)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await sign_in(app, pilot)
        await app.wait_for(lambda: ben_name in [r.name for r in screen.data.users()], pilot, "ben listed")
        if start == "people":
            await pilot.press("ctrl+o")
        elif start == "conversation":
            await pilot.press("shift+tab")
        await pilot.press("ctrl+n")
        await app.wait_for(lambda: isinstance(app.screen, CreateRoomScreen), pilot, "the dialog")
        await pilot.press(*room, "tab", *"Lab talk", "tab")
        members = app.screen.query_one(SelectionList)
        members.highlighted = [members.get_option_at_index(i).value for i in range(members.option_count)].index(ben_name)
        await pilot.press("space", "enter")  # enter in the member list creates (README)
        await app.wait_for(lambda: isinstance(app.screen, ChatScreen) and screen.conversation == f"#{room}", pilot, "the room open")
        await pilot.press(*"welcome to the lab", "enter")
        said = await ben.expect("room")
        said = await ben.expect("message")
        assert (said["message"]["to"], said["message"]["body"]) == (f"#{room}", "welcome to the lab")
        assert isinstance(screen.focused, Composer)
    await ben.close()


async def test_text_typed_while_the_conversation_has_the_focus_is_written_and_sent(live_server, make_app):  # noqa: F811
    """After a jump from search or a file saved the cursor is in the conversation; what is typed
    next is a message (enter included), not lost, and not a second save of the file."""
    me, ben_name = unique("fcat"), unique("fdan")
    await signup(live_server.http_url, me, PASSWORD)
    ben = await peer(live_server, ben_name)
    await ben.request({"action": "sendMessage", "id": "focus-msg-0001", "to": me, "body": "are you there?"})
    app = make_app(me)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await sign_in(app, pilot)
        await pilot.press("ctrl+o", *ben_name, "enter")
        await app.wait_for(lambda: "are you there?" in view_text(screen), pilot, "ben's message")
        await pilot.press("shift+tab")
        assert screen.focused is screen.conversation_view
        await pilot.press(*"yes, here", "enter")
        said = await ben.expect("message")
        assert said["message"]["body"] == "yes, here"
        assert isinstance(screen.focused, Composer)
    await ben.close()


async def test_a_conversation_opened_from_the_palette_is_ready_to_write_in(live_server, make_app):  # noqa: F811
    from tests.ui.test_live_rooms import palette

    me, ben_name = unique("fent"), unique("ffay")
    await signup(live_server.http_url, me, PASSWORD)
    ben = await peer(live_server, ben_name)
    app = make_app(me)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await sign_in(app, pilot)
        await app.wait_for(lambda: ben_name in [r.name for r in screen.data.users()], pilot, "ben listed")
        await pilot.press("ctrl+o")  # the focus in the people list, as it may be
        await palette(app, pilot, ben_name)
        await app.wait_for(lambda: screen.conversation == ben_name, pilot, "ben's conversation")
        await pilot.press(*"from the palette", "enter")
        said = await ben.expect("message")
        assert said["message"]["body"] == "from the palette"
    await ben.close()
