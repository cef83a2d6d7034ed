"""A client in a process of its own, for the kill -9 test.

    python outbox_script.py URL DATA_DIR queue N   # sign up, queue N messages, print 'queued', then send
    python outbox_script.py URL DATA_DIR drain     # sign in, send what the outbox holds, print 'drained'
"""

import asyncio
import sys

from tui_chat.client.service import ChatClient


async def main(url: str, folder: str, mode: str, count: int) -> None:
    from pathlib import Path

    client = ChatClient(url, data_folder=Path(folder), device="script-device-1")
    await client.sign_in("scripter", "correct horse battery", create=(mode == "queue"))
    if mode == "queue":
        for i in range(count):
            client.send("receiver", f"msg {i:03d}")
        print("queued", flush=True)
    client.start()
    async for _ in client.events():
        if client.queued == 0 and client.online:
            break
    print("drained", flush=True)
    await client.stop()


if __name__ == "__main__":
    url, folder, mode = sys.argv[1:4]
    asyncio.run(main(url, folder, mode, int(sys.argv[4]) if len(sys.argv) > 4 else 0))
