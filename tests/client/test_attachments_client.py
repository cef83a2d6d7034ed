"""Files in the client service (PROTOCOL.md 7.7), against a real server, as a person notices them:
a file sent arrives byte-identical; attached offline it survives a restart and goes once; cut
mid-upload it is uploaded again and sent once; one too large fails with the reason; a download
lands under a safe name that overwrites nothing."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from tests.client.conftest import fast_link, make_client, wait_until
from tests.client.test_sync_and_pacing import server_history
from tui_chat.client.files import safe_file_name, unique_path
from tui_chat.client.service import ChatClient
from tui_chat_dev.faultproxy import FaultProxy
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import WsClient, signup


@pytest.fixture(scope="module")
def small_files_server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("client-files"), extra_args=("--max-file-size", str(8 * 1024 * 1024)))
    yield running
    running.stop()


async def fetched(server, name: str, message: dict) -> bytes:
    """The file of ``message`` as ``name`` downloads it with a raw client."""
    from tui_chat_dev.wsclient import login

    client = await WsClient.open(server.ws_url, await login(server.http_url, name), name, device=f"fetch-{name}")
    ticket = await client.request({"action": "requestDownload", "fileId": message["attachment"]["fileId"]})
    await client.close()
    async with httpx.AsyncClient() as http:
        return (await http.get(ticket["url"])).content


def some_file(folder, name: str, size: int) -> tuple:
    data = os.urandom(size)
    path = folder / name
    path.write_bytes(data)
    return path, data


async def test_a_file_sent_arrives_byte_identical_and_its_private_copy_goes(small_files_server, tmp_path):
    alice = await make_client(small_files_server.http_url, tmp_path, "fcalice")
    await signup(small_files_server.http_url, "fcbob")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        path, data = some_file(tmp_path, "photo.jpg", 200_000)
        sent = await alice.send_file("fcbob", path, "the view")
        path.write_bytes(b"changed after attaching")  # what was chosen is what goes
        await wait_until(alice, lambda: alice.queued == 0, timeout=15)
        [row] = alice.timeline("fcbob")
        assert (row.id, row.body, row.attachment.name, row.attachment.size, row.attachment.type) == (sent, "the view", "photo.jpg", 200_000, "image/jpeg")
        [stored] = await server_history(small_files_server, alice.tokens.access, "fcalice", "fcbob")
        assert await fetched(small_files_server, "fcbob", stored) == data
        assert not list((alice.account_folder("fcalice") / "outgoing").iterdir()), "the copy is gone once sent"
        saved = await alice.download(row.attachment, tmp_path / "downloads")
        again = await alice.download(row.attachment, tmp_path / "downloads")
        assert (saved.name, again.name) == ("photo.jpg", "photo (1).jpg"), "nothing overwritten"
        assert saved.read_bytes() == again.read_bytes() == data
    finally:
        await alice.close()


async def test_a_file_attached_offline_survives_a_restart_and_is_sent_once(small_files_server, tmp_path):
    alice = await make_client(small_files_server.http_url, tmp_path, "foalice")
    await signup(small_files_server.http_url, "fobob")
    path, data = some_file(tmp_path, "notes.txt", 50_000)
    await alice.send_file("fobob", path)
    assert alice.queued == 1
    await alice.close()  # never connected: the app is closed with the file queued

    again = ChatClient(small_files_server.http_url, data_folder=tmp_path / "foalice" / "main", device="foalice-device-1", connection_options=fast_link())
    try:
        assert again.open_saved("foalice")
        [row] = again.timeline("fobob")
        assert (row.state, row.attachment.name) == ("pending", "notes.txt")
        again.start()
        await wait_until(again, lambda: again.queued == 0, timeout=15)
        [stored] = await server_history(small_files_server, again.tokens.access, "foalice", "fobob")
        assert await fetched(small_files_server, "fobob", stored) == data
    finally:
        await again.close()


async def test_an_upload_cut_midway_is_made_again_and_the_file_sent_once(small_files_server, tmp_path):
    proxy = await FaultProxy(small_files_server.port).start()
    url = f"http://127.0.0.1:{proxy.port}"
    alice = await make_client(url, tmp_path, "fxalice")
    await signup(small_files_server.http_url, "fxbob")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        path, data = some_file(tmp_path, "big.bin", 6 * 1024 * 1024)
        await alice.send_file("fxbob", path, "big one")
        await proxy.wait_sent_up(2 * 1024 * 1024)  # a third of it is through
        assert proxy.cut() == 2, "the WebSocket and the upload in progress"
        await wait_until(alice, lambda: alice.queued == 0, timeout=30)
        history = await server_history(small_files_server, alice.tokens.access, "fxalice", "fxbob")
        assert [m["body"] for m in history] == ["big one"], "sent once"
        assert hashlib.sha256(await fetched(small_files_server, "fxbob", history[0])).digest() == hashlib.sha256(data).digest()
    finally:
        await alice.close()
        await proxy.stop()


async def test_a_file_over_the_servers_limit_fails_with_the_reason_and_can_be_discarded(small_files_server, tmp_path):
    alice = await make_client(small_files_server.http_url, tmp_path, "flalice")
    await signup(small_files_server.http_url, "flbob")
    try:
        alice.start()
        await wait_until(alice, lambda: alice.online)
        path, _ = some_file(tmp_path, "huge.bin", 8 * 1024 * 1024 + 1)
        sent = await alice.send_file("flbob", path)
        await wait_until(alice, lambda: alice.timeline("flbob")[0].state == "failed", timeout=15)
        assert "at most 8388608 bytes" in alice.timeline("flbob")[0].error
        assert alice.discard(sent) and alice.timeline("flbob") == []
        assert not list((alice.account_folder("flalice") / "outgoing").iterdir())
    finally:
        await alice.close()


def test_names_from_others_become_plain_safe_names(tmp_path):
    assert safe_file_name("report.pdf") == "report.pdf"
    assert safe_file_name("..hidden") == "hidden"
    assert safe_file_name("evil\u202egpj.exe") == "evilgpj.exe", "no bidi override to disguise the extension"
    assert safe_file_name("a:b*c?.txt") == "a_b_c_.txt"
    assert safe_file_name("CON.txt") == "_CON.txt"
    assert safe_file_name("...") == "download"
    assert len(safe_file_name("x" * 300 + ".tar.gz")) <= 200 and safe_file_name("x" * 300 + ".tar.gz").endswith(".gz")
    (tmp_path / "a.txt").write_text("taken")
    assert unique_path(tmp_path, "a.txt").name == "a (1).txt"
    assert unique_path(tmp_path, "README").name == "README"
