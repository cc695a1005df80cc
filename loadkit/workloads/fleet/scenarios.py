"""Fleet measurements, each a small async function returning flat metrics.

The workload (``loadkit run fleet``) and the asv benchmarks (``benchmarks/bench_fleet.py``)
compose the same functions, so a number in the report and a number in asv's history
mean the same thing. Every function here is bounded in time and task count.

* spawn - agents in batches; per agent, from its batch's spawn request to the agent being
  registered in Redis and ready; RSS growth per agent (after GC and malloc_trim).
* allocation - an open-loop load: tasks are scheduled at a fixed rate and carry their
  *scheduled* submit time, so a lagging submitter shows up as latency instead of hiding
  (no coordinated omission); latency is scheduled submit -> an agent starts the task.
* reclaim - agents crash while holding tasks; time until other agents finished them.
* autoscale - the predictive autoscaler sees a low -> high -> low step in arrival rate;
  reaction is step -> capacity reaches what the policy needs at the high rate.
* cycles - whole fleet lifetimes repeated: keys left behind, RSS growth per cycle once
  the allocator has warmed up.
* ceilings - what the Redis round trips under spawn and allocation can do with no fleet
  logic at all, measured in the same run on the same server, so spawn rate and
  allocation tail can be read as ratios that hold from host to host.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from loadkit.redis_io.retry import retried
from loadkit.runs.metrics import LatencyRecorder, percentile, settled_rss_bytes
from loadkit.runs.trials import TrialPlan, TrialResult, run_trials
from loadkit.workloads.fleet.autoscaler import AutoscalerConfig
from loadkit.workloads.fleet.host import Task, Work, encode_task_body
from loadkit.workloads.fleet.manager import FleetManager

Progress = Callable[[float], None]
TICK_S = 0.001


def _noop(_fraction: float) -> None:
    pass


async def open_loop(
    manager: FleetManager,
    schedule: list[tuple[float, float]],
    work: Work,
    on_tick: Callable[[float], None] | None = None,
) -> int:
    """Submit tasks on a schedule of ``(duration_s, rate_per_s)`` phases; returns the number
    submitted. Each task carries its scheduled time; the loop ends with the schedule."""
    start = time.perf_counter_ns()
    submitted = 0
    phase_start_s = 0.0
    due_before = 0.0
    for duration, rate in schedule:
        phase_end_s = phase_start_s + duration
        while True:
            now_s = (time.perf_counter_ns() - start) / 1e9
            due = due_before + (min(now_s, phase_end_s) - phase_start_s) * rate
            n = int(due) - submitted
            if n > 0:
                first_s = phase_start_s + (submitted - due_before) / rate
                bodies = [
                    encode_task_body(work, "", start + int((first_s + i / rate) * 1e9))
                    for i in range(n)
                ]
                await manager.submit_bodies(bodies)
                submitted += n
            if on_tick is not None:
                on_tick(now_s)
            if now_s >= phase_end_s:
                break
            await asyncio.sleep(TICK_S)
        due_before += duration * rate
        phase_start_s = phase_end_s
    return submitted


async def wait_completed(manager: FleetManager, expected: int, timeout_s: float) -> int:
    """Poll the fleet's completion counter until ``expected`` or the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        manager.check()
        completed = (await manager.store.counts())["completed"]
        if completed >= expected:
            return completed
        await asyncio.sleep(0.02)
    return (await manager.store.counts())["completed"]


async def measure_spawn(
    manager: FleetManager, agents: int, progress: Progress = _noop
) -> dict[str, float]:
    rss_before = settled_rss_bytes()
    done = 0

    def spawned(n: int) -> None:
        nonlocal done
        done += n
        progress(done / agents)

    t0 = time.perf_counter_ns()
    latencies = await manager.spawn(agents, spawned)
    elapsed_s = (time.perf_counter_ns() - t0) / 1e9
    rss_after = settled_rss_bytes()
    registered = (await manager.store.counts())["agents"]
    lat_ms = np.asarray(latencies, dtype=np.float64) / 1e6
    return {
        "agents_spawned": float(registered),
        "spawn_avg_ms": float(lat_ms.mean()) if lat_ms.size else math.nan,
        "spawn_p95_ms": percentile(lat_ms, 95),
        "spawn_rate_per_s": agents / elapsed_s,
        "spawn_total_s": elapsed_s,
        "rss_per_agent_kib": (rss_after - rss_before) / max(agents, 1) / 1024,
    }


# One script call that carries its arguments and does nothing with them: the round trip
# and the script call without any fleet logic.
_ECHO = "return #ARGV"
PROBE_INTERVAL_S = 0.002


async def measure_round_trips(
    manager: FleetManager, batches: int, batch_size: int, inflight: int
) -> dict[str, float]:
    """The Redis ceiling under spawning, on the manager's own client: ``batches``
    script calls, each carrying ``batch_size`` agent-sized arguments, with ``inflight``
    at a time (as :meth:`AgentHost.spawn` sends its batches): how many agents per second
    the round trips alone would carry."""
    echo = manager.client.register_script(_ECHO)
    args = [1000, "host", *(f"ceiling-agent-{i:06d}" for i in range(batch_size))]
    gate = asyncio.Semaphore(inflight)

    async def one() -> None:
        async with gate:
            # A dropped connection is retried like every fleet call (and its time counted).
            await retried("fleet ceiling round trip", lambda: echo(keys=[], args=args))

    await one()  # the script is loaded, the connection open
    t0 = time.perf_counter_ns()
    await asyncio.gather(*(one() for _ in range(batches)))
    elapsed_s = (time.perf_counter_ns() - t0) / 1e9
    return {"spawn_ceiling_per_s": batches * batch_size / elapsed_s}


async def probe_round_trips(
    manager: FleetManager, stop: asyncio.Event, interval_s: float = PROBE_INTERVAL_S
) -> LatencyRecorder:
    """Open-loop round trips on the manager's client until ``stop``: one script call
    every ``interval_s``, each timed from when it was due, so a stall of this process's
    event loop or of Redis shows here as it shows in an allocation. Run beside an
    allocation window, its tail is the floor under the allocation tail on this host at
    this moment."""
    echo = manager.client.register_script(_ECHO)

    async def one() -> None:
        await retried("fleet round-trip probe", lambda: echo(keys=[], args=[1]))

    await one()
    recorder = LatencyRecorder()
    start = time.perf_counter_ns()
    sent = 0
    while not stop.is_set():
        due = start + int(sent * interval_s * 1e9)
        wait_ns = due - time.perf_counter_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        await one()
        recorder.record_since(due)
        sent += 1
    return recorder


async def spawn_trial(
    url: str, fleet: str, agents: int, lease_ms: int, batch_size: int
) -> dict[str, float]:
    """One spawn of ``agents`` in a fleet of its own, right after the round-trip ceiling
    on the same server: spawn figures and their ratio to the ceiling."""
    manager = await FleetManager(url, fleet, lease_ms=lease_ms, batch_size=batch_size).start()
    try:
        ceiling = await measure_round_trips(
            manager, -(-agents // batch_size), batch_size, manager.max_inflight_batches
        )
        t0 = time.perf_counter_ns()
        latencies = await manager.spawn(agents)
        elapsed_s = (time.perf_counter_ns() - t0) / 1e9
        await manager.stop()
    finally:
        await manager.close(purge=True)
    lat_ms = np.asarray(latencies, dtype=np.float64) / 1e6
    rate = agents / elapsed_s
    return {
        "spawn_rate_per_s": rate,
        "spawn_avg_ms": float(lat_ms.mean()) if lat_ms.size else math.nan,
        "spawn_p95_ms": percentile(lat_ms, 95),
        "spawn_ceiling_per_s": ceiling["spawn_ceiling_per_s"],
        "spawn_ceiling_ratio": rate / ceiling["spawn_ceiling_per_s"],
    }


async def measure_spawn_trials(
    url: str, fleet_prefix: str, agents: int, lease_ms: int, batch_size: int, plan: TrialPlan
) -> TrialResult:
    """Spawn figures as the median of trials, each a fresh fleet: one spawn of a
    thousand agents takes about 12 ms, a window one scheduler hiccup doubles."""
    return await run_trials(
        lambda i: spawn_trial(url, f"{fleet_prefix}-{i}", agents, lease_ms, batch_size), plan
    )


async def measure_allocation_trials(
    manager: FleetManager, rate_per_s: float, seconds: float, work_ms: float, plan: TrialPlan
) -> TrialResult:
    """Allocation figures as the median of back-to-back windows on the same agents, each
    with open-loop Redis round trips beside it (:func:`probe_round_trips`): a p99 over
    one window of a few thousand tasks is a handful of events, and the ratio of the two
    tails within a window holds when the host's stalls move both."""

    async def trial(_i: int) -> dict[str, float]:
        stop = asyncio.Event()
        probe = asyncio.ensure_future(probe_round_trips(manager, stop))
        try:
            figures = await measure_allocation(manager, rate_per_s, seconds, work_ms)
        finally:
            stop.set()
            recorder = await probe
        rtt = recorder.summary().get("p99", math.nan)
        return figures | {
            "round_trip_p99_ms": rtt,
            "allocation_p99_ceiling_ratio": figures["allocation_p99_ms"] / rtt,
        }

    exact = ("allocation_tasks", "allocation_submitted", "allocation_completed", "allocation_stale")
    return await run_trials(trial, plan, exact=exact)


async def measure_allocation(
    manager: FleetManager,
    rate_per_s: float,
    seconds: float,
    work_ms: float,
    progress: Progress = _noop,
) -> dict[str, float]:
    """Steady open-loop load on the agents the manager already has, until every task of
    it is done. The fleet's completion counter counts every task the fleet ever
    finished, so a window waits for the count it started from plus its own tasks: a
    window after another must not end while its own tasks still run."""
    manager.host.alloc_latency = LatencyRecorder()
    start = await manager.store.counts()
    before = start["completed"]
    expected = await open_loop(
        manager,
        [(seconds, rate_per_s)],
        Work(sleep_ms=work_ms),
        on_tick=lambda t: progress(min(t / seconds, 1.0)),
    )
    completed = await wait_completed(manager, before + expected, timeout_s=10 + work_ms / 100)
    counts = await manager.store.counts()
    s = manager.host.alloc_latency.summary()
    return {
        "allocation_tasks": float(expected),
        # as Redis counted them, in this window: a submission retried after a dropped
        # connection must not add its tasks twice, nor a retried result count twice
        "allocation_submitted": float(counts["submitted"] - start["submitted"]),
        "allocation_completed": float(completed - before),
        "allocation_stale": float(counts["stale"] - start["stale"]),
        "allocation_avg_ms": s.get("mean", math.nan),
        "allocation_p50_ms": s.get("p50", math.nan),
        "allocation_p95_ms": s.get("p95", math.nan),
        "allocation_p99_ms": s.get("p99", math.nan),
        "allocation_max_ms": s.get("max", math.nan),
    }


async def measure_reclaim(manager: FleetManager, victims: int = 5) -> dict[str, float]:
    """Crash agents while they hold tasks; time until other agents finished those tasks.
    Dominated by the lease (a crash is only known when the lease runs out)."""
    finished: dict[str, int] = {}

    def on_complete(task: Task, agent_id: str) -> None:
        if task.body == "reclaim":
            finished[task.id] = time.perf_counter_ns()

    manager.host.on_complete = on_complete
    try:
        await manager.submit(victims, Work(sleep_ms=200), body="reclaim")
        held: set[str] = set()
        deadline = time.monotonic() + 2
        while len(held) < victims and time.monotonic() < deadline:
            manager.check()
            await asyncio.sleep(0.005)
            held = {a.task_id for a in manager.host.agents.values() if a.task_id is not None}
        holders = [a for a in manager.host.agents.values() if a.task_id in held]
        crash_ns = time.perf_counter_ns()
        for agent in holders:
            manager.host.crash(agent.id)
        deadline = time.monotonic() + 3 * manager.lease_ms / 1000 + 2
        while time.monotonic() < deadline and not held <= finished.keys():
            manager.check()
            await asyncio.sleep(0.01)
    finally:
        manager.host.on_complete = None
    done = [finished[t] for t in held if t in finished]
    return {
        "reclaim_tasks": float(len(held)),
        "reclaim_completed": float(len(done)),
        "reclaim_s": (max(done) - crash_ns) / 1e9 if done and len(done) == len(held) else math.nan,
    }


@dataclass(frozen=True)
class StepLoad:
    """A low -> high -> low arrival-rate profile for the autoscaler."""

    low_rate_per_s: float = 100
    high_rate_per_s: float = 4000
    low_s: float = 1.5
    high_s: float = 3.0
    cooldown_s: float = 4.0
    work_ms: float = 50
    max_agents: int = 2000


async def measure_autoscale(
    url: str,
    fleet: str,
    step: StepLoad,
    lease_ms: int = 1000,
    progress: Progress = _noop,
    trace: list[tuple[float, int]] | None = None,
) -> dict[str, float]:
    """Run the step profile; ``trace`` (if given) receives (seconds, agents) per tick."""
    config = AutoscalerConfig(
        min_agents=10,
        max_agents=step.max_agents,
        service_time_s=step.work_ms / 1000,
        target_utilization=0.7,
        horizon_s=1.0,
        scale_up_cooldown_s=0.2,
        scale_down_cooldown_s=1.0,
    )
    needed = math.ceil(step.high_rate_per_s * config.service_time_s / config.target_utilization)
    trace = [] if trace is None else trace
    total = step.low_s + step.high_s + step.cooldown_s
    async with FleetManager(
        url, fleet, lease_ms=lease_ms, autoscaler=config, autoscale_interval_s=0.1
    ) as manager:
        await manager.spawn(config.min_agents)

        def tick(t: float) -> None:
            trace.append((t, manager.host.size))
            progress(min(t / total, 1.0))

        schedule = [
            (step.low_s, step.low_rate_per_s),
            (step.high_s, step.high_rate_per_s),
            (step.cooldown_s, step.low_rate_per_s),
        ]
        await open_loop(manager, schedule, Work(sleep_ms=step.work_ms), on_tick=tick)
        await manager.stop()
        leaked = await manager.store.leftovers()
    reached = [t for t, size in trace if t >= step.low_s and size >= needed]
    peak = max(size for _, size in trace)
    final = trace[-1][1]
    return {
        "autoscale_needed_agents": float(needed),
        "autoscale_peak_agents": float(peak),
        "autoscale_final_agents": float(final),
        "autoscale_reaction_s": (reached[0] - step.low_s) if reached else math.nan,
        "autoscale_overshoot_ratio": peak / needed,
        "autoscale_residual_ratio": final / peak,
        "autoscale_leaked_keys": float(leaked),
    }


async def fleet_lifetime(url: str, fleet: str, agents: int) -> int:
    """One whole fleet lifetime (spawn, two tasks per agent, retire half, stop); returns
    how many registry entries and keys it left behind in Redis."""
    manager = await FleetManager(url, fleet, lease_ms=1000).start()
    try:
        await manager.spawn(agents)
        await manager.submit(2 * agents, Work(sleep_ms=1))
        await wait_completed(manager, 2 * agents, timeout_s=10)
        await manager.host.retire(agents // 2)
        await manager.stop()
        return await manager.store.leftovers()
    finally:
        await manager.close(purge=True)


async def measure_cycles(
    url: str, fleet_prefix: str, agents: int, cycles: int = 6, progress: Progress = _noop
) -> dict[str, float]:
    """Repeated lifetimes: a leak grows RSS every cycle, allocator caching does not.

    The first half of the cycles warm the allocator up (pymalloc arenas and the glibc
    heap grow to their working size over two or three lifetimes, then stay flat: seen
    over 12 lifetimes of 10,000 agents); growth is measured over the second half."""
    if cycles < 4:
        raise ValueError("need at least 4 cycles: half to warm up, half to measure")
    leaked = 0
    rss: list[int] = []
    for i in range(cycles):
        leaked += await fleet_lifetime(url, f"{fleet_prefix}-{i}", agents)
        rss.append(settled_rss_bytes())
        progress((i + 1) / cycles)
    settled = cycles // 2
    return {
        "cycle_leaked_keys": float(leaked),
        "cleanup_rss_growth_per_cycle_kib": (rss[-1] - rss[settled])
        / (cycles - 1 - settled)
        / 1024,
        "cycle_final_rss_bytes": float(rss[-1]),
    }
