"""A guard process that cleans up after a loadkit command killed with SIGKILL.

A SIGKILLed process runs no ``finally``: its worker's process group, the run's keys on
Redis, the embedded ``redis-server`` and the temp folders would stay. So ``loadkit run``,
``loadkit dashboard`` and ``loadkit redis`` start this small process first. It reads
one JSON line per change on its stdin - a pipe whose write end only the command holds -
telling it what to clean up (process groups, a run's keys, servers, folders) and what
is no longer there. When the command ends in order it says ``release`` and the guard
exits doing nothing; when the pipe reaches end-of-file without that, the command is
gone (however it died), and the guard stops the groups, deletes the keys, stops the
servers and removes the folders, then exits.

The guard is in its own session (a Ctrl-C at the terminal, or a signal to the
command's process group, does not reach it) and ignores the stop signals: it ends when
its pipe does. The Redis URL travels through the pipe, never on a command line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

# Imported at start, so the clean-up code is loaded before the owner can die.
from loadkit.redis_io.run_cleanup import clean_run
from loadkit.redis_io.urls import ENV_URL
from loadkit.runtime import lifetime, ownership
from loadkit.runtime.child_messages import from_json_line, to_json_line

# How long the guard waits for a paused Redis to delete a dead command's keys.
PURGE_BUDGET_S = 5.0
RELEASE_WAIT_S = 5.0
# What the command tells its guard, one message a line (see loadkit.runtime.child_messages).
WATCH, FORGET, RELEASE = "watch", "forget", "release"


class Guard:
    """The command's end of the pipe. Every method is best effort: a guard that
    could not start, or died, costs the command nothing but its protection."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe: IO[str] | None = None

    def start(self) -> Guard:
        read_end, write_end = os.pipe()  # both close-on-exec: no other child inherits them
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "loadkit.supervise.guard", str(os.getpid())],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
                # The URL (and its password) is sent through the pipe if at all.
                env={k: v for k, v in os.environ.items() if k != ENV_URL},
            )
        except OSError:
            os.close(write_end)
            return self
        finally:
            os.close(read_end)
        self._pipe = os.fdopen(write_end, "w", buffering=1)
        return self

    def _send(self, kind: str, **body: Any) -> None:
        if self._pipe is None:
            return
        try:
            self._pipe.write(to_json_line(kind, body) + "\n")
        except (OSError, ValueError):  # the guard is gone: nothing to tell
            self._pipe = None

    def watch_group(self, pgid: int) -> None:
        self._send(WATCH, group=pgid)

    def forget_group(self, pgid: int) -> None:
        self._send(FORGET, group=pgid)

    def watch_dir(self, path: Path) -> None:
        self._send(WATCH, dir=str(path))

    def forget_dir(self, path: Path) -> None:
        self._send(FORGET, dir=str(path))

    def watch_server(self, pid: int) -> None:
        self._send(WATCH, server=pid)

    def forget_server(self, pid: int) -> None:
        self._send(FORGET, server=pid)

    def watch_run(self, url: str, run_id: str) -> None:
        """Delete run ``run_id``'s keys on ``url`` if the command dies."""
        self._send(WATCH, run=run_id, url=url)

    def forget_run(self, run_id: str) -> None:
        self._send(FORGET, run=run_id)

    def release(self) -> None:
        """The command ended in order: the guard exits without touching anything."""
        self._send(RELEASE)
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                self._pipe.close()
            self._pipe = None
        if self._proc is not None:
            try:
                self._proc.wait(RELEASE_WAIT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


_active: Guard | None = None


def active() -> Guard:
    """The guard of this command, or one that does nothing when none was started (a
    library caller, a test calling a function directly)."""
    return _active if _active is not None else Guard()


@contextlib.contextmanager
def guarded() -> Iterator[Guard]:
    """Start the guard for the block; released when the block ends however it ends
    (an exception or a stop signal unwinds through the block's own clean-up first)."""
    global _active
    lifetime.sweep_temp_dirs()
    if _active is not None:  # nested (``loadkit bench`` runs ``loadkit run`` in process)
        yield _active
        return
    guard = Guard().start()
    _active = guard
    ownership.set_watcher(guard)
    try:
        yield guard
    finally:
        _active = None
        ownership.set_watcher(None)
        guard.release()


# -- the guard process -----------------------------------------------------------------


@dataclass
class Watched:
    """What the guard would clean up if its command died now."""

    groups: set[int] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    servers: dict[int, psutil.Process] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # run id -> Redis URL
    released: bool = False

    def apply(self, line: str) -> None:
        """Take one line from the command (stray or malformed lines change nothing)."""
        parsed = from_json_line(line)
        if parsed is None or not isinstance(parsed.body, dict):
            return
        if parsed.kind == RELEASE:
            self.released = True
            return
        add = parsed.kind == WATCH
        message = parsed.body
        if "group" in message:
            _toggle(self.groups, int(message["group"]), add)
        if "dir" in message:
            _toggle(self.dirs, str(message["dir"]), add)
        if "server" in message:
            pid = int(message["server"])
            if not add:
                self.servers.pop(pid, None)
            else:
                # Taken now: psutil remembers the start time, so a pid reused later
                # by another process is never signalled.
                with contextlib.suppress(psutil.Error):
                    self.servers[pid] = psutil.Process(pid)
        if "run" in message:
            if add:
                self.runs[str(message["run"])] = str(message["url"])
            else:
                self.runs.pop(str(message["run"]), None)

    def empty(self) -> bool:
        return not (self.groups or self.dirs or self.servers or self.runs)


def _toggle(items: set[Any], item: Any, add: bool) -> None:
    if add:
        items.add(item)
    else:
        items.discard(item)


def clean_up(watched: Watched) -> list[str]:
    """Everything a dead command left: its process groups first (so nothing writes
    any more), then its keys, its servers, its folders. Returns lines for what may be
    left."""
    notes = []
    for pgid in sorted(watched.groups):
        if not lifetime.stop_group(pgid):
            notes.append(f"process group {pgid} did not end")
    for run_id, url in watched.runs.items():
        note = clean_run(url, run_id, budget_s=PURGE_BUDGET_S)
        if note is not None:
            notes.append(note)
    for proc in watched.servers.values():
        lifetime.stop_process(proc)
    for path in sorted(watched.dirs):
        shutil.rmtree(path, ignore_errors=True)
    return notes


def main(argv: list[str]) -> int:
    for sig in lifetime.STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    owner = argv[0] if argv else "?"
    watched = Watched()
    for line in sys.stdin:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            watched.apply(line)
        if watched.released:
            return 0
    if watched.empty():
        return 0
    for note in clean_up(watched):
        with contextlib.suppress(OSError):
            print(f"loadkit guard of {owner}: {note}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
