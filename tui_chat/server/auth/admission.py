"""What a handshake checks once the token is good, the same on every runtime: the session has
not ended, the user still exists, a nickname is not taken (open mode), and the user is not
already connected from too many devices."""

from __future__ import annotations

from tui_chat.server.auth.identity import AuthError, Identity
from tui_chat.server.store import ConnectionRecord, Store

MAX_DEVICES_PER_USER = 10
"""Devices one user may have connected at once. Without a cap one token could open a connection
per made-up device id, each costing the server memory and a presence fan-out."""


async def check_session(store: Store, identity: Identity, now: int) -> None:
    """401 when the token's session was ended (sign-out, replay, an operator) before it expired."""
    if identity.session is not None and not await store.session_active(identity.session, identity.username, now):
        raise AuthError(401, "this session has ended; sign in again")


async def check_user(store: Store, identity: Identity) -> None:
    if await store.get_user(identity.username) is None:
        raise AuthError(403, "this user no longer exists")


def check_nickname_free(username: str, device: str, connections: list[ConnectionRecord]) -> None:
    """Open mode, at sign-in and at each handshake: a nickname connected from another device is
    taken (409)."""
    if any(c.device != device for c in connections):
        raise AuthError(409, f"the nickname {username!r} is in use on another device")


async def check_devices(store: Store, username: str, device: str, *, open_mode: bool) -> None:
    """409 for a nickname connected from another device (open mode); 429 past the device cap.
    A device that is connected already may always reconnect: that replaces its connection."""
    connections = await store.user_connections(username)
    if open_mode:
        check_nickname_free(username, device, connections)
    devices = {c.device for c in connections}
    if device not in devices and len(devices) >= MAX_DEVICES_PER_USER:
        raise AuthError(429, f"{username} is connected from {len(devices)} devices already, the most this server allows; disconnect one")
