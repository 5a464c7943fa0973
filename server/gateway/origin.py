"""Which requests the gateway answers: the Host it is asked for and the browser Origin asking. Pure.

Two attacks from a web page open in a browser on a machine that can reach the gateway:

* cross-site websocket hijacking: websockets have no same-origin policy, so any page may
  open ``ws://127.0.0.1:8765/ws``; the browser says who asks in ``Origin``.
* DNS rebinding: a page of ``evil.example`` whose name then resolves to 127.0.0.1 is *same
  origin* with the gateway as far as the browser knows; only the ``Host`` it sends
  (``evil.example:8765``) gives it away.

Rules (docs/security.md):

* ``Host`` must name the gateway: an IP literal, ``localhost``, ``server.host``, or a name in
  ``server.public_hosts`` (``*`` there: any). Otherwise 421. No ``Host`` (not a browser): accepted.
* ``Origin``, when sent, must be the gateway's own origin (its host and port equal the
  ``Host`` header's) or listed in ``server.allowed_origins`` (``*`` there: any). Otherwise 403.
  No ``Origin`` (not a browser): accepted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from server.errors import ProtocolError

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: A DNS name or IPv4 literal, then an optional port (IPv6 literals are bracketed, handled apart).
_HOST_PORT: Final = re.compile(r"([A-Za-z0-9._-]+)(?::([0-9]{1,5}))?\Z")
_IPV6_PORT: Final = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?\Z")
_ANY: Final = "*"


def split_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` of a Host header (``[v6]:port`` too) as (lower-case host, port or None).

    Raises ProtocolError(bad_request) naming the header when it is not that shape.
    """
    found = _HOST_PORT.match(value) or _IPV6_PORT.match(value)
    if found is None:
        raise ProtocolError("bad_request", f"Host: {value[:80]!r} is not host[:port]")
    host, port = found.group(1).lower(), found.group(2)
    if port is not None and not 0 < int(port) <= 65535:
        raise ProtocolError("bad_request", f"Host: port {port} is out of range")
    return host, None if port is None else int(port)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _origin_key(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class OriginPolicy:
    """Checks a request's ``Host`` and ``Origin`` headers (values already known to be single)."""

    def __init__(self, host: str, public_hosts: Iterable[str], allowed_origins: Iterable[str]) -> None:
        names = {split_host(name.strip())[0] if name.strip() != _ANY else _ANY for name in public_hosts}
        if host and not is_ip_literal(host.strip("[]")):
            names.add(host.lower())
        names.add("localhost")
        self._any_host = _ANY in names
        self._hosts = frozenset(names - {_ANY})
        origins = {_origin_key(origin) for origin in allowed_origins}
        self._any_origin = _ANY in origins
        self._origins = frozenset(origins - {_ANY})

    def check_host(self, host_header: str | None) -> None:
        """ProtocolError(misdirected) unless ``Host`` names this gateway (absent: accepted)."""
        if host_header is None or self._any_host:
            return
        host, _ = split_host(host_header)
        if host in self._hosts or is_ip_literal(host):
            return
        raise ProtocolError(
            "misdirected",
            f"Host: {host!r} is not a name of this gateway; add it to server.public_hosts "
            "(SIGNALPUSH_SERVER_PUBLIC_HOSTS)",
        )

    def check_origin(self, origin: str | None, host_header: str | None) -> None:
        """ProtocolError(forbidden) unless ``Origin`` is this gateway's own or allowed (absent: accepted)."""
        if origin is None or self._any_origin or _origin_key(origin) in self._origins:
            return
        if host_header is not None and self._same_origin(origin, host_header):
            return
        raise ProtocolError(
            "forbidden",
            f"Origin: {origin[:100]!r} is not this gateway's origin; add it to server.allowed_origins "
            "(SIGNALPUSH_SERVER_ALLOWED_ORIGINS)",
        )

    @staticmethod
    def _same_origin(origin: str, host_header: str) -> bool:
        try:
            parts = urlsplit(origin)
            origin_port = parts.port
        except ValueError:
            return False
        scheme, origin_host = parts.scheme.lower(), (parts.hostname or "").lower()
        if scheme not in _DEFAULT_PORTS or not origin_host or parts.path not in ("", "/"):
            return False
        try:
            host, port = split_host(host_header)
        except ProtocolError:
            return False
        default = _DEFAULT_PORTS[scheme]
        return origin_host == host.strip("[]") and (origin_port or default) == (port or default)
