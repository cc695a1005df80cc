"""The fleet manager: spawning, task intake, lease reaping and autoscaling.

The manager owns one local :class:`AgentHost` (agents in this process) and the fleet's
housekeeping: it reaps agents whose lease expired - their tasks go to another agent -
and, when an autoscaler is configured, feeds the pure policy in
:mod:`loadkit.workloads.fleet.autoscaler` with observations read from Redis and applies its
decision to the local host. Agents hosted elsewhere (``loadkit agents``) count towards
capacity; the manager only scales the agents it hosts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from loadkit.redis_io.aio import cancel_and_wait, first_failure, keep_running
from loadkit.redis_io.connect import connect_async
from loadkit.workloads.fleet.autoscaler import (
    AutoscalerConfig,
    AutoscalerState,
    Decision,
    Observation,
    decide,
)
from loadkit.workloads.fleet.host import AgentHost, Work, encode_task_body
from loadkit.workloads.fleet.store import FleetStore


@dataclass
class ScalingEvent:
    t: float
    agents: int
    desired: int
    forecast_rate: float
    queue_depth: int
    reason: str


@dataclass
class FleetManager:
    """Manage one fleet (by name) on the Redis at ``url``."""

    url: str
    fleet: str
    lease_ms: int = 3000
    batch_size: int = 50
    max_inflight_batches: int = 4
    reap_interval_s: float | None = None
    autoscaler: AutoscalerConfig | None = None
    autoscale_interval_s: float = 0.1
    host: AgentHost = field(init=False)
    scaling_log: list[ScalingEvent] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.client = connect_async(self.url)
        self.store = FleetStore(self.client, self.fleet)
        self.host = AgentHost(
            self.url,
            self.fleet,
            lease_ms=self.lease_ms,
            batch_size=self.batch_size,
            max_inflight_batches=self.max_inflight_batches,
        )
        self._loops: list[asyncio.Task[None]] = []
        self.reaped: list[str] = []
        self.reclaimed = 0

    async def start(self) -> FleetManager:
        await self.host.start()
        loop = asyncio.get_running_loop()
        self._loops.append(loop.create_task(self._reap_loop(), name="fleet-reaper"))
        if self.autoscaler is not None:
            self._loops.append(loop.create_task(self._autoscale_loop(), name="fleet-autoscaler"))
        return self

    async def __aenter__(self) -> FleetManager:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def spawn(self, n: int, progress: Callable[[int], None] | None = None) -> list[int]:
        return await self.host.spawn(n, progress)

    async def submit(self, count: int, work: Work, body: str = "") -> tuple[int, int]:
        """Queue ``count`` tasks; returns (allocated at once, queued)."""
        if count < 0:
            raise ValueError("task count must be >= 0")
        now = time.perf_counter_ns()
        return await self.store.submit([encode_task_body(work, body, now)] * count)

    async def submit_bodies(self, bodies: Sequence[str]) -> tuple[int, int]:
        return await self.store.submit(bodies)

    async def reap_now(self) -> int:
        agents, reclaimed = await self.store.reap()
        self.reaped += agents
        self.reclaimed += reclaimed
        return len(agents)

    async def _reap_loop(self) -> None:
        interval = self.reap_interval_s or self.lease_ms / 4000

        async def step() -> None:
            await asyncio.sleep(interval)
            await self.reap_now()

        await keep_running(f"fleet {self.fleet} reaper", step)

    async def _autoscale_loop(self) -> None:
        config = self.autoscaler
        assert config is not None
        state = AutoscalerState()
        last_submitted: int | None = None
        t0 = time.monotonic()

        async def step() -> None:
            nonlocal state, last_submitted
            counts = await self.store.counts()
            submitted = counts["submitted"]
            arrivals = 0 if last_submitted is None else submitted - last_submitted
            last_submitted = submitted
            obs = Observation(
                t=time.monotonic() - t0,
                queue_depth=counts["pending"],
                arrivals=max(arrivals, 0),
                current_agents=self.host.size,
                busy_agents=self.host.busy,
            )
            state, decision = decide(config, state, obs)
            await self._apply(decision, obs)
            await asyncio.sleep(self.autoscale_interval_s)

        await keep_running(f"fleet {self.fleet} autoscaler", step)

    async def _apply(self, decision: Decision, obs: Observation) -> None:
        delta = decision.desired - self.host.size
        if delta > 0:
            await self.host.spawn(delta)
        elif delta < 0:
            await self.host.retire(-delta)
        self.scaling_log.append(
            ScalingEvent(
                t=obs.t,
                agents=self.host.size,
                desired=decision.desired,
                forecast_rate=decision.forecast_rate,
                queue_depth=obs.queue_depth,
                reason=decision.reason,
            )
        )

    def check(self) -> None:
        """Raise the error that ended one of the fleet's loops (Redis lost), if any."""
        for task in self._loops:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        self.host.check()

    async def wait_failed(self) -> BaseException:
        """Wait until a loop of the manager or of its host gives up on Redis."""
        return await first_failure([*self._loops, *self.host._tasks])

    async def stop(self) -> None:
        """Stop the loops and the local host (its agents deregister); keep the connection
        so the caller can still inspect what is left in Redis."""
        try:
            await cancel_and_wait(self._loops)
        finally:
            self._loops = []
            await self.host.stop()

    async def close(self, purge: bool = True) -> None:
        """Stop, then with ``purge`` delete the fleet's remaining keys (counters, results;
        only keys under this fleet's prefix) and close the connection. When stopping
        fails (Redis lost) no purge is tried - it would only wait out its timeouts; the
        run that named the fleet deletes its keys by prefix once Redis answers again."""
        try:
            await self.stop()
            if purge:
                await self.store.purge()
        finally:
            await self.client.aclose()
