"""Deleting a run's keys from the parent, after its worker has ended however it ended.

A worker deletes its run's keys in its last ``finally``, but a worker that was killed
(a ``--timeout``, a SIGKILL, an out-of-memory kill) never gets there, and one whose Redis
was paused gives up on it after a short wait. The parent knows the run id, so it deletes
the run's keys itself: first it waits until nothing of the worker's process group is
left (a swarm's coordinator and producer processes may still be writing as they wind
down; anything left after the wait is killed), then it purges by the run's prefixes,
waiting for a paused Redis to come back for a bounded time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil

from loadkit.keyspace import purge_run

GROUP_WAIT_S = 10.0
PURGE_BUDGET_S = 10.0


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    members = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def wait_group_gone(pgid: int, timeout_s: float = GROUP_WAIT_S) -> None:
    """Wait until process group ``pgid`` has no live process; SIGKILL what is left after
    ``timeout_s`` (the group is the worker's own session: nothing else is in it)."""
    deadline = time.monotonic() + timeout_s
    while members := group_members(pgid):
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            psutil.wait_procs(members, timeout=2)
            return
        time.sleep(0.05)


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
    """Delete run ``run_id``'s keys once its worker's process group is gone (see
    :func:`clean_run`)."""
    wait_group_gone(pgid)
    return clean_run(url, run_id, budget_s)
