"""Sign-in for the self-hosted server: accounts (passwords) and open mode (nicknames).

- Passwords are stored only as argon2id hashes (argon2-cffi), verified in a worker thread
  so a slow hash never stalls the event loop.
- Access tokens are JWTs (HS256, one hour) signed with a per-server secret that is created on
  first start and kept beside the database with 0600 permissions.
- A sign-in starts a *session*: a family of refresh tokens ``<family>.<secret>``. Each refresh
  replaces the current token with its successor (only SHA-256 hashes are stored). Presenting a
  token the family has moved past ends the whole family (it was copied: whoever holds the newer
  one loses it too), except within ``REFRESH_GRACE_MS`` of its rotation while the successor is
  still unused: that is a retry after a lost response, and it gets the same successor and the
  same access token again (both are derived, not random: nothing secret is stored to repeat them).
  A session ends at sign-out (``/auth/logout``), after ``REFRESH_IDLE_MS`` without a refresh, and
  ``SESSION_LIFETIME_MS`` after the sign-in whatever happens; a user keeps at most
  ``MAX_SESSIONS_PER_USER`` (a new sign-in ends the oldest). Access tokens name their session, so
  an ended session also stops opening connections.
- Failed logins are counted per username *and* client address: after five within 15 minutes from
  one address, that address must wait (a minute, then twice as long after each further failure,
  at most 15 minutes) before trying that name again. Someone else's guesses never lock a person
  out from where they are. Unknown users and wrong passwords get the same answer and take the
  same time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import weakref
from collections.abc import Callable
from typing import Any
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tui_chat import protocol as p
from tui_chat.server.auth.admission import check_nickname_free
from tui_chat.server.auth.identity import AuthError, Identity
from tui_chat.server.store import RotationOutcome, SessionRecord, Store

log = logging.getLogger("tui_chat.server")

ACCESS_TOKEN_TTL_MS = 60 * 60 * 1000
REFRESH_IDLE_MS = 30 * 24 * 60 * 60 * 1000
"""A session not refreshed for this long ends (an app unused for a month signs in again)."""
SESSION_LIFETIME_MS = 90 * 24 * 60 * 60 * 1000
"""No session outlives this, however often it is refreshed."""
REFRESH_GRACE_MS = 30 * 1000
"""How long after a rotation the replaced token may be presented again (a retry) for the same answer."""
MAX_SESSIONS_PER_USER = 20
_FAMILY = re.compile(r"[A-Za-z0-9_-]{22}")
_REFRESH_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")
FAILED_LOGIN_LIMIT = 5
FAILED_LOGIN_WINDOW_MS = 15 * 60 * 1000
LOCKOUT_FIRST_MS = 60 * 1000
"""The wait after ``FAILED_LOGIN_LIMIT`` failures; it doubles with each further one."""
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
JWT_ISSUER = "tui-chat"
JWT_AUDIENCE = "tui-chat"
LOGIN_FAILED = "wrong username or password"
HASHING_AT_ONCE = max(2, os.cpu_count() or 2)
"""Password hashes computed at once (argon2id takes 64 MiB and a core's worth of work each)."""
HASHING_QUEUE = 64
"""Sign-ins that may wait for a hash; more are told to try again (503) instead of piling up."""


def load_or_create_secret(path: Path) -> bytes:
    """The signing secret beside the database, created once with 0600 permissions."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes().strip()
        if len(secret) < 32:
            raise RuntimeError(f"the token secret in {path} is too short; delete it to make a new one") from None
        return secret
    with os.fdopen(fd, "wb") as file:
        secret = secrets.token_hex(32).encode()
        file.write(secret)
        file.flush()
        os.fsync(file.fileno())
    return secret


def _hash_refresh_token(token: str) -> str:
    # The token is 256 random bits: a fast hash is enough, and lets us look it up.
    return hashlib.sha256(token.encode()).hexdigest()


class AccountService:
    def __init__(
        self,
        store: Store,
        secret: bytes,
        *,
        mode: str = "accounts",
        allow_signup: bool = True,
        clock: Callable[[], int],
        hasher: PasswordHasher | None = None,
    ) -> None:
        if mode not in ("accounts", "open"):
            raise ValueError(f"unknown auth mode {mode!r}")
        self.store = store
        self.secret = secret
        self.mode = mode
        self.allow_signup = allow_signup and mode == "accounts"
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        # Verifying against this keeps "unknown user" as slow as "wrong password".
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        # One login at a time per username: otherwise parallel guesses all pass the failure count
        # before any of them is recorded. (Weak values: a lock lives only while someone holds it.)
        self._login_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)
        self._waiting_to_hash = 0

    # -- HTTP endpoints ---------------------------------------------------------------------

    async def signup(self, body: dict) -> dict:
        if self.mode == "open":
            raise AuthError(403, "this server signs in with nicknames: POST /auth/login {username, device} (no account needed)")
        if not self.allow_signup:
            raise AuthError(403, "sign-up is disabled on this server")
        username = _username(body)
        password = _password(body, check_length=True)
        password_hash = await self._hashed(self.hasher.hash, password)
        if not await self.store.create_user(username, password_hash, self.clock()):
            raise AuthError(409, f"the username {username!r} is taken")
        return await self._issue(username, None)

    async def login(self, body: dict, address: str = "") -> dict:
        """Sign in from client ``address`` (failures are counted per name and address)."""
        if self.mode == "open":
            return await self._login_open(body)
        username = _username(body, failure=LOGIN_FAILED, status=401)
        password = _password(body, check_length=False)
        who = f"{username}@{address}" if address else username
        # One attempt at a time per name and address: otherwise parallel guesses all pass the
        # failure count before any of them is recorded.
        lock = self._login_locks.get(who)
        if lock is None:
            lock = self._login_locks[who] = asyncio.Lock()
        async with lock:
            return await self._login_checked(username, password, who)

    async def _login_checked(self, username: str, password: str, who: str) -> dict:
        now = self.clock()
        failures = await self.store.count_login_failures(who, now - FAILED_LOGIN_WINDOW_MS)
        if failures >= FAILED_LOGIN_LIMIT:
            wait_ms = min(FAILED_LOGIN_WINDOW_MS, LOCKOUT_FIRST_MS << min(failures - FAILED_LOGIN_LIMIT, 20))
            if await self.store.count_login_failures(who, now - wait_ms):
                raise AuthError(429, "too many failed sign-ins from here; wait and try again", retry_after_s=wait_ms // 1000)
        user = await self.store.get_user(username)
        stored = user.password_hash if user and user.password_hash else self._dummy_hash
        if not await self._hashed(self._verify, stored, password) or stored is self._dummy_hash:
            await self.store.record_login_failure(who, now)
            raise AuthError(401, LOGIN_FAILED)
        await self.store.clear_login_failures(who)
        return await self._issue(username, None)

    async def refresh(self, body: dict) -> dict:
        token = _refresh_token(body)
        family = _family(token)
        now = self.clock()
        successor = self._successor(token)
        rotation = await self.store.rotate_session(
            family, _hash_refresh_token(token), _hash_refresh_token(successor), now,
            grace_ms=REFRESH_GRACE_MS, idle_ms=REFRESH_IDLE_MS,
        )  # fmt: skip
        if rotation.outcome is RotationOutcome.REPLAYED:
            log.warning("a replaced refresh token was presented again: its session is ended", extra={"user": rotation.session.username})
        if rotation.outcome not in (RotationOutcome.ROTATED, RotationOutcome.REPEATED):
            raise AuthError(401, "the session has ended; sign in again")
        access = self._access_token(rotation.session, rotation.rotated_at)
        return {"token": access, "refreshToken": successor}

    async def logout(self, body: dict) -> None:
        """End the session of a refresh token (sign-out). Unknown or ended sessions are fine: the
        person is signed out either way, and the answer tells a stranger nothing."""
        try:
            token = _refresh_token(body)
        except AuthError as exc:
            if exc.status == 401:  # not one of ours (an older release's): nothing to end
                return
            raise
        await self.store.end_session(_family(token))

    async def _login_open(self, body: dict) -> dict:
        username = _username(body)
        device = body.get("device")
        if not p.is_valid_device_id(device):
            raise AuthError(400, "'device' must be 8-64 characters of A-Z, a-z, 0-9, '_', '-'")
        check_nickname_free(username, device, await self.store.user_connections(username))
        await self.store.ensure_user(username, self.clock())
        return await self._issue(username, device)

    # -- tokens -----------------------------------------------------------------------------

    async def _issue(self, username: str, device: str | None) -> dict:
        """Start a session and give its first pair of tokens."""
        now = self.clock()
        session = SessionRecord(
            family=secrets.token_urlsafe(16), username=username, device=device, started_at=now,
            ends_at=now + SESSION_LIFETIME_MS, idle_until=now + REFRESH_IDLE_MS,
        )  # fmt: skip
        refresh = f"{session.family}.{secrets.token_urlsafe(32)}"
        await self.store.create_session(session, _hash_refresh_token(refresh), keep_at_most=MAX_SESSIONS_PER_USER)
        return {"token": self._access_token(session, now), "refreshToken": refresh, "user": username}

    def _access_token(self, session: SessionRecord, issued_at: int) -> str:
        """The access token of ``session`` issued at ``issued_at``: the same inputs give the same token."""
        claims = {
            "sub": session.username, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sid": session.family,
            "iat": issued_at // 1000, "exp": (issued_at + ACCESS_TOKEN_TTL_MS) // 1000, "mode": self.mode,
        }  # fmt: skip
        if session.device is not None:
            claims["dev"] = session.device
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def _successor(self, token: str) -> str:
        """The token that replaces ``token``: derived with the server's secret, so a retry of the
        same refresh is answered with the same token without keeping it anywhere."""
        digest = hmac.new(self.secret, b"refresh-successor:" + token.encode(), hashlib.sha256).digest()
        return f"{_family(token)}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"

    def verify_token(self, token: str) -> Identity:
        """Check an access token (signature, issuer, audience, expiry, mode) or raise AuthError(401)."""
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=["HS256"], audience=JWT_AUDIENCE, issuer=JWT_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "aud", "sid"]},
                leeway=0,
            )  # fmt: skip
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:  # whatever a hostile token makes it raise
            raise AuthError(401, f"invalid token: {exc}") from None
        if claims.get("mode") != self.mode:
            raise AuthError(401, "invalid token: issued for another sign-in mode")
        username, device, session = claims.get("sub"), claims.get("dev"), claims.get("sid")
        if (not p.is_valid_username(username) or (device is not None and not p.is_valid_device_id(device))
                or not isinstance(session, str) or not _FAMILY.fullmatch(session)):  # fmt: skip
            raise AuthError(401, "invalid token: malformed claims")
        if self.mode == "open" and device is None:
            raise AuthError(401, "invalid token: not bound to a device")
        # jwt checks exp against the wall clock; check it against ours too (tests fix the clock).
        if claims["exp"] * 1000 <= self.clock():
            raise AuthError(401, "invalid token: expired")
        return Identity(username=username, device=device, session=session)

    async def _hashed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a password hash in a worker thread, at most ``HASHING_AT_ONCE`` at a time, so that
        a crowd of sign-ins costs bounded memory and leaves the event loop (chat) responsive."""
        if self._waiting_to_hash >= HASHING_QUEUE:
            raise AuthError(503, "the server is busy signing people in; try again in a moment")
        self._waiting_to_hash += 1
        try:
            async with self._hashing:
                return await asyncio.to_thread(fn, *args)
        finally:
            self._waiting_to_hash -= 1

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


def _refresh_token(body: dict) -> str:
    token = body.get("refreshToken")
    # Ours are URL-safe base64; a lone surrogate would not even hash (it was a 500).
    if not isinstance(token, str) or not 16 <= len(token) <= 256 or not token.isascii():
        raise AuthError(400, "'refreshToken' must be a string of 16-256 ASCII characters")
    if not _REFRESH_TOKEN.fullmatch(token):  # one of another server, or of an older version
        raise AuthError(401, "the session has ended; sign in again")
    return token


def _family(token: str) -> str:
    return token.split(".", 1)[0]


def _username(body: dict, *, failure: str | None = None, status: int = 400) -> str:
    try:
        return p.normalize_username(body.get("username"))
    except ValueError as exc:
        raise AuthError(status, failure or f"'username': {exc}") from None


def _password(body: dict, *, check_length: bool) -> str:
    password = body.get("password")
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS or "\x00" in password:
        raise AuthError(400, f"'password' must be a string of at most {MAX_PASSWORD_CHARS} characters")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise AuthError(400, "'password' contains a lone surrogate") from None
    if check_length and len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(400, f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    return password
