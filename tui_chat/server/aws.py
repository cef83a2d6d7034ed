"""The cloud runtime: AWS Lambda entry points behind an API Gateway WebSocket API.

API Gateway turns each WebSocket event into one Lambda invocation; these handlers turn the
invocation into a :class:`~tui_chat.server.core.ChatCore` call, exactly as the self-hosted
server does for a live socket:

===========================  ==================================  =================================
route                        entry point                         core call
===========================  ==================================  =================================
``$connect`` (authorizer)    :func:`authorizer_handler`          verify the Cognito ID token
``$connect``                 :func:`connect_handler`             ``ChatCore.connect``
``$disconnect``              :func:`disconnect_handler`          ``ChatCore.disconnect``
every action and ``$default`` :func:`message_handler`            ``ChatCore.handle_frame``
===========================  ==================================  =================================

The route selection expression is ``$request.body.action``; a frame that is not JSON or names
an unknown action reaches ``$default`` and gets the protocol's ``error`` from the core.

Pushing to clients goes through :class:`AwsGateway`, a :class:`~tui_chat.server.core.Gateway`
over the ``apigatewaymanagementapi`` (``post_to_connection``): a ``GoneException`` (410) makes
``send`` return False, and the core then removes *that* stale connection — never the sender's.

The authorizer (REQUEST type, identity source ``route.request.querystring.token``) checks a
Cognito ID token with :class:`CognitoVerifier` (RS256 against the pool's JWKS, cached; ``iss``,
``aud`` = the app client id, ``token_use`` = ``id``, ``exp``; optionally a required group) and
passes ``username`` and ``device`` to the other routes in its context. API Gateway answers a
missing token and an ``Unauthorized`` error with 401 and a ``Deny`` policy with 403; a malformed
``device`` is answered 400 by ``$connect`` (an authorizer cannot say 400), so the statuses are
PROTOCOL.md's — except that API Gateway checks the token before ``$connect`` sees the device.

Configuration comes from the environment (the template sets it):

- ``TUI_CHAT_TABLE_PREFIX`` (default ``tui-chat-``), ``TUI_CHAT_DYNAMODB_ENDPOINT`` (tests, emulator),
  ``TUI_CHAT_RETENTION_DAYS`` (default 365; 0 keeps messages forever);
- ``TUI_CHAT_AUTH``: ``cognito`` (default); the local emulator also uses ``accounts`` and ``open``
  with ``TUI_CHAT_TOKEN_SECRET``;
- ``TUI_CHAT_COGNITO_REGION`` (default ``AWS_REGION``), ``TUI_CHAT_COGNITO_USER_POOL_ID``,
  ``TUI_CHAT_COGNITO_CLIENT_ID``, ``TUI_CHAT_COGNITO_GROUP`` (optional), ``TUI_CHAT_COGNITO_JWKS_URL``
  (optional; default the pool's ``/.well-known/jwks.json``);
- ``TUI_CHAT_MANAGEMENT_ENDPOINT`` (optional; default ``https://{domainName}/{stage}`` of the event);
- ``TUI_CHAT_FILES_BUCKET``: the attachments bucket (PROTOCOL.md 7.7, :class:`~tui_chat.server.s3_files.S3FileLinks`);
  unset, ``requestUpload`` is answered "this server does not take attachments". ``TUI_CHAT_S3_ENDPOINT``
  (tests, emulator) points S3 elsewhere;
- ``LOG_LEVEL`` (default ``INFO``). Logs are one JSON object a line, with ``route``, ``conn``,
  ``user`` and ``requestId`` fields that CloudWatch Logs Insights queries directly.

In Lambda, when AWS Lambda Powertools is installed (the build bundles it), the ``tui_chat`` loggers
write through its ``Logger`` (each line also carries ``xray_trace_id``: log and trace correlate),
each invocation is an X-Ray subsegment annotated with its route (``Tracer``, which also traces the
boto3 calls), and three metrics go out as CloudWatch embedded metric format (``Metrics``, namespace
``POWERTOOLS_METRICS_NAMESPACE``): ``Sends`` (messages in ``sendMessage``/``sendMessages`` frames),
``FanOutSize`` (frames posted to connections other than the caller's, per invocation) and
``GoneConnections`` (posts answered 410). Without the package (the self-hosted server, the emulator,
tests) logs are :class:`~tui_chat.server.logs.JsonFormatter` lines and there are no metrics or traces.
Neither ever carries a token, a password or a message body.

boto3 and Powertools are imported only when first needed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from tui_chat import protocol as p
from tui_chat.server.auth.admission import check_devices, check_session
from tui_chat.server.auth.cognito import CognitoVerifier
from tui_chat.server.auth.identity import AuthError
from tui_chat.server.auth.wiring import sign_in_services
from tui_chat.server.core import Caller, ChatCore, Gateway, now_ms
from tui_chat.server.files import FileLinks
from tui_chat.server.settings import Settings
from tui_chat.server.store import Store, StoreUnavailable

log = logging.getLogger("tui_chat.aws")

CLOSE_CODE_HEADER = "X-Tui-Chat-Close-Code"
"""Sent with ``DeleteConnection``. API Gateway ignores it and closes with a code of its own; the
local emulator honours it, as the self-hosted server would close (4000 for ``replaced``)."""


# -- pushing to connections ---------------------------------------------------------------------


_close_codes = threading.local()


def _add_close_code_header(request: Any, **_: Any) -> None:
    code = getattr(_close_codes, "code", None)
    if code is not None:
        request.headers[CLOSE_CODE_HEADER] = str(code)


class AwsGateway(Gateway):
    """``@connections`` over boto3's ``apigatewaymanagementapi``, for one API stage."""

    concurrent_sends = 32
    """Posts of one fan-out in flight at once (within boto3's pool of 64 connections)."""

    def __init__(self, endpoint_url: str, *, region: str | None = None, client: Any = None) -> None:
        self.endpoint_url = endpoint_url
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "apigatewaymanagementapi", endpoint_url=endpoint_url, region_name=region,
                config=Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=64,
                              connect_timeout=3, read_timeout=10),
            )  # fmt: skip
        self.client = client
        client.meta.events.register("before-sign.apigatewaymanagementapi.DeleteConnection", _add_close_code_header)

    async def send(self, conn_id: str, text: str) -> bool:
        delivered = await asyncio.to_thread(self._post, conn_id, text)
        tally = _tally.get()
        if tally is not None:
            tally.count(conn_id, delivered)
        return delivered

    def _post(self, conn_id: str, text: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.post_to_connection(ConnectionId=conn_id, Data=text.encode("utf-8"))
        except ClientError as exc:
            if _is_gone(exc):
                log.info("connection gone", extra={"conn": conn_id})
                return False
            # Throttled, or the client's buffer is full: the frame is lost but the connection is
            # not known to be dead; the client catches up after its next reconnect.
            log.warning("post_to_connection failed", extra={"conn": conn_id, "error": _error_code(exc)})
        except BotoCoreError as exc:
            log.warning("post_to_connection failed", extra={"conn": conn_id, "error": repr(exc)})
        return True

    async def close(self, conn_id: str, code: int, reason: str = "") -> None:
        await asyncio.to_thread(self._delete, conn_id, code)

    def _delete(self, conn_id: str, code: int) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        _close_codes.code = code
        try:
            self.client.delete_connection(ConnectionId=conn_id)
        except ClientError as exc:
            if not _is_gone(exc):
                log.warning("delete_connection failed", extra={"conn": conn_id, "error": _error_code(exc)})
        except BotoCoreError as exc:
            log.warning("delete_connection failed", extra={"conn": conn_id, "error": repr(exc)})
        finally:
            _close_codes.code = None


class _ConnectingGateway(Gateway):
    """During ``$connect`` the new connection does not exist yet for ``@connections`` (a post to
    it would be 410 and make the core delete the connection it is opening): frames for it are
    dropped — the client asks for what it needs once connected."""

    def __init__(self, inner: Gateway, connecting: str) -> None:
        self.inner = inner
        self.connecting = connecting

    async def send(self, conn_id: str, text: str) -> bool:
        if conn_id == self.connecting:
            return True
        return await self.inner.send(conn_id, text)

    async def close(self, conn_id: str, code: int, reason: str = "") -> None:
        if conn_id != self.connecting:
            await self.inner.close(conn_id, code, reason)


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "") or type(exc).__name__


def _is_gone(exc: Exception) -> bool:
    response = getattr(exc, "response", {})
    return _error_code(exc) == "GoneException" or response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 410


# -- the application a warm Lambda container keeps -----------------------------------------------


class Unauthorized(Exception):
    """Raised by the authorizer: API Gateway answers the handshake with 401."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")  # the exact message API Gateway looks for


class LambdaApp:
    """What a warm Lambda container keeps between invocations: the store, the token verifier and
    one :class:`AwsGateway` per API endpoint. Its coroutines are the four routes."""

    def __init__(
        self,
        store: Store,
        *,
        verifier: Any,
        accounts: Any = None,
        management_endpoint: str | None = None,
        region: str | None = None,
        clock: Callable[[], int] = now_ms,
        gateway_factory: Callable[[str], Gateway] | None = None,
        files: FileLinks | None = None,
        max_file_bytes: int = p.MAX_FILE_BYTES,
    ) -> None:
        """``verifier`` has ``mode`` and ``verify_token(token) -> Identity`` (a :class:`CognitoVerifier`,
        or the self-hosted :class:`~tui_chat.server.auth.accounts.AccountService` in the emulator, which
        then also passes it as ``accounts`` for open mode's nickname check). ``files``: where
        attachments' bytes go (S3); None: no attachments."""
        self.store = store
        self.files = files
        self.max_file_bytes = max_file_bytes
        self.verifier = verifier
        self.accounts = accounts
        self.mode = verifier.mode
        self.management_endpoint = management_endpoint
        self.region = region
        self.clock = clock
        self._gateway_factory = gateway_factory or (lambda url: AwsGateway(url, region=region))
        self._gateways: dict[str, Gateway] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, files_bucket: str | None = None, s3_endpoint: str | None = None) -> "LambdaApp":
        from tui_chat.server.stores.dynamodb import DynamoDBStore

        store = DynamoDBStore(
            prefix=settings.table_prefix, endpoint_url=settings.dynamodb_endpoint, region=settings.region,
            retention_days=settings.retention_days,
        )  # fmt: skip
        secret = settings.token_secret.encode() if settings.token_secret and settings.auth != "cognito" else None
        accounts, verifier = sign_in_services(settings, store, secret, now_ms)
        files = None
        if files_bucket:
            from tui_chat.server.s3_files import S3FileLinks

            files = S3FileLinks(files_bucket, region=settings.region, endpoint_url=s3_endpoint)
        return cls(store, verifier=verifier, accounts=accounts, files=files,
                   management_endpoint=settings.management_endpoint, region=settings.region)  # fmt: skip

    def gateway_for(self, event: dict) -> Gateway:
        ctx = event.get("requestContext") or {}
        url = self.management_endpoint or f"https://{ctx.get('domainName')}/{ctx.get('stage')}"
        with self._lock:
            gateway = self._gateways.get(url)
            if gateway is None:
                gateway = self._gateways[url] = self._gateway_factory(url)
        return gateway

    def core_for(self, event: dict, *, connecting: str | None = None) -> ChatCore:
        gateway = self.gateway_for(event)
        if connecting is not None:
            gateway = _ConnectingGateway(gateway, connecting)
        return ChatCore(self.store, gateway, clock=self.clock, files=self.files, max_file_bytes=self.max_file_bytes)

    # -- routes ---------------------------------------------------------------------------------

    async def authorize(self, event: dict) -> dict:
        """The ``$connect`` authorizer: an IAM policy with the caller in its context, or ``Unauthorized``."""
        query = event.get("queryStringParameters") or {}
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        token = p.bearer_token(headers.get("authorization")) or query.get("token")  # the header wins
        if not isinstance(token, str) or not token:
            raise Unauthorized()
        try:
            if isinstance(self.verifier, CognitoVerifier):
                identity = await asyncio.to_thread(self.verifier.verify_token, token)
            else:
                identity = self.verifier.verify_token(token)
        except AuthError as exc:
            log.info("connection refused", extra={"status": exc.status, "reason": exc.message})
            if exc.status == 403:
                return _policy("Deny", exc.message or "forbidden", event)
            if exc.status == 401:
                raise Unauthorized() from None
            raise  # 503: API Gateway answers 500
        device = query.get("device")
        device = device if p.is_valid_device_id(device) else ""  # $connect answers 400 for it
        if identity.device is not None and device and identity.device != device:
            raise Unauthorized()  # an open-mode token is bound to its device
        try:
            await check_session(self.store, identity, self.clock())
        except AuthError:
            raise Unauthorized() from None  # signed out, or ended as a replay
        if self.mode != "cognito" and await self.store.get_user(identity.username) is None:
            return _policy("Deny", identity.username, event)  # the account was deleted
        return _policy("Allow", identity.username, event, {"username": identity.username, "device": device})

    async def connect(self, event: dict) -> dict:
        ctx = event["requestContext"]
        conn_id = ctx["connectionId"]
        auth = ctx.get("authorizer") or {}
        query = event.get("queryStringParameters") or {}
        device = query.get("device")
        if not p.is_valid_device_id(device):
            return _response(400, "'device' must be 8-64 characters of A-Z, a-z, 0-9, '_', '-'")
        attempt = query.get("attempt")
        if attempt is not None and not p.is_valid_attempt_id(attempt):
            return _response(400, "'attempt' must be 8-64 characters of A-Z, a-z, 0-9, '_', '-'")
        username = auth.get("username")
        if not p.is_valid_username(username) or auth.get("device") != device:
            return _response(401, "not authorized")  # reached without the authorizer: never trust it
        if self.mode == "cognito":
            await self.store.ensure_user(username, self.clock())  # the first sign-in creates the user
        try:
            await check_devices(self.store, username, device, open_mode=self.mode == "open")
        except AuthError as exc:
            return _response(exc.status, exc.message)
        await self.core_for(event, connecting=conn_id).connect(conn_id, username, device, attempt)
        return _response(200, "connected")

    async def disconnect(self, event: dict) -> dict:
        await self.core_for(event).disconnect(event["requestContext"]["connectionId"])
        return _response(200, "disconnected")

    async def message(self, event: dict) -> dict:
        ctx = event["requestContext"]
        conn_id = ctx["connectionId"]
        auth = ctx.get("authorizer") or {}
        core = self.core_for(event)
        if p.is_valid_username(auth.get("username")) and p.is_valid_device_id(auth.get("device")):
            caller = Caller(conn_id, auth["username"], auth["device"])
        else:  # no authorizer context: look the connection up
            record = await self.store.get_connection(conn_id)
            if record is None:
                await core.gateway.close(conn_id, p.CLOSE_POLICY, "unknown connection")
                return _response(403, "unknown connection")
            caller = Caller(conn_id, record.username, record.device)
        body = event.get("body") or ""
        raw: str | bytes = base64.b64decode(body) if event.get("isBase64Encoded") else body
        await core.handle_frame(caller, raw)
        return _response(200, "ok")


def _policy(effect: str, principal: str, event: dict, context: dict | None = None) -> dict:
    policy: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": event.get("methodArn", "*")}],
        },
    }
    if context:
        policy["context"] = context
    return policy


def _response(status: int, body: str) -> dict:
    return {"statusCode": status, "body": body}


# -- metrics and traces (AWS Lambda Powertools, optional) ----------------------------------------


class _Tally:
    """What one invocation posted, counted by :meth:`AwsGateway.send` (the core's fan-outs pass
    through it): frames to connections other than the caller's, and posts answered 410."""

    __slots__ = ("caller", "fan_out", "gone")

    def __init__(self, caller: str | None) -> None:
        self.caller = caller
        self.fan_out = 0
        self.gone = 0

    def count(self, conn_id: str, delivered: bool) -> None:
        if conn_id != self.caller:
            self.fan_out += 1
        if not delivered:
            self.gone += 1


_tally: contextvars.ContextVar[_Tally | None] = contextvars.ContextVar("tui_chat_aws_tally", default=None)


class _Powertools:
    """Powertools' Logger, Metrics and Tracer, made once per container (see the module docstring)."""

    def __init__(self) -> None:
        from aws_lambda_powertools import Logger, Metrics
        from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

        service = os.environ.get("POWERTOOLS_SERVICE_NAME") or "tui-chat"
        self.logger = Logger(service=service)
        # The tui_chat loggers (children of "tui_chat") write through it; nothing else changes.
        copy_config_to_registered_loggers(source_logger=self.logger, include={"tui_chat"})
        self.metrics = Metrics(service=service, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "tui-chat")
        self.tracer: Any = None
        try:
            from aws_lambda_powertools import Tracer

            self.tracer = Tracer(service=service)  # patches botocore: DynamoDB and @connections calls are traced
        except ImportError:  # the X-Ray SDK (the "tracer" extra) is missing: logs and metrics only
            log.warning("aws-xray-sdk is not installed: no traces")

    def segment(self, name: str, route: str) -> Any:
        if self.tracer is None or self.tracer.disabled:
            return contextlib.nullcontext()
        return self._segment(name, route)

    @contextlib.contextmanager
    def _segment(self, name: str, route: str):
        with self.tracer.provider.in_subsegment(f"## {name}") as subsegment:
            subsegment.put_annotation("route", route)  # an annotation: traces can be searched by it
            yield

    def emit(self, sends: int, tally: _Tally) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        values = {"Sends": sends, "FanOutSize": tally.fan_out, "GoneConnections": tally.gone}
        if not any(values.values()):
            return
        try:
            for metric, value in values.items():
                if value:
                    self.metrics.add_metric(name=metric, unit=MetricUnit.Count, value=value)
            self.metrics.flush_metrics()  # one EMF line on stdout; CloudWatch Logs extracts the metrics
        except Exception:  # a metric is never worth a failed frame
            log.warning("metrics not emitted", exc_info=True)


def _sends(route: str, event: dict) -> int:
    """The messages a frame submits (counted whether stored, refused or a retry)."""
    if route == "sendMessage":
        return 1
    if route != "sendMessages":
        return 0
    try:
        body = event.get("body") or ""
        items = json.loads(base64.b64decode(body) if event.get("isBase64Encoded") else body).get("messages")
    except (ValueError, TypeError, AttributeError):
        return 0
    return len(items) if isinstance(items, list) else 0


# -- Lambda entry points --------------------------------------------------------------------------

_app: LambdaApp | None = None
_app_lock = threading.Lock()
_loops = threading.local()
_logging_ready = False
_powertools: _Powertools | None = None


def configure(app: LambdaApp | None) -> None:
    """Install the application the handlers use (the emulator and tests); ``None`` rebuilds from env."""
    global _app
    _app = app


def get_app() -> LambdaApp:
    global _app
    with _app_lock:
        if _app is None:
            _app = LambdaApp.from_settings(Settings.from_env(), files_bucket=os.environ.get("TUI_CHAT_FILES_BUCKET") or None,
                                           s3_endpoint=os.environ.get("TUI_CHAT_S3_ENDPOINT") or None)  # fmt: skip
        return _app


def _setup_logging() -> None:
    """In Lambda, JSON lines through Powertools when it is installed, else through the runtime's
    handler with our formatter (once per container)."""
    global _logging_ready, _powertools
    if _logging_ready or not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return
    root = logging.getLogger()
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    try:
        _powertools = _Powertools()
    except ImportError:
        from tui_chat.server.logs import JsonFormatter

        if not root.handlers:
            root.addHandler(logging.StreamHandler())
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    _logging_ready = True


def _run(coro: Any) -> Any:
    """Run a coroutine on this thread's event loop, kept between invocations like the container."""
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coro)


def _invoke(name: str, event: dict, context: Any) -> dict:
    _setup_logging()
    ctx = event.get("requestContext") or {}
    fields = {
        "route": ctx.get("routeKey") or name, "conn": ctx.get("connectionId"),
        "user": (ctx.get("authorizer") or {}).get("username"),
        "requestId": getattr(context, "aws_request_id", None) or ctx.get("requestId"),
    }  # fmt: skip
    started = time.perf_counter()
    app = get_app()
    tally = _Tally(fields["conn"])
    reset = _tally.set(tally)
    try:
        with _powertools.segment(name, fields["route"]) if _powertools else contextlib.nullcontext():
            result = _run(getattr(app, name)(event))
    except Unauthorized:
        log.info("invocation", extra={**fields, "status": 401, "ms": _ms(started)})
        raise
    except StoreUnavailable:
        log.error("store unavailable", extra={**fields, "ms": _ms(started)})
        if name == "authorize":
            raise
        return _response(503, "the store is unavailable")
    except Exception:
        log.exception("invocation failed", extra={**fields, "ms": _ms(started)})
        if name == "authorize":
            raise
        return _response(500, "internal error")
    finally:
        _tally.reset(reset)
        if _powertools is not None:
            _powertools.emit(_sends(fields["route"], event), tally)
    status = result.get("statusCode") if name != "authorize" else (
        200 if result["policyDocument"]["Statement"][0]["Effect"] == "Allow" else 403
    )  # fmt: skip
    log.info("invocation", extra={**fields, "status": status, "ms": _ms(started)})
    return result


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def authorizer_handler(event: dict, context: Any = None) -> dict:
    """``$connect`` REQUEST authorizer (identity source ``route.request.querystring.token``)."""
    return _invoke("authorize", event, context)


def connect_handler(event: dict, context: Any = None) -> dict:
    """``$connect``: register the connection (401/400/409 refuse the handshake)."""
    return _invoke("connect", event, context)


def disconnect_handler(event: dict, context: Any = None) -> dict:
    """``$disconnect``: forget the connection, announce the user offline on their last one."""
    return _invoke("disconnect", event, context)


def message_handler(event: dict, context: Any = None) -> dict:
    """Every action route and ``$default``: one frame through the core."""
    return _invoke("message", event, context)


ROUTE_HANDLERS: dict[str, str] = {
    "$connect": "connect_handler",
    "$disconnect": "disconnect_handler",
    "$default": "message_handler",
    **{action: "message_handler" for action in p.ACTIONS},
}  # fmt: skip
"""Which entry point serves each route of the template (and of the emulator)."""


def new_connection_id() -> str:
    """An id shaped like API Gateway's (base64-ish, 16 characters, ending in '=')."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes[:11]).decode()[:15] + "="
