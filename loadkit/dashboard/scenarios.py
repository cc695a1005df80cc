"""The dashboard load test, shared by the ``dashboard`` workload and the asv benchmarks.

The server runs in this process (so its RSS growth per connection is measured here,
after a GC and ``malloc_trim``); the clients run in ``plan.client_procs`` processes of
their own (:mod:`.loadclient`). Phases, each bounded in time:

1. connect ``plan.clients`` WebSocket clients at once -> ``ws_connect_s``, server RSS
   growth per connection; polling clients start;
2. stuck clients connect and stop reading, then ``plan.rounds`` rounds in which every
   agent of a simulated ``plan.agents`` fleet changes and is broadcast ->
   ``ws_latency_*``, ``broadcast_all_received_p99_ms``, ``update_process_ms``; the stuck
   clients must be dropped (``slow_clients_dropped``) without delaying the others;
3. the server is crash-restarted on the same port (connections cut without a close
   frame, new boot id) -> ``reconnect_ratio``, ``reconnect_p95_s`` from the cut;
4. the clients report -> ``messages_missed``, ``poll_latency_p95_ms``, ``poll_refresh_s``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loadkit.child_messages import OK, ChildFailed, expect, send
from loadkit.dashboard.loadclient import client_process, now_ms, raise_nofile
from loadkit.dashboard.server import DashboardServer, ServerConfig
from loadkit.dashboard.sources import SimulatedFleet
from loadkit.errors import UsageError
from loadkit.metrics import percentile, settled_rss_bytes

Progress = Callable[[str, float], None]
RECONNECT_WINDOW_S = 5.0


@dataclass(frozen=True)
class LoadPlan:
    clients: int = 1000
    agents: int = 1000
    client_procs: int = 1
    pollers: int = 20
    poll_interval_s: float = 0.5
    rounds: int = 50
    round_interval_s: float = 0.2
    stuck_clients: int = 4
    max_buffer_bytes: int = ServerConfig.max_buffer_bytes  # unsent bytes before a drop
    send_buffer_bytes: int = ServerConfig.send_buffer_bytes  # kernel buffer per connection


def _noop(_phase: str, _fraction: float) -> None:
    pass


class _Clients:
    """The load-client processes and a way to send all of them one command."""

    def __init__(self, url: str, plan: LoadPlan) -> None:
        ctx = multiprocessing.get_context("spawn")
        per_proc = math.ceil(plan.clients / plan.client_procs)
        self.shares = [min(per_proc, plan.clients - i * per_proc) for i in range(plan.client_procs)]
        fds = per_proc + plan.pollers + plan.stuck_clients + 64
        self.pipes = []
        self.procs = []
        for _ in self.shares:
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=client_process, args=(child, url, fds, os.getpid()), daemon=True
            )
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    async def ask(self, commands: list[dict[str, Any]], timeout_s: float = 60) -> list[dict]:
        """Send each process its command (``cmd`` names it, the rest are its arguments)
        and wait for every answer; a process that fails or falls silent fails the run."""
        for pipe, command in zip(self.pipes, commands, strict=True):
            arguments = dict(command)
            send(pipe, arguments.pop("cmd"), arguments)

        def answer(pipe: Any) -> dict:
            return expect(pipe, OK, timeout_s, "load client")

        try:
            return list(await asyncio.gather(*(asyncio.to_thread(answer, p) for p in self.pipes)))
        except ChildFailed as exc:
            raise UsageError(str(exc)) from None

    async def ask_all(self, timeout_s: float = 60, **command: Any) -> list[dict]:
        return await self.ask([dict(command) for _ in self.pipes], timeout_s)

    def close(self) -> None:
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for pipe in self.pipes:
            pipe.close()


async def _publish_rounds(
    server: DashboardServer,
    sim: SimulatedFleet,
    plan: LoadPlan,
    rounds: int,
    on_round: Callable[[int], None] | None = None,
) -> list[float]:
    """Broadcast ``rounds`` rounds of all agents changing; returns processing times (ms)."""
    process_ms = []
    due = time.monotonic()
    for r in range(rounds):
        start = time.perf_counter_ns()
        server.publish(sim.tick(plan.agents, plan.round_interval_s))
        process_ms.append((time.perf_counter_ns() - start) / 1e6)
        if on_round is not None:
            on_round(r)
        due += plan.round_interval_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    return process_ms


async def measure_dashboard(
    plan: LoadPlan, progress: Progress = _noop
) -> tuple[dict[str, float], np.ndarray]:
    """Run the whole load test; returns the metrics and the per-message latencies (ms)."""
    raise_nofile(plan.clients + plan.stuck_clients + plan.pollers + 256)
    sim = SimulatedFleet(plan.agents)
    server = await DashboardServer(
        ServerConfig(
            port=0,
            max_buffer_bytes=plan.max_buffer_bytes,
            send_buffer_bytes=plan.send_buffer_bytes,
        )
    ).start()
    server.publish(sim.snapshot())
    config = dataclasses.replace(server.config, port=server.port)
    rss_before = settled_rss_bytes()
    clients = _Clients(f"ws://127.0.0.1:{server.port}/ws", plan)
    try:
        progress("connect", 0.0)
        connected = await clients.ask(
            [
                {
                    "cmd": "connect",
                    "n": n,
                    "pollers": plan.pollers // plan.client_procs,
                    "poll_interval_s": plan.poll_interval_s,
                }
                for n in clients.shares
            ]
        )
        open_conns = len(server.clients)
        rss_after = settled_rss_bytes()
        progress("broadcast", 0.1)
        await clients.ask_all(cmd="stuck", n=plan.stuck_clients // plan.client_procs or 1)
        stuck = len(clients.shares) * (plan.stuck_clients // plan.client_procs or 1)
        process_ms = await _publish_rounds(
            server,
            sim,
            plan,
            plan.rounds,
            lambda r: progress("broadcast", 0.1 + 0.6 * r / plan.rounds),
        )
        dropped = server.slow_clients_dropped
        seen = await clients.ask_all(cmd="wake_stuck")
        progress("restart", 0.7)
        await clients.ask_all(cmd="pause")
        # A crash-restart: every connection ends at once with no close frame (as when the
        # process dies), then a new server with a new boot id listens on the same port.
        down_ms = now_ms()
        down = time.perf_counter()
        server.drop_all()
        await server.close()
        server = await DashboardServer(config).start()
        down_s = time.perf_counter() - down
        server.publish(sim.snapshot())
        waiting = asyncio.ensure_future(
            clients.ask_all(cmd="reconnect", since_ms=down_ms, wait_s=RECONNECT_WINDOW_S + 1)
        )
        while not waiting.done():
            server.publish(sim.tick(plan.agents // 10, plan.round_interval_s))
            await asyncio.wait([waiting], timeout=plan.round_interval_s)
        back = await waiting
        progress("report", 0.95)
        results = await clients.ask_all(cmd="finish")
    finally:
        await server.close()
        clients.close()
    latencies = np.concatenate([np.asarray(r["latencies_ms"]) for r in results])
    receipts: dict[tuple[str, int], list[float]] = {}
    for r in results:
        for boot, seq, ts, last in r["last_receipt"]:
            entry = receipts.setdefault((boot, seq), [ts, 0.0])
            entry[1] = max(entry[1], last)
    all_received = [last - ts for ts, last in receipts.values()]
    reconnect_s = [t for r in back for t in r["reconnect_s"]]
    total = sum(r["clients"] for r in back)
    polls = [x for r in results for x in r["poll_latencies_ms"]]
    refresh = [x for r in results for x in r["poll_refresh_s"]]
    metrics = {
        "ws_connections": float(open_conns),
        "ws_connect_s": max(c["connect_s"] for c in connected),
        "ws_latency_p50_ms": percentile(latencies, 50),
        "ws_latency_p99_ms": percentile(latencies, 99),
        "broadcast_all_received_p99_ms": percentile(all_received, 99),
        "poll_latency_p95_ms": percentile(polls, 95),
        "poll_refresh_s": percentile(refresh, 95),
        "update_process_ms": percentile(process_ms, 95),
        "reconnect_ratio": sum(t <= RECONNECT_WINDOW_S for t in reconnect_s) / max(total, 1),
        "reconnect_p95_s": percentile(reconnect_s, 95),
        "memory_per_connection_kib": (rss_after - rss_before) / 1024 / max(open_conns, 1),
        "slow_clients_dropped": float(dropped),
        "messages_missed": float(sum(r["messages_missed"] for r in results)),
        # context for the figures above
        "ws_clients": float(plan.clients),
        "ws_connected_clients": float(sum(c["connected"] for c in connected)),
        "stuck_clients": float(stuck),
        "stuck_clients_seen_dropped": float(sum(r["stuck_dropped_seen"] for r in seen)),
        "ws_messages_received": float(sum(r["messages_received"] for r in results)),
        "update_process_max_ms": max(process_ms),
        "restart_down_s": down_s,
        "poll_requests": float(len(polls)),
        "poll_not_modified": float(sum(r["poll_not_modified"] for r in results)),
        "poll_errors": float(sum(r["poll_errors"] for r in results)),
    }
    progress("done", 1.0)
    return metrics, latencies
