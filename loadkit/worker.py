"""Child-process entry point: run one workload and hand its metrics to the parent.

``loadkit run`` starts one of these per workload (like asv runs each benchmark in a
fresh process): a crash, a hang or a leak in one workload cannot take the others down,
a timeout can kill it outright, and RSS figures start from a clean interpreter.
Progress goes to stdout as JSON lines; the result goes to the ``--out`` file. The Redis
URL comes in ``$LOADKIT_REDIS_URL``, not on the command line: it may carry a password,
and any local user can read a command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from pathlib import Path

from loadkit import workload
from loadkit.redaction import redact_text, url_secrets
from loadkit.redis_server import ENV_URL


def _progress_printer(min_interval_s: float = 0.1):
    last = {"phase": None, "t": 0.0}

    def emit(phase: str, fraction: float) -> None:
        now = time.monotonic()
        if phase == last["phase"] and now - last["t"] < min_interval_s:
            return
        last.update(phase=phase, t=now)
        print(json.dumps({"phase": phase, "fraction": round(fraction, 4)}), flush=True)

    return emit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadkit.worker")
    parser.add_argument("workload", choices=sorted(workload.WORKLOADS))
    parser.add_argument("--scale", default="quick", choices=workload.SCALES)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--artifacts", type=Path, help="folder for plots")
    args = parser.parse_args(argv)
    # Taken out of the environment so that no process this one starts inherits it.
    redis_url = os.environ.pop(ENV_URL, "")
    if not redis_url:
        parser.error(f"${ENV_URL} must name the Redis to use")
    module = workload.load(args.workload)
    ctx = workload.RunContext(redis_url, args.scale, _progress_printer(), args.artifacts)
    try:
        output = asyncio.run(module.run(ctx))
    except Exception as exc:  # reported to the parent as this workload's error
        secrets = url_secrets(redis_url)
        print(redact_text(traceback.format_exc(), secrets), file=sys.stderr, end="")
        error = redact_text(f"{type(exc).__name__}: {exc}", secrets)
        args.out.write_text(json.dumps({"error": error}))
        return 1
    result = {"metrics": output.metrics, "notes": output.notes, "artifacts": output.artifacts}
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
