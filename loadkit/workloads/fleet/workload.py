"""The fleet workload: spawn, allocate under steady load, reclaim, autoscale, clean up.

Composed from :mod:`loadkit.workloads.fleet.scenarios`; every figure is measured in this run
against the Redis in ``ctx.redis_url``. The cleanup figures compare against baselines
taken before anything started: Redis keys and registry entries of gone agents, asyncio
tasks and file descriptors still open, and RSS growth per repeated fleet lifetime
once the allocator has warmed up (allocator caching stays flat, a leak does not).

Spawn and allocation figures are medians of repeated trials (warm-up discarded), each
beside a Redis round-trip ceiling measured on the same server in the same moment:
``spawn_ceiling_ratio`` (agents spawned per second over the agents per second the same
round trips alone carry, measured just before each spawn) and
``allocation_p99_ceiling_ratio`` (allocation p99 over the p99 of open-loop round trips
made during the same window) hold from host to host where the absolute figures do not.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from loadkit.redis_io.retry import RECONNECTS
from loadkit.runs.metrics import open_fds, settled_rss_bytes
from loadkit.runs.targets import Target
from loadkit.runs.trials import TrialPlan
from loadkit.runs.workload import RunContext, WorkloadOutput
from loadkit.workloads.fleet.manager import FleetManager
from loadkit.workloads.fleet.scenarios import (
    StepLoad,
    measure_allocation_trials,
    measure_autoscale,
    measure_cycles,
    measure_reclaim,
    measure_spawn,
    measure_spawn_trials,
)

BATCH_SIZE = 50
# A trial plan is frozen, so one object can be every scale's default.
# A spawn trial takes about 25 ms at the quick scale and its ratio to the ceiling
# scatters by about 19 % from trial to trial: the median of 61 is worth the 1.5 s.
SPAWN_TRIALS = TrialPlan(kept=61, warmup=1)
ALLOCATION_TRIALS = TrialPlan(kept=9, warmup=1)


@dataclass(frozen=True)
class FleetScale:
    agents: int
    alloc_rate_per_s: float
    alloc_seconds: float
    work_ms: float
    step: StepLoad
    lease_ms: int = 1000
    cycles: int = 6
    # alloc_seconds is one allocation trial's window
    spawn_trials: TrialPlan = SPAWN_TRIALS
    alloc_trials: TrialPlan = ALLOCATION_TRIALS


SCALE = {
    "smoke": FleetScale(
        agents=200,
        alloc_rate_per_s=500,
        alloc_seconds=0.5,
        work_ms=50,
        step=StepLoad(50, 1000, low_s=0.5, high_s=1.5, cooldown_s=2.0, max_agents=500),
        cycles=4,
        spawn_trials=TrialPlan(kept=2, warmup=1),
        alloc_trials=TrialPlan(kept=2, warmup=1),
    ),
    "quick": FleetScale(
        agents=1000,
        alloc_rate_per_s=2000,
        alloc_seconds=1.0,
        work_ms=50,
        step=StepLoad(100, 4000, low_s=1.5, high_s=3.0, cooldown_s=4.0, max_agents=2000),
    ),
    "full": FleetScale(
        agents=10_000,
        alloc_rate_per_s=5000,
        alloc_seconds=2.0,
        work_ms=50,
        step=StepLoad(200, 8000, low_s=3.0, high_s=8.0, cooldown_s=8.0, max_agents=20_000),
    ),
}


def targets(scale: str) -> list[Target]:
    """The workload's targets, as checks."""
    return [
        Target("agents_spawned", ">=", SCALE[scale].agents, "spawn the scale's agent count"),
        Target("spawn_avg_ms", "<", 100, "agent spawn average under 100 ms"),
        Target("spawn_p95_ms", "<", 200, "agent spawn p95 under 200 ms"),
        Target("allocation_avg_ms", "<", 100, "task allocation latency under 100 ms"),
        Target("allocation_p99_ms", "<", 100, "no allocation tail beyond 100 ms"),
        Target(
            "spawn_ceiling_ratio",
            ">",
            0.25,
            "spawning reaches a quarter of what the same Redis round trips alone carry",
        ),
        Target(
            "allocation_p99_ceiling_ratio",
            "<",
            5,
            "the allocation tail within 5x the tail of Redis round trips made meanwhile",
        ),
        Target("reclaim_s", "<", 5.0, "a crashed agent's task is finished by another"),
        Target("autoscale_reaction_s", "<", 5.0, "autoscaler reaches needed capacity in 5 s"),
        Target("autoscale_residual_ratio", "<", 0.5, "autoscaler scales back down"),
        Target("cleanup_leaked_keys", "<=", 0, "no Redis keys of gone agents remain"),
        Target("cleanup_leaked_tasks", "<=", 0, "no asyncio tasks leak"),
    ]


def bottlenecks(metrics: dict[str, float]) -> list[str]:
    """Known shapes of trouble in the fleet's own numbers."""
    found = []
    p50, p99 = metrics.get("allocation_p50_ms"), metrics.get("allocation_p99_ms")
    if p50 and p99 and p99 > 10 * p50 and p99 > 5:
        found.append(
            f"allocation tail: p99 {p99:.1f} ms is {p99 / p50:.0f}x the median - the host's "
            "event loop stalls (large result batches, GC) while tasks wait in the inbox"
        )
    avg, p95 = metrics.get("spawn_avg_ms"), metrics.get("spawn_p95_ms")
    if avg and p95 and p95 > 4 * avg and p95 > 20:
        found.append(
            f"spawn batches queue: p95 {p95:.1f} ms vs average {avg:.1f} ms - "
            "raise max_inflight_batches or the batch size"
        )
    reaction = metrics.get("autoscale_reaction_s")
    if reaction is not None and reaction > 2:
        found.append(
            f"autoscaler slow to react ({reaction:.1f} s): shorten scale_up_cooldown_s "
            "or lengthen the forecast horizon"
        )
    overshoot = metrics.get("autoscale_overshoot_ratio")
    if overshoot is not None and overshoot > 1.5:
        found.append(f"autoscaler overshoots to {overshoot:.2f}x the needed capacity")
    for name in ("cleanup_leaked_keys", "cleanup_leaked_tasks", "cleanup_leaked_fds"):
        if (metrics.get(name) or 0) > 0:
            found.append(f"resource leak: {name} = {metrics[name]:.0f} after shutdown")
    growth = metrics.get("cleanup_rss_growth_per_cycle_kib")
    if growth is not None and growth > 256:
        found.append(f"memory grows {growth:.0f} KiB per fleet lifetime: a leak")
    rss = metrics.get("rss_per_agent_kib")
    if rss is not None and rss > 20:
        found.append(f"agents are heavy: {rss:.1f} KiB RSS each (goal <= 20 KiB)")
    return found


async def run(ctx: RunContext) -> WorkloadOutput:
    sc = SCALE[ctx.scale]
    run_id = ctx.run_id  # every fleet of this run is named <run_id>-<part>
    baseline_tasks = set(asyncio.all_tasks())
    fds_before = open_fds()
    rss_cold = settled_rss_bytes()
    reconnects_before = RECONNECTS.count
    metrics: dict[str, float] = {}
    samples: dict[str, list[float]] = {}

    def phase(name: str, lo: float, hi: float):
        return lambda f: ctx.progress(name, lo + (hi - lo) * f)

    main = await FleetManager(
        ctx.redis_url, f"{run_id}-bench", lease_ms=sc.lease_ms, batch_size=BATCH_SIZE
    ).start()
    try:
        metrics |= await measure_spawn(main, sc.agents, phase("spawn", 0.0, 0.05))
        ctx.progress("allocate", 0.05)
        allocation = await measure_allocation_trials(
            main, sc.alloc_rate_per_s, sc.alloc_seconds, sc.work_ms, sc.alloc_trials
        )
        metrics |= allocation.metrics
        samples |= allocation.samples
        ctx.progress("reclaim", 0.3)
        metrics |= await measure_reclaim(main)
        await main.stop()
        main_leftovers = await main.store.leftovers()
    finally:
        await main.close(purge=True)
    ctx.progress("spawn trials", 0.35)
    spawned = await measure_spawn_trials(
        ctx.redis_url, f"{run_id}-spawn", sc.agents, sc.lease_ms, BATCH_SIZE, sc.spawn_trials
    )
    metrics |= spawned.metrics  # the main fleet's one spawn gives way to the trials' median
    samples |= spawned.samples
    trace: list[tuple[float, int]] = []
    metrics |= await measure_autoscale(
        ctx.redis_url,
        f"{run_id}-scale",
        sc.step,
        sc.lease_ms,
        phase("autoscale", 0.4, 0.9),
        trace,
    )
    metrics |= await measure_cycles(
        ctx.redis_url, f"{run_id}-cycle", sc.agents, sc.cycles, phase("cleanup", 0.9, 1.0)
    )
    await asyncio.sleep(0)
    leaked_tasks = [t for t in asyncio.all_tasks() if t not in baseline_tasks and not t.done()]
    leaked_keys = main_leftovers + metrics["autoscale_leaked_keys"] + metrics["cycle_leaked_keys"]
    metrics |= {
        "cleanup_leaked_keys": float(leaked_keys),
        "cleanup_leaked_tasks": float(len(leaked_tasks)),
        "cleanup_leaked_fds": float(max(0, open_fds() - fds_before)),
        "cleanup_rss_retained_kib": (metrics.pop("cycle_final_rss_bytes") - rss_cold) / 1024,
        "redis_reconnects": float(RECONNECTS.count - reconnects_before),
    }
    # Plot last: matplotlib keeps its font files open, which the fd count would see.
    artifacts = {}
    plot_path = ctx.artifact("fleet-autoscale.png")
    if plot_path is not None:
        # Imported only when a plot is drawn (and after the fd count): matplotlib.
        from loadkit.workloads.fleet.plots import plot_autoscale

        plot_autoscale(trace, sc.step, int(metrics["autoscale_needed_agents"]), plot_path)
        artifacts["autoscaler through a load step"] = plot_path.name
    ctx.progress("done", 1.0)
    return WorkloadOutput(metrics=metrics, artifacts=artifacts, samples=samples)
