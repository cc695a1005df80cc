"""The orchestrator: workloads in child processes, deadlines, and the report end to end."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import jsonschema
import psutil
import pytest
from helpers import run_loadkit

from loadkit.redis_io.server import free_port
from loadkit.runs.run_report import schema
from loadkit.supervise.orchestrator import run_child
from loadkit.workloads.fleet.workload import targets as fleet_targets

FLEET_METRICS = (
    "agents_spawned",
    "spawn_avg_ms",
    "spawn_p95_ms",
    "spawn_rate_per_s",
    "allocation_avg_ms",
    "allocation_p95_ms",
    "allocation_p99_ms",
    "autoscale_reaction_s",
    "autoscale_overshoot_ratio",
    "cleanup_leaked_keys",
    "cleanup_leaked_tasks",
    "rss_per_agent_kib",
)


@pytest.mark.slow
def test_run_fleet_quick_end_to_end(tmp_path: Path) -> None:
    """The whole path: embedded Redis, worker child, report files. Figures are not
    judged here (that is the report's job); what is checked is that every metric was
    measured and the correctness figures (counts, leaks) are exact."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep.json").write_text("{}")
    out = run_loadkit(
        "run",
        "fleet",
        "--scale",
        "quick",
        "--json",
        "r.json",
        "--markdown",
        "r.md",
        cwd=tmp_path,
        timeout=150,
    )
    assert out.returncode in (0, 1), out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(report)
    # Exit code 0 exactly when the report passed (1: a target missed).
    assert out.returncode == (0 if report["passed"] else 1)
    fleet = report["workloads"]["fleet"]
    assert fleet["status"] in ("passed", "failed"), fleet["error"]  # it ran to the end
    assert fleet["error"] is None
    metrics = fleet["metrics"]
    missing = [m for m in FLEET_METRICS if metrics.get(m) is None]
    assert missing == []
    assert metrics["agents_spawned"] == 1000
    assert metrics["allocation_completed"] == metrics["allocation_tasks"] > 0
    assert metrics["reclaim_completed"] == metrics["reclaim_tasks"] == 5
    assert metrics["cleanup_leaked_keys"] == 0
    assert metrics["cleanup_leaked_tasks"] == 0
    assert metrics["cleanup_leaked_fds"] == 0
    assert metrics["spawn_avg_ms"] > 0 and metrics["spawn_rate_per_s"] > 0
    assert metrics["allocation_p95_ms"] <= metrics["allocation_p99_ms"]
    assert metrics["autoscale_overshoot_ratio"] > 0
    # Every target of the scale is checked: the ten on the figures and the two ratios
    # to the same run's Redis ceiling.
    assert len(fleet["checks"]) == len(fleet_targets("quick")) == 12
    assert report["scale"] == "quick"
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("# loadkit run report")
    assert f"| fleet | {fleet['status']} |" in md
    assert "| agents_spawned | 1000 |" in md
    assert (tmp_path / "results" / "keep.json").read_text() == "{}"
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_run_child_timeout_kills_the_child(redis_url: str) -> None:
    """A workload that overruns is killed with its process group and reported as a timeout."""
    me = psutil.Process()
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for child in me.children(recursive=True):
                try:
                    if "loadkit.supervise.worker" in " ".join(child.cmdline()):
                        seen.add(child.pid)
                except psutil.Error:
                    pass
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    phases: list[str] = []
    start = time.monotonic()
    try:
        outcome = run_child(
            "fleet", "quick", redis_url, timeout_s=1, on_progress=lambda p, f: phases.append(p)
        )
    finally:
        stop.set()
        watcher.join()
    elapsed = time.monotonic() - start
    assert outcome.status == "timeout"
    assert outcome.metrics is None
    assert outcome.error == "no result within 1 s"
    assert 1 <= outcome.duration_s < 6 and elapsed < 8
    assert seen, "the worker child was never seen running"
    for pid in seen:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
def test_run_child_reports_a_crashing_workload_as_an_error() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    outcome = run_child("fleet", "quick", dead, timeout_s=60)
    assert outcome.status == "error"
    assert outcome.metrics is None
    assert outcome.error is not None and outcome.error.startswith("RedisLost: Redis at")
    assert "\n" not in outcome.error
    assert outcome.duration_s < 30


@pytest.mark.parametrize("scale", ["quick", "full"])
def test_fleet_targets_cover_the_metrics_it_reports(scale: str) -> None:
    from loadkit.workloads.fleet import workload as fleet_workload

    targets = fleet_workload.targets(scale)
    names = [t.metric for t in targets]
    assert len(names) == len(set(names))
    assert targets[0].metric == "agents_spawned"
    assert targets[0].target == fleet_workload.SCALE[scale].agents


def test_fleet_bottlenecks_read_known_shapes() -> None:
    from loadkit.workloads.fleet.workload import bottlenecks

    assert bottlenecks({}) == []
    healthy = {
        "allocation_p50_ms": 2.0,
        "allocation_p99_ms": 4.0,
        "spawn_avg_ms": 3.0,
        "spawn_p95_ms": 6.0,
        "autoscale_reaction_s": 1.0,
        "autoscale_overshoot_ratio": 1.2,
        "cleanup_leaked_keys": 0.0,
        "rss_per_agent_kib": 1.0,
    }
    assert bottlenecks(healthy) == []
    sick = healthy | {
        "allocation_p99_ms": 80.0,
        "cleanup_leaked_keys": 3.0,
        "autoscale_overshoot_ratio": 2.0,
    }
    found = bottlenecks(sick)
    assert len(found) == 3
    assert any("allocation tail" in f for f in found)
    assert any("cleanup_leaked_keys = 3" in f for f in found)
    assert any("overshoots to 2.00x" in f for f in found)
