"""The dashboard load test's machinery: clients in another process really measure, the
workload reports every metric it promises, the plot is written, the CLI serves."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import REPORTED_METRICS, run_loadkit, start_dashboard

from loadkit.common.errors import UsageError
from loadkit.runs.trials import TrialPlan
from loadkit.workloads.dashboard.app import DashboardOptions, _config
from loadkit.workloads.dashboard.loadclient import raise_nofile
from loadkit.workloads.dashboard.plot import plot_latency_histogram
from loadkit.workloads.dashboard.scenarios import LoadPlan, measure_dashboard, round_blocks

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_small_load_run_measures_what_it_claims() -> None:
    plan = LoadPlan(
        clients=60,
        agents=1000,  # a snapshot bigger than a stuck client's buffers
        pollers=2,
        poll_interval_s=0.2,
        rounds=12,
        round_interval_s=0.1,
        stuck_clients=2,
        max_buffer_bytes=16 * 1024,
        send_buffer_bytes=8 * 1024,
        workers=2,
        keyframe_every=5,
        trials=TrialPlan(kept=2, warmup=1),
    )
    phases: list[str] = []
    started = time.monotonic()
    metrics, latencies, samples = asyncio.run(
        asyncio.wait_for(measure_dashboard(plan, lambda p, f: phases.append(p)), 90)
    )
    elapsed_s = time.monotonic() - started
    assert metrics.keys() >= REPORTED_METRICS
    assert metrics["ws_connections"] == metrics["ws_connected_clients"] == 60
    # Every client got (almost) every steady-phase round: the samples are real receipts.
    assert 60 * (plan.rounds - 1) <= latencies.size <= 60 * plan.rounds
    assert np.all(latencies >= 0)
    assert metrics["ws_latency_p50_ms"] <= metrics["ws_latency_p99_ms"]
    # The last client of a round has it no sooner than the median message arrives.
    assert metrics["broadcast_all_received_p99_ms"] >= metrics["ws_latency_p50_ms"]
    assert metrics["slow_clients_dropped"] == metrics["stuck_clients_seen_dropped"] == 2
    assert metrics["reconnect_ratio"] == 1.0
    assert 0 < metrics["reconnect_p95_s"] < 5
    assert metrics["messages_missed"] == 0
    # Every client's board, built from deltas and keyframes, is the publisher's.
    assert metrics["boards_wrong"] == 0
    assert metrics["worker0_ws_connections"] + metrics["worker1_ws_connections"] == 60
    assert metrics["worker0_ws_latency_p99_ms"] > 0 and metrics["worker1_ws_latency_p99_ms"] > 0
    assert metrics["poll_requests"] > 0 and metrics["poll_errors"] == 0
    # The age of the data a poller saw is in seconds and no older than the run itself
    # (how fresh it is is the benchmark's business, not this test's).
    assert 0 < metrics["poll_refresh_s"] < elapsed_s
    assert metrics["memory_per_connection_kib"] > 0
    assert all(math.isfinite(v) for v in metrics.values())
    assert phases[0] == "connect" and phases[-1] == "done"
    # Steady figures are the median of the kept blocks of rounds, whose values are kept.
    assert samples.keys() >= {"ws_latency_p99_ms", "poll_latency_p95_ms", "raw_latency_p99_ms"}
    for name, values in samples.items():
        assert len(values) == 2 and metrics[name] == pytest.approx(float(np.median(values)))
    # The plain-websockets ceiling reached its own clients, and the ratio is its own.
    assert metrics["raw_latency_p99_ms"] > 0
    assert metrics["ws_latency_p99_ceiling_ratio"] == pytest.approx(
        float(
            np.median(
                [
                    a / b
                    for a, b in zip(
                        samples["ws_latency_p99_ms"], samples["raw_latency_p99_ms"], strict=True
                    )
                ]
            )
        )
    )


def test_rounds_are_cut_into_the_plans_blocks_or_refused() -> None:
    blocks = round_blocks(50, TrialPlan(kept=5, warmup=1))
    assert [len(b) for b in blocks] == [8, 9, 8, 8, 9, 8]
    assert blocks[0].start == 0 and blocks[-1].stop == 50
    assert all(a.stop == b.start for a, b in itertools.pairwise(blocks))
    with pytest.raises(UsageError, match="cannot make 6 blocks"):
        round_blocks(5, TrialPlan(kept=5, warmup=1))


def test_latency_histogram_is_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = plot_latency_histogram(rng.lognormal(3, 0.5, 5000), tmp_path / "sub" / "h.png")
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="no latency samples"):
        plot_latency_histogram([], tmp_path / "empty.png")


def test_open_file_limit_is_raised_or_refused_clearly() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_nofile(min(soft, 100)) >= min(soft, 100)
    if hard != resource.RLIM_INFINITY:
        with pytest.raises(UsageError, match="ulimit -Hn"):
            raise_nofile(hard + 1)


def test_cli_config_needs_a_token_off_loopback() -> None:
    local, generated = _config(DashboardOptions(token=None, host="127.0.0.1", port=0))
    assert local.token is None and not generated
    remote, generated = _config(DashboardOptions(token=None, host="0.0.0.0", port=0))
    assert generated and remote.token and len(remote.token) >= 20
    chosen, generated = _config(DashboardOptions(token="mine", host="0.0.0.0", port=0))
    assert chosen.token == "mine" and not generated


@pytest.mark.slow
def test_cli_serves_the_page_of_a_simulated_fleet_and_stops_by_itself() -> None:
    proc = start_dashboard("--simulate", "--agents", "40", "--port", "0", "--duration", "2")
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        with urllib.request.urlopen(url.group(0) + "api/snapshot", timeout=5) as resp:
            snapshot = json.loads(resp.read())
        assert len(snapshot["agents"]) == 40
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_cli_shows_a_real_fleet_on_redis(redis_url: str) -> None:
    """Default mode: real agents of loadkit.workloads.fleet under load, sampled into the board."""
    proc = start_dashboard(
        "--agents", "30", "--port", "0", "--duration", "5", "--redis-url", redis_url
    )
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/", proc.stdout.readline())
        assert url
        seen: set[str] = set()
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url.group(0) + "api/snapshot", timeout=5) as resp:
                snapshot = json.loads(resp.read())
            seen |= set(snapshot["agents"].values())
            if "busy" in seen and snapshot["stats"]["completed"] > 0:
                break
            time.sleep(0.2)
        assert len(snapshot["agents"]) == 30
        assert "busy" in seen  # tasks really run on the agents
        assert snapshot["stats"]["completed"] > 0  # ... and finish, counted by the board
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "port must be 0-65535"),
        (["--agents", "0"], "must be >= 1"),
        (["--fleet", "f1"], "--fleet watches a fleet on an existing Redis"),
        (["--simulate", "--workers", "0"], "must be >= 1"),
        (["--simulate", "--workers", "x"], "an integer"),
    ],
)
def test_cli_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    proc = start_dashboard(*args)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_cli_refuses_a_port_in_use(workers: list[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = start_dashboard("--simulate", *workers, "--port", port, "--duration", "5")
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert f"port {port} is in use" in err and "Traceback" not in err


@pytest.mark.slow
def test_loadkit_run_dashboard_quick_reports_every_metric(tmp_path: Path) -> None:
    """1000 clients, every metric, the histogram beside the report."""
    report_path = tmp_path / "r.json"
    done = run_loadkit(
        "run", "dashboard", "--scale", "quick", "--json", str(report_path), timeout=150
    )
    report = json.loads(report_path.read_text())
    block = report["workloads"]["dashboard"]
    assert block["status"] in ("passed", "failed"), (block["error"], done.stderr[-2000:])
    assert block["metrics"].keys() >= REPORTED_METRICS
    assert block["metrics"]["ws_connections"] == 1000
    plot = block["artifacts"]["latency histogram"]
    assert (tmp_path / plot).read_bytes()[:8] == PNG
    assert done.returncode == (0 if report["passed"] else 1)
