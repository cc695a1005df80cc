"""Coordinators and producers in their own processes, driven over a pipe.

One Python process cannot both generate and apply tens of thousands of messages a second
(redis-py spends most of that time encoding and parsing), so the load generator and the
coordinators are separate processes: ``forkserver`` children (a clean interpreter with
this module preloaded - no forking of the parent's event loop or sockets), each running
its own event loop. The parent sends small commands (``paced``, ``saturate``, ``stats``,
``stop``) and gets one reply per command. Every child exits by itself after
``config.lifetime_s`` or when the parent's end of the pipe closes, so a crashed parent
leaves nothing running; a child also dies with the forkserver that forked it
(:func:`loadkit.runtime.lifetime.die_with_parent`), and the forkserver exits with the process
that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import time
from array import array
from multiprocessing.connection import Connection
from typing import Any

from loadkit.common.errors import RedisLost
from loadkit.redis_io.retry import RECONNECTS
from loadkit.runtime import lifetime
from loadkit.runtime.child_messages import (
    GONE,
    OK,
    READY,
    STOP,
    STOPPED,
    ChildFailed,
    Message,
    expect,
    receive,
    send,
    send_error,
)
from loadkit.workloads.swarm.config import SwarmConfig
from loadkit.workloads.swarm.coordinator import Coordinator, connect
from loadkit.workloads.swarm.messaging import Producer

_CONTEXT: Any = None


def context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = mp.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["loadkit.workloads.swarm.procs"])
    return _CONTEXT


class Counters:
    """Messages sent and applied across all processes (shared memory), so saturating
    producers can keep the backlog bounded without asking Redis.

    Each producer and each coordinator index owns one slot and is its only writer, and
    readers sum the slots. There is no lock on purpose: a coordinator is SIGKILLed
    mid-run to measure recovery, and a lock it held at that moment would never be
    released, freezing its replacement and every reader. A replacement writes to its
    predecessor's slot only after the predecessor is dead (:meth:`SwarmRig.replace_coordinator`).
    """

    def __init__(self, producers: int, coordinators: int) -> None:
        ctx = context()
        self._sent = ctx.RawArray("q", max(producers, 1))
        self._applied = ctx.RawArray("q", max(coordinators, 1))

    def add_sent(self, producer: int, n: int) -> None:
        self._sent[producer] += n

    def add_applied(self, coordinator: int, n: int) -> None:
        self._applied[coordinator] += n

    def sent(self) -> int:
        return int(sum(self._sent))

    def applied(self) -> int:
        return int(sum(self._applied))

    def in_flight(self) -> int:
        return self.sent() - self.applied()


class _ProducerService:
    def __init__(self, config: SwarmConfig, index: int, counters: Counters) -> None:
        self.name = f"p{index}"
        self.client = connect(config, f"{config.run}-{self.name}")
        self.producer = Producer(
            self.client,
            config.keys,
            index,
            stream_cap=config.stream_cap,
            on_sent=lambda n: counters.add_sent(index, n),
        )
        self.counters = counters
        self.concurrency = config.send_concurrency

    async def start(self) -> _ProducerService:
        return self

    async def handle(self, cmd: Message) -> Any:
        before = self.producer.sent
        t0 = time.perf_counter()
        self.producer.enqueue_ns = array("q")
        if cmd.kind == "paced":
            await self.producer.paced(*cmd.body)
        elif cmd.kind == "saturate":
            count, window = cmd.body
            await self.producer.saturate(
                count, self.counters.in_flight, window=window, concurrency=self.concurrency
            )
        elif cmd.kind != "stats":
            raise ValueError(f"unknown producer command {cmd.kind!r}")
        return {
            "sent": self.producer.sent - before,
            "elapsed_s": time.perf_counter() - t0,
            "seq": list(self.producer.seq),
            "retries": self.producer.retries,
            "reconnects": RECONNECTS.count,
            "enqueue_ns": self.producer.enqueue_ns.tobytes(),
        }

    async def stop(self) -> None:
        await self.client.aclose()


class _CoordinatorService:
    def __init__(self, config: SwarmConfig, index: int, generation: int, counters: Counters):
        self.coordinator = Coordinator(config, index, generation)
        self.coordinator.consumer.on_applied = lambda n: counters.add_applied(index, n)
        self.name = self.coordinator.name

    async def start(self) -> _CoordinatorService:
        await self.coordinator.start()
        return self

    async def handle(self, cmd: Message) -> Any:
        self.coordinator.check()  # a coordinator that lost Redis says so
        if cmd.kind == "stats":
            (reset,) = cmd.body
            return self.coordinator.stats(reset_latencies=bool(reset))
        raise ValueError(f"unknown coordinator command {cmd.kind!r}")

    async def stop(self) -> None:
        await self.coordinator.stop()


def serve(*args: Any) -> None:
    """The child's entry point: its own event loop around :func:`_serve`."""
    # The forkserver is the parent; if it is already gone, the closed pipe ends us.
    lifetime.die_with_parent(os.getppid())
    asyncio.run(_serve(*args))


async def _serve(
    role: str,
    config: SwarmConfig,
    index: int,
    generation: int,
    conn: Connection,
    counters: Counters,
) -> None:
    deadline = time.monotonic() + config.lifetime_s
    service: Any
    try:
        if role == "producer":
            service = _ProducerService(config, index, counters)
        else:
            service = _CoordinatorService(config, index, generation, counters)
        await service.start()
    except Exception as exc:
        send_error(conn, exc)
        return
    # What exists now lives as long as the process: keep the collector off it, so
    # collections under load are short (fewer latency spikes).
    gc.freeze()
    send(conn, READY, service.name)
    try:
        while (left := deadline - time.monotonic()) > 0:
            cmd = await asyncio.to_thread(receive, conn, min(left, 1.0))
            if cmd is None:
                continue
            if cmd is GONE or cmd.kind == STOP:  # told to, or the parent is gone
                break
            try:
                send(conn, OK, await service.handle(cmd))
            except Exception as exc:
                send_error(conn, exc)
    finally:
        with contextlib.suppress(Exception):
            await service.stop()
        with contextlib.suppress(OSError):
            send(conn, STOPPED, service.name)


class Child:
    """The parent's handle on one child process."""

    def __init__(
        self,
        role: str,
        config: SwarmConfig,
        index: int,
        counters: Counters,
        generation: int = 0,
    ) -> None:
        ctx = context()
        self.role = role
        self.counters = counters  # alive until the child has unpickled its semaphores
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(
            target=serve,
            args=(role, config, index, generation, child_conn, counters),
            name=f"loadkit-swarm-{role}-{index}",
            daemon=True,
        )
        self.process.start()
        child_conn.close()
        self.name = ""

    @property
    def _who(self) -> str:
        return f"swarm {self.role} {self.name}".rstrip()

    async def ready(self, timeout_s: float = 30.0) -> Child:
        try:
            self.name = await asyncio.to_thread(expect, self.conn, READY, timeout_s, self._who)
        except ChildFailed as exc:
            raise RuntimeError(f"swarm {self.role} process failed to start: {exc}") from None
        return self

    async def request(self, kind: str, *args: Any, timeout_s: float = 60.0) -> Any:
        send(self.conn, kind, args)
        try:
            return await asyncio.to_thread(expect, self.conn, OK, timeout_s, self._who)
        except ChildFailed as exc:
            lost = str(exc).replace(f"{RedisLost.__name__}: ", "", 1)
            if lost != str(exc):  # the child gave up on Redis: the same error here
                raise RedisLost(lost) from None
            raise RuntimeError(str(exc)) from None

    def kill(self) -> None:
        """SIGKILL: the crash case. Nothing is released; Redis still has its state."""
        self.process.kill()
        self.process.join(5)
        self.conn.close()

    async def stop(self, timeout_s: float = 10.0) -> None:
        if not self.process.is_alive():
            self.conn.close()
            return
        with contextlib.suppress(OSError):
            send(self.conn, STOP)
            await asyncio.to_thread(receive, self.conn, timeout_s)
        await asyncio.to_thread(self.process.join, timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()
