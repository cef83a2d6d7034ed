"""Attachments' bytes on the self-hosted server: ``PUT`` and ``GET /files/{fileId}`` (PROTOCOL.md 7.7).

The chat core hands out the URLs (:class:`SignedFileLinks`): each names one file, one
operation and when it stops working, signed with a key derived from the server's secret, so a
URL cannot be stretched to another file, to uploading with a download URL, or past its time.

Bytes stream through in chunks, never whole in memory. An upload is written to a private
temporary file beside the others while its SHA-256 is computed; only an upload of exactly the
declared length and hash becomes the file (a rename) and marks it uploaded. Anything else leaves
nothing behind. The folder is 0700 and every file 0600.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from tui_chat import protocol as p
from tui_chat.paths import private_folder
from tui_chat.server.asgi import Receive, Scope, Send, header, json_response
from tui_chat.server.files import FileLinks
from tui_chat.server.store import FileRecord, Store

if TYPE_CHECKING:
    from tui_chat.server.core import Caller

log = logging.getLogger("tui_chat.server")

FILES_PATH = "/files/"
CHUNK_BYTES = 64 * 1024
PUT, GET = "put", "get"


class SignedFileLinks(FileLinks):
    """URLs to this server's own ``/files/{fileId}``, at the address the client connected to."""

    def __init__(self, secret: bytes, *, ttl_s: int = p.FILE_URL_TTL_S) -> None:
        self.key = hmac.new(secret, b"tui-chat file links", hashlib.sha256).digest()  # its own key, not the tokens'
        self.ttl_s = ttl_s

    def signature(self, op: str, file_id: str, expires_s: int) -> str:
        return hmac.new(self.key, f"{op}\n{file_id}\n{expires_s}".encode(), hashlib.sha256).hexdigest()

    def _url(self, caller: Caller, op: str, file_id: str, now_ms: int) -> tuple[str, int]:
        expires_s = now_ms // 1000 + self.ttl_s
        sig = self.signature(op, file_id, expires_s)
        return f"{caller.base_url}{FILES_PATH}{file_id}?op={op}&exp={expires_s}&sig={sig}", expires_s * 1000

    def upload(self, caller: Caller, record: FileRecord, now_ms: int) -> p.Upload:
        url, expires_ms = self._url(caller, PUT, record.file_id, now_ms)
        return p.Upload(file_id=record.file_id, url=url, method="PUT", headers=(), expires_at=expires_ms)

    def download(self, caller: Caller, record: FileRecord, now_ms: int) -> p.Download:
        url, expires_ms = self._url(caller, GET, record.file_id, now_ms)
        return p.Download(file_id=record.file_id, url=url, expires_at=expires_ms)

    def valid(self, op: str, file_id: str, query: str, now_ms: int) -> bool:
        """Whether ``query`` carries this server's unexpired signature for ``op`` on ``file_id``."""
        fields = parse_qs(query, keep_blank_values=True)
        ops, exps, sigs = fields.get("op", []), fields.get("exp", []), fields.get("sig", [])
        if ops != [op] or len(exps) != 1 or len(sigs) != 1 or not exps[0].isdigit() or len(exps[0]) > 12:
            return False
        expires_s = int(exps[0])
        return now_ms < expires_s * 1000 and hmac.compare_digest(sigs[0], self.signature(op, file_id, expires_s))


class FileFolder:
    """The files' bytes: one file per ``fileId`` in a private folder beside the database."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def open(self) -> None:
        private_folder(self.folder)
        for stale in self.folder.glob("*.part"):  # uploads cut short by a stop: never whole
            stale.unlink(missing_ok=True)

    def path(self, file_id: str) -> Path:
        if not p.is_valid_message_id(file_id):  # ids are ours, checked anyway: never a path from outside
            raise ValueError("not a file id")
        return self.folder / file_id

    def partial(self, file_id: str) -> Path:
        return self.folder / f"{self.path(file_id).name}.{uuid.uuid4().hex}.part"

    async def delete(self, file_ids: list[str]) -> None:
        for file_id in file_ids:
            await asyncio.to_thread(self.path(file_id).unlink, missing_ok=True)


class FolderLinks(SignedFileLinks):
    """Signed links whose files live in a :class:`FileFolder` (deleted from there)."""

    def __init__(self, secret: bytes, folder: FileFolder, *, ttl_s: int = p.FILE_URL_TTL_S) -> None:
        super().__init__(secret, ttl_s=ttl_s)
        self.folder = folder

    async def delete(self, file_ids: list[str]) -> None:
        await self.folder.delete(file_ids)


class FileTransfer:
    """The HTTP side: ``PUT``/``GET /files/{fileId}``."""

    def __init__(self, store: Store, links: FolderLinks, clock) -> None:
        self.store = store
        self.links = links
        self.folder = links.folder
        self.clock = clock

    @staticmethod
    def handles(path: str) -> bool:
        return path.startswith(FILES_PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, file_id = scope["method"], scope["path"][len(FILES_PATH):]
        query = scope.get("query_string", b"").decode("latin-1")
        if method not in ("PUT", "GET"):
            await json_response(send, 405, {"error": "use PUT to upload and GET to download"})
            return
        op = PUT if method == "PUT" else GET
        if not p.is_valid_message_id(file_id) or not self.links.valid(op, file_id, query, self.clock()):
            await json_response(send, 403, {"error": "this link is not valid (expired, or not for this)"})
            return
        record = await self.store.get_file(file_id)
        if record is None:
            await json_response(send, 403, {"error": "this link is not valid (expired, or not for this)"})
            return
        if op == PUT:
            status, payload = await self._upload(scope, receive, record)
            await json_response(send, status, payload)
        else:
            await self._download(send, record)

    async def _upload(self, scope: Scope, receive: Receive, record: FileRecord) -> tuple[int, dict]:
        if record.uploaded:
            return 409, {"error": "this file is uploaded already"}
        declared = header(scope, "content-length")
        if not declared.isdigit() or header(scope, "transfer-encoding"):
            return 411, {"error": "send the file with a Content-Length and no chunked encoding"}
        if int(declared) > record.size:
            return 413, {"error": f"this file was announced as {record.size} bytes"}
        if int(declared) != record.size:
            return 400, {"error": f"this file was announced as {record.size} bytes"}
        partial = self.folder.partial(record.file_id)
        try:
            problem = await _receive_into(receive, partial, record)
            if problem is not None:
                return problem
            if not await self.store.file_uploaded(record.file_id):  # a parallel upload of the same bytes won
                return 409, {"error": "this file is uploaded already"}
            await asyncio.to_thread(os.replace, partial, self.folder.path(record.file_id))
        finally:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
        log.info("file uploaded", extra={"user": record.owner, "size": record.size})
        return 200, {"fileId": record.file_id, "size": record.size}

    async def _download(self, send: Send, record: FileRecord) -> None:
        if not record.uploaded:
            await json_response(send, 403, {"error": "this link is not valid (expired, or not for this)"})
            return
        try:
            handle = await asyncio.to_thread(open, self.folder.path(record.file_id), "rb")
        except FileNotFoundError:  # deleted by housekeeping between the record and here
            await json_response(send, 403, {"error": "this link is not valid (expired, or not for this)"})
            return
        with handle:
            await send({"type": "http.response.start", "status": 200, "headers": _download_headers(record)})
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


async def _receive_into(receive: Receive, partial: Path, record: FileRecord) -> tuple[int, dict] | None:
    """Stream the request body into ``partial`` (0600); the refusal, or None when it is exactly
    the declared bytes."""
    digest = hashlib.sha256()
    size = 0
    fd = await asyncio.to_thread(os.open, partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 400, {"error": "the upload ended early"}
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > record.size:
                return 413, {"error": f"this file was announced as {record.size} bytes"}
            digest.update(chunk)
            await asyncio.to_thread(out.write, chunk)
            if not message.get("more_body"):
                break
        await asyncio.to_thread(out.flush)
        await asyncio.to_thread(os.fsync, out.fileno())
    if size != record.size or digest.hexdigest() != record.sha256:
        return 400, {"error": "the bytes differ from the announced length or SHA-256; nothing was kept"}
    return None


def _download_headers(record: FileRecord) -> list[tuple[bytes, bytes]]:
    # Always bytes to save, never something a browser would render: the declared type is a hint.
    return [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(record.size).encode()),
        (b"content-disposition", f"attachment; filename*=UTF-8''{quote(record.name, safe='')}".encode("latin-1")),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"private, no-store"),
    ]
