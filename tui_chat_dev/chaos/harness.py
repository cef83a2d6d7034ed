"""A chaos run: real clients of several users (the first user on two devices), each behind its
own fault-injecting proxy, sending to each other and to a room of the first few users while a
nemesis cuts, black-holes, delays and slices their links and SIGKILLs the server. Then
everything heals, every device settles, and :mod:`tui_chat_dev.chaos.checker` compares what
was attempted, acked, stored and held.

Used by ``tests/chaos/test_chaos.py`` (quick form) and ``benchmarks/chaos_long.py`` (long form).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tui_chat_dev.chaos.checker import Attempt, Conversation, Report, Stored, check, conversation
from tui_chat_dev.faultproxy import FaultProxy
from tui_chat_dev.serverproc import RunningServer
from tui_chat_dev.wsclient import WsClient
from tui_chat import protocol as p
from tui_chat.client.backoff import Backoff
from tui_chat.client.service import ChatClient

PASSWORD = "correct horse battery"


@dataclass
class ChaosPlan:
    users: int = 3
    """The first user runs two devices, so there are ``users + 1`` clients."""
    messages: int = 1000
    """Sent in total, spread evenly over the clients and over ``send_seconds``."""
    send_seconds: float = 8.0
    server_kills: int = 2
    """SIGKILL and restart, evenly spaced over the sending."""
    fault_every: tuple[float, float] = (0.05, 0.3)
    """Seconds between two faults (uniform), each on one random link."""
    settle_timeout: float = 90.0
    seed: int = 1
    room: str = "#chaos"
    room_members: int = 3
    """The first users (all their devices); the room exists before the first fault. 0: no room."""
    room_share: float = 0.3
    """Of each member device's messages, the share that goes to the room rather than to a person."""


@dataclass
class Device:
    user: str
    name: str
    """``user/device``: how the checker tells devices apart."""
    client: ChatClient
    proxy: FaultProxy
    attempts: list[Attempt] = field(default_factory=list)
    busy: bool = False
    """A fault episode is under way on this link."""


@dataclass
class Faults:
    cuts: int = 0
    blackholes: int = 0
    delays: int = 0
    slices: int = 0
    server_kills: int = 0

    def __str__(self) -> str:
        return (f"{self.cuts} cuts, {self.blackholes} black-holes, {self.delays} delays, "
                f"{self.slices} slicings, {self.server_kills} server SIGKILLs")  # fmt: skip


@dataclass
class Outcome:
    report: Report
    faults: Faults
    connections: int
    """TCP connections the proxies accepted (every reconnect is one)."""
    send_seconds: float
    settle_seconds: float


def link_options(rng: random.Random) -> dict:
    # Short timeouts so a black-holed link is noticed in about a second, not 30.
    return {"ping_interval": 0.3, "ping_timeout": 0.6, "open_timeout": 2.0,
            "backoff": Backoff(base=0.05, cap=0.5, rand=rng.random)}  # fmt: skip


class ChaosRun:
    def __init__(self, server: RunningServer, folder: Path, plan: ChaosPlan, log=print) -> None:
        self.server = server
        self.folder = Path(folder)
        self.plan = plan
        self.log = log
        self.rng = random.Random(plan.seed)
        self.devices: list[Device] = []
        self.room_members: list[str] = []
        self.faults = Faults()
        self._server_lock = asyncio.Lock()

    # -- setting up -----------------------------------------------------------------------

    async def setup(self) -> None:
        users = [f"chaos{n}" for n in range(self.plan.users)]
        for n, user in enumerate(users):
            await self._add_device(user, "d1", create=True)
            if n == 0:
                await self._add_device(user, "d2", create=False)
        for device in self.devices:
            device.client.start()
        await self._until(lambda d: d.client.online, timeout=30)
        await self._create_room(users[: self.plan.room_members])

    async def _create_room(self, members: list[str]) -> None:
        """Made over clean links, and known to every member device, before the nemesis starts:
        the run tests the room's messages, not a room event lost to a cut."""
        if len(members) < 2:
            return
        self.room_members = members
        owner = self.devices[0].client
        await owner.create_room(self.plan.room, members=members[1:])
        await self._until(lambda d: d.user not in members or d.client.room(self.plan.room) is not None, timeout=30)

    async def _add_device(self, user: str, label: str, *, create: bool) -> None:
        proxy = await FaultProxy(self.server.port).start()
        client = ChatClient(
            f"http://127.0.0.1:{proxy.port}", data_folder=self.folder / user / label,
            device=f"{user}-{label}-device", connection_options=link_options(random.Random(self.rng.random())),
        )  # fmt: skip
        await client.sign_in(user, PASSWORD, create=create)
        self.devices.append(Device(user, f"{user}/{label}", client, proxy))

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> Outcome:
        await self.setup()
        started = time.monotonic()
        nemesis = asyncio.create_task(self._nemesis(), name="chaos-nemesis")
        try:
            await asyncio.gather(*(self._traffic(d) for d in self.devices), self._kill_server_on_schedule())
        finally:
            nemesis.cancel()
            await asyncio.gather(nemesis, return_exceptions=True)
        sent = time.monotonic() - started
        self.log(f"sent {sum(len(d.attempts) for d in self.devices)} messages in {sent:.1f} s under {self.faults}")
        settle_started = time.monotonic()
        server_view = await self.settle()
        settled = time.monotonic() - settle_started
        report = check(
            [a for d in self.devices for a in d.attempts], self._acked(), server_view, await self._holdings(server_view)
        )
        connections = sum(d.proxy.connections_made for d in self.devices)
        return Outcome(report, self.faults, connections, sent, settled)

    async def close(self) -> None:
        for device in self.devices:
            await device.client.close()
            await device.proxy.stop()

    async def _traffic(self, device: Device) -> None:
        """This device's share of the messages, evenly paced over ``send_seconds``."""
        others = [d.user for d in self.devices if d.user != device.user]
        peers = sorted(set(others))
        room_share = self.plan.room_share if device.user in self.room_members else 0.0
        count = self.plan.messages // len(self.devices)
        gap = self.plan.send_seconds / max(1, count)
        rng = random.Random(self.rng.random())
        start = time.monotonic()
        for i in range(count):
            to = self.plan.room if rng.random() < room_share else rng.choice(peers)
            body = f"{device.name} #{i} to {to}"
            msg_id = device.client.send(to, body)
            device.attempts.append(Attempt(msg_id, device.user, device.name, to, body))
            # The schedule of a load generator, not a wait for an event.
            await asyncio.sleep(max(0.0, start + (i + 1) * gap - time.monotonic()))

    async def _kill_server_on_schedule(self) -> None:
        kills = self.plan.server_kills
        for n in range(kills):
            await asyncio.sleep(self.plan.send_seconds / (kills + 1))
            async with self._server_lock:
                # SIGKILL, then start again on the same port and database (blocking: in a thread).
                await asyncio.to_thread(self.server.kill)
                self.faults.server_kills += 1
                await asyncio.to_thread(self.server.start)

    async def _nemesis(self) -> None:
        low, high = self.plan.fault_every
        while True:
            await asyncio.sleep(self.rng.uniform(low, high))
            device = self.rng.choice(self.devices)
            if device.busy:
                continue
            kind = self.rng.choices(("cut", "blackhole", "delay", "slice"), weights=(4, 2, 2, 2))[0]
            if kind == "cut":
                device.proxy.cut()
                self.faults.cuts += 1
            else:
                asyncio.create_task(self._episode(device, kind))

    async def _episode(self, device: Device, kind: str) -> None:
        """A fault that lasts a while on one link, then heals."""
        device.busy = True
        proxy = device.proxy
        try:
            if kind == "blackhole":
                proxy.blackhole = True  # half-open: only the client's pings can tell
                self.faults.blackholes += 1
            elif kind == "delay":
                proxy.delay = self.rng.uniform(0.01, 0.08)
                self.faults.delays += 1
            else:
                proxy.slice = self.rng.randint(1, 16)
                self.faults.slices += 1
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
        finally:
            proxy.heal()
            device.busy = False

    # -- settling and looking -------------------------------------------------------------

    async def settle(self) -> dict[Conversation, list[Stored]]:
        """Heal every link; wait until every outbox is empty and every device holds what the
        server holds (bounded: a device that never converges shows up in the report)."""
        for device in self.devices:
            device.proxy.heal()
        deadline = time.monotonic() + self.plan.settle_timeout
        try:
            await self._until(lambda d: d.client.online and d.client.queued == 0, timeout=self.plan.settle_timeout)
        except TimeoutError:
            self.log("settle: some outboxes never emptied")
        server_view = await self.server_histories()
        sizes = {device.name: self._sizes_for(device.user, server_view) for device in self.devices}

        def caught_up(device: Device) -> bool:
            return all(device.client.timeline_length(peer) == n for peer, n in sizes[device.name].items())

        while True:
            for device in self.devices:
                await self._scroll_to_top(device, list(sizes[device.name]))
            if all(caught_up(d) for d in self.devices):
                return server_view
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.log("settle: some devices never caught up")
                return server_view
            try:
                await self._until(caught_up, timeout=min(2.0, remaining))
            except TimeoutError:
                pass  # scroll again: a device may have synced only the newest page

    async def _scroll_to_top(self, device: Device, peers: list[str]) -> None:
        """What a person scrolling up would see: older pages until the first message."""
        for peer in peers:
            for _ in range(1000):
                try:
                    if await device.client.load_older(peer, limit=p.MAX_PAGE_LIMIT) == 0:
                        break
                except ConnectionError:
                    break

    async def server_histories(self) -> dict[Conversation, list[Stored]]:
        """Every conversation as the server stores it, read over fresh connections; the room
        even when empty, so that every member's copy is compared with it."""
        views: dict[Conversation, list[Stored]] = {}
        for device in self.devices:
            if device.name.endswith("/d2"):
                continue  # the same user as d1
            tokens = device.client.tokens
            checker = await WsClient.open(self.server.ws_url, tokens.access, device.user, device=f"checker-{device.user}")
            try:
                for peer in self._addresses_of(device.user):
                    key = conversation(device.user, peer)
                    if key not in views:
                        views[key] = await _history(checker, peer)
            finally:
                await checker.ws.close()
        return {k: v for k, v in views.items() if v or k == self.plan.room}

    def _addresses_of(self, user: str) -> list[str]:
        """Everyone ``user`` may write to: the other users, and the room if a member."""
        peers = sorted({d.user for d in self.devices} - {user})
        return peers + ([self.plan.room] if user in self.room_members else [])

    def _sizes_for(self, user: str, server_view: dict) -> dict[str, int]:
        """peer or room -> how many messages the server holds in that conversation of ``user``'s."""
        return {peer: len(server_view[conversation(user, peer)])
                for peer in self._addresses_of(user) if conversation(user, peer) in server_view}  # fmt: skip

    async def _holdings(self, server_view: dict) -> dict[tuple[str, str], list[Stored]]:
        holdings = {}
        for device in self.devices:
            for peer in self._sizes_for(device.user, server_view):
                holdings[(device.name, peer)] = [
                    Stored(row.seq, row.id, row.sender, row.to, row.body)
                    for row in device.client.timeline(peer) if row.seq is not None
                ]  # fmt: skip
        return holdings

    def _acked(self) -> set[str]:
        """Attempts that left their outbox: the client was told (or saw) that the server has them."""
        acked = set()
        for device in self.devices:
            waiting = {entry.id for entry in device.client.outbox.all()}
            acked |= {a.id for a in device.attempts if a.id not in waiting}
        return acked

    async def _until(self, condition, timeout: float) -> None:
        """Wait, event-driven, until ``condition(device)`` holds for every device."""
        async def one(device: Device) -> None:
            if condition(device):
                return
            async for _ in device.client.events():
                if condition(device):
                    return

        async with asyncio.timeout(timeout):
            await asyncio.gather(*(one(d) for d in self.devices))


async def _history(checker: WsClient, peer: str) -> list[Stored]:
    """``peer``: a user, or a room the checker's user is in."""
    history, after = [], 0
    while True:
        page = await checker.request({"action": "getMessages", "with": peer, "after": after, "limit": p.MAX_PAGE_LIMIT})
        history += [Stored(m["seq"], m["id"], m["from"], m["to"], m["body"]) for m in page["items"]]
        if not page["hasMore"] or not page["items"]:
            return history
        after = page["items"][-1]["seq"]
