"""A workload's scenario as the asv suite runs it: once per asv run, at one scale.

``benchmarks/common.py`` calls :func:`run_workload` from each workload's
``setup_cache``; ``loadkit bench`` chooses the scale through ``$LOADKIT_BENCH_SCALE``
and counts the runs through ``$LOADKIT_BENCH_LOG`` (one JSON line per scenario run),
so "each load runs once" is a number it prints, not a hope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from pathlib import Path

from loadkit.redis_io.keyspace import new_run_id, purge_run
from loadkit.redis_io.server import redis_url
from loadkit.runs import workload

SCALE_ENV = "LOADKIT_BENCH_SCALE"
LOG_ENV = "LOADKIT_BENCH_LOG"
DEFAULT_SCALE = "quick"


def bench_scale() -> str:
    """The scale every workload runs at in this asv run."""
    scale = os.environ.get(SCALE_ENV, DEFAULT_SCALE)
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


def count_runs(path: Path) -> Counter[str]:
    """Scenario runs per workload in a log :func:`run_workload` appended to."""
    runs: Counter[str] = Counter()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return runs
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("workload"), str):
            runs[entry["workload"]] += 1
    return runs
