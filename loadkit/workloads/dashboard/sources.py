"""Where the dashboard's data comes from: the real fleet, or a seeded simulator.

* :class:`FleetSource` reads the agents a :class:`loadkit.workloads.fleet.manager.FleetManager`
  hosts (real agents on Redis taking real tasks) and the manager's own figures: tasks
  completed per second and allocation latency. ``loadkit dashboard`` uses it.
* :class:`RedisFleetSource` observes a fleet through Redis alone, whoever hosts its
  agents (``loadkit agents`` on other machines): idle agents are those in the fleet's
  idle list, dead ones hold an expired lease the reaper has not yet cleared, the rest
  are busy. Read-only: it never changes the fleet.
* :class:`SimulatedFleet` is a pure, seeded state machine with no Redis: the load test
  uses it so that what is measured is the dashboard, not the fleet, and a round can
  change exactly as many agents as asked.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import numpy as np
from redis.asyncio import Redis

from loadkit.redis_io.retry import TRANSIENT, Attempts
from loadkit.redis_io.values import as_text
from loadkit.runs.metrics import LatencyRecorder
from loadkit.workloads.fleet.host import BUSY, DEAD, IDLE, NEW
from loadkit.workloads.fleet.manager import FleetManager
from loadkit.workloads.fleet.store import FleetStore

log = logging.getLogger("loadkit")


@dataclass
class Tick:
    """What a source reports once per broadcast: a full sample or only the changes."""

    stats: dict[str, float]
    full: dict[str, str] | None = None
    changed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)


# Simulator transitions: state -> [(next state, weight)].
_NEXT = {
    IDLE: [(BUSY, 0.9), (DEAD, 0.02), (IDLE, 0.08)],
    BUSY: [(IDLE, 0.85), (BUSY, 0.13), (DEAD, 0.02)],
    DEAD: [(NEW, 1.0)],
    NEW: [(IDLE, 1.0)],
}


class SimulatedFleet:
    """``agents`` simulated agents; each :meth:`tick` moves ``per_tick`` of them one step."""

    def __init__(self, agents: int, seed: int = 1) -> None:
        if agents < 1:
            raise ValueError("agents must be >= 1")
        self.rng = random.Random(seed)
        self.states = {f"sim-{i:05d}": IDLE for i in range(agents)}
        self.ids = list(self.states)
        self.completed = 0

    def snapshot(self) -> Tick:
        """Every agent as it is now (what a server starts from)."""
        return Tick(stats={"completed": float(self.completed)}, full=dict(self.states))

    def tick(self, per_tick: int, dt_s: float = 1.0) -> Tick:
        chosen = self.ids if per_tick >= len(self.ids) else self.rng.sample(self.ids, per_tick)
        changed: dict[str, str] = {}
        done = 0
        for agent_id in chosen:
            old = self.states[agent_id]
            options = _NEXT[old]
            new = self.rng.choices([s for s, _ in options], [w for _, w in options])[0]
            done += old == BUSY and new == IDLE
            self.states[agent_id] = new
            changed[agent_id] = new
        self.completed += done
        stats = {"completed": float(self.completed), "throughput_per_s": done / max(dt_s, 1e-9)}
        return Tick(stats=stats, changed=changed)


class FleetSource:
    """Samples the agents of a running :class:`FleetManager` (those its host holds)."""

    def __init__(self, manager: FleetManager) -> None:
        self.manager = manager
        self._last_completed = manager.host.completed

    def tick(self, dt_s: float) -> Tick:
        host = self.manager.host
        full = {a.id: a.state for a in host.agents.values()}
        completed = host.completed
        stats: dict[str, float] = {
            "completed": float(completed),
            "throughput_per_s": (completed - self._last_completed) / max(dt_s, 1e-9),
        }
        self._last_completed = completed
        # Take the samples recorded since the last tick and start a fresh recorder, so a
        # dashboard left open for hours does not grow the host's sample array.
        recent = host.alloc_latency.as_ms()
        host.alloc_latency = LatencyRecorder()
        if recent.size:
            stats["latency_ms"] = float(np.median(recent))
        return Tick(stats=stats, full=full)


class RedisFleetSource:
    """Reads a fleet's registry from Redis each tick (a few commands, two round trips)."""

    def __init__(self, client: Redis, fleet: str, lost_after_s: float | None = None) -> None:
        self.store = FleetStore(client, fleet)
        self._last_completed: int | None = None
        self.errors = 0
        self.attempts = Attempts(f"dashboard reading fleet {fleet}", lost_after_s)

    async def tick(self, dt_s: float) -> Tick:
        """A full sample; while Redis is unreachable, no change (the board keeps the last
        known states) and ``redis_errors`` counts up, so the page shows it and recovers
        from a short outage. Silent for ``lost_after_s``, Redis is lost: the tick raises
        :class:`loadkit.common.errors.RedisLost` and the dashboard ends with that error."""
        try:
            tick = await self._read(dt_s)
        except TRANSIENT as exc:
            self.errors += 1
            self.attempts.failed(exc)
            return Tick(stats={"redis_errors": float(self.errors)})
        self.attempts.ok()
        return tick

    async def _read(self, dt_s: float) -> Tick:
        store = self.store
        pipe = store.client.pipeline(transaction=False)
        pipe.time()
        pipe.smembers(store.key("agents"))
        pipe.lrange(store.key("idle"), 0, -1)
        pipe.hget(store.key("stats"), "completed")
        pipe.llen(store.key("pending"))
        (sec, usec), agents, idle, completed, pending = await pipe.execute()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        expired = await store.client.zrangebyscore(store.key("leases"), "-inf", now_ms)
        full = {as_text(a): BUSY for a in agents}
        full.update({as_text(a): IDLE for a in idle if as_text(a) in full})
        full.update({as_text(a): DEAD for a in expired if as_text(a) in full})
        done = int(completed or 0)
        previous = done if self._last_completed is None else self._last_completed
        self._last_completed = done
        stats = {
            "completed": float(done),
            "pending": float(pending),
            "throughput_per_s": (done - previous) / max(dt_s, 1e-9),
            "redis_errors": float(self.errors),
        }
        return Tick(stats=stats, full=full)
