"""Attachments' bytes in the cloud: an S3 bucket reached through presigned URLs (PROTOCOL.md 7.7).

Keys follow the bucket's lifecycle rules (``assets/cloud/template.yaml``):

- ``uploads/<fileId>``: where the presigned PUT puts the bytes. The rule for this prefix deletes
  whatever is still there a day later, so an upload never attached costs a day at most.
- ``files/<fileId>``: a copy made when a message first attaches the file (:meth:`S3FileLinks.attach`);
  its rule deletes it ``MessageRetentionDays`` after it was written, when the messages expire.
  Each further attach copies it onto itself, which starts that count again: the bytes live as
  long as the newest message holding them.

The PUT is signed with its ``Content-Length`` and ``x-amz-checksum-sha256`` (base64 of the
SHA-256 the client announced): S3 refuses another length (the signature no longer matches, 403)
and other bytes (400 ``BadDigest``), so what is stored is exactly what was announced. The GET
is signed with a ``Content-Disposition: attachment`` and an octet-stream type, so a browser
saves the file instead of rendering it. The function's role has no ``s3:ListBucket``: a missing
key answers 403 like a forbidden one, and both mean "not there".
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tui_chat import protocol as p
from tui_chat.server.files import FileLinks
from tui_chat.server.store import FileRecord, StoreUnavailable

if TYPE_CHECKING:
    from tui_chat.server.core import Caller

UPLOADS = "uploads/"
FILES = "files/"
DELETE_BATCH_KEYS = 1000
"""DeleteObjects takes at most 1,000 keys (two per file: both prefixes)."""


def checksum_header(sha256_hex: str) -> str:
    """``x-amz-checksum-sha256``: the digest in base64, not hex."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


def content_disposition(name: str) -> str:
    """``attachment`` with the name twice: plain ASCII for old clients, RFC 5987 UTF-8 for the rest.
    Names carry no control characters (PROTOCOL.md 7.7), so no header can be split."""
    ascii_name = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


class S3FileLinks(FileLinks):
    """Presigned S3 requests for the attachments bucket (see the module docstring)."""

    def __init__(self, bucket: str, *, region: str | None = None, endpoint_url: str | None = None,
                 client: Any = None, ttl_s: int = p.FILE_URL_TTL_S) -> None:  # fmt: skip
        self.bucket = bucket
        self.ttl_s = ttl_s
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3", region_name=region, endpoint_url=endpoint_url,
                config=Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 5}),
            )  # fmt: skip
        self.client = client

    def _key(self, record: FileRecord) -> str:
        # The store marks a file uploaded once a message holds it: its bytes were copied to files/ then.
        return (FILES if record.uploaded else UPLOADS) + record.file_id

    def upload(self, caller: Caller, record: FileRecord, now_ms: int) -> p.Upload:
        checksum = checksum_header(record.sha256)
        url = self.client.generate_presigned_url(
            "put_object", ExpiresIn=self.ttl_s,
            Params={"Bucket": self.bucket, "Key": UPLOADS + record.file_id, "ContentLength": record.size,
                    "ChecksumSHA256": checksum},
        )  # fmt: skip
        return p.Upload(file_id=record.file_id, url=url, method="PUT", headers=(("x-amz-checksum-sha256", checksum),),
                        expires_at=now_ms + self.ttl_s * 1000)  # fmt: skip

    def download(self, caller: Caller, record: FileRecord, now_ms: int) -> p.Download:
        url = self.client.generate_presigned_url(
            "get_object", ExpiresIn=self.ttl_s,
            Params={"Bucket": self.bucket, "Key": self._key(record), "ResponseContentType": "application/octet-stream",
                    "ResponseContentDisposition": content_disposition(record.name),
                    "ResponseCacheControl": "private, no-store"},
        )  # fmt: skip
        return p.Download(file_id=record.file_id, url=url, expires_at=now_ms + self.ttl_s * 1000)

    async def confirm_uploaded(self, record: FileRecord) -> bool:
        """HEAD the object: there, at the announced size (and checksum, when S3 reports one)."""
        head = await asyncio.to_thread(self._head, self._key(record))
        if head is None or head.get("ContentLength") != record.size:
            return False
        stored = head.get("ChecksumSHA256")  # S3 keeps the one the PUT carried; moto keeps none
        return stored is None or stored == checksum_header(record.sha256)

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self._s3("head_object", Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (403, 404):
                return None  # without ListBucket a missing key is 403
            raise StoreUnavailable(f"S3 HeadObject: {_code(exc)}") from exc

    async def attach(self, record: FileRecord) -> None:
        """Copy ``uploads/`` to ``files/`` on the first attach (the upload itself expires by
        its day); copy ``files/`` onto itself on later ones, so its retention starts again."""
        source = self._key(record)
        await asyncio.to_thread(
            self._s3, "copy_object", Bucket=self.bucket, Key=FILES + record.file_id,
            CopySource={"Bucket": self.bucket, "Key": source}, MetadataDirective="REPLACE",
            Metadata={"attached": "1"}, ChecksumAlgorithm="SHA256",
        )  # fmt: skip

    async def delete(self, file_ids: list[str]) -> None:
        keys = [prefix + file_id for file_id in file_ids for prefix in (UPLOADS, FILES)]
        for start in range(0, len(keys), DELETE_BATCH_KEYS):
            batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH_KEYS]]
            reply = await asyncio.to_thread(self._s3, "delete_objects", Bucket=self.bucket,
                                            Delete={"Objects": batch, "Quiet": True})  # fmt: skip
            if reply.get("Errors"):  # the records stay, so the next sweep tries these again
                raise StoreUnavailable(f"S3 DeleteObjects left {len(reply['Errors'])} keys")

    def _s3(self, op: str, **kwargs: Any) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, op)(**kwargs)
        except ClientError as exc:
            if op == "head_object":
                raise
            raise StoreUnavailable(f"S3 {op}: {_code(exc)}") from exc
        except BotoCoreError as exc:  # unreachable, timed out
            raise StoreUnavailable(f"S3 {op}: {exc}") from exc


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "") or type(exc).__name__
