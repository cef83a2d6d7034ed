"""One settings record for every way the chat server runs: ``tui-chat serve`` (its flags), the
built-in server of the app, the Lambda functions (their environment, set by the template) and
the development emulator."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tui_chat.paths import data_dir
from tui_chat.ratelimit import RateLimit
from tui_chat.server.deadline import DEFAULT_REQUEST_HEAD_TIMEOUT_S

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class Settings:
    # Who may sign in, and how.
    auth: str = "accounts"
    """``accounts`` (passwords), ``open`` (nicknames) or ``cognito`` (Amazon Cognito ID tokens)."""
    signup: bool = True
    forget_after_minutes: int | None = None
    """Open mode: a nickname offline this long is forgotten, with its conversations (None: never)."""
    cognito_region: str | None = None
    cognito_user_pool_id: str | None = None
    cognito_client_id: str | None = None
    cognito_group: str | None = None
    """Only members of this group may connect (cognito)."""
    cognito_jwks_url: str | None = None
    """Where the pool's keys are (default: the pool's ``/.well-known/jwks.json``)."""
    token_secret: str | None = None
    """The access tokens' signing secret where no file can keep it (Lambda, accounts/open)."""

    # The self-hosted server.
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db: Path | None = None
    commit_window_ms: float = 0.0
    """How long the SQLite writer waits for more writes to commit with the first."""
    request_timeout_s: float = DEFAULT_REQUEST_HEAD_TIMEOUT_S
    """How long a connection may take to send each request head before it is closed."""
    rate_limit: RateLimit = RateLimit()
    """Each connection's token bucket (PROTOCOL.md section 5's default: 100/s, bursts of 500)."""
    auth_per_minute: float = 30.0
    """Sign-up, sign-in and refresh requests each client address may make a minute (bursts as many)."""
    public_hosts: tuple[str, ...] = ()
    """Names (``Host``) the server answers to besides loopback names, IP addresses and this machine's name."""
    allowed_origins: tuple[str, ...] = ()
    """Web origins whose pages may connect (none by default: terminal clients send no Origin)."""
    max_file_bytes: int = 25 * 1024 * 1024
    """The largest attachment accepted (PROTOCOL.md 7.7)."""
    file_url_ttl_s: int = 900
    """How long an attachment's upload or download URL works."""
    certfile: Path | None = None
    keyfile: Path | None = None
    log_level: str = "info"

    # DynamoDB and API Gateway (the Lambda functions, the emulator).
    table_prefix: str = "tui-chat-"
    dynamodb_endpoint: str | None = None
    region: str | None = None
    retention_days: int | None = None
    """Messages older than this are dropped (None: kept)."""
    management_endpoint: str | None = None

    @property
    def db_path(self) -> Path:
        return self.db if self.db is not None else data_dir() / "server.db"

    @property
    def files_path(self) -> Path:
        """Attachments' bytes: a folder beside the database."""
        return self.db_path.with_name(self.db_path.stem + "-files")

    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """The Lambda functions' settings (``TUI_CHAT_*``, as the template sets them)."""
        e = os.environ if env is None else env
        region = e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION")
        retention = int(e.get("TUI_CHAT_RETENTION_DAYS", "365"))
        return cls(
            table_prefix=e.get("TUI_CHAT_TABLE_PREFIX", "tui-chat-"),
            dynamodb_endpoint=e.get("TUI_CHAT_DYNAMODB_ENDPOINT") or None, region=region,
            retention_days=retention or None, auth=e.get("TUI_CHAT_AUTH", "cognito"),
            cognito_region=e.get("TUI_CHAT_COGNITO_REGION") or region,
            cognito_user_pool_id=e.get("TUI_CHAT_COGNITO_USER_POOL_ID") or None,
            cognito_client_id=e.get("TUI_CHAT_COGNITO_CLIENT_ID") or None,
            cognito_group=e.get("TUI_CHAT_COGNITO_GROUP") or None,
            cognito_jwks_url=e.get("TUI_CHAT_COGNITO_JWKS_URL") or None,
            token_secret=e.get("TUI_CHAT_TOKEN_SECRET") or None,
            management_endpoint=e.get("TUI_CHAT_MANAGEMENT_ENDPOINT") or None,
        )  # fmt: skip
