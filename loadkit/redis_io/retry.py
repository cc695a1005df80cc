"""The one policy for Redis errors: what is retried, on which connection, for how long,
and when Redis counts as lost.

Connections drop while Redis is perfectly alive - an idle ``timeout``, a proxy restart,
``CLIENT KILL``, a cluster primary failing over. loadkit treats that as routine:

* **Transient errors** (:data:`TRANSIENT`): a dropped, reset or refused connection, a
  timeout, a server still loading its data, a cluster that is re-routing (CLUSTERDOWN,
  TRYAGAIN, a slot-map refresh that reached no node). Anything else - a script error,
  a wrong type - is a bug and is raised at once.
* **Fresh connection**: redis-py drops a connection that failed; the retry takes another
  one from the pool, which connects anew. A standalone client re-sends nothing by
  itself (:func:`client_retry`), so every retry goes through this module and is
  counted; a cluster client retries a command a few times inside redis-py (refreshing
  its slot map and following ``MOVED``/``ASK``), counted the same way.
* **Only what is safe to repeat**: a request whose reply was lost may have run.
  Everything loadkit retries is idempotent: reads; the fleet's scripts recognise a
  repeat (a submission carries a request token, a registration or a result already
  recorded is answered with the current state); the swarm's apply is a bitmap per
  producer, a stream entry added twice is applied once; fenced writes check their token
  inside the script, so a retried one is still refused if it went stale.
* **Bounded backoff**: the wait doubles from 10 ms up to a cap (:class:`Attempts`).
* **Lost**: only when no command has succeeded in this process - on any connection,
  old or new - for :data:`loadkit.redis_io.health.LOST_AFTER_S` (:data:`HEARD`); then the
  retry raises :class:`loadkit.common.errors.RedisLost`, noticed within 5 s of the last answer.
  On a cluster the window is :data:`CLUSTER_LOST_AFTER_S`: a primary that dies is only
  replaced once the others have given up on it (``cluster-node-timeout``, 15 s by
  default), and until then every request touching its slots fails.
* **Counted**: every retry after a transient error is a reconnect
  (:data:`RECONNECTS`); each workload reports its total as ``redis_reconnects``, so a
  noisy network is visible instead of silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff, ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import (
    ClusterDownError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from loadkit.redis_io.health import LOST_AFTER_S, Heard, Liveness

log = logging.getLogger("loadkit")
T = TypeVar("T")

# Errors after which the same request may succeed on a fresh connection.
TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # dropped, reset, refused; LOADING is one too
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    RedisClusterUnreachableError,  # a slot-map refresh that reached no node
    SlotNotCoveredError,  # a slot whose primary died, before its replica took over
    ConnectionError,
    OSError,
)
# The same, as only redis-py raises them (an OSError may come from anything).
REDIS_TRANSIENT: tuple[type[BaseException], ...] = TRANSIENT[:6]
# How often a cluster client re-sends a command itself (slot-map refresh, MOVED/ASK).
CLUSTER_RETRIES = 3
# A cluster's failover takes its node timeout (15 s by default) plus an election.
CLUSTER_LOST_AFTER_S = 20.0


class Window:
    """How long Redis may be silent in this process before it is lost: widened once
    this process talks to a cluster (:func:`expect_failovers`)."""

    def __init__(self) -> None:
        self.lost_after_s = LOST_AFTER_S


WINDOW = Window()


def expect_failovers() -> None:
    """This process talks to a Redis Cluster: give a failover time to happen."""
    WINDOW.lost_after_s = max(WINDOW.lost_after_s, CLUSTER_LOST_AFTER_S)


class Reconnects:
    """How many times this process retried a Redis request after a transient error."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, n: int = 1) -> None:
        self.count += n


RECONNECTS = Reconnects()
HEARD = Heard()


class CountingBackoff(AbstractBackoff):
    """redis-py's jittered exponential backoff, counting each retry it times as a
    reconnect: the retries a cluster client makes inside redis-py are counted too."""

    def __init__(self, cap: float = 0.25, base: float = 0.01) -> None:
        self._inner = ExponentialWithJitterBackoff(cap=cap, base=base)

    def reset(self) -> None:
        self._inner.reset()

    def compute(self, failures: int) -> float:
        RECONNECTS.add()
        return self._inner.compute(failures)


def client_retry(cluster: bool) -> Retry:
    """The retry a client is built with: none for a standalone client (the caller's
    :func:`retried` or :class:`Attempts` decides what is safe to repeat), a few for a
    cluster client, whose slot-map refresh and redirects live inside redis-py."""
    if cluster:
        return Retry(CountingBackoff(), CLUSTER_RETRIES)
    return Retry(NoBackoff(), 0)


class Attempts:
    """One streak of attempts of a loop or a request: :meth:`ok` after an answer,
    :meth:`failed` after a transient error returns the seconds to wait before trying
    again on a fresh connection (and counts a reconnect), or raises
    :class:`loadkit.common.errors.RedisLost` once nobody in this process has heard from Redis
    for ``lost_after_s`` (by default the process's :data:`WINDOW`)."""

    def __init__(
        self, what: str, lost_after_s: float | None = None, max_backoff_s: float = 0.5
    ) -> None:
        self.what = what
        window = WINDOW.lost_after_s if lost_after_s is None else lost_after_s
        self.liveness = Liveness(what, window, max_backoff_s=max_backoff_s, heard=HEARD)

    def ok(self) -> None:
        self.liveness.ok()

    def failed(self, exc: BaseException) -> float:
        RECONNECTS.add()
        wait = self.liveness.failed(exc)
        log.info("%s: %s: %s; retrying in %.2f s", self.what, type(exc).__name__, exc, wait)
        return wait


def raise_if_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` when this task was asked to stop.

    On Python 3.11, ``asyncio.wait_for`` - which redis-py uses to send a command -
    swallows a cancellation that arrives as the command completes: the task goes on with
    its cancel request pending. A loop that retries or repeats for ever would then never
    stop, so every loop checks here before its next attempt."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def retried(
    what: str, request: Callable[[], Awaitable[T]], lost_after_s: float | None = None
) -> T:
    """``await request()``, retried on a fresh connection after each transient error
    until it answers or Redis is lost. ``request`` must be safe to repeat (a read or an
    idempotent script) and build its command anew on each call."""
    attempts = Attempts(what, lost_after_s)
    while True:
        raise_if_cancelled()
        try:
            result = await request()
        except TRANSIENT as exc:
            await asyncio.sleep(attempts.failed(exc))
            continue
        attempts.ok()
        return result
