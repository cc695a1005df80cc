"""Deleting a run's keys from the parent, after its worker has ended however it ended.

A worker deletes its run's keys in its last ``finally``, but a worker that was killed
(a ``--timeout``, a SIGKILL, an out-of-memory kill) never gets there, and one whose Redis
was paused gives up on it after a short wait. The parent knows the run id, so it deletes
the run's keys itself: first it stops what is left of the worker's process group (a
swarm's coordinator and producer processes may still be writing;
:func:`loadkit.runtime.lifetime.stop_group`), then it purges by the run's prefixes, waiting for
a paused Redis to come back for a bounded time. The guard process of a command that
was killed (:mod:`loadkit.supervise.guard`) does the same with the same functions.
"""

from __future__ import annotations

from loadkit.redis_io.keyspace import purge_run
from loadkit.runtime.lifetime import stop_group

PURGE_BUDGET_S = 10.0


def clean_run(redis_url: str, run_prefix: str, budget_s: float = PURGE_BUDGET_S) -> str | None:
    """Delete every key of the run whose id is ``run_prefix`` (and nothing else), waiting
    up to ``budget_s`` for a paused Redis; returns None when none is left, else one line
    saying what may be. Callable from any process that knows the run id - the parent
    after its worker, or whatever outlives a parent that was killed."""
    purged = purge_run(redis_url, run_prefix, budget_s=budget_s)
    if purged.error is None:
        return None
    return f"keys of run {run_prefix} may be left ({purged.error}); `loadkit clean` deletes them"


def clean_up_run(pgid: int, url: str, run_id: str, budget_s: float = PURGE_BUDGET_S) -> str | None:
    """Stop what is left of the worker's process group, then delete run ``run_id``'s
    keys (see :func:`clean_run`)."""
    stop_group(pgid)
    return clean_run(url, run_id, budget_s)
