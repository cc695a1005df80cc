"""Shared plumbing for the asv suite.

asv runs each benchmark in a fresh process and calls methods synchronously, so every
benchmark that needs Redis gets a private embedded server (or ``$LOADKIT_REDIS_URL``)
and its own event loop here, created in ``setup`` and torn down in ``teardown``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from loadkit.redis_server import redis_url

T = TypeVar("T")


class RedisLoop:
    """A Redis URL plus an event loop to drive async code from synchronous benchmarks."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self.url = self._stack.enter_context(redis_url())
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
        finally:
            self._stack.close()


class ServerBenchmark:
    """asv settings for benchmarks whose setup starts a server: one call per sample, few
    samples, no warm-up loop (setup re-runs before every sample), a hard timeout."""

    number = 1
    repeat = (1, 5, 20.0)
    rounds = 2
    warmup_time = 0
    timeout = 180
