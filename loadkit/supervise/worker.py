"""Child-process entry point: run one workload and hand its metrics to the parent.

``loadkit run`` starts one of these per workload (like asv runs each benchmark in a
fresh process): a crash, a hang or a leak in one workload cannot take the others down,
a timeout can kill it outright, and RSS figures start from a clean interpreter.
Progress goes to stdout as JSON lines; the result goes to the ``--out`` file. The Redis
URL comes in ``$LOADKIT_REDIS_URL``, not on the command line: it may carry a password,
and any local user can read a command line. Whatever happens, the worker's last act is
deleting its run's keys (``--run-id``) from Redis; the parent does the same after a
worker it had to kill. A stop signal (SIGTERM, SIGINT, SIGHUP - from the parent
stopping the run, or from Linux when the parent died:
:func:`loadkit.runtime.lifetime.die_with_parent`)
means nobody wants the results: the worker deletes the keys and exits ``128 + n`` at
once, without the orderly wind-down of the workload, which can take seconds; its
process group (forkserver, resource tracker, swarm processes) is stopped by whoever
stopped it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from loadkit.common.errors import RedisLost
from loadkit.common.redaction import redact_text, url_secrets
from loadkit.redis_io.health import address
from loadkit.redis_io.keyspace import new_run_id, purge_run
from loadkit.redis_io.retry import REDIS_TRANSIENT
from loadkit.redis_io.run_cleanup import clean_run
from loadkit.redis_io.urls import ENV_URL
from loadkit.runs import workload
from loadkit.runtime import lifetime
from loadkit.runtime.child_messages import ERROR, OK, PROGRESS, to_json_line

# How long the worker's own clean-up waits for Redis: a healthy server answers at once;
# after a failure the parent, which outlives the worker, retries for longer.
PURGE_AFTER_SUCCESS_S = 10.0
PURGE_AFTER_FAILURE_S = 0.0


def _progress_printer(min_interval_s: float = 0.1):
    last = {"phase": None, "t": 0.0}

    def emit(phase: str, fraction: float) -> None:
        now = time.monotonic()
        if phase == last["phase"] and now - last["t"] < min_interval_s:
            return
        last.update(phase=phase, t=now)
        print(to_json_line(PROGRESS, {"phase": phase, "fraction": round(fraction, 4)}), flush=True)

    return emit


def _stop_now(redis_url: str, run_id: str | None) -> None:
    """Install the stop-signal handler: delete the run's keys (one pass, no waiting for
    a Redis that does not answer - the parent, or its guard, retries) and exit at once."""

    def handler(signum: int, frame: object) -> None:
        for sig in lifetime.STOP_SIGNALS:  # the first signal is the one that counts
            signal.signal(sig, signal.SIG_IGN)
        if run_id is not None:
            with contextlib.suppress(Exception):
                purge_run(redis_url, run_id, budget_s=PURGE_AFTER_FAILURE_S)
        os._exit(lifetime.exit_code(signum))

    for sig in lifetime.STOP_SIGNALS:
        signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadkit.supervise.worker")
    parser.add_argument("workload", choices=sorted(workload.WORKLOADS))
    parser.add_argument("--scale", default="quick", choices=workload.SCALES)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--artifacts", type=Path, help="folder for plots")
    parser.add_argument("--run-id", default=None, help="run id that prefixes every key")
    lifetime.die_with_parent_from_env()  # first: a parent may die at any moment
    args = parser.parse_args(argv)
    # Taken out of the environment so that no process this one starts inherits it.
    redis_url = os.environ.pop(ENV_URL, "")
    if not redis_url:
        parser.error(f"${ENV_URL} must name the Redis to use")
    module = workload.load(args.workload)
    run_id = args.run_id or new_run_id()
    _stop_now(redis_url, run_id if args.workload in workload.USES_REDIS else None)
    ctx = workload.RunContext(
        redis_url, args.scale, _progress_printer(), args.artifacts, run_id=run_id
    )
    ok = False
    lost = False  # Redis stopped answering: the parent, which outlives us, cleans up
    try:
        output = asyncio.run(module.run(ctx))
        ok = True
    except Exception as exc:  # reported to the parent as this workload's error
        secrets = url_secrets(redis_url)
        print(redact_text(traceback.format_exc(), secrets), file=sys.stderr, end="")
        lost = isinstance(exc, (*REDIS_TRANSIENT, RedisLost))
        error = redact_text(describe_error(exc, redis_url), secrets)
        args.out.write_text(to_json_line(ERROR, error))
        return 1
    finally:
        if args.workload in workload.USES_REDIS and not lost:
            budget = PURGE_AFTER_SUCCESS_S if ok else PURGE_AFTER_FAILURE_S
            note = clean_run(redis_url, run_id, budget_s=budget)
            if note is not None:
                print(note, file=sys.stderr)
    result = {"metrics": output.metrics, "notes": output.notes, "artifacts": output.artifacts}
    args.out.write_text(to_json_line(OK, result))
    return 0


def describe_error(exc: BaseException, url: str) -> str:
    """One line for the report: Redis failures say which server stopped answering."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
    if isinstance(exc, RedisLost):  # "lost Redis: no answer to <what> for <s> (<cause>)"
        detail = text.removeprefix("lost Redis: ")
        return f"RedisLost: Redis at {address(url)} stopped answering: {detail}"
    if isinstance(exc, REDIS_TRANSIENT):
        cause = f"{type(exc).__name__}: {text}"
        return f"RedisLost: Redis at {address(url)} stopped answering ({cause})"
    return f"{type(exc).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
