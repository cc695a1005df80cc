"""Small asyncio helpers shared by the long-running loops of every workload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("loadkit")


async def keep_running(
    label: str,
    step: Callable[[], Awaitable[None]],
    running: Callable[[], bool] = lambda: True,
    on_retry: Callable[[BaseException], None] | None = None,
    max_backoff_s: float = 1.0,
) -> None:
    """Call ``step`` repeatedly while ``running()``; a lost Redis connection is logged and
    retried with exponential backoff (redis-py reconnects on the next command), so a
    killed connection or a restarted server pauses a loop instead of ending it silently.
    Cancellation ends the loop; any other exception is a bug and propagates."""
    backoff = 0.05
    while running():
        try:
            await step()
            backoff = 0.05
        except (RedisConnectionError, RedisTimeoutError, ConnectionError) as exc:
            if on_retry is not None:
                on_retry(exc)
            log.warning("%s: %s; retrying in %.2f s", label, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel background tasks and wait until each has finished unwinding, so a stop
    returns only once no loop of ours still touches its connections."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
