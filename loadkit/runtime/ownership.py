"""What this process owns that must not outlive it, told to whoever watches over it.

Low layers create things a SIGKILL would leave behind (the embedded ``redis-server``
and its temp folder); only a command's guard process (:mod:`loadkit.supervise.guard`,
a layer above) can clean them up after such a death. So the low layers report here,
and the guard, when a command started one, is the watcher; otherwise nobody listens
(a library caller, a test calling a function directly) and reporting costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Watcher(Protocol):
    """Whoever cleans up after this process if it dies without doing so itself."""

    def watch_dir(self, path: Path) -> None: ...
    def forget_dir(self, path: Path) -> None: ...
    def watch_server(self, pid: int) -> None: ...
    def forget_server(self, pid: int) -> None: ...


class _Nobody:
    """The watcher when no guard runs: every report is dropped."""

    def watch_dir(self, path: Path) -> None:
        pass

    def forget_dir(self, path: Path) -> None:
        pass

    def watch_server(self, pid: int) -> None:
        pass

    def forget_server(self, pid: int) -> None:
        pass


_NOBODY = _Nobody()
_watcher: Watcher = _NOBODY


def watcher() -> Watcher:
    """The current watcher (the command's guard), or one that does nothing."""
    return _watcher


def set_watcher(new: Watcher | None) -> None:
    """Make ``new`` the watcher (``None``: nobody) from now on."""
    global _watcher
    _watcher = new if new is not None else _NOBODY
