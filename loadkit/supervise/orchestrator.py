"""Run workloads one after another, each in its own child process, with a deadline.

The parent starts (or checks) Redis once, then for each workload launches
``python -m loadkit.supervise.worker`` (the Redis URL in its environment, never on its command
line, since it may carry a password), follows its JSON progress lines on a rich progress bar,
and kills the whole child process group if it overruns its timeout. The outcome of
each child - metrics, an error, or a timeout - becomes one workload block of the report.
Every run has a run id chosen here before any child starts (it prefixes every key the
workloads write, :mod:`loadkit.redis_io.keyspace`), so once a child has ended - finished, failed,
timed out or killed, or the run was interrupted - the parent deletes the run's keys as
well (:func:`loadkit.redis_io.run_cleanup.clean_run`, which a process outliving the parent can
call with the same id). Each worker gets a temp folder named for this process
(``loadkit-run-<pid>-*``) that is also its ``$TMPDIR``, so what it and its children
create there (multiprocessing's ``pymp-*`` folders among them) goes with that folder;
its process group, folder and keys are registered with the command's guard process
(:mod:`loadkit.supervise.guard`) for as long as they exist, and the worker dies with this
process (:func:`loadkit.runtime.lifetime.die_with_parent`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from loadkit.common.redaction import redact_text, url_secrets
from loadkit.redis_io.keyspace import new_run_id
from loadkit.redis_io.run_cleanup import clean_up_run
from loadkit.redis_io.urls import ENV_URL
from loadkit.runs import workload
from loadkit.runs.run_report import workload_entry
from loadkit.runs.targets import Target
from loadkit.runtime import lifetime
from loadkit.runtime.child_messages import ERROR, OK, PROGRESS, from_json_line
from loadkit.supervise import guard

# Longest temp folder handed to a worker as its $TMPDIR: multiprocessing puts a Unix
# socket two levels below it, and a socket path has at most 107 bytes.
MAX_TMPDIR_LEN = 64


@dataclass
class ChildOutcome:
    status: str  # passed (finished; checks decide) | error | timeout
    duration_s: float
    metrics: dict[str, float] | None
    error: str | None
    artifacts: dict[str, str] = field(default_factory=dict)


def _reader(stream: Any, sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def run_child(
    name: str,
    scale: str,
    redis_url: str,
    timeout_s: float,
    on_progress: Any = None,
    artifacts_dir: Path | None = None,
    run_id: str | None = None,
) -> ChildOutcome:
    """Run one workload in a child process; never raises for the workload's own failures.
    Keys the workload writes start with ``run_id`` (a new one when not given) and are
    deleted once the child has ended, however it ended."""
    run_id = (run_id or new_run_id()) if name in workload.USES_REDIS else None
    spawned: list[int] = []
    run_dir = lifetime.make_temp_dir("run")
    watcher = guard.active()
    watcher.watch_dir(run_dir)
    try:
        try:
            outcome = _run_worker(
                name, scale, redis_url, timeout_s, on_progress, artifacts_dir, run_id, spawned,
                run_dir,
            )  # fmt: skip
        except BaseException:
            note = _end_worker(spawned, redis_url, run_id)
            if note is not None:
                print(f"loadkit: {note}", file=sys.stderr)
            raise
        note = _end_worker(spawned, redis_url, run_id)
        if note is not None:
            outcome.status = "error"
            outcome.error = f"{outcome.error}; {note}" if outcome.error else note
        return outcome
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        watcher.forget_dir(run_dir)


def _end_worker(spawned: list[int], redis_url: str, run_id: str | None) -> str | None:
    """Once the worker has ended (or is to be stopped): nothing of its process group
    is left, then none of its run's keys; returns a line for what may be left."""
    if not spawned:
        return None
    pgid = spawned[0]
    if run_id is not None:
        note = clean_up_run(pgid, redis_url, run_id)
    else:
        note = None if lifetime.stop_group(pgid) else f"process group {pgid} did not end"
    guard.active().forget_group(pgid)
    return note


def _run_worker(
    name: str,
    scale: str,
    redis_url: str,
    timeout_s: float,
    on_progress: Any,
    artifacts_dir: Path | None,
    run_id: str | None,
    spawned: list[int],
    run_dir: Path,
) -> ChildOutcome:
    out = run_dir / "result.json"
    cmd = [
        sys.executable,
        "-m",
        "loadkit.supervise.worker",
        name,
        "--scale",
        scale,
        "--out",
        str(out),
    ]
    if artifacts_dir is not None:
        cmd += ["--artifacts", str(artifacts_dir)]
    if run_id is not None:
        cmd += ["--run-id", run_id]
    # The URL may hold a password: by environment (private to this user), never
    # in argv (which every local user can read in ps).
    env = lifetime.child_env({**os.environ, ENV_URL: redis_url})
    if len(str(run_dir)) <= MAX_TMPDIR_LEN:
        env["TMPDIR"] = str(run_dir)  # its temp files (pymp-*) go with the folder
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: a timeout kills all of it
    )
    spawned.append(proc.pid)  # the worker's pid, and its process group's id
    guard.active().watch_group(proc.pid)
    lines: queue.Queue[str | None] = queue.Queue()
    stderr_tail: deque[str] = deque(maxlen=40)
    threads = [
        threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True),
        threading.Thread(target=lambda: stderr_tail.extend(proc.stderr or ()), daemon=True),
    ]
    for t in threads:
        t.start()
    timed_out = False
    try:
        while proc.poll() is None:
            if time.monotonic() - start > timeout_s:
                timed_out = True
                lifetime.stop_group(proc.pid)
                break
            _drain(lines, on_progress, wait_s=0.1)
    except BaseException:  # Ctrl-C, or a signal turned into an exception
        lifetime.stop_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1)  # reaped: no zombie of ours left behind
        raise
    proc.wait()
    for t in threads:
        t.join(timeout=2)
    _drain(lines, on_progress, wait_s=0)
    duration = time.monotonic() - start
    if timed_out:
        return ChildOutcome("timeout", duration, None, f"no result within {timeout_s:g} s")
    try:
        message = from_json_line(out.read_text())
    except OSError:
        message = None
    if proc.returncode == 0 and message is not None and message.kind == OK:
        data = message.body
        return ChildOutcome("passed", duration, data["metrics"], None, data.get("artifacts") or {})
    error = message.body if message is not None and message.kind == ERROR else None
    error = error or _last_line(stderr_tail) or f"exit code {proc.returncode}"
    return ChildOutcome("error", duration, None, redact_text(error, url_secrets(redis_url)))


def _last_line(tail: deque[str]) -> str | None:
    for line in reversed(tail):
        if line.strip():
            return line.strip()
    return None


def _drain(lines: queue.Queue[str | None], on_progress: Any, wait_s: float) -> None:
    try:
        item = lines.get(timeout=wait_s) if wait_s else lines.get_nowait()
    except queue.Empty:
        return
    while item is not None:
        event = from_json_line(item)
        if on_progress is not None and event is not None and event.kind == PROGRESS:
            on_progress(str(event.body["phase"]), float(event.body.get("fraction", 0.0)))
        try:
            item = lines.get_nowait()
        except queue.Empty:
            return


def run_workloads(
    names: list[str],
    scale: str,
    redis_url: str,
    timeout_s: float,
    console: Console | None = None,
    artifacts_dir: Path | None = None,
    run_id: str | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[Target]]]:
    """Run each workload; returns report blocks and the targets used, by workload.
    Plots go to ``artifacts_dir``; blocks name them relative to its parent folder. Every
    workload's keys start with ``run_id`` (one for the whole run, new when not given)."""
    run_id = run_id or new_run_id()
    console = console or Console(stderr=True)
    entries: dict[str, dict[str, Any]] = {}
    all_targets: dict[str, list[Target]] = {}
    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[phase]:<10}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        ids = {n: progress.add_task(n, total=1.0, phase="waiting", start=False) for n in names}
        for name in names:
            module = workload.load(name)
            targets = module.targets(scale)
            all_targets[name] = targets
            task_id = ids[name]

            def update(phase: str, fraction: float, task_id: Any = task_id) -> None:
                progress.update(task_id, completed=fraction, phase=phase)

            progress.start_task(task_id)  # elapsed time counts from here
            update("starting", 0.0)
            outcome = run_child(name, scale, redis_url, timeout_s, update, artifacts_dir, run_id)
            progress.update(task_id, completed=1.0, phase=outcome.status)
            progress.stop_task(task_id)
            found = module.bottlenecks(outcome.metrics) if outcome.metrics else []
            entries[name] = workload_entry(
                status=outcome.status,
                duration_s=outcome.duration_s,
                metrics=outcome.metrics,
                targets=targets,
                bottlenecks=found,
                error=outcome.error,
                artifacts={
                    label: f"{artifacts_dir.name}/{filename}"
                    for label, filename in outcome.artifacts.items()
                    if artifacts_dir is not None
                },
            )
    return entries, all_targets
