"""The client over https:// and wss:// (``serve --certfile/--keyfile``)."""

from __future__ import annotations

import truststore

from tests.client.conftest import wait_until
from tests.server.test_tls import TlsServer, self_signed
from tui_chat.client.service import ChatClient
from tui_chat.client.tls import client_ssl_context


async def test_the_client_trusts_a_private_ca_for_sign_in_and_websocket_alike(tmp_path, monkeypatch, memory_keyring):
    """One trust store (the OS's, through truststore, plus SSL_CERT_FILE) for httpx and websockets."""
    cert, key = self_signed(tmp_path)
    server = TlsServer(tmp_path / "tls.db", extra_args=("--certfile", str(cert), "--keyfile", str(key)), env={"SSL_CERT_FILE": str(cert)})
    server._wait_healthy = lambda: None
    server.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert isinstance(client_ssl_context(), truststore.SSLContext)
    client = ChatClient(server.http_url, data_folder=tmp_path / "client")
    try:
        await client.sign_in("tlsalice", "long enough", create=True)
        client.start()
        await wait_until(client, lambda: client.online)
        client.send("tlsalice", "over wss")
        await wait_until(client, lambda: client.queued == 0 and [r.state for r in client.timeline("tlsalice")] == ["sent"])
    finally:
        await client.close()
        server.stop()
