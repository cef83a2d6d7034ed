"""SIGKILL of a client process with a full outbox: after a restart everything arrives exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tui_chat_dev.faultproxy import FaultProxy
from tui_chat_dev.wsclient import WsClient, signup

SCRIPT = Path(__file__).with_name("outbox_script.py")


async def run_script(url: str, folder: Path, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", "PYTHONPATH": str(Path(__file__).parents[2])}
    return await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), url, str(folder), *args, stdout=asyncio.subprocess.PIPE, env=env
    )


async def test_sigkill_with_100_queued_and_one_in_flight_then_restart(chat_server, tmp_path):
    receiver_token = await signup(chat_server.http_url, "receiver")
    receiver = await WsClient.open(chat_server.ws_url, receiver_token, "receiver", device="receiver-01")
    proxy = await FaultProxy(chat_server.port).start()
    proxy.delay = 0.3  # acks crawl back: messages are in flight when the kill lands
    url = f"http://127.0.0.1:{proxy.port}"
    first = await run_script(url, tmp_path / "client", "queue", "100")
    assert (await asyncio.wait_for(first.stdout.readline(), 30)).strip() == b"queued"
    # The server has stored the first message; its ack is still crawling back through the proxy.
    first_stored = await receiver.expect("message", timeout=30)
    first.send_signal(signal.SIGKILL)
    await first.wait()

    proxy.delay = 0
    second = await run_script(url, tmp_path / "client", "drain")
    assert (await asyncio.wait_for(second.stdout.readline(), 60)).strip() == b"drained"
    await second.wait()

    assert first_stored["message"]["body"] == "msg 000"
    page = await receiver.request({"action": "getMessages", "with": "scripter", "after": 0, "limit": 200})
    assert [m["body"] for m in page["items"]] == [f"msg {i:03d}" for i in range(100)], "all delivered once, in order"
    await proxy.stop()
