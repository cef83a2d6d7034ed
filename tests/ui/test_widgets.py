"""Pilot tests of the chat screen over fixed data: what a person sees and what it asks for."""

from __future__ import annotations

from tests.ui.fixtures import NOW_MS, FixedData, burst, fixed_clock, hostile_messages, sample_messages
from tui_chat.protocol import MAX_BODY_CHARS
from tui_chat.ui.app import ChatApp
from tui_chat.ui.screens.chat import ChatScreen
from tui_chat.ui.view_model import MessageRow, UserRow
from tui_chat.ui.widgets.conversation import ConversationView


class RecordingApp(ChatApp):
    """The real app over fixed data; what the screen asks for is recorded, not sent."""

    def __init__(self, data: FixedData, open_first: str | None = "alice") -> None:
        super().__init__(preview=lambda: ChatScreen(data, clock=fixed_clock(), open_first=open_first), clock=fixed_clock())
        self.data = data
        self.asked: list = []

    def _chat_action(self, call) -> None:
        pass

    def on_chat_screen_send(self, message) -> None:
        self.asked.append(("send", message.to, message.body))

    def on_chat_screen_retry(self, message) -> None:
        self.asked.append(("retry", message.message_id))

    def on_chat_screen_discard(self, message) -> None:
        self.asked.append(("discard", message.message_id))

    def on_chat_screen_load_older(self, message) -> None:
        self.asked.append(("older", message.conversation))

    def on_chat_screen_open(self, message) -> None:
        self.asked.append(("open", message.conversation))


def visible_text(view: ConversationView) -> list[str]:
    return [view.render_line(y).text.rstrip() for y in range(view.size.height)]


async def arrives(pilot, data: FixedData, number: int) -> None:
    """Message ``number`` from alice arrives in the open conversation and is drawn."""
    data.messages["alice"] = [*data.messages["alice"], *many("alice", 1, start=number)]
    pilot.app.screen.refresh_conversation("alice")
    await pilot.pause()


def many(sender: str, count: int, start: int = 0) -> list[MessageRow]:
    return [MessageRow(f"{sender}-{i:05d}", sender, f"{sender} says {i}", NOW_MS - (count - i) * 1000) for i in range(start, start + count)]


async def test_enter_sends_ctrl_j_adds_a_line():
    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press(*"hello", "ctrl+j", *"world", "enter")
        await pilot.pause()
        assert app.asked[-1] == ("send", "alice", "hello\nworld")
        assert app.screen.query_one("#composer").text == ""


async def test_too_long_body_is_refused_before_the_outbox():
    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)) as pilot:
        composer = app.screen.query_one("#composer")
        composer.text = "x" * (MAX_BODY_CHARS + 1)
        await pilot.press("enter")
        await pilot.pause()
        assert not [a for a in app.asked if a[0] == "send"]
        problem = app.screen.query_one("#composer-problem")
        assert problem.display and "longer than 4000 characters" in str(problem.render())
        assert composer.text == "x" * (MAX_BODY_CHARS + 1)  # nothing the writer typed is lost


async def test_retry_and_discard_the_failed_message():
    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.screen.conversation_view
        assert any("not sent: rate limited" in line for line in visible_text(view))
        await pilot.press("ctrl+r")
        await pilot.press("ctrl+g")
        assert app.asked[-2:] == [("retry", "m09"), ("discard", "m09")]


async def test_switching_conversations_never_draws_an_empty_view(monkeypatch):
    data = FixedData(messages={"alice": sample_messages(), "bob": many("bob", 50)})
    drawn: list[tuple[str | None, int]] = []
    original = ConversationView.render_line

    def spy(self, y):
        drawn.append((self.conversation, len(self.rows)))
        return original(self, y)

    monkeypatch.setattr(ConversationView, "render_line", spy)
    app = RecordingApp(data)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.click("#user-options", offset=(5, 1))  # bob: unread, so first in the list
        await pilot.pause()
        assert app.screen.conversation == "bob"
        assert "bob says 49" in "\n".join(visible_text(app.screen.conversation_view))
    assert ("bob", 0) not in drawn and ("alice", 0) not in drawn
    assert ("open", "bob") in app.asked


async def test_new_messages_stick_to_the_bottom_only_when_there():
    data = FixedData(messages={"alice": many("alice", 100)})
    app = RecordingApp(data)
    async with app.run_test(size=(100, 30)) as pilot:
        screen: ChatScreen = app.screen
        view = screen.conversation_view
        await arrives(pilot, data, 100)
        assert view.at_bottom and visible_text(view)[-1].strip() == "alice says 100"

        view.scroll_to(y=10, animate=False)
        await pilot.pause()
        top_before = visible_text(view)[0]
        data.messages["alice"] = [*data.messages["alice"], *many("alice", 2, start=101)]
        screen.refresh_conversation("alice")
        await pilot.pause()
        assert visible_text(view)[0] == top_before  # the view did not move
        marker = screen.query_one("#new-below")
        assert marker.display and "2 new" in str(marker.render())

        await pilot.click("#new-below")
        await pilot.pause()
        assert view.at_bottom and not marker.display

        view.scroll_to(y=10, animate=False)
        await pilot.press("shift+tab", "end")  # from the composer to the conversation; end = newest
        await pilot.pause()
        assert view.at_bottom


async def test_scrolling_up_asks_for_older_and_keeps_the_view_in_place():
    data = FixedData(messages={"alice": many("alice", 60, start=1000)})
    data.has_more = lambda conversation: True
    app = RecordingApp(data)
    async with app.run_test(size=(100, 30)) as pilot:
        screen: ChatScreen = app.screen
        view = screen.conversation_view
        view.scroll_to(y=0, animate=False)
        await pilot.pause()
        assert ("older", "alice") in app.asked
        first_message = next(line for line in visible_text(view) if "says" in line)
        data.messages["alice"] = [*many("alice", 50, start=900), *data.messages["alice"]]
        for i, row in enumerate(data.messages["alice"]):  # older ones are older
            data.messages["alice"][i] = MessageRow(row.key, row.sender, row.body, NOW_MS - (200 - i) * 1000)
        screen.refresh_conversation("alice")
        await pilot.pause()
        assert len(view.rows) == 110
        assert next(line for line in visible_text(view) if "says" in line) == first_message
        assert not view.at_bottom


async def test_markup_from_others_is_shown_literally_and_does_nothing():
    users = [UserRow("mallory", "online", "[b]bold[/b]"), UserRow("erin", "online", is_me=True)]
    app = RecordingApp(FixedData(user_rows=users, messages={"mallory": hostile_messages()}), open_first="mallory")
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.screen.conversation_view
        text = "\n".join(visible_text(view))
        assert "[@click=app.quit]click me[/] and [b]bold?[/b]" in text
        assert "␛[31mred␛[0m" in text and "␇" in text and "␡" in text and "\\x9b" in text
        assert "\\u202eevil" in text and "\x1b" not in text and "\u202e" not in text
        line = next(y for y in range(view.size.height) if "click me" in view.render_line(y).text)
        await pilot.click(view, offset=(5, line))
        await pilot.pause()
        assert app.is_running  # the "link" is text, not an action
        assert "[b]bold[/b]" in str(app.screen.query_one("#conversation-title").render())


async def test_typing_filters_the_people():
    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+o", "c", "a")
        await pilot.pause()
        options = app.screen.query_one("#user-options")
        assert [options.get_option_at_index(i).id for i in range(options.option_count)] == ["carol"]
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.conversation == "carol"


async def test_command_palette_opens_a_conversation():
    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"open conversation with carol")
        await pilot.pause()
        await app.workers.wait_for_complete()  # the palette searches in a worker
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.conversation == "carol"


async def test_status_screen_returns_the_choice():
    from tui_chat.ui.screens.status import StatusScreen

    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)) as pilot:
        chosen = []
        app.push_screen(StatusScreen("online"), chosen.append)
        await pilot.pause()
        await pilot.click("#status-busy")
        await pilot.click("#status-text")
        await pilot.press(*"deep work", "enter")
        await pilot.pause()
        assert chosen == [("busy", "deep work")]


async def test_keys_after_ctrl_o_in_one_burst_go_to_the_people_filter_not_the_conversation():
    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.screen.conversation == "alice" and app.focused.id == "composer"
        burst(app, "ctrl+o", "b", "o", "b", "enter")
        await pilot.pause()
        await pilot.pause()
        assert not [a for a in app.asked if a[0] == "send"], "nothing typed into the filter is sent"
        assert app.screen.conversation == "bob"
        assert app.focused.id == "composer"
        assert app.screen.query_one("#composer").text == ""


async def test_escape_in_one_burst_sends_the_rest_to_the_composer():
    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)) as pilot:
        burst(app, "ctrl+o", "escape", "h", "i")
        await pilot.pause()
        assert app.screen.query_one("#composer").text == "hi"
        assert app.screen.query_one("#user-filter").value == ""


def wrapped(count: int) -> list[MessageRow]:
    """Messages of several wrapped lines each, the last line of each saying which it is."""
    return [
        MessageRow(f"w{i:04d}", "alice", "word " * 60 + f"end-of-{i}", NOW_MS - (count - i) * 1000)
        for i in range(count)
    ]


async def test_end_after_paging_far_up_shows_the_last_line_of_the_newest_message():
    app = RecordingApp(FixedData(messages={"alice": wrapped(200)}))
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.screen.conversation_view
        await pilot.press("shift+tab", *["pageup"] * 30, "end")
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        assert view.at_bottom
        lines = [line for line in visible_text(view) if line.strip()]
        assert lines[-1].strip().endswith("end-of-199"), visible_text(view)[-4:]


async def test_after_the_height_changes_the_view_still_follows_new_messages():
    data = FixedData(messages={"alice": many("alice", 100)})
    app = RecordingApp(data)
    async with app.run_test(size=(100, 30)) as pilot:
        screen: ChatScreen = app.screen
        view = screen.conversation_view
        assert view.at_bottom
        await pilot.resize_terminal(100, 20)  # a pane split: the same width, fewer rows
        await pilot.pause()
        await arrives(pilot, data, 100)
        assert view.at_bottom and visible_text(view)[-1].strip() == "alice says 100"
        await pilot.resize_terminal(100, 40)  # zoomed back
        await pilot.pause()
        await arrives(pilot, data, 101)
        assert view.at_bottom and visible_text(view)[-1].strip() == "alice says 101"


async def test_every_palette_entry_has_its_own_name():
    from tui_chat.ui.commands import ChatCommands

    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)):
        ours = [text for text, *_ in ChatCommands(app.screen)._commands()]
        system = [command.title for command in app.get_system_commands(app.screen)]
        names = ours + system
        assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
        assert "Keys" in ours and "Theme" in system


async def test_pageup_and_pagedown_from_the_composer_scroll_the_conversation():
    app = RecordingApp(FixedData(messages={"alice": many("alice", 200)}))
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.screen.conversation_view
        assert app.focused.id == "composer" and view.at_bottom
        await pilot.press("pageup", "pageup")
        await pilot.pause()
        assert not view.at_bottom and app.focused.id == "composer", "scrolled, and still writing"
        await pilot.press("pagedown", "pagedown")
        await pilot.pause()
        assert view.at_bottom


async def test_choosing_a_person_and_writing_to_them_in_one_burst_reaches_them():
    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)) as pilot:
        burst(app, "ctrl+o", "c", "a", "r", "enter", "h", "i", "enter")
        await pilot.pause()
        await pilot.pause()
        assert [a for a in app.asked if a[0] == "send"] == [("send", "carol", "hi")]
        assert app.screen.query_one("#user-filter").value == ""


async def test_offline_people_show_when_they_were_last_seen():
    from tests.ui.fixtures import MINUTE

    users = [UserRow("dave", "offline", last_seen=NOW_MS - 3 * 60 * MINUTE), UserRow("erin", "online", is_me=True),
             UserRow("fred", "offline", last_seen=NOW_MS - 5 * MINUTE), UserRow("gina", "offline")]  # fmt: skip
    app = RecordingApp(FixedData(user_rows=users))
    async with app.run_test(size=(100, 30)):
        options = app.screen.query_one("#user-options")
        prompts = {name: str(options.get_option(name).prompt) for name in ("dave", "fred", "gina")}
        assert "seen 3 h ago" in prompts["dave"] and "seen 5 min ago" in prompts["fred"]
        assert "seen" not in prompts["gina"], "never connected: nothing to say"


def test_the_terminal_title_sequence_carries_the_unread_count_and_nothing_that_could_end_it():
    from tui_chat.ui.app import terminal_title_sequence

    assert terminal_title_sequence("tui-chat — 3 unread") == "\x1b]2;tui-chat — 3 unread\x07"
    assert terminal_title_sequence("a\x07b\x1b]0;evil") == "\x1b]2;ab]0;evil\x07"


async def test_the_connection_bar_does_not_say_online_like_a_presence():
    app = RecordingApp(FixedData())
    async with app.run_test(size=(100, 30)):
        text = str(app.screen.query_one("#connection").render())
        assert "● connected" in text and "online" not in text


class HostedServer:
    """Stands in for the built-in server: only how many are connected matters here."""

    def __init__(self, count: int) -> None:
        from pathlib import Path

        self.count, self.db, self.stopped = count, Path("server.db"), False

    async def start(self) -> str:
        return "http://127.0.0.1:8765"

    async def stop(self) -> None:
        self.stopped = True

    def connections(self) -> int:
        return self.count


async def test_quitting_while_others_use_the_built_in_server_asks_first():
    hosted = HostedServer(3)
    app = ChatApp(preview=lambda: ChatScreen(FixedData(), clock=fixed_clock()), clock=fixed_clock(), embedded=hosted)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert "3 other people are connected" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("escape")  # stay
        await pilot.pause()
        assert app.is_running and not hosted.stopped
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.click("#confirm-yes")
        await pilot.pause()
    assert hosted.stopped and app.return_code == 0


async def test_quitting_alone_on_the_built_in_server_asks_nothing():
    hosted = HostedServer(0)
    app = ChatApp(preview=lambda: ChatScreen(FixedData(), clock=fixed_clock()), clock=fixed_clock(), embedded=hosted)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert hosted.stopped


def saved_or_retried(app) -> list:
    return [asked for asked in app.asked if asked[0] in ("save", "retry")]


class SavingApp(RecordingApp):
    def on_chat_screen_save_file(self, message) -> None:
        self.asked.append(("save", message.key))


async def test_the_cursor_walks_the_messages_and_enter_saves_a_file_or_retries_a_failed_one():
    from tests.ui.fixtures import file_messages

    data = FixedData(messages={"alice": [*file_messages(), *many("alice", 2, start=90)]})
    app = SavingApp(data)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.screen.conversation_view
        await pilot.press("shift+tab")  # from the composer to the conversation
        assert app.focused is view
        assert view.cursor_row.key == "alice-00091", "the cursor starts at the newest message on screen"
        await pilot.press("enter")
        assert saved_or_retried(app) == [], "enter on a plain message asks for nothing"
        await pilot.press("up", "up", "enter")
        assert view.cursor_row.attachment.startswith("notes.md")
        await pilot.press("up", "up", "up", "enter")
        assert view.cursor_row.key == "f01"
        assert saved_or_retried(app) == [("save", "f04"), ("save", "f01")]
        cursor_line = next(y for y in range(view.size.height) if "The floor plan" in view.render_line(y).text)
        background = {seg.style.bgcolor for seg in view.render_line(cursor_line) if seg.text.strip()}
        other_line = next(y for y in range(view.size.height) if "alice says 91" in view.render_line(y).text)
        assert background.isdisjoint({seg.style.bgcolor for seg in view.render_line(other_line) if seg.text.strip()}), \
            "the message under the cursor stands out"
        await pilot.press(*["up"] * 40)
        assert view.cursor_row.key == view.rows[0].key and view.scroll_y == 0, "the cursor stops at the oldest, in view"
        await pilot.press("escape")
        assert app.focused is app.screen.query_one("#composer")


async def test_ctrl_r_retries_the_failed_message_under_the_cursor():
    failed = [MessageRow(f"x{i}", "me", f"failed {i}", NOW_MS - 5000 + i, mine=True, mark="failed", reason="rate limited") for i in range(2)]
    app = RecordingApp(FixedData(messages={"alice": failed}))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("shift+tab")
        assert app.screen.conversation_view.cursor_row.key == "x1"
        await pilot.press("ctrl+r", "enter")
        assert saved_or_retried(app) == [("retry", "x1"), ("retry", "x1")], "the one under the cursor, not the oldest"
