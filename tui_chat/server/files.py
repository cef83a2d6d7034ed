"""Attachments in the chat core (PROTOCOL.md 7.7): where a file's bytes go, who may fetch them.

The core never touches the bytes. :class:`FileLinks` hands out short-lived URLs for them: the
self-hosted server's own ``/files/{fileId}`` (``tui_chat.server.file_transfer``), S3 presigned
requests in the cloud. :class:`FileRoutes` answers ``requestUpload`` and ``requestDownload`` and
checks the file a message names. A file nobody may see gets the same ``forbidden`` as one that
does not exist, so file ids cannot be probed.
"""

from __future__ import annotations

import dataclasses
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

from tui_chat import protocol as p
from tui_chat.server.store import FileRecord, FilesUnsupported, Store

if TYPE_CHECKING:
    from tui_chat.server.core import Caller

NOT_YOURS = "no such file, or not yours to fetch"
"""The one answer for a file that does not exist, is not fully uploaded, or is someone else's."""
NO_FILES = "this server does not take attachments"
MAX_PENDING_FILES = 20
"""Files one user may have uploaded (or be uploading) without attaching them: each may cost the
server up to the size limit until it is attached or, a day later, deleted."""
UNATTACHED_KEPT_MS = 24 * 3600 * 1000
"""An upload never attached to a message is deleted after this long (PROTOCOL.md 7.7)."""


class FileLinks(ABC):
    """Where a client puts and fetches a file's bytes."""

    ttl_s: int = p.FILE_URL_TTL_S

    @abstractmethod
    def upload(self, caller: Caller, record: FileRecord, now_ms: int) -> p.Upload:
        """A URL (with method and headers) that takes exactly this file's bytes."""

    @abstractmethod
    def download(self, caller: Caller, record: FileRecord, now_ms: int) -> p.Download:
        """A URL that gives this file's bytes."""

    async def confirm_uploaded(self, record: FileRecord) -> bool:
        """Whether every byte is in. The self-hosted server knows it from its store (it
        received the bytes); a cloud store asks the bucket."""
        return record.uploaded

    async def attach(self, record: FileRecord) -> None:
        """A message is about to hold this file (checked: uploaded by its sender, whole). The
        cloud keeps the bytes from now on as long as messages live, not a day."""

    async def delete(self, file_ids: list[str]) -> None:
        """Delete these files' bytes (no message holds them any more)."""


class FileRoutes:
    def __init__(self, core, links: FileLinks | None, *, max_file_bytes: int = p.MAX_FILE_BYTES,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:  # fmt: skip
        self.core = core
        self.links = links
        self.max_file_bytes = max_file_bytes
        self.new_id = new_id

    @property
    def store(self) -> Store:
        return self.core.store

    async def handle(self, caller: Caller, action: p.RequestUpload | p.RequestDownload) -> None:
        if self.links is None:
            raise p.ProtocolError(p.BAD_REQUEST, NO_FILES, rid=action.rid)
        try:
            if isinstance(action, p.RequestUpload):
                await self._request_upload(caller, action)
            else:
                await self._request_download(caller, action)
        except FilesUnsupported:
            raise p.ProtocolError(p.BAD_REQUEST, NO_FILES, rid=action.rid) from None

    async def _request_upload(self, caller: Caller, action: p.RequestUpload) -> None:
        if action.size > self.max_file_bytes:
            raise p.ProtocolError(p.TOO_LARGE, f"a file may be at most {self.max_file_bytes} bytes", rid=action.rid)
        now = self.core.clock()
        record = FileRecord(self.new_id(), caller.username, action.name, action.size, action.type, action.sha256.lower(), now)
        if not await self.store.create_file(record, max_pending=MAX_PENDING_FILES):
            raise p.ProtocolError(
                p.TOO_LARGE, f"you have {MAX_PENDING_FILES} files not sent yet: send or wait for them first", rid=action.rid
            )  # fmt: skip
        upload = self.links.upload(caller, record, now)
        await self.core.reply(caller, _with_rid(upload, action.rid))

    async def _request_download(self, caller: Caller, action: p.RequestDownload) -> None:
        record = await self.store.get_file(action.file_id)
        if (
            record is None or not await self.links.confirm_uploaded(record)
            or not await self.store.may_download(caller.username, record.file_id)
        ):  # fmt: skip
            raise p.ProtocolError(p.FORBIDDEN, NOT_YOURS, rid=action.rid)
        download = self.links.download(caller, record, self.core.clock())
        await self.core.reply(caller, _with_rid(download, action.rid))

    async def check_attachment(self, caller: Caller, attachment: p.Attachment | None, *, rid: str | None, msg_id: str) -> None:
        """A message may name a file only its sender uploaded, every byte of it, at its size."""
        if attachment is None:
            return
        if self.links is None:
            raise p.ProtocolError(p.BAD_REQUEST, NO_FILES, rid=rid, id=msg_id)
        try:
            record = await self.store.get_file(attachment.file_id)
        except FilesUnsupported:
            raise p.ProtocolError(p.BAD_REQUEST, NO_FILES, rid=rid, id=msg_id) from None
        if record is None or record.owner != caller.username or not await self.links.confirm_uploaded(record):
            raise p.ProtocolError(p.BAD_REQUEST, "the attachment is not a file you have uploaded completely", rid=rid, id=msg_id)
        if attachment.size != record.size:
            raise p.ProtocolError(p.BAD_REQUEST, f"the attachment's size must be {record.size}, as uploaded", rid=rid, id=msg_id)
        await self.links.attach(record)

    async def delete_unheld(self, now: int, batch: int = 500) -> int:
        """Delete the files no message holds (and uploads never attached for a day); how many."""
        if self.links is None:
            return 0
        deleted = 0
        while True:
            file_ids = await self.store.unheld_files(now - UNATTACHED_KEPT_MS, batch)
            if not file_ids:
                return deleted
            await self.links.delete(file_ids)  # the bytes first: stopped half-way, the records still find them
            await self.store.delete_files(file_ids)
            deleted += len(file_ids)
            if len(file_ids) < batch:
                return deleted


def _with_rid(event: p.Upload | p.Download, rid: str | None) -> p.Upload | p.Download:
    return dataclasses.replace(event, rid=rid)
