"""asv benchmarks for the agent fleet: spawning, allocation, reclaim, autoscaling, cleanup.

The fleet workload (``loadkit.workloads.fleet.workload``, what ``loadkit run fleet`` reports)
runs once per asv run, in ``FleetRun.setup_cache``, at the bench scale; every class below
reads its figures from that one run. Spawn and allocation figures are medians of
repeated trials (asv records the trials as samples), each beside a Redis round-trip
ceiling measured on the same server in the same run; the ratios are what is compared
across hosts, the absolute figures say how fast this host was.
"""

from __future__ import annotations

from benchmarks.common import (
    HIGHER,
    HOST_BOUND,
    LOWER,
    Measured,
    WorkloadRun,
    host_bound,
    run_workload,
    track,
)

SPAWNED = host_bound("spawn_ceiling_ratio")
ALLOCATED = host_bound("allocation_p99_ceiling_ratio")


class FleetRun(WorkloadRun):
    """The fleet workload's one run, shared by every class of this file."""

    workload = "fleet"

    def setup_cache(self) -> Measured:
        return run_workload(self.workload)


TRIALS = "median of trials"


class FleetSpawn(FleetRun):
    """Spawning the scale's agents in batches of 50 until all are registered in Redis:
    the median of fresh fleets' spawns, and its share of the agents per second the same
    Redis round trips carry with no fleet logic."""

    track_agents_spawned = track("agents_spawned", "count", HIGHER)
    track_spawn_rate_per_s = track(
        "spawn_rate_per_s", "1/s", HIGHER, informational=HOST_BOUND, method=TRIALS
    )
    track_spawn_ceiling_ratio = track(
        "spawn_ceiling_ratio", "ratio", HIGHER, headline=True, method=TRIALS
    )
    track_spawn_ceiling_per_s = track(
        "spawn_ceiling_per_s",
        "1/s",
        HIGHER,
        informational="the host's Redis speed: the ceiling the spawn rate is read against",
    )
    track_spawn_avg_ms = track("spawn_avg_ms", "ms", LOWER, informational=SPAWNED, method=TRIALS)
    track_spawn_p95_ms = track("spawn_p95_ms", "ms", LOWER, informational=SPAWNED, method=TRIALS)
    track_rss_per_agent_kib = track("rss_per_agent_kib", "KiB", LOWER)


class FleetAllocation(FleetRun):
    """Allocation latency (scheduled submit -> an agent starts) under a steady open-loop
    load on the spawned agents, 50 ms of work each: the median of back-to-back windows,
    and the p99 over the p99 of open-loop Redis round trips made during each window."""

    track_allocation_avg_ms = track(
        "allocation_avg_ms", "ms", LOWER, informational=ALLOCATED, method=TRIALS
    )
    track_allocation_p50_ms = track(
        "allocation_p50_ms", "ms", LOWER, informational=ALLOCATED, method=TRIALS
    )
    track_allocation_p95_ms = track(
        "allocation_p95_ms", "ms", LOWER, informational=ALLOCATED, method=TRIALS
    )
    track_allocation_p99_ms = track(
        "allocation_p99_ms", "ms", LOWER, informational=HOST_BOUND, method=TRIALS
    )
    track_allocation_p99_ceiling_ratio = track(
        "allocation_p99_ceiling_ratio", "x", LOWER, headline=True
    )
    track_round_trip_p99_ms = track(
        "round_trip_p99_ms",
        "ms",
        LOWER,
        informational="the host's Redis round-trip tail: the floor the allocation tail is "
        "read against",
    )


class FleetReclaim(FleetRun):
    """A crashed agent's task finished by another: bounded below by the 1 s lease."""

    track_reclaim_s = track("reclaim_s", "s", LOWER)


class FleetAutoscale(FleetRun):
    """The predictive autoscaler through a low -> high -> low step in arrival rate."""

    track_reaction_s = track("autoscale_reaction_s", "s", LOWER)
    track_overshoot_ratio = track("autoscale_overshoot_ratio", "ratio", LOWER)
    track_residual_ratio = track("autoscale_residual_ratio", "ratio", LOWER)


class FleetCleanup(FleetRun):
    """What whole fleet lifetimes leave behind: keys, tasks, descriptors, memory."""

    track_leaked_keys = track("cleanup_leaked_keys", "count", LOWER)
    track_leaked_tasks = track("cleanup_leaked_tasks", "count", LOWER)
    track_leaked_fds = track("cleanup_leaked_fds", "count", LOWER)
    track_rss_growth_per_cycle_kib = track(
        "cleanup_rss_growth_per_cycle_kib",
        "KiB",
        LOWER,
        informational="allocator noise of a few KiB either way; a leak shows as a bottleneck "
        "(over 256 KiB a lifetime) and in leaked keys, tasks and descriptors",
    )


class FleetRedis(FleetRun):
    """Retries after a dropped Redis connection during the run: 0 on a quiet network; a
    rise means connections drop (idle timeouts, a proxy) or the retry policy changed."""

    track_redis_reconnects = track("redis_reconnects", "count", LOWER)
