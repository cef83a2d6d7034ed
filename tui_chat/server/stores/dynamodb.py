"""The cloud store: :class:`~tui_chat.server.store.Store` over DynamoDB (boto3).

Every boto3 call blocks, so each runs in a worker thread (``asyncio.to_thread``); a boto3
*client* is thread-safe, so one is shared by every call and every event loop (the Lambda
runtime and the local emulator drive the same store from several threads). Retries on
throttling are boto3's own (``standard`` retry mode).

Tables (names are ``prefix + name``; the template creates them, :meth:`DynamoDBStore.create_tables`
does the same for tests and the emulator). All are on-demand; the template turns on
point-in-time recovery and TTL on ``expireAt``.

``users`` — key ``pk`` (S)
    * a user: ``pk = <username>``; ``passwordHash``?, ``status``, ``text``, ``lastSeen``?,
      ``createdAt``, ``listed = "u"``, and ``devices``: a map ``{device: {c: connId, t: connectedAt}}``
      of the user's open connections. That map is the *consistent* index of connections by user:
      adding or removing an entry is one atomic UpdateItem whose old/new image tells whether this
      was the user's first or last connection (presence), and which older connection of the same
      device it replaced. A GSI on the connections table could not: GSIs are eventually consistent,
      so two devices connecting at once could both think they were not first.
    * GSI ``byName`` (``listed`` HASH, ``pk`` RANGE, keys only): users sorted by name for
      ``getClients`` paging; sparse — only user items carry ``listed``.
    * a session (a family of refresh tokens): ``pk = "session#<family>"``; ``username``, ``device``?,
      ``startedAt``, ``endsAt``, ``idleUntil``, ``tokenHash`` (the current token's SHA-256),
      ``previousHash`` and ``rotatedAt`` (the token it replaced, for the retry grace), ``expireAt``
      (TTL). Rotated with a conditional UpdateItem on ``tokenHash``: one of two racing refreshes
      wins, the other finds its token just rotated. The user item's ``sessions`` map
      ``{family: startedAt}`` lists a user's sessions (for the cap and for revoking them all).
    * failed logins: ``pk = "fails#<username>"``; ``times`` (list of ms), ``expireAt`` (TTL).

``connections`` — key ``connId`` (S)
    * ``username``, ``device``, ``connectedAt``, ``expireAt`` (TTL: API Gateway ends every
      connection within 2 hours, so an item left by a missed ``$disconnect`` disappears by itself);
    * ``watch = "all"`` once the connection asked for the user list: the sparse GSI
      ``watchers`` (``watch`` HASH, ``connId`` RANGE, keys only) lists the connections that
      receive everyone's presence. A single partition value: fine for a chat of thousands of
      connections; shard ``watch`` (``all#0..n``) to go beyond a few thousand watchers.
    * GSI ``byUser`` (``username`` HASH, ``device`` RANGE): connections by user for operators and
      clean-up jobs. The core does not read it (see the ``devices`` map above for why).

``messages`` — key ``pk`` (S), ``sk`` (N)
    * a message: ``pk = "c#<a>#<b>"`` (the two usernames sorted), ``sk = seq``; ``id``, ``from``,
      ``to``, ``body``, ``ts``, ``expireAt`` (TTL, when retention is set).
    * the conversation's counter: ``pk = "c#<a>#<b>"``, ``sk = 0``, ``lastSeq`` (UpdateItem ADD).
      Messages start at ``seq`` 1, so the counter never collides with one, and ``sk > 0`` skips it.
    * the idempotency guard of ``(sender, id)``: ``pk = "g#<sender>#<id>"``, ``sk = 0``; ``conv``,
      ``seq``. It is written in the same TransactWriteItems as the message, both with
      ``attribute_not_exists``: a retry finds the guard and returns the original message.
    * a room's messages and counter: as above under the room's ``roomKey``, ``pk = "r#<name>#<random>"``
      (a room created again with a deleted one's name gets another key, so it starts at seq 1 and
      nothing a deletion cut short can show up in it); ``to`` is ``#name``. Their guards are the
      same ``g#`` items (``conv`` is the ``roomKey``).
    * a message's attachment (PROTOCOL.md 7.7): the map ``att`` ``{id, name, size, type}`` on it.
    * a file: ``pk = "f#<fileId>"``, ``sk = 0``; ``owner``, ``name``, ``size``, ``type``, ``sha256``,
      ``createdAt``, ``attached`` (a message named it once), ``uploaded`` (set with ``attached``: in
      the cloud the bytes are confirmed by asking S3 until then), ``expireAt`` (a day after
      ``createdAt`` while unattached, then the newest holder's; none without retention).
    * each message holding a file: ``pk = "f#<fileId>"``, ``sk`` = 56 bits of the SHA-256 of the
      message's ``(pk, seq)``; ``conv``, ``seq``, ``from``, ``to``, ``expireAt`` (the message's). Put in
      the message's transaction with the file item's update (conditioned on the sender owning it),
      deleted before a deleted room's messages. One query of the partition answers who may
      download (the owner, either side of a direct message, a current member of that very room).
    * the files a user announced and has not sent: ``pk = "pending#<user>"``, ``sk = 0``; ``pending``
      ``{fileId: createdAt}`` and ``rev``. :meth:`DynamoDBStore.create_file` counts it against the
      file items and rewrites it with the new file's item in one transaction conditioned on ``rev``,
      so the cap holds under concurrency; attaching or deleting a file never writes it.
    * GSI ``sweep`` (``sweep`` HASH, ``sweepAt`` RANGE, keys only), sparse (file items only): ``u`` by
      creation for files never attached, ``a`` by their newest holder's expiry for attached ones (0
      when a deleted room dropped some holders). :meth:`DynamoDBStore.unheld_files` reads candidates
      from it and checks each on the table. Two partition values take about 1,000 index writes a
      second each, far more files than people attach.

``conversations`` — key ``user`` (S), ``with`` (S): one "inbox" item per user and conversation
    * ``lastSeq``, ``readSeq`` (the read marker), ``activity`` (the last message's time in
      microseconds, unique enough to order by);
    * GSI ``byActivity`` (``user`` HASH, ``activity`` RANGE): the user's conversations newest first,
      paged with ``LastEvaluatedKey`` (the cursor is that key, base64url JSON).
    * ``unread`` is counted when listed: a Query COUNT over the messages above ``readSeq`` from
      the other user — only for conversations with ``lastSeq > readSeq``, so a read inbox costs
      nothing and an unread one costs about what reading those messages will.
    * a room member's side: ``with = "#name"``, plus ``roomKey`` and ``joinedAt``, no ``expireAt``
      (it is the membership a send checks). Written with the room item on join, deleted with it on
      leave; ``lastSeq`` starts at the room's counter (everything before is unread: a room's unread
      are the messages above ``readSeq`` from anyone else), ``activity`` at the join.

``rooms`` — key ``room`` (S, ``#name``); no TTL
    * ``title``, ``owner``, ``members`` (a list, in join order), ``joined`` (a map ``{user: joinedAt}``),
      ``roomKey``, ``createdAt``, ``rev`` (ADD 1 with every change). A join is one transaction of
      the room item (``list_append``, conditioned on ``size(members) < cap``, so the cap holds
      however many join at once) and the member's inbox item; a leave writes the list read, on
      the condition that ``rev`` did not move, hands the room to ``members[0]`` when the owner
      leaves, and deletes the member's inbox item in the same transaction. The last leave deletes
      the room item, then (batch deletes) its guards and its messages.

Sending a message: (1) UpdateItem ADD on the counter gives ``seq``; (2) one TransactWriteItems
puts the guard and the message and moves both users' inbox items to ``seq`` (the sender's read
marker too), each inbox update conditioned on only ever moving forward. Concurrent sends in one
conversation may reach (2) out of order: when an inbox condition cancels the transaction, it is
retried without that item (the newer message already moved it; the sender's read marker still
moves). When the guard's condition cancels it, ``(sender, id)`` was stored before: the original is
returned. A transaction that fails after the counter moved leaves a gap in ``seq`` (PROTOCOL.md
allows gaps) — so does every retry of an already stored message (one counter increment).

Sending to a room (:meth:`DynamoDBStore._save_room_message`): GetItem of the guard and of the
sender's inbox item (concurrently: a retry returns the original without taking a ``seq``; no inbox
item is :class:`NotAMember`), UpdateItem ADD on the room's counter, one TransactWriteItems (guard,
message, and the sender's inbox item moved on the condition that it still names the room's
``roomKey``: membership is checked by the write), then a GetItem of the room's members and one
conditional UpdateItem per other member (at most 16 at once) moving ``lastSeq`` and ``activity``:
5 + (members - 1) requests, the last ``members`` of them after the message is durable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from typing import Any

from tui_chat.protocol import MAX_SEQ, Attachment, ConversationSummary, Message, is_room
from tui_chat.server.files import UNATTACHED_KEPT_MS
from tui_chat.server.store import (
    ConnectionRecord,
    FileRecord,
    ConnectResult,
    Departure,
    DisconnectResult,
    NotAMember,
    RoomFull,
    RoomRecord,
    Rotation,
    RotationOutcome,
    SaveResult,
    SessionRecord,
    Store,
    StoreUnavailable,
    UserRecord,
)

SERVER_ID_KEY = "#server-id"
"""The users-table item holding the server's id; no username can start with ``#``."""

log = logging.getLogger("tui_chat.dynamodb")

TABLES = ("users", "connections", "messages", "conversations", "rooms")
DEFAULT_RETENTION_DAYS = 365
"""The seed design keeps messages for one year; ``retention_days=None`` keeps them forever."""
CONNECTION_TTL_S = 3 * 60 * 60
"""API Gateway closes every connection within 2 hours; its item may go an hour after that."""
MAX_CONNECTION_AGE_MS = 2 * 60 * 60 * 1000
LOGIN_FAILURE_TTL_S = 60 * 60
MAX_RECORDED_FAILURES = 50
WATCH_ALL = "all"
_USER_LISTED = "u"
TRANSACT_MAX_ITEMS = 100
ROOM_FANOUT_CONCURRENCY = 16
"""How many members' inbox items one room message updates at once (after it is stored)."""
MEMBERSHIP_ATTEMPTS = 20
"""Joins, leaves and sends that lost a race re-read and try again, at most this often."""
FILE_PREFIX = "f#"
PENDING_PREFIX = "pending#"
SWEEP_NEW, SWEEP_HELD = "u", "a"
"""The ``sweep`` index's two partitions: files never attached (by creation time), and files
attached once (by when their newest holder expires; 0 when a deleted room dropped holders)."""


class DynamoDBStore(Store):
    """The :class:`Store` over five DynamoDB tables (see the module docstring)."""

    def __init__(
        self,
        *,
        prefix: str = "tui-chat-",
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        retention_days: int | None = DEFAULT_RETENTION_DAYS,
        create_tables: bool = False,
        activity_clock: Callable[[], int] = time.time_ns,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        """``clock`` (ms) decides which items are past their ``expireAt``: DynamoDB deletes
        expired items only eventually (usually within days), so reads skip them meanwhile."""
        self.prefix = prefix
        self.retention_days = retention_days
        self._create = create_tables
        self._client = client
        self._endpoint_url = endpoint_url
        self._region = region
        self._activity_clock = activity_clock
        self._clock = clock
        self.users = prefix + "users"
        self.connections = prefix + "connections"
        self.messages = prefix + "messages"
        self.conversations = prefix + "conversations"
        self.rooms = prefix + "rooms"
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "dynamodb", endpoint_url=self._endpoint_url, region_name=self._region,
                config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64),
            )  # fmt: skip
        return self._client

    async def _call(self, op: str, **kwargs: Any) -> dict:
        return await asyncio.to_thread(self._call_sync, op, kwargs)

    def _call_sync(self, op: str, kwargs: dict) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, op)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ResourceNotFoundException", "ProvisionedThroughputExceededException",
                        "ThrottlingException", "RequestLimitExceeded", "InternalServerError",
                        "ServiceUnavailable", "AccessDeniedException", "UnrecognizedClientException"):  # fmt: skip
                raise StoreUnavailable(f"DynamoDB {op}: {code}") from exc
            raise
        except BotoCoreError as exc:  # endpoint unreachable, timeouts
            raise StoreUnavailable(f"DynamoDB {op}: {exc}") from exc

    def _item(self, values: dict[str, Any]) -> dict:
        return {k: self._ser.serialize(v) for k, v in values.items() if v is not None}

    def _plain(self, item: dict | None) -> dict | None:
        if item is None:
            return None
        return {k: _num(self._de.deserialize(v)) for k, v in item.items()}

    def _unexpired(self) -> tuple[str, dict]:
        """A FilterExpression (and its value) that keeps only items TTL has no claim on yet."""
        return "(attribute_not_exists(expireAt) OR expireAt > :nowS)", {":nowS": self._clock() // 1000}

    def _expired(self, item: dict | None) -> bool:
        return item is not None and "expireAt" in item and item["expireAt"] <= self._clock() // 1000

    def _expire_at(self, ts_ms: int) -> int | None:
        if not self.retention_days:
            return None
        return ts_ms // 1000 + self.retention_days * 86400

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        from botocore.exceptions import BotoCoreError

        if self._create:
            try:
                await asyncio.to_thread(self.create_tables)
            except BotoCoreError as exc:  # the endpoint is unreachable: said in one line, not a traceback
                raise StoreUnavailable(f"DynamoDB: {exc}") from None
        self.server_id = await self._load_server_id()

    async def _load_server_id(self) -> str:
        """The id kept in the users table (no username starts with ``#``); the first process to
        open the tables creates it, every later one reads that one."""
        from botocore.exceptions import ClientError

        key = {"pk": SERVER_ID_KEY}
        found = await self._get(self.users, key)
        if found is None:
            try:
                await self._call("put_item", TableName=self.users, Item=self._item({**key, "serverId": secrets.token_hex(16)}),
                                 ConditionExpression="attribute_not_exists(pk)")  # fmt: skip
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
            found = await self._get(self.users, key)
        return str(found["serverId"])

    async def close(self) -> None:
        pass  # every write is durable when its call returns; the client needs no closing

    async def healthy(self) -> bool:
        try:
            await self._call("get_item", TableName=self.users, Key=self._item({"pk": "health#check"}))
        except Exception:
            return False
        return True

    def create_tables(self) -> None:
        """Create the five tables (and TTL) unless they exist: for tests and the emulator."""
        c = self.client
        existing = set(c.list_tables().get("TableNames", []))

        def s(name: str) -> dict:
            return {"AttributeName": name, "AttributeType": "S"}

        def n(name: str) -> dict:
            return {"AttributeName": name, "AttributeType": "N"}

        def key(hash_: str, range_: str | None = None) -> list[dict]:
            schema = [{"AttributeName": hash_, "KeyType": "HASH"}]
            if range_:
                schema.append({"AttributeName": range_, "KeyType": "RANGE"})
            return schema

        def gsi(name: str, hash_: str, range_: str, projection: str = "ALL") -> dict:
            return {"IndexName": name, "KeySchema": key(hash_, range_), "Projection": {"ProjectionType": projection}}

        specs = {
            self.users: dict(AttributeDefinitions=[s("pk"), s("listed")], KeySchema=key("pk"),
                             GlobalSecondaryIndexes=[gsi("byName", "listed", "pk", "KEYS_ONLY")]),
            self.connections: dict(AttributeDefinitions=[s("connId"), s("username"), s("device"), s("watch")],
                                   KeySchema=key("connId"),
                                   GlobalSecondaryIndexes=[gsi("byUser", "username", "device"),
                                                           gsi("watchers", "watch", "connId", "KEYS_ONLY")]),
            self.messages: dict(AttributeDefinitions=[s("pk"), n("sk"), s("sweep"), n("sweepAt")], KeySchema=key("pk", "sk"),
                                GlobalSecondaryIndexes=[gsi("sweep", "sweep", "sweepAt", "KEYS_ONLY")]),
            self.conversations: dict(AttributeDefinitions=[s("user"), s("with"), n("activity")],
                                     KeySchema=key("user", "with"),
                                     GlobalSecondaryIndexes=[gsi("byActivity", "user", "activity")]),
            self.rooms: dict(AttributeDefinitions=[s("room")], KeySchema=key("room")),
        }  # fmt: skip
        for table, spec in specs.items():
            if table in existing:
                continue
            c.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", **spec)
        for table in specs:
            c.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
            if table == self.rooms:
                continue  # a room lives until its last member leaves: nothing in it expires
            # Every other table: messages and inboxes (retention), sessions, connections.
            c.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expireAt"}
            )

    # -- users ----------------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str | None, now: int) -> bool:
        from botocore.exceptions import ClientError

        item = {"pk": username, "listed": _USER_LISTED, "passwordHash": password_hash,
                "status": "online", "text": "", "createdAt": now, "devices": {}}  # fmt: skip
        try:
            await self._call("put_item", TableName=self.users, Item=self._item(item),
                             ConditionExpression="attribute_not_exists(pk)")  # fmt: skip
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def ensure_user(self, username: str, now: int) -> None:
        await self.create_user(username, None, now)

    async def get_user(self, username: str) -> UserRecord | None:
        item = await self._get(self.users, {"pk": username})
        return _user(item) if item is not None else None

    async def _get(self, table: str, key: dict, **kwargs: Any) -> dict | None:
        reply = await self._call("get_item", TableName=table, Key=self._item(key), ConsistentRead=True, **kwargs)
        return self._plain(reply.get("Item"))

    async def list_users(self, after: str | None, limit: int) -> list[UserRecord]:
        names: list[str] = []
        start: dict | None = None
        while len(names) < limit:
            kwargs: dict[str, Any] = dict(
                TableName=self.users, IndexName="byName", Limit=limit - len(names),
                KeyConditionExpression="listed = :u" + (" AND pk > :after" if after else ""),
                ExpressionAttributeValues=self._item({":u": _USER_LISTED, ":after": after}),
            )  # fmt: skip
            if start:
                kwargs["ExclusiveStartKey"] = start
            reply = await self._call("query", **kwargs)
            names += [self._plain(i)["pk"] for i in reply.get("Items", [])]
            start = reply.get("LastEvaluatedKey")
            if not start:
                break
        items = await self._batch_get(self.users, [{"pk": name} for name in names])
        by_name = {i["pk"]: i for i in items}
        return [_user(by_name[name]) for name in names if name in by_name]

    async def _batch_get(self, table: str, keys: list[dict]) -> list[dict]:
        found: list[dict] = []
        for start in range(0, len(keys), 100):
            pending = {table: {"Keys": [self._item(k) for k in keys[start:start + 100]], "ConsistentRead": True}}
            for attempt in range(8):
                reply = await self._call("batch_get_item", RequestItems=pending)
                found += [self._plain(i) for i in reply.get("Responses", {}).get(table, [])]
                pending = reply.get("UnprocessedKeys") or {}
                if not pending:
                    break
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            if pending:
                raise StoreUnavailable("DynamoDB BatchGetItem left keys unprocessed")
        return found

    async def set_status(self, username: str, status: str, text: str) -> None:
        await self._call(
            "update_item", TableName=self.users, Key=self._item({"pk": username}),
            UpdateExpression="SET #s = :s, #t = :t",
            ExpressionAttributeNames={"#s": "status", "#t": "text"},
            ExpressionAttributeValues=self._item({":s": status, ":t": text}),
        )  # fmt: skip

    # -- connections ----------------------------------------------------------------------------

    async def add_connection(self, conn: ConnectionRecord) -> ConnectResult:
        await self._call(
            "put_item", TableName=self.connections,
            Item=self._item({"connId": conn.conn_id, "username": conn.username, "device": conn.device,
                             "connectedAt": conn.connected_at,
                             "expireAt": conn.connected_at // 1000 + CONNECTION_TTL_S}),
        )  # fmt: skip
        reply = await self._call(
            "update_item", TableName=self.users, Key=self._item({"pk": conn.username}),
            UpdateExpression="SET devices.#d = :entry",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#d": conn.device},
            ExpressionAttributeValues=self._item({":entry": {"c": conn.conn_id, "t": conn.connected_at}}),
            ReturnValues="ALL_OLD",
        )  # fmt: skip
        old = (self._plain(reply.get("Attributes")) or {}).get("devices") or {}
        replaced = None
        previous = old.get(conn.device)
        if previous is not None and previous["c"] != conn.conn_id:
            replaced = ConnectionRecord(previous["c"], conn.username, conn.device, previous["t"])
            await self._call("delete_item", TableName=self.connections, Key=self._item({"connId": previous["c"]}))
        others = {d: e for d, e in old.items() if d != conn.device}
        # Entries older than API Gateway's 2-hour limit are connections whose $disconnect was lost.
        stale = [d for d, e in others.items() if e["t"] < conn.connected_at - MAX_CONNECTION_AGE_MS]
        for device in stale:
            await self._forget_device(conn.username, device, others[device]["c"])
        live = [d for d in others if d not in stale]
        return ConnectResult(replaced=replaced, first_for_user=replaced is None and not live)

    async def _forget_device(self, username: str, device: str, conn_id: str) -> int | None:
        """Remove one device entry if it still names ``conn_id``: how many devices remain, or
        ``None`` when it was replaced. The count comes from the same atomic update, so of two
        devices closing at once exactly one sees zero (and announces the user offline)."""
        from botocore.exceptions import ClientError

        try:
            reply = await self._call(
                "update_item", TableName=self.users, Key=self._item({"pk": username}),
                UpdateExpression="REMOVE devices.#d", ConditionExpression="devices.#d.c = :c",
                ExpressionAttributeNames={"#d": device}, ExpressionAttributeValues=self._item({":c": conn_id}),
                ReturnValues="ALL_NEW",
            )  # fmt: skip
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return len((self._plain(reply.get("Attributes")) or {}).get("devices") or {})

    async def remove_connection(self, conn_id: str, now: int) -> DisconnectResult:
        reply = await self._call(
            "delete_item", TableName=self.connections, Key=self._item({"connId": conn_id}), ReturnValues="ALL_OLD"
        )
        item = self._plain(reply.get("Attributes"))
        if item is None:
            return DisconnectResult(connection=None, last_for_user=False)
        record = ConnectionRecord(conn_id, item["username"], item["device"], item["connectedAt"])
        remaining = await self._forget_device(record.username, record.device, conn_id)
        if remaining is None:
            # Replaced by a newer connection of the same device: not a presence change.
            return DisconnectResult(connection=record, last_for_user=False)
        if remaining:
            return DisconnectResult(connection=record, last_for_user=False)
        from botocore.exceptions import ClientError

        try:  # set lastSeen only if that was the last device: atomic with the emptiness check
            await self._call(
                "update_item", TableName=self.users, Key=self._item({"pk": record.username}),
                UpdateExpression="SET lastSeen = :now",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(devices) OR size(devices) = :zero)",
                ExpressionAttributeValues=self._item({":now": now, ":zero": 0}),
            )  # fmt: skip
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return DisconnectResult(connection=record, last_for_user=False)
            raise
        return DisconnectResult(connection=record, last_for_user=True)

    async def get_connection(self, conn_id: str) -> ConnectionRecord | None:
        item = await self._get(self.connections, {"connId": conn_id})
        if item is None:
            return None
        return ConnectionRecord(conn_id, item["username"], item["device"], item["connectedAt"])

    async def user_connections(self, username: str) -> list[ConnectionRecord]:
        item = await self._get(self.users, {"pk": username}, ProjectionExpression="devices")
        devices = (item or {}).get("devices") or {}
        return [ConnectionRecord(e["c"], username, d, e["t"]) for d, e in sorted(devices.items())]

    async def watch_presence(self, conn_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            await self._call(
                "update_item", TableName=self.connections, Key=self._item({"connId": conn_id}),
                UpdateExpression="SET watch = :w", ConditionExpression="attribute_exists(connId)",
                ExpressionAttributeValues=self._item({":w": WATCH_ALL}),
            )  # fmt: skip
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise

    async def presence_audience(self, username: str) -> list[str]:
        audience = {c.conn_id for c in await self.user_connections(username)}
        audience.update(await self.presence_watchers())
        return sorted(audience)

    async def presence_watchers(self) -> list[str]:
        return sorted([item["connId"] async for item in self._query_all(
            TableName=self.connections, IndexName="watchers", KeyConditionExpression="watch = :w",
            ExpressionAttributeValues=self._item({":w": WATCH_ALL}),
        )])  # fmt: skip

    async def _query_all(self, **kwargs: Any):
        start = None
        while True:
            reply = await self._call("query", **kwargs, **({"ExclusiveStartKey": start} if start else {}))
            for item in reply.get("Items", []):
                yield self._plain(item)
            start = reply.get("LastEvaluatedKey")
            if not start:
                return

    async def _count_all(self, **kwargs: Any) -> int:
        """A ``Select=COUNT`` query over every page (a page stops at 1 MB read)."""
        count = 0
        start = None
        while True:
            reply = await self._call("query", Select="COUNT", **kwargs, **({"ExclusiveStartKey": start} if start else {}))
            count += reply.get("Count", 0)
            start = reply.get("LastEvaluatedKey")
            if not start:
                return count

    async def clear_connections(self) -> None:
        start = None
        while True:
            reply = await self._call(
                "scan", TableName=self.connections, ProjectionExpression="connId",
                **({"ExclusiveStartKey": start} if start else {}),
            )  # fmt: skip
            for item in reply.get("Items", []):
                await self._call("delete_item", TableName=self.connections, Key={"connId": item["connId"]})
            start = reply.get("LastEvaluatedKey")
            if not start:
                break
        start = None
        while True:
            reply = await self._call(
                "scan", TableName=self.users, ProjectionExpression="pk",
                FilterExpression="attribute_exists(devices) AND size(devices) > :zero", ExpressionAttributeValues=self._item({":zero": 0}),
                **({"ExclusiveStartKey": start} if start else {}),
            )  # fmt: skip
            for item in reply.get("Items", []):
                await self._call("update_item", TableName=self.users, Key={"pk": item["pk"]},
                                 UpdateExpression="SET devices = :empty",
                                 ExpressionAttributeValues={":empty": {"M": {}}})  # fmt: skip
            start = reply.get("LastEvaluatedKey")
            if not start:
                break

    # -- messages -------------------------------------------------------------------------------

    async def save_message(self, sender: str, msg_id: str, to: str, body: str, now: int, attachment: Attachment | None = None) -> SaveResult:
        if is_room(to):
            return await self._save_room_message(sender, msg_id, to, body, now, attachment)
        conv = _conv_key(sender, to)
        guard_key = f"g#{sender}#{msg_id}"
        counter = await self._call(
            "update_item", TableName=self.messages, Key=self._item({"pk": conv, "sk": 0}),
            UpdateExpression="ADD lastSeq :one", ExpressionAttributeValues=self._item({":one": 1}),
            ReturnValues="UPDATED_NEW",
        )  # fmt: skip
        seq = int(self._plain(counter["Attributes"])["lastSeq"])
        message = Message(id=msg_id, sender=sender, to=to, body=body, seq=seq, ts=now, attachment=attachment)
        expire = self._expire_at(now)
        activity = self._activity(now)
        items: list[dict | None] = [
            {"Put": {"TableName": self.messages, "ConditionExpression": "attribute_not_exists(pk)",
                     "Item": self._item({"pk": guard_key, "sk": 0, "conv": conv, "seq": seq, "expireAt": expire})}},
            self._message_put(conv, message, expire),
            self._inbox_update(sender, to, seq, activity, is_sender=True),
        ]  # fmt: skip
        if to != sender:
            items.append(self._inbox_update(to, sender, seq, activity, is_sender=False))
        holding = self._attach_items(message, conv, expire)
        for _attempt in range(4):
            live = [i for i in items if i is not None]
            reasons = await self._transact(live + holding)
            if reasons is None:
                return SaveResult(message=message, created=True)
            if reasons[0] == "ConditionalCheckFailed":  # (sender, id) is stored: a retry
                return await self._retried(guard_key)
            _check_attach_reasons(reasons[len(live):])
            # A newer message of this conversation landed first (concurrent sends finish in
            # any order): its inbox item is already ahead; keep only what still moves forward.
            for index, code in enumerate(reasons[: len(live)]):
                if code != "ConditionalCheckFailed" or index < 2:
                    continue  # TransactionConflict and friends: try the same again
                slot = items.index(live[index])
                full_update = live[index]["Update"]["UpdateExpression"].startswith("SET lastSeq")
                # The sender's own read marker still moves to its message; anything else is dropped.
                items[slot] = self._read_marker_update(sender, to, seq) if slot == 2 and full_update else None
        raise StoreUnavailable("DynamoDB kept cancelling the message's transaction")

    def _message_put(self, pk: str, message: Message, expire: int | None) -> dict:
        item = {"pk": pk, "sk": message.seq, "id": message.id, "from": message.sender, "to": message.to,
                "body": message.body, "ts": message.ts, "expireAt": expire}  # fmt: skip
        if message.attachment is not None:
            a = message.attachment
            item["att"] = {"id": a.file_id, "name": a.name, "size": a.size, "type": a.type}
        return {"Put": {"TableName": self.messages, "ConditionExpression": "attribute_not_exists(pk)", "Item": self._item(item)}}

    def _attach_items(self, message: Message, pk: str, expire: int | None) -> list[dict]:
        """The transaction items by which a message holds its file: a holder item in the file's
        partition (it expires with the message), and the file item marked attached (its own
        expiry moved to the message's; with retention off it expires no more). Conditioned on the
        sender owning the file: it fails when the record went meanwhile."""
        if message.attachment is None:
            return []
        file_pk = FILE_PREFIX + message.attachment.file_id
        holder = {"pk": file_pk, "sk": _holder_sk(pk, message.seq), "conv": pk, "seq": message.seq,
                  "from": message.sender, "to": message.to, "expireAt": expire}  # fmt: skip
        values: dict[str, Any] = {":yes": True, ":me": message.sender}
        if expire:  # a sweep looks at it again when this message expires
            update = "SET attached = :yes, uploaded = :yes, sweep = :held, sweepAt = :until, expireAt = :exp"
            values.update({":held": SWEEP_HELD, ":until": expire * 1000, ":exp": expire})
        else:
            update = "SET attached = :yes, uploaded = :yes REMOVE sweep, sweepAt, expireAt"
        return [
            {"Put": {"TableName": self.messages, "Item": self._item(holder)}},
            {"Update": {"TableName": self.messages, "Key": self._item({"pk": file_pk, "sk": 0}), "UpdateExpression": update,
                        "ConditionExpression": "#o = :me", "ExpressionAttributeNames": {"#o": "owner"},
                        "ExpressionAttributeValues": self._item(values)}},
        ]  # fmt: skip

    def _activity(self, now: int) -> int:
        """An inbox item's ``activity``: ``now`` in microseconds, the clock's own µs as a tie-breaker."""
        return now * 1000 + (self._activity_clock() // 1000) % 1000

    def _inbox_update(self, user: str, other: str, seq: int, activity: int, *, is_sender: bool) -> dict:
        """Move one inbox item to ``seq`` (never back); the sender's read marker moves with it.
        With retention the item expires with its newest message (TTL)."""
        read = ":seq" if is_sender else "if_not_exists(readSeq, :zero)"
        expire = self._expire_at(activity // 1000)
        values = {":seq": seq, ":act": activity, **({} if is_sender else {":zero": 0}), **({":exp": expire} if expire else {})}
        return {"Update": {
            "TableName": self.conversations, "Key": self._item({"user": user, "with": other}),
            "UpdateExpression": f"SET lastSeq = :seq, activity = :act, readSeq = {read}" + (", expireAt = :exp" if expire else ""),
            "ConditionExpression": "attribute_not_exists(lastSeq) OR lastSeq < :seq",
            "ExpressionAttributeValues": self._item(values),
        }}  # fmt: skip

    def _read_marker_update(self, user: str, other: str, seq: int) -> dict:
        return {"Update": {
            "TableName": self.conversations, "Key": self._item({"user": user, "with": other}),
            "UpdateExpression": "SET readSeq = :seq", "ConditionExpression": "readSeq < :seq",
            "ExpressionAttributeValues": self._item({":seq": seq}),
        }}  # fmt: skip

    async def _retried(self, guard_key: str) -> SaveResult:
        """A send whose (sender, id) is already stored: the message stored the first time."""
        original = await self._original(guard_key)
        if original is None:
            raise StoreUnavailable("the message of an idempotency guard is missing")
        return SaveResult(message=original, created=False)

    async def _original(self, guard_key: str) -> Message | None:
        guard = await self._get(self.messages, {"pk": guard_key, "sk": 0})
        if guard is None:
            return None
        item = await self._get(self.messages, {"pk": guard["conv"], "sk": guard["seq"]})
        return _message(item) if item is not None else None

    async def _conditional_update(self, table: str, key: dict, update: str, condition: str, values: dict) -> bool:
        from botocore.exceptions import ClientError

        try:
            await self._call(
                "update_item", TableName=table, Key=self._item(key), UpdateExpression=update, ConditionExpression=condition,
                **({"ExpressionAttributeValues": self._item(values)} if values else {}),  # DynamoDB refuses an empty one
            )  # fmt: skip
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def get_messages(
        self, user: str, other: str, *, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        if after is not None:
            low, high, forward = after + 1, MAX_SEQ, True
        else:
            low, high, forward = 1, (before - 1 if before is not None else MAX_SEQ), False
        pk = await self._conversation_pk(user, other)
        if low > high or pk is None:
            return [], False
        items: list[dict] = []
        start = None
        while len(items) <= limit:  # one more than asked tells whether more exist
            live, now = self._unexpired()
            kwargs: dict[str, Any] = dict(
                TableName=self.messages, ConsistentRead=True, ScanIndexForward=forward,
                Limit=limit + 1 - len(items), FilterExpression=live,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                ExpressionAttributeValues=self._item({":pk": pk, ":low": low, ":high": high, **now}),
            )  # fmt: skip
            if start:
                kwargs["ExclusiveStartKey"] = start
            reply = await self._call("query", **kwargs)  # a 1 MB page may hold fewer: follow LastEvaluatedKey
            items += [self._plain(i) for i in reply.get("Items", [])]
            start = reply.get("LastEvaluatedKey")
            if not start:
                break
        has_more = len(items) > limit
        page = [_message(i) for i in items[:limit]]
        if not forward:
            page.reverse()
        return page, has_more

    async def list_conversations(
        self, user: str, cursor: str | None, limit: int
    ) -> tuple[list[ConversationSummary], str | None]:
        start = _decode_cursor(cursor, user) if cursor else None
        rows: list[dict] = []
        while len(rows) <= limit:
            live, now = self._unexpired()
            kwargs: dict[str, Any] = dict(
                TableName=self.conversations, IndexName="byActivity", ScanIndexForward=False,
                Limit=limit + 1 - len(rows), KeyConditionExpression="#u = :u", FilterExpression=live,
                ExpressionAttributeNames={"#u": "user"}, ExpressionAttributeValues=self._item({":u": user, **now}),
            )  # fmt: skip
            if start:
                kwargs["ExclusiveStartKey"] = start
            reply = await self._call("query", **kwargs)
            rows += [self._plain(i) for i in reply.get("Items", [])]
            start = reply.get("LastEvaluatedKey")
            if not start:
                break
        page, more = rows[:limit], len(rows) > limit
        rooms = await self._rooms_by_name([r["with"] for r in page if is_room(r["with"])])
        # An item of an older room of that name (a create or a deletion cut short) is not listed.
        shown = [r for r in page if not is_room(r["with"]) or rooms.get(r["with"], {}).get("roomKey") == r.get("roomKey")]
        lasts = await self._batch_get(
            self.messages, [{"pk": self._row_pk(user, r), "sk": r["lastSeq"]} for r in shown if r["lastSeq"] > 0]
        )
        last_by_conv = {(i["pk"], i["sk"]): _message(i) for i in lasts if not self._expired(i)}
        direct = [r for r in shown if not is_room(r["with"])]
        peer_rows = await self._batch_get(self.conversations, [{"user": r["with"], "with": user} for r in direct])
        peer_read = {row["user"]: row.get("readSeq", 0) for row in peer_rows}
        summaries = []
        for row in shown:
            pk, other = self._row_pk(user, row), row["with"]
            read_seq = row.get("readSeq", 0)
            # A room's unread are the other members' messages; a direct conversation's, the other user's.
            sender_test = ("#f <> :who", user) if is_room(other) else ("#f = :who", other)
            unread = await self._count_unread(pk, read_seq, *sender_test) if row["lastSeq"] > read_seq else 0
            summaries.append(ConversationSummary(
                with_=other, last_seq=row["lastSeq"], read_seq=read_seq, unread=unread,
                last=last_by_conv.get((pk, row["lastSeq"])), peer_read_seq=int(peer_read.get(other, 0)),
                title=rooms[other].get("title", "") if is_room(other) else None,
            ))  # fmt: skip
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = _encode_cursor({"user": user, "with": last["with"], "activity": last["activity"]})
        return summaries, next_cursor

    def _row_pk(self, user: str, row: dict) -> str:
        """The messages-table ``pk`` of the conversation an inbox item stands for."""
        return row["roomKey"] if is_room(row["with"]) else _conv_key(user, row["with"])

    async def _conversation_pk(self, user: str, other: str) -> str | None:
        """The messages-table ``pk`` of ``user``'s conversation with ``other``; for a room, the
        current one's (from the member's inbox item), ``None`` when ``user`` is not a member."""
        if not is_room(other):
            return _conv_key(user, other)
        row = await self._get(self.conversations, {"user": user, "with": other}, ProjectionExpression="roomKey")
        return row["roomKey"] if row else None

    async def _count_unread(self, conv: str, read_seq: int, sender_test: str, who: str) -> int:
        """How many live messages above ``read_seq`` pass ``sender_test`` (on ``#f``, against ``:who``)."""
        live, now = self._unexpired()
        return await self._count_all(
            TableName=self.messages, ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high", FilterExpression=f"{sender_test} AND {live}",
            ExpressionAttributeNames={"#f": "from"},
            ExpressionAttributeValues=self._item({":pk": conv, ":low": read_seq + 1, ":high": MAX_SEQ, ":who": who, **now}),
        )  # fmt: skip

    async def mark_read(self, user: str, other: str, seq: int) -> int | None:
        row = await self._get(self.conversations, {"user": user, "with": other})
        if row is None:
            return None
        target = min(seq, row["lastSeq"])
        if target <= row.get("readSeq", 0):
            return None
        moved = await self._conditional_update(
            self.conversations, {"user": user, "with": other}, "SET readSeq = :t", "readSeq < :t", {":t": target}
        )
        return target if moved else None

    # -- files (PROTOCOL.md 7.7) -----------------------------------------------------------------

    async def create_file(self, record: FileRecord, *, max_pending: int) -> bool:
        """The file item, and the owner's pending list rewritten with it, in one transaction
        conditioned on the list's ``rev``: of two uploads announced at once, one rewrites it and the
        other reads it again, so the cap holds. The list is counted against the file items (one
        attached, deleted or a day old is no longer pending), so it never needs another write."""
        key = {"pk": PENDING_PREFIX + record.owner, "sk": 0}
        file_put = {"Put": {"TableName": self.messages, "ConditionExpression": "attribute_not_exists(pk)", "Item": self._item({
            "pk": FILE_PREFIX + record.file_id, "sk": 0, "owner": record.owner, "name": record.name, "size": record.size,
            "type": record.type, "sha256": record.sha256, "createdAt": record.created_at, "uploaded": False,
            "attached": False, "sweep": SWEEP_NEW, "sweepAt": record.created_at,
            "expireAt": (record.created_at + UNATTACHED_KEPT_MS) // 1000,  # TTL: unattached, it lives a day
        })}}  # fmt: skip
        for attempt in range(MEMBERSHIP_ATTEMPTS):
            item = await self._get(self.messages, key)
            listed = (item or {}).get("pending") or {}
            files = await self._batch_get(self.messages, [{"pk": FILE_PREFIX + f, "sk": 0} for f in listed])
            pending = {f["pk"].removeprefix(FILE_PREFIX): f["createdAt"] for f in files
                       if not f.get("attached") and not self._expired(f)}  # fmt: skip
            if len(pending) >= max_pending:
                return False
            pending[record.file_id] = record.created_at
            if item is None:
                write = {"Put": {"TableName": self.messages, "ConditionExpression": "attribute_not_exists(pk)",
                                 "Item": self._item({**key, "pending": pending, "rev": 1})}}  # fmt: skip
            else:
                write = {"Update": {"TableName": self.messages, "Key": self._item(key),
                                    "UpdateExpression": "SET pending = :p, rev = :next", "ConditionExpression": "rev = :rev",
                                    "ExpressionAttributeValues": self._item({":p": pending, ":next": item["rev"] + 1, ":rev": item["rev"]})}}  # fmt: skip
            reasons = await self._transact([file_put, write])
            if reasons is None:
                return True
            if reasons[0] == "ConditionalCheckFailed":
                raise ValueError(f"a file {record.file_id!r} exists already")
            await _backoff(attempt)  # another upload was announced meanwhile: count again
        raise StoreUnavailable("the pending files kept changing while one was added")

    async def get_file(self, file_id: str) -> FileRecord | None:
        item = await self._get(self.messages, {"pk": FILE_PREFIX + file_id, "sk": 0})
        if item is None or self._expired(item):
            return None
        return FileRecord(file_id, item["owner"], item["name"], item["size"], item["type"], item["sha256"],
                          item["createdAt"], uploaded=bool(item.get("uploaded")))  # fmt: skip

    async def file_uploaded(self, file_id: str) -> bool:
        """In the cloud nothing calls this: S3 is asked (HEAD) until a message holds the file, and
        the first message marks it uploaded (its bytes are in ``files/`` from then on)."""
        return await self._conditional_update(
            self.messages, {"pk": FILE_PREFIX + file_id, "sk": 0}, "SET uploaded = :yes",
            "attribute_exists(pk) AND uploaded = :no", {":yes": True, ":no": False},
        )  # fmt: skip

    async def _file_partition(self, file_id: str) -> tuple[dict | None, list[dict]]:
        """The file item and its live holders (one per message naming it), read consistently."""
        items = [i async for i in self._query_all(
            TableName=self.messages, ConsistentRead=True, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=self._item({":pk": FILE_PREFIX + file_id}),
        )]  # fmt: skip
        if not items or items[0]["sk"] != 0:
            return None, []
        return items[0], [i for i in items[1:] if not self._expired(i)]

    async def may_download(self, user: str, file_id: str) -> bool:
        record, holders = await self._file_partition(file_id)
        if record is None or self._expired(record):
            return False
        if record["owner"] == user or any(not is_room(h["to"]) and user in (h["from"], h["to"]) for h in holders):
            return True
        # A room's message: for its current members, of that room (not an older one of the name).
        rooms: dict[str, set[str]] = {}
        for h in holders:
            if is_room(h["to"]):
                rooms.setdefault(h["to"], set()).add(h["conv"])
        sides = await self._batch_get(self.conversations, [{"user": user, "with": room} for room in rooms])
        return any(side.get("roomKey") in rooms[side["with"]] for side in sides)

    async def unheld_files(self, unattached_before: int, limit: int) -> list[str]:
        """Candidates from the sparse ``sweep`` index (never attached and old; attached and past
        their newest holder's expiry, or dropped by a deleted room), each checked on the table."""
        found: list[str] = []
        for state, test, bound in ((SWEEP_NEW, "<", unattached_before), (SWEEP_HELD, "<=", self._clock())):
            async for key in self._query_all(
                TableName=self.messages, IndexName="sweep", KeyConditionExpression=f"sweep = :s AND sweepAt {test} :t",
                ExpressionAttributeValues=self._item({":s": state, ":t": bound}),
            ):  # fmt: skip
                file_id = key["pk"].removeprefix(FILE_PREFIX)
                if file_id not in found and await self._unheld(file_id, unattached_before):
                    found.append(file_id)
                    if len(found) >= limit:
                        return found
        return found

    async def _unheld(self, file_id: str, unattached_before: int) -> bool:
        record, holders = await self._file_partition(file_id)
        if record is None:
            return False
        if not record.get("attached"):
            return record["createdAt"] < unattached_before
        if not holders:
            return True
        # Still held: the sweep looks again when the newest holder expires (never, without retention).
        ends = [h.get("expireAt") for h in holders]
        key = {"pk": FILE_PREFIX + file_id, "sk": 0}
        if None in ends:
            await self._conditional_update(self.messages, key, "REMOVE sweep, sweepAt", "attribute_exists(pk)", {})
        else:
            await self._conditional_update(self.messages, key, "SET sweepAt = :t", "attribute_exists(pk)", {":t": max(ends) * 1000})
        return False

    async def delete_files(self, file_ids: list[str]) -> None:
        """Each file's item and holders (its owner's pending list forgets it on the next count)."""
        for file_id in file_ids:
            keys = [{"pk": i["pk"], "sk": i["sk"]} async for i in self._query_all(
                TableName=self.messages, ConsistentRead=True, KeyConditionExpression="pk = :pk", ProjectionExpression="pk, sk",
                ExpressionAttributeValues=self._item({":pk": FILE_PREFIX + file_id}),
            )]  # fmt: skip
            await self._batch_delete(self.messages, keys)

    # -- rooms ----------------------------------------------------------------------------------

    async def create_room(self, room: str, owner: str, title: str, members: list[str], now: int) -> RoomRecord | None:
        order = list(dict.fromkeys([owner, *members]))
        # Each room gets its own messages pk: a room created again with this name starts at seq 1
        # and never sees what a deletion cut short left of the old one.
        room_key = f"r{room}#{secrets.token_hex(8)}"
        claim = {"Put": {"TableName": self.rooms, "ConditionExpression": "attribute_not_exists(room)",
                         "Item": self._item({"room": room, "title": title, "owner": owner, "members": order,
                                             "joined": {u: now for u in order}, "rev": 0, "roomKey": room_key,
                                             "createdAt": now})}}  # fmt: skip
        joins = [self._member_put(user, room, room_key, 0, now) for user in order]
        first, rest = joins[: TRANSACT_MAX_ITEMS - 1], joins[TRANSACT_MAX_ITEMS - 1 :]
        for attempt in range(MEMBERSHIP_ATTEMPTS):
            reasons = await self._transact([claim, *first])
            if reasons is None:
                break
            if reasons[0] == "ConditionalCheckFailed":
                return None  # the name is taken
            await _backoff(attempt)
        else:
            raise StoreUnavailable("DynamoDB kept cancelling the room's creation")
        # One transaction holds 100 items: the members past the 99th join right after (puts, so
        # repeating them is harmless).
        for start in range(0, len(rest), TRANSACT_MAX_ITEMS):
            await self._call("transact_write_items", TransactItems=rest[start : start + TRANSACT_MAX_ITEMS])
        return RoomRecord(room, title, owner, tuple(order))

    def _member_put(self, user: str, room: str, room_key: str, last_seq: int, now: int) -> dict:
        """A member's inbox item: their side of the room from joining until leaving. It carries no
        ``expireAt``: it is also the membership a send checks, so it lives as long as that."""
        return {"Put": {"TableName": self.conversations, "Item": self._item({
            "user": user, "with": room, "roomKey": room_key, "readSeq": 0, "lastSeq": last_seq,
            "activity": self._activity(now), "joinedAt": now,
        })}}  # fmt: skip

    async def get_room(self, room: str) -> RoomRecord | None:
        item = await self._get(self.rooms, {"room": room})
        return _room(item) if item is not None else None

    async def _rooms_by_name(self, rooms: list[str]) -> dict[str, dict]:
        return {item["room"]: item for item in await self._batch_get(self.rooms, [{"room": r} for r in rooms])}

    async def add_member(self, room: str, user: str, now: int, *, max_members: int) -> tuple[RoomRecord, bool] | None:
        for attempt in range(MEMBERSHIP_ATTEMPTS):
            item = await self._get(self.rooms, {"room": room})
            if item is None:
                return None
            if user in item["members"]:
                return _room(item), False
            if len(item["members"]) >= max_members:
                raise RoomFull(room)
            room_key = item["roomKey"]
            last_seq = await self._last_seq(room_key)
            reasons = await self._transact([
                {"Update": {"TableName": self.rooms, "Key": self._item({"room": room}),
                            "UpdateExpression": "SET members = list_append(members, :who), joined.#u = :now ADD rev :one",
                            # The cap is checked by the write itself: it holds however many join at once.
                            "ConditionExpression": "roomKey = :key AND attribute_not_exists(joined.#u) AND size(members) < :cap",
                            "ExpressionAttributeNames": {"#u": user},
                            "ExpressionAttributeValues": self._item({":who": [user], ":now": now, ":one": 1,
                                                                     ":key": room_key, ":cap": max_members})}},
                self._member_put(user, room, room_key, last_seq, now),
            ])  # fmt: skip
            if reasons is None:
                after = await self._get(self.rooms, {"room": room})  # with whoever joined meanwhile
                if after is None or after["roomKey"] != room_key:
                    return RoomRecord(room, item.get("title", ""), item["owner"], (*item["members"], user)), True
                return _room(after), True
            await _backoff(attempt)  # joined, full, gone or busy meanwhile: the next read says which
        raise StoreUnavailable("the room kept changing while a member joined")

    async def _last_seq(self, room_key: str) -> int:
        """The room's counter: a new member's inbox starts there (everything before is unread)."""
        counter = await self._get(self.messages, {"pk": room_key, "sk": 0})
        return int((counter or {}).get("lastSeq", 0))

    async def remove_member(self, room: str, user: str, now: int) -> Departure:
        for attempt in range(MEMBERSHIP_ATTEMPTS):
            item = await self._get(self.rooms, {"room": room})
            if item is None:
                return Departure(None, left=False)
            before = _room(item)
            if user not in before.members:
                return Departure(before, left=False)
            remaining = tuple(m for m in before.members if m != user)
            leave = {"Delete": {"TableName": self.conversations, "Key": self._item({"user": user, "with": room})}}
            # ``rev`` moves with every change of the room item: the list written is the list read.
            unchanged = {"ConditionExpression": "rev = :rev", "ExpressionAttributeValues": self._item({":rev": item["rev"]})}
            if not remaining:
                reasons = await self._transact([{"Delete": {"TableName": self.rooms, "Key": self._item({"room": room}), **unchanged}}, leave])
                if reasons is None:
                    await self._delete_room_contents(item["roomKey"])
                    return Departure(None, left=True)
            else:
                owner = before.owner if before.owner != user else remaining[0]  # the longest-standing member
                reasons = await self._transact([{"Update": {
                    "TableName": self.rooms, "Key": self._item({"room": room}),
                    "UpdateExpression": "SET members = :members, #o = :owner REMOVE joined.#u ADD rev :one",
                    "ConditionExpression": "rev = :rev", "ExpressionAttributeNames": {"#o": "owner", "#u": user},
                    "ExpressionAttributeValues": self._item({":members": list(remaining), ":owner": owner, ":one": 1, ":rev": item["rev"]}),
                }}, leave])  # fmt: skip
                if reasons is None:
                    return Departure(RoomRecord(room, before.title, owner, remaining), left=True)
            await _backoff(attempt)
        raise StoreUnavailable("the room kept changing while a member left")

    async def _delete_room_contents(self, room_key: str) -> None:
        """Delete a deleted room's messages, counter and idempotency guards, a query page at a time,
        each page's guards before its messages (a guard must not outlive its message: a send with
        that id would find it and no original). The room item is gone already and a new room of
        that name gets another ``roomKey``, so whatever a failure leaves here is unreachable (and
        expires with retention): it is logged, not raised, since the member did leave."""
        try:
            async for page in self._query_pages(
                TableName=self.messages, ConsistentRead=True, KeyConditionExpression="pk = :pk",
                ProjectionExpression="sk, #f, id, att", ExpressionAttributeNames={"#f": "from"},
                ExpressionAttributeValues=self._item({":pk": room_key}),
            ):  # fmt: skip
                await self._release_files(room_key, [i for i in page if i.get("att")])
                await self._batch_delete(self.messages, [{"pk": f"g#{i['from']}#{i['id']}", "sk": 0} for i in page if i["sk"] > 0])
                await self._batch_delete(self.messages, [{"pk": room_key, "sk": i["sk"]} for i in page])
        except StoreUnavailable as exc:
            log.warning("room %s: deleting its messages stopped: %s", room_key, exc)

    async def _release_files(self, room_key: str, messages: list[dict]) -> None:
        """Before a deleted room's messages go: their files' holder items, and each file is marked
        for the next sweep (it may have no holder left). Holders go first: one left behind by a
        failure would keep its file forever, a message left behind is unreachable anyway."""
        if not messages:
            return
        await self._batch_delete(self.messages, [{"pk": FILE_PREFIX + m["att"]["id"], "sk": _holder_sk(room_key, m["sk"])} for m in messages])
        for file_id in dict.fromkeys(m["att"]["id"] for m in messages):
            await self._conditional_update(
                self.messages, {"pk": FILE_PREFIX + file_id, "sk": 0}, "SET sweep = :held, sweepAt = :now",
                "attribute_exists(pk)", {":held": SWEEP_HELD, ":now": 0},
            )  # fmt: skip

    async def _query_pages(self, **kwargs: Any):
        start = None
        while True:
            reply = await self._call("query", **kwargs, **({"ExclusiveStartKey": start} if start else {}))
            yield [self._plain(item) for item in reply.get("Items", [])]
            start = reply.get("LastEvaluatedKey")
            if not start:
                return

    async def _batch_delete(self, table: str, keys: list[dict]) -> None:
        for start in range(0, len(keys), 25):
            pending = {table: [{"DeleteRequest": {"Key": self._item(k)}} for k in keys[start : start + 25]]}
            for attempt in range(8):
                reply = await self._call("batch_write_item", RequestItems=pending)
                pending = reply.get("UnprocessedItems") or {}
                if not pending:
                    break
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            if pending:
                raise StoreUnavailable("DynamoDB BatchWriteItem left items unprocessed")

    async def set_room_title(self, room: str, title: str) -> RoomRecord | None:
        from botocore.exceptions import ClientError

        try:
            reply = await self._call(
                "update_item", TableName=self.rooms, Key=self._item({"room": room}),
                UpdateExpression="SET title = :t ADD rev :one", ConditionExpression="attribute_exists(room)",
                ExpressionAttributeValues=self._item({":t": title, ":one": 1}), ReturnValues="ALL_NEW",
            )  # fmt: skip
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return _room(self._plain(reply["Attributes"]))

    async def get_reads(self, room: str) -> list[tuple[str, int]]:
        item = await self._get(self.rooms, {"room": room})
        if item is None:
            return []
        rows = await self._batch_get(self.conversations, [{"user": m, "with": room} for m in item["members"]])
        reads = {r["user"]: r.get("readSeq", 0) for r in rows if r.get("roomKey") == item["roomKey"]}
        return [(m, int(reads.get(m, 0))) for m in item["members"]]

    async def count_rooms(self, user: str) -> int:
        """The user's room inbox items (their ``with`` starts with ``#``; direct ones never do)."""
        return await self._count_all(
            TableName=self.conversations, ConsistentRead=True,
            KeyConditionExpression="#u = :u AND begins_with(#w, :room)",
            ExpressionAttributeNames={"#u": "user", "#w": "with"},
            ExpressionAttributeValues=self._item({":u": user, ":room": "#"}),
        )  # fmt: skip

    async def _save_room_message(self, sender: str, msg_id: str, room: str, body: str, now: int,
                                 attachment: Attachment | None = None) -> SaveResult:  # fmt: skip
        """A room message: (1) the guard of ``(sender, id)`` (a retry returns the original without
        taking a ``seq``) and the sender's inbox item, read at once: it names the room's
        ``roomKey`` (none: not a member); (2) the room's counter gives ``seq``; (3) one transaction
        puts the guard and the message and moves the sender's inbox item, on the condition that it
        still names that ``roomKey``: the membership is checked by the write itself; (4) every other
        member's inbox item moves to ``seq`` (see :meth:`_fan_out`)."""
        guard_key = f"g#{sender}#{msg_id}"
        original, membership = await asyncio.gather(
            self._original(guard_key),
            self._get(self.conversations, {"user": sender, "with": room}, ProjectionExpression="roomKey"),
        )
        if original is not None:
            return SaveResult(message=original, created=False)
        if membership is None:
            raise NotAMember(room)
        room_key = membership["roomKey"]
        counter = await self._call(
            "update_item", TableName=self.messages, Key=self._item({"pk": room_key, "sk": 0}),
            UpdateExpression="ADD lastSeq :one", ExpressionAttributeValues=self._item({":one": 1}),
            ReturnValues="UPDATED_NEW",
        )  # fmt: skip
        seq = int(self._plain(counter["Attributes"])["lastSeq"])
        expire, activity = self._expire_at(now), self._activity(now)
        message = Message(msg_id, sender, room, body, seq, now, attachment)
        items = [
            {"Put": {"TableName": self.messages, "ConditionExpression": "attribute_not_exists(pk)",
                     "Item": self._item({"pk": guard_key, "sk": 0, "conv": room_key, "seq": seq, "expireAt": expire})}},
            self._message_put(room_key, message, expire),
            self._sender_room_update(sender, room, room_key, seq, activity, "full"),
        ]  # fmt: skip
        holding = self._attach_items(message, room_key, expire)
        for attempt in range(MEMBERSHIP_ATTEMPTS):
            reasons = await self._transact(items + holding)
            if reasons is None:
                await self._fan_out(room, room_key, sender, seq, activity)
                return SaveResult(message=message, created=True)
            if reasons[0] == "ConditionalCheckFailed":  # (sender, id) is stored: a retry
                return await self._retried(guard_key)
            _check_attach_reasons(reasons[len(items):])
            if reasons[2] == "ConditionalCheckFailed":
                items[2] = await self._sender_room_step(sender, room, room_key, seq, activity)
            else:
                await _backoff(attempt)  # TransactionConflict and friends: the same again
        raise StoreUnavailable("DynamoDB kept cancelling the room message's transaction")

    async def _sender_room_step(self, sender: str, room: str, room_key: str, seq: int, activity: int) -> dict:
        """The sender's inbox condition failed: they left (:class:`NotAMember`), or a newer message
        of the room already moved their item, and only what still moves forward is kept."""
        row = await self._get(self.conversations, {"user": sender, "with": room})
        if row is None or row.get("roomKey") != room_key:
            raise NotAMember(room)
        if row["lastSeq"] < seq:
            form = "full"
        elif row.get("readSeq", 0) < seq:
            form = "read"
        else:
            form = "member"
        return self._sender_room_update(sender, room, room_key, seq, activity, form)

    def _sender_room_update(self, sender: str, room: str, room_key: str, seq: int, activity: int, form: str) -> dict:
        """``full``: the sender's inbox item moves to ``seq`` with their read mark; ``read``: only
        the read mark; ``member``: nothing moves, the membership is only checked."""
        key = self._item({"user": sender, "with": room})
        if form == "member":
            return {"ConditionCheck": {"TableName": self.conversations, "Key": key, "ConditionExpression": "roomKey = :key",
                                       "ExpressionAttributeValues": self._item({":key": room_key})}}  # fmt: skip
        update, ahead = ("SET lastSeq = :seq, activity = :act, readSeq = :seq", "lastSeq") if form == "full" else ("SET readSeq = :seq", "readSeq")
        values = {":key": room_key, ":seq": seq, **({":act": activity} if form == "full" else {})}
        return {"Update": {"TableName": self.conversations, "Key": key, "UpdateExpression": update,
                           "ConditionExpression": f"roomKey = :key AND {ahead} < :seq",
                           "ExpressionAttributeValues": self._item(values)}}  # fmt: skip

    async def _fan_out(self, room: str, room_key: str, sender: str, seq: int, activity: int) -> None:
        """Move every other member's inbox item to ``seq`` (never back), a bounded number at once.

        This runs after the message is durably stored, outside its transaction: 256 members exceed
        the 100 items of one, and it is safe because the message itself is stored once, under the
        room's pk, whatever happens here. The inbox items only order the list and tell that there
        is something unread (the count itself is a query of the messages above the read mark):
        an update that fails is logged, not raised — the send did happen, and a client retrying
        it would only get the original back — and the member's next message catches it up.
        The member list is read after the commit, so whoever joined before it is included."""
        item = await self._get(self.rooms, {"room": room}, ProjectionExpression="members, roomKey")
        if item is None or item["roomKey"] != room_key:
            return
        bound = asyncio.Semaphore(ROOM_FANOUT_CONCURRENCY)

        async def move(member: str) -> None:
            async with bound:
                try:  # the condition skips who left meanwhile and items a newer message moved
                    await self._conditional_update(
                        self.conversations, {"user": member, "with": room}, "SET lastSeq = :seq, activity = :act",
                        "roomKey = :key AND lastSeq < :seq", {":seq": seq, ":act": activity, ":key": room_key},
                    )  # fmt: skip
                except Exception as exc:  # noqa: BLE001 - advisory: see above
                    log.warning("room %s: %s's inbox not moved to %d: %s", room, member, seq, exc)

        await asyncio.gather(*(move(m) for m in item["members"] if m != sender))

    async def _transact(self, items: list[dict]) -> list[str] | None:
        """One TransactWriteItems: ``None`` when it committed, else why each item failed."""
        from botocore.exceptions import ClientError

        try:
            await self._call("transact_write_items", TransactItems=items)
        except ClientError as exc:
            if _code(exc) != "TransactionCanceledException":
                raise
            return _cancellation_codes(exc, len(items))
        return None

    # -- accounts -------------------------------------------------------------------------------

    async def create_session(self, session: SessionRecord, token_hash: str, *, keep_at_most: int) -> None:
        await self._call("put_item", TableName=self.users, Item=self._item({
            "pk": f"session#{session.family}", "username": session.username, "device": session.device,
            "startedAt": session.started_at, "endsAt": session.ends_at, "idleUntil": session.idle_until,
            "tokenHash": token_hash, "expireAt": session.idle_until // 1000 + 1,
        }))  # fmt: skip
        listed = await self._add_to_session_map(session.username, session.family, session.started_at)
        if len(listed) <= keep_at_most:
            return
        live = {s.family for s in await self._sessions(session.username, listed, session.started_at)}
        gone = [family for family in listed if family not in live]
        newest_first = sorted(live, key=lambda family: (listed[family], family), reverse=True)
        for family in gone + newest_first[keep_at_most:]:
            await self.end_session(family, username=session.username)

    async def _add_to_session_map(self, username: str, family: str, started_at: int) -> dict[str, int]:
        """Add ``family`` to the user's ``sessions`` map (creating the map on first use); the map after."""
        from botocore.exceptions import ClientError

        for update, condition in (("SET sessions.#f = :t", "attribute_exists(sessions)"),
                                  ("SET sessions = :m", "attribute_exists(pk) AND attribute_not_exists(sessions)")) * 2:  # fmt: skip
            try:
                reply = await self._call(
                    "update_item", TableName=self.users, Key=self._item({"pk": username}), UpdateExpression=update,
                    ConditionExpression=condition, ReturnValues="ALL_NEW",
                    **self._names_and_values(update, {"#f": family}, {":t": started_at, ":m": {family: started_at}}),
                )  # fmt: skip
            except ClientError as exc:
                if _code(exc) == "ConditionalCheckFailedException":
                    continue  # the map appeared (or went) meanwhile: the other form applies
                raise
            return (self._plain(reply.get("Attributes")) or {}).get("sessions") or {}
        if await self._get(self.users, {"pk": username}, ProjectionExpression="pk") is None:
            return {}  # the user was removed meanwhile: the session is unusable and expires by itself
        raise StoreUnavailable("could not record the session on the user item")

    def _names_and_values(self, expression: str, names: dict, values: dict) -> dict:
        """Only the placeholders ``expression`` uses (DynamoDB refuses unused ones)."""
        used_names = {k: v for k, v in names.items() if k in expression}
        used_values = {k: v for k, v in values.items() if k in expression}
        out: dict[str, Any] = {}
        if used_names:
            out["ExpressionAttributeNames"] = used_names
        if used_values:
            out["ExpressionAttributeValues"] = self._item(used_values)
        return out

    async def rotate_session(
        self, family: str, presented_hash: str, successor_hash: str, now: int, *, grace_ms: int, idle_ms: int
    ) -> Rotation:
        from botocore.exceptions import ClientError

        for _ in range(3):  # a lost race re-reads: the winner's rotation makes ours a repeat
            item = await self._get(self.users, {"pk": f"session#{family}"})
            if item is None or item["idleUntil"] <= now:
                return Rotation(RotationOutcome.UNKNOWN)
            session = _session_item(family, item)
            if presented_hash == item["tokenHash"]:
                idle_until = min(now + idle_ms, session.ends_at)
                try:
                    await self._call(
                        "update_item", TableName=self.users, Key=self._item({"pk": f"session#{family}"}),
                        UpdateExpression="SET tokenHash = :s, previousHash = :p, rotatedAt = :now, idleUntil = :i, expireAt = :e",
                        ConditionExpression="tokenHash = :p",
                        ExpressionAttributeValues=self._item({":s": successor_hash, ":p": presented_hash, ":now": now,
                                                              ":i": idle_until, ":e": idle_until // 1000 + 1}),
                    )  # fmt: skip
                except ClientError as exc:
                    if _code(exc) == "ConditionalCheckFailedException":
                        continue
                    raise
                return Rotation(RotationOutcome.ROTATED, session, now)
            rotated_at = item.get("rotatedAt")
            if presented_hash == item.get("previousHash") and rotated_at is not None and now - rotated_at <= grace_ms:
                return Rotation(RotationOutcome.REPEATED, session, rotated_at)
            await self.end_session(family, username=session.username)
            return Rotation(RotationOutcome.REPLAYED, session)
        raise StoreUnavailable("the session kept changing while it was rotated")

    async def session_active(self, family: str, username: str, now: int) -> bool:
        item = await self._get(self.users, {"pk": f"session#{family}"}, ProjectionExpression="idleUntil, username")
        return item is not None and item["idleUntil"] > now and item["username"] == username

    async def end_session(self, family: str, *, username: str | None = None) -> bool:
        reply = await self._call(
            "delete_item", TableName=self.users, Key=self._item({"pk": f"session#{family}"}), ReturnValues="ALL_OLD"
        )
        old = self._plain(reply.get("Attributes"))
        username = username or (old or {}).get("username")
        if username:
            await self._unlist_sessions(username, [family])
        return old is not None

    async def _unlist_sessions(self, username: str, families: list[str]) -> None:
        from botocore.exceptions import ClientError

        for start in range(0, len(families), 50):
            chunk = families[start:start + 50]
            names = {f"#f{i}": family for i, family in enumerate(chunk)}
            try:
                await self._call(
                    "update_item", TableName=self.users, Key=self._item({"pk": username}),
                    UpdateExpression="REMOVE " + ", ".join(f"sessions.{n}" for n in names),
                    ConditionExpression="attribute_exists(sessions)", ExpressionAttributeNames=names,
                )  # fmt: skip
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise

    async def end_user_sessions(self, username: str) -> int:
        item = await self._get(self.users, {"pk": username}, ProjectionExpression="sessions")
        ended = 0
        for family in ((item or {}).get("sessions") or {}):
            reply = await self._call(
                "delete_item", TableName=self.users, Key=self._item({"pk": f"session#{family}"}), ReturnValues="ALL_OLD"
            )
            ended += bool(reply.get("Attributes"))
        if item is not None and item.get("sessions"):
            await self._unlist_sessions(username, list(item["sessions"]))
        return ended

    async def list_sessions(self, username: str, now: int) -> list[SessionRecord]:
        item = await self._get(self.users, {"pk": username}, ProjectionExpression="sessions")
        return await self._sessions(username, (item or {}).get("sessions") or {}, now)

    async def _sessions(self, username: str, listed: dict[str, int], now: int) -> list[SessionRecord]:
        items = await self._batch_get(self.users, [{"pk": f"session#{family}"} for family in listed])
        sessions = [_session_item(i["pk"].removeprefix("session#"), i) for i in items]
        live = [s for s in sessions if s.idle_until > now and s.username == username]
        return sorted(live, key=lambda s: (s.started_at, s.family))

    async def record_login_failure(self, username: str, now: int) -> None:
        await self._conditional_update(
            self.users, {"pk": f"fails#{username}"},
            "SET times = list_append(if_not_exists(times, :empty), :t), expireAt = :exp",
            "attribute_not_exists(times) OR size(times) < :cap",
            {":empty": [], ":t": [now], ":exp": now // 1000 + LOGIN_FAILURE_TTL_S, ":cap": MAX_RECORDED_FAILURES},
        )  # fmt: skip

    async def count_login_failures(self, username: str, since: int) -> int:
        item = await self._get(self.users, {"pk": f"fails#{username}"})
        return sum(1 for t in (item or {}).get("times", []) if t >= since)

    async def clear_login_failures(self, username: str) -> None:
        await self._call("delete_item", TableName=self.users, Key=self._item({"pk": f"fails#{username}"}))


# -- helpers ------------------------------------------------------------------------------------


def _num(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal: make them ints, recursively."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _num(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_num(v) for v in value]
    return value


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def _cancellation_codes(exc: Exception, count: int) -> list[str]:
    """Why each item of a cancelled transaction failed (``"None"`` when it did not)."""
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    if len(reasons) == count:
        return [r.get("Code") or "None" for r in reasons]
    # Without per-item reasons, the message says them in order: "[ConditionalCheckFailed, None, ...]".
    text = str(exc)
    inside = text[text.rfind("[") + 1 : text.rfind("]")] if "[" in text else ""
    codes = [c.strip() for c in inside.split(",")] if inside else []
    return codes if len(codes) == count else ["ConditionalCheckFailed"] + ["None"] * (count - 1)


def _conv_key(a: str, b: str) -> str:
    first, second = sorted((a, b))
    return f"c#{first}#{second}"


def _session_item(family: str, item: dict) -> SessionRecord:
    return SessionRecord(
        family=family, username=item["username"], device=item.get("device"), started_at=item["startedAt"],
        ends_at=item["endsAt"], idle_until=item["idleUntil"],
    )  # fmt: skip


def _user(item: dict) -> UserRecord:
    return UserRecord(
        username=item["pk"], password_hash=item.get("passwordHash"), status=item.get("status", "online"),
        text=item.get("text", ""), last_seen=item.get("lastSeen"), created_at=item.get("createdAt", 0),
    )  # fmt: skip


def _room(item: dict) -> RoomRecord:
    return RoomRecord(room=item["room"], title=item.get("title", ""), owner=item["owner"], members=tuple(item["members"]))


async def _backoff(attempt: int) -> None:
    """A short random pause before trying a lost race again (jittered, so racers spread out)."""
    await asyncio.sleep(random.uniform(0, min(0.01 * 2**attempt, 0.5)))  # nosec B311 - jitter, not a secret


def _message(item: dict) -> Message:
    a = item.get("att")
    attachment = Attachment(a["id"], a["name"], a["size"], a["type"]) if a else None
    return Message(id=item["id"], sender=item["from"], to=item["to"], body=item["body"], seq=item["sk"], ts=item["ts"],
                   attachment=attachment)  # fmt: skip


def _holder_sk(pk: str, seq: int) -> int:
    """A holder item's sort key: a number (the table's ``sk`` is one) that names the message
    ``(pk, seq)``, above 0 (the file item's). 56 bits of its SHA-256: collisions need about 2**28
    messages holding one file."""
    return int.from_bytes(hashlib.sha256(f"{pk}#{seq}".encode()).digest()[:7], "big") + 1


def _check_attach_reasons(reasons: list[str]) -> None:
    """The file item's condition failed: its record went (a day unattached, or swept) between the
    core's check and this write. Nothing was stored; a retry is refused by the check."""
    if "ConditionalCheckFailed" in reasons:
        raise StoreUnavailable("the attached file's record is gone")


def _encode_cursor(key: dict) -> str:
    raw = json.dumps([key["with"], key["activity"]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, user: str) -> dict:
    """The ``LastEvaluatedKey`` a cursor stands for; ``ValueError`` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        other, activity = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("not a conversations cursor") from exc
    if not isinstance(other, str) or isinstance(activity, bool) or not isinstance(activity, int):
        raise ValueError("not a conversations cursor")
    return {"user": {"S": user}, "with": {"S": other}, "activity": {"N": str(activity)}}
