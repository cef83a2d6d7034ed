"""Attachments on the client (PROTOCOL.md 7.7): a file taken into the outbox, its upload, and
downloads saved under a safe name.

- A file attached is copied at once into the account's private ``outgoing`` folder (its SHA-256
  computed on the way), so what is sent is what was chosen, even if the original is changed,
  moved or the program restarts before the link returns. The copy goes once the server has the
  message.
- The bytes go with one ``PUT`` of exactly the announced length (no chunked encoding, which S3
  refuses), streamed from disk; downloads stream to a ``.part`` file renamed when complete.
- A name from another person is never a path: :func:`safe_file_name` keeps only a plain name, and
  :func:`unique_path` never overwrites what is there ("report (1).pdf").
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from tui_chat import protocol as p
from tui_chat.client.tls import client_ssl_context

CHUNK_BYTES = 256 * 1024
TRANSFER_TIMEOUT_S = 60.0
"""Seconds without progress before an upload or download is given up (it is tried again)."""
MAX_SAVED_NAME_CHARS = 200
_WINDOWS_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?")

Progress = Callable[[int, int], None]
"""``(bytes done, bytes in all)``."""


class TransferFailed(Exception):
    """An upload or download did not complete; ``permanent`` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class OutgoingFile:
    """A file in the outbox: the private copy and what the server is told about it."""

    path: Path
    name: str
    size: int
    type: str
    sha256: str
    file_id: str | None = None
    """Set once every byte is on the server: the message can go."""

    def attachment(self) -> p.Attachment:
        assert self.file_id is not None
        return p.Attachment(self.file_id, self.name, self.size, self.type)


def guess_type(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def take_into_outbox(source: Path, folder: Path, *, name: str | None = None) -> OutgoingFile:
    """Copy ``source`` into ``folder`` (0600), hashing it on the way. Raises ``OSError`` when it
    cannot be read, ``ValueError`` when its name cannot be sent (it can be given as ``name``)."""
    name = name or source.name
    problem = p.file_name_problem(name)
    if problem:
        raise ValueError(problem)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    copy = folder / uuid.uuid4().hex
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as original, os.fdopen(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        while chunk := original.read(CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return OutgoingFile(copy, name, size, guess_type(name), digest.hexdigest())


async def put_file(upload: p.Upload, file: OutgoingFile, progress: Progress | None = None) -> None:
    """Send the bytes where ``upload`` says. Raises :class:`TransferFailed`."""
    import httpx

    async def chunks() -> AsyncIterator[bytes]:
        done = 0
        with file.path.open("rb") as source:
            while chunk := source.read(CHUNK_BYTES):
                done += len(chunk)
                yield chunk
                if progress is not None:
                    progress(done, file.size)

    headers = {**dict(upload.headers), "content-length": str(file.size)}
    try:
        async with httpx.AsyncClient(timeout=TRANSFER_TIMEOUT_S, verify=client_ssl_context()) as http:
            response = await http.request(upload.method, upload.url, content=chunks(), headers=headers)
    except (httpx.HTTPError, OSError) as exc:
        raise TransferFailed(f"the upload was cut: {exc.__class__.__name__}") from None
    if response.status_code == 409:
        return  # every byte is there already (an earlier try got through, its answer did not)
    if response.status_code >= 300:
        # 403: the link expired (try again with a new one); 400/413: these bytes will never do.
        raise TransferFailed(f"the server refused the upload ({response.status_code})", permanent=response.status_code in (400, 411, 413))


async def get_file(download: p.Download, size: int, target: Path, progress: Progress | None = None) -> None:
    """Fetch the bytes into ``target`` (through ``target.part``). Raises :class:`TransferFailed`."""
    import httpx

    partial = target.with_name(target.name + ".part")
    done = 0
    try:
        async with httpx.AsyncClient(timeout=TRANSFER_TIMEOUT_S, verify=client_ssl_context()) as http:
            async with http.stream("GET", download.url) as response:
                if response.status_code != 200:
                    raise TransferFailed(f"the server refused the download ({response.status_code})")
                with partial.open("wb") as out:
                    async for chunk in response.aiter_bytes(CHUNK_BYTES):
                        done += len(chunk)
                        if done > size:
                            raise TransferFailed("the server sent more than the file's size", permanent=True)
                        out.write(chunk)
                        if progress is not None:
                            progress(done, size)
        if done != size:
            raise TransferFailed("the download was cut")
        os.replace(partial, target)
    except (httpx.HTTPError, OSError) as exc:
        raise TransferFailed(f"the download was cut: {exc.__class__.__name__}") from None
    finally:
        partial.unlink(missing_ok=True)


def safe_file_name(name: str) -> str:
    """A plain file name for ``name`` from another person: no folders, no control or bidi
    characters, nothing hidden, nothing a system reserves; never empty."""
    kept = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    kept = re.sub(r'[/\\:*?"<>|]', "_", kept).strip().strip(".").strip()
    if _WINDOWS_RESERVED.fullmatch(kept):
        kept = "_" + kept
    if len(kept) > MAX_SAVED_NAME_CHARS:
        stem, dot, ext = kept.rpartition(".")
        kept = (stem[: MAX_SAVED_NAME_CHARS - len(ext) - 1] + "." + ext) if dot and len(ext) <= 16 else kept[:MAX_SAVED_NAME_CHARS]
    return kept or "download"


def unique_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name (1)``, ``name (2)``… before the extension: never an existing file."""
    candidate = folder / name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    number = 1
    while candidate.exists() or candidate.with_name(candidate.name + ".part").exists():
        candidate = folder / (f"{stem} ({number})" + (f".{ext}" if ext else ""))
        number += 1
    return candidate
