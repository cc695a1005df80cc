"""Every path a command reads or writes, checked before the command does any work.

A report that cannot be written is found out in the first second, not after minutes of
load (and a traceback that CI would read as a failed run): each command checks its
options here first and stops with one line (``UsageError``, exit 2) when a path cannot
work. What is checked:

- an output file: not a directory, not under ``/proc`` or ``/sys``, a regular file it
  may overwrite if it exists, and a folder it may create files in (the nearest one that
  exists, since reports create missing folders; reports are written beside the target
  and renamed over it);
- the ``--html`` folder of the history page: not the filesystem root (the page goes into
  the sibling ``<DIR>-loadkit``), and that sibling can be created or written;
- an input file or folder: exists, is of the right kind, can be read.

The rules are plain ``os`` queries (``os.access`` knows read-only mounts and immutable
files, which permission bits do not show); nothing is created or changed.
"""

from __future__ import annotations

import os
from pathlib import Path

from loadkit.common.errors import UsageError
from loadkit.common.site_paths import page_dir

# The kernel's own files: writing a report there fails or, worse, does something.
KERNEL_ROOTS = (Path("/proc"), Path("/sys"))


def _fail(option: str, path: str | os.PathLike[str], problem: str) -> UsageError:
    return UsageError(f"{option} {os.fspath(path)}: {problem}")


def _under_kernel_files(path: Path) -> Path | None:
    real = Path(os.path.realpath(path))
    for root in KERNEL_ROOTS:
        if real == root or root in real.parents:
            return root
    return None


def _read_only_reason(path: Path) -> str:
    """Why a folder or file that exists cannot be written, as well as can be told."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "is on a read-only file system"
    except OSError:
        pass
    return "is not writable"


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def _check_creatable_in(option: str, shown: str | os.PathLike[str], folder: Path) -> None:
    """Files can be created in ``folder``, or in the folders made on the way to it."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise _fail(option, shown, f"{existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _fail(option, shown, f"the folder {existing} {_read_only_reason(existing)}")


def check_output_file(path: str | os.PathLike[str] | None, option: str) -> Path | None:
    """A file a command will write (``--json``, ``--markdown``): usable, or UsageError."""
    if path is None:
        return None
    text = os.fspath(path)
    if not text:
        raise UsageError(f"{option}: empty path")
    target = Path(text).expanduser()
    if text.endswith(os.sep) or target.is_dir():
        raise _fail(option, text, "is a directory (give a file name)")
    root = _under_kernel_files(target)
    if root is not None:
        raise _fail(option, text, f"is under {root} (kernel files, not a place for a report)")
    if os.path.lexists(target):
        if not target.is_file():
            raise _fail(option, text, "exists and is not a regular file")
        if not os.access(target, os.W_OK):
            raise _fail(option, text, _read_only_reason(target))
    _check_creatable_in(option, text, Path(os.path.abspath(target)).parent)
    return target


def check_output_dir(path: str | os.PathLike[str], option: str) -> Path:
    """A folder a command will create or write files in."""
    text = os.fspath(path)
    folder = Path(text).expanduser()
    root = _under_kernel_files(folder)
    if root is not None:
        raise _fail(option, text, f"is under {root} (kernel files, not a place for output)")
    if os.path.lexists(folder) and not folder.is_dir():
        raise _fail(option, text, "exists and is not a directory")
    _check_creatable_in(option, text, Path(os.path.abspath(folder)))
    return folder


def check_html_dir(path: str | os.PathLike[str], option: str = "--html") -> Path:
    """The asv site folder whose sibling ``<DIR>-loadkit`` gets the history page."""
    text = os.fspath(path)
    if not text:
        raise UsageError(f"{option}: empty path")
    folder = Path(os.path.abspath(Path(text).expanduser()))
    root = _under_kernel_files(folder)
    if root is not None:
        raise _fail(option, text, f"is under {root} (kernel files, not a place for a page)")
    if folder.parent == folder:
        raise _fail(
            option,
            text,
            "is the filesystem root; the page goes beside the asv site, into <DIR>-loadkit, "
            "so DIR must be a folder such as html",
        )
    if os.path.lexists(folder) and not folder.is_dir():
        raise _fail(option, text, "exists and is not a directory")
    check_output_dir(page_dir(folder), option)
    return folder


def check_input_file(path: str | os.PathLike[str] | None, option: str) -> Path | None:
    """A file a command will read (``--baseline``, ``--config``): there and readable."""
    if path is None:
        return None
    text = os.fspath(path)
    target = Path(text).expanduser()
    if not os.path.exists(target):
        raise _fail(option, text, "not found")
    if target.is_dir():
        raise _fail(option, text, "is a directory, not a file")
    if not os.access(target, os.R_OK):
        raise _fail(option, text, "is not readable")
    return target


def check_input_dir(path: str | os.PathLike[str], option: str) -> Path:
    """A folder a command will read (``--results``): there and readable."""
    text = os.fspath(path)
    folder = Path(text).expanduser()
    if not os.path.exists(folder):
        raise _fail(option, text, "not found")
    if not folder.is_dir():
        raise _fail(option, text, "is not a directory")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise _fail(option, text, "is not readable")
    return folder
