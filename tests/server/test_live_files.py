"""Attachments on the self-hosted server (PROTOCOL.md 7.7), over real sockets: ``requestUpload``,
the bytes ``PUT`` to the URL it gives, the message naming the file, ``requestDownload`` and the
bytes back, byte-identical; and every refusal, as a person (or an attacker) meets it."""

from __future__ import annotations

import hashlib
import os
import stat

import httpx
import pytest

from tui_chat import protocol as p
from tui_chat_dev.serverproc import start_server
from tui_chat_dev.wsclient import WsClient, signup

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def files_server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("files-server"), extra_args=("--max-file-size", "1048576"))
    yield running
    running.stop()


async def user(server, name: str) -> WsClient:
    return await WsClient.open(server.ws_url, await signup(server.http_url, name), name)


def announce(data: bytes, name: str = "notes.txt", kind: str = "text/plain") -> dict:
    return {"action": "requestUpload", "name": name, "size": len(data), "type": kind, "sha256": hashlib.sha256(data).hexdigest()}


async def upload(client: WsClient, data: bytes, **fields) -> dict:
    """Announce and PUT ``data``; the ``upload`` reply."""
    ticket = await client.request(announce(data, **fields))
    assert ticket["type"] == "upload", ticket
    async with httpx.AsyncClient() as http:
        response = await http.request(ticket["method"], ticket["url"], content=data, headers=ticket["headers"])
    assert response.status_code == 200, response.text
    return ticket


async def fetch(client: WsClient, file_id: str) -> bytes:
    ticket = await client.request({"action": "requestDownload", "fileId": file_id})
    assert ticket["type"] == "download", ticket
    async with httpx.AsyncClient() as http:
        response = await http.get(ticket["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream", "never rendered by a browser"
    return response.content


async def test_a_file_sent_to_someone_arrives_byte_identical(files_server):
    ann, ben = await user(files_server, "fann"), await user(files_server, "fben")
    data = os.urandom(300_000)
    ticket = await upload(ann, data, name="photo.jpg", kind="image/jpeg")
    attachment = {"fileId": ticket["fileId"], "name": "photo.jpg", "size": len(data), "type": "image/jpeg"}
    ack = await ann.request({"action": "sendMessage", "id": "file-msg-0001", "to": "fben", "attachment": attachment})
    assert ack["type"] == "ack" and ack["message"]["attachment"] == attachment and ack["message"]["body"] == ""
    arrived = await ben.expect("message")
    assert arrived["message"]["attachment"] == attachment
    assert await fetch(ben, ticket["fileId"]) == data
    assert await fetch(ann, ticket["fileId"]) == data, "the uploader may fetch it too"
    page = await ben.request({"action": "getMessages", "with": "fann"})
    assert page["items"][-1]["attachment"] == attachment, "history carries it"
    await ann.close(), await ben.close()


async def test_only_participants_may_fetch_and_a_stranger_cannot_tell_a_file_exists(files_server):
    ann, ben, eve = await user(files_server, "sann"), await user(files_server, "sben"), await user(files_server, "seve")
    data = b"private plans"
    ticket = await upload(ann, data)
    before = await ben.request({"action": "requestDownload", "fileId": ticket["fileId"]})
    assert before["type"] == "error" and before["code"] == "forbidden", "not sent to ben yet"
    attachment = {"fileId": ticket["fileId"], "name": "plans.txt", "size": len(data), "type": "text/plain"}
    await ann.request({"action": "sendMessage", "id": "file-msg-0002", "to": "sben", "body": "see this", "attachment": attachment})
    stranger = await eve.request({"action": "requestDownload", "fileId": ticket["fileId"]})
    missing = await eve.request({"action": "requestDownload", "fileId": "0123456789abcdef"})
    assert stranger["code"] == missing["code"] == "forbidden" and stranger["message"] == missing["message"]
    stolen = await eve.request({"action": "sendMessage", "id": "file-msg-0003", "to": "seve", "attachment": attachment})
    assert stolen["type"] == "error" and stolen["code"] == "bad_request", "only its uploader may attach a file"
    await ann.close(), await ben.close(), await eve.close()


async def test_in_a_room_members_who_join_later_may_fetch_and_those_removed_may_not(files_server):
    ann, ben, cat = await user(files_server, "rann"), await user(files_server, "rben"), await user(files_server, "rcat")
    await ann.request({"action": "createRoom", "room": "#files", "members": ["rben"]})
    data = b"minutes of the meeting"
    ticket = await upload(ann, data)
    attachment = {"fileId": ticket["fileId"], "name": "minutes.txt", "size": len(data), "type": "text/plain"}
    await ann.request({"action": "sendMessage", "id": "file-msg-0004", "to": "#files", "attachment": attachment})
    assert (await cat.request({"action": "requestDownload", "fileId": ticket["fileId"]}))["code"] == "forbidden"
    await ann.request({"action": "invite", "room": "#files", "user": "rcat"})
    assert await fetch(cat, ticket["fileId"]) == data, "a member sees the whole history, files too"
    await ann.request({"action": "removeMember", "room": "#files", "user": "rben"})
    assert (await ben.request({"action": "requestDownload", "fileId": ticket["fileId"]}))["code"] == "forbidden"
    await ann.close(), await ben.close(), await cat.close()


async def test_uploads_of_the_wrong_bytes_size_or_link_are_refused_and_leave_nothing(files_server):
    ann = await user(files_server, "wann")
    data = b"exactly these bytes"
    ticket = await ann.request(announce(data))
    url = ticket["url"]
    async with httpx.AsyncClient() as http:
        assert (await http.put(url, content=b"X" * len(data))).status_code == 400, "same length, other bytes"
        assert (await http.put(url, content=data + b"!")).status_code == 413, "more than announced"
        assert (await http.put(url, content=data[:-1])).status_code == 400, "less than announced"
        assert (await http.put(url.replace("op=put", "op=get"), content=data)).status_code == 403, "a URL for another operation"
        assert (await http.put(url[:-4] + "0000", content=data)).status_code == 403, "a forged signature"
        unsent = await ann.request({"action": "sendMessage", "id": "file-msg-0005", "to": "wann",
                                    "attachment": {"fileId": ticket["fileId"], "name": "a.txt", "size": len(data), "type": ""}})  # fmt: skip
        assert unsent["code"] == "bad_request", "a file not fully uploaded cannot be sent"
        assert (await http.put(url, content=data)).status_code == 200, "the right bytes still go in"
        assert (await http.put(url, content=data)).status_code == 409, "once"
    await ann.close()


async def test_bad_announcements_are_refused_by_name(files_server):
    ann = await user(files_server, "nann")
    data = b"x"
    too_big = await ann.request({**announce(data), "size": 1048577})
    assert too_big["code"] == "too_large"
    for name in ("../../etc/passwd", "a/b", "a\\b", "..", ".", "", "bell\x07.txt", "line\nbreak", "x" * 256):
        refused = await ann.request({**announce(data), "name": name})
        assert refused["code"] == "bad_request", name
    assert (await ann.request({**announce(data), "sha256": "xyz"}))["code"] == "bad_request"
    bad_attachment = {"fileId": "../../etc", "name": "a", "size": 1, "type": ""}
    assert (await ann.request({"action": "sendMessage", "id": "file-msg-0006", "to": "nann", "attachment": bad_attachment}))["code"] == "bad_request"
    await ann.close()


async def test_files_are_private_on_disk(files_server):
    ann = await user(files_server, "dann")
    ticket = await upload(ann, b"on disk")
    folder = files_server.db_path.with_name(files_server.db_path.stem + "-files")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / ticket["fileId"]).stat().st_mode) == 0o600
    assert not list(folder.glob("*.part")), "no partial upload left behind"
    await ann.close()


async def test_the_protocol_round_trips_attachments():
    attachment = p.Attachment("0123456789abcdef", "é photo.jpg", 12, "image/jpeg")
    frame = p.action_to_wire(p.SendMessage(id="msg-00001", to="ben", body="", attachment=attachment))
    assert p.action_from_object(frame) == p.SendMessage(id="msg-00001", to="ben", body="", attachment=attachment)
    batch = p.action_to_wire(p.SendMessages(items=(p.SendMessage(id="msg-00002", to="ben", body="hi", attachment=attachment),)))
    assert batch["messages"][0]["attachment"]["fileId"] == "0123456789abcdef"
    message = p.Message("msg-00001", "ann", "ben", "", 1, 2, attachment)
    assert p.parse_event(p.encode(p.event_to_wire(p.MessageEvent(message)))) == p.MessageEvent(message)
    upload = p.Upload("0123456789abcdef", "http://h/files/x?sig=1", "PUT", (("x-amz-checksum-sha256", "abc"),), 5, rid="r1")
    assert p.parse_event(p.encode(p.event_to_wire(upload))) == upload
    with pytest.raises(p.ProtocolError):
        p.action_from_object({"action": "sendMessage", "id": "msg-00003", "to": "ben", "body": ""})  # no file, no words
