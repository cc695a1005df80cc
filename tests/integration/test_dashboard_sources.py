"""The dashboard's view of a real fleet on a real Redis (conftest's session server)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from loadkit.workloads.dashboard.board import AgentBoard
from loadkit.workloads.dashboard.sources import FleetSource, RedisFleetSource
from loadkit.workloads.fleet.host import AgentHost, Work, encode_task_body
from loadkit.workloads.fleet.manager import FleetManager
from loadkit.workloads.fleet.store import FleetStore


async def _until(read, predicate, timeout_s: float, what: str):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await read()
        if predicate(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}: {value}")
        await asyncio.sleep(0.05)


def test_redis_source_sees_idle_busy_and_dead_agents(redis_url: str, fleet_name: str) -> None:
    """Watching through Redis alone: the agents of a host in this process show idle, then
    busy with tasks, and a crashed one shows dead once its lease runs out."""

    async def scenario() -> None:
        host = await AgentHost(redis_url, fleet_name, lease_ms=300).start()
        client = Redis.from_url(redis_url)
        store = FleetStore(client, fleet_name)
        source = RedisFleetSource(client, fleet_name)
        board = AgentBoard()
        try:
            await host.spawn(10)
            first = await source.tick(1.0)
            assert first.full == {a: "idle" for a in host.agents}
            board.replace(first.full)
            # Tasks far longer than the test, so the three stay busy however slowly the
            # crashed agent's lease runs out; stopping the host cancels them.
            await store.submit([encode_task_body(Work(sleep_ms=60_000))] * 3)
            busy = await _until(
                lambda: source.tick(0.1),
                lambda t: sorted(t.full.values()).count("busy") == 3,
                5,
                "three busy agents",
            )
            delta = board.replace(busy.full)
            assert sorted(delta.changed.values()) == ["busy"] * 3
            # Idle as Redis says, which the host's own view may not have caught up with:
            # an agent Redis has handed a task can still look idle in the host.
            victim = next(a for a, state in busy.full.items() if state == "idle")
            host.crash(victim)  # no more heartbeats: its lease expires, nobody reaps it
            dead = await _until(
                lambda: source.tick(0.1), lambda t: t.full[victim] == "dead", 5, "a dead agent"
            )
            assert sorted(dead.full.values()).count("busy") == 3
            assert dead.stats["redis_errors"] == 0
        finally:
            await host.stop(drain_timeout_s=0.1)
            await store.purge()
            await client.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_fleet_source_samples_the_local_host(redis_url: str, fleet_name: str) -> None:
    async def scenario() -> None:
        async with FleetManager(redis_url, fleet_name, lease_ms=1000) as manager:
            await manager.spawn(20)
            source = FleetSource(manager)
            await manager.submit(40, Work(sleep_ms=5))
            for _ in range(200):
                if manager.host.completed == 40:
                    break
                await asyncio.sleep(0.05)
            tick = source.tick(0.5)
            assert len(tick.full) == 20
            assert tick.stats["completed"] == 40
            assert tick.stats["throughput_per_s"] == 80
            assert 0 < tick.stats["latency_ms"] < 1000
            assert len(manager.host.alloc_latency) == 0  # taken, so it cannot grow unbounded

    asyncio.run(asyncio.wait_for(scenario(), 30))
