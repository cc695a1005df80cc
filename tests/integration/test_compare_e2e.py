"""End to end: the CI scripts and ``loadkit compare`` on a tiny asv project, with a local
bare git repository standing in for the remote.

- main: three commits pushed through ``.ci/bench-main`` leave three commits of results
  on the results branch (each job starts from an empty runner: results/ come from the
  branch) and a published history page with three points;
- pull requests through ``.ci/bench-pr``: a real slowdown of the project's code fails
  with a comment naming its benchmarks; a change to nothing measured passes. The
  comparisons write their own results folder, never the project's results/.
- the published folder, served on loopback, shows the history page and the asv site in
  Chromium with every request off the server refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from compare_project import FAST_WORK, SLOW_WORK, commit, git, isolated_env, make_project
from helpers import CHROMIUM, CHROMIUM_ARGS, require_chromium

from loadkit.asvsuite.compare_run import shared_versions

pytestmark = pytest.mark.slow

CI = Path(__file__).resolve().parents[2] / ".ci"
MACHINE = "ci-runner"
BENCH_COMMAND = (
    f"python -m asv machine --yes --machine {MACHINE} >/dev/null && "
    f"python -m asv run --machine {MACHINE} --record-samples 'HEAD^!'"
)


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = isolated_env(root / "home")
    # The scripts call `loadkit` and `python`: this interpreter's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("GITHUB_STEP_SUMMARY", None)
    return {**env, **extra}


def _script(name: str, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CI / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A project with main (3 commits) and two pull-request branches, pushed to a bare
    repository."""
    root = tmp_path_factory.mktemp("ci")
    work = root / "author"
    first = make_project(work)
    second = commit(work, "notes", note="second\n")
    third = commit(work, "more notes", note="third\n")
    git(work, "checkout", "-q", "-b", "pr-slow")
    commit(work, "tiny: a loop twenty times longer", work=SLOW_WORK)
    git(work, "checkout", "-q", "-b", "pr-noop", "main")
    commit(work, "notes only", note="third, reworded\n")
    git(work, "checkout", "-q", "main")
    remote = root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "-q", "origin", "main", "pr-slow", "pr-noop")
    assert FAST_WORK < SLOW_WORK
    return {"root": root, "remote": remote, "main": [first, second, third]}


def _fresh_runner(origin: dict[str, Any], name: str, ref: str, branch: str | None = None) -> Path:
    """A CI runner's checkout of ``ref`` (as ``branch``, as a push job checks it out): a
    new clone, nothing else (the environments asv builds are kept in one place for all
    runners, to save the builds' time)."""
    clone = origin["root"] / name
    subprocess.run(
        ["git", "clone", "-q", str(origin["remote"]), str(clone)], check=True, capture_output=True
    )
    if branch:
        git(clone, "checkout", "-q", "-B", branch, ref)
    else:
        git(clone, "checkout", "-q", ref)
    config = json.loads((clone / "asv.conf.json").read_text())
    config["env_dir"] = str(origin["root"] / "asv-env")
    (clone / "asv.conf.json").write_text(json.dumps(config))
    return clone


@pytest.fixture(scope="module")
def main_runs(origin: dict[str, Any], asv_assets: Path) -> dict[str, Any]:
    sites = []
    for index, sha in enumerate(origin["main"]):
        runner = _fresh_runner(origin, f"main-{index}", sha, branch="main")
        env = _env(
            origin["root"],
            BENCH_COMMAND=BENCH_COMMAND,
            BENCH_MACHINE=MACHINE,
            LOADKIT_ASV_ASSETS=str(asv_assets),
        )
        done = _script("bench-main", runner, env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        sites.append(runner / "site")
    return {"sites": sites}


def test_three_main_commits_leave_three_result_commits_and_a_three_point_history(origin, main_runs):
    remote = origin["remote"]
    log = subprocess.run(
        ["git", "--git-dir", str(remote), "log", "--format=%s", "benchmark-results"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(log) == 3
    files = subprocess.run(
        ["git", "--git-dir", str(remote), "ls-tree", "-r", "--name-only", "benchmark-results"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for sha in origin["main"]:
        assert any(f.startswith(f"{MACHINE}/{sha[:8]}") for f in files), (sha, files)
    assert "benchmarks.json" in files and f"{MACHINE}/machine.json" in files
    site = main_runs["sites"][-1]
    page = (site / "html-loadkit" / "index.html").read_text()
    assert "data-commits='3'" in page
    assert "time_loop" in page
    assert (site / "html" / "index.html").is_file() and (site / ".nojekyll").is_file()
    index = (site / "index.html").read_text()
    assert 'href="html-loadkit/index.html"' in index and 'href="html/index.html"' in index
    # The first job's page had one point: each job saw every earlier job's results.
    assert "data-commits='1'" in (main_runs["sites"][0] / "html-loadkit" / "index.html").read_text()


def _pull_request(origin: dict[str, Any], branch: str) -> tuple[subprocess.CompletedProcess, Path]:
    runner = _fresh_runner(origin, f"pr-{branch}", f"origin/{branch}")
    out = runner / "compare-out"
    env = _env(origin["root"], COMPARE_ROUNDS="3", COMPARE_OUT=str(out))
    done = _script("bench-pr", runner, env, "origin/main", "HEAD")
    return done, runner


def test_a_pull_request_that_slows_the_loop_fails_naming_it(origin):
    done, runner = _pull_request(origin, "pr-slow")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    comment = (runner / "compare-out" / "comment.md").read_text()
    first_line = comment.splitlines()[0]
    assert first_line.startswith("❌ **loadkit compare** — REGRESSION")
    failing = comment.split("<details>")[0]
    assert "`bench_work.Work.time_loop`" in failing
    assert "`bench_work.Work.track_loops_per_s`" in failing
    assert "`bench_work.Work.time_steady`" not in failing
    verdicts = {
        e["name"]: e["verdict"]
        for e in json.loads((runner / "compare-out" / "compare.json").read_text())["entries"]
    }
    assert verdicts["bench_work.Work.time_loop"] == "REGRESSION"
    assert verdicts["bench_work.Work.track_loops_per_s"] == "REGRESSION"
    assert verdicts["bench_work.Work.time_steady"] != "REGRESSION"
    # The comparison kept its results apart from the project's history.
    assert not (runner / "results").exists()
    kept = list((runner / ".asv" / "compare").glob("*/results/compare/*-virtualenv-*.json"))
    assert len(kept) == 2
    # The pull request changed the code measured, not the benchmarks: every benchmark ran
    # at one version on both sides, so an A/A study of it would still count.
    head = git(runner, "rev-parse", "HEAD").strip()
    versions = shared_versions(kept[0].parents[1], "compare", origin["main"][-1], head)
    assert {"bench_work.Work.time_loop", "bench_work.Work.track_loops_per_s"} <= versions.keys()


def test_a_pull_request_that_changes_nothing_measured_passes(origin):
    done, runner = _pull_request(origin, "pr-noop")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    comment = (runner / "compare-out" / "comment.md").read_text()
    assert comment.startswith("✅ **loadkit compare** — PASSED")
    assert "### Regressions" not in comment
    verdicts = {
        e["name"]: e["verdict"]
        for e in json.loads((runner / "compare-out" / "compare.json").read_text())["entries"]
    }
    assert verdicts["bench_work.Work.track_leaked"] == "NO_CHANGE"
    assert re.search(r"3 rounds each", comment)


# --- the published folder in a real browser -------------------------------------------


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield context
        context.close()


@pytest.mark.browser
def test_the_published_folder_serves_both_sites_offline(main_runs, chromium, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(main_runs["sites"][-1], site)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", str(site)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = server.stdout.readline()
        port = re.search(r"port (\d+)", line).group(1)
        base = f"http://127.0.0.1:{port}/"
        tab = chromium.new_page()
        outside: list[str] = []
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))

        def route(request_route: Any) -> None:
            url = request_route.request.url
            if url.startswith(base):
                request_route.continue_()
            else:
                outside.append(url)
                request_route.abort()

        tab.route("**/*", route)
        tab.goto(base)
        tab.click("text=History page")
        tab.wait_for_selector("body[data-commits='3']", timeout=20_000)
        assert "time_loop" in tab.inner_text("body")
        tab.goto(base)
        tab.click("text=asv site")
        tab.wait_for_selector(".benchmark-container", timeout=30_000)
        assert "error.html" not in tab.url
        names = tab.locator(".benchmark-text").all_inner_texts()
        assert any("time_loop" in name for name in names), names
        assert outside == [], outside
        assert errors == [], errors
        tab.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
