"""The swarm workload on a real Redis Cluster (3 primaries with a replica each, same
redis-server binary, loopback ports), through redis-py's cluster client: the quick
workload runs unchanged there and must deliver everything and keep fencing - also while
a primary fails over to its replica, gracefully or because it was killed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    TestCluster,
    child_env,
    loadkit_cmd,
    run_workload_cli,
    start_cluster,
    wait_for,
    workload_outcome,
)

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
    out = run_workload_cli(report, "swarm", "--scale", "quick", "--redis-url", cluster_url)
    assert out.returncode == 0, workload_outcome(report, out.stderr)
    entry = json.loads(report.read_text())["workloads"]["swarm"]
    m = entry["metrics"]
    assert entry["status"] == "passed"
    assert m["swarms_created"] == 100
    assert m["messages_lost"] == 0
    assert m["messages_delivered"] == m["messages_sent"] > 0
    assert m["stale_writes_accepted"] == 0
    assert m["stale_writes_rejected"] >= m["injected_pauses"] > 0
    assert m["election_success_ratio"] == 1.0
    assert m["redis_reconnects"] > 0  # the workload's own churn kills its connections


# -- failovers: each test has a cluster of its own, whose shape it changes ---------------


@pytest.fixture
def own_cluster() -> Iterator[TestCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def start_swarm(cluster: TestCluster, report: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        loadkit_cmd("run", "swarm", "--scale", "quick", "--redis-url", cluster.url,
                    "--json", str(report)),
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def swarm_streams(cluster: TestCluster) -> int:
    total = 0
    for node in cluster.primaries():
        c = cluster.client(node)
        try:
            total += sum(1 for _ in c.scan_iter(match="*:stream", count=1000))
        finally:
            c.close()
    return total


def under_load(cluster: TestCluster, proc: subprocess.Popen[str]) -> None:
    """Wait until the run's swarms exist and its producers have started sending."""
    wait_for(lambda: proc.poll() is not None or swarm_streams(cluster) >= 100, 60, "swarms")
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(1.0)


def connected(cluster: TestCluster, suffix: str) -> bool:
    """Some client whose name ends with ``suffix`` is connected to a primary."""
    for node in cluster.primaries():
        c = cluster.client(node)
        try:
            if any(row.get("name", "").endswith(suffix) for row in c.client_list()):
                return True
        finally:
            c.close()
    return False


def replacing_a_coordinator(cluster: TestCluster, proc: subprocess.Popen[str]) -> None:
    """Wait for the coordinator-kill phase (a second-generation coordinator, ``c0g1``,
    connects): the throughput and latency phases are over, delivery is still checked."""
    wait_for(lambda: proc.poll() is not None or connected(cluster, "-c0g1"), 120, "phase")
    assert proc.poll() is None, proc.communicate()[1][-2000:]


@pytest.mark.slow
def test_a_graceful_failover_mid_run_loses_nothing(
    own_cluster: TestCluster, tmp_path: Path
) -> None:
    """``CLUSTER FAILOVER`` on a replica while the quick swarm runs: the replica takes
    over once it has every write, clients follow ``MOVED``; nothing is lost or stale."""
    report = tmp_path / "swarm.json"
    proc = start_swarm(own_cluster, report)
    replacing_a_coordinator(own_cluster, proc)
    old = own_cluster.primaries()[0]
    replica = own_cluster.replica_of(old)
    c = own_cluster.client(replica)
    try:
        assert c.execute_command("CLUSTER", "FAILOVER") in (b"OK", "OK", True)
    finally:
        c.close()
    wait_for(lambda: own_cluster.role(replica) == "master", 15, "the replica to take over")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, workload_outcome(report, err)
    m = json.loads(report.read_text())["workloads"]["swarm"]["metrics"]
    assert m["messages_lost"] == 0
    assert m["messages_delivered"] == m["messages_sent"] > 0
    assert m["stale_writes_accepted"] == 0
    assert own_cluster.role(old) == "slave"  # the failover did happen during the run


@pytest.mark.slow
def test_a_killed_primary_mid_run_is_survived_and_its_losses_counted(
    own_cluster: TestCluster, tmp_path: Path
) -> None:
    """SIGKILL of a primary while the quick swarm runs: its replica is promoted after
    the node timeout, the run completes, fencing holds. Replication is asynchronous, so
    writes the primary acknowledged but had not yet sent on may be gone: the report
    counts them instead of hiding them."""
    report = tmp_path / "swarm.json"
    proc = start_swarm(own_cluster, report)
    under_load(own_cluster, proc)
    # Not the node the URL names: a client started later bootstraps from that one.
    victim = next(n for n in own_cluster.primaries() if n is not own_cluster.nodes[0])
    replica = own_cluster.replica_of(victim)
    victim.kill()
    wait_for(lambda: own_cluster.role(replica) == "master", 20, "the replica to take over")
    _, err = proc.communicate(timeout=180)
    entry = json.loads(report.read_text())["workloads"]["swarm"]
    assert entry["status"] in ("passed", "failed"), workload_outcome(report, err)
    assert proc.returncode in (0, 1), workload_outcome(report, err)
    m = entry["metrics"]
    assert m["stale_writes_accepted"] == 0
    assert m["messages_lost"] >= 0 and m["messages_delivered"] > 0
    missed = {c["metric"] for c in entry["checks"] if not c["passed"]}
    assert (m["messages_lost"] > 0) == ("messages_lost" in missed), workload_outcome(report, err)
    assert (proc.returncode == 0) == (entry["status"] == "passed")
    assert m["redis_reconnects"] > 0
