"""The dashboard load test, shared by the ``dashboard`` workload and the asv benchmarks.

The board's publisher runs in this process and publishes through Redis (embedded
unless a URL is given) to ``plan.workers`` server processes on one port
(:mod:`.fanout`), whose RSS growth per connection they measure themselves after a GC
and ``malloc_trim``; the clients run in ``plan.client_procs`` processes of their own
(:mod:`.loadclient`). Phases, each bounded in time:

1. connect ``plan.clients`` WebSocket clients at once -> ``ws_connect_s``, server RSS
   growth per connection, clients per server process; polling clients start;
2. stuck clients connect and stop reading, then ``plan.rounds`` rounds in which every
   agent of a simulated ``plan.agents`` fleet changes and is broadcast ->
   ``ws_latency_*`` (overall and per server process), ``broadcast_all_received_p99_ms``,
   ``update_process_ms``, ``poll_latency_p95_ms``; the stuck clients must be dropped
   (``slow_clients_dropped``) without delaying the others. The rounds are cut into
   ``plan.trials`` blocks of consecutive rounds, the first discarded as warm-up: each
   steady figure is the median of the blocks' figures (the blocks' values are its
   samples), so one slow spell of the host moves one block, not the figure. Half a
   round after each round, the same update (from a second publisher fed the same
   ticks) goes to as many clients through plain ``websockets``
   (:mod:`.raw_broadcast`): the ceiling, ``raw_*``, and per block the ratios
   ``ws_latency_p99_ceiling_ratio`` and ``all_received_p99_ceiling_ratio``;
3. every server process is killed and started again on the same port (connections
   reset by the kernel, no close frame) while the publisher goes on -> ``reconnect_ratio``,
   ``reconnect_p95_s`` from the cut, ``ws_resumed``;
4. the clients report -> ``messages_missed``, ``poll_latency_p95_ms``,
   ``poll_refresh_s``, and ``boards_wrong``: clients whose board, built from the
   snapshot and every delta and keyframe after it, differs from the publisher's at the
   same update.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import psutil

from loadkit.common.errors import UsageError
from loadkit.redis_io.connect import connect_async
from loadkit.redis_io.keyspace import new_run_id
from loadkit.redis_io.retry import RECONNECTS, retried
from loadkit.redis_io.server import redis_url as usable_redis
from loadkit.runs.metrics import percentile
from loadkit.runs.trials import TrialPlan, combine
from loadkit.runtime.child_messages import OK, ChildFailed, expect, send, stop_children
from loadkit.workloads.dashboard.fanout import BoardKeys, RedisPublisher, ServerPool
from loadkit.workloads.dashboard.loadclient import (
    board_digest,
    client_process,
    now_ms,
    raise_nofile,
)
from loadkit.workloads.dashboard.publisher import KEYFRAME_EVERY, BoardPublisher
from loadkit.workloads.dashboard.raw_broadcast import RawBroadcast
from loadkit.workloads.dashboard.server import ServerConfig
from loadkit.workloads.dashboard.sources import SimulatedFleet, Tick

Progress = Callable[[str, float], None]
RECONNECT_WINDOW_S = 5.0
# A trial plan is frozen, so one object can be every plan's default.
BLOCKS = TrialPlan(kept=5, warmup=1)


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
    workers: int = 1  # server processes sharing the clients
    keyframe_every: int = KEYFRAME_EVERY
    trials: TrialPlan = BLOCKS  # blocks of consecutive rounds
    ceiling: bool = True  # the plain websockets broadcast beside the dashboard


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
        stop_children(self.procs, self.pipes, wait_s=5, ask=False)


Publish = Callable[[Tick], Awaitable[int]]


def _cpu_s(procs: list[Any]) -> float:
    """CPU seconds (user and system) the processes have used so far."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(proc.pid).cpu_times()
            total += times.user + times.system
    return total


async def _publish_rounds(
    publish: Publish,
    sim: SimulatedFleet,
    plan: LoadPlan,
    rounds: int,
    on_round: Callable[[int], None] | None = None,
    halfway: Callable[[Tick], None] | None = None,
) -> list[float]:
    """Publish ``rounds`` rounds of all agents changing; returns processing times (ms):
    diff, encode and hand to Redis. ``halfway`` gets each round's tick half an interval
    after it was published (when the round has reached the clients)."""
    process_ms = []
    due = time.monotonic()
    for r in range(rounds):
        tick = sim.tick(plan.agents, plan.round_interval_s)
        start = time.perf_counter_ns()
        await publish(tick)
        process_ms.append((time.perf_counter_ns() - start) / 1e6)
        if on_round is not None:
            on_round(r)
        if halfway is not None:
            await asyncio.sleep(max(0.0, due + plan.round_interval_s / 2 - time.monotonic()))
            halfway(tick)
        due += plan.round_interval_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    return process_ms


@dataclass(frozen=True)
class Received:
    """What clients recorded of the updates: latency and sequence number of each
    message, and per update when it was published and when its last client had it."""

    latencies_ms: np.ndarray
    seqs: np.ndarray
    receipts: dict[tuple[str, int], tuple[float, float]]

    @staticmethod
    def gather(results: list[dict]) -> Received:
        latencies = [
            np.asarray(v, dtype=np.float64) for r in results for v in r["latencies_ms"].values()
        ]
        seqs = [np.asarray(v, dtype=np.int64) for r in results for v in r["latency_seqs"].values()]
        receipts: dict[tuple[str, int], list[float]] = {}
        for r in results:
            for boot, seq, ts, last in r["last_receipt"]:
                entry = receipts.setdefault((boot, seq), [ts, 0.0])
                entry[1] = max(entry[1], last)
        return Received(
            np.concatenate(latencies) if latencies else np.empty(0),
            np.concatenate(seqs) if seqs else np.empty(0, dtype=np.int64),
            {k: (v[0], v[1]) for k, v in receipts.items()},
        )

    def block(self, boot: str, seqs: list[int]) -> tuple[np.ndarray, list[float]]:
        """Latencies of the messages of these updates, and each update's time until
        its last client had it."""
        chosen = self.latencies_ms[np.isin(self.seqs, seqs)]
        every = [
            last - ts
            for seq in seqs
            if (got := self.receipts.get((boot, seq)))
            for ts, last in [got]
        ]
        return chosen, every


def round_blocks(rounds: int, plan: TrialPlan) -> list[range]:
    """Consecutive rounds cut into ``plan.total`` blocks of (nearly) equal size."""
    if rounds < plan.total:
        raise UsageError(f"{rounds} rounds cannot make {plan.total} blocks of rounds")
    edges = [round(i * rounds / plan.total) for i in range(plan.total + 1)]
    return [range(a, b) for a, b in itertools.pairwise(edges)]


def block_figures(
    blocks: list[range],
    rounds: list[tuple[int, int, float]],
    process_ms: list[float],
    board: Received,
    board_boot: str,
    raw: Received | None,
    raw_boot: str,
    polls: list[tuple[float, float]],
) -> list[dict[str, float]]:
    """Each block's steady figures (pure). ``rounds`` holds per round the board's
    sequence number, the ceiling's, and the wall time (ms) the round was published;
    ``polls`` (start wall ms, latency ms) of every poll."""
    figures = []
    for index, block in enumerate(blocks):
        start_ms = rounds[block.start][2]
        end_ms = rounds[blocks[index + 1].start][2] if index + 1 < len(blocks) else math.inf
        latencies, every = board.block(board_boot, [rounds[i][0] for i in block])
        polled = [ms for started, ms in polls if start_ms <= started < end_ms]
        one = {
            "ws_latency_p50_ms": percentile(latencies, 50),
            "ws_latency_p99_ms": percentile(latencies, 99),
            "broadcast_all_received_p99_ms": percentile(every, 99),
            "update_process_ms": percentile([process_ms[i] for i in block], 95),
            "poll_latency_p95_ms": percentile(polled, 95),
        }
        if raw is not None:
            raw_latencies, raw_every = raw.block(raw_boot, [rounds[i][1] for i in block])
            one |= {
                "raw_latency_p99_ms": percentile(raw_latencies, 99),
                "raw_all_received_p99_ms": percentile(raw_every, 99),
            }
            one |= {
                "ws_latency_p99_ceiling_ratio": one["ws_latency_p99_ms"]
                / one["raw_latency_p99_ms"],
                "all_received_p99_ceiling_ratio": one["broadcast_all_received_p99_ms"]
                / one["raw_all_received_p99_ms"],
            }
        figures.append(one)
    return figures


async def measure_dashboard(
    plan: LoadPlan,
    progress: Progress = _noop,
    redis_url: str | None = None,
    run_id: str | None = None,
) -> tuple[dict[str, float], np.ndarray, dict[str, list[float]]]:
    """Run the whole load test; returns the metrics, the per-message latencies (ms) and
    the blocks' values of each steady figure. Without ``redis_url`` a private Redis is
    started for it."""

    with usable_redis(redis_url) as url:
        return await _measure(plan, progress, url, run_id or new_run_id())


async def _measure(
    plan: LoadPlan, progress: Progress, url: str, run_id: str
) -> tuple[dict[str, float], np.ndarray, dict[str, list[float]]]:

    blocks = round_blocks(plan.rounds, plan.trials)  # a plan that cannot be cut fails first
    ceiling_clients = plan.clients if plan.ceiling else 0
    raise_nofile(plan.clients + ceiling_clients + plan.stuck_clients + plan.pollers + 256)
    reconnects_before = RECONNECTS.count
    sim = SimulatedFleet(plan.agents)
    keys = BoardKeys.for_run(run_id)
    redis = connect_async(url, max_connections=4)
    publisher = BoardPublisher(keyframe_every=plan.keyframe_every)
    out = RedisPublisher(redis, keys, publisher)
    truth: dict[int, str] = {}  # seq -> digest of the publisher's board after it

    async def publish(tick: Tick) -> int:
        size = await out.publish(tick)
        truth[publisher.seq] = board_digest(publisher.board.codes().encode("ascii"))
        return size

    first = sim.snapshot()
    config = ServerConfig(
        port=0,
        max_connections=plan.clients + plan.stuck_clients + 64,
        max_buffer_bytes=plan.max_buffer_bytes,
        send_buffer_bytes=plan.send_buffer_bytes,
    )
    pool = ServerPool(config, url, keys, plan.workers)
    clients: _Clients | None = None
    raw: RawBroadcast | None = None
    raw_clients: _Clients | None = None
    raw_publisher = BoardPublisher(keyframe_every=plan.keyframe_every)
    raw_publisher.publish(first)
    raw_results: list[dict] | None = None
    rounds: list[tuple[int, int, float]] = []  # board seq, ceiling seq, wall ms published
    try:
        # The ceiling's servers and clients first, so the board's own timeline (connect,
        # then rounds at once) is what it was without them.
        if plan.ceiling:
            fds = config.max_connections + 256
            raw = await RawBroadcast(plan.workers, raw_publisher.snapshot(), fds).start()
            raw_plan = replace(plan, pollers=0, stuck_clients=0)
            raw_clients = _Clients(f"ws://127.0.0.1:{raw.port}/ws", raw_plan)
            await raw_clients.ask(
                [
                    {"cmd": "connect", "n": n, "pollers": 0, "poll_interval_s": 1.0}
                    for n in raw_clients.shares
                ]
            )
        await publish(first)
        await pool.start()
        rss_before = [r["rss"] for r in await pool.ask("rss")]
        clients = _Clients(f"ws://127.0.0.1:{pool.port}/ws", plan)
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
        per_worker = [s["clients"] for s in await pool.ask("stats")]
        open_conns = sum(per_worker)
        rss_after = [r["rss"] for r in await pool.ask("rss")]
        progress("broadcast", 0.1)
        await clients.ask_all(cmd="stuck", n=plan.stuck_clients // plan.client_procs or 1)
        stuck = len(clients.shares) * (plan.stuck_clients // plan.client_procs or 1)

        async def steady_round(tick: Tick) -> int:
            started = now_ms()
            size = await publish(tick)
            rounds.append((publisher.seq, 0, started))
            return size

        def ceiling_round(tick: Tick) -> None:
            assert raw is not None
            raw.send(raw_publisher.publish(tick))
            rounds[-1] = (rounds[-1][0], raw_publisher.seq, rounds[-1][2])

        cpu_before = _cpu_s(pool.procs), _cpu_s(clients.procs)
        process_ms = await _publish_rounds(
            steady_round,
            sim,
            plan,
            plan.rounds,
            lambda r: progress("broadcast", 0.1 + 0.6 * r / plan.rounds),
            ceiling_round if raw is not None else None,
        )
        cpu_after = _cpu_s(pool.procs), _cpu_s(clients.procs)
        steady = await pool.ask("stats")
        if raw_clients is not None and raw is not None:
            raw_results = await raw_clients.ask_all(cmd="finish")
            raw_clients.close()
            raw.close()
            raw_clients = raw = None
        dropped = sum(s["dropped"] for s in steady)
        write_ms = [ms for s in steady for ms in s["write_ms"][-plan.rounds :]]
        seen = await clients.ask_all(cmd="wake_stuck")
        progress("restart", 0.7)
        await clients.ask_all(cmd="pause")
        # A crash of every server process: killed, their connections reset by the kernel,
        # then new processes listen on the same port and start from the board's
        # snapshot; the publisher goes on meanwhile.
        down_ms = now_ms()
        down = time.perf_counter()
        restarting = asyncio.ensure_future(pool.restart())
        waiting = asyncio.ensure_future(
            clients.ask_all(cmd="reconnect", since_ms=down_ms, wait_s=RECONNECT_WINDOW_S + 1)
        )
        down_s = None
        while not waiting.done():
            await publish(sim.tick(plan.agents // 10, plan.round_interval_s))
            await asyncio.wait([waiting], timeout=plan.round_interval_s)
            if down_s is None and restarting.done():
                down_s = time.perf_counter() - down
        back = await waiting
        await restarting
        if down_s is None:
            down_s = time.perf_counter() - down
        final = await pool.ask("stats")
        resumed_by_servers = sum(s["resumed"] for s in final)
        # The server processes of before the restart, those of after it, and this one.
        server_reconnects = sum(s["reconnects"] for s in steady + final)
        progress("report", 0.95)
        results = await clients.ask_all(cmd="finish")
    finally:
        for group in (clients, raw_clients):
            if group is not None:
                group.close()
        if raw is not None:
            raw.close()
        pool.close()
        # retried after a dropped connection; a Redis that is gone keeps the key, which
        # expires by itself (SNAPSHOT_TTL_S)
        with contextlib.suppress(Exception):
            await retried("dashboard clean-up", lambda: redis.delete(keys.snapshot))
        await redis.aclose()
    by_worker: dict[str, list[np.ndarray]] = {}
    for r in results:
        for worker, values in r["latencies_ms"].items():
            by_worker.setdefault(worker, []).append(np.asarray(values))
    worker_latencies = {w: np.concatenate(parts) for w, parts in sorted(by_worker.items())}
    latencies = np.concatenate(list(worker_latencies.values())) if worker_latencies else np.empty(0)
    polls_at = [
        (started, ms)
        for r in results
        for started, ms in zip(r["poll_started_ms"], r["poll_latencies_ms"], strict=True)
    ]
    steady_figures = combine(
        block_figures(
            blocks,
            rounds,
            process_ms,
            Received.gather(results),
            publisher.boot,
            Received.gather(raw_results) if raw_results is not None else None,
            raw_publisher.boot,
            polls_at,
        ),
        plan.trials.warmup,
        # a block in which no poll started (pollers stalled on a busy host) has no p95
        sparse=("poll_latency_p95_ms",),
    )
    reconnect_s = [t for r in back for t in r["reconnect_s"]]
    total = sum(r["clients"] for r in back)
    polls = [x for r in results for x in r["poll_latencies_ms"]]
    refresh = [x for r in results for x in r["poll_refresh_s"]]
    boards = [b for r in results for b in r["boards"]]
    wrong = sum(seq is None or truth.get(seq) != digest for seq, digest in boards)
    sent = open_conns * plan.rounds
    server_cpu_us, client_cpu_us = (
        1e6 * (b - a) / max(sent, 1) for a, b in zip(cpu_before, cpu_after, strict=True)
    )
    grown = sum(after - before for before, after in zip(rss_before, rss_after, strict=True))
    metrics = {
        "ws_connections": float(open_conns),
        "ws_connect_s": max(c["connect_s"] for c in connected),
        **steady_figures.metrics,
        "poll_refresh_s": percentile(refresh, 95),
        "reconnect_ratio": sum(t <= RECONNECT_WINDOW_S for t in reconnect_s) / max(total, 1),
        "reconnect_p95_s": percentile(reconnect_s, 95),
        "memory_per_connection_kib": grown / 1024 / max(open_conns, 1),
        "slow_clients_dropped": float(dropped),
        "messages_missed": float(sum(r["messages_missed"] for r in results)),
        "boards_wrong": float(wrong),
        # context for the figures above
        "ws_clients": float(plan.clients),
        "ws_connected_clients": float(sum(c["connected"] for c in connected)),
        "server_workers": float(plan.workers),
        "ws_resumed": float(resumed_by_servers),
        "stuck_clients": float(stuck),
        "stuck_clients_seen_dropped": float(sum(r["stuck_dropped_seen"] for r in seen)),
        "ws_messages_received": float(sum(r["messages_received"] for r in results)),
        "update_process_max_ms": max(process_ms),
        # CPU time per message delivered in the steady phase: where a round's time goes
        "server_cpu_us_per_message": server_cpu_us,
        "server_write_round_p95_ms": percentile(write_ms, 95),
        "client_cpu_us_per_message": client_cpu_us,
        "restart_down_s": down_s,
        "poll_requests": float(len(polls)),
        "poll_not_modified": float(sum(r["poll_not_modified"] for r in results)),
        "poll_errors": float(sum(r["poll_errors"] for r in results)),
        "redis_reconnects": float(RECONNECTS.count - reconnects_before + server_reconnects),
    }
    for i, n in enumerate(per_worker):
        metrics[f"worker{i}_ws_connections"] = float(n)
    for worker, values in worker_latencies.items():
        metrics[f"worker{worker}_ws_latency_p50_ms"] = percentile(values, 50)
        metrics[f"worker{worker}_ws_latency_p99_ms"] = percentile(values, 99)
    progress("done", 1.0)
    return metrics, latencies, steady_figures.samples
