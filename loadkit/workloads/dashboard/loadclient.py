"""The dashboard's load generator: many WebSocket clients, polling clients, stuck clients.

It runs in processes of its own (:func:`client_process`, started by
:mod:`.scenarios` with multiprocessing's ``spawn``), so the clients' CPU time and
memory never show up as the server's. The parent steers it with small command dicts
over a :class:`multiprocessing.connection.Connection`; each command gets one reply.

Latency is the publisher's timestamp (wall clock, in the message header) to receipt
here, per message per client; all processes read the same system clock. A client
reconnects with exponential backoff and full jitter (:func:`.protocol.backoff_s`),
asking to resume after the last update it applied, and counts sequence gaps as missed
messages (a snapshot starts over).

Every client keeps its own copy of the board, as the page does: a snapshot, then each
delta and keyframe applied to it. All clients of a process receive the same bytes, so
each distinct message is decoded once per process (:class:`Decoder`, into numpy arrays)
and applied per client with one indexed assignment. At the end every client reports a
digest of its board, which the parent compares with the publisher's board at the same
update.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import resource
import socket
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException
from websockets.protocol import State

from loadkit.common.errors import UsageError
from loadkit.runtime import lifetime
from loadkit.runtime.child_messages import GONE, OK, receive, send, send_error
from loadkit.workloads.dashboard.board import CODES
from loadkit.workloads.dashboard.protocol import (
    GapTracker,
    Header,
    backoff_s,
    peek_header,
    resume_query,
)
from loadkit.workloads.dashboard.server import WORKER_HEADER
from loadkit.workloads.dashboard.streamclient import HandshakeFailed, StreamClient, open_stream

STUCK_RCVBUF = 4096  # a stuck client's receive buffer: fills after a message or two
DECODED_KEPT = 16  # distinct messages kept decoded (clients are at most a few apart)
_RESYNC = '{"type":"resync"}'


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


def board_digest(codes: bytes | bytearray | np.ndarray) -> str:
    """What two copies of a board compare by: a hash of every slot's state letter."""
    data = codes.tobytes() if isinstance(codes, np.ndarray) else bytes(codes)
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass(frozen=True)
class Decoded:
    """One server message, ready to apply: ``full`` replaces every slot's letter,
    otherwise ``slots`` get ``letters``; ``ids`` renumber the slots."""

    ids: list[str] | None = None
    full: np.ndarray | None = None
    slots: np.ndarray | None = None
    letters: np.ndarray | None = None


def decode(message: str | bytes) -> Decoded:
    body = json.loads(message)
    if body.get("type") == "snapshot":
        ids = body["ids"]
        agents = body["agents"]
        text = "".join(CODES[agents[a]] for a in ids)
        return Decoded(ids=ids, full=np.frombuffer(text.encode("ascii"), np.uint8))
    if "k" in body:
        return Decoded(ids=body.get("ids"), full=np.frombuffer(body["k"].encode(), np.uint8))
    if "s" in body:
        slots = np.asarray(body["s"], dtype=np.int64)
    else:
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(body.get("m", "")), np.uint8))
        slots = np.flatnonzero(bits)
    return Decoded(slots=slots, letters=np.frombuffer(body.get("c", "").encode(), np.uint8))


class Decoder:
    """Decodes each distinct message once for all the clients of a process."""

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple[str, str, int], Decoded] = OrderedDict()

    def get(self, header: Header, message: str | bytes) -> Decoded:
        key = (header.type, header.boot, header.seq)
        found = self._kept.get(key)
        if found is None:
            found = self._kept[key] = decode(message)
            if len(self._kept) > DECODED_KEPT:
                self._kept.popitem(last=False)
        return found


@dataclass
class Shared:
    """Everything the clients of one process record."""

    recording: bool = True
    # server process -> latencies of the messages its clients received, and each
    # message's sequence number (which round it was: figures are taken round by round)
    latencies_ms: dict[str, array] = field(default_factory=dict)
    latency_seqs: dict[str, array] = field(default_factory=dict)
    # (boot, seq) -> [publisher ts, last receipt]: when the last client had each update
    last_receipt: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    decoder: Decoder = field(default_factory=Decoder)
    resumed: int = 0  # connections that went on without a snapshot


class WsClient:
    """One dashboard viewer: connects, reads every message, reconnects when dropped."""

    def __init__(self, url: str, shared: Shared) -> None:
        self.url = url
        self.shared = shared
        self.gaps = GapTracker()
        self.connected_at: list[float] = []  # wall ms of the first message of each connection
        self.first_snapshot = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.ws: StreamClient | None = None
        self.fresh = True  # no message yet on the current connection
        self.worker = "0"  # the server process of the current connection
        self.codes: np.ndarray | None = None  # the board: each slot's state letter
        self.ids: list[str] = []
        self.applied: int | None = None  # seq of the last update in self.codes

    def _url(self) -> str:
        """The stream's URL, asking to resume after the last update applied."""
        resume = resume_query(self.gaps.boot, self.applied) if self.codes is not None else ""
        if not resume:
            return self.url
        return self.url + ("&" if "?" in self.url else "?") + resume

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            with contextlib.suppress(OSError, TimeoutError, HandshakeFailed):
                self.fresh = True
                ws = self.ws = await open_stream(self._url(), self._message, timeout_s=10)
                attempt = 0
                await ws.closed
            if stop.is_set():
                break
            await asyncio.sleep(backoff_s(attempt))
            attempt += 1

    def _apply(self, header: Header, message: bytes) -> bool:
        """Apply a snapshot or an update to this client's board; False: it did not fit."""
        decoded = self.shared.decoder.get(header, message)
        if decoded.ids is not None:
            self.ids = decoded.ids
        if decoded.full is not None:
            if len(decoded.full) != len(self.ids):
                return False
            self.codes = decoded.full.copy()
        else:
            codes, slots = self.codes, decoded.slots
            assert slots is not None
            if codes is None or (slots.size and slots[-1] >= codes.size):
                return False
            codes[slots] = decoded.letters
        self.applied = header.seq
        return True

    def _message(self, ws: StreamClient, message: bytes) -> None:
        """One message of the stream, as it arrives."""
        received = now_ms()
        shared = self.shared
        header = peek_header(message)
        if header is None:
            return
        if self.fresh:
            self.fresh = False
            self.ws = ws
            self.worker = ws.headers.get(WORKER_HEADER.lower()) or "0"
            self.connected_at.append(received)
            self.first_snapshot.set()
            shared.resumed += header.type == "resumed"
        if header.type not in ("snapshot", "update"):
            return
        last = self.gaps.last_seq
        if header.type == "update":
            if header.boot == self.gaps.boot and last is not None and header.seq <= last:
                return  # already applied (sent again on a resume)
            if self.codes is None and last is not None:
                self.gaps.see(header)
                return  # a snapshot is on its way
        gap = self.gaps.see(header)
        if gap or not self._apply(header, message):
            self.codes = None
            if self.ws is not None:
                self.ws.send_text(_RESYNC)
            return
        if header.type == "update" and shared.recording:
            latencies = shared.latencies_ms.get(self.worker)
            if latencies is None:
                latencies = shared.latencies_ms[self.worker] = array("d")
                shared.latency_seqs[self.worker] = array("q")
            latencies.append(received - header.ts_ms)
            shared.latency_seqs[self.worker].append(header.seq)
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
    started_ms: list[float] = field(default_factory=list)  # wall time each poll began
    refresh_s: list[float] = field(default_factory=list)  # age of new data when seen
    not_modified: int = 0
    errors: int = 0


async def poller(
    host: str, port: int, interval_s: float, stats: PollStats, stop: asyncio.Event
) -> None:
    """A polling viewer: GET the snapshot about every ``interval_s`` with the last ETag.

    The pause is drawn afresh each time (0.5x to 1.5x the interval): a fixed period
    would meet the board's rounds at the same few phases all run long (a 0.5 s poll
    and a 0.2 s round line up every second), so a run's tail would depend on where its
    pollers happened to start rather than on how the server answers."""
    etag = None
    last = None
    rng = random.Random()
    while not stop.is_set():
        start = time.perf_counter()
        started_ms = now_ms()
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
                stats.started_ms.append(started_ms)
            stats.not_modified += status == 304
            stats.errors += status not in (200, 304)
            if header is not None and (header.boot, header.seq) != last:
                stats.refresh_s.append((now_ms() - header.ts_ms) / 1000)
        if header is not None:
            last = (header.boot, header.seq)
        pause = max(0.0, interval_s * rng.uniform(0.5, 1.5) - elapsed_ms / 1000)
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
                c.ws.abort()
        tasks = [c.task for c in self.clients if c.task] + self.background
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=15)
        await self.cmd_wake_stuck()
        return {
            "latencies_ms": {w: a.tolist() for w, a in self.shared.latencies_ms.items()},
            "latency_seqs": {w: a.tolist() for w, a in self.shared.latency_seqs.items()},
            "boards": [
                [c.applied, board_digest(c.codes) if c.codes is not None else ""]
                for c in self.clients
            ],
            "workers": [c.worker for c in self.clients],
            "resumed": self.shared.resumed,
            "last_receipt": [
                [b, s, ts, last] for (b, s), (ts, last) in self.shared.last_receipt.items()
            ],
            "messages_missed": sum(c.gaps.missed for c in self.clients),
            "messages_received": sum(c.gaps.received for c in self.clients),
            "poll_latencies_ms": self.poll_stats.latencies_ms,
            "poll_started_ms": self.poll_stats.started_ms,
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
