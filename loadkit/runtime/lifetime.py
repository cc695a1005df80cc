"""Process lifetime: nothing a loadkit command starts outlives it.

A loadkit command starts processes (workers in their own process groups, a
multiprocessing forkserver and resource tracker, swarm processes, an embedded
``redis-server``) and temp folders. Three things make sure they go when it goes:

* the stop signals (SIGINT, SIGTERM, SIGHUP - what Ctrl-C, ``timeout``, CI
  cancellation, systemd and a closed terminal send) unwind the command like an error, so
  its ``finally`` blocks stop children, delete keys and remove folders, and it exits
  ``128 + n`` (130, 143, 129): :func:`stop_on_signals`;
* every child asks Linux to signal it when its parent dies (``PR_SET_PDEATHSIG``), so
  a parent that is SIGKILLed takes its direct children with it:
  :func:`die_with_parent`;
* a SIGKILLed parent runs no ``finally`` at all, so a guard process watches it and
  cleans up after it (:mod:`loadkit.supervise.guard`); temp folders carry their owner's pid so a
  later command sweeps those whose owner is dead (:func:`sweep_temp_dirs`).

Stopping a process group is done one way everywhere: :func:`stop_group`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import psutil

from loadkit.common.errors import Interrupted

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How long a process group gets between SIGTERM and SIGKILL: enough for a worker to
# delete its run's keys and for the resource tracker to unlink what it tracks.
GROUP_GRACE_S = 3.0
# After SIGKILL the kernel needs a moment; bounded so a stuck (D-state) process
# cannot hang the caller.
KILLED_WAIT_S = 5.0
# Set by the process that starts a child, read by the child to close the race between
# its start and PR_SET_PDEATHSIG (the parent may already be gone by then).
ENV_PARENT = "LOADKIT_PARENT_PID"
TEMP_DIR_KINDS: tuple[str, ...] = ("run", "redis")
_TEMP_DIR = re.compile(r"^loadkit-(?:run|redis)-(\d+)-")
_PR_SET_PDEATHSIG = 1


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by signal ``signum``."""
    return 128 + int(signum)


# -- stop signals ----------------------------------------------------------------------


@contextlib.contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Turn the stop signals into :class:`loadkit.common.errors.Interrupted` while the block
    runs (main thread only; elsewhere a no-op). Only the first signal raises: a second
    SIGTERM must not cut short the clean-up the first one started (SIGKILL still can,
    and the guard process covers that)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class StopSignals:
    """The stop signals as an asyncio program sees them: an event to wait on, set by the
    first SIGINT, SIGTERM or SIGHUP, and the exit code that signal calls for. For
    programs that stop in order from their event loop rather than by an exception."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signal: int | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> StopSignals:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._seen, sig)
        return self

    def _seen(self, sig: int) -> None:
        if self.signal is None:
            self.signal = sig
        self.event.set()

    @property
    def exit_code(self) -> int:
        """0 when no signal came, else 128 + n."""
        return exit_code(self.signal) if self.signal is not None else 0


# -- parent death ----------------------------------------------------------------------


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up before any fork (a child of a threaded parent must not
    load libraries between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def die_with_parent(expected_parent: int | None, sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (Linux only; a
    no-op elsewhere). Call it first thing in the child. The signal fires when the
    parent *thread* that started us exits, and a parent that died before the call is
    missed, so the parent is checked afterwards: if it is no longer
    ``expected_parent``, the signal is sent now."""
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), sig)


def die_with_parent_preexec(new_group: bool = False) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child dies with this process
    (and, with ``new_group``, leaves its process group so a Ctrl-C at the terminal
    reaches only its owner, which stops it in order)."""
    parent = os.getpid()

    def preexec() -> None:
        die_with_parent(parent)
        if new_group:
            os.setpgid(0, 0)

    return preexec


def die_with_parent_from_env() -> None:
    """:func:`die_with_parent` for a child whose starter put its pid in ``$LOADKIT_PARENT_PID``."""
    text = os.environ.pop(ENV_PARENT, "")
    die_with_parent(int(text) if text.isdigit() else os.getppid())


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a child that calls :func:`die_with_parent_from_env`."""
    return {**(os.environ if base is None else base), ENV_PARENT: str(os.getpid())}


# -- process groups --------------------------------------------------------------------


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


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_empty(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop_group(pgid: int, grace_s: float = GROUP_GRACE_S) -> bool:
    """Stop process group ``pgid``: SIGTERM, up to ``grace_s`` for it to empty, then
    SIGKILL and wait until no member is left (bounded). True when none is left. The
    group must be one loadkit made (a child's own session), so nothing else is in it."""
    if not group_members(pgid):
        return True
    _signal_group(pgid, signal.SIGTERM)
    if _wait_empty(pgid, grace_s):
        return True
    _signal_group(pgid, signal.SIGKILL)
    return _wait_empty(pgid, KILLED_WAIT_S)


def ended(proc: psutil.Process) -> bool:
    """True once ``proc`` has exited: gone, or a zombie waiting for whoever reaps
    orphans (which may take seconds; a zombie holds no resources)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_ended(proc: psutil.Process, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not ended(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop_process(proc: psutil.Process, grace_s: float = GROUP_GRACE_S) -> bool:
    """SIGTERM one process, SIGKILL it after ``grace_s``; True once it has ended. A
    process already gone, or a pid reused since ``proc`` was made, is left alone."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILLED_WAIT_S)):
        if ended(proc):
            return True
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
        if _wait_ended(proc, wait_s):
            return True
    return False


# -- temp folders ----------------------------------------------------------------------


def make_temp_dir(kind: str) -> Path:
    """A private temp folder ``loadkit-<kind>-<pid>-*``: the pid names its owner, so a
    later command can tell a folder whose owner died from one still in use."""
    if kind not in TEMP_DIR_KINDS:
        raise ValueError(f"unknown temp folder kind {kind!r}")
    return Path(tempfile.mkdtemp(prefix=f"loadkit-{kind}-{os.getpid()}-"))


def orphaned_temp_dirs(names: list[str], alive: Callable[[int], bool]) -> list[str]:
    """The loadkit temp folders among ``names`` whose owner pid is not ``alive``."""
    found = []
    for name in names:
        match = _TEMP_DIR.match(name)
        if match and not alive(int(match.group(1))):
            found.append(name)
    return found


def sweep_temp_dirs(root: Path | None = None) -> list[Path]:
    """Remove this user's loadkit temp folders whose owner process is dead (one killed
    before it could clean up, with no guard left to do it); returns what was removed."""
    root = Path(root or tempfile.gettempdir())
    try:
        names = os.listdir(root)
    except OSError:
        return []
    removed = []
    for name in orphaned_temp_dirs(names, psutil.pid_exists):
        path = root / name
        try:
            st = path.lstat()
        except OSError:
            continue
        if st.st_uid != os.getuid() or not path.is_dir() or path.is_symlink():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
