"""asv benchmarks for swarm coordination on Redis: delivered rate, paced latency,
failover and recovery.

The swarm workload (:mod:`loadkit.workloads.swarm.workload`, what ``loadkit run swarm`` reports)
runs once per asv run, in ``SwarmRun.setup_cache``, at the bench scale; every class below
reads its figures from that one run. Saturation and paced latency are medians of
repeated trials (asv records the trials as samples); each saturation trial follows an
XADD ceiling on the same server, and their ratio is what is compared across hosts.
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

PACED = host_bound("delivery_p99_ms")

TRIALS = "median of trials"


class SwarmRun(WorkloadRun):
    """The swarm workload's one run, shared by every class of this file."""

    workload = "swarm"

    def setup_cache(self) -> Measured:
        return run_workload(self.workload)


class SwarmMessaging(SwarmRun):
    """Saturation across the swarms, beside the pipelined XADD rate one redis-py client
    reaches on the same server (the ceiling the delivered rate is read against), and
    what at-least-once delivery must not do: lose a message."""

    track_swarms_created = track("swarms_created", "count", HIGHER)
    track_delivered_per_s = track(
        "delivered_per_s", "1/s", HIGHER, informational=HOST_BOUND, method=TRIALS
    )
    track_delivered_ceiling_ratio = track("delivered_ceiling_ratio", "ratio", HIGHER, headline=True)
    track_xadd_ceiling_per_s = track(
        "xadd_ceiling_per_s",
        "1/s",
        HIGHER,
        informational="the host's Redis speed: the ceiling the delivered rate is read against",
        method=TRIALS,
    )
    track_messages_sent = track(
        "messages_sent",
        "count",
        HIGHER,
        informational="how many messages the phases sent: context, set by the host's speed",
    )
    track_messages_lost = track("messages_lost", "count", LOWER)
    track_messages_duplicated = track(
        "messages_duplicated",
        "count",
        LOWER,
        informational="at-least-once delivery redelivers after every kill by design; how "
        "many depends on where the kill lands",
    )


class SwarmPacedLatency(SwarmRun):
    """Open-loop delivery latency (scheduled send -> applied) at the scale's paced rate,
    and how long the producer took to get each message into Redis."""

    track_paced_rate_per_s = track("paced_rate_per_s", "1/s", HIGHER, method=TRIALS)
    track_delivery_p50_ms = track(
        "delivery_p50_ms", "ms", LOWER, informational=PACED, method=TRIALS
    )
    track_delivery_p99_ms = track("delivery_p99_ms", "ms", LOWER, headline=True, method=TRIALS)
    track_delivery_avg_ms = track(
        "delivery_avg_ms", "ms", LOWER, informational=PACED, method=TRIALS
    )
    track_enqueue_p99_ms = track(
        "paced_enqueue_p99_ms", "ms", LOWER, informational=PACED, method=TRIALS
    )


class SwarmFailover(SwarmRun):
    """Injected leader pauses with a 100 ms lease: time to a new leader, elections won,
    and stale writes of paused leaders accepted (must stay 0)."""

    track_failover_p95_ms = track(
        "failover_p95_ms",
        "ms",
        LOWER,
        informational="the 100 ms lease bounds it below; above that, how fast one event loop "
        "of the host serves a hundred elections at once; the elections are gated as "
        "election_success_ratio and stale_writes_accepted",
    )
    track_election_success_ratio = track("election_success_ratio", "ratio", HIGHER)
    track_stale_writes_accepted = track("stale_writes_accepted", "count", LOWER)


class SwarmRecovery(SwarmRun):
    """Recovery under paced load: a SIGKILLed coordinator replaced by a new one, and
    Redis SIGKILLed and restarted from its AOF (appendfsync always)."""

    track_recovery_coordinator_s = track("recovery_coordinator_s", "s", LOWER)
    track_recovery_redis_s = track(
        "recovery_redis_s",
        "s",
        LOWER,
        informational="a Redis process started again from its AOF: the host's disk and "
        "process start decide it; that every swarm recovers is gated as recovery_ratio",
    )
    track_recovery_ratio = track("recovery_ratio", "ratio", HIGHER)


class SwarmRedis(SwarmRun):
    """Retries after a dropped Redis connection during the run, in every process of it:
    the churn and Redis-kill scenarios cause some on purpose, so a rise is the signal."""

    track_redis_reconnects = track("redis_reconnects", "count", LOWER)
