"""The dashboard's load generator: many WebSocket clients, polling clients, stuck clients.

It runs in processes of its own (:func:`client_process`, started by
:mod:`.scenarios` with multiprocessing's ``spawn``), so the clients' CPU time and
memory never show up as the server's. The parent steers it with small command dicts
over a :class:`multiprocessing.connection.Connection`; each command gets one reply.

Latency is the server's send timestamp (wall clock, in the message header) to receipt
here, per message per client; both processes read the same system clock. A client
reconnects with exponential backoff and full jitter (:func:`.protocol.backoff_s`), and
counts sequence gaps on one connection as missed messages (a reconnect starts over).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, WebSocketException
from websockets.protocol import State

from loadkit import lifetime
from loadkit.child_messages import GONE, OK, receive, send, send_error
from loadkit.dashboard.protocol import GapTracker, backoff_s, peek_header
from loadkit.errors import UsageError

STUCK_RCVBUF = 4096  # a stuck client's receive buffer: fills after a message or two


def raise_nofile(needed: int) -> int:
    """Raise this process's soft open-file limit to the hard limit when ``needed`` is
    more than it allows; fail clearly when even the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and soft != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise UsageError(
            f"{needed} open files needed but the hard limit (ulimit -Hn) is {hard}; "
            "raise it or run with fewer clients"
        )
    return soft


def now_ms() -> float:
    return time.time() * 1000


@dataclass
class Shared:
    """Everything the clients of one process record."""

    recording: bool = True
    latencies_ms: array = field(default_factory=lambda: array("d"))
    # (boot, seq) -> [server ts, last receipt]: when the last client had each broadcast
    last_receipt: dict[tuple[str, int], list[float]] = field(default_factory=dict)


class WsClient:
    """One dashboard viewer: connects, reads every message, reconnects when dropped."""

    def __init__(self, url: str, shared: Shared) -> None:
        self.url = url
        self.shared = shared
        self.gaps = GapTracker()
        self.connected_at: list[float] = []  # wall ms of each snapshot on a new connection
        self.first_snapshot = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.ws: ClientConnection | None = None

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            with contextlib.suppress(OSError, TimeoutError, WebSocketException):
                async with connect(
                    self.url, compression=None, max_size=None, open_timeout=10, close_timeout=2
                ) as ws:
                    attempt = 0
                    self.gaps.reset()
                    self.ws = ws
                    await self._read(ws)
            if stop.is_set():
                break
            await asyncio.sleep(backoff_s(attempt))
            attempt += 1

    async def _read(self, ws: ClientConnection) -> None:
        shared = self.shared
        fresh = True
        async for message in ws:
            received = now_ms()
            header = peek_header(message)
            if header is None:
                continue
            if fresh and header.type == "snapshot":
                fresh = False
                self.connected_at.append(received)
                self.first_snapshot.set()
            self.gaps.see(header)
            if header.type == "update" and shared.recording:
                shared.latencies_ms.append(received - header.ts_ms)
                entry = shared.last_receipt.setdefault((header.boot, header.seq), [header.ts_ms, 0])
                entry[1] = max(entry[1], received)


async def stuck_client(url: str, stop: asyncio.Event) -> bool:
    """A client that connects and then reads nothing until ``stop``. Returns True when,
    woken up, it finds the server had dropped it (what backpressure should do)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STUCK_RCVBUF)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    async with connect(url, sock=sock, compression=None, max_size=None, max_queue=None) as ws:
        ws.transport.pause_reading()
        await stop.wait()
        ws.transport.resume_reading()  # read what is buffered; a dropped socket then ends
        with contextlib.suppress(TimeoutError, WebSocketException):
            async with asyncio.timeout(1.0):
                async for _ in ws:
                    pass
        return ws.state is State.CLOSED and ws.close_code != 1000


async def http_get(
    host: str, port: int, path: str, etag: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One GET on a new connection (the server closes after each plain HTTP response)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        if etag:
            lines.append(f"If-None-Match: {etag}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@dataclass
class PollStats:
    recording: bool = True  # off while the server restarts: refusals then are expected
    latencies_ms: list[float] = field(default_factory=list)
    refresh_s: list[float] = field(default_factory=list)  # age of new data when seen
    not_modified: int = 0
    errors: int = 0


async def poller(
    host: str, port: int, interval_s: float, stats: PollStats, stop: asyncio.Event
) -> None:
    """A polling viewer: GET the snapshot every ``interval_s`` with the last ETag."""
    etag = None
    last = None
    while not stop.is_set():
        start = time.perf_counter()
        try:
            status, headers, body = await http_get(host, port, "/api/snapshot", etag)
        except OSError:
            status, headers, body = 0, {}, b""
        elapsed_ms = (time.perf_counter() - start) * 1000
        header = peek_header(body) if status == 200 else None
        if status == 200:
            etag = headers.get("etag")
        if stats.recording:
            if status in (200, 304):
                stats.latencies_ms.append(elapsed_ms)
            stats.not_modified += status == 304
            stats.errors += status not in (200, 304)
            if header is not None and (header.boot, header.seq) != last:
                stats.refresh_s.append((now_ms() - header.ts_ms) / 1000)
        if header is not None:
            last = (header.boot, header.seq)
        pause = max(0.0, interval_s - elapsed_ms / 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)


class ClientSession:
    """The clients of one process and the commands the parent sends them."""

    def __init__(self, url: str) -> None:
        self.url = url
        hostport = url.split("//", 1)[1].split("/", 1)[0]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.shared = Shared()
        self.clients: list[WsClient] = []
        self.stop = asyncio.Event()
        self.poll_stats = PollStats()
        self.background: list[asyncio.Task[Any]] = []
        self.stuck: list[asyncio.Task[bool]] = []
        self.stuck_wake = asyncio.Event()

    async def cmd_connect(self, n: int, pollers: int, poll_interval_s: float) -> dict[str, Any]:
        start = time.perf_counter()
        new = [WsClient(self.url, self.shared) for _ in range(n)]
        for c in new:
            c.task = asyncio.ensure_future(c.run(self.stop))
        self.clients += new
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(c.first_snapshot.wait() for c in new)), timeout=30
            )
        connect_s = time.perf_counter() - start
        for _ in range(pollers):
            self.background.append(
                asyncio.ensure_future(
                    poller(self.host, self.port, poll_interval_s, self.poll_stats, self.stop)
                )
            )
        return {"connected": sum(c.first_snapshot.is_set() for c in new), "connect_s": connect_s}

    async def cmd_stuck(self, n: int) -> dict[str, Any]:
        self.stuck += [
            asyncio.ensure_future(stuck_client(self.url, self.stuck_wake)) for _ in range(n)
        ]
        await asyncio.sleep(0.2)
        return {"opened": n}

    async def cmd_wake_stuck(self) -> dict[str, Any]:
        """Wake the stuck clients: how many find the server had dropped them."""
        self.stuck_wake.set()
        results = await asyncio.gather(*self.stuck, return_exceptions=True)
        self.stuck = []
        return {"stuck_dropped_seen": sum(result is True for result in results)}

    async def cmd_pause(self) -> dict[str, Any]:
        """Stop recording: latency and polling figures are for the steady phase only."""
        self.shared.recording = self.poll_stats.recording = False
        return {}

    async def cmd_reconnect(self, since_ms: float, wait_s: float) -> dict[str, Any]:
        """Wait until every client has a snapshot from a connection opened after
        ``since_ms`` (the moment the server went away), or ``wait_s`` passed."""
        deadline = time.monotonic() + wait_s

        def back(c: WsClient) -> float | None:
            later = [t for t in c.connected_at if t > since_ms]
            return (later[0] - since_ms) / 1000 if later else None

        while time.monotonic() < deadline and any(back(c) is None for c in self.clients):
            await asyncio.sleep(0.05)
        times = [back(c) for c in self.clients]
        return {"reconnect_s": [t for t in times if t is not None], "clients": len(self.clients)}

    async def cmd_finish(self) -> dict[str, Any]:
        self.shared.recording = False
        self.stop.set()
        for c in self.clients:
            if c.ws is not None:
                c.ws.transport.abort()
        tasks = [c.task for c in self.clients if c.task] + self.background
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=15)
        await self.cmd_wake_stuck()
        return {
            "latencies_ms": self.shared.latencies_ms.tolist(),
            "last_receipt": [
                [b, s, ts, last] for (b, s), (ts, last) in self.shared.last_receipt.items()
            ],
            "messages_missed": sum(c.gaps.missed for c in self.clients),
            "messages_received": sum(c.gaps.received for c in self.clients),
            "poll_latencies_ms": self.poll_stats.latencies_ms,
            "poll_refresh_s": self.poll_stats.refresh_s,
            "poll_not_modified": self.poll_stats.not_modified,
            "poll_errors": self.poll_stats.errors,
        }


async def _serve_commands(conn: Connection, url: str) -> None:
    session = ClientSession(url)
    loop = asyncio.get_running_loop()
    handlers = {
        "connect": session.cmd_connect,
        "stuck": session.cmd_stuck,
        "wake_stuck": session.cmd_wake_stuck,
        "pause": session.cmd_pause,
        "reconnect": session.cmd_reconnect,
        "finish": session.cmd_finish,
    }
    while True:
        command = await loop.run_in_executor(None, receive, conn, 1.0)
        if command is None:
            continue
        if command is GONE:
            return  # the parent went away (it failed or timed out); nothing to report to
        reply = await handlers[command.kind](**command.body)
        send(conn, OK, reply)
        if command.kind == "finish":
            return


def client_process(conn: Connection, url: str, max_fds: int, parent: int | None = None) -> None:
    """Entry point of a load-client process (multiprocessing target); it dies with
    ``parent``, the process that started it."""
    lifetime.die_with_parent(parent)
    try:
        raise_nofile(max_fds)
        asyncio.run(_serve_commands(conn, url))
    except (UsageError, InvalidHandshake, OSError) as exc:
        with contextlib.suppress(OSError):
            send_error(conn, exc)
    finally:
        conn.close()
