"""``--certfile/--keyfile``: the same server over https:// and wss://."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from tui_chat_dev.serverproc import RunningServer


def self_signed(folder):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class TlsServer(RunningServer):
    @property
    def http_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


async def test_https_and_wss(tmp_path):
    cert, key = self_signed(tmp_path)
    server = TlsServer(tmp_path / "tls.db", extra_args=("--certfile", str(cert), "--keyfile", str(key)), env={"SSL_CERT_FILE": str(cert)})
    server._wait_healthy = lambda: None  # checked below with the right trust store
    server.start()
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=trust) as http:
            token = (await http.post(f"{server.http_url}/auth/signup", json={"username": "secure", "password": "long enough"})).json()["token"]
        async with connect(f"wss://127.0.0.1:{server.port}/ws?token={token}&device=device-0001", ssl=trust) as ws:
            await ws.send(json.dumps({"action": "ping", "rid": "tls"}))
            frames = [json.loads(await ws.recv()) for _ in range(2)]
            assert {"type": "pong", "rid": "tls"} in frames
    finally:
        server.stop()


async def test_an_untrusted_certificate_is_said_as_such_and_ssl_cert_file_trusts_a_private_ca(tmp_path, monkeypatch):
    from tui_chat.client.auth import AuthClient, SignInError
    from tui_chat.ui.session import friendly

    cert, key = self_signed(tmp_path)
    server = TlsServer(tmp_path / "tls.db", extra_args=("--certfile", str(cert), "--keyfile", str(key)), env={"SSL_CERT_FILE": str(cert)})
    server._wait_healthy = lambda: None
    server.start()
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        try:
            await AuthClient(server.http_url).info()
            raise AssertionError("a self-signed certificate was trusted")
        except SignInError as exc:
            assert exc.kind == "tls", exc.message
            sentence = friendly(exc, server.http_url, "accounts")
            assert "is it running" not in sentence and "SSL_CERT_FILE" in sentence
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the documented way to trust a private CA
        assert (await AuthClient(server.http_url).info()).auth == "accounts"
    finally:
        server.stop()

