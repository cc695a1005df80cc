"""asv benchmarks for swarm coordination on Redis: delivered rate, paced latency,
failover and recovery.

Each class prepares a private Redis (and, where messages flow, a SwarmRig of coordinator
and producer processes) in ``setup``; the measurement functions are the same ones
``loadkit run swarm`` reports from (:mod:`loadkit.swarm.scenarios`), so asv's history and
the run report agree. The scenarios run once in ``setup`` and the ``track_`` methods
return their figures.
"""

from __future__ import annotations

import secrets
from typing import Any

from benchmarks.common import RedisLoop, ServerBenchmark
from loadkit.swarm.config import SwarmConfig
from loadkit.swarm.coordinator import connect
from loadkit.swarm.rig import SwarmRig
from loadkit.swarm.scenarios import (
    measure_coordinator_kill,
    measure_fencing,
    measure_paced,
    measure_redis_kill,
    measure_saturation,
    measure_xadd_ceiling,
)

SWARMS = 100


def _config(url: str) -> SwarmConfig:
    return SwarmConfig(
        url=url, run="asv" + secrets.token_hex(3), swarms=SWARMS, coordinators=1, producers=1
    )


class _SwarmCase(ServerBenchmark):
    """A private Redis, 100 swarms and their processes; ``measure`` fills ``result``."""

    rounds = 1
    repeat = (1, 3, 60.0)

    def setup(self) -> None:
        self.env = RedisLoop()
        try:
            self.result = self.env.run(self.measure(self.env.url))
        finally:
            self.env.close()

    async def measure(self, url: str) -> dict[str, float]:
        raise NotImplementedError

    async def with_rig(self, url: str, scenario: Any) -> dict[str, float]:
        rig = await SwarmRig(_config(url)).start()
        try:
            await rig.wait_leaders()
            return await scenario(rig)
        finally:
            await rig.close()


class SwarmMessaging(_SwarmCase):
    """Saturation across 100 swarms, beside the pipelined XADD rate one redis-py client
    reaches on the same server (the ceiling the delivered rate is read against)."""

    seconds = 3.0

    async def measure(self, url: str) -> dict[str, float]:
        client = connect(_config(url), "asv-ceiling")
        try:
            out = await measure_xadd_ceiling(client, "asvceil", seconds=1.0)
        finally:
            await client.aclose()
        return out | await self.with_rig(url, lambda r: measure_saturation(r, self.seconds))

    def track_delivered_per_s(self) -> float:
        return self.result["delivered_per_s"]

    track_delivered_per_s.unit = "messages/s"

    def track_xadd_ceiling_per_s(self) -> float:
        return self.result["xadd_ceiling_per_s"]

    track_xadd_ceiling_per_s.unit = "messages/s"

    def track_delivered_share_of_ceiling(self) -> float:
        return self.result["delivered_per_s"] / self.result["xadd_ceiling_per_s"]

    track_delivered_share_of_ceiling.unit = "ratio"


class SwarmPacedLatency(_SwarmCase):
    """Open-loop delivery latency (scheduled send -> applied) at a paced rate."""

    params = [1_000, 10_000]
    param_names = ["rate_per_s"]
    seconds = 3.0

    def setup(self, rate_per_s: int) -> None:  # type: ignore[override]
        self.rate_per_s = rate_per_s
        super().setup()

    async def measure(self, url: str) -> dict[str, float]:
        return await self.with_rig(url, lambda r: measure_paced(r, self.rate_per_s, self.seconds))

    def track_delivery_p50_ms(self, rate_per_s: int) -> float:
        return self.result["delivery_p50_ms"]

    track_delivery_p50_ms.unit = "ms"

    def track_delivery_p99_ms(self, rate_per_s: int) -> float:
        return self.result["delivery_p99_ms"]

    track_delivery_p99_ms.unit = "ms"

    def track_delivery_avg_ms(self, rate_per_s: int) -> float:
        return self.result["delivery_avg_ms"]

    track_delivery_avg_ms.unit = "ms"


class SwarmFailover(_SwarmCase):
    """1000 injected leader pauses (100 swarms x 10) with a 100 ms lease: time to a new
    leader, and stale writes of paused leaders accepted (must stay 0)."""

    async def measure(self, url: str) -> dict[str, float]:
        return await measure_fencing(url, "asvfence", SWARMS, rounds=10, ttl_ms=100)

    def track_failover_p95_ms(self) -> float:
        return self.result["failover_p95_ms"]

    track_failover_p95_ms.unit = "ms"

    def track_stale_writes_accepted(self) -> float:
        return self.result["stale_writes_accepted"]

    track_stale_writes_accepted.unit = "writes"


class SwarmRecovery(_SwarmCase):
    """Recovery under paced load: a SIGKILLed coordinator replaced by a new one, and
    Redis SIGKILLed and restarted from its AOF (appendfsync always)."""

    async def measure(self, url: str) -> dict[str, float]:
        out = await self.with_rig(url, lambda r: measure_coordinator_kill(r, 3000, 2.5, 0.8))
        return out | await measure_redis_kill(_config(url), 3000, 2.5, 0.8)

    def track_recovery_coordinator_s(self) -> float:
        return self.result["recovery_coordinator_s"]

    track_recovery_coordinator_s.unit = "s"

    def track_recovery_redis_s(self) -> float:
        return self.result["recovery_redis_s"]

    track_recovery_redis_s.unit = "s"

    def track_recovery_ratio(self) -> float:
        return (self.result["recovery_coordinator_ratio"] + self.result["recovery_redis_ratio"]) / 2

    track_recovery_ratio.unit = "ratio"
