"""Shared fixtures: one real redis-server for the session, unique fleet names per test.

The server is started by :class:`loadkit.redis_io.server.RedisServer` (the same code the CLI
uses), so every test that touches Redis talks to a real ``redis-server`` over a real
loopback socket. Tests isolate themselves by fleet name (every fleet key carries the
``{fleet:<name>}`` prefix), not by flushing the server.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers import TestCluster, start_cluster

from loadkit.redis_io.retry import WINDOW
from loadkit.redis_io.server import RedisServer
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


@pytest.fixture(autouse=True)
def _redis_window() -> Iterator[None]:
    """A test that talked to a cluster in this process widened the window in which
    Redis may be silent (:func:`loadkit.redis_io.retry.expect_failovers`): the next test
    starts with the usual one."""
    before = WINDOW.lost_after_s
    yield
    WINDOW.lost_after_s = before


@pytest.fixture(scope="session")
def cluster() -> Iterator[TestCluster]:
    """A real Redis Cluster on loopback ports (same binary): 3 primaries with one replica
    each; shared by the swarm and fleet cluster tests, which must leave it as they
    found it (tests that fail a node over start their own with :func:`start_cluster`)."""
    cl = start_cluster()
    try:
        yield cl
    finally:
        cl.stop()


@pytest.fixture(scope="session")
def cluster_url(cluster: TestCluster) -> str:
    """The shared cluster as a ``redis+cluster://`` URL."""
    return cluster.url


@pytest.fixture(scope="session")
def asv_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The asv site's scripts from npm, fetched once for the session as ``loadkit
    report --asv-offline`` fetches them (a cache already filled through
    ``$LOADKIT_ASV_ASSETS`` is used as it is)."""
    from loadkit.history.present.asv_offline import assets_cache, cached, fetch_assets

    cache = assets_cache() if os.environ.get("LOADKIT_ASV_ASSETS") else None
    if cache is not None and cached(cache):
        return cache
    cache = tmp_path_factory.mktemp("asv-www")
    failure = fetch_assets(cache)
    if failure:
        pytest.skip(f"asv's scripts could not be fetched: {failure}")
    return cache
