"""The asv suite itself: it imports and passes ``asv check``, every ``track_`` declares
what it measures, each workload's load runs once per asv run, and ``loadkit bench``'s
run report holds exactly the values asv recorded for the commit.

The end-to-end cases run the real suite (real Redis, sockets, wasmtime) through real
asv at the smoke scale, in a throwaway git repository holding a copy of the suite, so
the repository's own results and ``~/.asv-machine.json`` are never touched.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, child_env, git, loadkit_cmd

from loadkit.asvsuite.recorded import ResultsView, entries, workload_metrics
from loadkit.asvsuite.runner import count_runs
from loadkit.asvsuite.track import discover, track
from loadkit.history.sources.asv_reader import with_declared_directions
from loadkit.runs import workload
from loadkit.runs.declarations import (
    DIRECTIONS,
    HIGHER,
    LOWER,
    UNITS,
    Tracked,
    read_sidecar,
    write_sidecar,
)
from loadkit.runs.direction import Direction, infer_direction

SUITE = REPO / "benchmarks"


def _env(home: Path) -> dict[str, str]:
    env = child_env()
    env["HOME"] = str(home)  # asv's machine file goes here, not into the user's home
    return env


def _all_benchmarks() -> list[str]:
    from asv_runner.discovery import disc_benchmarks

    sys.path.insert(0, str(REPO))
    try:
        return [b.name for b in disc_benchmarks(str(SUITE))]
    finally:
        sys.path.remove(str(REPO))


# --- declarations --------------------------------------------------------------------


@pytest.fixture(scope="module")
def declared() -> list[Tracked]:
    return discover(SUITE)


@pytest.mark.slow
def test_asv_check_finds_no_problems(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "asv", "check", "--python=same"],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout


def test_every_track_declares_its_metric_unit_and_direction(declared: list[Tracked]) -> None:
    tracks = {name for name in _all_benchmarks() if ".track_" in name}
    assert tracks == {t.benchmark for t in declared}
    for t in declared:
        assert t.unit in UNITS and t.direction in DIRECTIONS, t
        assert t.workload in workload.WORKLOADS, t


@pytest.mark.parametrize("name", list(workload.WORKLOADS))
def test_each_workload_runs_once_in_one_shared_setup_cache(
    declared: list[Tracked], name: str
) -> None:
    """One setup_cache key per workload, none shared with another workload: asv runs a
    key's setup_cache once and hands its result to every benchmark with that key."""
    keys = {t.setup_cache_key for t in declared if t.workload == name}
    assert len(keys) == 1 and None not in keys
    others = {t.setup_cache_key for t in declared if t.workload != name}
    assert not keys & others


@pytest.mark.parametrize("scale", workload.SCALES)
def test_asv_records_every_metric_the_targets_check(declared: list[Tracked], scale: str) -> None:
    for name in workload.WORKLOADS:
        tracked = {t.metric for t in declared if t.workload == name}
        needed = {t.metric for t in workload.load(name).targets(scale)}
        assert needed <= tracked, (name, needed - tracked)


def test_declared_directions_are_not_what_names_alone_would_say(declared: list[Tracked]) -> None:
    """Counts that should grow, and stuck clients that must be dropped: the name rule
    calls them lower-is-better; the declaration is what the scoring must use."""
    by_name = {t.benchmark.rsplit(".", 1)[-1]: t for t in declared}
    for method in ("track_agents_spawned", "track_slow_clients_dropped"):
        t = by_name[method]
        assert t.direction == HIGHER
        assert infer_direction(t.benchmark, t.unit) is Direction.LOWER_IS_BETTER
        merged = with_declared_directions({}, {t.benchmark: t})
        assert infer_direction(t.benchmark, t.unit, merged[t.benchmark]["direction"]) is (
            Direction.HIGHER_IS_BETTER
        )


def test_a_track_is_versioned_by_its_declaration() -> None:
    from asv_runner.benchmarks.track import TrackBenchmark

    class Case:
        track_a = track("spawn_p95_ms", "ms", LOWER)
        track_b = track("reclaim_s", "s", LOWER)

    versions = {
        TrackBenchmark(name, getattr(Case(), name), [getattr(Case(), name)]).version
        for name in ("track_a", "track_b")
    }
    assert versions == {"spawn_p95_ms ms lower_is_better", "reclaim_s s lower_is_better"}


def test_track_refuses_units_and_directions_outside_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="unit 'agents/s'"):
        track("spawn_rate_per_s", "agents/s", HIGHER)
    with pytest.raises(ValueError, match="direction 'up'"):
        track("spawn_rate_per_s", "1/s", "up")


def test_the_sidecar_round_trips_and_skips_what_is_not_a_declaration(
    tmp_path: Path, declared: list[Tracked]
) -> None:
    path = write_sidecar(tmp_path, declared)
    assert path.suffix == ".jsonl"  # asv reads every *.json under results/ as results
    assert read_sidecar(tmp_path) == {t.benchmark: t for t in declared}
    with path.open("a") as sidecar:
        sidecar.write('not json\n{"benchmark": "x"}\n[1, 2]\n')
    assert len(read_sidecar(tmp_path)) == len(declared)
    assert read_sidecar(tmp_path / "none") == {}


# --- the run report's mapping, on plain values --------------------------------------


class _Values:
    """What one asv results file says, as plain values."""

    def __init__(self, rows: dict[str, tuple[list[list[str]], list[object]]]) -> None:
        self.rows = rows

    def keys(self) -> list[str]:
        return list(self.rows)

    def values(self, key: str) -> list[tuple[tuple[str, ...], object]]:
        params, values = self.rows[key]
        return list(zip(itertools.product(*params), values, strict=True))

    def duration(self, setup_cache_key: str | None) -> float | None:
        return 12.5 if setup_cache_key == "bench_fleet:1" else None


def _fleet(metric: str, direction: str = LOWER) -> Tracked:
    return Tracked(
        f"bench_fleet.F.track_{metric}",
        "fleet",
        metric,
        "ms",
        direction,
        ("scale",),
        "bench_fleet:1",
    )


def test_recorded_values_become_the_workload_block_at_the_bench_scale() -> None:
    tracked = [_fleet("spawn_p95_ms"), _fleet("reclaim_s"), _fleet("agents_spawned", HIGHER)]
    view = _Values(
        {
            tracked[0].benchmark: ([["'quick'", "'smoke'"]], [250.0, 3.0]),
            tracked[1].benchmark: ([["'smoke'"]], [math.nan]),  # recorded, not measured
            tracked[2].benchmark: ([["'smoke'"]], [200.0]),
        }
    )
    recorded = workload_metrics(view, tracked, "smoke")  # type: ignore[arg-type]
    assert recorded["fleet"].metrics == {
        "spawn_p95_ms": 3.0,
        "reclaim_s": None,
        "agents_spawned": 200.0,
    }
    assert recorded["fleet"].failed == [] and recorded["fleet"].duration_s == 12.5
    blocks, targets = entries(recorded, "smoke")
    block = blocks["fleet"]
    assert block["status"] == "failed"  # most checks have no value: not measured is no pass
    assert block["metrics"]["spawn_p95_ms"] == 3.0 and block["metrics"]["reclaim_s"] is None
    checks = {c["metric"]: c for c in block["checks"]}
    assert checks["agents_spawned"]["passed"] and checks["spawn_p95_ms"]["passed"]
    assert not checks["reclaim_s"]["passed"]
    assert list(targets) == ["fleet"]


def test_a_workload_asv_has_no_value_for_is_an_error() -> None:
    tracked = [_fleet("spawn_p95_ms"), _fleet("reclaim_s")]
    view = _Values({t.benchmark: ([["'quick'"]], [None]) for t in tracked})
    blocks, _ = entries(workload_metrics(view, tracked, "quick"), "quick")  # type: ignore[arg-type]
    assert blocks["fleet"]["status"] == "error"
    assert "failed or timed out" in blocks["fleet"]["error"]
    assert workload_metrics(view, tracked, "full") == {}  # type: ignore[arg-type]


# --- the real suite through real asv --------------------------------------------------


def _suite_copy(root: Path, benchmarks: Path = SUITE) -> Path:
    """A git repository holding the asv config and a copy of a suite (the loadkit it
    benchmarks is the installed one: ``--python=same``)."""
    repo = root / "proj"
    repo.mkdir()
    shutil.copy(REPO / "asv.conf.json", repo / "asv.conf.json")
    shutil.copytree(benchmarks, repo / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.invalid")
    git(repo, "config", "user.name", "bench")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "suite")
    (root / "home").mkdir()
    return repo


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_runs_each_load_once_and_reports_what_asv_recorded(tmp_path: Path) -> None:
    from asv.results import iter_results_for_machine

    repo = _suite_copy(tmp_path)
    out = subprocess.run(
        loadkit_cmd("bench", "--scale", "smoke"),
        cwd=repo,
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=540,
    )
    # 1 when a smoke-scale target is missed on a busy machine; never 2, never a crash.
    assert out.returncode in (0, 1), out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert "scenario runs in this asv run: fleet 1, swarm 1, dashboard 1, wasm 1" in out.stderr

    commit = git(repo, "rev-parse", "HEAD")
    results_dir = repo / "results"
    (machine,) = [p.parent.name for p in results_dir.glob("*/machine.json")]
    (result,) = [r for r in iter_results_for_machine(str(results_dir), machine)]
    assert result.commit_hash == commit
    # Every benchmark of the suite ran and has a value: a broken one fails here.
    names = set(_all_benchmarks())
    assert set(result.get_all_result_keys()) == names
    for name in names:
        values = result.get_result_value(name, result.get_result_params(name))
        assert all(v is not None for v in values), name

    report = json.loads((repo / "html-loadkit" / "run" / "report.json").read_text())
    assert report["commit"] == commit and report["scale"] == "smoke"
    assert out.returncode == (0 if report["passed"] else 1)
    declared = read_sidecar(results_dir)
    compared = 0
    for t in declared.values():
        for combo, value in ResultsView(result).values(t.benchmark):
            shown = report["workloads"][t.workload]["metrics"][t.metric_for(combo)]
            if isinstance(value, float) and math.isnan(value):
                assert shown is None
            else:
                assert shown == value, (t.benchmark, shown, value)
            compared += 1
    assert compared >= len(declared) >= 60
    for name, block in report["workloads"].items():
        assert block["status"] in ("passed", "failed"), (name, block["error"])
        assert block["duration_s"] > 0
    assert (repo / "html-loadkit" / "run" / "plots" / "wasm-speedup.png").is_file()

    scored = tmp_path / "check.json"
    subprocess.run(
        loadkit_cmd("check", "--results", str(results_dir), "--json", str(scored)),
        cwd=repo,
        env=_env(tmp_path / "home"),
        capture_output=True,
        timeout=120,
    )
    series = {s["name"]: s for s in json.loads(scored.read_text())["series"]}
    spawned = series["bench_fleet.FleetSpawn.track_agents_spawned(scale='smoke')"]
    assert spawned["direction"] == "higher_is_better"  # declared; the name says nothing


def test_bench_exits_1_with_one_line_when_the_suite_does_not_import(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "bench_bad.py").write_text("import no_such_module_anywhere\n")
    repo = _suite_copy(tmp_path, suite)
    out = subprocess.run(
        loadkit_cmd("bench"),
        cwd=repo,
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "does not import" in out.stderr, out.stderr
    assert "no_such_module_anywhere" in out.stderr
    assert not (repo / "results").exists()  # nothing ran, nothing written


def test_scenario_runs_are_counted_from_the_log(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    log.write_text('{"workload": "fleet"}\n{"workload": "wasm"}\nnot json\n{"workload": "fleet"}\n')
    assert count_runs(log) == {"fleet": 2, "wasm": 1}
    assert count_runs(tmp_path / "missing") == {}


AA_SUITE = """\
from pathlib import Path

from loadkit.suite import LOWER, track

COUNTER = Path({counter!r})


class Run:
    workload = "fake"
    number = 1
    repeat = 1
    rounds = 1
    warmup_time = 0

    def setup_cache(self):
        runs = int(COUNTER.read_text()) if COUNTER.exists() else 0
        COUNTER.write_text(str(runs + 1))
        return {{"steady_ms": 5.0, "noisy_ms": 100.0 * 1.3**runs, "redeliveries": 3.0 + runs}}

    track_steady = track("steady_ms", "ms", LOWER)
    track_noisy = track("noisy_ms", "ms", LOWER)
    track_redeliveries = track(
        "redeliveries", "count", LOWER, informational="at-least-once: redelivery is by design"
    )
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_aa_study_prints_each_figures_spread_and_what_its_role_allows(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "bench_aa.py").write_text(AA_SUITE.format(counter=str(tmp_path / "runs.txt")))
    repo = _suite_copy(tmp_path, suite)
    out = subprocess.run(
        loadkit_cmd("bench", "--aa", "2", "--json", str(tmp_path / "aa.json")),
        cwd=repo,
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("A/A run ") == 2 and "load average" in out.stderr
    study = json.loads((tmp_path / "aa.json").read_text())
    assert len(study["runs"]) == 2 and all(r["seconds"] > 0 for r in study["runs"])
    figures = {f["name"].rsplit(".", 1)[1]: f for f in study["figures"]}
    assert figures["track_steady"]["spread"] == 0.0
    assert figures["track_steady"]["verdict"] == "ok"
    assert figures["track_noisy"]["values"] == [100.0, 130.0]
    assert figures["track_noisy"]["spread"] == pytest.approx(math.log(1.3) / math.sqrt(2))
    assert figures["track_noisy"]["verdict"] == "too noisy"
    assert figures["track_noisy"]["effect_5"] < figures["track_noisy"]["effect_1"]
    assert figures["track_redeliveries"]["verdict"] == "not gated"
    assert not (repo / "html").exists()  # a study publishes nothing


def test_bench_refuses_a_study_of_one_run_and_a_table_without_a_study(tmp_path: Path) -> None:
    for args, said in ((["--aa", "1"], "2-50 runs"), (["--json", "t.json"], "use it with --aa")):
        out = subprocess.run(
            loadkit_cmd("bench", *args), capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert out.returncode == 2 and said in out.stderr, out.stderr
