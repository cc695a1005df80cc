#!/usr/bin/env python3
"""Keep asv's results/ on a git branch of their own, so they accumulate across CI jobs.

A CI runner starts empty, and results/ is not part of the code's history. So:

  results-sync fetch   before a run: the results branch's files -> results/
  results-sync push    after it: this job's new or changed files -> one commit on the
                       results branch, pushed; a rejected push (another job pushed
                       first) is retried on top of the new tip; never forced.

A job adds only its own files. Result files are one per commit, machine and
environment, so two jobs never write the same one; the files every job touches are
merged instead of overwritten:

  benchmarks.json        union by benchmark; this job's entry wins for the benchmarks it
                         ran (it was discovered from the code that ran), the others stay
  loadkit-suite.jsonl    the same rule, by the "benchmark" of each line
  <machine>/machine.json this job's description wins (the runner that just ran)

Standard library only, so it runs before anything is installed. The branch is
worked on in a clone of its own (--work), never in the project's checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

MERGED_TOP = {"benchmarks.json", "loadkit-suite.jsonl"}
IDENTITY = ["-c", "user.name=loadkit results", "-c", "user.email=results@loadkit.invalid"]


class SyncError(Exception):
    pass


def git(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["git", "-C", str(work), *args], capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        raise SyncError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def remote_url(remote: str) -> str:
    """A remote name of the project's checkout (origin), or a URL or path as given."""
    if os.path.exists(remote):  # a path: the branch's clone lives elsewhere
        return os.path.abspath(remote)
    if "/" in remote or ":" in remote:
        return remote
    proc = subprocess.run(
        ["git", "remote", "get-url", remote], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SyncError(f"no git remote {remote!r} here: {proc.stderr.strip()}")
    return proc.stdout.strip()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and ".git" not in path.relative_to(folder).parts:
            out[path.relative_to(folder).as_posix()] = path
    return out


def prepare_clone(work: Path, url: str) -> None:
    if not (work / ".git").is_dir():
        work.mkdir(parents=True, exist_ok=True)
        git(work, "init", "-q")
        git(work, "remote", "add", "origin", url)
    else:
        git(work, "remote", "set-url", "origin", url)


def checkout_tip(work: Path, branch: str) -> bool:
    """The clone's work tree at the remote branch's tip; False when the branch does not
    exist yet (the work tree is then empty, on an unborn branch)."""
    fetched = git(
        work,
        "fetch",
        "-q",
        "origin",
        f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
        check=False,
    )
    if fetched.returncode == 0:
        git(work, "checkout", "-q", "-f", "-B", branch, f"origin/{branch}")
        git(work, "clean", "-q", "-f", "-d", "-x")
        return True
    if "couldn't find remote ref" not in fetched.stderr and "not found" not in fetched.stderr:
        raise SyncError(f"git fetch {branch}: {fetched.stderr.strip()}")
    git(work, "checkout", "-q", "-f", "--orphan", branch, check=False)
    git(work, "rm", "-q", "-r", "-f", "--cached", ".", check=False)
    for name in os.listdir(work):
        if name != ".git":
            target = work / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    return False


def manifest_path(work: Path) -> Path:
    return work.with_name(work.name + ".manifest.json")


def fetch(args: argparse.Namespace) -> int:
    work, results = Path(args.work), Path(args.results)
    prepare_clone(work, remote_url(args.remote))
    exists = checkout_tip(work, args.branch)
    results.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, path in files_under(work).items():
        target = results / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        manifest[name] = digest(path)
    manifest_path(work).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    what = f"{len(manifest)} files" if exists else "nothing (the branch does not exist yet)"
    print(f"results-sync: fetched {what} from {args.branch} into {results}")
    return 0


def merge_benchmarks(theirs: str | None, ours: str) -> str:
    merged = json.loads(theirs) if theirs else {}
    merged.update(json.loads(ours))
    return json.dumps(merged, indent=4, sort_keys=True) + "\n"


def merge_lines(theirs: str | None, ours: str) -> str:
    entries: dict[str, str] = {}
    for text in (theirs or "", ours):
        for line in text.splitlines():
            if line.strip():
                entries[str(json.loads(line).get("benchmark"))] = line
    return "".join(entry + "\n" for _, entry in sorted(entries.items()))


def own_files(results: Path, work: Path) -> dict[str, Path]:
    """This job's files: new since the fetch, or changed."""
    try:
        manifest = json.loads(manifest_path(work).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SyncError("no record of a fetch: run `results-sync fetch` before the run") from None
    return {
        name: path
        for name, path in files_under(results).items()
        if manifest.get(name) != digest(path)
    }


def apply(work: Path, files: dict[str, Path]) -> None:
    for name, path in files.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        mine = path.read_text(encoding="utf-8")
        theirs = target.read_text(encoding="utf-8") if target.is_file() else None
        if name == "benchmarks.json":
            target.write_text(merge_benchmarks(theirs, mine), encoding="utf-8")
        elif name == "loadkit-suite.jsonl":
            target.write_text(merge_lines(theirs, mine), encoding="utf-8")
        else:  # result files and machine.json: this job's own
            shutil.copy2(path, target)


def push(args: argparse.Namespace) -> int:
    work, results = Path(args.work), Path(args.results)
    prepare_clone(work, remote_url(args.remote))
    files = own_files(results, work)
    if not files:
        print("results-sync: no new result files to push")
        return 0
    for attempt in range(1, args.tries + 1):
        checkout_tip(work, args.branch)
        apply(work, files)
        git(work, "add", "-A")
        if git(work, "diff", "--cached", "--quiet", check=False).returncode == 0:
            print("results-sync: the branch already holds these results")
            return 0
        git(work, *IDENTITY, "commit", "-q", "-m", args.message)
        pushed = git(work, "push", "-q", "origin", f"HEAD:refs/heads/{args.branch}", check=False)
        if pushed.returncode == 0:
            print(f"results-sync: pushed {len(files)} files to {args.branch} (try {attempt})")
            return 0
        print(f"results-sync: push rejected (try {attempt}): {pushed.stderr.strip()}")
        time.sleep(min(30.0, args.backoff * 2 ** (attempt - 1)) * (1 + random.random()))
    raise SyncError(f"gave up after {args.tries} rejected pushes to {args.branch}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="results-sync", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["fetch", "push"])
    parser.add_argument("--remote", default=os.environ.get("RESULTS_REMOTE", "origin"))
    parser.add_argument("--branch", default=os.environ.get("RESULTS_BRANCH", "benchmark-results"))
    parser.add_argument("--results", default="results", help="asv's results_dir (results)")
    parser.add_argument(
        "--work", default=".asv/results-branch", help="the branch's own clone (.asv/results-branch)"
    )
    parser.add_argument("--message", default="results", help="commit message of a push")
    parser.add_argument("--tries", type=int, default=8)
    parser.add_argument("--backoff", type=float, default=0.5, help="seconds before the 2nd try")
    args = parser.parse_args(argv)
    if args.tries < 1:
        parser.error("--tries must be at least 1")
    try:
        return fetch(args) if args.action == "fetch" else push(args)
    except SyncError as exc:
        print(f"results-sync: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
