"""Connections dropped while Redis is perfectly alive: every workload rides it out.

A killer thread sends ``CLIENT KILL TYPE normal SKIPME yes`` and ``CLIENT KILL TYPE
pubsub`` to the run's real Redis (every node of a cluster) every 1-2 s, as an idle
``timeout``, a proxy restart or an operator would. Each run must still complete with all
targets met, lose no message, accept no stale write, leave no key, and report the
reconnects it made (``redis_reconnects``). That a Redis which really is gone is still
noticed within 5 s is in ``test_chaos_redis.py``.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers import TestCluster, child_env, run_workload_cli, start_dashboard, workload_outcome

from loadkit.redis_io.server import RedisServer

pytestmark = pytest.mark.slow  # whole quick runs under fire


class Killer:
    """Kills the normal and pub/sub client connections of some Redis servers every
    ``min_s``-``max_s`` seconds, from a thread, until stopped; counts what it killed."""

    def __init__(self, ports: list[int], min_s: float = 1.0, max_s: float = 2.0) -> None:
        self.ports = ports
        self.min_s, self.max_s = min_s, max_s
        self.rounds = 0
        self.killed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        clients = [redis.Redis(port=p, socket_timeout=5) for p in self.ports]
        rng = random.Random(7)
        try:
            while not self._stop.wait(rng.uniform(self.min_s, self.max_s)):
                for c in clients:
                    for kind in ("normal", "pubsub"):
                        # a node that does not answer now: the next round tries again
                        with contextlib.suppress(redis.RedisError):
                            self.killed += int(c.client_kill_filter(_type=kind, skipme=True))
                self.rounds += 1
        finally:
            for c in clients:
                c.close()

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


def keys_left(ports: list[int]) -> list[str]:
    left = []
    for port in ports:
        c = redis.Redis(port=port, decode_responses=True)
        try:
            if c.info("replication")["role"] == "master":
                left += list(c.scan_iter(count=1000))
        finally:
            c.close()
    return left


def run_under_fire(
    tmp_path: Path, ports: list[int], *args: str, env: dict[str, str] | None = None
) -> tuple[dict[str, float], Killer]:
    """``loadkit run ARGS`` while the killer works; the workload's metrics, once it
    passed with every target met."""
    report = tmp_path / "report.json"
    with Killer(ports) as killer:
        out = run_workload_cli(report, *args, env=env, timeout=240)
    outcome = workload_outcome(report, out.stderr)
    assert out.returncode == 0, outcome
    (entry,) = json.loads(report.read_text())["workloads"].values()
    assert entry["status"] == "passed", outcome
    assert killer.rounds >= 3 and killer.killed > 0, (killer.rounds, killer.killed)
    assert entry["metrics"]["redis_reconnects"] > 0, outcome
    assert keys_left(ports) == []
    return entry["metrics"], killer


def test_fleet_rides_out_killed_connections(server: RedisServer, tmp_path: Path) -> None:
    m, _ = run_under_fire(
        tmp_path, [server.port], "fleet", "--scale", "quick", "--redis-url", server.url
    )
    # every task once: no submission doubled by a retry, none lost, no result refused
    assert m["allocation_submitted"] == m["allocation_tasks"] == m["allocation_completed"]
    assert m["allocation_stale"] == 0
    assert m["reclaim_completed"] == m["reclaim_tasks"] > 0
    assert m["cleanup_leaked_keys"] == 0


def _assert_swarm_intact(m: dict[str, float]) -> None:
    assert m["messages_lost"] == 0
    assert m["messages_delivered"] == m["messages_sent"] > 0
    assert m["stale_writes_accepted"] == 0
    assert m["election_success_ratio"] == 1.0


def test_swarm_rides_out_killed_connections(server: RedisServer, tmp_path: Path) -> None:
    m, _ = run_under_fire(
        tmp_path, [server.port], "swarm", "--scale", "quick", "--redis-url", server.url
    )
    _assert_swarm_intact(m)


def test_swarm_on_the_cluster_rides_out_killed_connections(
    cluster: TestCluster, tmp_path: Path
) -> None:
    ports = [n.port for n in cluster.nodes]
    m, _ = run_under_fire(tmp_path, ports, "swarm", "--scale", "quick", "--redis-url", cluster.url)
    _assert_swarm_intact(m)


def test_dashboard_workload_with_two_server_processes_rides_out_killed_connections(
    server: RedisServer, tmp_path: Path
) -> None:
    """The publisher's and the server processes' connections - their subscriptions
    too - are killed: the servers subscribe again and reload the snapshot, every
    client's board ends right."""
    env = child_env() | {"LOADKIT_DASHBOARD_WORKERS": "2"}
    m, _ = run_under_fire(
        tmp_path, [server.port], "dashboard", "--scale", "smoke", "--redis-url", server.url,
        env=env,
    )  # fmt: skip
    assert m["server_workers"] == 2
    assert m["boards_wrong"] == 0 and m["messages_missed"] == 0


def test_dashboard_command_with_two_server_processes_rides_out_killed_connections(
    server: RedisServer,
) -> None:
    """``loadkit dashboard --workers 2`` with its own fleet: runs its whole duration,
    exits 0 and deletes its keys."""
    with Killer([server.port]) as killer:
        proc = start_dashboard(
            "--redis-url", server.url, "--agents", "50", "--port", "0", "--workers", "2",
            "--duration", "8",
        )  # fmt: skip
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "dashboard stopped" in out
    assert killer.rounds >= 3 and killer.killed > 0
    assert keys_left([server.port]) == []
