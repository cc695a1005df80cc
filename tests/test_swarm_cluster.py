"""The swarm workload on a real 3-master Redis Cluster (same redis-server binary, loopback
ports), through redis-py's cluster client: the quick workload runs unchanged there and
must deliver everything and keep fencing."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers import run_loadkit

from loadkit.redis_server import RedisServer, check_url, connect_async, find_redis_binary
from loadkit.swarm.config import SwarmConfig
from loadkit.swarm.coordinator import create_swarms
from loadkit.swarm.scripts import Scripts


def _port_pair_free(port: int) -> bool:
    for p in (port, port + 10_000):  # the cluster bus listens on port + 10000
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _cluster_port() -> int:
    for _ in range(200):
        port = random.randint(20_000, 50_000)
        if _port_pair_free(port):
            return port
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    args = ("--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
    nodes: list[RedisServer] = []
    try:
        for _ in range(3):
            nodes.append(RedisServer(port=_cluster_port(), extra_args=args).start())
        cli = Path(find_redis_binary()).with_name("redis-cli")
        if not cli.exists():
            pytest.skip("no redis-cli next to redis-server")
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        create = ["--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
        subprocess.run(
            [str(cli), *create],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for n in nodes:
            client = redis.Redis(port=n.port)
            while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                assert time.monotonic() < deadline, "cluster did not become ready"
                time.sleep(0.05)
            client.close()
        yield f"redis+cluster://127.0.0.1:{nodes[0].port}"
    finally:
        for n in nodes:
            n.stop()


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
    from loadkit.errors import UsageError

    with pytest.raises(UsageError, match="not a cluster node"):
        check_url(redis_url.replace("redis://", "redis+cluster://"))


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
