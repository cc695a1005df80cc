"""A running swarm deployment for measurements: swarms in Redis, coordinator and
producer processes, and the read-only views of Redis that the scenarios check.

The rig never trusts the processes' own word for correctness: delivery, loss and
duplicates are read back from Redis (counters, idempotency bitmaps) and compared with
what producers say Redis acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from loadkit.redis_io.retry import retried
from loadkit.redis_io.values import as_text
from loadkit.workloads.swarm.config import SwarmConfig
from loadkit.workloads.swarm.coordinator import cluster_seeds, connect, create_swarms
from loadkit.workloads.swarm.keys import GROUP, SwarmKeys
from loadkit.workloads.swarm.procs import Child, Counters
from loadkit.workloads.swarm.scripts import Scripts


def _int(value: Any) -> int:
    return int(value) if value not in (None, b"", "") else 0


@dataclass
class SwarmStatus:
    """One swarm as Redis sees it."""

    holder: str | None
    epoch: int
    applied: int
    duplicates: int
    snapshot_applied: int
    snapshot_token: int
    snapshot_ms: int
    members: int
    pending: dict[str, int]


async def read_status(client: Any, keys: list[SwarmKeys]) -> list[SwarmStatus]:
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.get(k.lease)
        pipe.get(k.epoch)
        pipe.hmget(
            k.state, "applied", "duplicates", "snapshot_applied", "snapshot_token", "snapshot_ms"
        )
        pipe.hlen(k.members)
        pipe.xpending(k.stream, GROUP)
    replies = await pipe.execute()
    out = []
    for i in range(len(keys)):
        lease, epoch, state, members, pending = replies[5 * i : 5 * i + 5]
        consumers = pending.get("consumers") or [] if isinstance(pending, dict) else []
        out.append(
            SwarmStatus(
                holder=as_text(lease) if lease is not None else None,
                epoch=_int(epoch),
                applied=_int(state[0]),
                duplicates=_int(state[1]),
                snapshot_applied=_int(state[2]),
                snapshot_token=_int(state[3]),
                snapshot_ms=_int(state[4]),
                members=int(members),
                pending={as_text(c["name"]): int(c["pending"]) for c in consumers},
            )
        )
    return out


async def server_ms(client: Any) -> int:
    sec, usec = await client.time()
    return int(sec) * 1000 + int(usec) // 1000


async def node_command(client: Any, *cmd: Any) -> list[Any]:
    """Run a server command on every node (one for a plain Redis, each primary of a
    cluster)."""
    if hasattr(client, "get_primaries"):
        return [await client.execute_command(*cmd, target_nodes=n) for n in client.get_primaries()]
    return [await client.execute_command(*cmd)]


def _client_rows(reply: Any) -> list[dict[str, str]]:
    if isinstance(reply, list):
        return [{k: as_text(v) for k, v in row.items()} for row in reply]
    rows = []
    for line in as_text(reply).splitlines():
        rows.append(dict(part.split("=", 1) for part in line.split() if "=" in part))
    return rows


async def our_connections(client: Any, run: str, skip: str = "") -> list[tuple[Any, int]]:
    """(node, client id) of the connections this run's processes hold, by client name
    (``<run>-<role>``), except those named ``skip``."""
    out = []
    nodes = client.get_primaries() if hasattr(client, "get_primaries") else [None]
    for node, reply in zip(nodes, await node_command(client, "CLIENT", "LIST"), strict=True):
        for row in _client_rows(reply):
            name = row.get("name", "")
            if name.startswith(run + "-") and name != skip:
                out.append((node, int(row["id"])))
    return out


async def kill_connections(client: Any, victims: list[tuple[Any, int]]) -> int:
    """CLIENT KILL by id, one connection at a time: only our own connections, never
    anyone else's on a shared server."""
    killed = 0
    for node, cid in victims:
        kwargs = {"target_nodes": node} if node is not None else {}
        with contextlib.suppress(Exception):
            killed += int(await client.execute_command("CLIENT", "KILL", "ID", cid, **kwargs))
    return killed


class SwarmRig:
    """Swarms plus coordinator and producer processes for one :class:`SwarmConfig`."""

    def __init__(self, config: SwarmConfig) -> None:
        self.config = config
        self.keys = config.keys
        self.client = connect(config, f"{config.run}-rig")
        self.scripts = Scripts(self.client)
        self.counters = Counters(config.producers, config.coordinators)
        self.coordinators: list[Child] = []
        self.producers: list[Child] = []
        self.generation = 0
        self.created = 0

    async def start(self) -> SwarmRig:
        await retried("swarm set-up", self.scripts.load)
        # Children started from now on (a replacement coordinator too) know every node.
        self.config = replace(self.config, seeds=cluster_seeds(self.client))
        self.created = await retried(
            "swarm set-up",
            lambda: create_swarms(self.scripts, self.config, "setup", self.config.member_ids()),
        )
        cfg = self.config
        try:
            self.coordinators = [
                Child("coordinator", cfg, i, self.counters) for i in range(cfg.coordinators)
            ]
            self.producers = [
                Child("producer", cfg, i, self.counters) for i in range(cfg.producers)
            ]
            await asyncio.gather(*(c.ready() for c in self.coordinators + self.producers))
        except BaseException:
            await self.close(purge=False)
            raise
        return self

    async def status(self) -> list[SwarmStatus]:
        return await retried("swarm status", lambda: read_status(self.client, self.keys))

    async def swarms_created(self) -> int:
        """Swarms whose stream, group, epoch and full membership all exist in Redis."""

        async def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for k in self.keys:
                pipe.xinfo_groups(k.stream)
                pipe.exists(k.epoch)
                pipe.hlen(k.members)
            return await pipe.execute()

        replies = await retried("swarm status", read)
        ok = 0
        for i in range(len(self.keys)):
            groups, epoch, members = replies[3 * i : 3 * i + 3]
            names = {as_text(g["name"]) for g in groups}
            ok += GROUP in names and int(epoch) == 1 and int(members) == self.config.members
        return ok

    async def wait_leaders(self, timeout_s: float = 10.0) -> tuple[int, float]:
        """Wait until every swarm has a leader; returns (swarms with one, seconds)."""
        t0 = time.monotonic()
        led = 0
        while time.monotonic() - t0 < timeout_s:
            led = sum(s.holder is not None for s in await self.status())
            if led == len(self.keys):
                break
            await asyncio.sleep(0.01)
        return led, time.monotonic() - t0

    async def applied_total(self) -> int:
        return sum(s.applied for s in await self.status())

    async def drain(self, timeout_s: float = 20.0) -> bool:
        """Wait until Redis has applied every message producers had acknowledged."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.applied_total() >= self.counters.sent():
                return True
            await asyncio.sleep(0.02)
        return False

    async def produce(self, *cmd: Any, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(*(p.request(*cmd, timeout_s=timeout_s) for p in self.producers))
        )

    async def coordinator_stats(self, reset: bool = False) -> list[dict[str, Any]]:
        alive = [c for c in self.coordinators if c.process.is_alive()]
        return list(await asyncio.gather(*(c.request("stats", reset) for c in alive)))

    async def child_reconnects(self) -> int:
        """Reconnects the live coordinator and producer processes made so far (this
        process counts its own in :data:`loadkit.redis_io.retry.RECONNECTS`)."""
        coordinators = await self.coordinator_stats()
        producers = await self.produce("stats")
        return sum(s["reconnects"] for s in coordinators + producers)

    async def latencies_ms(self) -> np.ndarray:
        stats = await self.coordinator_stats(reset=True)
        parts = [np.frombuffer(s["latencies_ns"], dtype=np.int64) for s in stats]
        return np.concatenate(parts).astype(np.float64) / 1e6 if parts else np.zeros(0)

    async def replace_coordinator(self, index: int) -> Child:
        """SIGKILL coordinator ``index`` and start a new one for the same members."""
        self.coordinators[index].kill()
        if self.coordinators[index].process.is_alive():
            # Its counter slot is handed on only once nobody else can write to it.
            raise RuntimeError(f"swarm coordinator {index} did not die on SIGKILL")
        self.generation += 1
        child = Child("coordinator", self.config, index, self.counters, self.generation)
        self.coordinators[index] = child
        return child

    async def verify(self) -> dict[str, Any]:
        """Compare what producers had acknowledged with what Redis applied.

        Per producer and swarm, messages ``0 .. seq-1`` were acknowledged; each must have
        its bit set (``BITCOUNT`` = seq and the first clear bit at ``seq``)."""
        seqs = [r["seq"] for r in await self.produce("stats")]

        async def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for p in range(len(seqs)):
                for k in self.keys:
                    pipe.bitcount(k.seen(p))
                    pipe.bitpos(k.seen(p), 0)
            return await pipe.execute()

        replies = await retried("swarm verify", read)
        lost_per_swarm = [0] * len(self.keys)
        i = 0
        for seq in seqs:
            for s in range(len(self.keys)):
                count, first_clear = int(replies[i]), int(replies[i + 1])
                i += 2
                missing = seq[s] - count
                if first_clear < seq[s]:  # a gap: the bit of an acknowledged message is clear
                    missing = max(missing, 1)
                lost_per_swarm[s] += max(missing, 0)
        status = await self.status()
        return {
            "sent": sum(sum(seq) for seq in seqs),
            "applied": sum(st.applied for st in status),
            "duplicates": sum(st.duplicates for st in status),
            "lost_per_swarm": lost_per_swarm,
            "lost": sum(lost_per_swarm),
        }

    async def close(self, purge: bool = True, kill: bool = False) -> None:
        """Stop the children and, with ``purge``, delete the run's keys. ``kill`` is for a
        run that already failed (Redis lost, say): the children are SIGKILLed instead of
        asked to finish work that can no longer reach Redis, and the keys are left to
        whoever deletes the run's keys by its prefix afterwards."""
        children = self.coordinators + self.producers
        if kill:
            await asyncio.gather(*(asyncio.to_thread(c.kill) for c in children))
            await self.client.aclose()
            return
        await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)
        if purge:
            with contextlib.suppress(Exception):
                await purge_run(self.client, self.config.run)
        await self.client.aclose()


async def purge_run(client: Any, run: str) -> int:
    """Delete every key of one run (and only that run), on every node."""
    deleted = 0
    nodes = client.get_primaries() if hasattr(client, "get_primaries") else [None]
    for node in nodes:
        kwargs = {"target_nodes": node} if node is not None else {}
        cursor = 0
        while True:
            cursor, keys = await client.execute_command(
                "SCAN", cursor, "MATCH", f"{run}:*", "COUNT", 1000, **kwargs
            )
            if keys:
                deleted += int(await client.delete(*keys))
            if int(cursor) == 0:
                break
    return deleted
