"""What ``asv.conf.json`` says about where commits can be ordered from.

Four settings matter to loadkit: ``repo`` (the benchmarked project, a local path or a
URL), ``branches`` (asv graphs the first one), ``results_dir`` (where ``asv run`` writes)
and ``html_dir`` (where ``asv publish`` writes ``index.json``, which records asv's own
commit order). The file is read with asv's own reader, which allows comments as asv
does. Relative paths are taken from the config file's folder, where asv is run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from asv import util

from loadkit.common.errors import UsageError

# asv's own default when the config sets no html_dir (asv.config.Config).
DEFAULT_HTML_DIR = "html"
DEFAULT_RESULTS_DIR = "results"
DEFAULT_BENCHMARK_DIR = "benchmarks"

# "scheme://..." or git's scp-like "user@host:path": asv clones these, they are no path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/@:\s]+@[^/:\s]+:")


@dataclass(frozen=True)
class AsvConfig:
    """The settings of one ``asv.conf.json`` that locate results, the site and
    commit-order sources."""

    path: Path
    repo: str
    branch: str | None
    html_dir: Path
    results_dir: Path = Path(DEFAULT_RESULTS_DIR)
    benchmark_dir: Path = Path(DEFAULT_BENCHMARK_DIR)

    @property
    def repo_is_url(self) -> bool:
        """True for a remote repository, which asv clones and we cannot read in place."""
        return is_url(self.repo)

    @property
    def repo_path(self) -> Path | None:
        """The configured repository as a local path, or None when it is a URL."""
        if self.repo_is_url:
            return None
        path = Path(self.repo).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()


def is_url(repo: str) -> bool:
    """Whether a ``repo`` setting names a remote (https, ssh, git@host:...)."""
    return bool(_URL.match(repo.strip()))


def load_config(path: Path) -> AsvConfig:
    """Read an ``asv.conf.json`` (comments allowed, as asv allows them)."""
    try:
        data = util.load_json(str(path), js_comments=True)
    except (OSError, ValueError, util.UserError) as exc:
        raise UsageError(f"cannot read asv config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"asv config {path} is not a JSON object")
    branches = data.get("branches") or [None]
    branch = branches[0] if isinstance(branches, list) and branches else None
    return AsvConfig(
        path=path,
        repo=str(data.get("repo") or "."),
        branch=str(branch) if branch is not None else None,
        html_dir=_folder(path, data.get("html_dir"), DEFAULT_HTML_DIR),
        results_dir=_folder(path, data.get("results_dir"), DEFAULT_RESULTS_DIR),
        benchmark_dir=_folder(path, data.get("benchmark_dir"), DEFAULT_BENCHMARK_DIR),
    )


def _folder(config: Path, setting: object, default: str) -> Path:
    """A folder setting as an absolute path, relative ones taken from the config's folder."""
    folder = Path(str(setting or default)).expanduser()
    return folder if folder.is_absolute() else config.parent.resolve() / folder
