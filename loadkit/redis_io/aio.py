"""Small asyncio helpers shared by the long-running loops of every workload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from loadkit.common.errors import RedisLost
from loadkit.redis_io.health import LOST_AFTER_S, UNREACHABLE, Liveness

log = logging.getLogger("loadkit")


async def keep_running(
    label: str,
    step: Callable[[], Awaitable[None]],
    running: Callable[[], bool] = lambda: True,
    on_retry: Callable[[BaseException], None] | None = None,
    lost_after_s: float = LOST_AFTER_S,
) -> None:
    """Call ``step`` repeatedly while ``running()``; a lost Redis connection is logged and
    retried with exponential backoff (redis-py reconnects on the next command), so a
    killed connection or a restarted server pauses a loop instead of ending it silently.
    Retries are bounded: once Redis has not answered for ``lost_after_s``, the loop ends
    with :class:`RedisLost` (see :func:`first_failure`). Cancellation ends the loop; any
    other exception is a bug and propagates."""
    liveness = Liveness(label, lost_after_s)
    while running():
        try:
            await step()
            liveness.ok()
        except UNREACHABLE as exc:
            if on_retry is not None:
                on_retry(exc)
            wait = liveness.failed(exc)
            log.warning("%s: %s; retrying in %.2f s", label, exc, wait)
            await asyncio.sleep(wait)


async def first_failure(tasks: Iterable[asyncio.Task[Any]]) -> BaseException:
    """Wait until one of ``tasks`` ends with an exception and return it (a loop that gave
    up on Redis); waits forever while they all run or end cleanly."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                return task.exception()  # type: ignore[return-value]
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel background tasks and wait until each has finished unwinding, so a stop
    returns only once no loop of ours still touches its connections. A loop that had
    already ended with :class:`RedisLost` was reported through :func:`first_failure`
    (or its owner's check) and is not raised again here."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, RedisLost):
            await task
