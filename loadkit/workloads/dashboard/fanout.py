"""Many dashboard server processes, one board: fan-out through Redis Pub/Sub.

One server process writing every update to every viewer is bound by that process's
per-socket cost (about 30 us a socket on a shared core). So the work is split: one
publisher process owns the source and the board (:class:`RedisPublisher`) and publishes
each encoded update on a Redis channel, with the current snapshot in a key beside it;
``workers`` server processes (:func:`worker_process`) listen on the same port with
``SO_REUSEPORT`` (the kernel spreads new connections over them), follow the channel
(:func:`follow`) and forward the publisher's bytes unchanged to their own viewers. A
server process could as well run on another host, against the same Redis.

A follower that starts, or finds a gap in the channel (its subscription was cut),
loads the snapshot key and goes on from there; its viewers get that snapshot too.
Numbering belongs to the board, so a viewer moving to another process resumes (see
:mod:`.server`). The key and the channel live under the run's fleet prefix
(``{fleet:<run>-dashboard}:board:...``, :mod:`loadkit.redis_io.keyspace`), so the run's purge
and ``loadkit clean`` delete them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from loadkit.common.errors import UsageError
from loadkit.redis_io.connect import connect_async
from loadkit.redis_io.retry import RECONNECTS, TRANSIENT, Attempts, raise_if_cancelled
from loadkit.runs.metrics import settled_rss_bytes
from loadkit.runtime import lifetime
from loadkit.runtime.child_messages import (
    GONE,
    OK,
    READY,
    STOP,
    ChildFailed,
    expect,
    receive,
    send,
    send_error,
    stop_children,
)
from loadkit.workloads.dashboard.loadclient import raise_nofile
from loadkit.workloads.dashboard.publisher import BoardPublisher
from loadkit.workloads.dashboard.server import DashboardServer, ServerConfig
from loadkit.workloads.dashboard.sources import Tick

SNAPSHOT_TTL_S = 600  # a snapshot key a killed publisher left expires by itself
LOAD_WAIT_S = 10.0  # how long a follower waits for the publisher's first snapshot


@dataclass(frozen=True)
class BoardKeys:
    """Where one board lives on Redis."""

    snapshot: str
    updates: str

    @classmethod
    def for_run(cls, run_id: str) -> BoardKeys:
        prefix = "{fleet:" + run_id + "-dashboard}:board"
        return cls(prefix + ":snapshot", prefix + ":updates")


class RedisPublisher:
    """Publishes a board's updates on Redis: the update on the channel, the snapshot of
    the same moment in the key, in one round trip. While Redis does not answer the
    board goes on and updates are not sent (the followers then see a gap and reload the
    snapshot); silent for :data:`loadkit.redis_io.health.LOST_AFTER_S`, Redis is lost and
    :meth:`publish` raises :class:`loadkit.common.errors.RedisLost`."""

    def __init__(self, client: Any, keys: BoardKeys, publisher: BoardPublisher) -> None:
        self.client = client
        self.keys = keys
        self.publisher = publisher
        self.attempts = Attempts("dashboard publishing its board")
        self.errors = 0

    async def publish(self, tick: Tick, now_s: float | None = None) -> int:
        message = self.publisher.publish(tick, now_s)
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.snapshot, self.publisher.snapshot(), ex=SNAPSHOT_TTL_S)
        pipe.publish(self.keys.updates, message)
        try:
            await pipe.execute()
        except TRANSIENT as exc:
            self.errors += 1
            self.attempts.failed(exc)
            return 0
        self.attempts.ok()
        return len(message)


async def load_snapshot(server: DashboardServer, client: Any, keys: BoardKeys) -> None:
    """Give ``server`` the publisher's current snapshot (waiting a little for the first)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOAD_WAIT_S
    while (snapshot := await client.get(keys.snapshot)) is None:
        if loop.time() > deadline:
            raise UsageError(f"no dashboard board at {keys.snapshot} after {LOAD_WAIT_S:g} s")
        await asyncio.sleep(0.05)
    server.load(snapshot)


async def follow(
    server: DashboardServer, client: Any, keys: BoardKeys, loaded: asyncio.Event | None = None
) -> None:
    """Feed ``server`` the board's updates for ever: subscribe first, then load the
    snapshot, so no update falls between the two (older ones are skipped). A lost
    subscription is made again the same way; once Redis has been silent for
    the policy's window this raises :class:`loadkit.common.errors.RedisLost`."""
    attempts = Attempts("dashboard server following its board")
    while True:
        raise_if_cancelled()
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(keys.updates)
            await load_snapshot(server, client, keys)
            attempts.ok()
            if loaded is not None:
                loaded.set()
            while True:
                raise_if_cancelled()
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and not server.deliver(message["data"]):
                    await load_snapshot(server, client, keys)
        except TRANSIENT as exc:
            await asyncio.sleep(attempts.failed(exc))
        finally:
            with contextlib.suppress(*TRANSIENT):
                await pubsub.aclose()


# -- server processes ------------------------------------------------------------------


class _Worker:
    """One server process's life: serve, follow, answer the parent's commands."""

    def __init__(self, config: ServerConfig, url: str, keys: BoardKeys) -> None:
        self.config = config
        self.url = url
        self.keys = keys
        self.server: DashboardServer | None = None
        self.follower: asyncio.Task[None] | None = None
        self.client: Any = None

    async def start(self) -> DashboardServer:

        if self.client is None:
            self.client = connect_async(self.url, max_connections=4)
        server = await DashboardServer(self.config).start()
        self.config = dataclasses.replace(self.config, port=server.port)
        loaded = asyncio.Event()
        self.follower = asyncio.ensure_future(follow(server, self.client, self.keys, loaded))
        waiting = asyncio.ensure_future(loaded.wait())
        await asyncio.wait([waiting, self.follower], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if self.follower.done():
            await server.close()
            self.follower.result()  # raises what ended it
        self.server = server
        return server

    async def stop(self) -> None:
        if self.follower is not None:
            self.follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.follower
        if self.server is not None:
            await self.server.close()

    def stats(self) -> dict[str, Any]:
        server = self.server
        assert server is not None
        return {
            "clients": len(server.clients),
            "dropped": server.slow_clients_dropped,
            "resumed": server.resumed,
            "seq": server.seq,
            "polls": server.polls,
            "write_ms": list(server.write_ms),
            "reconnects": RECONNECTS.count,
        }

    async def command(self, kind: str) -> dict[str, Any]:
        if kind == "stats":
            return self.stats()
        if kind == "rss":
            return {"rss": settled_rss_bytes()}
        raise UsageError(f"unknown command {kind!r}")

    async def serve(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        server = await self.start()
        send(conn, READY, {"port": server.port})
        try:
            while True:
                command = await loop.run_in_executor(None, receive, conn, 0.5)
                if self.follower is not None and self.follower.done():
                    self.follower.result()  # Redis lost: the process ends with that error
                if command is None:
                    continue
                if command is GONE or command.kind == STOP:
                    return
                send(conn, OK, await self.command(command.kind))
        finally:
            await self.stop()
            await self.client.aclose()


def worker_process(
    conn: Connection,
    config: ServerConfig,
    url: str,
    keys: BoardKeys,
    max_fds: int,
    parent: int | None = None,
) -> None:
    """Entry point of one server process (multiprocessing target); it dies with
    ``parent``, the process that started it."""

    lifetime.die_with_parent(parent)
    try:
        raise_nofile(max_fds)
        asyncio.run(_Worker(config, url, keys).serve(conn))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # told to the parent as one line
        with contextlib.suppress(OSError):
            send_error(conn, exc)
    finally:
        conn.close()


class ServerPool:
    """``workers`` server processes of one board on one port."""

    def __init__(self, config: ServerConfig, url: str, keys: BoardKeys, workers: int) -> None:
        if workers < 1:
            raise UsageError(f"workers must be >= 1, got {workers}")
        self.config = config
        self.url = url
        self.keys = keys
        self.workers = workers
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.pipes: list[Connection] = []
        self.port = config.port
        self.max_fds = config.max_connections + 256

    def _spawn(self, index: int, config: ServerConfig) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        config = dataclasses.replace(config, reuse_port=True, worker=str(index))
        args = (child, config, self.url, self.keys, self.max_fds, os.getpid())
        proc = ctx.Process(target=worker_process, args=args, daemon=True)
        proc.start()
        child.close()
        self.procs.append(proc)
        self.pipes.append(parent)

    def _ready(self, pipe: Connection, index: int) -> int:
        try:
            return int(expect(pipe, READY, 60, f"dashboard server process {index}")["port"])
        except ChildFailed as exc:
            raise UsageError(str(exc)) from None

    async def start(self) -> ServerPool:
        """The first process picks the port (when 0), the others join it."""
        self._spawn(0, self.config)
        self.port = await asyncio.to_thread(self._ready, self.pipes[0], 0)
        joined = dataclasses.replace(self.config, port=self.port)
        for i in range(1, self.workers):
            self._spawn(i, joined)
        for i in range(1, self.workers):
            await asyncio.to_thread(self._ready, self.pipes[i], i)
        return self

    async def restart(self) -> None:
        """A crash of every server process: each is killed (the kernel resets all its
        connections at once, no close frame), then new ones take the port and start
        from the board's snapshot."""
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            await asyncio.to_thread(proc.join)
        for pipe in self.pipes:
            pipe.close()
        self.procs, self.pipes = [], []
        joined = dataclasses.replace(self.config, port=self.port)
        for i in range(self.workers):
            self._spawn(i, joined)
        for i in range(self.workers):
            await asyncio.to_thread(self._ready, self.pipes[i], i)

    async def ask(self, kind: str, timeout_s: float = 30) -> list[dict[str, Any]]:
        """Send every process a command; their answers, in process order."""
        for pipe in self.pipes:
            send(pipe, kind)

        def answer(i: int) -> dict[str, Any]:
            return expect(self.pipes[i], OK, timeout_s, f"dashboard server process {i}")

        try:
            answers = [asyncio.to_thread(answer, i) for i in range(len(self.pipes))]
            return list(await asyncio.gather(*answers))
        except ChildFailed as exc:
            raise UsageError(str(exc)) from None

    def failed(self) -> str | None:
        """Why a process ended early (its error), or None while all run."""
        for i, (proc, pipe) in enumerate(zip(self.procs, self.pipes, strict=True)):
            if not proc.is_alive():
                message = receive(pipe, 0)
                why = message.body if message not in (None, GONE) else f"exit code {proc.exitcode}"
                return f"dashboard server process {i} ended: {why}"
        return None

    def close(self) -> None:
        stop_children(self.procs, self.pipes, wait_s=10)
        self.procs, self.pipes = [], []
