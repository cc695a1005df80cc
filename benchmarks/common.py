"""Shared plumbing for the asv suite: each workload's scenario runs once per asv run.

A workload's load (thousands of agents, 100 swarms, 1000 sockets, megabytes parsed)
takes seconds to minutes; run in ``setup`` it would run again for every benchmark and
every repeat, and the figures of one class would come from different runs. So each
workload's base class (``FleetRun``, ``SwarmRun``, ...) defines one ``setup_cache`` that
runs the workload's own ``run(ctx)`` - the scenario ``loadkit run`` reports - and returns
its flat metrics; asv keys ``setup_cache`` by the file and line that define it, so every
class inheriting it shares that one run, and its ``track_`` methods (made by
:func:`loadkit.suite.track`) only read.

The scale comes from ``$LOADKIT_BENCH_SCALE`` (``quick`` unless set; ``loadkit bench
--scale`` sets it) and is every class's single parameter, so figures of different scales
are different series, never one series that jumps. Every scenario run appends one JSON
line to ``$LOADKIT_BENCH_LOG`` when that names a file: how ``loadkit bench`` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

from loadkit import workload
from loadkit.keyspace import new_run_id, purge_run
from loadkit.redis_server import redis_url
from loadkit.suite import HIGHER, LOWER, track

__all__ = ["HIGHER", "LOWER", "WorkloadRun", "bench_scale", "run_workload", "track"]

SCALE_ENV = "LOADKIT_BENCH_SCALE"
LOG_ENV = "LOADKIT_BENCH_LOG"


def bench_scale() -> str:
    """The scale every workload runs at in this asv run."""
    scale = os.environ.get(SCALE_ENV, "quick")
    if scale not in workload.SCALES:
        raise ValueError(f"${SCALE_ENV}={scale!r} is not one of {', '.join(workload.SCALES)}")
    return scale


def run_workload(name: str) -> dict[str, float]:
    """Run one workload's scenario at the bench scale, as ``loadkit run`` would; its
    flat metrics. A workload that writes to Redis gets a private server (or
    ``$LOADKIT_REDIS_URL``) and its keys are deleted afterwards, however it ended."""
    scale = bench_scale()
    module = workload.load(name)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_url()) if name in workload.USES_REDIS else ""
        run_id = new_run_id()
        if url:
            stack.callback(purge_run, url, run_id)
        ctx = workload.RunContext(url, scale, run_id=run_id)
        output = asyncio.run(module.run(ctx))
    _log(name, scale, time.monotonic() - started)
    return output.metrics


def _log(name: str, scale: str, seconds: float) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = json.dumps({"workload": name, "scale": scale, "seconds": round(seconds, 3)})
    with open(path, "a", encoding="utf-8") as log:
        log.write(line + "\n")


class WorkloadRun:
    """asv settings of a class whose figures come from its workload's one run.

    Subclasses set ``workload`` and define ``setup_cache`` returning
    ``run_workload(self.workload)`` (in their own file, so each workload has its own
    cache); the ``track_`` methods read it once each, in one process each."""

    workload: str = ""
    params = [[bench_scale()]]
    param_names = ["scale"]
    number = 1
    repeat = 1
    rounds = 1
    warmup_time = 0
    # The whole scenario runs under this limit (a busy 2-core machine takes up to 3x
    # its quiet time); a track_ reads a dict.
    timeout = 900
