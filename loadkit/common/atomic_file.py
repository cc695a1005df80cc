"""Writing a file so that readers see the old one or the new one, never half of either.

A report, a page or a result is written to a temporary file beside it and renamed over
it (a rename within one folder is atomic on POSIX), so a run stopped mid-write, or a
reader polling the file, never meets a truncated document.
"""

from __future__ import annotations

from pathlib import Path

from loadkit.common.errors import UsageError


def write_text_atomically(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename; create the
    parent folder. The path is checked before any work, so a failure here (a disk that
    filled up meanwhile) is still one line, not a traceback."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
