"""Waiting for a client's state without sleeping: its own events say when to look again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tui_chat.client.service import ChatClient


async def wait_until(client: ChatClient, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Consume the client's events until ``condition`` holds (event-driven, bounded)."""
    if condition():
        return
    async with asyncio.timeout(timeout):
        async for _ in client.events():
            if condition():
                return
