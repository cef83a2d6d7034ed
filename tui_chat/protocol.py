"""The tui-chat wire protocol, version 2 (``shared/PROTOCOL.md``) as typed structures.

Client and both servers import this module and nothing else of the project imports into it.
Parsing never raises anything but :class:`ProtocolError`, whose ``code`` is the protocol's
error code, so a server can answer any frame, however broken, with a precise ``error``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Union

PROTOCOL_VERSION = 2

# --- Limits (API Gateway's own, so the self-hosted server behaves like the cloud) -------------
MAX_ACTION_BYTES = 32 * 1024
"""A client frame above this gets ``error`` ``too_large`` and is not acted on."""
MAX_FRAME_BYTES = 128 * 1024
"""A frame above this closes the connection with 1009; no server frame is ever larger."""
MAX_BODY_CHARS = 4000
MAX_BODY_BYTES = 16 * 1024
MAX_STATUS_TEXT_CHARS = 80
MAX_RID_CHARS = 64
MAX_CURSOR_CHARS = 256
DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 200
MAX_SEQ = 2**53 - 1
"""Sequence numbers stay exact in JavaScript and DynamoDB numbers."""
MAX_BATCH_MESSAGES = 50
"""``sendMessages`` carries 1 to 50 messages (section 7.3)."""
BATCH_MESSAGES_PER_ACTION = 10
"""For the rate limit a batch counts as one action per 10 messages, rounded up."""

RATE_LIMIT_PER_SECOND = 100
RATE_LIMIT_BURST = 500
PING_INTERVAL_S = 20.0
"""WebSocket ping interval; with the timeout below a dead link is found within ~30 s."""
PING_TIMEOUT_S = 10.0
APP_PING_INTERVAL_S = 240.0
"""The ``ping`` action keeps an idle link inside API Gateway's 10-minute idle timeout."""

# --- Close codes -------------------------------------------------------------------------------
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_REPLACED = 4000
NO_RECONNECT_CLOSE_CODES = frozenset({CLOSE_POLICY, CLOSE_REPLACED})

# --- Error codes -------------------------------------------------------------------------------
BAD_REQUEST = "bad_request"
UNKNOWN_ACTION = "unknown_action"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
UNKNOWN_USER = "unknown_user"
FORBIDDEN = "forbidden"
INTERNAL = "internal"
CONFLICT = "conflict"
ERROR_CODES = frozenset(
    {BAD_REQUEST, UNKNOWN_ACTION, TOO_LARGE, RATE_LIMITED, UNKNOWN_USER, FORBIDDEN, INTERNAL, CONFLICT}
)
PERMANENT_SEND_ERRORS = frozenset({BAD_REQUEST, UNKNOWN_USER, TOO_LARGE, FORBIDDEN})
"""Errors after which resending the same ``sendMessage`` can never succeed."""

Status = Literal["online", "away", "busy"]
Presence = Literal["online", "away", "busy", "offline"]
SETTABLE_STATUSES = ("online", "away", "busy")
PRESENCE_STATUSES = ("online", "away", "busy", "offline")

USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{1,31}")
TOKEN_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
"""Message ids and device ids share one shape."""


class ProtocolError(Exception):
    """A frame that cannot be acted on; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(
        self, code: str, message: str, *, rid: str | None = None, id: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.rid = rid
        self.id = id

    def to_event(self) -> "Error":
        return Error(code=self.code, message=self.message, id=self.id, rid=self.rid)


# --- Names -------------------------------------------------------------------------------------


def normalize_username(value: object) -> str:
    """Return the stored (lowercase) form of a username or raise ``ValueError``."""
    if not isinstance(value, str):
        raise ValueError("a username must be a string")
    name = value.lower()
    if not USERNAME_RE.fullmatch(name):
        raise ValueError(
            "a username is 2-32 characters of a-z, 0-9, '_', '.', '-' and starts with a letter or digit"
        )
    return name


def is_valid_username(value: object) -> bool:
    try:
        normalize_username(value)
    except ValueError:
        return False
    return True


ROOM_PREFIX = "#"
MAX_ROOM_MEMBERS = 256
MAX_ROOM_TITLE_CHARS = 80
MAX_FILE_BYTES = 25 * 1024 * 1024
"""Section 7.7: an attachment's size limit by default (``serve --max-file-size``)."""
FILE_URL_TTL_S = 900
"""Section 7.7: how long an upload or download URL works by default (``serve --file-url-ttl``)."""
MAX_FILE_NAME_CHARS = 255
MAX_FILE_TYPE_CHARS = 255
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
MAX_ROOMS_PER_USER = 500
"""Not in PROTOCOL.md: rooms outlive retention, so what one (possibly brand-new) account can
make the server keep is bounded here. Over it: ``too_large``."""


def is_room(address: str) -> bool:
    """Whether a (normalised) conversation address names a room (``#name``, section 7.2)."""
    return address.startswith(ROOM_PREFIX)


def normalize_room(value: object) -> str:
    """The stored form of a room address (``#`` + a lowercased username form) or ``ValueError``."""
    if not isinstance(value, str) or not value.startswith(ROOM_PREFIX):
        raise ValueError("a room is '#' followed by 2-32 characters of a-z, 0-9, '_', '.', '-'")
    try:
        return ROOM_PREFIX + normalize_username(value[1:])
    except ValueError:
        raise ValueError("a room is '#' followed by 2-32 characters of a-z, 0-9, '_', '.', '-'") from None


def is_valid_message_id(value: object) -> bool:
    return isinstance(value, str) and TOKEN_ID_RE.fullmatch(value) is not None


is_valid_device_id = is_valid_message_id
is_valid_attempt_id = is_valid_message_id


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (section 7.6), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
"""A handshake's ``attempt`` (section 7.8): the same form as a device id."""


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Category Cc is exactly U+0000-001F and U+007F-009F; a body may keep \t, \n and \r.
_BODY_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _has_lone_surrogate(text: str) -> bool:
    return _LONE_SURROGATE.search(text) is not None


def body_problem(body: object) -> str | None:
    """Why ``body`` may not be sent, or ``None`` when it may. Clients check before queueing."""
    if not isinstance(body, str):
        return "body must be a string"
    if not body.strip():
        return "body must not be empty"
    if len(body) > MAX_BODY_CHARS:
        return f"body is longer than {MAX_BODY_CHARS} characters"
    bad = _BODY_FORBIDDEN.search(body)
    if bad is not None:
        if 0xD800 <= ord(bad.group()) <= 0xDFFF:
            return "body contains a lone surrogate"
        return f"body contains the control character U+{ord(bad.group()):04X}"
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        return f"body is larger than {MAX_BODY_BYTES // 1024} KiB in UTF-8"
    return None


def status_text_problem(text: object) -> str | None:
    if not isinstance(text, str):
        return "text must be a string"
    if len(text) > MAX_STATUS_TEXT_CHARS:
        return f"text is longer than {MAX_STATUS_TEXT_CHARS} characters"
    if _has_lone_surrogate(text):
        return "text contains a lone surrogate"
    if _CONTROL.search(text):
        return "text contains a control character"
    return None


def room_title_problem(title: object) -> str | None:
    """Why ``title`` may not be a room's title (section 7.2), or ``None`` when it may."""
    if not isinstance(title, str):
        return "a title must be text"
    if len(title) > MAX_ROOM_TITLE_CHARS:
        return f"a title has at most {MAX_ROOM_TITLE_CHARS} characters"
    if _has_lone_surrogate(title) or _CONTROL.search(title):
        return "a title cannot contain control characters"
    return None


def file_name_problem(name: object) -> str | None:
    """Why ``name`` may not name an attachment (section 7.7), or ``None``: recipients see it, and
    a client saves under it, so no path separators, no control characters, not ``.`` or ``..``."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_FILE_NAME_CHARS:
        return f"a file name is 1 to {MAX_FILE_NAME_CHARS} characters"
    if "/" in name or "\\" in name:
        return "a file name cannot contain '/' or '\\'"
    if name in (".", ".."):
        return "a file name cannot be '.' or '..'"
    if _has_lone_surrogate(name) or _BODY_FORBIDDEN.search(name) or any(c in name for c in "\n\r\t"):
        return "a file name cannot contain control characters"
    return None


def file_type_problem(kind: object) -> str | None:
    if not isinstance(kind, str) or len(kind) > MAX_FILE_TYPE_CHARS or _has_lone_surrogate(kind) or _CONTROL.search(kind):
        return f"a file type is a string of at most {MAX_FILE_TYPE_CHARS} characters, without control characters"
    return None


def is_valid_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


def is_valid_file_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


# --- Encoding ----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.dumps/json.loads with options would build a new coder on every frame.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def encode(frame: dict[str, Any]) -> str:
    """One frame as compact JSON with raw UTF-8 (PROTOCOL.md section 1)."""
    return _ENCODER.encode(frame)


def frame_size(text: str | bytes) -> int:
    return len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))


def decode_object(raw: str | bytes) -> dict[str, Any]:
    """Decode one JSON object or raise ``ProtocolError(bad_request)``."""
    try:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        value = _DECODER.decode(raw)
    except UnicodeDecodeError:
        raise ProtocolError(BAD_REQUEST, "frame is not valid UTF-8") from None
    except RecursionError:
        raise ProtocolError(BAD_REQUEST, "frame is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, int digit limits
        raise ProtocolError(BAD_REQUEST, f"frame is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(BAD_REQUEST, "frame must be a JSON object")
    return value


# --- Client -> server actions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attachment:
    """The one file a message may carry (section 7.7): what recipients see of it."""

    file_id: str
    name: str
    size: int
    type: str

    def to_wire(self) -> dict[str, Any]:
        return {"fileId": self.file_id, "name": self.name, "size": self.size, "type": self.type}

    @classmethod
    def from_wire(cls, obj: Any) -> "Attachment":
        if not isinstance(obj, dict):
            raise ValueError("an attachment must be an object")
        file_id, name, size, kind = obj.get("fileId"), obj.get("name"), obj.get("size"), obj.get("type")
        if not is_valid_message_id(file_id):
            raise ValueError("'fileId' must be 8-64 characters of A-Z, a-z, 0-9, '_', '-'")
        problem = file_name_problem(name) or file_type_problem(kind)
        if problem:
            raise ValueError(problem)
        if not is_valid_file_size(size):
            raise ValueError("'size' must be a non-negative integer")
        return cls(file_id, name, size, kind)


@dataclass(frozen=True, slots=True)
class SendMessage:
    id: str
    to: str
    body: str
    rid: str | None = None
    attachment: Attachment | None = None
    action: Literal["sendMessage"] = "sendMessage"


@dataclass(frozen=True, slots=True)
class RequestUpload:
    """Ask where to put a file's bytes (section 7.7); answered by ``upload``."""

    name: str
    size: int
    type: str
    sha256: str
    rid: str | None = None
    action: Literal["requestUpload"] = "requestUpload"


@dataclass(frozen=True, slots=True)
class RequestDownload:
    file_id: str
    rid: str | None = None
    action: Literal["requestDownload"] = "requestDownload"


@dataclass(frozen=True, slots=True)
class GetMessages:
    with_: str
    before: int | None = None
    after: int | None = None
    limit: int = DEFAULT_PAGE_LIMIT
    rid: str | None = None
    action: Literal["getMessages"] = "getMessages"


@dataclass(frozen=True, slots=True)
class GetConversations:
    cursor: str | None = None
    rid: str | None = None
    action: Literal["getConversations"] = "getConversations"


@dataclass(frozen=True, slots=True)
class GetClients:
    cursor: str | None = None
    rid: str | None = None
    action: Literal["getClients"] = "getClients"


@dataclass(frozen=True, slots=True)
class SetStatus:
    status: str
    text: str = ""
    rid: str | None = None
    action: Literal["setStatus"] = "setStatus"


@dataclass(frozen=True, slots=True)
class MarkRead:
    with_: str
    seq: int
    rid: str | None = None
    action: Literal["markRead"] = "markRead"


@dataclass(frozen=True, slots=True)
class Typing:
    to: str
    rid: str | None = None
    action: Literal["typing"] = "typing"


@dataclass(frozen=True, slots=True)
class Ping:
    rid: str | None = None
    action: Literal["ping"] = "ping"


# Rooms (section 7.2). ``room`` is always the normalised ``#name``.


@dataclass(frozen=True, slots=True)
class CreateRoom:
    room: str
    title: str = ""
    members: tuple[str, ...] = ()
    rid: str | None = None
    action: Literal["createRoom"] = "createRoom"


@dataclass(frozen=True, slots=True)
class GetRoom:
    room: str
    rid: str | None = None
    action: Literal["getRoom"] = "getRoom"


@dataclass(frozen=True, slots=True)
class Invite:
    room: str
    user: str
    rid: str | None = None
    action: Literal["invite"] = "invite"


@dataclass(frozen=True, slots=True)
class LeaveRoom:
    room: str
    rid: str | None = None
    action: Literal["leaveRoom"] = "leaveRoom"


@dataclass(frozen=True, slots=True)
class RemoveMember:
    room: str
    user: str
    rid: str | None = None
    action: Literal["removeMember"] = "removeMember"


@dataclass(frozen=True, slots=True)
class SetRoomTitle:
    room: str
    title: str
    rid: str | None = None
    action: Literal["setRoomTitle"] = "setRoomTitle"


@dataclass(frozen=True, slots=True)
class GetReads:
    with_: str
    rid: str | None = None
    action: Literal["getReads"] = "getReads"


RoomAction = Union[CreateRoom, GetRoom, Invite, LeaveRoom, RemoveMember, SetRoomTitle, GetReads]


@dataclass(frozen=True, slots=True)
class SendMessages:
    """A batch (section 7.3): each item a message to store, or the refusal it alone would get."""

    items: tuple[SendMessage | ProtocolError, ...]
    rid: str | None = None
    action: Literal["sendMessages"] = "sendMessages"


def batch_cost(count: int) -> int:
    """Rate-limit actions a batch of ``count`` messages costs."""
    return max(1, -(-count // BATCH_MESSAGES_PER_ACTION))


def frame_cost(raw: str | bytes) -> int:
    """What one frame costs against the rate limit, before it is handled: 1, or for a batch one
    per 10 messages (a quick look; a frame that does not parse costs 1 and is refused later)."""
    if (b'"sendMessages"' if isinstance(raw, bytes) else '"sendMessages"') not in raw:
        return 1
    try:
        messages = json.loads(raw).get("messages")
    except (ValueError, AttributeError, RecursionError):
        return 1
    return batch_cost(len(messages)) if isinstance(messages, list) else 1


Action = Union[
    SendMessage, SendMessages, GetMessages, GetConversations, GetClients, SetStatus, MarkRead, Typing, Ping,
    CreateRoom, GetRoom, Invite, LeaveRoom, RemoveMember, SetRoomTitle, GetReads, RequestUpload, RequestDownload,
]
ACTIONS = (
    "sendMessage",
    "sendMessages",
    "getMessages",
    "getConversations",
    "getClients",
    "setStatus",
    "markRead",
    "typing",
    "ping",
    "createRoom",
    "getRoom",
    "invite",
    "leaveRoom",
    "removeMember",
    "setRoomTitle",
    "getReads",
    "requestUpload",
    "requestDownload",
)


def action_to_wire(action: Action) -> dict[str, Any]:
    """The JSON object a client sends for ``action`` (``with_`` becomes ``with``, ``None`` omitted)."""
    if isinstance(action, SendMessages):
        messages = [_message_fields(m) for m in action.items if isinstance(m, SendMessage)]
        return {"action": "sendMessages", "messages": messages, **({"rid": action.rid} if action.rid else {})}
    frame: dict[str, Any] = {"action": action.action}
    for name in action.__dataclass_fields__:
        if name == "action":
            continue
        value = getattr(action, name)
        if value is None:
            continue
        if isinstance(value, Attachment):
            value = value.to_wire()
        frame[_WIRE_NAMES.get(name, name)] = list(value) if isinstance(value, tuple) else value
    return frame


_WIRE_NAMES = {"with_": "with", "file_id": "fileId"}


def _message_fields(message: SendMessage) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": message.id, "to": message.to, "body": message.body}
    if message.attachment is not None:
        fields["attachment"] = message.attachment.to_wire()
    return fields


class _Fields:
    """Typed access to one frame's fields; every failure names the field."""

    def __init__(self, frame: dict[str, Any], rid: str | None, msg_id: str | None = None) -> None:
        self.frame = frame
        self.rid = rid
        self.msg_id = msg_id

    def fail(self, message: str) -> ProtocolError:
        return ProtocolError(BAD_REQUEST, message, rid=self.rid, id=self.msg_id)

    def username(self, name: str) -> str:
        value = self.frame.get(name)
        if value is None:
            raise self.fail(f"'{name}' is required")
        if isinstance(value, str) and is_room(value):
            raise self.fail(f"'{name}' must be a user, not a room")
        try:
            return normalize_username(value)
        except ValueError as exc:
            raise self.fail(f"'{name}': {exc}") from None

    def room(self, name: str) -> str:
        value = self.frame.get(name)
        if value is None:
            raise self.fail(f"'{name}' is required")
        try:
            return normalize_room(value)
        except ValueError as exc:
            raise self.fail(f"'{name}': {exc}") from None

    def address(self, name: str) -> str:
        """A conversation: a user, or a room (``#name``)."""
        value = self.frame.get(name)
        return self.room(name) if isinstance(value, str) and is_room(value) else self.username(name)

    def title(self, *, required: bool) -> str:
        value = self.frame.get("title")
        if value is None and not required:
            return ""
        if room_title_problem(value) is not None:
            raise self.fail(f"'title' must be a string of at most {MAX_ROOM_TITLE_CHARS} characters, without control characters")
        return value

    def members(self) -> tuple[str, ...]:
        value = self.frame.get("members")
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > MAX_ROOM_MEMBERS - 1:
            raise self.fail(f"'members' must be a list of at most {MAX_ROOM_MEMBERS - 1} usernames")
        members: list[str] = []
        for item in value:
            try:
                members.append(normalize_username(item))
            except ValueError as exc:
                raise self.fail(f"'members': {exc}") from None
        return tuple(members)

    def seq(self, name: str, *, required: bool, minimum: int = 0) -> int | None:
        value = self.frame.get(name)
        if value is None:
            if required:
                raise self.fail(f"'{name}' is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_SEQ:
            raise self.fail(f"'{name}' must be an integer from {minimum} to {MAX_SEQ}")
        return value

    def attachment(self) -> "Attachment | None":
        value = self.frame.get("attachment")
        if value is None:
            return None
        try:
            return Attachment.from_wire(value)
        except ValueError as exc:
            raise self.fail(f"'attachment': {exc}") from None

    def file_name(self) -> str:
        problem = file_name_problem(self.frame.get("name"))
        if problem:
            raise self.fail(f"'name': {problem}")
        return self.frame["name"]

    def file_type(self) -> str:
        value = self.frame.get("type", "")
        problem = file_type_problem(value)
        if problem:
            raise self.fail(f"'type': {problem}")
        return value

    def file_size(self) -> int:
        value = self.frame.get("size")
        if not is_valid_file_size(value):
            raise self.fail("'size' must be a non-negative integer")
        return value

    def sha256(self) -> str:
        value = self.frame.get("sha256")
        if not is_valid_sha256(value):
            raise self.fail("'sha256' must be 64 hexadecimal digits")
        return value.lower()

    def file_id(self) -> str:
        value = self.frame.get("fileId")
        if not is_valid_message_id(value):
            raise self.fail("'fileId' must be 8-64 characters of A-Z, a-z, 0-9, '_', '-'")
        return value

    def optional_string(self, name: str, max_chars: int) -> str | None:
        value = self.frame.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > max_chars or _has_lone_surrogate(value):
            raise self.fail(f"'{name}' must be a string of at most {max_chars} characters")
        return value


def _rid_of(frame: dict[str, Any]) -> str | None:
    rid = frame.get("rid")
    if rid is None:
        return None
    if not isinstance(rid, str) or len(rid) > MAX_RID_CHARS or _has_lone_surrogate(rid):
        raise ProtocolError(BAD_REQUEST, f"'rid' must be a string of at most {MAX_RID_CHARS} characters")
    return rid


def parse_action(raw: str | bytes) -> Action:
    """Parse one client frame. Raises :class:`ProtocolError` with the code to answer."""
    if frame_size(raw) > MAX_ACTION_BYTES:
        raise ProtocolError(TOO_LARGE, f"frame is larger than {MAX_ACTION_BYTES // 1024} KiB")
    return action_from_object(decode_object(raw))


def action_from_object(frame: dict[str, Any]) -> Action:
    rid = _rid_of(frame)
    name = frame.get("action")
    if name is None:
        raise ProtocolError(BAD_REQUEST, "'action' is required", rid=rid)
    if not isinstance(name, str):
        raise ProtocolError(BAD_REQUEST, "'action' must be a string", rid=rid)
    if name == "sendMessage":
        msg_id = frame.get("id")
        if not is_valid_message_id(msg_id):
            raise ProtocolError(BAD_REQUEST, "'id' must be 8-64 characters of A-Z, a-z, 0-9, '_', '-'", rid=rid)
        f = _Fields(frame, rid, msg_id)
        to = f.address("to")
        attachment = f.attachment()
        body = frame.get("body")
        if attachment is not None and (body is None or (isinstance(body, str) and not body.strip())):
            body = body or ""  # a file alone: no words needed (section 7.7)
        else:
            problem = body_problem(body)
            if problem:
                raise f.fail(problem)
        return SendMessage(id=msg_id, to=to, body=body, rid=rid, attachment=attachment)
    if name == "sendMessages":
        messages = frame.get("messages")
        if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_BATCH_MESSAGES:
            raise ProtocolError(BAD_REQUEST, f"'messages' must be a list of 1 to {MAX_BATCH_MESSAGES} messages", rid=rid)
        return SendMessages(items=tuple(_batch_item(item) for item in messages), rid=rid)
    f = _Fields(frame, rid)
    if name == "getMessages":
        with_ = f.address("with")
        before = f.seq("before", required=False, minimum=1)
        after = f.seq("after", required=False)
        if before is not None and after is not None:
            raise f.fail("'before' and 'after' cannot be used together")
        limit = frame.get("limit", DEFAULT_PAGE_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_LIMIT:
            raise f.fail(f"'limit' must be an integer from 1 to {MAX_PAGE_LIMIT}")
        return GetMessages(with_=with_, before=before, after=after, limit=limit, rid=rid)
    if name == "getConversations":
        return GetConversations(cursor=f.optional_string("cursor", MAX_CURSOR_CHARS), rid=rid)
    if name == "getClients":
        return GetClients(cursor=f.optional_string("cursor", MAX_CURSOR_CHARS), rid=rid)
    if name == "setStatus":
        status = frame.get("status")
        if status not in SETTABLE_STATUSES:
            raise f.fail("'status' must be one of online, away, busy")
        text = frame.get("text")
        if text is None:
            text = ""
        problem = status_text_problem(text)
        if problem:
            raise f.fail(f"'text': {problem}")
        return SetStatus(status=status, text=text, rid=rid)
    if name == "markRead":
        return MarkRead(with_=f.address("with"), seq=f.seq("seq", required=True), rid=rid)
    if name == "typing":
        return Typing(to=f.address("to"), rid=rid)
    if name == "ping":
        return Ping(rid=rid)
    if name == "createRoom":
        return CreateRoom(room=f.room("room"), title=f.title(required=False), members=f.members(), rid=rid)
    if name == "getRoom":
        return GetRoom(room=f.room("room"), rid=rid)
    if name == "invite":
        return Invite(room=f.room("room"), user=f.username("user"), rid=rid)
    if name == "leaveRoom":
        return LeaveRoom(room=f.room("room"), rid=rid)
    if name == "removeMember":
        return RemoveMember(room=f.room("room"), user=f.username("user"), rid=rid)
    if name == "setRoomTitle":
        return SetRoomTitle(room=f.room("room"), title=f.title(required=True), rid=rid)
    if name == "getReads":
        return GetReads(with_=f.room("with"), rid=rid)
    if name == "requestUpload":
        return RequestUpload(name=f.file_name(), size=f.file_size(), type=f.file_type(), sha256=f.sha256(), rid=rid)
    if name == "requestDownload":
        return RequestDownload(file_id=f.file_id(), rid=rid)
    shown = name if len(name) <= 40 else name[:40] + "…"
    raise ProtocolError(UNKNOWN_ACTION, f"unknown action {shown!r}", rid=rid)


def _batch_item(item: Any) -> SendMessage | ProtocolError:
    """One message of a batch, parsed by the rules of ``sendMessage``, or what it alone would get."""
    if not isinstance(item, dict):
        return ProtocolError(BAD_REQUEST, "a message of a batch must be an object")
    try:
        parsed = action_from_object({**{k: v for k, v in item.items() if k != "rid"}, "action": "sendMessage"})
    except ProtocolError as exc:
        return exc
    assert isinstance(parsed, SendMessage)
    return parsed


# --- Server -> client events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message: ``from`` on the wire is ``sender`` here."""

    id: str
    sender: str
    to: str
    body: str
    seq: int
    ts: int
    attachment: Attachment | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {"id": self.id, "from": self.sender, "to": self.to, "body": self.body, "seq": self.seq, "ts": self.ts}
        if self.attachment is not None:
            wire["attachment"] = self.attachment.to_wire()
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> "Message":
        if not isinstance(obj, dict):
            raise ValueError("a message must be an object")
        attachment = obj.get("attachment")
        msg = cls(
            id=obj.get("id"), sender=obj.get("from"), to=obj.get("to"),
            body=obj.get("body"), seq=obj.get("seq"), ts=obj.get("ts"),
            attachment=Attachment.from_wire(attachment) if attachment is not None else None,
        )  # fmt: skip
        if not (
            isinstance(msg.id, str) and isinstance(msg.sender, str) and isinstance(msg.to, str)
            and isinstance(msg.body, str) and _is_int(msg.seq) and _is_int(msg.ts)
        ):  # fmt: skip
            raise ValueError("a message needs id, from, to, body (strings) and seq, ts (integers)")
        return msg

    def other(self, me: str) -> str:
        """The conversation this message belongs to for ``me``: the room for a room message,
        else the partner (``me`` itself for notes to self)."""
        return self.to if self.sender == me or is_room(self.to) else self.sender


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Ack:
    id: str
    message: Message
    rid: str | None = None
    type: Literal["ack"] = "ack"


@dataclass(frozen=True, slots=True)
class MessageEvent:
    message: Message
    type: Literal["message"] = "message"


@dataclass(frozen=True, slots=True)
class Messages:
    with_: str
    items: tuple[Message, ...]
    has_more: bool
    rid: str | None = None
    type: Literal["messages"] = "messages"


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    with_: str
    last_seq: int
    read_seq: int
    unread: int
    last: Message | None
    peer_read_seq: int = 0
    """The other user's ``readSeq`` (section 7.4): how a device that was offline learns its
    messages were read. Not for rooms (their read marks come from ``getReads``)."""
    title: str | None = None
    """A room's title (``""`` when it has none); ``None`` for a direct conversation."""

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "with": self.with_, "lastSeq": self.last_seq, "readSeq": self.read_seq,
            "unread": self.unread, "last": self.last.to_wire() if self.last else None,
        }  # fmt: skip
        if self.title is None:
            wire["peerReadSeq"] = self.peer_read_seq
        else:
            wire["title"] = self.title
        return wire


@dataclass(frozen=True, slots=True)
class Conversations:
    items: tuple[ConversationSummary, ...]
    next: str | None = None
    rid: str | None = None
    type: Literal["conversations"] = "conversations"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    user: str
    status: str
    text: str
    last_seen: int | None

    def to_wire(self) -> dict[str, Any]:
        return {"user": self.user, "status": self.status, "text": self.text, "lastSeen": self.last_seen}


@dataclass(frozen=True, slots=True)
class Clients:
    users: tuple[ClientInfo, ...]
    next: str | None = None
    rid: str | None = None
    type: Literal["clients"] = "clients"


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    user: str
    status: str
    text: str
    last_seen: int | None
    type: Literal["presence"] = "presence"


@dataclass(frozen=True, slots=True)
class Presences:
    """Several users' latest presence in one frame (PROTOCOL.md 7.1: coalesced per watcher)."""

    items: tuple[PresenceEvent, ...]
    type: Literal["presences"] = "presences"


@dataclass(frozen=True, slots=True)
class Read:
    with_: str
    by: str
    seq: int
    type: Literal["read"] = "read"


@dataclass(frozen=True, slots=True)
class TypingEvent:
    sender: str
    room: str | None = None
    """Typing in a room (section 7.2); ``None`` in a direct conversation."""
    type: Literal["typing"] = "typing"


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """A room as it is now: the reply to ``createRoom``/``getRoom`` and the news of every change."""

    room: str
    title: str
    owner: str
    members: tuple[str, ...]
    rid: str | None = None
    type: Literal["room"] = "room"


@dataclass(frozen=True, slots=True)
class Left:
    """The receiving user is no longer a member of ``room`` (they left or were removed)."""

    room: str
    rid: str | None = None
    type: Literal["left"] = "left"


@dataclass(frozen=True, slots=True)
class Reads:
    """Every member of a room with their read mark, in the order they joined."""

    with_: str
    items: tuple[tuple[str, int], ...]
    rid: str | None = None
    type: Literal["reads"] = "reads"


@dataclass(frozen=True, slots=True)
class Upload:
    """Where to put a file's bytes: ``method`` to ``url`` with exactly ``headers`` and its length."""

    file_id: str
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    expires_at: int
    rid: str | None = None
    type: Literal["upload"] = "upload"


@dataclass(frozen=True, slots=True)
class Download:
    file_id: str
    url: str
    expires_at: int
    rid: str | None = None
    type: Literal["download"] = "download"


@dataclass(frozen=True, slots=True)
class Pong:
    rid: str | None = None
    type: Literal["pong"] = "pong"


@dataclass(frozen=True, slots=True)
class Error:
    code: str
    message: str
    id: str | None = None
    rid: str | None = None
    retry_after_ms: int | None = None
    type: Literal["error"] = "error"


@dataclass(frozen=True, slots=True)
class Replaced:
    attempt: str | None = None
    """The ``attempt`` of the connection that replaced this one (section 7.8)."""
    type: Literal["replaced"] = "replaced"


@dataclass(frozen=True, slots=True)
class GatewayError:
    """Not a protocol event: API Gateway's own ``{"message": …, "connectionId": …}`` answer,
    meaning a frame was not handled (throttled, internal error). The client resends its send."""

    type: Literal["gateway_error"] = "gateway_error"


def is_gateway_error(raw: str | bytes) -> bool:
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(frame, dict) and "type" not in frame and isinstance(frame.get("message"), str) and "connectionId" in frame


@dataclass(frozen=True, slots=True)
class Acks:
    """The reply to ``sendMessages``: per message, in order, its ``ack`` or ``error`` (no ``rid``)."""

    items: tuple["Ack | Error", ...]
    rid: str | None = None
    type: Literal["acks"] = "acks"


Event = Union[
    Ack, Acks, MessageEvent, Messages, Conversations, Clients, PresenceEvent, Presences, Read, TypingEvent, Pong, Error,
    Replaced, RoomEvent, Left, Reads, Upload, Download,
]


def _with_rid(frame: dict[str, Any], rid: str | None) -> dict[str, Any]:
    if rid is not None:
        frame["rid"] = rid
    return frame


def event_to_wire(event: Event) -> dict[str, Any]:
    """The JSON object a server sends for ``event``."""
    match event:
        case Ack():
            return _with_rid({"type": "ack", "id": event.id, "message": event.message.to_wire()}, event.rid)
        case MessageEvent():
            return {"type": "message", "message": event.message.to_wire()}
        case Messages():
            items = [m.to_wire() for m in event.items]
            return _with_rid({"type": "messages", "with": event.with_, "items": items, "hasMore": event.has_more}, event.rid)
        case Conversations():
            frame: dict[str, Any] = {"type": "conversations", "items": [c.to_wire() for c in event.items]}
            if event.next is not None:
                frame["next"] = event.next
            return _with_rid(frame, event.rid)
        case Clients():
            frame = {"type": "clients", "users": [u.to_wire() for u in event.users]}
            if event.next is not None:
                frame["next"] = event.next
            return _with_rid(frame, event.rid)
        case PresenceEvent():
            return {"type": "presence", "user": event.user, "status": event.status, "text": event.text, "lastSeen": event.last_seen}
        case Presences():
            return {"type": "presences", "items": [event_to_wire(item) for item in event.items]}
        case Read():
            return {"type": "read", "with": event.with_, "by": event.by, "seq": event.seq}
        case TypingEvent():
            return {"type": "typing", "from": event.sender, **({"room": event.room} if event.room else {})}
        case RoomEvent():
            frame = {"type": "room", "room": event.room, "title": event.title, "owner": event.owner, "members": list(event.members)}
            return _with_rid(frame, event.rid)
        case Left():
            return _with_rid({"type": "left", "room": event.room}, event.rid)
        case Reads():
            items = [{"user": user, "seq": seq} for user, seq in event.items]
            return _with_rid({"type": "reads", "with": event.with_, "items": items}, event.rid)
        case Upload():
            frame = {"type": "upload", "fileId": event.file_id, "url": event.url, "method": event.method,
                     "headers": dict(event.headers), "expiresAt": event.expires_at}  # fmt: skip
            return _with_rid(frame, event.rid)
        case Download():
            return _with_rid({"type": "download", "fileId": event.file_id, "url": event.url, "expiresAt": event.expires_at}, event.rid)
        case Pong():
            return _with_rid({"type": "pong"}, event.rid)
        case Error():
            frame = {"type": "error", "code": event.code, "message": event.message}
            if event.id is not None:
                frame["id"] = event.id
            if event.retry_after_ms is not None:
                frame["retryAfterMs"] = event.retry_after_ms
            return _with_rid(frame, event.rid)
        case Replaced():
            return {"type": "replaced", **({"attempt": event.attempt} if event.attempt else {})}
        case Acks():
            return _with_rid({"type": "acks", "items": [event_to_wire(item) for item in event.items]}, event.rid)
    raise TypeError(f"not an event: {event!r}")


def _presence(frame: dict[str, Any]) -> PresenceEvent:
    return PresenceEvent(
        user=_req_str(frame, "user"), status=_req_str(frame, "status"),
        text=_opt_str(frame, "text") or "", last_seen=_opt_int(frame, "lastSeen"),
    )  # fmt: skip


def parse_event(raw: str | bytes) -> Event:
    """Parse one server frame (client side). Raises ``ProtocolError(bad_request)`` on garbage."""
    frame = decode_object(raw)
    try:
        return _event_from_object(frame)
    except (ValueError, TypeError, KeyError) as exc:
        raise ProtocolError(BAD_REQUEST, f"malformed {frame.get('type')!r} event: {exc}") from None


def _opt_str(frame: dict[str, Any], name: str) -> str | None:
    value = frame.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string")
    return value


def _req_str(frame: dict[str, Any], name: str) -> str:
    value = frame.get(name)
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string")
    return value


def _req_int(frame: dict[str, Any], name: str) -> int:
    value = frame.get(name)
    if not _is_int(value):
        raise ValueError(f"'{name}' must be an integer")
    return value


def _opt_int(frame: dict[str, Any], name: str) -> int | None:
    value = frame.get(name)
    if value is not None and not _is_int(value):
        raise ValueError(f"'{name}' must be an integer")
    return value


def _list(frame: dict[str, Any], name: str) -> list[Any]:
    value = frame.get(name)
    if not isinstance(value, list):
        raise ValueError(f"'{name}' must be a list")
    return value


def _event_from_object(frame: dict[str, Any]) -> Event:
    kind = frame.get("type")
    rid = _opt_str(frame, "rid")
    if kind == "ack":
        return Ack(id=_req_str(frame, "id"), message=Message.from_wire(frame.get("message")), rid=rid)
    if kind == "acks":
        items = []
        for item in _list(frame, "items"):
            if not isinstance(item, dict) or item.get("type") not in ("ack", "error"):
                raise ValueError("an acks item must be an ack or an error")
            items.append(_event_from_object(item))
        return Acks(items=tuple(items), rid=rid)
    if kind == "message":
        return MessageEvent(message=Message.from_wire(frame.get("message")))
    if kind == "messages":
        items = tuple(Message.from_wire(m) for m in _list(frame, "items"))
        return Messages(with_=_req_str(frame, "with"), items=items, has_more=bool(frame.get("hasMore")), rid=rid)
    if kind == "conversations":
        convs = []
        for item in _list(frame, "items"):
            if not isinstance(item, dict):
                raise ValueError("a conversation must be an object")
            last = item.get("last")
            convs.append(
                ConversationSummary(
                    with_=_req_str(item, "with"), last_seq=_req_int(item, "lastSeq"),
                    read_seq=_req_int(item, "readSeq"), unread=_req_int(item, "unread"),
                    last=Message.from_wire(last) if last is not None else None,
                    peer_read_seq=_req_int(item, "peerReadSeq") if "peerReadSeq" in item else 0,
                    title=_opt_str(item, "title"),
                )  # fmt: skip
            )
        return Conversations(items=tuple(convs), next=_opt_str(frame, "next"), rid=rid)
    if kind == "clients":
        users = []
        for item in _list(frame, "users"):
            if not isinstance(item, dict):
                raise ValueError("a client must be an object")
            users.append(
                ClientInfo(
                    user=_req_str(item, "user"), status=_req_str(item, "status"),
                    text=_opt_str(item, "text") or "", last_seen=_opt_int(item, "lastSeen"),
                )  # fmt: skip
            )
        return Clients(users=tuple(users), next=_opt_str(frame, "next"), rid=rid)
    if kind == "presence":
        return _presence(frame)
    if kind == "presences":
        items = _list(frame, "items")
        if not all(isinstance(item, dict) for item in items):
            raise ValueError("a presence must be an object")
        return Presences(items=tuple(_presence(item) for item in items))
    if kind == "read":
        return Read(with_=_req_str(frame, "with"), by=_req_str(frame, "by"), seq=_req_int(frame, "seq"))
    if kind == "typing":
        return TypingEvent(sender=_req_str(frame, "from"), room=_opt_str(frame, "room"))
    if kind == "room":
        members = _list(frame, "members")
        if not all(isinstance(m, str) for m in members):
            raise ValueError("members must be usernames")
        return RoomEvent(room=_req_str(frame, "room"), title=_opt_str(frame, "title") or "", owner=_req_str(frame, "owner"),
                         members=tuple(members), rid=rid)  # fmt: skip
    if kind == "left":
        return Left(room=_req_str(frame, "room"), rid=rid)
    if kind == "reads":
        reads = []
        for item in _list(frame, "items"):
            if not isinstance(item, dict):
                raise ValueError("a read mark must be an object")
            reads.append((_req_str(item, "user"), _req_int(item, "seq")))
        return Reads(with_=_req_str(frame, "with"), items=tuple(reads), rid=rid)
    if kind == "upload":
        headers = frame.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise ValueError("'headers' must be an object of strings")
        return Upload(file_id=_req_str(frame, "fileId"), url=_req_str(frame, "url"), method=_req_str(frame, "method"),
                      headers=tuple(headers.items()), expires_at=_req_int(frame, "expiresAt"), rid=rid)  # fmt: skip
    if kind == "download":
        return Download(file_id=_req_str(frame, "fileId"), url=_req_str(frame, "url"), expires_at=_req_int(frame, "expiresAt"), rid=rid)
    if kind == "pong":
        return Pong(rid=rid)
    if kind == "error":
        return Error(
            code=_req_str(frame, "code"), message=_opt_str(frame, "message") or "",
            id=_opt_str(frame, "id"), rid=rid, retry_after_ms=_opt_int(frame, "retryAfterMs"),
        )  # fmt: skip
    if kind == "replaced":
        return Replaced(attempt=_opt_str(frame, "attempt"))
    raise ValueError(f"unknown event type {kind!r}")

