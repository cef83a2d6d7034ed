"""Who may talk to the server from a browser, and under which names (DNS rebinding, cross-site).

A web page can make a visitor's browser open a WebSocket or POST to any address, the loopback
included; DNS rebinding even makes ``attacker.example`` resolve to 127.0.0.1. Three checks stop
that without getting in a terminal client's way (it sends no ``Origin``):

- ``Host`` must be a name this server answers to: the loopback names, an IP address (a browser
  that typed one is not being rebound), this machine's own host name (and ``<name>.local``), and
  whatever ``--public-host`` adds. A rebound name is none of these.
- ``Origin``, when there is one (browsers always send it on a WebSocket), must be allowed with
  ``--allow-origin``; none is by default.
- ``/auth/*`` takes ``application/json`` only, which a page cannot send cross-site without a
  CORS preflight this server never answers.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header, without its port (and without IPv6 brackets), lowercased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Origins:
    def __init__(self, public_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()) -> None:
        own = socket.gethostname().lower()
        self.hosts = LOOPBACK_NAMES | {own, f"{own}.local"} | {host_name(h) for h in public_hosts}
        self.origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    def host_allowed(self, host_header: str) -> bool:
        name = host_name(host_header)
        return bool(name) and (_is_ip(name) or name in self.hosts)

    def origin_allowed(self, origin_header: str) -> bool:
        return not origin_header or origin_header.rstrip("/").lower() in self.origins
