"""Where the history page lives, importable without scipy (the CLI needs
it to build its parser and to link the page from the run report)."""

from __future__ import annotations

import os
from pathlib import Path

PAGE_NAME = "index.html"


def report_dir(html_dir: Path) -> Path:
    """Where the page goes: a sibling of the asv site that ``asv publish`` leaves alone
    (publish deletes its whole html dir before writing)."""
    html_dir = Path(html_dir)
    if html_dir.name in ("", ".", ".."):  # "." or "..": name the folder they stand for
        html_dir = Path(os.path.abspath(html_dir))
    return html_dir.parent / f"{html_dir.name}-loadkit"
