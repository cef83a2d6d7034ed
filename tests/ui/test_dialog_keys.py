"""Dialogs with more than one field take keys that arrive in one burst (a paste, a fast typist
over SSH) field by field, as the sign-in screen does: tab moves on before the next key lands."""

from __future__ import annotations

from pathlib import Path

from textual.app import App

from tests.ui.fixtures import burst
from tui_chat.ui.screens.attach import AttachScreen
from tui_chat.ui.screens.rooms import CreateRoomScreen


class DialogApp(App):
    def __init__(self, dialog) -> None:
        super().__init__()
        self.dialog = dialog
        self.answer = "unanswered"

    def on_mount(self) -> None:
        self.push_screen(self.dialog, lambda answer: setattr(self, "answer", answer))


async def test_a_path_tab_and_words_in_one_burst_send_that_file_with_those_words(tmp_path: Path):
    report = tmp_path / "report.bin"
    report.write_bytes(b"numbers")
    app = DialogApp(AttachScreen("bob"))
    async with app.run_test(size=(100, 30)) as pilot:
        burst(app, *str(report), "tab", *"the report", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.answer == (report, "the report")


async def test_a_room_name_tab_and_title_in_one_burst_fill_both_fields():
    app = DialogApp(CreateRoomScreen(["ann", "ben"]))
    async with app.run_test(size=(100, 30)) as pilot:
        burst(app, *"lab", "tab", *"Lab talk")
        await pilot.pause()
        screen = app.screen
        assert (screen.query_one("#room-name").value, screen.query_one("#room-title").value) == ("lab", "Lab talk")
