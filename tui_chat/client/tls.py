"""One trust store for every connection the client makes (sign-in over HTTPS and the WebSocket).

The operating system's own store, through ``truststore`` (so a CA an administrator installed,
or a corporate proxy's, is trusted the way the browser trusts it), plus the PEM file named by
``SSL_CERT_FILE`` when it is set: the documented way to trust a private certificate authority.
"""

from __future__ import annotations

import functools
import os
import ssl

import truststore


def client_ssl_context() -> ssl.SSLContext:
    return _context(os.environ.get("SSL_CERT_FILE") or None)


@functools.lru_cache(maxsize=4)
def _context(extra_ca_file: str | None) -> ssl.SSLContext:
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if extra_ca_file is not None:
        context.load_verify_locations(cafile=extra_ca_file)
    return context
