"""asv benchmarks for the real-time dashboard: live WebSocket clients against one server.

The dashboard workload (``loadkit.workloads.dashboard.workload``, what ``loadkit run dashboard``
reports; its clients run in separate processes) runs once per asv run, in
``DashboardRun.setup_cache``, at the bench scale; every class of it reads its figures
from that one run. ``DashboardPublish`` times the server's own work per round with no
client attached: its ``setup`` only prepares the inputs.

The steady figures (latencies, processing, polling) are medians of blocks of
consecutive rounds, the first block discarded (asv records the blocks as samples); the
latencies sit beside the same rounds broadcast by plain ``websockets`` to as many
clients in the same run, and their ratio is what is compared across hosts.
"""

from __future__ import annotations

from benchmarks.common import (
    HIGHER,
    HOST_BOUND,
    LOWER,
    DashboardServer,
    Measured,
    ServerConfig,
    SimulatedFleet,
    WorkloadRun,
    dashboard_protocol,
    host_bound,
    run_workload,
    track,
)

protocol = dashboard_protocol
BLOCKS = "median of blocks of rounds"
POLLED = "median of blocks of rounds, polls at random intervals, 60 pollers at quick scale"
HOST = "the host's own broadcast speed: the ceiling the dashboard's latency is read against"


class DashboardRun(WorkloadRun):
    """The dashboard workload's one run, shared by every class of this file that reads it."""

    workload = "dashboard"

    def setup_cache(self) -> Measured:
        return run_workload(self.workload)


class DashboardLoad(DashboardRun):
    """WebSocket clients (plus polling and stuck ones) on a live board: rounds of every
    agent changing, then a server restart."""

    track_connections = track("ws_connections", "count", HIGHER)
    track_connect_s = track(
        "ws_connect_s",
        "s",
        LOWER,
        informational="a thousand handshakes at once on shared cores: the host's scheduler "
        "decides it; that every client connects is gated as ws_connections",
    )
    track_latency_p50_ms = track(
        "ws_latency_p50_ms",
        "ms",
        LOWER,
        informational=host_bound("ws_latency_p99_ceiling_ratio"),
        method=BLOCKS,
    )
    track_latency_p99_ms = track(
        "ws_latency_p99_ms", "ms", LOWER, informational=HOST_BOUND, method=BLOCKS
    )
    track_all_clients_received_p99_ms = track(
        "broadcast_all_received_p99_ms", "ms", LOWER, informational=HOST_BOUND, method=BLOCKS
    )
    track_latency_p99_ceiling_ratio = track(
        "ws_latency_p99_ceiling_ratio", "x", LOWER, headline=True
    )
    track_all_received_p99_ceiling_ratio = track("all_received_p99_ceiling_ratio", "x", LOWER)
    track_raw_latency_p99_ms = track("raw_latency_p99_ms", "ms", LOWER, informational=HOST)
    track_raw_all_received_p99_ms = track(
        "raw_all_received_p99_ms", "ms", LOWER, informational=HOST
    )
    track_update_process_ms = track(
        "update_process_ms",
        "ms",
        LOWER,
        informational="the host's speed decides it, a p95 of ten rounds a block; the "
        "publishing code alone is gated as DashboardPublish.time_publish_round",
        method=BLOCKS,
    )
    track_memory_per_connection_kib = track("memory_per_connection_kib", "KiB", LOWER)
    track_messages_missed = track("messages_missed", "count", LOWER)
    track_boards_wrong = track("boards_wrong", "count", LOWER)
    track_slow_clients_dropped = track("slow_clients_dropped", "count", HIGHER)


class DashboardPolling(DashboardRun):
    """Clients without WebSockets: how fresh a polled board is, and failed requests."""

    track_poll_refresh_s = track("poll_refresh_s", "s", LOWER, method="polls at random intervals")
    track_poll_latency_p95_ms = track(
        "poll_latency_p95_ms", "ms", LOWER, headline=True, method=POLLED
    )
    track_poll_errors = track("poll_errors", "count", LOWER)


class DashboardRestart(DashboardRun):
    """A server restart: the share of clients back within 5 s, and how soon."""

    track_reconnect_ratio = track("reconnect_ratio", "ratio", HIGHER)
    track_reconnect_p95_s = track(
        "reconnect_p95_s",
        "s",
        LOWER,
        informational="the clients' random back-off (full jitter) decides most of it; that "
        "they are back in time is gated as reconnect_ratio",
    )


class DashboardPublish:
    """Ingest, diff and encode one round of N agent updates with no client attached: the
    server's own cost per round, apart from the sockets."""

    params = [1000, 10_000]
    param_names = ["agents"]

    def setup(self, agents: int) -> None:
        self.sim = SimulatedFleet(agents)
        self.server = DashboardServer(ServerConfig(port=0))
        self.server.publish(self.sim.snapshot())
        self.ticks = [self.sim.tick(agents) for _ in range(20)]
        self.i = 0

    def time_publish_round(self, agents: int) -> None:
        self.server.publish(self.ticks[self.i % 20])
        self.i += 1

    def time_snapshot_encode(self, agents: int) -> None:
        body = self.server.board.snapshot_body()
        protocol.encode("snapshot", self.server.seq, 0.0, self.server.boot, body)


class DashboardRedis(DashboardRun):
    """Retries after a dropped Redis connection during the run (publisher and server
    processes): 0 on a quiet network."""

    track_redis_reconnects = track("redis_reconnects", "count", LOWER)
