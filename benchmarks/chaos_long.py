"""The long form of the chaos suite (tests/chaos/test_chaos.py): many clients, many minutes.

    python benchmarks/chaos_long.py                      # 10 minutes, 20 clients
    python benchmarks/chaos_long.py --minutes 1 --clients 6

Twenty clients are 19 users, the first on two devices, each behind its own fault-injecting
proxy. They send at ``--rate`` messages a second each, to random peers or (``--room-share`` of
the messages of the first ``--room-members`` users) to a room of those users, while a nemesis cuts,
black-holes, delays and slices their links and the server is SIGKILLed and restarted
``--server-kills`` times. Then every link heals, every device settles (scrolling to the top
of every conversation, as a person would), and the Jepsen-style checker prints
attempted / acked / delivered / lost / duplicated / reordered. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keyring  # noqa: E402
from keyring.backends import fail  # noqa: E402

from tui_chat_dev.chaos.harness import ChaosPlan, ChaosRun  # noqa: E402
from tui_chat_dev.serverproc import start_server  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the clients send (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=20, help="clients, two of them devices of one user (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=1.0, help="messages a second per client (default: %(default)s)")
    parser.add_argument("--server-kills", type=int, default=4, help="SIGKILLs of the server, evenly spaced (default: %(default)s)")
    parser.add_argument("--room-members", type=int, default=3, help="users in the room, the first ones (default: %(default)s)")
    parser.add_argument("--room-share", type=float, default=0.3, help="of a member's messages, the share to the room (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.clients < 3 or args.minutes <= 0 or args.rate <= 0 or args.server_kills < 0:
        parser.error("need at least 3 clients, and a positive duration and rate")
    if not 0 <= args.room_share <= 1 or args.room_members < 0:
        parser.error("the room share is between 0 and 1, and the room has 0 members or more")
    return args


async def main(args: argparse.Namespace) -> int:
    keyring.set_keyring(fail.Keyring())  # tokens stay in memory: never touch the real keyring
    seconds = args.minutes * 60
    plan = ChaosPlan(
        users=args.clients - 1, messages=int(args.clients * args.rate * seconds), send_seconds=seconds,
        server_kills=args.server_kills, settle_timeout=max(120.0, seconds / 5), seed=args.seed,
        room_members=args.room_members, room_share=args.room_share,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="tui-chat-chaos-") as folder:
        server = start_server(Path(folder) / "server")
        run = ChaosRun(server, Path(folder) / "clients", plan, log=lambda line: print(line, flush=True))
        started = time.monotonic()
        try:
            outcome = await run.run()
        finally:
            await run.close()
            server.stop()
    report = outcome.report
    print(f"{args.clients} clients, {args.minutes:g} min, seed {args.seed}: {time.monotonic() - started:.0f} s in all")
    print(f"faults: {outcome.faults}; {outcome.connections} connections; settled in {outcome.settle_seconds:.1f} s")
    print(report.details())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
