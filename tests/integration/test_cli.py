"""The command line on bad input: one line on stderr, exit code 2, no traceback, and
nothing the user already had is deleted. Plus the ``agents`` and ``redis`` commands.

The error cases run through the ``loadkit`` console script, each in its own process; they
are started all at once by a module fixture (each costs an interpreter start-up) and
checked one by one.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis
from helpers import child_env, loadkit_cmd, run_loadkit

from loadkit.redis_io.server import free_port

PRECIOUS = "precious user data\n"


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    workdir: Path


CASES: dict[str, tuple[list[str], list[str]]] = {
    # name: (arguments, what the one-line message must name); DEAD is replaced by a
    # loopback URL where nothing listens.
    "unknown_workload": (
        ["run", "nosuch", "--json", "out/report.json"],
        ["unknown workload", "'nosuch'", "fleet"],
    ),
    "unknown_second_workload": (["run", "fleet", "nosuch2"], ["'nosuch2'"]),
    "negative_count": (["agents", "--redis-url", "DEAD", "--count", "-5"], ["--count", "-5"]),
    "zero_count": (["agents", "--redis-url", "DEAD", "--count", "0"], ["--count", "0"]),
    "count_not_a_number": (
        ["agents", "--redis-url", "DEAD", "--count", "many"],
        ["--count", "many"],
    ),
    "run_dead_redis": (
        [
            *("run", "fleet", "--redis-url", "DEAD"),
            *("--json", "out/report.json", "--markdown", "out/report.md"),
        ],
        ["does not answer", "127.0.0.1"],
    ),
    "agents_dead_redis": (["agents", "--redis-url", "DEAD", "--count", "5"], ["does not answer"]),
    "remote_redis": (
        ["run", "fleet", "--redis-url", "redis://10.0.0.1:6379/0"],
        ["refusing non-loopback", "LOADKIT_ALLOW_REMOTE"],
    ),
    "not_a_redis_url": (
        ["agents", "--redis-url", "http://127.0.0.1:6379", "--count", "1"],
        ["not a Redis URL"],
    ),
    "huge_scale": (
        ["run", "fleet", "--scale", "huge", "--json", "out/report.json"],
        ["--scale", "huge"],
    ),
    "zero_timeout": (["run", "fleet", "--timeout", "0"], ["--timeout", "must be > 0"]),
    "json_is_a_directory": (["run", "fleet", "--json", "out"], ["is a directory"]),
    "corrupt_baseline": (
        ["run", "fleet", "--baseline", "base.json", "--json", "out/report.json"],
        ["base.json", "not readable JSON"],
    ),
    "missing_baseline": (["run", "fleet", "--baseline", "nope.json"], ["not found", "nope.json"]),
    "no_command": ([], ["required"]),
}


def _args(case: str, dead_url: str) -> list[str]:
    return [dead_url if a == "DEAD" else a for a in CASES[case][0]]


def _user_files(workdir: Path) -> Path:
    """What a user may already have: earlier reports, asv results, a baseline."""
    (workdir / "out").mkdir()
    (workdir / "out" / "report.json").write_text(PRECIOUS)
    (workdir / "out" / "report.md").write_text(PRECIOUS)
    (workdir / "results").mkdir()
    (workdir / "results" / "machine.json").write_text(PRECIOUS)
    (workdir / "html").mkdir()
    (workdir / "html" / "index.html").write_text(PRECIOUS)
    (workdir / "base.json").write_text('{"schema": "loadkit.report/1", "workloads": [')
    return workdir


def _check(outcome: Outcome, case: str) -> None:
    assert outcome.returncode == 2, outcome
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert lines[0].startswith("loadkit")
    for name in CASES[case][1]:
        assert name in lines[0]
    assert outcome.stdout == ""
    # Nothing the user had was touched, and no half-written report appeared.
    workdir = outcome.workdir
    for path in ("out/report.json", "out/report.md", "results/machine.json", "html/index.html"):
        assert (workdir / path).read_text() == PRECIOUS, path
    assert sorted(p.name for p in (workdir / "out").iterdir()) == ["report.json", "report.md"]


@pytest.fixture(scope="module")
def dead_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


@pytest.fixture(scope="module")
def cli_errors(tmp_path_factory: pytest.TempPathFactory, dead_url: str) -> dict[str, Outcome]:
    """The subprocess cases, started all at once and then collected."""
    procs = {}
    for case in CASES:
        workdir = _user_files(tmp_path_factory.mktemp(case))
        proc = subprocess.Popen(
            loadkit_cmd(*_args(case, dead_url)),
            cwd=workdir,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs[case] = (proc, workdir)
    outcomes = {}
    for case, (proc, workdir) in procs.items():
        out, err = proc.communicate(timeout=60)
        outcomes[case] = Outcome(proc.returncode, out, err, workdir)
    return outcomes


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_through_the_command(cli_errors: dict[str, Outcome], case: str) -> None:
    _check(cli_errors[case], case)


def test_usage_error_names_every_workload(dead_url: str, tmp_path: Path) -> None:
    out = run_loadkit("run", "nosuch", cwd=tmp_path)
    from loadkit.runs.workload import WORKLOADS

    assert out.returncode == 2
    assert out.stderr == (
        f"loadkit: error: unknown workload 'nosuch'; available: {', '.join(WORKLOADS)}\n"
    )


def test_agents_command_stops_by_itself_and_cleans_up(redis_url: str, fleet_name: str) -> None:
    out = run_loadkit(
        "agents",
        "--redis-url",
        redis_url,
        "--fleet",
        fleet_name,
        "--count",
        "5",
        "--duration",
        "0.3",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("hosting 5 agents as ") and f"in fleet '{fleet_name}'" in lines[0]
    assert lines[-1] == "stopped: 0 tasks completed, 0 handed back"
    client = redis.Redis.from_url(redis_url)
    try:
        # Nothing was submitted, so once the agents are gone the fleet has no keys at all.
        assert list(client.scan_iter(match="{fleet:" + fleet_name + "}:*")) == []
    finally:
        client.close()


def test_redis_command_prints_a_url_that_answers_and_stops() -> None:
    proc = subprocess.Popen(
        loadkit_cmd("redis", "--duration", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(url)
        try:
            assert client.ping()
            server_pid = int(client.info("server")["process_id"])
        finally:
            client.close()
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert not psutil.pid_exists(server_pid) or (
        psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE
    )


def test_baseline_with_the_wrong_shape_fails_before_running(tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"schema": "loadkit.report/1", "workloads": []}))
    # The baseline is read before anything runs: the (refused) Redis is never reached.
    out = run_loadkit("run", "fleet", "--redis-url", "redis://10.9.9.9:1", "--baseline", str(base))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "corrupt" in out.stderr
