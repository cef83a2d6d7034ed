"""The quick chaos run: 1,000 messages from four clients of three users (two devices of one)
through cut, black-holed, delayed and sliced links and two server SIGKILLs; about a third of
them go to a room of all three users (four devices hold it), the rest to a person. The checker
must find nothing lost, duplicated, reordered or unexpected, in the room as in the direct
conversations. ``benchmarks/chaos_long.py`` is the long form."""

from __future__ import annotations

from tui_chat_dev.chaos.harness import ChaosPlan, ChaosRun
from tui_chat_dev.serverproc import start_server

PLAN = ChaosPlan(users=3, messages=1000, send_seconds=8.0, server_kills=2, seed=6, room_members=3, room_share=0.3)


async def test_nothing_acked_is_lost_duplicated_or_reordered_through_faults_and_two_server_kills(tmp_path):
    server = start_server(tmp_path / "server")
    run = ChaosRun(server, tmp_path / "clients", PLAN)
    try:
        outcome = await run.run()
    finally:
        await run.close()
        server.stop()
    report, room = outcome.report, outcome.report.in_rooms
    print(f"\nchaos: {report.summary()}\nfaults: {outcome.faults}; {outcome.connections} connections")
    assert report.ok, report.details()
    assert report.attempted >= 1000
    assert report.acked == report.attempted == report.delivered, "every message got through in the end"
    assert room is not None and room.attempted >= 200, "every device wrote to the room too"
    assert room.acked == room.attempted == room.delivered
    assert room.holdings_checked == 4, "every member device's copy of the room was compared"
    assert outcome.faults.server_kills == 2
    assert outcome.connections > 10, "the links really were cut"
