"""The fleet on a real 3-master Redis Cluster: every key of a fleet shares one hash tag,
so the same Lua scripts allocate, complete and reclaim through redis-py's cluster
client exactly as on a single server."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from loadkit.workloads.fleet.host import Work
from loadkit.workloads.fleet.manager import FleetManager
from loadkit.workloads.fleet.scenarios import wait_completed


@pytest.mark.slow
def test_fleet_allocates_reclaims_and_cleans_up_on_a_cluster(cluster_url: str) -> None:
    async def scenario() -> None:
        async with FleetManager(
            cluster_url, "on-cluster", lease_ms=500, reap_interval_s=0.05
        ) as manager:
            store = manager.store
            await manager.spawn(200)
            assert (await store.counts())["agents"] == 200
            assert await manager.submit(300, Work(sleep_ms=5)) == (200, 100)
            assert await wait_completed(manager, 300, timeout_s=20) == 300
            entries = await store.client.xrange(store.key("results"))
            assert len(entries) == 300
            assert set(Counter(f[b"t"] for _id, f in entries).values()) == {1}

            await manager.submit(3, Work(sleep_ms=300))
            for _ in range(500):
                holders = [a for a in manager.host.agents.values() if a.task_id]
                if holders:
                    break
                await asyncio.sleep(0.01)
            victim = holders[0].id
            manager.host.crash(victim)
            assert await wait_completed(manager, 303, timeout_s=20) == 303
            assert victim in manager.reaped
            await manager.host.retire(manager.host.size)
            await manager.stop()
            assert await store.leftovers() == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))
