"""A total-queue checker in the spirit of Jepsen's: compare what was attempted, what was acked,
what the server stored and what every device finally holds.

Every message a test sends is an :class:`Attempt` with a unique id and a unique body. The
checker fails on:

- **lost**: an acked message the server does not hold, or one the server holds that a device
  of its sender or recipient does not (after scrolling to the top);
- **unexpected**: a message nobody attempted, or one whose sender, recipient or body changed;
- **duplicated**: one id twice in a history, or one attempt stored under two ids;
- **reordered**: a device's messages to one peer (or room) stored out of the order it sent them;
- **diverged**: a device's copy of a conversation differs from the server's (seq, id, body).

A conversation is a pair of users, or a room (PROTOCOL.md 7.2: ``#name``, one history that
every member's devices hold); both are checked alike, and rooms get their own figures too.
Unacked attempts (still queued, or failed for good) may be stored once or not at all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attempt:
    id: str
    sender: str
    device: str
    recipient: str
    body: str


@dataclass(frozen=True)
class Stored:
    """A message as a history holds it."""

    seq: int
    id: str
    sender: str
    recipient: str
    body: str


Conversation = tuple[str, str] | str
"""A sorted user pair, or a room's ``#name``."""


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def is_room(address: str) -> bool:
    return address.startswith("#")


def conversation(user: str, peer: str) -> Conversation:
    """Where a message between ``user`` and ``peer`` (a user or a room) is stored."""
    return peer if is_room(peer) else pair(user, peer)


@dataclass
class Report:
    attempted: int = 0
    acked: int = 0
    delivered: int = 0
    """Distinct attempted messages the server holds."""
    holdings_checked: int = 0
    """(device, conversation) copies compared with the server's."""
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    reordered: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    in_rooms: Report | None = None
    """The same checks over the rooms alone (None when there are none), for their own figures."""

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unexpected or self.duplicated or self.reordered or self.diverged)

    def summary(self) -> str:
        text = (
            f"attempted {self.attempted} / acked {self.acked} / delivered {self.delivered} / "
            f"lost {len(self.lost)} / duplicated {len(self.duplicated)} / reordered {len(self.reordered)} / "
            f"unexpected {len(self.unexpected)} / diverged copies {len(self.diverged)} "
            f"(of {self.holdings_checked})"
        )
        return text if self.in_rooms is None else f"{text}; in rooms: {self.in_rooms.summary()}"

    def details(self, limit: int = 10) -> str:
        lines = [self.summary()]
        for name in ("lost", "unexpected", "duplicated", "reordered", "diverged"):
            problems = getattr(self, name)
            if problems:
                lines.append(f"{name}: " + "; ".join(problems[:limit]) + (" ..." if len(problems) > limit else ""))
        return "\n".join(lines)


def check(
    attempts: list[Attempt],
    acked: set[str],
    server: dict[Conversation, list[Stored]],
    holdings: dict[tuple[str, str], list[Stored]],
) -> Report:
    """``attempts`` in each device's send order; ``server``: conversation (a sorted user pair,
    or a room) → its history; ``holdings``: (device, peer or room) → that device's copy. Devices
    are named ``user/device`` so the checker knows whose copy it is."""
    report = _check(attempts, acked, server, holdings)
    room_attempts = [a for a in attempts if is_room(a.recipient)]
    rooms = {c: history for c, history in server.items() if isinstance(c, str)}
    if room_attempts or rooms:
        # The same checks again on the rooms' share alone, for its figures; a problem
        # found here is also one of the whole report's (perhaps under another name).
        room_copies = {key: copy for key, copy in holdings.items() if is_room(key[1])}
        report.in_rooms = _check(room_attempts, acked, rooms, room_copies)
    return report


def _check(attempts: list[Attempt], acked: set[str], server: dict, holdings: dict) -> Report:
    report = Report(attempted=len(attempts), acked=len(acked & {a.id for a in attempts}))
    by_id = {a.id: a for a in attempts}
    _check_server(report, by_id, acked, server)
    for (device, peer), copy in sorted(holdings.items()):
        user = device.split("/", 1)[0]
        report.holdings_checked += 1
        _check_copy(report, device, copy, server.get(conversation(user, peer), []))
    return report


def _check_server(report: Report, by_id: dict[str, Attempt], acked: set[str], server: dict) -> None:
    stored_ids: Counter[str] = Counter()
    for where, history in server.items():
        seqs = [m.seq for m in history]
        if seqs != sorted(set(seqs)):
            report.reordered.append(f"{where}: seqs not strictly increasing")
        for m in history:
            stored_ids[m.id] += 1
            attempt = by_id.get(m.id)
            if attempt is None:
                report.unexpected.append(f"{m.id} in {where} was never sent")
            elif (m.sender, m.recipient, m.body) != (attempt.sender, attempt.recipient, attempt.body):
                report.unexpected.append(f"{m.id} changed: {m.sender}->{m.recipient} {m.body!r}")
            elif conversation(m.sender, m.recipient) != where:
                report.unexpected.append(f"{m.id} to {m.recipient} stored in {where}")
        bodies = Counter(m.body for m in history)
        report.duplicated += [f"body {body!r} stored {n} times in {where}" for body, n in bodies.items() if n > 1]
        _check_send_order(report, history, by_id)
    report.duplicated += [f"{i} stored {n} times" for i, n in stored_ids.items() if n > 1]
    report.delivered = sum(1 for i in stored_ids if i in by_id)
    report.lost += [f"{i} was acked but the server does not hold it" for i in sorted(acked) if i in by_id and i not in stored_ids]


def _check_send_order(report: Report, history: list[Stored], by_id: dict[str, Attempt]) -> None:
    """Each device's messages appear in the order it sent them."""
    order = {a.id: n for n, a in enumerate(by_id.values())}
    last_by_device: dict[str, tuple[int, str]] = {}
    for m in history:
        attempt = by_id.get(m.id)
        if attempt is None:
            continue
        position = order[m.id]
        previous = last_by_device.get(attempt.device)
        if previous is not None and position < previous[0]:
            report.reordered.append(f"{m.id} (seq {m.seq}) stored after {previous[1]}, which {attempt.device} sent later")
        last_by_device[attempt.device] = max(previous or (position, m.id), (position, m.id))


def _check_copy(report: Report, device: str, copy: list[Stored], truth: list[Stored]) -> None:
    """A device's copy of a conversation must be the server's, exactly."""
    if copy == truth:
        return
    held = {m.id for m in copy}
    missing = [m.id for m in truth if m.id not in held]
    extra = [m.id for m in copy if m.id not in {t.id for t in truth}]
    dupes = [i for i, n in Counter(m.id for m in copy).items() if n > 1]
    report.lost += [f"{device} never got {i}" for i in missing]
    report.unexpected += [f"{device} holds {i}, which the server does not" for i in extra]
    report.duplicated += [f"{device} shows {i} twice" for i in dupes]
    if not (missing or extra or dupes):
        report.diverged.append(f"{device}: same messages as the server, but in another order or with other seqs")
    else:
        report.diverged.append(f"{device}: {len(copy)} rows, the server has {len(truth)}")
