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

``conversations`` — key ``user`` (S), ``with`` (S): one "inbox" item per user and conversation
    * ``lastSeq``, ``readSeq`` (the read marker), ``activity`` (the last message's time in
      microseconds, unique enough to order by);
    * GSI ``byActivity`` (``user`` HASH, ``activity`` RANGE): the user's conversations newest first,
      paged with ``LastEvaluatedKey`` (the cursor is that key, base64url JSON).
    * ``unread`` is counted when listed: a Query COUNT over the messages above ``readSeq`` from
      the other user — only for conversations with ``lastSeq > readSeq``, so a read inbox costs
      nothing and an unread one costs about what reading those messages will.

Sending a message: (1) UpdateItem ADD on the counter gives ``seq``; (2) one TransactWriteItems
puts the guard and the message and moves both users' inbox items to ``seq`` (the sender's read
marker too), each inbox update conditioned on only ever moving forward. Concurrent sends in one
conversation may reach (2) out of order: when an inbox condition cancels the transaction, it is
retried without that item (the newer message already moved it; the sender's read marker still
moves). When the guard's condition cancels it, ``(sender, id)`` was stored before: the original is
returned. A transaction that fails after the counter moved leaves a gap in ``seq`` (PROTOCOL.md
allows gaps) — so does every retry of an already stored message (one counter increment).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from tui_chat.protocol import MAX_SEQ, ConversationSummary, Message
from tui_chat.server.store import (
    ConnectionRecord,
    ConnectResult,
    DisconnectResult,
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

TABLES = ("users", "connections", "messages", "conversations")
DEFAULT_RETENTION_DAYS = 365
"""The seed design keeps messages for one year; ``retention_days=None`` keeps them forever."""
CONNECTION_TTL_S = 3 * 60 * 60
"""API Gateway closes every connection within 2 hours; its item may go an hour after that."""
MAX_CONNECTION_AGE_MS = 2 * 60 * 60 * 1000
LOGIN_FAILURE_TTL_S = 60 * 60
MAX_RECORDED_FAILURES = 50
WATCH_ALL = "all"
_USER_LISTED = "u"


class DynamoDBStore(Store):
    """The :class:`Store` over four DynamoDB tables (see the module docstring)."""

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
        """Create the four tables (and TTL) unless they exist: for tests and the emulator."""
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
            self.messages: dict(AttributeDefinitions=[s("pk"), n("sk")], KeySchema=key("pk", "sk")),
            self.conversations: dict(AttributeDefinitions=[s("user"), s("with"), n("activity")],
                                     KeySchema=key("user", "with"),
                                     GlobalSecondaryIndexes=[gsi("byActivity", "user", "activity")]),
        }  # fmt: skip
        for table, spec in specs.items():
            if table in existing:
                continue
            c.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", **spec)
        for table in specs:
            c.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
            # Every table: messages and inboxes (retention), sessions, connections.
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

    async def save_message(self, sender: str, msg_id: str, to: str, body: str, now: int) -> SaveResult:
        from botocore.exceptions import ClientError

        conv = _conv_key(sender, to)
        guard_key = f"g#{sender}#{msg_id}"
        counter = await self._call(
            "update_item", TableName=self.messages, Key=self._item({"pk": conv, "sk": 0}),
            UpdateExpression="ADD lastSeq :one", ExpressionAttributeValues=self._item({":one": 1}),
            ReturnValues="UPDATED_NEW",
        )  # fmt: skip
        seq = int(self._plain(counter["Attributes"])["lastSeq"])
        message = Message(id=msg_id, sender=sender, to=to, body=body, seq=seq, ts=now)
        expire = self._expire_at(now)
        activity = now * 1000 + (self._activity_clock() // 1000) % 1000
        items: list[dict | None] = [
            {"Put": {"TableName": self.messages, "ConditionExpression": "attribute_not_exists(pk)",
                     "Item": self._item({"pk": guard_key, "sk": 0, "conv": conv, "seq": seq, "expireAt": expire})}},
            {"Put": {"TableName": self.messages, "ConditionExpression": "attribute_not_exists(pk)",
                     "Item": self._item({"pk": conv, "sk": seq, "id": msg_id, "from": sender, "to": to,
                                         "body": body, "ts": now, "expireAt": expire})}},
            self._inbox_update(sender, to, seq, activity, is_sender=True),
        ]  # fmt: skip
        if to != sender:
            items.append(self._inbox_update(to, sender, seq, activity, is_sender=False))
        for _attempt in range(4):
            try:
                await self._call("transact_write_items", TransactItems=[i for i in items if i is not None])
                return SaveResult(message=message, created=True)
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise
                reasons = _cancellation_codes(exc, len([i for i in items if i is not None]))
                if reasons[0] == "ConditionalCheckFailed":  # (sender, id) is stored: a retry
                    original = await self._original(guard_key)
                    if original is None:
                        raise StoreUnavailable("the message of an idempotency guard is missing") from exc
                    return SaveResult(message=original, created=False)
                # A newer message of this conversation landed first (concurrent sends finish in
                # any order): its inbox item is already ahead; keep only what still moves forward.
                live = [i for i in items if i is not None]
                for index, code in enumerate(reasons):
                    if code != "ConditionalCheckFailed" or index < 2:
                        continue  # TransactionConflict and friends: try the same again
                    slot = items.index(live[index])
                    full_update = live[index]["Update"]["UpdateExpression"].startswith("SET lastSeq")
                    # The sender's own read marker still moves to its message; anything else is dropped.
                    items[slot] = self._read_marker_update(sender, to, seq) if slot == 2 and full_update else None
        raise StoreUnavailable("DynamoDB kept cancelling the message's transaction")

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
                "update_item", TableName=table, Key=self._item(key), UpdateExpression=update,
                ConditionExpression=condition, ExpressionAttributeValues=self._item(values),
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
        if low > high:
            return [], False
        items: list[dict] = []
        start = None
        while len(items) <= limit:  # one more than asked tells whether more exist
            live, now = self._unexpired()
            kwargs: dict[str, Any] = dict(
                TableName=self.messages, ConsistentRead=True, ScanIndexForward=forward,
                Limit=limit + 1 - len(items), FilterExpression=live,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                ExpressionAttributeValues=self._item({":pk": _conv_key(user, other), ":low": low, ":high": high, **now}),
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
        lasts = await self._batch_get(
            self.messages, [{"pk": _conv_key(user, r["with"]), "sk": r["lastSeq"]} for r in page]
        )
        last_by_conv = {(i["pk"], i["sk"]): _message(i) for i in lasts if not self._expired(i)}
        peer_rows = await self._batch_get(self.conversations, [{"user": r["with"], "with": user} for r in page])
        peer_read = {row["user"]: row.get("readSeq", 0) for row in peer_rows}
        summaries = []
        for row in page:
            conv = _conv_key(user, row["with"])
            read_seq = row.get("readSeq", 0)
            unread = await self._count_unread(conv, row["with"], read_seq) if row["lastSeq"] > read_seq else 0
            summaries.append(ConversationSummary(
                with_=row["with"], last_seq=row["lastSeq"], read_seq=read_seq, unread=unread,
                last=last_by_conv.get((conv, row["lastSeq"])), peer_read_seq=int(peer_read.get(row["with"], 0)),
            ))  # fmt: skip
        next_cursor = None
        if more:
            last = page[-1]
            next_cursor = _encode_cursor({"user": user, "with": last["with"], "activity": last["activity"]})
        return summaries, next_cursor

    async def _count_unread(self, conv: str, other: str, read_seq: int) -> int:
        count = 0
        start = None
        while True:
            live, now = self._unexpired()
            kwargs: dict[str, Any] = dict(
                TableName=self.messages, Select="COUNT", ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high", FilterExpression=f"#f = :other AND {live}",
                ExpressionAttributeNames={"#f": "from"},
                ExpressionAttributeValues=self._item({":pk": conv, ":low": read_seq + 1, ":high": MAX_SEQ, ":other": other, **now}),
            )  # fmt: skip
            if start:
                kwargs["ExclusiveStartKey"] = start
            reply = await self._call("query", **kwargs)
            count += reply.get("Count", 0)
            start = reply.get("LastEvaluatedKey")
            if not start:
                return count

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


def _message(item: dict) -> Message:
    return Message(id=item["id"], sender=item["from"], to=item["to"], body=item["body"], seq=item["sk"], ts=item["ts"])


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
