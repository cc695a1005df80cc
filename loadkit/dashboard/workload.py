"""The dashboard workload: 1000 (quick) or 5000 (full) live WebSocket clients, polling
clients, stuck clients and a server restart against the dashboard server.

Composed from :func:`loadkit.dashboard.scenarios.measure_dashboard`; the clients run in
separate processes, the server in this one. Needs no Redis: the dashboard is fed by the
seeded simulator so the numbers describe the dashboard, not the fleet.
"""

from __future__ import annotations

from loadkit.dashboard.plot import plot_latency_histogram
from loadkit.dashboard.scenarios import LoadPlan, measure_dashboard
from loadkit.targets import Target
from loadkit.workload import RunContext, WorkloadOutput

SCALE = {
    "smoke": LoadPlan(clients=100, agents=100, client_procs=1, pollers=5, rounds=10),
    # Two client processes: one Python process reading 1000 sockets is itself a
    # bottleneck (see bottlenecks()); the server keeps one core to itself either way.
    "quick": LoadPlan(clients=1000, agents=1000, client_procs=2, pollers=20, rounds=50),
    # 5000 sockets take 0.2-0.8 s to write one round to on 2 shared cores: 1 round/s.
    "full": LoadPlan(
        clients=5000, agents=1000, client_procs=2, pollers=50, rounds=40, round_interval_s=1.0
    ),
}
HISTOGRAM = "dashboard_latency_histogram.png"


def targets(scale: str) -> list[Target]:
    """The workload's targets, as checks (the goals beyond them are in the docs)."""
    return [
        Target("ws_connections", ">=", SCALE[scale].clients, "every client connected at once"),
        Target("ws_latency_p99_ms", "<", 100, "WebSocket latency under 100 ms"),
        Target("poll_refresh_s", "<", 1.0, "polling refresh under 1 s"),
        Target("update_process_ms", "<", 1000, "1000 agent updates processed within 1 s"),
        Target("reconnect_ratio", ">", 0.9, "over 90% of clients back after a restart"),
        Target("memory_per_connection_kib", "<", 1024, "under 1 MB per connection"),
        Target("slow_clients_dropped", ">=", SCALE[scale].stuck_clients, "stuck clients dropped"),
        Target("messages_missed", "<=", 0, "no sequence gaps without a reconnect"),
    ]


def bottlenecks(metrics: dict[str, float]) -> list[str]:
    """Known shapes of trouble in the dashboard's own numbers."""
    found = []
    lat, process = metrics.get("ws_latency_p50_ms"), metrics.get("update_process_ms")
    clients = metrics.get("ws_connections") or 0
    if lat and process and process > 0.5 * lat and clients:
        found.append(
            f"broadcast-bound: writing one round to {clients:.0f} sockets takes {process:.0f} ms "
            f"({1000 * process / clients:.0f} us a socket; median latency {lat:.0f} ms) - the "
            "per-socket write, not the message size, is the cost: shard clients over server "
            "processes (SO_REUSEPORT) to go further"
        )
    p99, every = metrics.get("ws_latency_p99_ms"), metrics.get("broadcast_all_received_p99_ms")
    if p99 and every and every > 1.5 * p99:
        found.append(
            f"the last client gets a round {every:.0f} ms after it was sent vs {p99:.0f} ms p99 "
            f"per message: the load-client processes lag reading {clients:.0f} sockets (more "
            "client processes, or cores, would shorten it)"
        )
    every = metrics.get("broadcast_all_received_p99_ms")
    if every is not None and every > 60:
        found.append(f"a round reaches the last client in {every:.0f} ms at p99 (goal <= 60 ms)")
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
    if (metrics.get("messages_missed") or 0) > 0:
        found.append(f"{metrics['messages_missed']:.0f} messages missed without a reconnect")
    if (metrics.get("poll_errors") or 0) > 0:
        found.append(f"{metrics['poll_errors']:.0f} polling requests failed")
    return found


async def run(ctx: RunContext) -> WorkloadOutput:
    plan = SCALE[ctx.scale]
    metrics, latencies = await measure_dashboard(plan, ctx.progress)
    output = WorkloadOutput(metrics=metrics)
    path = ctx.artifact(HISTOGRAM)
    if path is not None and latencies.size:
        plot_latency_histogram(
            latencies, path, f"dashboard: {plan.clients} clients, {latencies.size} messages"
        )
        output.artifacts["latency histogram"] = HISTOGRAM
    return output
