"""The quick chaos run: 1,000 messages from four clients of three users (two devices of one)
through cut, black-holed, delayed and sliced links and two server SIGKILLs; the checker must
find nothing lost, duplicated, reordered or unexpected. ``benchmarks/chaos_long.py`` is the
long form."""

from __future__ import annotations

from tui_chat_dev.chaos.harness import ChaosPlan, ChaosRun
from tui_chat_dev.serverproc import start_server


async def test_nothing_acked_is_lost_duplicated_or_reordered_through_faults_and_two_server_kills(tmp_path):
    server = start_server(tmp_path / "server")
    run = ChaosRun(server, tmp_path / "clients", ChaosPlan(users=3, messages=1000, send_seconds=8.0, server_kills=2, seed=6))
    try:
        outcome = await run.run()
    finally:
        await run.close()
        server.stop()
    report = outcome.report
    print(f"\nchaos: {report.summary()}\nfaults: {outcome.faults}; {outcome.connections} connections")
    assert report.ok, report.details()
    assert report.attempted >= 1000
    assert report.acked == report.attempted == report.delivered, "every message got through in the end"
    assert outcome.faults.server_kills == 2
    assert outcome.connections > 10, "the links really were cut"
