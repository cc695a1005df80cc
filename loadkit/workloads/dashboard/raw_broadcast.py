"""The ceiling under the dashboard's latency: the same bytes broadcast by plain ``websockets``.

A dashboard's p99 on one host is not comparable with its p99 on another: writing to a
thousand sockets costs what the host's cores and kernel make it cost. So the load test
measures, in the same run and on the same host, what plain ``websockets`` does with the
same work: ``workers`` processes on one port (``SO_REUSEPORT``, like the dashboard's),
each handing every message it is given to :func:`websockets.asyncio.server.broadcast`
for all its connections - no Redis, no board, no backpressure policy, no loadkit code
between the pipe and the library. The same load-client code connects the same number
of clients and reads the same messages (a snapshot on connect, then the publisher's
updates, stamped when they are made), so the ratio of the two latencies is the cost of
the dashboard's own logic, and it holds from host to host where the milliseconds do not.

The parent sends each process its messages over a pipe (read in the event loop, not a
thread); a process answers ``stats`` with its connection count and dies with its
parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from loadkit.common.errors import UsageError
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

ROUND = "round"  # a message to broadcast (no answer: the parent does not wait)
STATS = "stats"


async def _serve(conn: Connection, port: int, snapshot: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # load clients abort when done
            await ws.send(snapshot)
            async for _ in ws:  # a client asking to resync is not answered: no board here
                pass

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    async with serve(
        handler, "127.0.0.1", port, reuse_port=True, compression=None, max_queue=None
    ) as server:
        sockets = list(server.sockets)
        send(conn, READY, {"port": sockets[0].getsockname()[1]})

        def readable() -> None:
            while conn.poll(0):
                message = receive(conn, 0)
                if message is None:
                    return
                if message is GONE or message.kind == STOP:
                    done.set()
                    return
                if message.kind == ROUND:
                    broadcast(server.connections, message.body)
                elif message.kind == STATS:
                    send(conn, OK, {"clients": len(server.connections)})

        loop.add_reader(conn.fileno(), readable)
        try:
            await done.wait()
        finally:
            loop.remove_reader(conn.fileno())


def raw_process(
    conn: Connection, port: int, snapshot: str, max_fds: int, parent: int | None = None
) -> None:
    """Entry point of one broadcast process (multiprocessing target)."""
    from loadkit.workloads.dashboard.loadclient import raise_nofile

    lifetime.die_with_parent(parent)
    try:
        raise_nofile(max_fds)
        asyncio.run(_serve(conn, port, snapshot))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # told to the parent as one line
        with contextlib.suppress(OSError):
            send_error(conn, exc)
    finally:
        conn.close()


class RawBroadcast:
    """``workers`` plain ``websockets`` broadcast processes on one port."""

    def __init__(self, workers: int, snapshot: bytes, max_fds: int) -> None:
        self.workers = workers
        self.snapshot = snapshot.decode()
        self.max_fds = max_fds
        self.procs: list[Any] = []
        self.pipes: list[Connection] = []
        self.port = 0

    def _spawn(self, port: int) -> Connection:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        args = (child, port, self.snapshot, self.max_fds, os.getpid())
        proc = ctx.Process(target=raw_process, args=args, daemon=True)
        proc.start()
        child.close()
        self.procs.append(proc)
        self.pipes.append(parent)
        return parent

    def _ready(self, pipe: Connection, index: int) -> int:
        try:
            return int(expect(pipe, READY, 60, f"broadcast ceiling process {index}")["port"])
        except ChildFailed as exc:
            raise UsageError(str(exc)) from None

    async def start(self) -> RawBroadcast:
        """The first process picks the port, the others join it."""
        self.port = await asyncio.to_thread(self._ready, self._spawn(0), 0)
        for i in range(1, self.workers):
            await asyncio.to_thread(self._ready, self._spawn(self.port), i)
        return self

    def send(self, message: bytes) -> None:
        """Every process broadcasts ``message`` to its clients."""
        text = message.decode()
        for pipe in self.pipes:
            send(pipe, ROUND, text)

    async def clients(self) -> int:
        for pipe in self.pipes:
            send(pipe, STATS)

        def answer(i: int) -> int:
            return int(expect(self.pipes[i], OK, 30, f"broadcast ceiling process {i}")["clients"])

        try:
            counts = [asyncio.to_thread(answer, i) for i in range(len(self.pipes))]
            return sum(await asyncio.gather(*counts))
        except ChildFailed as exc:
            raise UsageError(str(exc)) from None

    def close(self) -> None:
        stop_children(self.procs, self.pipes, wait_s=5)
        self.procs, self.pipes = [], []
