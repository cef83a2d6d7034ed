"""Attachments in the cloud (PROTOCOL.md 7.7): the Lambda handlers over DynamoDB and S3 in moto's
server mode, the bytes PUT and GET over real HTTP to presigned URLs.

moto serves presigned URLs without checking them: it takes any length, any bytes, any checksum
header. Its server here sits behind the emulator's :class:`~tui_chat_dev.emulator.PresignedS3Rules`,
which checks what S3 checks (the signature over the signed headers, expiry, the body against
``x-amz-checksum-sha256``); the tests below that say "S3 refuses" rely on it. Without it, moto
would store a wrong length: :meth:`S3FileLinks.confirm_uploaded` still refuses to attach that.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.aws.conftest import REGION
from tests.aws.test_handlers import CLIENT, POOL, RecordingClient, connect, public_jwks, send
from tui_chat import protocol as p
from tui_chat.client.files import put_file, take_into_outbox
from tui_chat.server import aws
from tui_chat.server.auth.cognito import CognitoVerifier
from tui_chat.server.files import MAX_PENDING_FILES, UNATTACHED_KEPT_MS
from tui_chat.server.s3_files import S3FileLinks
from tui_chat.server.stores.dynamodb import DynamoDBStore

pytest.importorskip("flask", reason="moto's server mode needs moto[server]")

DAY_MS = 24 * 3600 * 1000


@pytest.fixture(scope="module")
def strict_moto():
    """moto's server on 127.0.0.1 behind S3's rules for presigned requests (the emulator's)."""
    from tui_chat_dev.emulator import start_moto_server

    server = start_moto_server()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Clock:
    """The core's and the store's clock (ms), moved by the tests."""

    def __init__(self) -> None:
        self.now = 1_900_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def cloud(strict_moto):
    """A warm container: LambdaApp over DynamoDB and the attachments bucket, each test with tables
    and a bucket of its own (the server's state lives as long as the module)."""
    suffix = uuid.uuid4().hex[:8]
    clock = Clock()
    store = DynamoDBStore(prefix=f"f{suffix}-", endpoint_url=strict_moto, region=REGION, clock=clock)
    store.create_tables()
    files = S3FileLinks(f"files-{suffix}", region=REGION, endpoint_url=strict_moto)
    files.client.create_bucket(Bucket=files.bucket)
    client = RecordingClient()
    verifier = CognitoVerifier(REGION, POOL, CLIENT, fetch_jwks=public_jwks, required_group=None)
    app = aws.LambdaApp(store, verifier=verifier, clock=clock, files=files,
                        gateway_factory=lambda url: aws.AwsGateway(url, client=client))  # fmt: skip
    aws.configure(app)
    yield app, client
    aws.configure(None)


def ask(client: RecordingClient, conn: str, user: str, frame: dict) -> dict:
    """Send one frame through the message handler; its direct reply."""
    assert send(conn, user, {**frame, "rid": "r"})["statusCode"] == 200
    [reply] = [f for f in client.take(conn) if f.get("rid") == "r"]
    return reply


def announce(data: bytes, name: str = "notes.txt") -> dict:
    return {"action": "requestUpload", "name": name, "size": len(data), "type": "text/plain", "sha256": hashlib.sha256(data).hexdigest()}


def put(ticket: dict, data: bytes, **headers: str) -> httpx.Response:
    return httpx.request(ticket["method"], ticket["url"], content=data, headers={**ticket["headers"], **headers})


def uploaded(client, conn: str, user: str, data: bytes, name: str = "notes.txt") -> dict:
    """Announced and PUT: the attachment a message can carry."""
    ticket = ask(client, conn, user, announce(data, name))
    assert ticket["type"] == "upload", ticket
    assert put(ticket, data).status_code == 200
    return {"fileId": ticket["fileId"], "name": name, "size": len(data), "type": "text/plain"}


def sent(client, conn: str, user: str, to: str, attachment: dict, msg_id: str) -> dict:
    reply = ask(client, conn, user, {"action": "sendMessage", "id": msg_id, "to": to, "body": "", "attachment": attachment})
    assert reply["type"] == "ack", reply
    return reply


def fetch(client, conn: str, user: str, file_id: str) -> httpx.Response:
    ticket = ask(client, conn, user, {"action": "requestDownload", "fileId": file_id})
    assert ticket["type"] == "download", ticket
    return httpx.get(ticket["url"])


def object_exists(app, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        app.files.client.head_object(Bucket=app.files.bucket, Key=key)
    except ClientError:
        return False
    return True


def test_the_clients_upload_goes_through_the_presigned_put_and_comes_back_byte_identical(cloud, tmp_path):
    app, client = cloud
    connect("c-ann", "ann")
    connect("c-ben", "ben")
    source = tmp_path / "photo.jpg"
    data = bytes(range(256)) * 2000
    source.write_bytes(data)
    outgoing = take_into_outbox(source, tmp_path / "outgoing", name="é photo.jpg")
    ticket = ask(client, "c-ann", "ann", {"action": "requestUpload", "name": outgoing.name, "size": outgoing.size,
                                          "type": outgoing.type, "sha256": outgoing.sha256})  # fmt: skip
    query = parse_qs(urlsplit(ticket["url"]).query)
    assert query["X-Amz-SignedHeaders"] == ["content-length;host;x-amz-checksum-sha256"], "S3 holds the client to both"
    assert query["X-Amz-Expires"] == [str(p.FILE_URL_TTL_S)] and ticket["expiresAt"] == app.clock() + p.FILE_URL_TTL_S * 1000
    assert ticket["headers"] == {"x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(data).digest()).decode()}
    asyncio.run(put_file(p.parse_event(p.encode(ticket)), outgoing))  # the client's own upload path
    assert object_exists(app, "uploads/" + ticket["fileId"])

    attachment = {"fileId": ticket["fileId"], "name": outgoing.name, "size": len(data), "type": outgoing.type}
    ack = sent(client, "c-ann", "ann", "ben", attachment, "msg-00000001")
    assert ack["message"]["attachment"] == attachment
    assert [f["message"]["attachment"] for f in client.take("c-ben", "message")] == [attachment]
    assert object_exists(app, "files/" + ticket["fileId"]), "attached: copied where it lives as long as messages"
    response = fetch(client, "c-ben", "ben", ticket["fileId"])
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == "application/octet-stream", "never rendered by a browser"
    assert response.headers["content-disposition"] == "attachment; filename=\"_ photo.jpg\"; filename*=UTF-8''%C3%A9%20photo.jpg"
    assert fetch(client, "c-ann", "ann", ticket["fileId"]).content == data, "its uploader too"
    page = ask(client, "c-ben", "ben", {"action": "getMessages", "with": "ann"})
    assert page["items"][-1]["attachment"] == attachment, "history carries it"


def test_s3_refuses_another_length_other_bytes_a_missing_checksum_and_chunks_and_nothing_can_be_sent(cloud):
    app, client = cloud
    connect("c-ann", "ann")
    data = b"exactly these bytes"
    ticket = ask(client, "c-ann", "ann", announce(data))
    assert put(ticket, data + b"!").status_code == 403, "another Content-Length than the signed one"
    assert put(ticket, b"X" * len(data)).status_code == 400, "same length, other bytes: BadDigest"
    assert httpx.put(ticket["url"], content=data).status_code == 403, "without the signed checksum header"

    def chunks():
        yield data

    assert httpx.put(ticket["url"], content=chunks(), headers=ticket["headers"]).status_code == 411, "chunked"
    assert not object_exists(app, "uploads/" + ticket["fileId"]), "nothing was stored"
    attachment = {"fileId": ticket["fileId"], "name": "a.txt", "size": len(data), "type": ""}
    unsent = ask(client, "c-ann", "ann", {"action": "sendMessage", "id": "msg-00000002", "to": "ann", "attachment": attachment})
    assert unsent["code"] == "bad_request", "a file not uploaded cannot be sent"
    assert put(ticket, data).status_code == 200, "the right bytes still go in"
    assert sent(client, "c-ann", "ann", "ann", attachment, "msg-00000002")


def test_an_expired_link_is_refused(cloud):
    app, client = cloud
    connect("c-ann", "ann")
    data = b"late"
    app.files.ttl_s = 0
    ticket = ask(client, "c-ann", "ann", announce(data))
    assert put(ticket, data).status_code == 403


def test_bytes_of_another_size_that_reached_the_bucket_are_not_attached(cloud):
    """What moto alone allows (and S3 would not): the object is there but not as announced."""
    app, client = cloud
    connect("c-ann", "ann")
    ticket = ask(client, "c-ann", "ann", announce(b"twelve bytes"))
    app.files.client.put_object(Bucket=app.files.bucket, Key="uploads/" + ticket["fileId"], Body=b"eleven byte")
    attachment = {"fileId": ticket["fileId"], "name": "a.txt", "size": 12, "type": ""}
    refused = ask(client, "c-ann", "ann", {"action": "sendMessage", "id": "msg-00000003", "to": "ann", "attachment": attachment})
    assert refused["code"] == "bad_request"


def test_only_participants_may_fetch_and_a_stranger_cannot_tell_a_file_exists(cloud):
    app, client = cloud
    for user in ("ann", "ben", "eve"):
        connect(f"c-{user}", user)
    attachment = uploaded(client, "c-ann", "ann", b"private plans")
    before = ask(client, "c-ben", "ben", {"action": "requestDownload", "fileId": attachment["fileId"]})
    assert before["code"] == "forbidden", "not sent to ben yet"
    sent(client, "c-ann", "ann", "ben", attachment, "msg-00000004")
    assert fetch(client, "c-ben", "ben", attachment["fileId"]).content == b"private plans"
    stranger = ask(client, "c-eve", "eve", {"action": "requestDownload", "fileId": attachment["fileId"]})
    missing = ask(client, "c-eve", "eve", {"action": "requestDownload", "fileId": "0123456789abcdef"})
    assert stranger["code"] == missing["code"] == "forbidden" and stranger["message"] == missing["message"]
    stolen = ask(client, "c-eve", "eve", {"action": "sendMessage", "id": "msg-00000005", "to": "eve", "attachment": attachment})
    assert stolen["code"] == "bad_request", "only its uploader may attach a file"


def test_in_a_room_members_who_join_later_may_fetch_and_those_removed_may_not(cloud):
    app, client = cloud
    for user in ("ann", "ben", "cat"):
        connect(f"c-{user}", user)
    ask(client, "c-ann", "ann", {"action": "createRoom", "room": "#files", "members": ["ben"]})
    attachment = uploaded(client, "c-ann", "ann", b"minutes of the meeting")
    sent(client, "c-ann", "ann", "#files", attachment, "msg-00000006")
    assert ask(client, "c-cat", "cat", {"action": "requestDownload", "fileId": attachment["fileId"]})["code"] == "forbidden"
    ask(client, "c-ann", "ann", {"action": "invite", "room": "#files", "user": "cat"})
    assert fetch(client, "c-cat", "cat", attachment["fileId"]).content == b"minutes of the meeting"
    ask(client, "c-ann", "ann", {"action": "removeMember", "room": "#files", "user": "ben"})
    assert ask(client, "c-ben", "ben", {"action": "requestDownload", "fileId": attachment["fileId"]})["code"] == "forbidden"


def test_a_file_over_25_mib_gets_no_link(cloud):
    app, client = cloud
    connect("c-ann", "ann")
    too_big = ask(client, "c-ann", "ann", {**announce(b"x"), "size": p.MAX_FILE_BYTES + 1})
    assert too_big["type"] == "error" and too_big["code"] == "too_large"
    assert ask(client, "c-ann", "ann", {**announce(b"x"), "size": p.MAX_FILE_BYTES})["type"] == "upload"


def test_unsent_uploads_are_capped_and_sending_one_frees_a_place(cloud):
    app, client = cloud
    connect("c-ann", "ann")
    tickets = [ask(client, "c-ann", "ann", announce(f"file {i}".encode())) for i in range(MAX_PENDING_FILES)]
    assert all(t["type"] == "upload" for t in tickets)
    refused = ask(client, "c-ann", "ann", announce(b"one more"))
    assert refused["code"] == "too_large" and f"{MAX_PENDING_FILES} files not sent yet" in refused["message"]
    assert put(tickets[0], b"file 0").status_code == 200
    sent(client, "c-ann", "ann", "ann", {"fileId": tickets[0]["fileId"], "name": "notes.txt", "size": 6, "type": ""}, "msg-00000007")
    assert ask(client, "c-ann", "ann", announce(b"one more"))["type"] == "upload"
    app.clock.now += UNATTACHED_KEPT_MS + 1  # a day later the unsent ones are gone: room for more
    assert ask(client, "c-ann", "ann", announce(b"and more"))["type"] == "upload"


def test_files_nobody_holds_are_deleted_from_the_bucket_and_the_table(cloud):
    """The sweep (FileRoutes.delete_unheld) over S3: an upload never sent, after a day; a file whose
    room was deleted, or whose messages expired; never one a message still holds."""
    app, client = cloud
    for user in ("ann", "ben"):
        connect(f"c-{user}", user)
    start = app.clock.now
    never_sent = uploaded(client, "c-ann", "ann", b"never sent")
    in_room = uploaded(client, "c-ann", "ann", b"in a room")
    expiring = uploaded(client, "c-ann", "ann", b"expires with its message")
    kept = uploaded(client, "c-ann", "ann", b"kept")
    ask(client, "c-ann", "ann", {"action": "createRoom", "room": "#gone", "members": ["ben"]})
    sent(client, "c-ann", "ann", "#gone", in_room, "msg-00000008")
    sent(client, "c-ann", "ann", "#gone", kept, "msg-00000009")
    sent(client, "c-ann", "ann", "ben", expiring, "msg-0000000a")
    app.clock.now = start + 300 * DAY_MS
    sent(client, "c-ann", "ann", "ben", kept, "msg-0000000b")  # sent again later: held longer
    for user in ("ann", "ben"):
        ask(client, f"c-{user}", user, {"action": "leaveRoom", "room": "#gone"})
    sweep = app.core_for({}).files.delete_unheld
    app.clock.now = start + 366 * DAY_MS  # retention (365 days): the first direct message has expired
    assert aws._run(sweep(app.clock.now)) == 3
    for gone in (never_sent, in_room, expiring):
        assert aws._run(app.store.get_file(gone["fileId"])) is None
        assert not object_exists(app, "uploads/" + gone["fileId"]) and not object_exists(app, "files/" + gone["fileId"])
    assert object_exists(app, "files/" + kept["fileId"])
    assert fetch(client, "c-ben", "ben", kept["fileId"]).content == b"kept", "its newer message still holds it"
    assert aws._run(sweep(app.clock.now)) == 0, "nothing left to sweep, and nothing swept twice"


@pytest.mark.parametrize("bucket", ["my-stack-filesbucket-1a2b3c", None])
def test_the_lambda_takes_attachments_when_the_template_names_the_bucket(monkeypatch, bucket):
    for name, value in (("TUI_CHAT_COGNITO_USER_POOL_ID", POOL), ("TUI_CHAT_COGNITO_CLIENT_ID", CLIENT),
                        ("TUI_CHAT_FILES_BUCKET", bucket)):  # fmt: skip
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    aws.configure(None)
    try:
        app = aws.get_app()
        assert (app.files.bucket if app.files else None) == bucket
        assert app.core_for({}).files.links is app.files
    finally:
        aws.configure(None)
