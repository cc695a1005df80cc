"""Small asyncio helpers shared by the long-running loops of every workload."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from loadkit.common.errors import RedisLost
from loadkit.redis_io.retry import TRANSIENT, Attempts, raise_if_cancelled


async def keep_running(
    label: str,
    step: Callable[[], Awaitable[None]],
    running: Callable[[], bool] = lambda: True,
    on_retry: Callable[[BaseException], None] | None = None,
    lost_after_s: float | None = None,
) -> None:
    """Call ``step`` repeatedly while ``running()``. A transient Redis error is retried on
    a fresh connection with bounded backoff (:mod:`loadkit.redis_io.retry`), so a killed
    connection or a restarted server pauses a loop instead of ending it; once nobody in
    this process has heard from Redis for ``lost_after_s`` (the policy's window by
    default), the loop ends with :class:`RedisLost` (see :func:`first_failure`). ``step``
    must be safe to repeat. Cancellation ends the loop, even one a library swallowed;
    any other exception is a bug and propagates."""
    attempts = Attempts(label, lost_after_s)
    while running():
        raise_if_cancelled()
        try:
            await step()
            attempts.ok()
        except TRANSIENT as exc:
            if on_retry is not None:
                on_retry(exc)
            await asyncio.sleep(attempts.failed(exc))


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
