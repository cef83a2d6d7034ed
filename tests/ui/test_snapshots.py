"""Snapshots of every screen with fixed data: no network, a fixed clock, no cursor blink.

Update the baselines with ``pytest tests/ui/test_snapshots.py --snapshot-update`` and look at
them (``tests/ui/__snapshots__/``) before committing.
"""

from __future__ import annotations


from tests.ui.fixtures import FixedData, file_messages, fixed_clock, hostile_messages, room_messages, room_users, sample_room
from tui_chat.ui.app import ChatApp
from tui_chat.ui.screens.chat import ChatScreen
from tui_chat.ui.screens.sign_in import ServerInfo, SignInFailed, SignInScreen
from tui_chat.ui.view_model import ConnectionRow, UserRow


class WrongPassword:
    async def server_info(self, server):
        return ServerInfo(auth="accounts", signup=True)

    async def sign_in(self, server, username, password, *, create, mode):
        raise SignInFailed("Wrong username or password.")


def chat_app(data: FixedData | None = None, open_first: str | None = "alice") -> ChatApp:
    data = data or FixedData()
    return ChatApp(preview=lambda: ChatScreen(data, clock=fixed_clock(), open_first=open_first), clock=fixed_clock())


async def no_blink(pilot) -> None:
    for widget in pilot.app.screen.query("Input, TextArea"):
        widget.cursor_blink = False
    await pilot.pause()


def test_sign_in_with_error(snap_compare):
    app = ChatApp(preview=lambda: SignInScreen(WrongPassword(), server="http://127.0.0.1:8765", username="erin"))

    async def run_before(pilot):
        await pilot.pause()
        await pilot.click("#password")
        await pilot.press(*"hunter22")
        await pilot.press("enter")
        await pilot.app.workers.wait_for_complete()
        await no_blink(pilot)

    assert snap_compare(app, terminal_size=(90, 32), run_before=run_before)


def test_chat_grouped_days_and_marks(snap_compare):
    data = FixedData()
    data.typing_in["alice"] = ["alice"]
    assert snap_compare(chat_app(data), terminal_size=(110, 36), run_before=no_blink)


def test_offline_bar_with_queue(snap_compare):
    data = FixedData(connection_row=ConnectionRow("offline", queued=3, server="127.0.0.1:8765", user="erin", detail="server unreachable"))
    assert snap_compare(chat_app(data), terminal_size=(110, 36), run_before=no_blink)


def test_hostile_text(snap_compare):
    users = [UserRow("mallory", "online", "[@click=app.quit]status[/] \x1b[2J\u202etxet"), UserRow("erin", "online", is_me=True)]
    data = FixedData(user_rows=users, messages={"mallory": hostile_messages()})
    assert snap_compare(chat_app(data, "mallory"), terminal_size=(100, 24), run_before=no_blink)


def test_narrow_terminal(snap_compare):
    assert snap_compare(chat_app(), terminal_size=(60, 20), run_before=no_blink)


def test_wide_terminal(snap_compare):
    assert snap_compare(chat_app(), terminal_size=(160, 48), run_before=no_blink)


def test_help_screen(snap_compare):
    async def run_before(pilot):
        await no_blink(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(chat_app(), terminal_size=(100, 36), run_before=run_before)


def room_data() -> FixedData:
    return FixedData(user_rows=room_users(), messages={"#lab": room_messages()}, room_info={"#lab": sample_room()},
                     typing_in={"#lab": ["bob", "carol", "dave"]})  # fmt: skip


def test_room_list_beside_people(snap_compare):
    """Rooms with unread first, then rooms, then people; a room shows its size and title, literally."""
    assert snap_compare(chat_app(room_data(), open_first=None), terminal_size=(100, 30), run_before=no_blink)


def test_room_conversation(snap_compare):
    """The header: title and members with presence (those there first, the owner marked);
    each sender named over their messages; who read up to where, three names and "N more";
    who is typing."""
    assert snap_compare(chat_app(room_data(), open_first="#lab"), terminal_size=(110, 32), run_before=no_blink)


def test_create_room_dialog(snap_compare):
    from tui_chat.ui.screens.rooms import CreateRoomScreen

    async def run_before(pilot):
        await pilot.pause()
        pilot.app.push_screen(CreateRoomScreen(["alice", "bob", "carol", "dave"], chosen=["bob"]))
        await pilot.pause()
        await pilot.press(*"release")
        await pilot.press("tab", *"Friday's release")
        await no_blink(pilot)

    assert snap_compare(chat_app(room_data(), open_first=None), terminal_size=(100, 30), run_before=run_before)


def test_files_in_a_conversation(snap_compare):
    """A file with words and alone, a hostile file name drawn inert, one of ours uploading."""
    data = FixedData(messages={"alice": file_messages()})
    assert snap_compare(chat_app(data), terminal_size=(100, 24), run_before=no_blink)


def test_send_a_file_dialog(snap_compare):
    from tui_chat.ui.screens.attach import AttachScreen

    async def run_before(pilot):
        await pilot.pause()
        pilot.app.push_screen(AttachScreen("alice", start="/no/such/file.txt"))
        await pilot.pause()
        await pilot.press("enter")  # said in the dialog, which stays
        await no_blink(pilot)

    assert snap_compare(chat_app(), terminal_size=(100, 24), run_before=run_before)


def test_search_results(snap_compare):
    """ctrl+f over fixed hits: who, where, when; the matched words highlighted; hostile text inert."""
    from tests.ui.fixtures import NOW_MS
    from tui_chat.client.search import SearchHit, query_words, spans
    from tui_chat.ui.screens.search import SearchScreen

    hour = 3_600_000
    texts = [
        ("alice", "alice", "The lighthouse plans are in the shared folder, see you Friday", "", NOW_MS - 2 * hour),
        ("#climbing", "bob", "Meet at the old Lighthouse café at nine? Bring the rope.", "", NOW_MS - 26 * hour),
        ("mallory", "mallory", "[b]light[/b]\x1b[2J\u202eexe.lighthouse", "lighthouse-keys.pdf", NOW_MS - 30 * 24 * hour),
        ("alice", "me", "", "lighthouse-survey.pdf", NOW_MS - 31 * 24 * hour),
    ]
    words = query_words("lightho")
    hits = [SearchHit(peer, n, f"h{n}", sender, ts, body, name, spans(body, words), spans(name, words))
            for n, (peer, sender, body, name, ts) in enumerate(texts)]  # fmt: skip

    async def run_before(pilot):
        await pilot.pause()
        screen = SearchScreen(lambda text: hits if text else [], lambda: ["#climbing"], None, me="me", clock=fixed_clock())
        pilot.app.push_screen(screen)
        await pilot.pause()
        await pilot.press(*"lightho")
        await no_blink(pilot)

    assert snap_compare(chat_app(), terminal_size=(110, 34), run_before=run_before)
