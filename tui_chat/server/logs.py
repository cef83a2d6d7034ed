"""Logging for the servers: readable lines for people, or one JSON object a line for machines
(``--log-format json``, the shape CloudWatch Logs Insights and ``jq`` query directly)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from tui_chat.server.asgi import DENIED

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RedactFrames())  # on the handler: whichever library logs a frame
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


class _ClientFaultFilter(logging.Filter):
    """Keep what clients do wrong out of the error log, where anyone could flood it.

    - uvicorn 0.54's websockets-sansio protocol does not count a denial response as a finished
      handshake and logs an error after every one (uvicorn PR #3138): dropped when we denied.
    - A text frame that is not UTF-8 is closed with 1007 and logged as an exception with its
      traceback: kept as one INFO line without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message == "ASGI callable returned without completing handshake.":
            return not DENIED.get()
        if message == "Invalid UTF-8 sequence received from client.":
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args, record.exc_info, record.exc_text = "a text frame was not UTF-8; closed with 1007", (), None, None
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


class _RedactTokens(logging.Filter):
    """No token in the log (PROTOCOL.md 7.6): uvicorn logs each WebSocket's path with its query
    string (a ``token`` there, from clients that cannot set the Authorization header) and, at
    debug, every handshake header (``authorization: Bearer …`` among them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _TOKEN_IN_QUERY.sub(r"\1[redacted]", message) if "token=" in message.lower() else message
        if "authorization" in redacted.lower():
            redacted = _AUTHORIZATION.sub(r"\1[redacted]", redacted)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


class _RedactFrames(logging.Filter):
    """No message body in the log, not even at debug: the WebSocket layer logs every frame's
    text there (``< TEXT '{"action":"sendMessage",…,"body":"…"}' [77 bytes]``). The line keeps
    its direction, kind and size."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            message = record.getMessage()
            redacted = _FRAME.sub(r"\1 [content not logged] \2", message)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True


_FRAME = re.compile(r"^([<>] (?:TEXT|BINARY|CONT))\s.*?(\[\d+ bytes?\])?$", re.DOTALL)
_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&\s])(?:token|refreshToken)=)[^&\s\"']*", re.IGNORECASE)
_AUTHORIZATION = re.compile(r"(authorization['\"]?\s*[:=,]\s*['\"]?)[^\r\n'\"]*", re.IGNORECASE)


def filter_uvicorn_logs() -> None:
    """Install the filters above on uvicorn's loggers, once (whoever starts a uvicorn server)."""
    error, access = logging.getLogger("uvicorn.error"), logging.getLogger("uvicorn.access")
    if any(isinstance(f, _RedactTokens) for f in error.filters):
        return
    error.addFilter(_ClientFaultFilter())
    for logger in (error, access):
        logger.addFilter(_RedactTokens())
