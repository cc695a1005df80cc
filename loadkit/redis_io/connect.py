"""Connecting to a Redis given by URL: checking that it answers, and the asyncio client.

The one place that decides which client class a URL gets (a cluster client for
``redis+cluster://``, a blocking pool otherwise) and with which timeouts, so a server
that stops answering is an error within seconds everywhere.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster

from loadkit.common.errors import UsageError
from loadkit.common.redaction import redact_text, redact_url, url_secrets
from loadkit.redis_io.health import CLIENT_OPTIONS
from loadkit.redis_io.retry import client_retry, expect_failovers
from loadkit.redis_io.urls import (
    CLUSTER_SCHEME,
    ENV_ALLOW_REMOTE,
    is_cluster_url,
    is_loopback_url,
    node_url,
)


def check_url(url: str, timeout_s: float = 2.0) -> None:
    """Raise UsageError unless a Redis server answers PING at ``url``.

    Non-loopback servers are refused unless ``LOADKIT_ALLOW_REMOTE=1``: loadkit generates
    load, and pointing it at a shared server by accident should take a deliberate step.
    Messages show the URL with its password hidden (:func:`loadkit.common.redaction.redact_url`).
    """
    shown = redact_url(url)
    if not url.startswith(("redis://", "rediss://", "unix://", CLUSTER_SCHEME + "://")):
        raise UsageError(
            f"not a Redis URL: {shown!r} (expected redis://host:port/db or "
            f"{CLUSTER_SCHEME}://host:port)"
        )
    try:
        loopback = is_loopback_url(url)
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
        raise UsageError(f"bad Redis URL {shown!r}: {_quiet(exc, url)}") from None
    if not loopback and os.environ.get(ENV_ALLOW_REMOTE) != "1":
        raise UsageError(
            f"refusing non-loopback Redis {shown}: set {ENV_ALLOW_REMOTE}=1 to load a remote server"
        )
    try:
        client = redis.Redis.from_url(
            node_url(url), socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
    except ValueError as exc:
        raise UsageError(f"bad Redis URL {shown!r}: {_quiet(exc, url)}") from None
    try:
        client.ping()
        if is_cluster_url(url):
            _check_cluster(client, url)
    except redis.RedisError as exc:
        raise UsageError(f"Redis at {shown} does not answer: {_quiet(exc, url)}") from None
    finally:
        client.close()


def _quiet(exc: BaseException, url: str) -> str:
    """A client library's message, with any credential of ``url`` taken out."""
    return redact_text(str(exc), url_secrets(url))


def _check_cluster(client: redis.Redis, url: str) -> None:
    shown = redact_url(url)
    try:
        info = client.execute_command("CLUSTER", "INFO")
    except redis.ResponseError as exc:
        raise UsageError(f"Redis at {shown} is not a cluster node: {_quiet(exc, url)}") from None
    text = info.decode() if isinstance(info, bytes) else str(info)
    if "cluster_state:ok" not in text:
        raise UsageError(f"Redis Cluster at {shown} is not ready (cluster_state is not ok)")


def connect_async(url: str, *, max_connections: int = 64, **kwargs: Any) -> Any:
    """An asyncio client for ``url``: a :class:`redis.asyncio.RedisCluster` for a
    ``redis+cluster://`` URL, else a :class:`redis.asyncio.Redis` on a blocking
    connection pool (a burst waits for a free connection instead of failing). Socket
    and connect timeouts and a health-check interval are set
    (:data:`loadkit.redis_io.health.CLIENT_OPTIONS`, overridable), so a server that stops
    answering is an error within seconds, never a read that waits forever."""

    cluster = is_cluster_url(url)
    kwargs = {**CLIENT_OPTIONS, "retry": client_retry(cluster), **kwargs}
    if cluster:
        expect_failovers()
        return RedisCluster.from_url(node_url(url), max_connections=max_connections, **kwargs)
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, **kwargs)
    # from_pool: the client owns the pool, so aclose() closes its sockets too (a client
    # built with connection_pool=... leaves them open: one leaked fd per connection).
    return AsyncRedis.from_pool(pool)
