"""End to end: a throwaway git repository, real ``asv run`` over 8 commits, then check.

Commit 5 makes the benchmarked work twenty times bigger. The work is counted by a
``track_`` benchmark and timed by a ``time_`` one: on a shared 2-core machine the timing
of a 5-commit history can swing by half between commits (neighbours, CPU frequency), so
the verdicts asserted exactly are the count's, and the timing must point the same way.
``loadkit check`` must name the count as a REGRESSION when judging commit 5 and not
when judging the commits before and after it, skip corrupt and foreign files without
touching them, and the report page must survive ``asv publish``. In Chromium, the
page judging commit 5 puts the failing series first, and a one-commit history shows its
values and the run report's targets; neither page asks for anything off the disk.
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
from helpers import CHROMIUM, CHROMIUM_ARGS, asv_config, git, require_chromium, screenshot_dir
from helpers import run_history_cli as run_cli

import loadkit
from loadkit.common.site_paths import page_dir, page_link
from loadkit.history.actions import write_page
from loadkit.history.options import PageOptions

pytestmark = pytest.mark.slow

MACHINE = "e2ebox"
COMMITS = 8
SLOW_FROM = 5
BENCHMARK = """\
import time

WORK = {work}


class Work:
    # CPU time, not wall time: other jobs on a shared machine must not move the history.
    timer = time.process_time
    # A few calls per sample smooth out the odd slow call (allocation, page faults).
    number = 3
    repeat = 9
    min_run_count = 9
    rounds = 1
    warmup_time = 0
    timeout = 60

    def time_loop(self):
        total = 0
        for i in range(WORK):
            total += i

    def track_work(self):
        return float(WORK)

    track_work.unit = "iterations"

    def track_items_per_s(self):
        return 1000.0

    track_items_per_s.unit = "items/s"


class Sized:
    # Parameterized, for the names; deterministic, so a busy machine cannot move it.
    params = [100, 200]
    param_names = ["size"]

    def track_size(self, size):
        return float(size)

    track_size.unit = "items"
"""
CONFIG = asv_config("tiny")


def _asv(repo: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "asv", *args],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("asv_e2e")
    repo = root / "proj"
    (repo / "benchmarks").mkdir(parents=True)
    env = {**os.environ, "HOME": str(root / "home")}
    (root / "home").mkdir()
    (repo / "asv.conf.json").write_text(json.dumps(CONFIG))
    (repo / "benchmarks" / "__init__.py").write_text("")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "e2e@example.invalid")
    git(repo, "config", "user.name", "e2e")
    _asv(repo, env, "machine", "--yes", "--machine", MACHINE)
    hashes = []
    for index in range(COMMITS):
        work = 1_000_000 if index >= SLOW_FROM else 50_000
        (repo / "benchmarks" / "bench_work.py").write_text(BENCHMARK.format(work=work))
        (repo / "notes.txt").write_text(f"commit {index}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"commit {index}")
        sha = git(repo, "rev-parse", "HEAD")
        hashes.append(sha)
        _asv(
            repo,
            env,
            "run",
            "--python=same",
            f"--set-commit-hash={sha}",
            "--record-samples",
            "--machine",
            MACHINE,
        )
    machine_dir = repo / "results" / MACHINE
    junk = {
        machine_dir / "corrupt.json": b'{"commit_hash": "abc", ',
        machine_dir / "foreign.json": b'{"hello": "not asv"}',
        machine_dir / "notes.txt": b"not json at all",
    }
    for path, content in junk.items():
        path.write_bytes(content)
    return {"repo": repo, "env": env, "hashes": hashes, "junk": junk}


def _check(project: dict[str, object], commit: str, out: Path) -> tuple[int, dict]:
    repo = project["repo"]
    code = run_cli(
        ["check", "--results", str(repo / "results"), "--commit", commit[:10], "--json", str(out)]
    )
    return code, json.loads(out.read_text())


def test_the_slowdown_commit_is_named_a_regression(project, tmp_path, capsys):
    slow = project["hashes"][SLOW_FROM]
    code, document = _check(project, slow, tmp_path / "slow.json")
    captured = capsys.readouterr()
    assert code == 1
    assert document["commit"] == slow
    assert "bench_work.Work.track_work" in document["failing"]
    work = next(s for s in document["series"] if s["name"] == "bench_work.Work.track_work")
    assert work["verdict"] == "REGRESSION" and work["ratio"] == pytest.approx(20.0)
    loop = next(s for s in document["series"] if s["name"] == "bench_work.Work.time_loop")
    assert loop["verdict"] in ("REGRESSION", "INCONCLUSIVE")
    assert loop["used_samples"] is True
    assert loop["ratio"] > 5.0  # twenty times the work, whatever the machine did
    assert "REGRESSION" in captured.out
    assert "corrupt.json" in captured.err and "foreign.json" in captured.err
    assert len(document["skipped_files"]) == 2


@pytest.mark.parametrize("index", [2, SLOW_FROM - 1, SLOW_FROM + 1, COMMITS - 1])
def test_commits_without_a_slowdown_pass(project, tmp_path, index):
    code, document = _check(project, project["hashes"][index], tmp_path / "ok.json")
    work = next(s for s in document["series"] if s["name"] == "bench_work.Work.track_work")
    assert work["verdict"] == "NO_CHANGE" and not work["failing"]
    # The timing may swing on a busy machine; the count never does, so check fails
    # only if the timing is called a regression, and never by more than it moved.
    loop = next(s for s in document["series"] if s["name"] == "bench_work.Work.time_loop")
    assert code == (1 if loop["failing"] else 0), document["series"]
    assert set(document["failing"]) <= {"bench_work.Work.time_loop"}
    if loop["failing"]:
        assert loop["ratio"] < 3.0


def test_later_commits_name_the_shift_where_it_happened(project, tmp_path):
    _, document = _check(project, project["hashes"][-1], tmp_path / "last.json")
    work = next(s for s in document["series"] if s["name"] == "bench_work.Work.track_work")
    shifts = [c["commit"] for c in work["recent_shifts"] + work["change_points"]]
    assert shifts == [project["hashes"][SLOW_FROM]]
    assert work["verdict"] == "NO_CHANGE"
    throughput = next(s for s in document["series"] if "items_per_s" in s["name"])
    assert throughput["direction"] == "higher_is_better"
    assert throughput["used_samples"] is False  # track_ results keep only the value
    names = {s["name"] for s in document["series"]}
    assert {
        "bench_work.Sized.track_size(size=100)",
        "bench_work.Sized.track_size(size=200)",
    } <= names


def test_junk_files_are_left_untouched(project):
    for path, content in project["junk"].items():
        assert path.read_bytes() == content


def test_usage_errors_exit_2_with_one_line(project, tmp_path, capsys):
    results = str(project["repo"] / "results")
    assert run_cli(["check", "--results", results, "--machine", "nope"]) == 2
    assert run_cli(["check", "--results", results, "--commit", "0000000"]) == 2
    assert run_cli(["check", "--results", str(tmp_path / "missing")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 3
    assert "nope" in errors[0] and "0000000" in errors[1] and "missing" in errors[2]


def test_history_page_survives_asv_publish(project):
    repo = project["repo"]
    html = repo / "html"
    assert run_cli(["report", "--results", str(repo / "results"), "--html", str(html)]) == 0
    link = page_link(html)
    assert link is not None
    page = Path(link)
    text = page.read_text()
    assert "<img" not in text and "https://" not in text  # nothing to fetch from outside
    inline = text.count('<svg class="detail"')
    lazy = sorted((page.parent / "series").glob("*.js"))
    assert inline + len(lazy) == 5 and text.count('<svg class="spark"') == 5
    assert "time_loop" in text and "track_work" in text
    assert project["hashes"][SLOW_FROM][:8] in text  # the shift is named
    _asv(repo, project["env"], "publish")
    assert (html / "index.html").is_file()
    assert page.is_file() and page_link(html) == link


# --- the page in a real browser -------------------------------------------------------


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900},
        )
        yield context
        context.close()


def _open(chromium: Any, page_path: Path) -> tuple[Any, list[str], list[str]]:
    """The page from disk with every request off the disk refused: what works here works
    offline. Returns the tab, its script errors and the refused requests."""
    tab = chromium.new_page()
    errors: list[str] = []
    outside: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith("file://"):
            request_route.continue_()
        else:
            outside.append(url)
            request_route.abort()

    tab.route("**/*", route)
    tab.goto(page_path.as_uri())
    return tab, errors, outside


def _expand_a_lazy_plot(tab: Any, mark: str) -> None:
    """Open the first closed plot and wait for ``mark`` in its SVG."""
    button = tab.locator('button.plot[aria-expanded="false"]').first
    slug = button.get_attribute("data-slug")
    plot = f'[id="plot-{slug}"]'  # ids hold dots: no #id selector
    assert tab.locator(f"{plot} svg").count() == 0  # not built until asked for
    button.click()
    # A flat line has no height, which Playwright calls hidden: wait for it to exist.
    tab.wait_for_selector(f"{plot} svg.detail {mark}", state="attached", timeout=10_000)
    assert tab.locator(f"{plot} svg.detail").is_visible()
    assert tab.locator(f'[id="detail-{slug}"]').is_visible()


def test_browser_shows_the_failing_series_first_with_sparklines_and_plots(
    project, chromium, tmp_path
):
    repo = project["repo"]
    html = tmp_path / "html"
    slow = project["hashes"][SLOW_FROM]
    argv = ["report", "--results", str(repo / "results"), "--html", str(html)]
    assert run_cli([*argv, "--commit", slow[:10]]) == 0
    tab, errors, outside = _open(chromium, Path(page_link(html)))

    gate = tab.locator("#gate")
    assert (
        "fail" in gate.get_attribute("class") and f"REGRESSION at {slow[:8]}" in gate.inner_text()
    )
    failing = tab.locator("#failing tbody tr").all_inner_texts()
    assert failing and any("bench_work.Work.track_work" in row for row in failing)
    assert all("REGRESSION" in row and "✗" in row for row in failing)
    regressions = int(tab.locator('[data-verdict="REGRESSION"] .count').inner_text())
    assert regressions >= len(failing)
    # The grouped rows below: the failing benchmarks come before every other one.
    rows = tab.eval_on_selector_all(
        "tbody.bench",
        "els => els.map(e => [e.dataset.benchmark, !!e.querySelector('tr.failing')])",
    )
    flags = [bad for _, bad in rows]
    assert flags[0] and flags == sorted(flags, reverse=True), rows
    assert "bench_work.Work.track_work" in [name for name, bad in rows if bad]
    box = tab.locator("svg.spark").first.bounding_box()
    assert box and box["width"] > 50 and box["height"] > 10
    assert tab.locator("svg.spark").count() == 5
    # The regression's full plot is already open; another opens on click.
    assert tab.locator("svg.detail").first.is_visible()
    shots = screenshot_dir(tmp_path)
    tab.screenshot(path=str(shots / "history-e2e.png"))
    _expand_a_lazy_plot(tab, "polyline.median")
    tab.screenshot(path=str(shots / "history-e2e-full.png"), full_page=True)
    assert (shots / "history-e2e.png").stat().st_size > 10_000
    assert errors == [] and outside == []
    tab.close()


def _run_report_document(commit: str) -> dict[str, object]:
    """A run report as ``loadkit run`` writes it (checked against its schema)."""
    import jsonschema

    document = {
        "schema": "loadkit.report/1",
        "created": "2026-01-01T00:00:00Z",
        "commit": commit,
        "machine": {"cpus": 2, "ram_gib": 4.0, "python": "3.11", "platform": "linux"},
        "scale": "quick",
        "workloads": {
            "queue": {
                "status": "passed",
                "duration_s": 3.5,
                "metrics": {"p95_ms": 4.2, "errors": 0},
                "checks": [
                    {
                        "metric": "p95_ms",
                        "op": "<=",
                        "target": 50,
                        "value": 4.2,
                        "score": 1.0,
                        "passed": True,
                    },
                    {
                        "metric": "errors",
                        "op": "<=",
                        "target": 0,
                        "value": 0,
                        "score": 1.0,
                        "passed": True,
                    },
                ],
                "confidence": 0.9,
                "bottlenecks": [],
                "error": None,
            }
        },
        "overall_confidence": 0.9,
        "passed": True,
        "recommendations": [],
    }
    schema = json.loads((Path(loadkit.__file__).parent / "runs" / "report.schema.json").read_text())
    jsonschema.validate(document, schema)
    return document


def test_browser_first_run_shows_values_and_run_targets(project, chromium, tmp_path):
    repo = project["repo"]
    first = project["hashes"][0]
    results = tmp_path / "proj" / "results"
    machine = results / MACHINE
    machine.mkdir(parents=True)
    shutil.copy(repo / "results" / "benchmarks.json", results)
    shutil.copy(repo / "results" / MACHINE / "machine.json", machine)
    for path in (repo / "results" / MACHINE).glob(f"{first[:8]}-*.json"):
        shutil.copy(path, machine)
    html = tmp_path / "proj" / "html"
    run_dir = page_dir(html) / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "report.json").write_text(json.dumps(_run_report_document(first)))
    page = write_page(
        PageOptions(results=results, html=html).checked()
    )  # as `loadkit bench` calls it
    assert str(page) == page_link(html)
    tab, errors, outside = _open(chromium, page)

    assert "First results" in tab.locator("#gate").inner_text()
    body = tab.locator("body").inner_text()
    assert "no history" not in body
    latest = tab.locator("td.latest").all_inner_texts()
    assert len(latest) == 5 and "no result" not in latest
    assert "50,000 iterations" in latest and "1000 items/s" in latest
    targets = tab.locator("#run-targets").inner_text()
    assert "p95_ms" in targets and "errors\t0\t<= 0\tpass" in targets
    # The run report comes before the rows on a first run: it is what there is to read.
    order = tab.evaluate(
        "[document.querySelector('#run-targets'), document.querySelector('.suite')]"
        ".map(e => e.getBoundingClientRect().top)"
    )
    assert order[0] < order[1]
    assert tab.locator("svg.spark").count() == 5
    shots = screenshot_dir(tmp_path)
    tab.screenshot(path=str(shots / "history-first-run.png"))
    _expand_a_lazy_plot(tab, "path.newest")  # one commit: a point, no line yet
    assert errors == [] and outside == []
    tab.close()


def test_several_machines_need_a_choice_and_foreign_machine_files_are_skipped(
    project, tmp_path, capsys
):
    results = tmp_path / "results"
    shutil.copytree(project["repo"] / "results", results)
    other = results / "other"
    shutil.copytree(results / MACHINE, other)
    (other / "machine.json").write_text(json.dumps({"machine": "other", "version": 1}))
    assert run_cli(["check", "--results", str(results)]) == 2
    assert "pass --machine" in capsys.readouterr().err
    # The copied files still say they come from e2ebox: none is "other"'s result.
    assert run_cli(["check", "--results", str(results), "--machine", "other"]) == 2
    err = capsys.readouterr().err
    assert f"skipped {COMMITS} files in other/: recorded on another machine" in err
    assert "no readable benchmark results" in err


def test_asv_site_renders_offline_from_loadkit_serve(project, chromium, asv_assets, tmp_path):
    repo = project["repo"]
    html = tmp_path / "html"
    _asv(repo, project["env"], "publish", "--html-dir", str(html))
    env = {**os.environ, "LOADKIT_ASV_ASSETS": str(asv_assets)}
    results = str(repo / "results")
    done = subprocess.run(
        [sys.executable, "-m", "loadkit", "report", "--results", results, "--html", str(html)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    index = (html / "index.html").read_text()
    assert "https://" not in "".join(re.findall(r"<(?:script|link)[^>]*>", index))
    page = Path(page_link(html)).read_text()
    assert 'id="asv-offline"' not in page  # nothing left to warn about
    server = subprocess.Popen(
        [sys.executable, "-m", "loadkit", "serve", "--html", str(html), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = re.match(r"serving http://127\.0\.0\.1:(\d+)/", server.stdout.readline()).group(1)
        tab = chromium.new_page()
        outside: list[str] = []

        def route(request_route: Any) -> None:
            url = request_route.request.url
            if url.startswith(f"http://127.0.0.1:{port}/"):
                request_route.continue_()
            else:
                outside.append(url)
                request_route.abort()

        tab.route("**/*", route)
        tab.goto(f"http://127.0.0.1:{port}/html/index.html")
        tab.wait_for_selector(".benchmark-container", timeout=20_000)
        assert "error.html" not in tab.url  # asv's page for scripts that failed to load
        names = tab.locator(".benchmark-text").all_inner_texts()
        assert any("track_work" in name for name in names), names
        shots = screenshot_dir(tmp_path)
        tab.screenshot(path=str(shots / "asv-offline.png"))
        # The history page links to asv's graph of the same benchmark, on the same server.
        tab.goto(f"http://127.0.0.1:{port}/")
        link = tab.locator("a.asv").first
        link.click()
        tab.wait_for_selector("#graph-display canvas, .graph-container canvas", timeout=20_000)
        assert "machine=e2ebox" in tab.url
        assert outside == []
        tab.close()
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 143
