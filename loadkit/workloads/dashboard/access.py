"""Which requests may reach the dashboard at all: request targets, ``Host`` and ``Origin``.

Pure functions, no sockets. They guard against two things a token does not cover when
the dashboard runs on loopback without one:

* a web page the user happens to open connecting to ``ws://127.0.0.1:PORT/ws`` and
  reading the live fleet: the browser sends that page's ``Origin`` with the WebSocket
  handshake (the same-origin policy does not apply to WebSockets), so a handshake whose
  ``Origin`` is not the dashboard's own, or one the user named, is refused;
* DNS rebinding: a name the attacker controls made to resolve to 127.0.0.1, so that the
  browser treats the dashboard as the attacker's own site. Such requests carry the
  attacker's name in ``Host``, so only the names the server is really reached by pass.

Clients that send no ``Origin`` (scripts, the load client, curl) are not browsers
acting for a web page and stay allowed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# origin-form (RFC 9112 3.2.1): an absolute path and an optional query, printable ASCII.
# A second leading slash would read as a network location, '#' never belongs in a request.
_ORIGIN_FORM = re.compile(r"/(?!/)[!-~]*")

Origin = tuple[str, str, int]  # scheme, host name (lower case, no brackets), port
HostPort = tuple[str, int]


def split_target(target: str) -> tuple[str, str] | None:
    """The path and query of an origin-form request target, or None for anything else
    (absolute-form ``http://x/``, ``*``, ``//x``, fragments, spaces, non-ASCII)."""
    if _ORIGIN_FORM.fullmatch(target) is None or "#" in target:
        return None
    path, _, query = target.partition("?")
    return path, query


def _name(host: str) -> str:
    """A host name as compared: lower case, no brackets, no trailing dot, IPs canonical."""
    host = host.strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def parse_host(header: str) -> HostPort | None:
    """``Host`` header -> (name, port); port 80 when none is given; None if malformed."""
    if not header or any(c in header for c in "/?#@ \t\\"):
        return None
    try:
        parts = urlsplit("//" + header)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return _name(parts.hostname), 80 if port is None else port


def parse_origin(text: str) -> Origin:
    """``scheme://host[:port]`` -> (scheme, name, port). Raises ValueError, saying why,
    for anything else (another scheme, a path, a query, user info, ``null``)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"not an origin (scheme://host[:port]): {text!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an origin (http:// or https://host[:port]): {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"an origin has no path, query or user name: {text!r}")
    return scheme, _name(parts.hostname), _DEFAULT_PORTS[scheme] if port is None else port


def format_origin(origin: Origin) -> str:
    scheme, name, port = origin
    host = f"[{name}]" if ":" in name else name
    return f"{scheme}://{host}" if _DEFAULT_PORTS[scheme] == port else f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class AccessPolicy:
    """The ``Host`` values and ``Origin`` values a server accepts."""

    hosts: frozenset[HostPort]
    origins: frozenset[Origin]

    @classmethod
    def build(
        cls,
        bind_host: str,
        port: int,
        extra_origins: Iterable[str] = (),
        local_addresses: Iterable[str] = (),
    ) -> AccessPolicy:
        """Loopback names on ``port``; the bound address (or, for a wildcard bind, this
        machine's ``local_addresses``); and each extra origin, whose host name is then
        accepted in ``Host`` too (the dashboard behind that name, e.g. a proxy)."""
        names = set(LOOPBACK_NAMES)
        if bind_host.strip("[]") in WILDCARDS:
            names.update(local_addresses)
        else:
            names.add(bind_host)
        hosts = {(_name(n), port) for n in names}
        origins = {("http", name, p) for name, p in hosts}
        for text in extra_origins:
            origin = parse_origin(text)
            origins.add(origin)
            hosts.add(origin[1:])
        return cls(frozenset(hosts), frozenset(origins))

    def host_ok(self, header: str | None) -> bool:
        parsed = parse_host(header) if header is not None else None
        return parsed is not None and parsed in self.hosts

    def origin_ok(self, header: str | None) -> bool:
        """No ``Origin`` at all is a non-browser client: allowed. ``null`` is not."""
        if header is None:
            return True
        try:
            return parse_origin(header) in self.origins
        except ValueError:
            return False
