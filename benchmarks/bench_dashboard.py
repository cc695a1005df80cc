"""asv benchmarks for the real-time dashboard: live WebSocket clients against one server.

The load test is :func:`loadkit.dashboard.scenarios.measure_dashboard`, the same one
``loadkit run dashboard`` reports from; its clients run in a separate process. It runs
once per benchmark process in ``setup_cache`` (about 10 s for 1000 clients) and every
``track_`` method reads one figure of that run, so the figures of one asv sample come
from the same load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from benchmarks.common import ServerBenchmark
from loadkit.dashboard import protocol
from loadkit.dashboard.scenarios import LoadPlan, measure_dashboard
from loadkit.dashboard.server import DashboardServer, ServerConfig
from loadkit.dashboard.sources import SimulatedFleet

Metrics = dict[str, float]


def _track(metric: str, unit: str) -> Callable[[object, Metrics], float]:
    """A ``track_`` method reading one metric of the shared load run."""

    def track(self: object, m: Metrics) -> float:
        return m[metric]

    track.unit = unit  # type: ignore[attr-defined]
    return track


class DashboardLoad(ServerBenchmark):
    """1000 WebSocket clients (plus 20 polling, 4 stuck) on a 1000-agent board: 50 rounds
    of every agent changing at 5 rounds/s, then a server restart."""

    plan = LoadPlan(clients=1000, agents=1000, client_procs=2, pollers=20, rounds=50)

    def setup_cache(self) -> Metrics:
        metrics, _ = asyncio.run(measure_dashboard(self.plan))
        return metrics

    track_latency_p50_ms = _track("ws_latency_p50_ms", "ms")
    track_latency_p99_ms = _track("ws_latency_p99_ms", "ms")
    track_all_clients_received_p99_ms = _track("broadcast_all_received_p99_ms", "ms")
    track_poll_latency_p95_ms = _track("poll_latency_p95_ms", "ms")
    track_memory_per_connection_kib = _track("memory_per_connection_kib", "KiB")
    track_connect_s = _track("ws_connect_s", "s")
    track_reconnect_ratio = _track("reconnect_ratio", "ratio")
    track_reconnect_p95_s = _track("reconnect_p95_s", "s")
    track_update_process_ms = _track("update_process_ms", "ms")


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
