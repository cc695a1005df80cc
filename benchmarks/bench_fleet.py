"""asv benchmarks for the agent fleet: spawning, allocation, reclaim, autoscaling, cleanup.

Each class prepares a private Redis and a started FleetManager in ``setup``; the
measurement functions are the same ones ``loadkit run fleet`` reports from
(:mod:`loadkit.fleet.scenarios`), so asv's history and the run report agree.
"""

from __future__ import annotations

import secrets

from benchmarks.common import RedisLoop, ServerBenchmark
from loadkit.fleet.manager import FleetManager
from loadkit.fleet.scenarios import (
    StepLoad,
    measure_allocation,
    measure_autoscale,
    measure_cycles,
    measure_reclaim,
    measure_spawn,
)


class _FleetCase(ServerBenchmark):
    lease_ms = 1000

    def _start(self) -> None:
        self.env = RedisLoop()
        manager = FleetManager(self.env.url, "asv-" + secrets.token_hex(3), lease_ms=self.lease_ms)
        self.manager = self.env.run(manager.start())

    def teardown(self, *params: object) -> None:
        self.env.run(self.manager.close(purge=True))
        self.env.close()


class FleetSpawn(_FleetCase):
    """Spawning N agents in batches of 50 until all are registered in Redis."""

    params = [100, 1000, 10_000]
    param_names = ["agents"]

    def setup(self, agents: int) -> None:
        self._start()

    def time_spawn(self, agents: int) -> None:
        self.env.run(self.manager.spawn(agents))

    def peakmem_spawn(self, agents: int) -> None:
        self.env.run(self.manager.spawn(agents))

    def track_spawn_rate_per_s(self, agents: int) -> float:
        return self.env.run(measure_spawn(self.manager, agents))["spawn_rate_per_s"]

    track_spawn_rate_per_s.unit = "agents/s"

    def track_spawn_p95_ms(self, agents: int) -> float:
        return self.env.run(measure_spawn(self.manager, agents))["spawn_p95_ms"]

    track_spawn_p95_ms.unit = "ms"

    def track_rss_per_agent_kib(self, agents: int) -> float:
        return self.env.run(measure_spawn(self.manager, agents))["rss_per_agent_kib"]

    track_rss_per_agent_kib.unit = "KiB"


class FleetAllocation(_FleetCase):
    """Allocation latency (scheduled submit -> agent starts) under a steady open-loop load
    of 2000 tasks/s on 1000 agents, 50 ms of work each."""

    agents = 1000
    rate_per_s = 2000
    seconds = 2.0

    def setup(self) -> None:
        self._start()
        self.env.run(self.manager.spawn(self.agents))
        self.result = self.env.run(
            measure_allocation(self.manager, self.rate_per_s, self.seconds, work_ms=50)
        )

    def track_allocation_avg_ms(self) -> float:
        return self.result["allocation_avg_ms"]

    track_allocation_avg_ms.unit = "ms"

    def track_allocation_p95_ms(self) -> float:
        return self.result["allocation_p95_ms"]

    track_allocation_p95_ms.unit = "ms"

    def track_allocation_p99_ms(self) -> float:
        return self.result["allocation_p99_ms"]

    track_allocation_p99_ms.unit = "ms"


class FleetReclaim(_FleetCase):
    """A crashed agent's task finished by another: bounded below by the 1 s lease."""

    def setup(self) -> None:
        self._start()
        self.env.run(self.manager.spawn(100))

    def track_reclaim_s(self) -> float:
        return self.env.run(measure_reclaim(self.manager))["reclaim_s"]

    track_reclaim_s.unit = "s"


class FleetAutoscale(ServerBenchmark):
    """The predictive autoscaler through a 100 -> 4000 -> 100 tasks/s step."""

    rounds = 1
    step = StepLoad(100, 4000, low_s=1.0, high_s=2.5, cooldown_s=3.0, max_agents=2000)

    def setup(self) -> None:
        env = RedisLoop()
        try:
            self.result = env.run(measure_autoscale(env.url, "asv-scale", self.step))
        finally:
            env.close()

    def track_reaction_s(self) -> float:
        return self.result["autoscale_reaction_s"]

    track_reaction_s.unit = "s"

    def track_overshoot_ratio(self) -> float:
        return self.result["autoscale_overshoot_ratio"]

    track_overshoot_ratio.unit = "ratio"

    def track_residual_ratio(self) -> float:
        return self.result["autoscale_residual_ratio"]

    track_residual_ratio.unit = "ratio"


class FleetCleanup(ServerBenchmark):
    """Six whole fleet lifetimes of 1000 agents: what they leave behind."""

    rounds = 1

    def setup(self) -> None:
        env = RedisLoop()
        try:
            self.result = env.run(measure_cycles(env.url, "asv-cycle", agents=1000, cycles=6))
        finally:
            env.close()

    def track_leaked_keys(self) -> float:
        return self.result["cycle_leaked_keys"]

    track_leaked_keys.unit = "keys"

    def track_rss_growth_per_cycle_kib(self) -> float:
        return self.result["cleanup_rss_growth_per_cycle_kib"]

    track_rss_growth_per_cycle_kib.unit = "KiB"
