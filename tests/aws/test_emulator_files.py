"""Attachments through the emulator (``python -m tui_chat_dev serve-lambda``): the Lambda handlers,
DynamoDB and the S3 bucket in its moto, the real client on the other side. The emulator's moto
checks presigned requests as S3 does (``PresignedS3Rules``), so the client's upload is held to
S3's rules here, not only to moto's."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from tests.client.conftest import make_client, memory_keyring  # noqa: F401 - the fixture: no OS keyring
from tui_chat_dev.waiting import wait_until
from tui_chat_dev.wsclient import WsClient, signup

pytest.importorskip("flask", reason="moto's server mode needs moto[server]")


async def test_a_file_sent_by_the_client_is_downloaded_byte_identical_by_another(emulator, tmp_path, memory_keyring):  # noqa: F811
    alice = await make_client(emulator.http_url, tmp_path, "efalice")
    bob = await make_client(emulator.http_url, tmp_path, "efbob")
    try:
        alice.start()
        bob.start()
        await wait_until(alice, lambda: alice.online)
        await wait_until(bob, lambda: bob.online)
        data = os.urandom(3 * 1024 * 1024 + 17)
        path = tmp_path / "report.pdf"
        path.write_bytes(data)
        sent = await alice.send_file("efbob", path, "the report")
        await wait_until(alice, lambda: alice.queued == 0, timeout=30)
        await wait_until(bob, lambda: [r.id for r in bob.timeline("efalice")] == [sent], timeout=15)
        [row] = bob.timeline("efalice")
        assert (row.body, row.attachment.name, row.attachment.size) == ("the report", "report.pdf", len(data))
        saved = await bob.download(row.attachment, tmp_path / "downloads")
        assert saved.name == "report.pdf" and saved.read_bytes() == data
    finally:
        await alice.close()
        await bob.close()


async def test_the_emulators_bucket_refuses_what_s3_refuses(emulator):
    ann = await WsClient.open(emulator.ws_url, await signup(emulator.http_url, "efann"), "efann")
    data = b"exactly these bytes"
    ticket = await ann.request({"action": "requestUpload", "name": "a.txt", "size": len(data), "type": "text/plain",
                                "sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip
    assert ticket["type"] == "upload" and "/uploads/" in ticket["url"]
    async with httpx.AsyncClient() as http:
        assert (await http.put(ticket["url"], content=b"X" * len(data), headers=ticket["headers"])).status_code == 400
        assert (await http.put(ticket["url"], content=data + b"!", headers=ticket["headers"])).status_code == 403
        assert (await http.put(ticket["url"], content=data, headers=ticket["headers"])).status_code == 200
    stranger = await WsClient.open(emulator.ws_url, await signup(emulator.http_url, "efeve"), "efeve")
    refused = await stranger.request({"action": "requestDownload", "fileId": ticket["fileId"]})
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    await ann.close(), await stranger.close()
