"""Search in the whole app over the REAL client service and a REAL server: ctrl+f, words typed,
older history fetched from the server when the cache does not reach back far enough, enter jumps
to the message with the cursor on it."""

from __future__ import annotations

from tests.ui.test_live_flows import PASSWORD, make_app, peer, sign_in, unique, view_text  # noqa: F401 - make_app: fixture
from tui_chat.ui.screens.chat import ChatScreen
from tui_chat.ui.screens.search import SearchScreen
from tui_chat_dev.wsclient import signup

HISTORY = 260
"""More than one page (200): the oldest messages are not cached by a new device's catch-up."""


async def test_search_fetches_older_history_and_jumps_to_the_message(live_server, make_app):  # noqa: F811
    me, ben_name = unique("sann"), unique("sben")
    await signup(live_server.http_url, me, PASSWORD)
    ben = await peer(live_server, ben_name)
    bodies = [f"note {i}" + (" about the Lighthouse keeper" if i == 5 else "") for i in range(HISTORY)]
    for start in range(0, HISTORY, 50):
        batch = [{"id": f"old-{i:04d}", "to": me, "body": bodies[i]} for i in range(start, min(start + 50, HISTORY))]
        assert (await ben.request({"action": "sendMessages", "messages": batch}))["type"] == "acks"
    app = make_app(me)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await sign_in(app, pilot)
        await app.wait_for(lambda: ben_name in [u.name for u in screen.data.users()], pilot, "ben listed")

        await pilot.press("ctrl+f", *"lightho")
        await app.wait_for(lambda: isinstance(app.screen, SearchScreen), pilot, "the search")
        search = app.screen
        await app.wait_for(lambda: "No cached message" in str(search.query_one("#search-status").render()), pilot, "nothing cached")
        assert search.query_one("#search-older").display, "offered: the conversation is not fully cached"

        await pilot.click("#search-older")
        await app.wait_for(lambda: len(search.hits) == 1, pilot, "found after fetching")
        assert "60 older messages fetched" in str(search.query_one("#search-status").render())
        assert not search.query_one("#search-older").display, "everything is cached now"

        await pilot.click("#search-input")
        await pilot.press("enter")
        await app.wait_for(lambda: isinstance(app.screen, ChatScreen), pilot, "back to the chat")
        view = screen.conversation_view
        assert screen.conversation == ben_name
        assert view.cursor_row is not None and view.cursor_row.key == "old-0005"
        assert app.focused is view, "the cursor is shown: up/down go on from the message found"
        assert "note 5 about the Lighthouse keeper" in view_text(screen)
    await ben.close()
