"""``loadkit bench``: the continuous-benchmarking job for the current commit.

1. ``asv machine --yes`` once, if this machine has no asv profile yet;
2. ``asv run --python=same`` on HEAD with samples recorded into ``results/``;
3. ``asv publish`` into ``html/``;
4. the history page (``loadkit report``) -> ``html-loadkit/index.html``;
5. ``loadkit run`` -> ``html-loadkit/run/report.json`` and ``report.md`` (+ ``plots/``),
   linking to it.

loadkit's pages sit beside the asv site because ``asv publish`` deletes ``html/``.

Existing results are never deleted: asv adds this commit's file beside the others.
Exit codes are loadkit's own, not asv's: a benchmark that failed or timed out is 1 (asv
says 2, which in loadkit means bad usage), a stop signal 128 + n
(:func:`job_exit_code`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from loadkit import lifetime
from loadkit.errors import Failure, UsageError
from loadkit.path_checks import check_html_dir, check_output_dir, check_output_file


def _repo_root() -> Path:
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "asv.conf.json").is_file():
            return folder
    raise UsageError("no asv.conf.json here or above: run `loadkit bench` inside the repository")


def _head(root: Path) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise UsageError(f"{root} is not a git repository with a commit: {out.stderr.strip()}")
    return out.stdout.strip()


def _asv(root: Path, *args: str) -> int:
    return subprocess.run([sys.executable, "-m", "asv", *args], cwd=root, check=False).returncode


def asv_exit_code(status: int) -> int:
    """``asv run``'s exit status in loadkit's terms: 0 passed; ended by signal n
    (``subprocess`` reports -n; a shell 128 + n) is that signal's 128 + n; anything else
    is a benchmark that failed or timed out (asv exits 2 for those), which is 1."""
    if status == 0:
        return 0
    if status < 0:
        return lifetime.exit_code(-status)
    if status in (lifetime.exit_code(s) for s in lifetime.STOP_SIGNALS):
        return status
    return 1


def job_exit_code(asv_status: int, run_code: int | None) -> int:
    """The job's exit code from ``asv run``'s status and ``loadkit run``'s code (None
    when skipped): an interruption wins, then bad usage (2), then any failure (1)."""
    codes = [asv_exit_code(asv_status), run_code or 0]
    interrupted = [c for c in codes if c > 2]
    if interrupted:
        return interrupted[0]
    return max(codes)


def _check_paths(results: Path, html: Path) -> None:
    """Where asv and loadkit will write, checked before asv runs a single benchmark."""
    from loadkit.history.paths import report_dir

    check_output_dir(results, "results_dir of asv.conf.json")
    check_output_dir(html, "html_dir of asv.conf.json")
    check_html_dir(html, "html_dir of asv.conf.json")
    run_dir = report_dir(html) / "run"
    check_output_file(run_dir / "report.json", "run report")
    check_output_file(run_dir / "report.md", "run report")


def run_bench(args: argparse.Namespace) -> int:
    root = _repo_root()
    console = Console(stderr=True)
    try:
        conf = json.loads((root / "asv.conf.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{root / 'asv.conf.json'} is not readable JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise UsageError(f"{root / 'asv.conf.json'} is not an asv config (not a JSON object)")
    html = root / conf.get("html_dir", "html")
    _check_paths(root / conf.get("results_dir", "results"), html)
    commit = _head(root)
    if not (Path.home() / ".asv-machine.json").exists():
        _asv(root, "machine", "--yes")
    console.rule(f"asv run on {commit[:8]}")
    run_args = ["run", "--python=same", "--set-commit-hash", commit, "--record-samples"]
    if args.bench:
        run_args += ["--bench", args.bench]
    status = _asv(root, *run_args)
    if status != 0:
        console.print(f"[yellow]asv run exited {status}; publishing what was recorded[/]")
    console.rule("asv publish")
    if _asv(root, "publish") != 0:
        raise Failure("asv publish failed (see its output above)")
    if args.skip_report:
        return job_exit_code(status, None)
    from loadkit.cli import main as loadkit_main
    from loadkit.history.paths import report_dir as history_dir

    console.rule("loadkit report (history)")
    results = str(root / conf.get("results_dir", "results"))
    loadkit_main(["report", "--results", results, "--html", str(html)])
    console.rule(f"loadkit run --scale {args.scale}")
    # Beside the asv site, not in it: `asv publish` deletes html/ before writing.
    report_dir = history_dir(html) / "run"
    code = loadkit_main(
        [
            "run",
            "--scale",
            args.scale,
            "--json",
            str(report_dir / "report.json"),
            "--markdown",
            str(report_dir / "report.md"),
        ]
    )
    console.print(f"asv site: {html / 'index.html'}  (serve it with `asv preview`)")
    console.print(f"history:  {history_dir(html) / 'index.html'}")
    console.print(f"report:   {report_dir / 'report.md'}")
    return job_exit_code(status, code)
