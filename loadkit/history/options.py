"""What ``check``, ``report`` and ``calibrate`` are asked to do, as typed values.

The command line builds these from its arguments (``loadkit.cli``) and other callers
(``loadkit bench`` writing the page after a run, tests) build them directly, so the
library never sees an argparse namespace and a misspelt option is an error where it
is written, not an attribute missing at run time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Self

from loadkit.common.path_checks import (
    check_html_dir,
    check_input_dir,
    check_input_file,
    check_output_file,
)

DEFAULT_SERIES = 500
DEFAULT_SEED = 2026


@dataclass(frozen=True)
class HistoryOptions:
    """Which history to read and how surely to judge its newest commit."""

    results: Path = Path("results")
    machine: str | None = None
    commit: str | None = None
    confidence: float = 0.95
    min_effect: float = 0.05
    fdr: float = 0.01
    config: Path | None = None
    repo: Path | None = None
    asv_index: Path | None = None

    def checked(self) -> Self:
        """These options with their paths checked: a path that cannot work stops the
        command (``UsageError``, one line) before any results are read."""
        check_input_dir(self.results, "--results")
        check_input_file(self.config, "--config")
        return self


@dataclass(frozen=True)
class CheckOptions(HistoryOptions):
    """``loadkit check``: the table, and the scores as JSON when ``json`` is given."""

    # As typed until checked: "out/" names a folder, which a Path would forget.
    json: str | os.PathLike[str] | None = None

    def checked(self) -> Self:
        return replace(super().checked(), json=check_output_file(self.json, "--json"))


@dataclass(frozen=True)
class PageOptions(HistoryOptions):
    """``loadkit report``: the history page beside the asv site in ``html``."""

    html: Path = Path("html")
    asv_offline: bool = False

    def checked(self) -> Self:
        checked = super().checked()
        check_html_dir(self.html, "--html")
        return checked


@dataclass(frozen=True)
class CalibrateOptions:
    """``loadkit calibrate``: series per simulated cell, the seed, optional JSON."""

    series: int = DEFAULT_SERIES
    seed: int = DEFAULT_SEED
    json: str | os.PathLike[str] | None = None

    def checked(self) -> Self:
        return replace(self, json=check_output_file(self.json, "--json"))
