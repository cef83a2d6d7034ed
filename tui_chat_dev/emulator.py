"""``python -m tui_chat_dev serve-lambda``: the Lambda handlers of ``aws.py`` behind a local API Gateway.

An ASGI app (served by uvicorn like the self-hosted server) that does what API Gateway's
WebSocket API does, so the cloud code path runs — and is tested — on 127.0.0.1:

- ``/ws`` accepts WebSockets. The handshake calls the REQUEST authorizer (identity source: the
  ``token`` query parameter or the ``Authorization`` header; missing → 401 without calling it; ``Unauthorized`` → 401; ``Deny`` →
  403), then ``$connect`` with the authorizer's context; a non-2xx ``statusCode`` refuses the
  handshake with that status. Only then is the socket accepted and known to ``@connections``.
- Each text frame goes to the route named by ``$request.body.action`` (``$default`` when the frame
  is not a JSON object or names no route) with an API Gateway-shaped event; ``$disconnect`` follows
  the close. Handlers run in worker threads, as sync Lambda functions. By default one frame of a
  connection at a time (the sender's order, which the protocol tests check); with
  ``concurrent_frames`` each frame is its own invocation, as in API Gateway, so two frames in
  flight may finish in either order (``frame_jitter_ms`` adds a random delay to each, to make that
  happen). A Lambda that fails answers with API Gateway's own error frame
  (``{"message": "Internal server error", "connectionId": …, "requestId": …}``).
- ``/_emulator/*`` (loopback only; API Gateway has no such thing) lets tests change that at run
  time and inject faults into chosen invocations: a Lambda failure before or after the handler
  ran, a throttle (``{"message": "Too Many Requests", …}``, no invocation), or holding a frame back
  until a later frame of its connection has been handled. See :class:`EmulatorControl`.
- ``POST|GET|DELETE /{stage}/@connections/{id}`` (also without the stage) is the management API
  the handlers reach over real HTTP through boto3 (``endpoint_url``); unknown or closed
  connections answer 410 ``GoneException``. Only loopback clients may call it (API Gateway uses
  IAM; the emulator has no credentials to check).
- ``/healthz``, ``/info`` and, for ``accounts``/``open`` sign-in, ``/auth/*`` are the self-hosted
  endpoints over the same DynamoDB store (API Gateway has no such routes: in the cloud, Cognito signs
  users in), so clients and the live protocol tests use the emulator exactly like ``tui-chat serve``.

Where the emulator knowingly differs from API Gateway, it behaves like the self-hosted server so the
protocol holds: binary frames close the connection with 1008 (API Gateway would pass them on),
rate limits are per connection (API Gateway throttles per route and stage), and ``DeleteConnection``
closes with the code in the ``X-Tui-Chat-Close-Code`` header (4000 for ``replaced``), 1000 without it.

DynamoDB is moto's server mode on 127.0.0.1 (in this process, in memory) unless
``--dynamodb-endpoint`` names another (DynamoDB Local, a moto server you run, ...).

Attachments (PROTOCOL.md 7.7) go to an S3 bucket in that same moto server (``tui-chat-files``,
created at start), through :class:`~tui_chat.server.s3_files.S3FileLinks` as in the cloud. moto
serves presigned URLs without checking them, so the emulator's moto sits behind
:class:`PresignedS3Rules`, which refuses what S3 refuses: a bad or expired signature, a length
or checksum header other than the signed one, bytes that differ from the checksum. With another
endpoint, ``TUI_CHAT_FILES_BUCKET`` (and ``TUI_CHAT_S3_ENDPOINT``, default the DynamoDB one) turn
them on.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import os
import random
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote

from tui_chat import protocol as p
from tui_chat.server import aws
from tui_chat.server.core import Caller, now_ms
from tui_chat.server.asgi import LiveConnection, close_all, deny, header, run_lifespan, serve_frames
from tui_chat.server.local import ChatServerApp
from tui_chat.server.origins import Origins
from tui_chat.server.store import Store

log = logging.getLogger("tui_chat.emulator")

STAGE = "local"
API_ID = "emulator"
LAMBDA_WORKERS = 32
"""Concurrent Lambda invocations (warm containers), one thread each."""
MAX_POST_BYTES = 128 * 1024
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
CONTROL_PREFIX = "/_emulator/"
MAX_FRAME_JITTER_MS = 1000
"""Bound on the random delay per invocation: reordering needs milliseconds, not a stalled test."""
HOLD_LIMIT_S = 5.0
"""A held frame goes on after this even when no later frame of its connection finished."""
SEND_ROUTES = frozenset({"sendMessage", "sendMessages"})
INTERNAL_SERVER_ERROR = "Internal server error"
"""What API Gateway answers on a connection when the route's Lambda fails or times out."""
TOO_MANY_REQUESTS = "Too Many Requests"
"""What API Gateway answers when it throttles a frame (the Lambda is not invoked)."""
CONCURRENT_FRAMES_ENV = "TUI_CHAT_EMULATOR_CONCURRENT_FRAMES"
FILES_BUCKET = "tui-chat-files"
FRAME_JITTER_ENV = "TUI_CHAT_EMULATOR_FRAME_JITTER_MS"

Scope = dict[str, Any]


@dataclass
class _Socket:
    live: LiveConnection
    conn_id: str
    connected_at: int
    source_ip: str
    user_agent: str
    authorizer: dict
    established: bool = False
    last_active: int = 0
    sends_in_flight: int = 0
    frames_finished: int = 0
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    """Notified whenever one of this connection's frames has been handled (held frames wait on it)."""


FAULT_KINDS = ("fail_before", "fail_after", "throttle", "hold")
"""``fail_before``: the Lambda fails before the handler runs (nothing stored), API Gateway's
``Internal server error`` frame; ``fail_after``: the handler runs (stores, answers), then the Lambda
fails (a timeout after the work), the same frame; ``throttle``: not invoked, ``Too Many
Requests``; ``hold``: the frame waits until another frame of its connection has been handled
(at most ``HOLD_LIMIT_S``: without ``concurrent_frames`` no other frame can run meanwhile)."""


@dataclass
class _Fault:
    kind: str
    route: str
    user: str | None
    remaining: int


class Faults:
    """Faults waiting for the invocations they are meant for (first added, first used)."""

    def __init__(self) -> None:
        self._pending: list[_Fault] = []

    def add(self, kind: str, route: str, count: int = 1, user: str | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        self._pending.append(_Fault(kind, route, user, count))

    def take(self, route: str, user: str | None) -> str | None:
        """The kind of fault for this invocation, if one waits for it (using it up)."""
        for fault in self._pending:
            if fault.route == route and fault.user in (None, user):
                fault.remaining -= 1
                if not fault.remaining:
                    self._pending.remove(fault)
                return fault.kind
        return None

    def clear(self) -> None:
        self._pending.clear()

    def __len__(self) -> int:
        return sum(f.remaining for f in self._pending)


class ApiGatewayEmulator:
    """The ASGI app: WebSocket API Gateway in front of ``tui_chat.server.aws``'s handlers."""

    def __init__(
        self,
        lambda_app: aws.LambdaApp,
        http_app: ChatServerApp,
        *,
        store: Store,
        on_startup: Any = None,
        on_shutdown: Any = None,
        stage: str = STAGE,
        concurrent_frames: bool = False,
        frame_jitter_ms: int = 0,
    ) -> None:
        self.lambda_app = lambda_app
        self.http_app = http_app
        self.store = store
        self.stage = stage
        self.sockets: dict[str, _Socket] = {}
        self._pool = ThreadPoolExecutor(max_workers=LAMBDA_WORKERS, thread_name_prefix="lambda")
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown
        self.concurrent_frames = concurrent_frames
        """Each frame its own invocation, as API Gateway does (else one frame of a connection at a time)."""
        self.frame_jitter_ms = _checked_jitter(frame_jitter_ms)
        """With ``concurrent_frames``: each invocation starts after a random 0..this many ms."""
        self.faults = Faults()
        self.max_sends_in_flight: dict[str, int] = {}
        """Per user: the most send invocations one of their connections had running at once (from
        the frame's arrival to the handler's return, so a correct client's next frame may overlap
        the tail of the one it answered)."""
        self._frame_tasks: set[asyncio.Task] = set()
        aws.configure(lambda_app)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            if "/@connections/" in scope["path"]:
                await self._management(scope, receive, send)
            elif scope["path"].startswith(CONTROL_PREFIX):
                await self._control(scope, receive, send)
            else:
                await self.http_app(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan -------------------------------------------------------------------------------

    async def _lifespan(self, receive: Any, send: Any) -> None:
        await run_lifespan(receive, send, startup=self._start, shutdown=self._stop)

    async def _start(self) -> None:
        if self._on_startup is not None:
            await asyncio.to_thread(self._on_startup)
        await self.store.open()
        await self.store.clear_connections()  # sockets of a previous run are gone

    async def _stop(self) -> None:
        await self.going_away()
        for task in list(self._frame_tasks):  # invocations still running die with the process
            task.cancel()
        await self.store.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._on_shutdown is not None:
            await asyncio.to_thread(self._on_shutdown)

    async def going_away(self, timeout: float = 2.0) -> None:
        await close_all([s.live for s in self.sockets.values()], timeout)

    # -- invoking the handlers ------------------------------------------------------------------

    async def _invoke(self, route: str, event: dict) -> Any:
        name = "authorizer_handler" if route == "authorizer" else aws.ROUTE_HANDLERS.get(route, "message_handler")
        handler = getattr(aws, name)
        context = SimpleNamespace(
            aws_request_id=str(uuid.uuid4()), function_name=f"emulator-{route}",
            get_remaining_time_in_millis=lambda: 29_000,
        )  # fmt: skip
        return await asyncio.get_running_loop().run_in_executor(self._pool, handler, event, context)

    def _request_context(self, scope: Scope, sock_id: str, route: str, event_type: str, authorizer: dict | None) -> dict:
        host, port = scope.get("server") or ("127.0.0.1", 0)
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        domain = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.lambda_app.management_endpoint is None:
            scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
            self.lambda_app.management_endpoint = f"{scheme}://{domain}/{self.stage}"
        client = scope.get("client") or ("127.0.0.1", 0)
        now = now_ms()
        ctx = {
            "routeKey": route, "eventType": event_type, "connectionId": sock_id, "domainName": domain,
            "stage": self.stage, "apiId": API_ID, "requestId": uuid.uuid4().hex[:16], "messageDirection": "IN",
            "extendedRequestId": uuid.uuid4().hex[:16], "requestTimeEpoch": now,
            "requestTime": datetime.fromtimestamp(now / 1000, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "identity": {"sourceIp": client[0], "userAgent": header(scope, "user-agent")},
        }  # fmt: skip
        if authorizer is not None:
            ctx["authorizer"] = authorizer
        return ctx

    # -- WebSocket ------------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] not in ("/ws", f"/{self.stage}"):
            await deny(send, 404, "not found")
            return
        if (await receive())["type"] != "websocket.connect":
            return
        raw_query = scope.get("query_string", b"").decode("latin-1")
        multi = parse_qs(raw_query, keep_blank_values=True)
        query = {k: v[-1] for k, v in multi.items()}  # API Gateway keeps the last value
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        conn_id = aws.new_connection_id()
        base = {"headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
                "queryStringParameters": query or None, "multiValueQueryStringParameters": multi or None,
                "stageVariables": None, "isBase64Encoded": False}  # fmt: skip

        if not query.get("token") and not headers.get("authorization"):  # no identity source: no authorizer call
            await deny(send, 401, "Unauthorized")
            return
        auth_event = {**base, "type": "REQUEST",
                      "methodArn": f"arn:aws:execute-api:local:000000000000:{API_ID}/{self.stage}/$connect",
                      "requestContext": self._request_context(scope, conn_id, "$connect", "CONNECT", None)}  # fmt: skip
        try:
            policy = await self._invoke("authorizer", auth_event)
        except Exception as exc:
            status = 401 if str(exc) == "Unauthorized" else 500
            await deny(send, status, "Unauthorized" if status == 401 else "Internal server error")
            return
        statement = (policy.get("policyDocument") or {}).get("Statement") or [{}]
        if statement[0].get("Effect") != "Allow":
            await deny(send, 403, "Forbidden")
            return
        authorizer = {"principalId": policy.get("principalId"), **(policy.get("context") or {})}

        client = scope.get("client") or ("127.0.0.1", 0)
        caller = Caller(conn_id, str(authorizer.get("username")), str(authorizer.get("device")))
        live = LiveConnection(caller, send, self.http_app.rate_limit.bucket())
        sock = _Socket(live, conn_id, now_ms(), client[0], header(scope, "user-agent"), authorizer)
        self.sockets[conn_id] = sock  # known, but not established: @connections answers 410 until $connect returns
        result: Any = {}
        try:
            result = await self._invoke("$connect", {**base, "requestContext": {
                **self._request_context(scope, conn_id, "$connect", "CONNECT", authorizer), "connectedAt": sock.connected_at}})  # fmt: skip
            status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
        except Exception:
            log.exception("$connect failed")
            status = 500
        if not 200 <= status < 300:
            self.sockets.pop(conn_id, None)
            await deny(send, status, str(result.get("body", "refused")) if status != 500 else "Internal server error")
            return
        await send({"type": "websocket.accept"})
        sock.established = True
        live.start()
        close_reason = "client closed"
        try:
            close_reason = await self._serve_frames(scope, sock, receive)
        finally:
            self.sockets.pop(conn_id, None)
            if live.closed:  # a close we started (1008, 4000, ...): let the writer send its frame
                await asyncio.wait({asyncio.ensure_future(live.wait_drained())}, timeout=1.0)
            live.abort()
            event = {"headers": headers, "multiValueHeaders": base["multiValueHeaders"], "isBase64Encoded": False,
                     "requestContext": {**self._request_context(scope, conn_id, "$disconnect", "DISCONNECT", authorizer),
                                        "disconnectStatusCode": 1000, "disconnectReason": close_reason}}  # fmt: skip
            try:
                await asyncio.shield(self._invoke("$disconnect", event))
            except Exception:
                log.exception("$disconnect failed")

    async def _serve_frames(self, scope: Scope, sock: _Socket, receive: Any) -> str:
        def seen() -> None:
            sock.last_active = now_ms()

        async def route(text: str) -> None:
            name = _select_route(text)
            event = {"body": text, "isBase64Encoded": False,
                     "requestContext": {**self._request_context(scope, sock.conn_id, name, "MESSAGE", sock.authorizer),
                                        "messageId": uuid.uuid4().hex[:16], "connectedAt": sock.connected_at}}  # fmt: skip
            if self.concurrent_frames:  # API Gateway does not wait for one invocation before the next
                self._spawn(self._handle_frame(sock, name, event))
            else:
                await self._handle_frame(sock, name, event)

        return await serve_frames(receive, sock.live, route, on_frame=seen)

    def _spawn(self, frame: Any) -> None:
        task = asyncio.ensure_future(frame)
        self._frame_tasks.add(task)  # a reference, or the loop may drop the task mid-flight
        task.add_done_callback(self._frame_tasks.discard)

    async def _handle_frame(self, sock: _Socket, name: str, event: dict) -> None:
        """One invocation of a route, as API Gateway makes it, with any fault injected for it."""
        fault = self.faults.take(name, sock.live.caller.username)
        if fault == "throttle":  # refused before any Lambda runs
            self._gateway_error(sock, event, TOO_MANY_REQUESTS)
            await self._frame_handled(sock)
            return
        self._frame_started(sock, name)
        try:
            await self._before_invocation(sock, fault)
            if fault == "fail_before":
                self._gateway_error(sock, event, INTERNAL_SERVER_ERROR)
                return
            try:
                await self._invoke(name, event)
            except Exception:
                log.exception("route handler failed", extra={"route": name})
                fault = "fail_after"
            if fault == "fail_after":
                self._gateway_error(sock, event, INTERNAL_SERVER_ERROR)
        finally:
            await self._frame_finished(sock, name)

    async def _before_invocation(self, sock: _Socket, fault: str | None) -> None:
        if self.concurrent_frames and self.frame_jitter_ms:
            await asyncio.sleep(random.uniform(0, self.frame_jitter_ms) / 1000)
        if fault == "hold":
            await self._hold(sock)

    async def _hold(self, sock: _Socket) -> None:
        """Wait until another frame of this connection has been handled (bounded): with a frame
        sent right after this one, the adversarial order API Gateway is free to choose."""
        finished = sock.frames_finished
        async with sock.progress:
            try:
                await asyncio.wait_for(sock.progress.wait_for(lambda: sock.frames_finished > finished), HOLD_LIMIT_S)
            except TimeoutError:
                log.warning("a held frame went on alone: no later frame finished", extra={"conn": sock.conn_id})

    def _frame_started(self, sock: _Socket, name: str) -> None:
        if name in SEND_ROUTES:
            sock.sends_in_flight += 1
            user = sock.live.caller.username
            self.max_sends_in_flight[user] = max(self.max_sends_in_flight.get(user, 0), sock.sends_in_flight)

    async def _frame_finished(self, sock: _Socket, name: str) -> None:
        if name in SEND_ROUTES:
            sock.sends_in_flight -= 1
        await self._frame_handled(sock)

    async def _frame_handled(self, sock: _Socket) -> None:
        sock.frames_finished += 1
        async with sock.progress:
            sock.progress.notify_all()

    def _gateway_error(self, sock: _Socket, event: dict, message: str) -> None:
        """API Gateway's own frame for an invocation it could not complete (not a protocol event)."""
        ctx = event["requestContext"]
        sock.live.push(json.dumps({"message": message, "connectionId": sock.conn_id, "requestId": ctx["requestId"]}))

    # -- /_emulator/ (tests change the emulator's behaviour at run time) -------------------------

    async def _control(self, scope: Scope, receive: Any, send: Any) -> None:
        if (scope.get("client") or ("", 0))[0] not in _LOOPBACK:
            await _reply(send, 403, b"")
            return
        body = await _read_body(receive)
        try:
            request = json.loads(body) if body else {}
            if not isinstance(request, dict):
                raise ValueError("the body must be a JSON object")
            answer = self._control_action(scope["method"], scope["path"][len(CONTROL_PREFIX):], request)
        except (ValueError, TypeError, KeyError) as exc:
            await _reply(send, 400, json.dumps({"error": str(exc)}).encode(), json_body=True)
            return
        if answer is None:
            await _reply(send, 404, b"")
        else:
            await _reply(send, 200, json.dumps(answer).encode(), json_body=True)

    def _control_action(self, method: str, what: str, request: dict) -> dict | None:
        if (method, what) == ("PUT", "frames"):
            jitter = _checked_jitter(request.get("jitterMs", 0))
            self.concurrent_frames = bool(request["concurrent"])
            self.frame_jitter_ms = jitter
        elif (method, what) == ("POST", "faults"):
            self.faults.add(request["kind"], request["route"], request.get("count", 1), request.get("user"))
        elif (method, what) == ("DELETE", "faults"):
            self.faults.clear()
        elif (method, what) == ("DELETE", "stats"):
            self.max_sends_in_flight.clear()
        elif (method, what) != ("GET", "stats"):
            return None
        return self._stats()

    def _stats(self) -> dict:
        return {"concurrent": self.concurrent_frames, "jitterMs": self.frame_jitter_ms,
                "faultsPending": len(self.faults), "maxSendsInFlight": dict(self.max_sends_in_flight)}  # fmt: skip

    # -- @connections ---------------------------------------------------------------------------

    async def _management(self, scope: Scope, receive: Any, send: Any) -> None:
        client = (scope.get("client") or ("", 0))[0]
        if client not in _LOOPBACK:
            await _aws_error(send, 403, "ForbiddenException", "@connections is only served to loopback clients")
            return
        prefix, _, conn_id = scope["path"].partition("/@connections/")
        if prefix not in ("", f"/{self.stage}") or not conn_id or "/" in conn_id:
            await _aws_error(send, 404, "NotFoundException", "no such resource")
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_POST_BYTES:
                await _aws_error(send, 413, "PayloadTooLargeException", "the data is larger than 128 KB")
                return
            if not message.get("more_body"):
                break
        sock = self.sockets.get(conn_id)
        if sock is None or not sock.established or sock.live.closed:
            await _aws_error(send, 410, "GoneException", f"the connection {conn_id} is gone")
            return
        method = scope["method"]
        if method == "POST":
            try:
                text = bytes(body).decode("utf-8")
            except UnicodeDecodeError:
                await _aws_error(send, 400, "BadRequestException", "the emulator only sends text frames")
                return
            if not sock.live.push(text):  # dropped as too slow: gone from now on
                await _aws_error(send, 410, "GoneException", f"the connection {conn_id} is gone")
                return
            await _reply(send, 200, b"")
        elif method == "DELETE":
            code = header(scope, aws.CLOSE_CODE_HEADER.lower())
            sock.live.close(int(code) if code.isdigit() else p.CLOSE_NORMAL, "closed by the server")
            await _reply(send, 204, b"")
        elif method == "GET":
            payload = {"connectedAt": _iso(sock.connected_at), "lastActiveAt": _iso(sock.last_active or sock.connected_at),
                       "identity": {"sourceIp": sock.source_ip, "userAgent": sock.user_agent}}  # fmt: skip
            await _reply(send, 200, json.dumps(payload).encode(), json_body=True)
        else:
            await _aws_error(send, 405, "MethodNotAllowedException", f"{method} is not supported")


def _checked_jitter(value: Any) -> int:
    if not isinstance(value, int) or not 0 <= value <= MAX_FRAME_JITTER_MS:
        raise ValueError(f"jitterMs must be an integer from 0 to {MAX_FRAME_JITTER_MS}")
    return value


async def _read_body(receive: Any, limit: int = 64 * 1024) -> bytes:
    body = bytearray()
    while len(body) <= limit:
        message = await receive()
        body += message.get("body", b"")
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    return bytes(body)


def _select_route(text: str) -> str:
    """``$request.body.action``: the named route when it exists, else ``$default``."""
    try:
        frame = json.loads(text)
    except ValueError:
        return "$default"
    action = frame.get("action") if isinstance(frame, dict) else None
    if isinstance(action, str) and action in aws.ROUTE_HANDLERS and not action.startswith("$"):
        return action
    return "$default"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


async def _reply(send: Any, status: int, body: bytes, *, json_body: bool = False) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if json_body:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _aws_error(send: Any, status: int, error_type: str, message: str) -> None:
    """An error the way botocore's rest-json parser reads it (``x-amzn-ErrorType``)."""
    body = json.dumps({"message": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-amzn-errortype", error_type.encode()),
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


# -- building it (``python -m tui_chat_dev serve-lambda``) ------------------------------------------


def build_emulator(options: Any, *, dynamodb_endpoint: str | None = None, table_prefix: str = "tui-chat-",
                   clock: Any = now_ms) -> ApiGatewayEmulator:  # fmt: skip
    """The emulator for :class:`~tui_chat.server.settings.Settings`, over the DynamoDB at
    ``dynamodb_endpoint`` (an in-process moto server when None). The process's AWS credentials
    and region must be set (:func:`use_fake_credentials` for moto)."""
    from tui_chat.server.auth.accounts import load_or_create_secret
    from tui_chat.server.auth.wiring import sign_in_services
    from tui_chat.server.stores.dynamodb import DynamoDBStore

    region = os.environ["AWS_DEFAULT_REGION"]
    moto_server = None
    endpoint = dynamodb_endpoint
    if endpoint is None:
        moto_server = _start_moto()
        host, port = moto_server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
    store = DynamoDBStore(prefix=table_prefix, endpoint_url=endpoint, region=region, create_tables=True)
    files = None
    if moto_server is not None or os.environ.get("TUI_CHAT_FILES_BUCKET"):
        from tui_chat.server.s3_files import S3FileLinks

        files = S3FileLinks(os.environ.get("TUI_CHAT_FILES_BUCKET") or FILES_BUCKET, region=region,
                            endpoint_url=os.environ.get("TUI_CHAT_S3_ENDPOINT") or endpoint, ttl_s=options.file_url_ttl_s)  # fmt: skip

    db_path = options.db_path
    db_path.parent.mkdir(parents=True, exist_ok=True)
    secret = load_or_create_secret(db_path.with_name(db_path.name + ".secret"))
    accounts, verifier = sign_in_services(options, store, secret, clock)
    lambda_app = aws.LambdaApp(store, verifier=verifier, accounts=accounts, region=region, clock=clock,
                               files=files, max_file_bytes=options.max_file_bytes)  # fmt: skip
    http_app = ChatServerApp(store, accounts, verifier=None if verifier is accounts else verifier, clock=clock,
                              rate_limit=options.rate_limit, auth_per_minute=options.auth_per_minute,
                              origins=Origins(options.public_hosts, options.allowed_origins))  # fmt: skip
    concurrent, jitter = _frame_settings_from_env()
    log.info("lambda runtime", extra={"dynamodb": endpoint, "tables": table_prefix + "*",
                                      "filesBucket": files.bucket if files else None,
                                      "concurrentFrames": concurrent, "frameJitterMs": jitter})  # fmt: skip
    return ApiGatewayEmulator(lambda_app, http_app, store=store,
                              on_startup=(lambda: ensure_bucket(files)) if files is not None else None,
                              on_shutdown=moto_server.stop if moto_server is not None else None,
                              concurrent_frames=concurrent, frame_jitter_ms=jitter)  # fmt: skip


def ensure_bucket(files: Any) -> None:
    """Create the attachments bucket unless it exists (the template creates it in the cloud)."""
    from botocore.exceptions import ClientError

    try:
        files.client.create_bucket(Bucket=files.bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def _frame_settings_from_env() -> tuple[bool, int]:
    """``TUI_CHAT_EMULATOR_CONCURRENT_FRAMES=1`` and ``TUI_CHAT_EMULATOR_FRAME_JITTER_MS=N``: how
    frames are invoked from the start (``serve-lambda`` has no flags of its own for them)."""
    concurrent = os.environ.get(CONCURRENT_FRAMES_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return concurrent, _checked_jitter(int(os.environ.get(FRAME_JITTER_ENV, "0") or 0))


class EmulatorControl:
    """A test's handle on a running emulator's ``/_emulator/`` endpoints (over HTTP, so the
    emulator may run in another process)."""

    def __init__(self, http_url: str) -> None:
        self.url = http_url.rstrip("/") + CONTROL_PREFIX.rstrip("/")

    async def frames(self, *, concurrent: bool, jitter_ms: int = 0) -> dict:
        """Invoke each frame on its own (``concurrent``), after a random 0..``jitter_ms`` ms."""
        return await self._call("PUT", "frames", {"concurrent": concurrent, "jitterMs": jitter_ms})

    async def fault(self, kind: str, route: str, *, count: int = 1, user: str | None = None) -> dict:
        """The next ``count`` invocations of ``route`` (by ``user``, or anyone) get ``kind``
        (one of :data:`FAULT_KINDS`)."""
        return await self._call("POST", "faults", {"kind": kind, "route": route, "count": count, "user": user})

    async def clear_faults(self) -> dict:
        return await self._call("DELETE", "faults")

    async def stats(self) -> dict:
        """``concurrent``, ``jitterMs``, ``faultsPending``, ``maxSendsInFlight`` (per user)."""
        return await self._call("GET", "stats")

    async def reset_stats(self) -> dict:
        return await self._call("DELETE", "stats")

    async def _call(self, method: str, what: str, body: dict | None = None) -> dict:
        import httpx

        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.request(method, f"{self.url}/{what}", json=body)
        response.raise_for_status()
        return response.json()


def tune_process() -> None:
    """Handlers, boto3 and (by default) moto share the emulator's process: hand the GIL over
    sooner than every 5 ms, or each of a message's dozen HTTP round trips waits for it. For the
    emulator's own process (its command line calls this), never on import."""
    sys.setswitchinterval(0.0005)


def use_fake_credentials(region: str = "us-east-1") -> None:
    """moto and the emulator accept any credentials; boto3 only wants some to be set. For the
    emulator's own process (its command line calls this), never on import."""
    for name, value in (("AWS_ACCESS_KEY_ID", "emulator"), ("AWS_SECRET_ACCESS_KEY", "emulator"), ("AWS_DEFAULT_REGION", region)):
        os.environ.setdefault(name, value)


def _start_moto() -> Any:
    started = time.perf_counter()
    speed_up_moto_transactions()
    server = start_moto_server()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    log.info("moto server started", extra={"port": server.get_host_and_port()[1], "ms": round((time.perf_counter() - started) * 1000)})
    return server


def start_moto_server() -> Any:
    """moto's server mode on 127.0.0.1 (a free port), with presigned S3 requests checked as S3
    checks them (:class:`PresignedS3Rules`); plain moto when its internals are not the expected ones."""
    from moto.server import ThreadedMotoServer

    class StrictS3MotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
            from werkzeug.serving import make_server

            app = PresignedS3Rules(DomainDispatcherApplication(create_backend_app), _secret_key)
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication  # noqa: F401 - the internals used above

        server = StrictS3MotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    except ImportError:
        log.warning("moto's server internals changed: presigned S3 requests are not checked")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    return server


def _secret_key() -> str:
    """The secret boto3 signs with here (the environment's, a profile's): the one to check against.
    Looked up for each request: tests set their fake credentials after the server started."""
    import boto3

    credentials = boto3.Session().get_credentials()
    return credentials.secret_key if credentials is not None else ""


class PresignedS3Rules:
    """WSGI middleware for moto's server: what S3 checks on a presigned request (``X-Amz-Signature``
    in the query) and moto does not. A PUT needs a ``Content-Length`` (411); the SigV4 signature
    must match the request as sent, over the headers it names — so a length or checksum header other
    than the signed one, or missing, is refused (403 ``SignatureDoesNotMatch``), as is an expired
    URL (403 ``AccessDenied``); and a body must hash to its ``x-amz-checksum-sha256`` (400
    ``BadDigest``). Anything else (requests signed in the ``Authorization`` header) passes as it is."""

    def __init__(self, app: Any, secret_key: Any, clock: Any = time.time) -> None:
        """``secret_key``: a function that gives the signer's secret access key."""
        self.app = app
        self.secret_key = secret_key
        self.clock = clock

    def __call__(self, environ: dict, start_response: Any) -> Any:
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if "X-Amz-Signature" not in params:
            return self.app(environ, start_response)
        length = environ.get("CONTENT_LENGTH") or ""
        if environ["REQUEST_METHOD"] == "PUT" and not length.isdigit():
            return _s3_error(start_response, 411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        body = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
        refusal = self.refusal(environ, params, body)
        if refusal is not None:
            return _s3_error(start_response, *refusal)
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)

    def refusal(self, environ: dict, params: dict[str, str], body: bytes) -> tuple[int, str, str] | None:
        try:
            signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            expires_s = int(params["X-Amz-Expires"])
            scope = params["X-Amz-Credential"].split("/", 1)[1]
            date, region, service, _ = scope.split("/")
            names = params["X-Amz-SignedHeaders"].split(";")
        except (KeyError, ValueError, IndexError):
            return 400, "AuthorizationQueryParametersError", "The query parameters of a presigned URL are missing or malformed."
        if self.clock() > signed_at.timestamp() + expires_s:
            return 403, "AccessDenied", "Request has expired"
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", "/"))
        query = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in params.items() if k != "X-Amz-Signature")
        headers = "".join(f"{name}:{' '.join(_environ_header(environ, name).split())}\n" for name in names)
        canonical = "\n".join([environ["REQUEST_METHOD"], raw_uri.split("?", 1)[0], "&".join(f"{k}={v}" for k, v in query),
                               headers, ";".join(names), "UNSIGNED-PAYLOAD"])  # fmt: skip
        to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self.secret_key()).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), params["X-Amz-Signature"]):
            return 403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."
        checksum = environ.get("HTTP_X_AMZ_CHECKSUM_SHA256")
        if checksum is not None and checksum != base64.b64encode(hashlib.sha256(body).digest()).decode():
            return 400, "BadDigest", "The SHA256 you specified did not match the calculated checksum."
        return None


def _environ_header(environ: dict, name: str) -> str:
    if name in ("content-length", "content-type"):
        return environ.get(name.upper().replace("-", "_"), "")
    return environ.get("HTTP_" + name.upper().replace("-", "_"), "")


def _s3_error(start_response: Any, status: int, code: str, message: str) -> list[bytes]:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'.encode()
    reasons = {400: "Bad Request", 403: "Forbidden", 411: "Length Required"}
    start_response(f"{status} {reasons[status]}", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [body]


def speed_up_moto_transactions() -> bool:
    """Make moto's TransactWriteItems cost O(items) instead of O(table).

    moto backs up every table a transaction touches with a deep copy, so each message's
    transaction gets slower as the messages table grows (about 50 ms at 300 messages, 200 ms at
    1,200). In the emulator's own moto, back up only the items the transaction names and restore
    those when it fails: the same all-or-nothing outcome. Returns False (and changes nothing) when
    moto's internals are not the ones this was written for.
    """
    import copy as copy_module

    try:
        from moto.dynamodb import models
        from moto.dynamodb.models.dynamo_type import DynamoType
        from moto.dynamodb.models.table import Table
    except ImportError:
        return False
    backend = getattr(models, "DynamoDBBackend", None)
    original = getattr(backend, "transact_write_items", None)
    if original is None or getattr(models, "copy", None) is not copy_module:
        return getattr(original, "_item_backups", False)

    class _CopyWithoutTables:
        """``copy`` for moto's module: tables are not copied (items are, below)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(copy_module, name)

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else copy_module.deepcopy(value, memo)

    lock = threading.Lock()  # moto's transactions are not thread-safe; the server's threads are real

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            return _transact(self, transact_items)

    def _transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups = []
        for entry in transact_items:
            op = next(iter(entry.values()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            attrs = op.get("Key") or op.get("Item") or {}
            try:
                hash_key = DynamoType(attrs[table.hash_key_attr])
                range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
            except KeyError:
                continue  # moto rejects the transaction before it writes anything
            current = table.items.get(hash_key, {}).get(range_key) if range_key is not None else table.items.get(hash_key)
            backups.append((table, hash_key, range_key, copy_module.deepcopy(current)))
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, old in reversed(backups):
                container = table.items[hash_key] if range_key is not None else table.items
                key = range_key if range_key is not None else hash_key
                if old is None:
                    container.pop(key, None)
                else:
                    container[key] = old
            raise

    transact_write_items._item_backups = True  # type: ignore[attr-defined]
    models.copy = _CopyWithoutTables()
    backend.transact_write_items = transact_write_items
    return True
