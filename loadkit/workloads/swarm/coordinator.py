"""A coordinator: the process that hosts swarm members and does their work.

A coordinator hosts its share of every swarm's members. For each swarm it is one
consumer in the swarm's group (it applies messages for its members), each of its members
stands for leadership, and a member that leads takes the leader's snapshot of the swarm's
progress with its fencing token. Everything it knows is in Redis: a coordinator that
replaces a killed one re-registers the same members, reclaims what the dead one had read
but not applied (XAUTOCLAIM, from any live coordinator), and its members win leases as
the dead one's expire. Loops survive dropped connections and a restarted Redis
(any Redis error is retried with backoff) but not a Redis that stays silent: after
:data:`loadkit.redis_io.health.LOST_AFTER_S` without an answer the coordinator stops its
loops and reports the loss to whoever asks it next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from array import array
from typing import Any

from redis.asyncio.cluster import ClusterNode
from redis.exceptions import RedisError

from loadkit.common.errors import RedisLost
from loadkit.redis_io.aio import cancel_and_wait
from loadkit.redis_io.connect import connect_async
from loadkit.redis_io.retry import RECONNECTS, Attempts, raise_if_cancelled, retried
from loadkit.redis_io.urls import is_cluster_url
from loadkit.redis_io.values import as_text
from loadkit.workloads.swarm.config import SwarmConfig
from loadkit.workloads.swarm.election import Candidacy, ElectionBoard, snapshot
from loadkit.workloads.swarm.keys import GROUP
from loadkit.workloads.swarm.messaging import Consumer
from loadkit.workloads.swarm.scripts import Scripts

log = logging.getLogger("loadkit")
_HINT_SWARM = re.compile(r"\{swarm:(\d+)\}")


def connect(config: SwarmConfig, name: str, max_connections: int | None = None) -> Any:
    """A client named for this run's role, with the retries of
    :func:`loadkit.redis_io.connect.connect_async`: the loops decide what is safe to retry,
    and count it. A cluster client's pool does not wait for a free connection, so give
    it one per concurrent caller."""
    seeds = {"startup_nodes": [ClusterNode(h, p) for h, p in config.seeds]} if config.seeds else {}
    return connect_async(
        config.url,
        max_connections=max_connections or config.max_connections,
        client_name=name,
        socket_connect_timeout=2.0,
        **seeds,
    )


def cluster_seeds(client: Any) -> tuple[tuple[str, int], ...]:
    """Every node a connected cluster client knows (primaries and replicas); () for a
    single server."""
    if not hasattr(client, "get_nodes"):
        return ()
    return tuple(sorted((n.host, int(n.port)) for n in client.get_nodes()))


async def create_swarms(
    scripts: Scripts, config: SwarmConfig, host: str, members: list[str]
) -> int:
    """Create every swarm (stream, group, state, epoch) and register ``members`` as
    hosted by ``host``; returns how many swarms were new. Safe to repeat."""
    calls = [("create", [k.stream], [k.prefix, GROUP, host, *members]) for k in config.keys]
    return sum(int(r) for r in await scripts.run_many(calls))


class Coordinator:
    def __init__(self, config: SwarmConfig, index: int, generation: int = 0) -> None:
        self.config = config
        self.index = index
        self.name = f"c{index}g{generation}"
        self.client = connect(config, f"{config.run}-{self.name}")
        self.scripts = Scripts(self.client)
        self.cluster = is_cluster_url(config.url)
        self.members = config.members_of(index)
        self.consumer = Consumer(
            self.client,
            self.scripts,
            config.keys,
            self.name,
            cluster=self.cluster,
            count=config.read_count,
            block_ms=config.block_ms,
            reclaim_idle_ms=config.reclaim_idle_ms,
            reclaim_interval_ms=config.reclaim_interval_ms,
            depth=config.apply_depth,
        )
        self.board = ElectionBoard(
            self.scripts,
            [
                Candidacy(k, f"{self.name}.{m}", config.lease_ms)
                for k in config.keys
                for m in self.members
            ],
        )
        self.errors = 0
        self.last_error = ""
        self.snapshots = 0
        self.snapshots_rejected = 0
        self.hints = 0
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._pubsub: Any = None
        self.lost: RedisLost | None = None

    async def start(self) -> Coordinator:
        # Both are safe to repeat; a coordinator started while a cluster fails over waits.
        await retried(f"swarm coordinator {self.name} start", self.scripts.load)
        await retried(
            f"swarm coordinator {self.name} start",
            lambda: create_swarms(self.scripts, self.config, self.name, self.members),
        )
        self._running = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._keep("consume", self.consumer.step)),
            loop.create_task(self._keep("elect", self._elect_step)),
        ]
        if hasattr(self.client, "pubsub"):  # redis-py's asyncio cluster client has none
            self._tasks.append(loop.create_task(self._keep("hints", self._hint_step)))
        return self

    async def _hint_step(self) -> None:
        """Lossy hints over Pub/Sub: a released lease wakes this swarm's candidates at
        once. A lost hint costs only time - they also try when the lease runs out."""
        try:
            if self._pubsub is None:
                self._pubsub = self.client.pubsub()
                await self._pubsub.psubscribe(f"{self.config.run}:{{swarm:*}}:hints")
            msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        except BaseException:
            pubsub, self._pubsub = self._pubsub, None
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            raise
        if msg is None:
            return
        match = _HINT_SWARM.search(as_text(msg["channel"]))
        if match:
            swarm = int(match.group(1))
            now = time.perf_counter_ns()
            for c in self.board.candidacies:
                if c.keys.swarm == swarm:
                    c.hint_vacant(now)
            self.hints += 1
            self._wake.set()

    async def _keep(self, what: str, step: Any) -> None:
        """Run ``step`` until stopped. Any Redis error is logged, counted and retried
        with backoff - a dropped connection, a restarting server (LOADING), a cluster
        that is re-routing - so no loop of a coordinator ends silently. Once Redis has
        not answered for ``LOST_AFTER_S`` the coordinator is lost: every loop ends and
        :meth:`check` raises."""
        attempts = Attempts(f"swarm coordinator {self.name} {what}", max_backoff_s=0.1)
        while self._running and self.lost is None:
            raise_if_cancelled()
            try:
                await step()
                attempts.ok()
            except (RedisError, OSError) as exc:
                self.errors += 1
                self.last_error = f"{what}: {type(exc).__name__}: {exc}"
                log.warning("swarm coordinator %s %s", self.name, self.last_error)
                try:
                    wait = attempts.failed(exc)
                except RedisLost as lost:
                    self.lost = lost
                    log.error("%s", lost)
                    return
                await asyncio.sleep(wait)

    def check(self) -> None:
        """Raise :class:`RedisLost` once the coordinator has given up on Redis."""
        if self.lost is not None:
            raise self.lost

    async def _elect_step(self) -> None:
        await self.board.tick()
        now = time.perf_counter_ns()
        due = [c for c in self.board.leaders() if now >= c.snapshot_due_ns]
        if due:
            replies = await self.scripts.run_in_chunks([snapshot(c.keys, c.token) for c in due])
            for c, ok in zip(due, replies, strict=True):
                c.snapshot_due_ns = now + self.config.snapshot_interval_ms * 1_000_000
                if int(ok) == 1:
                    self.snapshots += 1
                else:  # a newer leader exists: this one was paused or cut off
                    self.snapshots_rejected += 1
                    c.token = 0
                    c.next_try_ns = now
        wait_ns = self.board.next_wakeup_ns() - time.perf_counter_ns()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), min(max(wait_ns / 1e9, 0.001), 0.05))
        self._wake.clear()

    def stats(self, reset_latencies: bool = False) -> dict[str, Any]:
        c = self.consumer
        out = {
            "name": self.name,
            "applied": c.applied,
            "duplicates": c.duplicates,
            "reclaimed": c.reclaimed,
            "errors": self.errors,
            "reconnects": RECONNECTS.count,
            "last_error": self.last_error,
            "grants": self.board.grants,
            "leading": len(self.board.leaders()),
            "snapshots": self.snapshots,
            "snapshots_rejected": self.snapshots_rejected,
            "hints": self.hints,
            "latencies_ns": c.latencies_ns.tobytes(),
        }
        if reset_latencies:
            c.latencies_ns = array("q")
        return out

    async def stop(self, release: bool = True) -> None:
        self._running = False
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self.lost is None:  # a lost Redis would only time out each request
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.consumer.drain(), 5)
        await self.consumer.close()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if release and self.lost is None:
            with contextlib.suppress(Exception):
                await self.board.release_all()
        await self.client.aclose()
