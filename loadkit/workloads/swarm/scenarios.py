"""Swarm measurements, each a small async function returning flat metrics.

``loadkit run swarm`` (:mod:`loadkit.workloads.swarm.workload`) and the asv suite
(``benchmarks/bench_swarm.py``) compose these same functions, so a figure in a report and
one in asv's history mean the same thing. All are bounded in time.

* xadd ceiling - pipelined XADD from one redis-py client (the producers' code path, no
  consumers): what enqueueing alone reaches on this server.
* saturation - producers send as fast as the backlog bound allows; delivered = applied
  in Redis per second (counted by the apply script, not by the consumers' say-so).
* paced - open loop at a fixed rate; latency from each message's *scheduled* time to
  its application, so queueing shows instead of hiding (no coordinated omission).
* churn - paced load while our connections are killed server-side (CLIENT KILL).
* fencing - leaders are paused (stop renewing) until a new one is granted, then try to
  write with their old token: every such write must be refused. Failover time is pause
  -> new grant.
* coordinator kill / Redis kill - SIGKILL mid-load, then a new coordinator (or the
  restarted Redis, AOF ``appendfsync always``) must carry every swarm on with its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from loadkit.redis_io.retry import TRANSIENT, Attempts, retried
from loadkit.redis_io.server import RedisServer
from loadkit.runs.metrics import latency_figures
from loadkit.runs.trials import TrialPlan, TrialResult, run_trials
from loadkit.workloads.swarm.config import SwarmConfig
from loadkit.workloads.swarm.coordinator import connect, create_swarms
from loadkit.workloads.swarm.election import Candidacy, fenced_write, snapshot
from loadkit.workloads.swarm.keys import SwarmKeys
from loadkit.workloads.swarm.messaging import Producer
from loadkit.workloads.swarm.rig import (
    SwarmRig,
    SwarmStatus,
    kill_connections,
    our_connections,
    purge_run,
    read_status,
    server_ms,
)
from loadkit.workloads.swarm.scripts import Scripts

Progress = Callable[[float], None]


def _noop(_fraction: float) -> None:
    pass


async def measure_xadd_ceiling(
    client: Any, run: str, seconds: float = 1.0, pipeline: int = 1000, streams: int = 100
) -> dict[str, float]:
    """Pipelined XADD from this one client with the producers' own code path (same
    payload, same cap, same encoding), one batch of ``pipeline`` at a time, over
    ``streams`` scratch streams that are deleted afterwards: enqueueing alone, with no
    one consuming."""
    keys = [SwarmKeys(f"{run}-ceiling", i) for i in range(streams)]
    producer = Producer(client, keys, index=0)
    t0 = time.perf_counter()
    end = t0 + seconds
    try:
        while time.perf_counter() < end:
            await producer.send([time.perf_counter_ns()] * pipeline)
        elapsed = time.perf_counter() - t0
    finally:
        # split by slot on a cluster; deleting again is harmless
        await retried("swarm ceiling clean-up", lambda: client.delete(*(k.stream for k in keys)))
    return {"xadd_ceiling_per_s": producer.sent / elapsed}


async def measure_saturation(
    rig: SwarmRig, seconds: float, warmup_s: float = 0.5, window: int = 20_000
) -> dict[str, float]:
    """Maximum delivered rate: messages applied per second across all swarms while the
    producers keep up to ``window`` messages in flight."""
    counters = rig.counters
    task = asyncio.ensure_future(rig.produce("saturate", warmup_s + seconds, window))
    try:
        await asyncio.sleep(warmup_s)
        a0, s0, t0 = counters.applied(), counters.sent(), time.perf_counter()
        await asyncio.sleep(seconds)
        a1, s1, t1 = counters.applied(), counters.sent(), time.perf_counter()
    finally:
        replies = await task
    drained = await rig.drain()
    # Applied and sent rates agree in a steady state; the lower one is reported so that
    # a backlog drained (or built) inside the window cannot inflate the figure.
    return {
        "delivered_per_s": min(a1 - a0, s1 - s0) / (t1 - t0),
        "saturation_applied_per_s": (a1 - a0) / (t1 - t0),
        "saturation_sent": float(sum(r["sent"] for r in replies)),
        "saturation_drained": float(drained),
    }


async def measure_paced(rig: SwarmRig, rate_per_s: float, seconds: float) -> dict[str, float]:
    """Open-loop delivery latency at ``rate_per_s`` spread over the producer processes."""
    await rig.latencies_ms()  # drop samples from earlier phases
    replies = await rig.produce("paced", rate_per_s / len(rig.producers), seconds)
    await rig.drain()
    ms = await rig.latencies_ms()
    sent = sum(r["sent"] for r in replies)
    enqueue = np.concatenate([np.frombuffer(r["enqueue_ns"], dtype=np.int64) for r in replies])
    out = latency_figures(ms, "delivery")
    if enqueue.size:  # how much of the latency passed before Redis had the message
        out |= latency_figures(enqueue / 1e6, "paced_enqueue", ("p50", "p99"))
    out |= {
        "paced_rate_per_s": sent / max(r["elapsed_s"] for r in replies),
        "paced_messages": float(sent),
        "paced_latency_samples": float(ms.size),
    }
    return out


async def measure_saturation_trials(
    rig: SwarmRig,
    ceiling_client: Any,
    run: str,
    ceiling_s: float,
    seconds: float,
    plan: TrialPlan,
) -> TrialResult:
    """Saturation as the median of trials, each right after an XADD ceiling on the same
    server: the delivered rate, the ceiling, and the ratio of the two within each trial
    (a slow spell of the host lowers both sides of a trial's ratio alike)."""

    async def trial(i: int) -> dict[str, float]:
        ceiling = await measure_xadd_ceiling(ceiling_client, f"{run}-{i}", ceiling_s)
        figures = await measure_saturation(rig, seconds, warmup_s=0.3)
        return (
            figures
            | ceiling
            | {
                "delivered_ceiling_ratio": figures["delivered_per_s"]
                / ceiling["xadd_ceiling_per_s"]
            }
        )

    return await run_trials(trial, plan, exact=("saturation_sent", "saturation_drained"))


async def measure_paced_trials(
    rig: SwarmRig, rate_per_s: float, seconds: float, plan: TrialPlan
) -> TrialResult:
    """Paced latency as the median of back-to-back windows: a p99 over one window is a
    few dozen messages of one slow spell."""
    return await run_trials(
        lambda _i: measure_paced(rig, rate_per_s, seconds),
        plan,
        exact=("paced_messages", "paced_latency_samples"),
    )


async def measure_churn(
    rig: SwarmRig, rate_per_s: float, seconds: float, kills: int = 3
) -> dict[str, float]:
    """Paced load while every connection of our processes is killed from the server side
    ``kills`` times. Reconnects are counted by the server: connections of ours opened
    after the first kill."""
    run = rig.config.run
    task = asyncio.ensure_future(rig.produce("paced", rate_per_s / len(rig.producers), seconds))
    killed = 0
    first_new_id: int | None = None
    reopened: set[int] = set()  # connections of ours opened after the first kill
    try:
        for _ in range(kills):
            await asyncio.sleep(seconds / (kills + 1))
            victims = await retried(
                "swarm churn", lambda: our_connections(rig.client, run, skip=f"{run}-rig")
            )
            if first_new_id is None:
                first_new_id = max((cid for _, cid in victims), default=0) + 1
            reopened |= {cid for _, cid in victims if cid >= first_new_id}
            killed += await kill_connections(rig.client, victims)
    finally:
        await task
    drained = await rig.drain()
    after = await retried(
        "swarm churn", lambda: our_connections(rig.client, run, skip=f"{run}-rig")
    )
    if first_new_id is not None:
        reopened |= {cid for _, cid in after if cid >= first_new_id}
    stats = await rig.coordinator_stats()
    return {
        "connections_killed": float(killed),
        "reconnects": float(len(reopened)),
        "churn_loop_errors": float(sum(s["errors"] for s in stats)),
        "churn_drained": float(drained),
    }


def _intact(now: SwarmStatus, before: SwarmStatus, members: int) -> bool:
    """State survived: nothing acknowledged went backwards and membership is whole."""
    return (
        now.applied >= before.applied
        and now.epoch >= before.epoch
        and now.snapshot_applied >= before.snapshot_applied
        and now.members == members
    )


async def _poll_recovery(
    rig: SwarmRig,
    before: list[SwarmStatus],
    recovered: Callable[[SwarmStatus], bool],
    t0: float,
    timeout_s: float,
) -> dict[int, float]:
    """Poll Redis until every swarm is intact and ``recovered``; swarm -> seconds. Redis
    may refuse a moment (it is being restarted); silent for longer, it is lost."""
    done: dict[int, float] = {}
    deadline = t0 + timeout_s
    attempts = Attempts("recovery poll")
    while len(done) < len(before) and time.monotonic() < deadline:
        try:
            status = await read_status(rig.client, rig.keys)
            attempts.ok()
        except TRANSIENT as exc:
            await asyncio.sleep(max(attempts.failed(exc), 0.02))
            continue
        now = time.monotonic()
        for i, (st, pre) in enumerate(zip(status, before, strict=True)):
            if i not in done and _intact(st, pre, rig.config.members) and recovered(st):
                done[i] = now - t0
        await asyncio.sleep(0.01)
    return done


async def _recovery_result(rig: SwarmRig, case: str, done: dict[int, float]) -> dict[str, float]:
    """A swarm counts as recovered only if it also lost nothing."""
    await rig.drain()
    check = await rig.verify()
    ok = [i for i in done if check["lost_per_swarm"][i] == 0]
    n = len(rig.keys)
    return {
        f"recovery_{case}_ratio": len(ok) / n,
        f"recovery_{case}_s": max(done.values()) if len(ok) == n else math.nan,
        f"recovery_{case}_lost": float(check["lost"]),
    }


async def measure_coordinator_kill(
    rig: SwarmRig, rate_per_s: float, seconds: float, kill_at_s: float, timeout_s: float = 15
) -> dict[str, float]:
    """SIGKILL coordinator 0 under paced load and start a replacement; a swarm has
    recovered when a live member leads it, none of the dead consumer's messages are
    still pending (reclaimed), its state is intact, and nothing was lost."""
    task = asyncio.ensure_future(rig.produce("paced", rate_per_s / len(rig.producers), seconds))
    try:
        await asyncio.sleep(kill_at_s)
        dead = rig.coordinators[0].name
        before = await rig.status()
        t0 = time.monotonic()
        child = await rig.replace_coordinator(0)
        await child.ready()

        def recovered(st: SwarmStatus) -> bool:
            return (
                st.holder is not None
                and not st.holder.startswith(dead + ".")
                and st.pending.get(dead, 0) == 0
            )

        done = await _poll_recovery(rig, before, recovered, t0, timeout_s)
    finally:
        await task
    return await _recovery_result(rig, "coordinator", done)


async def measure_redis_kill(
    base: SwarmConfig, rate_per_s: float, seconds: float, kill_at_s: float, timeout_s: float = 20
) -> dict[str, float]:
    """On a Redis of our own (``appendfsync always``): SIGKILL it under paced load,
    restart it from its AOF, and wait until every swarm is intact, led, and has taken a
    new fenced snapshot. Never touches the server in ``base.url``."""
    server = await asyncio.to_thread(RedisServer(persistence="aof-always").start)
    rig = None
    try:
        config = replace(base, url=server.url, run=base.run + "-aof", coordinators=1, producers=1)
        rig = await SwarmRig(config).start()
        await rig.wait_leaders()
        task = asyncio.ensure_future(rig.produce("paced", rate_per_s, seconds))
        try:
            await asyncio.sleep(kill_at_s)
            before = await rig.status()
            t0 = time.monotonic()
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.restart)
            restarted_s = time.monotonic() - t0
            restart_ms = await _retry(lambda: server_ms(rig.client))

            def recovered(st: SwarmStatus) -> bool:
                return (
                    st.holder is not None
                    and st.snapshot_ms >= restart_ms
                    and st.snapshot_token == st.epoch
                )

            done = await _poll_recovery(rig, before, recovered, t0, timeout_s)
        finally:
            await task
        out = await _recovery_result(rig, "redis", done)
        check = await rig.verify()
        out |= {
            "redis_kill_child_reconnects": float(await rig.child_reconnects()),
            "redis_restart_s": restarted_s,
            "aof_messages_sent": float(check["sent"]),
            "aof_messages_delivered": float(check["applied"]),
            "aof_messages_duplicated": float(check["duplicates"]),
        }
        return out
    finally:
        if rig is not None:
            await rig.close(purge=False)
        await asyncio.to_thread(server.stop)


async def _retry(make: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await make()
        except TRANSIENT:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def _run(scripts: Scripts, calls: list[Any]) -> list[Any]:
    """The election scripts, retried after a dropped connection: each is safe to repeat
    (a holder asking again gets its own token back; a fenced write re-checks its token)."""
    return await retried("swarm fencing", lambda: scripts.run_many(calls))


async def _acquire(scripts: Scripts, cand: Candidacy, deadline: float) -> bool:
    """Ask until granted: a refusal says how long the lease still runs; wait that long."""
    while time.monotonic() < deadline:
        sent = time.perf_counter_ns()
        (reply,) = await _run(scripts, [cand.call("acquire")])
        cand.on_reply("acquire", reply, sent, time.perf_counter_ns())
        if cand.leading:
            return True
        await asyncio.sleep(max(cand.next_try_ns - time.perf_counter_ns(), 0) / 1e9)
    return False


async def _fence_swarm(scripts: Scripts, keys: SwarmKeys, rounds: int, ttl_ms: int) -> dict:
    """Two members of one swarm take turns: the leader pauses (stops renewing), the other
    takes over, then the paused one wakes and tries to renew, snapshot and write."""
    a, b = Candidacy(keys, "a", ttl_ms), Candidacy(keys, "b", ttl_ms)
    out = {"pauses": 0, "accepted": 0, "rejected": 0, "failovers": [], "failed": 0}
    limit = time.monotonic() + 10 + rounds * ttl_ms / 100
    if not await _acquire(scripts, a, limit):
        out["failed"] += 1
        return out
    leader, other = a, b
    for r in range(rounds):
        sent = time.perf_counter_ns()
        (renewed,) = await _run(scripts, [leader.call("renew")])
        leader.on_reply("renew", renewed, sent, time.perf_counter_ns())
        paused_at = time.perf_counter_ns()  # the leader stops here: GC, SIGSTOP, partition
        out["pauses"] += 1
        old_token = leader.token
        if not await _acquire(scripts, other, limit) or other.token <= old_token:
            out["failed"] += 1
            return out
        out["failovers"].append((time.perf_counter_ns() - paused_at) / 1e6)
        # The new leader can write (the fence is not simply closed) ...
        (wrote,) = await _run(scripts, [fenced_write(keys, other.token, {"round": r})])
        if int(wrote) != 1:
            out["failed"] += 1
        # ... and the paused one wakes up believing it still leads.
        stale = [
            fenced_write(keys, old_token, {"round": r, "by": "stale"}),
            snapshot(keys, old_token),
            ("renew", [keys.lease], [keys.prefix, leader.holder, old_token, ttl_ms]),
        ]
        for reply in await _run(scripts, stale):
            out["accepted" if int(reply) == 1 else "rejected"] += 1
        leader.token = 0
        leader, other = other, leader
    return out


async def measure_fencing(
    url: str,
    run: str,
    swarms: int,
    rounds: int,
    ttl_ms: int = 100,
    progress: Progress = _noop,
    seeds: tuple[tuple[str, int], ...] = (),
) -> dict[str, float]:
    """``swarms * rounds`` injected leader pauses, all swarms at once. ``seeds``: the
    nodes of a cluster, should the one the URL names be gone."""
    config = SwarmConfig(url=url, run=run, swarms=swarms, members=2, lease_ms=ttl_ms, seeds=seeds)
    client = connect(config, f"{run}-fence", max_connections=swarms + 8)
    scripts = Scripts(client)
    finished = False
    try:
        await retried("swarm fencing set-up", scripts.load)
        await retried(
            "swarm fencing set-up", lambda: create_swarms(scripts, config, "fence", ["a", "b"])
        )
        results = await asyncio.gather(
            *(_fence_swarm(scripts, k, rounds, ttl_ms) for k in config.keys)
        )
        rejected_in_redis = 0
        for k in config.keys:
            count = await retried(
                "swarm fencing", lambda k=k: client.hget(k.state, "stale_rejected")
            )
            rejected_in_redis += int(count or 0)
        progress(1.0)
        finished = True
    finally:
        if finished:  # after a failure Redis may not answer: the run's prefix is purged later
            with contextlib.suppress(Exception):
                await purge_run(client, run)
        await client.aclose()
    failovers = np.asarray([f for r in results for f in r["failovers"]], dtype=np.float64)
    pauses = sum(r["pauses"] for r in results)
    failed = sum(r["failed"] for r in results)
    return {
        "injected_pauses": float(pauses),
        "stale_writes_accepted": float(sum(r["accepted"] for r in results)),
        "stale_writes_rejected": float(sum(r["rejected"] for r in results)),
        "stale_rejections_counted_by_redis": float(rejected_in_redis),
        "failovers": float(failovers.size),
        "failovers_failed": float(failed),
    } | latency_figures(failovers, "failover", ("p50", "p95"))
