"""Where the history page lives beside the asv site, importable without scipy (the
command line needs it to check paths and to link the page from the run report)."""

from __future__ import annotations

import os
from pathlib import Path

PAGE_NAME = "index.html"


def page_dir(html_dir: str | os.PathLike[str]) -> Path:
    """Where the page goes: a sibling of the asv site that ``asv publish`` leaves alone
    (publish deletes its whole html dir before writing)."""
    html_dir = Path(html_dir)
    if html_dir.name in ("", ".", ".."):  # "." or "..": name the folder they stand for
        html_dir = Path(os.path.abspath(html_dir))
    return html_dir.parent / f"{html_dir.name}-loadkit"


def page_link(html_dir: str | os.PathLike[str]) -> str | None:
    """Path of the history page for an asv html dir, or None if it was never written."""
    page = page_dir(html_dir) / PAGE_NAME
    return str(page) if page.is_file() else None
