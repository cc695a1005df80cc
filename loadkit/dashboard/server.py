"""The dashboard server: one port for the WebSocket stream, the polling API and the page.

Built on ``websockets``' asyncio API. ``process_request`` answers plain HTTP (the page,
its two assets, ``/api/snapshot``, 404s, refused tokens) before any WebSocket handshake,
so one listener serves everything. The broadcast writes one encoded message to every
connection without awaiting any of them; a connection whose unsent data has grown past
``max_buffer_bytes`` is a slow or stuck client and is dropped (and counted) instead of
being allowed to grow the server's memory or delay the others.

All the deciding (routing, tokens, messages, diffs, ETags) is in the pure modules
:mod:`.protocol` and :mod:`.board`; this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import inspect
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from loadkit.dashboard import protocol
from loadkit.dashboard.board import AgentBoard
from loadkit.dashboard.sources import Tick
from loadkit.errors import UsageError

_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
_CSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:"


@dataclass(frozen=True)
class ServerConfig:
    """Limits and addresses. Compression is off: per websockets' own figures deflate
    costs ~3x memory per connection and ~4x broadcast time, and the payload is small."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_connections: int = 10_000
    max_message_bytes: int = protocol.MAX_CLIENT_MESSAGE_BYTES
    max_buffer_bytes: int = 256 * 1024  # unsent bytes before a client counts as stuck
    send_buffer_bytes: int = 128 * 1024  # kernel send buffer per connection (SO_SNDBUF)
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    backlog: int = 4096  # a thousand clients reconnecting at once must not overflow it
    compression: str | None = None

    def check(self) -> None:
        if not protocol.is_loopback(self.host) and not self.token:
            raise UsageError(
                f"binding {self.host} exposes the dashboard beyond this machine; "
                "an access token is required (--token or LOADKIT_DASHBOARD_TOKEN)"
            )
        if self.max_connections < 1 or self.max_buffer_bytes < 1:
            raise UsageError("max_connections and max_buffer_bytes must be >= 1")


def _read_asset(name: str) -> bytes:
    return resources.files("loadkit.dashboard").joinpath("static", name).read_bytes()


class DashboardServer:
    """Serves one :class:`AgentBoard`; :meth:`publish` ingests a tick and broadcasts it."""

    def __init__(self, config: ServerConfig | None = None, board: AgentBoard | None = None):
        self.config = config or ServerConfig()
        self.config.check()
        self.board = board or AgentBoard()
        self.boot = secrets.token_hex(3)
        self.seq = 0
        self.last_ts_ms = time.time() * 1000
        self.clients: set[ServerConnection] = set()
        self.accept_websockets = True
        self.slow_clients_dropped = 0
        self.refused: Counter[str] = Counter()  # reason -> requests/connections refused
        self.polls = 0
        self._assets = {path: (_read_asset(name), ctype) for path, (name, ctype) in _ASSETS.items()}
        self._snapshot: tuple[int, bytes] | None = None
        self._server: Server | None = None
        self.port = self.config.port

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> DashboardServer:
        c = self.config
        self._server = await serve(
            self._handler,
            c.host,
            c.port,
            process_request=self._process_request,
            compression=c.compression,
            max_size=c.max_message_bytes,
            max_queue=4,
            ping_interval=c.ping_interval_s,
            ping_timeout=c.ping_timeout_s,
            backlog=c.backlog,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and close every connection (code 1001, going away)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> DashboardServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        wildcard = self.config.host in ("0.0.0.0", "", "::")
        host = "127.0.0.1" if wildcard else self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    # -- publishing ----------------------------------------------------------------
    def publish(self, tick: Tick, now_s: float | None = None) -> int:
        """Ingest one tick from a source and broadcast the update; returns its size."""
        board = self.board
        delta = (
            board.replace(tick.full)
            if tick.full is not None
            else board.update(tick.changed, tick.removed)
        )
        point = board.set_stats(tick.stats, time.monotonic() if now_s is None else now_s)
        self.seq += 1
        self.last_ts_ms = time.time() * 1000
        body = board.update_body(delta, point)
        message = protocol.encode("update", self.seq, self.last_ts_ms, self.boot, body).encode()
        self._broadcast(message)
        return len(message)

    def _broadcast(self, message: bytes) -> None:
        healthy = []
        for conn in list(self.clients):
            if conn.transport.get_write_buffer_size() > self.config.max_buffer_bytes:
                self.drop(conn)
            else:
                healthy.append(conn)
        broadcast(healthy, message, text=True)

    def drop(self, conn: ServerConnection) -> None:
        """Drop a stuck client at once: it cannot read a close frame anyway."""
        self.slow_clients_dropped += 1
        self.clients.discard(conn)
        conn.transport.abort()

    def drop_all(self) -> int:
        """Abort every WebSocket connection (as a network failure would); returns how many."""
        conns = list(self.clients)
        self.clients.clear()
        for conn in conns:
            conn.transport.abort()
        return len(conns)

    async def run(
        self,
        tick: Callable[[float], Tick | Awaitable[Tick]],
        interval_s: float,
        duration_s: float,
    ) -> None:
        """Publish ``tick(seconds since the last)`` (a plain or async callable) every
        ``interval_s`` for ``duration_s``."""
        start = last = time.monotonic()
        due = start
        while time.monotonic() - start < duration_s:
            now = time.monotonic()
            result = tick(now - last)
            self.publish(await result if inspect.isawaitable(result) else result, now)
            last = now
            due += interval_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    def snapshot_message(self) -> bytes:
        """The full board as a ``snapshot`` message, encoded once per broadcast."""
        if self._snapshot is None or self._snapshot[0] != self.seq:
            body = self.board.snapshot_body()
            text = protocol.encode("snapshot", self.seq, self.last_ts_ms, self.boot, body)
            self._snapshot = (self.seq, text.encode())
        return self._snapshot[1]

    # -- HTTP ----------------------------------------------------------------------
    def _response(
        self, status: http.HTTPStatus, body: bytes, ctype: str, extra: dict | None = None
    ) -> Response:
        headers = Headers()
        headers["Content-Type"] = ctype
        headers["Content-Length"] = str(len(body))
        headers["Cache-Control"] = "no-cache"
        headers["Connection"] = "close"
        for key, value in (extra or {}).items():
            headers[key] = value
        return Response(status.value, status.phrase, headers, body)

    def _text(self, status: http.HTTPStatus, text: str) -> Response:
        return self._response(status, text.encode(), "text/plain; charset=utf-8")

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        kind = protocol.route(request.path)
        if kind == "missing":
            self.refused["not_found"] += 1
            return self._text(http.HTTPStatus.NOT_FOUND, "not found\n")
        given = protocol.token_from(request.path, request.headers)
        # The script and stylesheet are the same public code for everyone (and a browser
        # fetches them without the page's query string); the page, the snapshot and the
        # stream carry data and need the token.
        if kind != "asset" and not protocol.token_ok(self.config.token, given):
            self.refused["token"] += 1
            return self._text(http.HTTPStatus.UNAUTHORIZED, "missing or wrong access token\n")
        if kind == "ws":
            if not self.accept_websockets:
                self.refused["ws_disabled"] += 1
                return self._text(http.HTTPStatus.SERVICE_UNAVAILABLE, "WebSocket disabled\n")
            if len(self.clients) >= self.config.max_connections:
                self.refused["too_many"] += 1
                return self._text(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
            return None  # go on with the WebSocket handshake
        if kind == "snapshot":
            self.polls += 1
            tag = protocol.etag(self.boot, self.seq)
            if protocol.not_modified(request.headers.get("If-None-Match"), tag):
                return self._response(http.HTTPStatus.NOT_MODIFIED, b"", "application/json")
            return self._response(
                http.HTTPStatus.OK, self.snapshot_message(), "application/json", {"ETag": tag}
            )
        body, ctype = self._assets[request.path.split("?", 1)[0]]
        return self._response(http.HTTPStatus.OK, body, ctype, {"Content-Security-Policy": _CSP})

    # -- WebSocket -------------------------------------------------------------------
    async def _handler(self, conn: ServerConnection) -> None:
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.send_buffer_bytes)
        self.clients.add(conn)
        try:
            await conn.send(self.snapshot_message(), text=True)
            async for message in conn:
                try:
                    kind = protocol.parse_client_message(message)
                except protocol.ProtocolViolation as exc:
                    self.refused["bad_message"] += 1
                    await conn.close(exc.code, exc.reason)
                    return
                if kind == "resync":
                    await conn.send(self.snapshot_message(), text=True)
                else:
                    pong = protocol.encode("pong", self.seq, time.time() * 1000, self.boot, {})
                    await conn.send(pong)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(conn)
            sent = conn.protocol.close_sent
            if sent is not None and sent.code == 1009:  # websockets enforced max_size
                self.refused["oversize"] += 1
