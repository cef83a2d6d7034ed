"""The one WebSocket: the only owner of the socket, reconnecting with backoff until told to stop.

- ``start()`` twice is a no-op; a reconnect closes the old socket before opening the new one.
- Reconnects after every close except 4000 (``replaced``) and 1008 (policy), with full-jitter
  backoff (:mod:`tui_chat.client.backoff`).
- Liveness: WebSocket pings find a dead or half-open link (``ping_interval`` + ``ping_timeout``,
  about 30 s); the ``ping`` action every few minutes keeps an idle link inside API Gateway's
  10-minute idle timeout.
- A 401 at the handshake asks the owner to refresh the token, then retries once; a refused
  refresh (:class:`NeedsSignIn`) ends in the ``signed_out`` state.
- Every action is paced under the server's rate limit (:mod:`tui_chat.client.pacing`).
- ``generation`` counts opened sockets, so a caller can send "on this connection only" and
  never have a frame meant for a dead link go out on its successor (the outbox keeps order so).
- Every handshake carries a fresh ``attempt`` id (PROTOCOL.md 7.8). A handshake given up on (timed
  out on a stalled link) can still reach the server later and replace the live connection: when
  ``replaced`` names one of our own abandoned attempts, we reconnect at once instead of stopping.

Everything is reported to the owner through callbacks; this module knows nothing of the UI.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from tui_chat import protocol as p
from tui_chat.client.backoff import Backoff
from tui_chat.client.pacing import Pacer
from tui_chat.client.state import ConnectionState
from tui_chat.client.tls import client_ssl_context

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

log = logging.getLogger("tui_chat.client.connection")

CONNECTING, ONLINE, RECONNECTING, OFFLINE, REPLACED, SIGNED_OUT, STOPPED = ConnectionState  # short names, in definition order
ABANDONED_ATTEMPTS_KEPT = 64
"""Our own handshakes given up on that may still arrive late (a few minutes' worth of retries)."""


@dataclass(frozen=True, slots=True)
class LinkState:
    kind: ConnectionState
    retry_in: float | None = None
    """Seconds until the next attempt (``reconnecting`` only)."""
    detail: str = ""


class NeedsSignIn(Exception):
    """The refresh token was refused: the person has to sign in again."""


class Connection:
    def __init__(
        self,
        url: str,
        device: str,
        *,
        token: Callable[[], str],
        refresh: Callable[[], Awaitable[None]],
        on_event: Callable[[p.Event], Awaitable[None]],
        on_state: Callable[[LinkState], None],
        on_open: Callable[[], Awaitable[None]],
        backoff: Backoff | None = None,
        pacer: Pacer | None = None,
        ping_interval: float = p.PING_INTERVAL_S,
        ping_timeout: float = p.PING_TIMEOUT_S,
        app_ping_interval: float = p.APP_PING_INTERVAL_S,
        open_timeout: float = 10.0,
        token_in_header: bool = True,
    ) -> None:
        self.url = url
        self.device = device
        self.token = token
        self.refresh = refresh
        self.on_event = on_event
        self.on_state = on_state
        self.on_open = on_open
        self.backoff = backoff or Backoff()
        self.pacer = pacer or Pacer()
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.app_ping_interval = app_ping_interval
        self.open_timeout = open_timeout
        self.token_in_header = token_in_header
        """False for the cloud, whose API Gateway authorizer reads the ``token`` query parameter."""
        self.ws: ClientConnection | None = None
        self.state = LinkState(OFFLINE)
        self.generation = 0
        """How many sockets have opened; names the current one."""
        self.delays: list[float] = []
        """Every reconnect delay chosen (benchmarks report them)."""
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self.abandoned_attempts: deque[str] = deque(maxlen=ABANDONED_ATTEMPTS_KEPT)
        self._replaced_by: str | None = None

    # -- control -------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting; a second call while running does nothing."""
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.create_task(self._run(), name="tui-chat-connection")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._close_socket()
        self._set(LinkState(STOPPED))

    def reconnect_now(self) -> None:
        """The person asked to reconnect: skip the rest of the backoff wait, or start again
        after ``replaced`` or a policy close (taking the session back is then their choice)."""
        if self.running:
            self._wake.set()
        elif self._task is not None and self.state.kind != STOPPED:
            self.backoff.reset()
            self.start()

    def drop(self) -> None:
        """Abandon the current socket (e.g. catch-up failed on it); the loop reconnects."""
        ws = self.ws
        if ws is not None:
            ws.transport.abort()

    async def send(self, action: p.Action, *, generation: int | None = None) -> bool:
        """Send one action, paced under the rate limit (a batch costs one per ten messages).
        False when there is no open socket or it is no longer the one ``generation`` names: the
        caller keeps the action queued."""
        from websockets.exceptions import ConnectionClosed

        cost = p.batch_cost(len(action.items)) if isinstance(action, p.SendMessages) else 1
        while True:
            ws = self.ws
            if ws is None or self.state.kind != ONLINE or (generation is not None and generation != self.generation):
                return False
            wait = self.pacer.delay(cost)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        try:
            await ws.send(p.encode(p.action_to_wire(action)))
            return True
        except ConnectionClosed:
            return False

    @property
    def online(self) -> bool:
        return self.state.kind == ONLINE

    # -- the loop ------------------------------------------------------------------------

    def _set(self, state: LinkState) -> None:
        self.state = state
        self.on_state(state)

    async def _close_socket(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), timeout=2)
            except (TimeoutError, OSError):
                ws.transport.abort()

    async def _run(self) -> None:
        try:
            await self._connect_until_done()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave a silent, dead client behind
            log.exception("the connection loop stopped")
            await self._close_socket()
            self._set(LinkState(OFFLINE, detail=f"the connection stopped after an internal error ({exc.__class__.__name__})"))

    async def _connect_until_done(self) -> None:
        from websockets.asyncio.client import connect  # here, not at import: see tui_chat.client.auth
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        refreshed = False
        while True:
            await self._close_socket()  # never two sockets
            self._set(LinkState(CONNECTING))
            attempt = "att-" + secrets.token_hex(8)
            try:
                query = {"device": self.device, "attempt": attempt}
                headers = {}
                if self.token_in_header:  # PROTOCOL.md 7.6: never in the URL, where logs would keep it
                    headers["Authorization"] = f"Bearer {self.token()}"
                else:
                    query["token"] = self.token()
                ws = await connect(
                    f"{self.url}?{urlencode(query)}",
                    additional_headers=headers,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_timeout,
                    open_timeout=self.open_timeout,
                    close_timeout=2,
                    max_size=p.MAX_FRAME_BYTES,
                    ssl=client_ssl_context() if self.url.startswith("wss:") else None,
                    compression=None,  # chat frames are small; deflate doubles server memory per socket
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 401 and not refreshed:
                    refreshed = True
                    try:
                        await self.refresh()
                    except NeedsSignIn as why:
                        self._set(LinkState(SIGNED_OUT, detail=str(why)))
                        return
                    except Exception as why:  # noqa: BLE001 - unreachable for the refresh too: try later
                        log.info("token refresh failed: %s", why)
                        await self._wait_before_retry(f"could not renew the session: {why}")
                        refreshed = False
                    continue
                if status in (401, 403):
                    self._set(LinkState(SIGNED_OUT, detail=f"the server refused the session (HTTP {status})"))
                    return
                await self._wait_before_retry(f"the server answered HTTP {status}")
                continue
            except (TimeoutError, OSError, InvalidHandshake) as exc:
                self.abandoned_attempts.append(attempt)  # it may still reach the server later
                await self._wait_before_retry(f"cannot connect ({exc.__class__.__name__})")
                continue
            refreshed = False
            self.ws = ws
            self._replaced_by = None
            code = await self._serve(ws)
            if code == p.CLOSE_REPLACED and self._replaced_by in self.abandoned_attempts:
                log.info("replaced by a late handshake of our own; reconnecting")
                continue  # nobody else took over: take the connection back at once
            if code in (p.CLOSE_REPLACED, p.CLOSE_POLICY):
                await self._close_socket()
                if code == p.CLOSE_REPLACED:
                    self._set(LinkState(REPLACED, detail="another session of this device took over"))
                else:
                    self._set(LinkState(OFFLINE, detail="the server closed the connection for a policy violation"))
                return
            await self._wait_before_retry(f"connection lost (code {code})")

    async def _serve(self, ws: ClientConnection) -> int | None:
        """Read events until the socket closes; returns the close code."""
        from websockets.exceptions import ConnectionClosed

        opened = time.monotonic()
        self.generation += 1
        self.pacer.reset()
        self._set(LinkState(ONLINE))
        keepalive = asyncio.create_task(self._app_pings(), name="tui-chat-app-ping")
        opening = asyncio.create_task(self.on_open(), name="tui-chat-catch-up")
        try:
            async for raw in ws:
                try:
                    event = p.parse_event(raw)
                except p.ProtocolError as exc:
                    if not p.is_gateway_error(raw):
                        log.warning("ignored a malformed frame from the server: %s", exc.message)
                        continue
                    event = p.GatewayError()  # API Gateway did not hand the frame on (section 7.3)
                if isinstance(event, p.Replaced):
                    self._replaced_by = event.attempt
                try:
                    await self.on_event(event)
                except Exception:  # one bad event must not end the connection
                    log.exception("handling a %s event failed", getattr(event, "type", "?"))
        except ConnectionClosed:
            pass
        finally:
            keepalive.cancel()
            opening.cancel()
            self.backoff.connection_lasted(time.monotonic() - opened)
        return ws.close_code

    async def _app_pings(self) -> None:
        generation = self.generation
        while await asyncio.sleep(self.app_ping_interval, True):
            if not await self.send(p.Ping(), generation=generation):
                return

    async def _wait_before_retry(self, reason: str) -> None:
        delay = self.backoff.next_delay()
        self.delays.append(delay)
        self._set(LinkState(RECONNECTING, retry_in=delay, detail=reason))
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=delay)
        except TimeoutError:
            pass
