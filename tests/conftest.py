"""Shared fixtures: one real redis-server for the session, unique fleet names per test.

The server is started by :class:`loadkit.redis_io.server.RedisServer` (the same code the CLI
uses), so every test that touches Redis talks to a real ``redis-server`` over a real
loopback socket. Tests isolate themselves by fleet name (every fleet key carries the
``{fleet:<name>}`` prefix), not by flushing the server.
"""

from __future__ import annotations

import itertools
import random
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from loadkit.redis_io.server import RedisServer, find_redis_binary
from loadkit.redis_io.urls import ENV_ALLOW_REMOTE, ENV_URL

_counter = itertools.count()
# Each folder of tests is a kind, and a marker of the same name selects it
# (``pytest -m unit``, ``-m "not chaos"``).
_KINDS = ("unit", "integration", "chaos", "browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = Path(__file__).resolve().parent
    for item in items:
        try:
            kind = item.path.resolve().relative_to(tests).parts[0]
        except ValueError:
            continue
        if kind in _KINDS:
            item.add_marker(kind)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A plain synchronous client for inspecting state from outside the system under test."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def fleet_name(request: pytest.FixtureRequest) -> str:
    """A fleet name no other test (or earlier run against the same server) uses."""
    test = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"t{next(_counter)}_{test}_{secrets.token_hex(3)}"


@pytest.fixture(autouse=True)
def _no_ambient_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's LOADKIT_REDIS_URL / LOADKIT_ALLOW_REMOTE must not steer the tests."""
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.delenv(ENV_ALLOW_REMOTE, raising=False)


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


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A real 3-master Redis Cluster on loopback ports (same binary), as a
    ``redis+cluster://`` URL; shared by the swarm and fleet cluster tests."""
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
