"""Running one function over many inputs in forked processes, or in this one.

Reading a thousand asv files, analysing a thousand series and running the calibration
cells are each many independent pieces of pure Python work that hold the interpreter
lock, so only processes help. Forking (Linux) starts them without re-importing
anything. Every caller wants the same things: the results in input order whatever
order they finish in, progress as each piece ends, the other pieces cancelled when one
fails, and the same outcome in this process when no process can be had (a sandbox, a
container's limits), so the choice of workers never changes a result.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def worker_count(items: int, parallel_from: int, at_most: int | None = None) -> int:
    """How many processes ``items`` pieces deserve: one below ``parallel_from`` (forking
    costs more than it saves) or where fork is not at hand, else the usable cores
    (at most ``at_most``)."""
    if items < parallel_from or sys.platform != "linux":
        return 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores, at_most) if at_most is not None else cores)


def map_in_processes(
    function: Callable[[In], Out],
    items: Sequence[In],
    workers: int,
    on_done: Callable[[int], None] | None = None,
) -> list[Out]:
    """``[function(item) for item in items]``, in ``workers`` forked processes when more
    than one; ``on_done(index)`` is called as each piece ends. Falls back to this
    process when no process can be started."""
    if workers > 1 and len(items) > 1:
        try:
            return _forked(function, items, workers, on_done)
        except (OSError, BrokenProcessPool):
            pass  # no processes to be had here: do it in this one
    results = []
    for index, item in enumerate(items):
        results.append(function(item))
        if on_done is not None:
            on_done(index)
    return results


def _forked(
    function: Callable[[In], Out],
    items: Sequence[In],
    workers: int,
    on_done: Callable[[int], None] | None,
) -> list[Out]:
    context = multiprocessing.get_context("fork")
    done: dict[int, Out] = {}
    with ProcessPoolExecutor(min(workers, len(items)), mp_context=context) as pool:
        pending: dict[Future[Out], int] = {
            pool.submit(function, item): index for index, item in enumerate(items)
        }
        try:
            for future in as_completed(pending):
                index = pending[future]
                done[index] = future.result()
                if on_done is not None:
                    on_done(index)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [done[index] for index in range(len(items))]


# map(function, items, on_each) -> results in input order
Mapper = Callable[[Callable[[In], Out], Sequence[In], Callable[[], None] | None], list[Out]]


def process_mapper(
    parallel_from: int, at_most: int | None = None, workers: int | None = None
) -> Mapper[In, Out]:
    """A ``map(function, items, on_each)`` for pure code that takes it as a parameter
    (the scoring): forked processes as :func:`worker_count` allows (or exactly
    ``workers``), results in input order, ``on_each()`` after each piece."""

    def run(
        function: Callable[[In], Out],
        items: Sequence[In],
        on_each: Callable[[], None] | None = None,
    ) -> list[Out]:
        count = worker_count(len(items), parallel_from, at_most) if workers is None else workers
        done = None if on_each is None else (lambda _index: on_each())
        return map_in_processes(function, items, count, done)

    return run
