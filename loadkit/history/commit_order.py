"""Commit order the way asv draws its graphs: the first-parent history of a branch.

asv's own graphs place commits by ``git rev-list --first-parent <branch>``; the date
stored in a results file is the commit date, which lies after rebases and cherry-picks.
We ask git the same question, reading the repository and branch from the
``asv.conf.json`` next to the results directory unless the caller says otherwise.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from asv import util

from loadkit.errors import UsageError


@dataclass(frozen=True)
class RepoSettings:
    """Where the benchmarked project lives and which branch asv follows."""

    repo: Path
    branch: str | None


def settings_from_config(config_path: Path) -> RepoSettings:
    """Repository and first branch from an ``asv.conf.json`` (comments allowed, as asv)."""
    try:
        config = util.load_json(str(config_path), js_comments=True)
    except (OSError, util.UserError) as exc:
        raise UsageError(f"cannot read asv config {config_path}: {exc}") from None
    repo = Path(str(config.get("repo", ".")))
    if not repo.is_absolute():
        repo = (config_path.parent / repo).resolve()
    branches = config.get("branches") or [None]
    return RepoSettings(repo=repo, branch=branches[0])


def branch_commits(settings: RepoSettings) -> list[str]:
    """Full hashes on the branch's first-parent history, oldest first."""
    revision = settings.branch or "HEAD"
    try:
        completed = subprocess.run(
            ["git", "rev-list", "--first-parent", revision, "--"],
            cwd=settings.repo,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise UsageError(f"cannot run git in {settings.repo}: {exc}") from None
    if completed.returncode != 0:
        detail = completed.stderr.strip().splitlines()
        reason = detail[0] if detail else f"exit code {completed.returncode}"
        raise UsageError(f"cannot list commits of {revision!r} in {settings.repo}: {reason}")
    return list(reversed(completed.stdout.split()))
