"""The built-in server runs inside the app's event loop and stops with it."""

from __future__ import annotations

import httpx

from tui_chat.server.embedded import EmbeddedServer, something_listens


async def test_embedded_server_serves_and_stops(tmp_path):
    server = EmbeddedServer(port=0, db=tmp_path / "data" / "server.db")
    url = await server.start()
    try:
        port = int(url.rsplit(":", 1)[1])
        async with httpx.AsyncClient() as client:
            info = (await client.get(url + "/info")).json()
        assert info["auth"] == "accounts" and something_listens(port=port)
        assert (tmp_path / "data" / "server.db").exists()
    finally:
        await server.stop()
    assert not server.running and not something_listens(port=port)
