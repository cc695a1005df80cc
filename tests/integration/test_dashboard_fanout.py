"""Several dashboard server processes of one board, fed through a real Redis: a viewer
moves between them without a gap, a follower that misses an update catches up from
the snapshot, server processes share one port."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
import redis
from helpers import start_dashboard

from loadkit.redis_io.connect import connect_async
from loadkit.redis_io.keyspace import new_run_id
from loadkit.workloads.dashboard.fanout import BoardKeys, RedisPublisher, ServerPool, follow
from loadkit.workloads.dashboard.loadclient import Shared, WsClient, board_digest, http_get
from loadkit.workloads.dashboard.publisher import BoardPublisher
from loadkit.workloads.dashboard.server import WORKER_HEADER, DashboardServer, ServerConfig
from loadkit.workloads.dashboard.sources import SimulatedFleet

T = TypeVar("T")


def run(coro: Awaitable[T], timeout_s: float = 60) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


def test_a_viewer_moves_to_another_server_of_the_board_without_a_gap(redis_url: str) -> None:
    async def scenario() -> None:
        keys = BoardKeys.for_run(new_run_id())
        client = connect_async(redis_url)
        sim = SimulatedFleet(300)
        publisher = BoardPublisher(keyframe_every=4)
        out = RedisPublisher(client, keys, publisher)
        await out.publish(sim.snapshot())
        servers = [await DashboardServer(ServerConfig(port=0)).start() for _ in range(2)]
        loaded = [asyncio.Event(), asyncio.Event()]
        followers = [
            asyncio.ensure_future(follow(s, client, keys, e))
            for s, e in zip(servers, loaded, strict=True)
        ]
        stop = asyncio.Event()
        viewer = WsClient(f"ws://127.0.0.1:{servers[0].port}/ws", Shared())
        task = asyncio.ensure_future(viewer.run(stop))
        try:
            await asyncio.gather(*(e.wait() for e in loaded))
            assert {s.boot for s in servers} == {publisher.boot}  # the board's id, not theirs
            await until(lambda: viewer.codes is not None, 10, "the first snapshot")
            for _ in range(6):
                await out.publish(sim.tick(300))
            await until(lambda: viewer.applied == publisher.seq, 10, "updates on server A")
            # The viewer's connection to A breaks; while it is away the board goes on,
            # and it comes back to B, asking to resume after what it applied.
            viewer.url = f"ws://127.0.0.1:{servers[1].port}/ws"
            away_from = viewer.applied
            assert viewer.ws is not None
            viewer.ws.abort()
            for _ in range(3):
                await out.publish(sim.tick(40))
            await until(lambda: len(viewer.connected_at) == 2, 10, "the move to B")
            for _ in range(3):
                await out.publish(sim.tick(300))
            await until(lambda: viewer.applied == publisher.seq, 10, "updates on server B")
            assert servers[1].resumed == 1  # B sent the updates it lacked, not a snapshot
            assert viewer.shared.resumed == 1
            assert viewer.gaps.missed == 0 and viewer.gaps.last_seq == publisher.seq
            assert viewer.applied > away_from + 3
            truth = board_digest(publisher.board.codes().encode())
            assert board_digest(viewer.codes) == truth
            assert servers[1].board.states == servers[0].board.states == sim.states
        finally:
            stop.set()
            if viewer.ws is not None:
                await viewer.ws.close()
            await task
            for f in followers:
                f.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            for s in servers:
                await s.close()
            await client.delete(keys.snapshot)
            await client.aclose()

    run(scenario())


def test_a_follower_that_misses_an_update_takes_the_snapshot_and_passes_it_on() -> None:
    async def scenario() -> None:
        sim = SimulatedFleet(100)
        publisher = BoardPublisher(keyframe_every=0)
        publisher.publish(sim.snapshot())
        server = await DashboardServer(ServerConfig(port=0)).start()
        shared = Shared()
        stop = asyncio.Event()
        try:
            server.load(publisher.snapshot())
            viewer = WsClient(f"ws://127.0.0.1:{server.port}/ws", shared)
            task = asyncio.ensure_future(viewer.run(stop))
            await until(lambda: viewer.codes is not None, 10, "the first snapshot")
            assert server.deliver(publisher.publish(sim.tick(10)))
            publisher.publish(sim.tick(10))  # lost on the way
            assert not server.deliver(publisher.publish(sim.tick(10)))
            assert server.seq == publisher.seq - 2  # nothing applied past the gap
            server.load(publisher.snapshot())
            assert server.deliver(publisher.publish(sim.tick(10)))
            await until(lambda: viewer.applied == publisher.seq, 10, "the viewer caught up")
            assert viewer.gaps.missed == 0  # a snapshot explains the jump
            assert board_digest(viewer.codes) == board_digest(publisher.board.codes().encode())
            assert server.board.states == sim.states
            stop.set()
            assert viewer.ws is not None
            await viewer.ws.close()
            await task
        finally:
            await server.close()

    run(scenario())


@pytest.mark.slow
def test_server_processes_share_one_port_and_come_back_after_a_restart(redis_url: str) -> None:
    async def scenario() -> None:
        keys = BoardKeys.for_run(new_run_id())
        client = connect_async(redis_url)
        sim = SimulatedFleet(200)
        publisher = BoardPublisher()
        out = RedisPublisher(client, keys, publisher)
        await out.publish(sim.snapshot())
        pool = ServerPool(ServerConfig(port=0), redis_url, keys, workers=2)
        stop = asyncio.Event()
        viewers: list[WsClient] = []
        try:
            await pool.start()
            url = f"ws://127.0.0.1:{pool.port}/ws"
            viewers = [WsClient(url, Shared()) for _ in range(40)]
            tasks = [asyncio.ensure_future(v.run(stop)) for v in viewers]
            await until(lambda: all(v.codes is not None for v in viewers), 20, "snapshots")
            per_worker = [s["clients"] for s in await pool.ask("stats")]
            assert sum(per_worker) == 40 and min(per_worker) > 0, per_worker
            assert {v.worker for v in viewers} == {"0", "1"}
            status, headers, _ = await http_get("127.0.0.1", pool.port, "/api/snapshot")
            assert status == 200 and headers[WORKER_HEADER.lower()] in ("0", "1")
            for _ in range(5):
                await out.publish(sim.tick(200))
            await until(lambda: all(v.applied == publisher.seq for v in viewers), 20, "updates")
            await pool.restart()  # both processes die (connections reset) and come back
            await until(lambda: all(len(v.connected_at) == 2 for v in viewers), 20, "reconnects")
            await out.publish(sim.tick(200))
            await until(lambda: all(v.applied == publisher.seq for v in viewers), 20, "updates")
            truth = board_digest(publisher.board.codes().encode())
            assert {board_digest(v.codes) for v in viewers} == {truth}
            assert sum(v.gaps.missed for v in viewers) == 0
            stop.set()
            for v in viewers:
                if v.ws is not None:
                    v.ws.abort()
            await asyncio.gather(*tasks)
        finally:
            pool.close()
            await client.delete(keys.snapshot)
            await client.aclose()

    run(scenario(), timeout_s=90)


def _board_keys(url: str) -> set[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return set(client.scan_iter(match="{fleet:lk*-dashboard}:board:*"))
    finally:
        client.close()


@pytest.mark.slow
def test_cli_workers_serve_one_board_and_leave_no_keys(redis_url: str) -> None:
    before = _board_keys(redis_url)
    proc = start_dashboard(
        "--simulate", "--workers", "2", "--agents", "60", "--port", "0",
        "--duration", "4", "--interval", "0.2", "--redis-url", redis_url,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url and "2 server processes" in line, line
        workers, boards = set(), []
        for _ in range(20):
            with urllib.request.urlopen(url.group(0) + "api/snapshot", timeout=5) as resp:
                workers.add(resp.headers[WORKER_HEADER])
                boards.append(json.loads(resp.read()))
        assert workers <= {"0", "1"} and len(workers) == 2  # the kernel spreads connections
        assert {len(b["agents"]) for b in boards} == {60}
        assert len({b["boot"] for b in boards}) == 1  # one board, whichever process answers
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in proc.stderr.read()
    assert _board_keys(redis_url) == before


@pytest.mark.slow
def test_cli_workers_end_with_one_line_when_redis_is_lost() -> None:
    """Redis killed under a fanned-out dashboard: the publisher (or a server process)
    finds it silent for longer than loadkit waits, and the command ends with one line
    and exit code 1, leaving no process behind."""
    from loadkit.redis_io.server import RedisServer

    with RedisServer() as server:
        proc = start_dashboard(
            "--simulate", "--workers", "2", "--agents", "30", "--port", "0",
            "--duration", "60", "--interval", "0.2", "--redis-url", server.url,
        )  # fmt: skip
        try:
            assert "2 server processes" in proc.stdout.readline()
            server.kill()
            started = time.monotonic()
            _, err = proc.communicate(timeout=30)
            took = time.monotonic() - started
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "lost Redis" in err and "Traceback" not in err, err
    assert took < 20, took
