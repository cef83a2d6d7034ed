"""Files in the whole app over the REAL client service and a REAL server, driven as a person does:
send one with ctrl+t (the path completed as it is typed), see one arrive, save it from the
command palette, and be offered to open it."""

from __future__ import annotations

import hashlib
import io
import os

import httpx
import pytest

from tests.ui.test_live_flows import PASSWORD, LiveApp, fast_client, peer, sign_in, unique, view_text
from tests.ui.test_live_rooms import palette
from tui_chat.ui import images
from tui_chat.ui.screens.attach import AttachScreen, PathSuggester
from tui_chat.ui.screens.chat import ChatScreen
from tui_chat.ui.screens.confirm import ConfirmScreen
from tui_chat.ui.screens.preview import ImagePreviewScreen
from tui_chat.ui.session import Session
from tui_chat_dev.wsclient import signup


@pytest.fixture
def make_app(live_server, memory_keyring, private_dirs):
    return lambda name: LiveApp(Session(server=live_server.http_url, username=name, client_factory=fast_client))


async def test_send_a_file_with_ctrl_t_and_save_one_from_the_palette(live_server, make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_CHAT_DOWNLOADS_DIR", str(tmp_path / "downloads"))
    me, ben_name = unique("fann"), unique("fben")
    await signup(live_server.http_url, me, PASSWORD)
    ben = await peer(live_server, ben_name)
    data = os.urandom(150_000)
    (tmp_path / "plan.pdf").write_bytes(data)
    app = make_app(me)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await sign_in(app, pilot)
        await app.wait_for(lambda: ben_name in [u.name for u in screen.data.users()], pilot, "ben listed")
        screen.open_conversation(ben_name)
        await pilot.press("ctrl+t")
        await app.wait_for(lambda: isinstance(app.screen, AttachScreen), pilot, "the dialog")
        await pilot.press(*str(tmp_path / "pl"), "right")  # → takes the suggestion: plan.pdf
        assert app.screen.query_one("#attach-path").value == str(tmp_path / "plan.pdf")
        await pilot.press("tab", *"the plan", "enter")
        arrived = await ben.expect("message")
        assert (arrived["message"]["body"], arrived["message"]["attachment"]["name"]) == ("the plan", "plan.pdf")
        await app.wait_for(lambda: "plan.pdf · 150 KB · application/pdf" in view_text(screen), pilot, "the file row")

        back = os.urandom(20_000)
        ticket = await ben.request({"action": "requestUpload", "name": "reply.txt", "size": len(back), "type": "text/plain",
                                    "sha256": hashlib.sha256(back).hexdigest()})  # fmt: skip
        async with httpx.AsyncClient() as http:
            assert (await http.put(ticket["url"], content=back)).status_code == 200
        attachment = {"fileId": ticket["fileId"], "name": "reply.txt", "size": len(back), "type": "text/plain"}
        await ben.request({"action": "sendMessage", "id": "file-back-01", "to": me, "attachment": attachment})
        await app.wait_for(lambda: "reply.txt" in view_text(screen), pilot, "ben's file")
        await palette(app, pilot, "download reply")
        await app.wait_for(lambda: isinstance(app.screen, ConfirmScreen), pilot, "offered to open it")
        assert (tmp_path / "downloads" / "reply.txt").read_bytes() == back
        await pilot.click("#confirm-no")
        await app.wait_for(lambda: isinstance(app.screen, ChatScreen), pilot, "back in the chat")
    await ben.close()


async def test_the_path_is_completed_from_the_disk(tmp_path):
    (tmp_path / "report-2026.pdf").write_text("x")
    (tmp_path / "photos").mkdir()
    (tmp_path / ".hidden").write_text("x")
    suggest = PathSuggester().get_suggestion
    assert await suggest(str(tmp_path / "rep")) == str(tmp_path / "report-2026.pdf")
    assert await suggest(str(tmp_path / "ph")) == str(tmp_path / "photos") + os.sep
    assert await suggest(str(tmp_path / "h")) is None, "hidden files only when asked for with a dot"
    assert await suggest(str(tmp_path / ".h")) == str(tmp_path / ".hidden")
    assert await suggest(str(tmp_path / "nothing-like-this")) is None


async def send_file_to(ben, me: str, name: str, media_type: str, data: bytes, message_id: str) -> None:
    """Ben uploads ``data`` and sends it to ``me`` with the raw protocol."""
    ticket = await ben.request({"action": "requestUpload", "name": name, "size": len(data), "type": media_type,
                                "sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip
    async with httpx.AsyncClient() as http:
        assert (await http.put(ticket["url"], content=data)).status_code == 200
    attachment = {"fileId": ticket["fileId"], "name": name, "size": len(data), "type": media_type}
    await ben.request({"action": "sendMessage", "id": message_id, "to": me, "attachment": attachment})


def png_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def image_previews(monkeypatch):
    """Previews on, as a terminal that answered the start-up question would have them (here:
    not a terminal, so textual-image draws with Unicode blocks)."""
    monkeypatch.setattr(images, "_image_widget", None)
    assert images.prepare(True) is not None
    yield


async def test_enter_on_a_file_saves_it_and_an_image_is_previewed(live_server, make_app, tmp_path, monkeypatch, image_previews):
    monkeypatch.setenv("TUI_CHAT_DOWNLOADS_DIR", str(tmp_path / "downloads"))
    me, ben_name = unique("eann"), unique("eben")
    await signup(live_server.http_url, me, PASSWORD)
    ben = await peer(live_server, ben_name)
    picture, broken = png_bytes(), b"\x89PNG\r\n\x1a\n not really a picture"
    app = make_app(me)
    async with app.run_test(size=(110, 34)) as pilot:
        screen = await sign_in(app, pilot)
        await app.wait_for(lambda: ben_name in [u.name for u in screen.data.users()], pilot, "ben listed")
        screen.open_conversation(ben_name)
        await send_file_to(ben, me, "broken.png", "image/png", broken, "img-broken-1")
        await send_file_to(ben, me, "red.png", "image/png", picture, "img-red-01")
        await app.wait_for(lambda: "red.png" in view_text(screen), pilot, "both files shown")

        await pilot.press("shift+tab", "enter")  # the cursor starts on the newest: red.png
        await app.wait_for(lambda: isinstance(app.screen, ImagePreviewScreen), pilot, "the preview")
        assert (tmp_path / "downloads" / "red.png").read_bytes() == picture
        assert not app.screen.query(".preview-placeholder"), "drawn, not a placeholder"
        await pilot.press("escape")
        await app.wait_for(lambda: isinstance(app.screen, ChatScreen), pilot, "back in the chat")

        await pilot.press("up", "enter")
        await app.wait_for(lambda: isinstance(app.screen, ImagePreviewScreen), pilot, "the broken one's preview")
        placeholder = app.screen.query_one(".preview-placeholder")
        assert "could not be read as an image" in str(placeholder.render()), "a file that only claims to be an image"
        await pilot.press("escape")
    await ben.close()
