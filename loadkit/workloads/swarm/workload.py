"""The swarm workload: 100 swarms on Redis, measured for rate, latency, fencing and
recovery.

Composed from :mod:`loadkit.workloads.swarm.scenarios`; every figure is measured in this run.
Saturation and paced latency are medians of repeated trials (warm-up discarded); each
saturation trial follows an XADD ceiling measured against the same server, so the
delivered rate is also read as a share of what one redis-py client can do there
(``delivered_ceiling_ratio``, the median of the trials' own ratios). The Redis-kill case runs on
a private ``appendfsync always`` server this workload starts (and stops): it never kills
the server it was given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadkit.redis_io.retry import RECONNECTS
from loadkit.runs.targets import Target
from loadkit.runs.trials import TrialPlan
from loadkit.runs.workload import RunContext, WorkloadOutput
from loadkit.workloads.swarm.config import SwarmConfig
from loadkit.workloads.swarm.coordinator import connect
from loadkit.workloads.swarm.rig import SwarmRig
from loadkit.workloads.swarm.scenarios import (
    measure_churn,
    measure_coordinator_kill,
    measure_fencing,
    measure_paced_trials,
    measure_redis_kill,
    measure_saturation_trials,
)

# A trial plan is frozen, so one object can be every scale's default.
TRIALS = TrialPlan(kept=5, warmup=1)
# a p99 of 1 s windows scatters by about a quarter from window to window
PACED_TRIALS = TrialPlan(kept=9, warmup=1)


@dataclass(frozen=True)
class SwarmScale:
    swarms: int = 100
    members: int = 10
    # Measured on 2 shared cores: two producers and/or two coordinators delivered no more
    # than one of each (they compete with Redis for the same cores), so one of each; on
    # more cores raise these (SwarmConfig spreads members and load over the processes).
    coordinators: int = 1
    producers: int = 1
    lease_ms: int = 300
    # per trial: an XADD ceiling, then a saturation window; paced windows
    ceiling_s: float = 0.4
    saturation_s: float = 1.0
    saturation_trials: TrialPlan = TRIALS
    paced_rate_per_s: float = 10_000
    paced_s: float = 1.0
    paced_trials: TrialPlan = PACED_TRIALS
    churn_rate_per_s: float = 5_000
    churn_s: float = 1.5
    churn_kills: int = 3
    fence_rounds: int = 5
    fence_ttl_ms: int = 100
    kill_rate_per_s: float = 3_000
    kill_s: float = 2.5
    kill_at_s: float = 0.8


SCALE = {
    "smoke": SwarmScale(
        swarms=20,
        members=5,
        ceiling_s=0.2,
        saturation_s=0.5,
        saturation_trials=TrialPlan(kept=2, warmup=1),
        paced_rate_per_s=2_000,
        paced_s=0.5,
        paced_trials=TrialPlan(kept=2, warmup=1),
        churn_rate_per_s=1_000,
        churn_s=0.5,
        churn_kills=1,
        fence_rounds=2,
        kill_rate_per_s=1_000,
        kill_s=1.5,
        kill_at_s=0.5,
    ),
    "quick": SwarmScale(),
    "full": SwarmScale(
        ceiling_s=1.0,
        saturation_s=3.0,
        paced_s=3.0,
        churn_s=5.0,
        churn_kills=10,
        fence_rounds=12,
        kill_rate_per_s=5_000,
        kill_s=6.0,
        kill_at_s=2.0,
    ),
}


def targets(scale: str) -> list[Target]:
    """The workload's targets, plus the two correctness ones (nothing lost,
    no stale leader write accepted)."""
    return [
        Target("swarms_created", ">=", SCALE[scale].swarms, "create every swarm of the scale"),
        Target("delivered_per_s", ">", 10_000, "more than 10,000 messages/s across swarms"),
        Target("delivery_avg_ms", "<", 100, "average delivery latency under 100 ms"),
        Target(
            "delivered_ceiling_ratio",
            ">",
            0.4,
            "delivery reaches 40% of the rate one client enqueues alone on the same Redis",
        ),
        Target("election_success_ratio", ">=", 1.0, "every leader election succeeds"),
        Target("recovery_ratio", ">", 0.95, "state recovered for more than 95% of swarms"),
        Target("messages_lost", "<=", 0, "at-least-once: no acknowledged message lost"),
        Target("stale_writes_accepted", "<=", 0, "fencing: no paused leader ever writes"),
    ]


def bottlenecks(metrics: dict[str, float]) -> list[str]:
    """Known shapes of trouble in the swarm's own numbers."""
    found = []
    rate, ceiling = metrics.get("delivered_per_s"), metrics.get("xadd_ceiling_per_s")
    if rate and ceiling and rate < 0.55 * ceiling:
        found.append(
            f"delivery at {rate / ceiling:.0%} of the XADD ceiling ({ceiling:,.0f}/s): "
            "client-side encoding/parsing in the coordinators bounds the rate - add "
            "coordinator processes (cores permitting) or read larger batches"
        )
    p50, p99 = metrics.get("delivery_p50_ms"), metrics.get("delivery_p99_ms")
    if p99 is not None and p99 > 25:
        enqueue = metrics.get("paced_enqueue_p99_ms") or 0
        where = (
            "the producer falls behind its schedule (send side)"
            if enqueue > p99 / 2
            else "messages wait in Redis or in the coordinator (read/apply side)"
        )
        found.append(
            f"paced p99 {p99:.1f} ms (p50 {p50 or 0:.1f} ms, p99 until Redis had the message "
            f"{enqueue:.1f} ms) at {metrics.get('paced_rate_per_s', 0):,.0f}/s: {where}; "
            "on a shared 2-core machine CPU contention shows here first"
        )
    failover = metrics.get("failover_p95_ms")
    if failover is not None and failover > 200:
        found.append(f"failover p95 {failover:.0f} ms: bounded below by the lease TTL")
    for name in ("messages_lost", "stale_writes_accepted"):
        if (metrics.get(name) or 0) > 0:
            found.append(f"correctness: {name} = {metrics[name]:.0f}")
    dup = metrics.get("messages_duplicated") or 0
    sent = metrics.get("messages_sent") or 0
    if sent and dup > 0.01 * sent:
        found.append(f"{dup:.0f} redeliveries ({dup / sent:.1%}): many retries after drops")
    for case in ("coordinator", "redis"):
        s = metrics.get(f"recovery_{case}_s")
        if s is not None and s > 5:
            found.append(f"recovery after a {case} kill took {s:.1f} s")
    return found


async def run(ctx: RunContext) -> WorkloadOutput:
    sc = SCALE[ctx.scale]
    run_id = ctx.run_id  # every key of this run starts with it
    config = SwarmConfig(
        url=ctx.redis_url,
        run=run_id,
        swarms=sc.swarms,
        members=sc.members,
        coordinators=sc.coordinators,
        producers=sc.producers,
        lease_ms=sc.lease_ms,
    )
    metrics: dict[str, float] = {}
    reconnects_before = RECONNECTS.count
    samples: dict[str, list[float]] = {}
    ctx.progress("swarms", 0.0)
    client = connect(config, f"{run_id}-ceiling")
    rig = await SwarmRig(config).start()
    finished = False
    try:
        metrics["swarms_created"] = float(await rig.swarms_created())
        led, _ = await rig.wait_leaders()
        ctx.progress("saturate", 0.1)
        saturation = await measure_saturation_trials(
            rig, client, run_id, sc.ceiling_s, sc.saturation_s, sc.saturation_trials
        )
        ctx.progress("paced", 0.3)
        paced = await measure_paced_trials(rig, sc.paced_rate_per_s, sc.paced_s, sc.paced_trials)
        for trials in (saturation, paced):
            metrics |= trials.metrics
            samples |= trials.samples
        ctx.progress("churn", 0.45)
        metrics |= await measure_churn(rig, sc.churn_rate_per_s, sc.churn_s, sc.churn_kills)
        ctx.progress("kill coord", 0.55)
        metrics |= await measure_coordinator_kill(rig, sc.kill_rate_per_s, sc.kill_s, sc.kill_at_s)
        main = await rig.verify()
        child_reconnects = await rig.child_reconnects()
        finished = True
    finally:
        # A failed run ends fast: its keys are deleted by the run's prefix afterwards.
        await client.aclose()
        await rig.close(purge=True, kill=not finished)
    ctx.progress("fencing", 0.7)
    metrics |= await measure_fencing(
        ctx.redis_url,
        run_id + "-fence",
        sc.swarms,
        sc.fence_rounds,
        sc.fence_ttl_ms,
        seeds=rig.config.seeds,
    )
    ctx.progress("kill redis", 0.8)
    metrics |= await measure_redis_kill(config, sc.kill_rate_per_s, sc.kill_s, sc.kill_at_s)
    # Every retry after a dropped connection, in this process and in the live children
    # (the churn and Redis-kill scenarios cause some on purpose).
    child_reconnects += metrics.pop("redis_kill_child_reconnects")
    metrics["redis_reconnects"] = float(RECONNECTS.count - reconnects_before + child_reconnects)
    elections = sc.swarms + metrics["injected_pauses"]
    won = led + metrics["injected_pauses"] - metrics["failovers_failed"]
    metrics |= {
        "messages_sent": main["sent"] + metrics["aof_messages_sent"],
        "messages_delivered": main["applied"] + metrics["aof_messages_delivered"],
        "messages_lost": float(main["lost"] + metrics["recovery_redis_lost"]),
        "messages_duplicated": main["duplicates"] + metrics["aof_messages_duplicated"],
        "election_success_ratio": won / elections,
        "recovery_ratio": (metrics["recovery_coordinator_ratio"] + metrics["recovery_redis_ratio"])
        / 2,
    }
    times = [metrics["recovery_coordinator_s"], metrics["recovery_redis_s"]]
    metrics["recovery_s"] = max(times) if all(map(math.isfinite, times)) else math.nan
    ctx.progress("done", 1.0)
    return WorkloadOutput(metrics=metrics, samples=samples)
