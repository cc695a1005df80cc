"""The swarm workload on a real 3-master Redis Cluster (same redis-server binary, loopback
ports), through redis-py's cluster client: the quick workload runs unchanged there and
must deliver everything and keep fencing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers import run_loadkit

from loadkit.redis_io.connect import check_url, connect_async
from loadkit.workloads.swarm.config import SwarmConfig
from loadkit.workloads.swarm.coordinator import create_swarms
from loadkit.workloads.swarm.scripts import Scripts

pytestmark = pytest.mark.slow  # a three-node Redis cluster


def test_a_cluster_url_is_accepted_and_swarms_spread_over_the_masters(cluster_url: str) -> None:
    check_url(cluster_url)
    config = SwarmConfig(url=cluster_url, run="spread", swarms=30, members=3)

    async def scenario() -> dict[str, int]:
        client = connect_async(cluster_url)
        try:
            scripts = Scripts(client)
            await scripts.load()
            assert await create_swarms(scripts, config, "t", config.member_ids()) == 30
            sizes = {}
            for node in client.get_primaries():
                sizes[node.name] = await client.execute_command("DBSIZE", target_nodes=node)
            return sizes
        finally:
            await client.aclose()

    sizes = asyncio.run(scenario())
    assert len(sizes) == 3
    assert all(n > 0 for n in sizes.values())


def test_connect_async_picks_the_client_for_the_url(cluster_url: str, redis_url: str) -> None:
    from redis.asyncio import BlockingConnectionPool, RedisCluster

    async def scenario() -> None:
        cluster, plain = connect_async(cluster_url), connect_async(redis_url, max_connections=3)
        try:
            assert isinstance(cluster, RedisCluster)
            assert await cluster.ping()
            assert isinstance(plain.connection_pool, BlockingConnectionPool)
            assert plain.connection_pool.max_connections == 3
            assert await plain.ping()
        finally:
            await cluster.aclose()
            await plain.aclose()

    asyncio.run(scenario())


def test_a_plain_node_url_with_the_cluster_scheme_is_refused(redis_url: str) -> None:
    from loadkit.common.errors import UsageError

    with pytest.raises(UsageError, match="not a cluster node"):
        check_url(redis_url.replace("redis://", "redis+cluster://"))


@pytest.mark.slow
def test_the_quick_swarm_workload_runs_unchanged_on_the_cluster(
    cluster_url: str, tmp_path: Path
) -> None:
    report = tmp_path / "swarm.json"
    out = run_loadkit(
        "run", "swarm", "--scale", "quick", "--redis-url", cluster_url, "--json", str(report),
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    entry = json.loads(report.read_text())["workloads"]["swarm"]
    m = entry["metrics"]
    assert entry["status"] == "passed"
    assert m["swarms_created"] == 100
    assert m["messages_lost"] == 0
    assert m["messages_delivered"] == m["messages_sent"] > 0
    assert m["stale_writes_accepted"] == 0
    assert m["stale_writes_rejected"] >= m["injected_pauses"] > 0
    assert m["election_success_ratio"] == 1.0
