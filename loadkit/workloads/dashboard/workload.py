"""The dashboard workload: 1000 (quick) or 5000 (full) live WebSocket clients, polling
clients, stuck clients and a restart of the server processes.

Composed from :func:`loadkit.workloads.dashboard.scenarios.measure_dashboard`: the board's
publisher runs in this process and reaches the server processes through the run's
Redis; the clients run in processes of their own. The board is fed by the seeded
simulator so the numbers describe the dashboard, not the fleet.

``$LOADKIT_DASHBOARD_CLIENTS`` replaces the scale's number of WebSocket clients (up to
:data:`MAX_CLIENTS`), ``$LOADKIT_DASHBOARD_WORKERS`` its number of server processes.
"""

from __future__ import annotations

import dataclasses
import os

from loadkit.common.errors import UsageError
from loadkit.runs.targets import Target
from loadkit.runs.trials import TrialPlan
from loadkit.runs.workload import RunContext, WorkloadOutput
from loadkit.workloads.dashboard.plot import plot_latency_histogram
from loadkit.workloads.dashboard.scenarios import LoadPlan, measure_dashboard

SCALE = {
    "smoke": LoadPlan(
        clients=100,
        agents=100,
        client_procs=1,
        pollers=5,
        rounds=12,
        trials=TrialPlan(kept=2, warmup=1),
    ),
    # Two server processes and two client processes: one Python process writing to, or
    # reading from, thousands of sockets is the bottleneck (see bottlenecks()).
    # 11 blocks of ten 0.2 s rounds: the median of the 10 kept. 60 pollers, so a block's
    # poll p95 rests on about 240 polls: with 20 (about 80, the p95 their 4th slowest)
    # it moved about twice as much between runs.
    "quick": LoadPlan(
        clients=1000,
        agents=1000,
        client_procs=2,
        pollers=60,
        rounds=110,
        workers=2,
        trials=TrialPlan(kept=10, warmup=1),
    ),
    "full": LoadPlan(
        clients=5000,
        agents=1000,
        client_procs=2,
        pollers=50,
        rounds=40,
        round_interval_s=1.0,
        workers=2,
    ),
}
ENV_CLIENTS = "LOADKIT_DASHBOARD_CLIENTS"
ENV_WORKERS = "LOADKIT_DASHBOARD_WORKERS"
MAX_CLIENTS = 10_000
MAX_WORKERS = 16
HISTOGRAM = "dashboard_latency_histogram.png"


def _env_count(name: str, low: int, high: int) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"${name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise UsageError(f"${name} must be {low}-{high}, got {value}")
    return value


def plan_for(scale: str) -> LoadPlan:
    """The scale's plan with the clients and server processes the environment asks for."""
    plan = SCALE[scale]
    clients = _env_count(ENV_CLIENTS, 1, MAX_CLIENTS)
    workers = _env_count(ENV_WORKERS, 1, MAX_WORKERS)
    if clients is not None:
        plan = dataclasses.replace(plan, clients=clients)
    if workers is not None:
        plan = dataclasses.replace(plan, workers=workers)
    return plan


def targets(scale: str) -> list[Target]:
    """The workload's targets, as checks (the goals beyond them are in the docs)."""
    return [
        Target("ws_connections", ">=", plan_for(scale).clients, "every client connected at once"),
        Target("ws_latency_p99_ms", "<", 100, "WebSocket latency under 100 ms"),
        Target(
            "ws_latency_p99_ceiling_ratio",
            "<",
            1.5,
            "p99 within 1.5x plain websockets broadcasting the same rounds to as many clients",
        ),
        Target("poll_refresh_s", "<", 1.0, "polling refresh under 1 s"),
        Target("update_process_ms", "<", 1000, "1000 agent updates processed within 1 s"),
        Target("reconnect_ratio", ">", 0.9, "over 90% of clients back after a restart"),
        Target("memory_per_connection_kib", "<", 1024, "under 1 MB per connection"),
        Target("slow_clients_dropped", ">=", SCALE[scale].stuck_clients, "stuck clients dropped"),
        Target("messages_missed", "<=", 0, "no sequence gaps without a reconnect"),
        Target("boards_wrong", "<=", 0, "every client's board, built from deltas, is right"),
    ]


def bottlenecks(metrics: dict[str, float]) -> list[str]:
    """Known shapes of trouble in the dashboard's own numbers."""
    found = []
    lat, process = metrics.get("ws_latency_p50_ms"), metrics.get("update_process_ms")
    clients = metrics.get("ws_connections") or 0
    if lat and process and process > 0.5 * lat and clients:
        found.append(
            f"publisher-bound: diffing, encoding and publishing one round takes {process:.0f} ms "
            f"of a median latency of {lat:.0f} ms"
        )
    workers = [
        (key.split("_")[0], value)
        for key, value in sorted(metrics.items())
        if key.startswith("worker") and key.endswith("_ws_latency_p99_ms")
    ]
    if len(workers) > 1:
        slow, worst = max(workers, key=lambda w: w[1])
        best = min(value for _, value in workers)
        if worst > 2 * best and worst > 20:
            found.append(
                f"server process {slow} lags: p99 {worst:.0f} ms against {best:.0f} ms for the "
                "best one (uneven share of clients, or a busy core)"
            )
    p99 = metrics.get("ws_latency_p99_ms")
    if p99 is not None and p99 > 60 and clients:
        found.append(
            f"p99 latency {p99:.0f} ms at {clients:.0f} clients (goal <= 60 ms): writing to "
            "every socket is the cost; more server processes ($LOADKIT_DASHBOARD_WORKERS), "
            "or cores, would shorten it"
        )
    p99, every = metrics.get("ws_latency_p99_ms"), metrics.get("broadcast_all_received_p99_ms")
    if p99 and every and every > 1.5 * p99:
        found.append(
            f"the last client gets a round {every:.0f} ms after it was sent vs {p99:.0f} ms p99 "
            f"per message: the load-client processes lag reading {clients:.0f} sockets (more "
            "client processes, or cores, would shorten it)"
        )
    every = metrics.get("broadcast_all_received_p99_ms")
    if every is not None and every > 100:
        found.append(f"a round reaches the last client in {every:.0f} ms at p99 (goal <= 100 ms)")
    if (metrics.get("memory_per_connection_kib") or 0) > 20:
        found.append(
            f"connections are heavy: {metrics['memory_per_connection_kib']:.1f} KiB each "
            "(goal <= 20 KiB; is compression on?)"
        )
    ratio = metrics.get("reconnect_ratio")
    if ratio is not None and ratio < 1:
        found.append(
            f"only {ratio:.0%} of clients back within 5 s of a restart: listen backlog "
            "overflow or a reconnect backoff that grows too fast"
        )
    if (metrics.get("boards_wrong") or 0) > 0:
        found.append(
            f"{metrics['boards_wrong']:.0f} clients ended with a board unlike the publisher's"
        )
    if (metrics.get("messages_missed") or 0) > 0:
        found.append(f"{metrics['messages_missed']:.0f} messages missed without a reconnect")
    if (metrics.get("poll_errors") or 0) > 0:
        found.append(f"{metrics['poll_errors']:.0f} polling requests failed")
    return found


async def run(ctx: RunContext) -> WorkloadOutput:
    plan = plan_for(ctx.scale)
    metrics, latencies, samples = await measure_dashboard(
        plan, ctx.progress, ctx.redis_url, ctx.run_id
    )
    output = WorkloadOutput(metrics=metrics, samples=samples)
    path = ctx.artifact(HISTOGRAM)
    if path is not None and latencies.size:
        plot_latency_histogram(
            latencies, path, f"dashboard: {plan.clients} clients, {latencies.size} messages"
        )
        output.artifacts["latency histogram"] = HISTOGRAM
    return output
