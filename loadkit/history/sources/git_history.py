"""Asking git for a branch's first-parent history: the order asv graphs commits in.

asv keeps a result on a branch's graph when its commit is on ``git rev-list
--first-parent <branch>``, and draws the commits in that order. A clone that was
fetched but never checked the branch out has it only as ``origin/<branch>``, so
remote-tracking branches of the same name stand in for a missing local one. Only
reads: no fetch, no checkout.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# asv's default branch when asv.conf.json lists none (asv.util.git_default_branch).
ASV_FALLBACK_BRANCH = "master"


class GitError(Exception):
    """git could not answer; the message says why in one line."""


@dataclass(frozen=True)
class BranchRef:
    """The ref that stands for a configured branch, and how it was found."""

    branch: str
    ref: str
    remote: bool

    @property
    def name(self) -> str:
        """How to show it: ``main``, or ``origin/main`` for a remote-tracking branch."""
        return self.ref.removeprefix("refs/heads/").removeprefix("refs/remotes/")


def is_git_repository(path: Path) -> bool:
    """asv's test for a local repository: a work tree (``.git``) or a bare clone."""
    return path.is_dir() and ((path / ".git").exists() or (path / "objects").is_dir())


def _git(repo: Path, *args: str, stdin: str | None = None) -> str:
    try:
        completed = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror or exc}") from None
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines()
        raise GitError(lines[0] if lines else f"git {args[0]} exited {completed.returncode}")
    return completed.stdout


def default_branch(repo: Path) -> str:
    """The branch asv follows when the config names none: git's ``init.defaultBranch``,
    else ``master``."""
    try:
        configured = _git(repo, "config", "init.defaultBranch").strip()
    except GitError:
        return ASV_FALLBACK_BRANCH
    return configured or ASV_FALLBACK_BRANCH


def pick_branch_ref(branch: str, refs: list[str], remotes: list[str]) -> BranchRef | None:
    """The local branch if it exists, else ``origin/<branch>``, else that branch of any
    other remote (in name order); None when no ref carries the name."""
    known = set(refs)
    local = f"refs/heads/{branch}"
    if local in known:
        return BranchRef(branch, local, remote=False)
    ordered = sorted(remotes, key=lambda remote: (remote != "origin", remote))
    for remote in ordered:
        tracking = f"refs/remotes/{remote}/{branch}"
        if tracking in known:
            return BranchRef(branch, tracking, remote=True)
    return None


def find_branch(repo: Path, branch: str) -> BranchRef | None:
    """Resolve a configured branch name in a repository (see :func:`pick_branch_ref`).

    A name that is no branch but still names a commit (a tag, ``HEAD``, a hash, a
    ``remote/branch`` spelled out in the config) is used as it is, as asv would.
    """
    refs = _git(repo, "for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes")
    remotes = _git(repo, "remote").split()
    found = pick_branch_ref(branch, refs.split(), remotes)
    if found is not None:
        return found
    try:
        _git(repo, "rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}")
    except GitError:
        return None
    return BranchRef(branch, branch, remote=False)


def first_parent_history(repo: Path, ref: str) -> list[str]:
    """Full hashes on the ref's first-parent history, oldest first."""
    return list(reversed(_git(repo, "rev-list", "--first-parent", ref, "--").split()))


def unknown_commits(repo: Path, commits: list[str]) -> set[str]:
    """Those of ``commits`` the repository does not have (a clone older than the results)."""
    if not commits:
        return set()
    answer = _git(repo, "cat-file", "--batch-check", stdin="\n".join(commits) + "\n")
    return {line.split()[0] for line in answer.splitlines() if line.endswith(" missing")}
