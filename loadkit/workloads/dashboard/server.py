"""The dashboard server: one port for the WebSocket stream, the polling API and the page.

Built on ``websockets``' asyncio API. ``process_request`` answers plain HTTP (the page,
its two assets, ``/api/snapshot``, 404s, refused tokens) before any WebSocket handshake,
so one listener serves everything. Before anything else it refuses what no dashboard
viewer sends: another method than GET (405), a malformed request target or a repeated
header (400), a ``Host`` the server is not known by (421, DNS rebinding) and an
``Origin`` of a foreign web page (403), see :mod:`.access`.

The messages come from the board's one publisher (:mod:`.publisher`): from one in this
process (:meth:`DashboardServer.publish`, a single server), or through Redis from
another process when several server processes share the clients
(:meth:`DashboardServer.deliver`, see :mod:`.fanout`); either way the server forwards
the publisher's bytes unchanged and keeps its own copy of the board for the snapshots
new viewers get. It also keeps the last :data:`RESUME_WINDOW` updates, so a viewer that
reconnects with ``?resume=<boot>-<seq>`` (to this process or another one of the same
board) gets the updates it lacks instead of a snapshot.

The broadcast writes one encoded message to every connection without awaiting any of
them: first to the connections with nothing unsent, oldest first, then to those with a
backlog. A sweep every ``stall_s / 4`` reads each connection's unsent bytes (the kernel's
send queue plus the transport's buffer); one that took nothing for ``stall_s`` has
stopped reading and is dropped (and counted) with a reset, and so is one whose buffer
in this process passes ``max_buffer_bytes``, instead of letting it grow the server's
memory or cost every later broadcast a write; see :mod:`.backpressure`.

All the deciding (routing, access, tokens, messages, diffs, ETags, backlogs) is in the
pure modules :mod:`.protocol`, :mod:`.access`, :mod:`.board` and :mod:`.backpressure`;
this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import http
import json
import socket
import struct
import sys
import termios
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

import psutil
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from loadkit.common.errors import UsageError
from loadkit.workloads.dashboard import protocol
from loadkit.workloads.dashboard.access import WILDCARDS, AccessPolicy, parse_origin, split_target
from loadkit.workloads.dashboard.backpressure import StallWatch
from loadkit.workloads.dashboard.board import AgentBoard
from loadkit.workloads.dashboard.publisher import BoardPublisher, run_ticks, snapshot_message
from loadkit.workloads.dashboard.sources import Tick

_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
_CSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:"
# Headers that must appear at most once: two values would leave it open which one counts.
_SINGLE_HEADERS = ("Host", "Origin", "Authorization", "If-None-Match")
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST at once
_INT = bytes(4)  # room for the C int an ioctl returns
RESUME_WINDOW = 64  # updates kept for viewers that reconnect and resume
WORKER_HEADER = "X-Dashboard-Worker"  # which server process answered (load tests read it)


@dataclass(frozen=True)
class ServerConfig:
    """Limits and addresses. Compression is off: per websockets' own figures deflate
    costs ~3x memory per connection and ~4x broadcast time, and the payload is small."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_connections: int = 10_000
    max_message_bytes: int = protocol.MAX_CLIENT_MESSAGE_BYTES
    max_buffer_bytes: int = 256 * 1024  # bytes buffered in this process before a drop
    stall_s: float = 0.4  # a client that takes no bytes this long while some wait is stuck
    send_buffer_bytes: int = 128 * 1024  # kernel send buffer per connection (SO_SNDBUF)
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    backlog: int = 4096  # a thousand clients reconnecting at once must not overflow it
    compression: str | None = None
    allow_origins: tuple[str, ...] = ()  # web origins allowed besides the server's own
    reuse_port: bool = False  # several server processes listen on one port (SO_REUSEPORT)
    worker: str | None = None  # this process's name among them, told in WORKER_HEADER

    def check(self) -> None:
        if not protocol.is_loopback(self.host) and not self.token:
            raise UsageError(
                f"binding {self.host} exposes the dashboard beyond this machine; "
                "an access token is required (--token or LOADKIT_DASHBOARD_TOKEN)"
            )
        if self.max_connections < 1 or self.max_buffer_bytes < 1:
            raise UsageError("max_connections and max_buffer_bytes must be >= 1")
        if not self.stall_s > 0:
            raise UsageError(f"stall_s must be > 0, got {self.stall_s}")
        for origin in self.allow_origins:
            try:
                parse_origin(origin)
            except ValueError as exc:
                raise UsageError(str(exc)) from None


def _kernel_unsent(sock: socket.socket) -> int:
    """Bytes in a socket's kernel send queue, sent or not, that the peer has not
    acknowledged (TIOCOUTQ); 0 for a closed socket."""
    fd = sock.fileno()
    if fd < 0:
        return 0
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.TIOCOUTQ, _INT), sys.byteorder)
    except OSError:
        return 0


def _unsent(conn: ServerConnection, sock: socket.socket | None) -> int:
    """Bytes handed to a connection that its peer has not taken yet."""
    kernel = _kernel_unsent(sock) if sock is not None else 0
    return conn.transport.get_write_buffer_size() + kernel


def _read_asset(name: str) -> bytes:
    return resources.files("loadkit.workloads.dashboard").joinpath("static", name).read_bytes()


def _local_addresses() -> list[str]:
    """This machine's IP addresses: the names a wildcard-bound server is reached by."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6) and "%" not in address.address:
                found.append(address.address)
    return found


class DashboardServer:
    """Serves one :class:`AgentBoard`: :meth:`publish` ingests a tick and broadcasts it
    (this process owns the board), :meth:`deliver` broadcasts an update made by the
    board's publisher elsewhere (this process follows it)."""

    def __init__(self, config: ServerConfig | None = None, board: AgentBoard | None = None):
        self.config = config or ServerConfig()
        self.config.check()
        self.board = board or AgentBoard()
        self.publisher = BoardPublisher(self.board)
        self.boot = self.publisher.boot  # the board's id: the same in every server of it
        self.seq = 0
        self.last_ts_ms = time.time() * 1000
        self.recent: deque[tuple[int, bytes]] = deque(maxlen=RESUME_WINDOW)
        self.resumed = 0  # connections that resumed instead of taking a snapshot
        self._wrote = False  # bytes written since the last sweep looked at everyone
        self.write_ms: deque[float] = deque(maxlen=1000)  # time to write each broadcast
        # Connection -> its socket. Insertion-ordered: the broadcast reaches long-standing
        # viewers first, so a flood of new connections cannot push them back.
        self.clients: dict[ServerConnection, socket.socket | None] = {}
        self.accept_websockets = True
        self.slow_clients_dropped = 0
        self.watch = StallWatch(self.config.stall_s)
        self.access: AccessPolicy | None = None
        self.refused: Counter[str] = Counter()  # reason -> requests/connections refused
        self.polls = 0
        self._assets = {path: (_read_asset(name), ctype) for path, (name, ctype) in _ASSETS.items()}
        self._snapshot: tuple[str, int, bytes] | None = None
        self._server: Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
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
            process_response=self._process_response if c.worker is not None else None,
            reuse_port=c.reuse_port or None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        wildcard = c.host.strip("[]") in WILDCARDS
        self.access = AccessPolicy.build(
            c.host, self.port, c.allow_origins, _local_addresses() if wildcard else ()
        )
        self._sweeper = asyncio.ensure_future(self._sweep())
        return self

    async def close(self) -> None:
        """Stop listening and close every connection (code 1001, going away)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
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
        publisher = self.publisher
        message = publisher.publish(tick, now_s)
        self.seq, self.last_ts_ms = publisher.seq, publisher.ts_ms
        self._send(message)
        return len(message)

    def deliver(self, message: bytes) -> bool:
        """Follow the board's publisher: apply and broadcast its next update (an older
        one is ignored). False when this one does not follow on from what this server
        has (a gap, another board): then it needs the current snapshot (:meth:`load`)."""
        header = protocol.peek_header(message)
        if header is None:
            return True
        if header.type == "snapshot":
            self.load(message)
            return True
        if header.boot == self.boot and header.seq <= self.seq:
            return True
        if header.boot != self.boot or header.seq != self.seq + 1:
            return False
        try:
            self.board.follow(json.loads(message))
        except (ValueError, KeyError, TypeError):
            return False
        self.seq, self.last_ts_ms = header.seq, header.ts_ms
        self._send(message)
        return True

    def load(self, snapshot: bytes) -> None:
        """Take the board a snapshot message of its publisher describes; viewers already
        connected get it too (they may have missed what came between)."""
        header = protocol.peek_header(snapshot)
        if header is None or header.type != "snapshot":
            raise ValueError("not a snapshot message")
        self.board.load(json.loads(snapshot))
        self.boot, self.seq, self.last_ts_ms = header.boot, header.seq, header.ts_ms
        self.recent.clear()
        if self.clients:
            self._broadcast(self.snapshot_message())

    def _send(self, message: bytes) -> None:
        self.recent.append((self.seq, message))
        self._broadcast(message)

    def missed_since(self, boot: str, seq: int) -> list[bytes] | None:
        """The updates after ``seq`` of board ``boot``, when this server still has all of
        them (none when it is the latest); None when it cannot resume that viewer."""
        if boot != self.boot or not 0 <= seq <= self.seq:
            return None
        if seq == self.seq:
            return []
        if not self.recent or self.recent[0][0] > seq + 1:
            return None
        return [message for s, message in self.recent if s > seq]

    def _broadcast(self, message: bytes) -> None:
        """Hand ``message`` to every connection without waiting for any: those with
        nothing unsent first, then those with a backlog (their count of queued bytes
        grows); one holding more than ``max_buffer_bytes`` here is dropped."""
        watch = self.watch
        limit = self.config.max_buffer_bytes
        ready: list[ServerConnection] = []
        behind: list[ServerConnection] = []
        for conn in list(self.clients):
            if conn.transport.get_write_buffer_size() > limit:
                self.drop(conn)
            else:
                (behind if conn in watch else ready).append(conn)
        # The frame is the same for every viewer (a server's frames are not masked), so
        # it is made once and written whole: websockets writes its own frames (the
        # snapshot, pongs, pings, close) whole too, so they never interleave.
        frame = protocol.text_frame(message)
        start = time.perf_counter()
        for conns in (ready, behind):
            for conn in conns:
                if conn.protocol.state is State.OPEN:
                    conn.transport.write(frame)
        self.write_ms.append((time.perf_counter() - start) * 1000)
        for conn in behind:
            watch.queued(conn, len(frame))
        self._wrote = True

    def sweep(self, now: float | None = None) -> int:
        """Drop every connection that took no bytes for ``stall_s`` while some waited
        for it; returns how many. Only after a write can a connection without a backlog
        have one, so between broadcasts only those with a backlog are looked at."""
        now = time.monotonic() if now is None else now
        watch = self.watch
        clients = self.clients
        if self._wrote:
            self._wrote = False
            looked = list(clients.items())
        else:
            looked = [(conn, clients[conn]) for conn in watch.clients() if conn in clients]
        stuck = [conn for conn, sock in looked if watch.look(conn, _unsent(conn, sock), now)]
        for conn in stuck:
            self.drop(conn)
        return len(stuck)

    async def _sweep(self) -> None:
        period = self.config.stall_s / 4  # dropped within 1.25 stall_s plus loop lag
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def drop(self, conn: ServerConnection) -> None:
        """Drop a stuck client at once with a reset: it cannot read a close frame anyway,
        and a plain close would leave the kernel holding its unsent bytes, probing a
        window that never opens."""
        self.watch.forget(conn)
        if conn in self.clients:
            del self.clients[conn]
            self.slow_clients_dropped += 1
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        conn.transport.abort()

    def drop_all(self) -> int:
        """Abort every WebSocket connection (as a network failure would); returns how many."""
        conns = list(self.clients)
        self.clients.clear()
        for conn in conns:
            self.watch.forget(conn)
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
        await run_ticks(self.publish, tick, interval_s, duration_s)

    def snapshot_message(self) -> bytes:
        """The full board as a ``snapshot`` message, encoded once per broadcast."""
        if self._snapshot is None or self._snapshot[:2] != (self.boot, self.seq):
            message = snapshot_message(self.board, self.seq, self.last_ts_ms, self.boot)
            self._snapshot = (self.boot, self.seq, message)
        return self._snapshot[2]

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

    def _refuse_early(self, request: Request) -> Response | None:
        """Refuse what no dashboard viewer sends, before routing or tokens (see
        :mod:`.access`); None when the request may go on."""
        if request.method != "GET":
            self.refused["method"] += 1
            response = self._text(http.HTTPStatus.METHOD_NOT_ALLOWED, "only GET is served\n")
            response.headers["Allow"] = "GET"
            return response
        if split_target(request.path) is None:
            self.refused["bad_request"] += 1
            return self._text(http.HTTPStatus.BAD_REQUEST, "malformed request target\n")
        headers = request.headers
        for name in _SINGLE_HEADERS:
            if len(headers.get_all(name)) > 1:
                self.refused["bad_request"] += 1
                return self._text(http.HTTPStatus.BAD_REQUEST, f"more than one {name} header\n")
        access = self.access
        assert access is not None, "started servers only"
        if "Host" not in headers:
            self.refused["bad_request"] += 1
            return self._text(http.HTTPStatus.BAD_REQUEST, "missing Host header\n")
        if not access.host_ok(headers["Host"]):
            self.refused["host"] += 1
            return self._text(http.HTTPStatus.MISDIRECTED_REQUEST, "unknown Host\n")
        if not access.origin_ok(headers.get("Origin")):
            self.refused["origin"] += 1
            return self._text(http.HTTPStatus.FORBIDDEN, "cross-origin request refused\n")
        return None

    def _process_response(
        self, conn: ServerConnection, request: Request, response: Response
    ) -> Response:
        assert self.config.worker is not None
        response.headers[WORKER_HEADER] = self.config.worker
        return response

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        refused = self._refuse_early(request)
        if refused is not None:
            return refused
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
        body, ctype = self._assets[request.path.partition("?")[0]]
        return self._response(http.HTTPStatus.OK, body, ctype, {"Content-Security-Policy": _CSP})

    # -- WebSocket -------------------------------------------------------------------
    async def _handler(self, conn: ServerConnection) -> None:
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.send_buffer_bytes)
        resume = protocol.resume_from(conn.request.path if conn.request else "")
        missed = self.missed_since(*resume) if resume is not None else None
        try:
            if missed is None:
                self.clients[conn] = sock
                await conn.send(self.snapshot_message(), text=True)
            else:
                # Written before any later broadcast can be: no await until it joins.
                # "resumed" tells the viewer at once that it goes on from its seq.
                assert resume is not None
                said = protocol.encode("resumed", resume[1], self.last_ts_ms, self.boot, {})
                conn.transport.write(protocol.text_frame(said.encode()))
                for message in missed:
                    conn.transport.write(protocol.text_frame(message))
                self.clients[conn] = sock
                self.resumed += 1
                self._wrote = True
            # A client that takes none of its first snapshot is stuck from this moment on.
            self.watch.look(conn, _unsent(conn, sock), time.monotonic())
            async for message in conn:
                try:
                    kind = protocol.parse_client_message(message)
                except protocol.ProtocolViolation as exc:
                    self.refused["bad_message"] += 1
                    await conn.close(exc.code, exc.reason)
                    return
                if kind == "resync":
                    reply = self.snapshot_message()
                else:
                    pong = protocol.encode("pong", self.seq, time.time() * 1000, self.boot, {})
                    reply = pong.encode()
                self.watch.queued(conn, len(reply))
                self._wrote = True
                await conn.send(reply, text=True)
        except ConnectionClosed:
            pass
        finally:
            self.clients.pop(conn, None)
            self.watch.forget(conn)
            sent = conn.protocol.close_sent
            if sent is not None and sent.code == 1009:  # websockets enforced max_size
                self.refused["oversize"] += 1
