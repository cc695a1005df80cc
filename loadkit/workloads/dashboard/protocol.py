"""The dashboard's wire protocol and access rules: pure functions, no sockets.

Server -> client messages are JSON text frames. Every message starts with the same
header, in this order, so a load client can read it with one regular expression instead
of decoding the whole body::

    {"type": "update", "seq": 41, "ts": 1764222000123.456, "boot": "3fa1c2", ...}

* ``boot`` names the board (its publisher, chosen when it starts) and ``seq`` counts
  that board's updates, whichever server process forwards them; a client that sees
  ``seq`` jump by more than one missed messages and asks for a ``snapshot`` with
  ``{"type": "resync"}``. A client that reconnects asks to resume with
  ``/ws?resume=<boot>-<seq>`` (the last it applied): a server of the same board that
  still holds the updates after it sends ``resumed`` (with that ``seq``) and those
  updates instead of a snapshot, so nothing is missed on the way from one server
  process to another.
* ``ts`` is the publisher's wall-clock time of the update in milliseconds since the
  epoch, so a browser (``Date.now()``) or a load client on the same host measures
  latency from the board's change to its arrival.

An ``update`` is a delta (changed agents by slot) or a keyframe (every agent); see
:mod:`.board` for the compact body.

Client -> server messages are small JSON objects (``resync`` or ``ping``). Anything else
closes that connection with the matching RFC 6455 close code. The HTTP snapshot carries
the same body as the stream's snapshot and an ETag of ``boot`` and board version, so a
poll that finds nothing new costs a 304 with no body.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import random
import re
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

# RFC 6455 close codes used by the server.
CLOSE_UNSUPPORTED_DATA = 1003  # binary frame where only text is accepted
CLOSE_POLICY_VIOLATION = 1008  # malformed JSON / unknown message / bad token / too slow
CLOSE_TRY_AGAIN_LATER = 1013  # connection limit reached

MAX_CLIENT_MESSAGE_BYTES = 1024  # clients only ever send tiny control messages

_RESUME = re.compile(r"(\w{1,32})-(\d{1,18})")
_HEADER = re.compile(r'\{"type":"(\w+)","seq":(\d+),"ts":([0-9.]+),"boot":"(\w+)"')
_HEADER_BYTES = re.compile(_HEADER.pattern.encode())


class ProtocolViolation(Exception):
    """A client message the server will not accept; carries the close code to use."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Header(NamedTuple):
    type: str
    seq: int
    ts_ms: float
    boot: str


def encode(kind: str, seq: int, ts_ms: float, boot: str, body: dict[str, Any]) -> str:
    """One server message: the fixed header first, then the body's keys."""
    head = json.dumps({"type": kind, "seq": seq, "ts": round(ts_ms, 3), "boot": boot}, **_COMPACT)
    if not body:
        return head
    return head[:-1] + "," + json.dumps(body, **_COMPACT)[1:]


_COMPACT: dict[str, Any] = {"separators": (",", ":"), "ensure_ascii": True}


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one unfragmented, unmasked RFC 6455 text frame (a server's)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


def peek_header(message: str | bytes) -> Header | None:
    """Read a server message's header without decoding its body (None if it has none).
    A load client calls this for every message it receives, so it matches the bytes
    as they came."""
    if isinstance(message, str):
        m = _HEADER.match(message)
        if m is None:
            return None
        return Header(m[1], int(m[2]), float(m[3]), m[4])
    b = _HEADER_BYTES.match(message)
    if b is None:
        return None
    return Header(b[1].decode(), int(b[2]), float(b[3]), b[4].decode())


def parse_client_message(message: str | bytes) -> str:
    """Validate a client -> server message and return its type (``resync`` or ``ping``).

    Raises :class:`ProtocolViolation` with the close code for the connection."""
    if isinstance(message, bytes):
        raise ProtocolViolation(CLOSE_UNSUPPORTED_DATA, "binary messages are not accepted")
    try:
        data = json.loads(message)
    except ValueError:
        raise ProtocolViolation(CLOSE_POLICY_VIOLATION, "malformed JSON") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in ("resync", "ping"):
        raise ProtocolViolation(CLOSE_POLICY_VIOLATION, f"unknown message type {kind!r}")
    return kind


@dataclass
class GapTracker:
    """Sequence bookkeeping of one client: counts messages missed.

    A snapshot (or a new board ``boot``) starts over, so the gap a reconnect explains
    is never counted as missed; a resumed connection goes on counting from before."""

    boot: str | None = None
    last_seq: int | None = None
    missed: int = 0
    received: int = 0

    def reset(self) -> None:
        self.boot = None
        self.last_seq = None

    def see(self, header: Header) -> int:
        """Account for one message; returns how many were missed right before it."""
        self.received += 1
        if header.type == "snapshot" or header.boot != self.boot or self.last_seq is None:
            self.boot, self.last_seq = header.boot, header.seq
            return 0
        gap = header.seq - self.last_seq - 1
        if header.seq > self.last_seq:
            self.last_seq = header.seq
        if gap > 0:
            self.missed += gap
            return gap
        return 0


def resume_from(path: str) -> tuple[str, int] | None:
    """The ``(boot, seq)`` a WebSocket request asks to resume after, if any."""
    values = parse_qs(urlsplit(path).query).get("resume")
    match = _RESUME.fullmatch(values[0]) if values else None
    return (match.group(1), int(match.group(2))) if match else None


def resume_query(boot: str | None, seq: int | None) -> str:
    """The query parameter that asks to resume after ``seq`` of board ``boot``."""
    return "" if boot is None or seq is None else f"resume={boot}-{seq}"


def etag(boot: str, version: int) -> str:
    return f'"{boot}-{version}"'


def not_modified(if_none_match: str | None, current: str) -> bool:
    """True when the client's If-None-Match already names the current snapshot."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or current in tags or f"W/{current}" in tags


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_from(path: str, headers: dict[str, str] | Any) -> str | None:
    """The access token a request carries: ``?token=`` or ``Authorization: Bearer``."""
    values = parse_qs(urlsplit(path).query).get("token")
    if values:
        return values[0]
    auth = headers.get("Authorization") if headers is not None else None
    if auth and auth.startswith("Bearer "):
        return auth[len("Bearer ") :].strip()
    return None


def token_ok(expected: str | None, given: str | None) -> bool:
    """Constant-time token check; no token configured means loopback-only, so open."""
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def route(path: str) -> str:
    """Which endpoint a request path names: page, asset, snapshot, ws or missing."""
    p = urlsplit(path).path
    if p in ("/", "/index.html"):
        return "page"
    if p in ("/dashboard.js", "/dashboard.css"):
        return "asset"
    if p == "/api/snapshot":
        return "snapshot"
    if p == "/ws":
        return "ws"
    return "missing"


def backoff_s(
    attempt: int, base_s: float = 0.1, cap_s: float = 2.0, rng: random.Random | None = None
) -> float:
    """Reconnect delay before attempt ``attempt`` (0-based): exponential, capped, with
    "full jitter" so a thousand clients that lost the server together do not come back
    together. The page uses the same formula in JavaScript."""
    return (rng or random).uniform(0, min(cap_s, base_s * 2 ** min(attempt, 30)))
