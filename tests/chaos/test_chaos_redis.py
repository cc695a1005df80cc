"""Chaos against the Redis loadkit uses: runs that fail, time out or are killed leave none
of their keys behind and never touch anyone else's; a Redis that stops answering is
noticed within 5 s by every workload; ``loadkit clean`` deletes only loadkit's leftovers.

Every test has its own real ``redis-server`` (it is paused with SIGSTOP or killed with
SIGKILL), seeded with foreign keys - some shaped like loadkit's - that must survive
byte for byte. The runs are real ``loadkit`` processes stopped with real signals.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from helpers import child_env, loadkit_cmd, run_loadkit, wait_for, workload_outcome

from loadkit.redis_io.keyspace import group_keys, leftover_namespaces, purge_run, run_namespaces
from loadkit.redis_io.run_cleanup import clean_run
from loadkit.redis_io.server import RedisServer
from loadkit.runtime.lifetime import ended

# Keys a user might have, some named like loadkit's on purpose: none may change.
FOREIGN: dict[str, str] = {
    "user:config": "keep",
    "{fleet:users}:profile": "mine",
    "{fleet:bench-xyz}:agents": "not a run id",
    "lkqueue": "x",
    "lk:{swarm:1}:stream": "no run id",
    "lkabcdef-:{swarm:1}:state": "empty part",
    "lk12345:{swarm:2}:lease": "five hex digits",
}
NOTICE_S = 5.0  # Redis loss must be reported within this


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv
        # a test that failed mid-pause must not leave a stopped server behind
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(srv.pid, signal.SIGCONT)


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis(port=server.port, decode_responses=True)
    c.mset(FOREIGN)
    yield c
    c.close()


def loadkit_keys(c: redis.Redis) -> list[str]:
    return sorted(k for k in c.scan_iter(count=1000) if k not in FOREIGN)


def assert_foreign_intact(c: redis.Redis) -> None:
    assert dict(zip(FOREIGN, c.mget(list(FOREIGN)), strict=True)) == FOREIGN


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        loadkit_cmd(*args),
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def worker_of(proc: subprocess.Popen[str]) -> psutil.Process:
    found: list[psutil.Process] = []

    def seen() -> bool:
        found[:] = [
            p
            for p in psutil.Process(proc.pid).children()
            if "loadkit.supervise.worker" in p.cmdline()
        ]
        return bool(found)

    wait_for(seen, 10, "the worker process")
    return found[0]


def run_id_of(worker: psutil.Process) -> str:
    argv = worker.cmdline()
    return argv[argv.index("--run-id") + 1]


def workload_block(path: Path, name: str) -> dict[str, object]:
    return json.loads(path.read_text())["workloads"][name]


# -- pure key ownership ----------------------------------------------------------------


def test_only_run_shaped_prefixes_are_loadkit_s() -> None:
    ours = [
        "{fleet:lk3f9a1c-bench}:agents",
        "{fleet:lk3f9a1c-cycle-2}:hosts",
        "{fleet:bench-3f9a1c}:queue",
        "lk3f9a1c:{swarm:7}:stream",
        "lk3f9a1c-fence:{swarm:0}:lease",
        "lk3f9a1c-2-ceiling:{swarm:5}:stream",  # a saturation trial's scratch stream
    ]
    groups = group_keys([*ours, *FOREIGN], leftover_namespaces())
    assert sorted(k for keys in groups.values() for k in keys) == sorted(ours)
    assert "{fleet:lk3f9a1c-bench}" in groups and "lk3f9a1c-fence:{swarm:*}" in groups
    # one run's namespaces do not reach another run's keys
    mine = group_keys([*ours, "lk000000:{swarm:1}:stream"], run_namespaces("lk3f9a1c"))
    assert "lk000000:{swarm:1}:stream" not in [k for keys in mine.values() for k in keys]


def test_a_runs_purge_takes_a_trials_scratch_streams_and_nothing_else(
    server: RedisServer, client: redis.Redis
) -> None:
    """A swarm run stopped during a saturation trial's XADD ceiling leaves that trial's
    scratch streams; deleting the run's keys must take them too."""
    client.xadd("lk3f9a1c-2-ceiling:{swarm:5}:stream", {"m": "x"})
    client.xadd("lk3f9a1c:{swarm:5}:stream", {"m": "x"})
    assert purge_run(server.url, "lk3f9a1c").deleted == 2
    assert sorted(client.keys("*")) == sorted(FOREIGN)


# -- failed, timed-out and killed runs ---------------------------------------------------


@pytest.mark.slow
def test_fleet_notices_a_paused_redis_and_leaves_no_keys(
    server: RedisServer, client: redis.Redis, tmp_path: Path
) -> None:
    """SIGSTOP of Redis for 10 s mid-run: the worker reports the loss within 5 s, the
    parent deletes the run's keys once Redis is back."""
    report = tmp_path / "r.json"
    proc = start("run", "fleet", "--redis-url", server.url, "--json", str(report))
    worker = worker_of(proc)
    wait_for(lambda: len(loadkit_keys(client)) > 10, 15, "the fleet's keys")
    os.kill(server.pid, signal.SIGSTOP)
    paused = time.monotonic()
    try:
        worker.wait(NOTICE_S + 2)
        noticed = time.monotonic() - paused
    finally:
        time.sleep(max(0.0, 10 - (time.monotonic() - paused)))
        os.kill(server.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, workload_outcome(report, err)
    assert noticed <= NOTICE_S + 1  # the worker's loss detection plus its exit
    block = workload_block(report, "fleet")
    assert block["status"] == "error"
    assert "\n" not in str(block["error"])
    assert re.search(r"RedisLost|Redis at 127\.0\.0\.1:\d+", str(block["error"]))
    assert loadkit_keys(client) == []
    assert_foreign_intact(client)


@pytest.mark.slow
def test_swarm_timeout_leaves_no_keys(
    server: RedisServer, client: redis.Redis, tmp_path: Path
) -> None:
    """``--timeout`` kills the worker's whole process group mid-run; the parent then
    deletes the run's keys by its prefix."""
    report = tmp_path / "r.json"
    proc = start("run", "swarm", "--redis-url", server.url, "--timeout", "5", "--json", str(report))
    wait_for(lambda: len(loadkit_keys(client)) > 100, 15, "the swarms' keys")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, workload_outcome(report, err)
    assert workload_block(report, "swarm")["status"] == "timeout"
    assert loadkit_keys(client) == []
    assert_foreign_intact(client)


@pytest.mark.slow
def test_swarm_notices_a_killed_redis_within_5_s(server: RedisServer, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = start("run", "swarm", "--redis-url", server.url, "--json", str(report))
    worker = worker_of(proc)
    c = redis.Redis(port=server.port)
    wait_for(lambda: c.dbsize() > 100, 15, "the swarms' keys")
    c.close()
    server.kill()
    killed = time.monotonic()
    worker.wait(NOTICE_S + 5)
    noticed = time.monotonic() - killed
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, workload_outcome(report, err)
    assert noticed <= NOTICE_S + 1
    block = workload_block(report, "swarm")
    assert block["status"] == "error"
    assert "\n" not in str(block["error"]) and "Redis" in str(block["error"])


def test_sigterm_of_run_deletes_its_keys(server: RedisServer, client: redis.Redis) -> None:
    proc = start("run", "fleet", "--redis-url", server.url)
    worker_of(proc)
    wait_for(lambda: len(loadkit_keys(client)) > 10, 15, "the fleet's keys")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 143
    assert loadkit_keys(client) == []
    assert_foreign_intact(client)


@pytest.mark.slow
def test_sigkill_of_run_is_cleaned_by_run_id_and_by_loadkit_clean(
    server: RedisServer, client: redis.Redis
) -> None:
    """A run whose every process is SIGKILLed at once - its guard process too, so
    nothing is left to clean up after it - keeps its keys: they are deleted by the run id
    (``clean_run``), and ``loadkit clean`` finds any run's leftovers."""
    proc = start("run", "fleet", "--redis-url", server.url)
    worker = worker_of(proc)
    run_id = run_id_of(worker)
    wait_for(lambda: len(loadkit_keys(client)) > 10, 15, "the fleet's keys")
    (guard,) = [
        p for p in psutil.Process(proc.pid).children() if "loadkit.supervise.guard" in p.cmdline()
    ]
    guard.kill()
    wait_for(lambda: ended(guard), 5, "the guard's end")
    os.killpg(worker.pid, signal.SIGKILL)
    proc.kill()
    proc.wait(5)
    worker.wait(5)
    left = loadkit_keys(client)
    assert left and all(run_id in k for k in left)

    dry = run_loadkit("clean", "--redis-url", server.url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"{{fleet:{run_id}-bench}}" in dry.stdout and "dry run" in dry.stdout
    assert loadkit_keys(client) == left  # a dry run deletes nothing

    # another run's keys, as a killed run of an earlier release would leave them
    client.set("{fleet:bench-a1b2c3}:counters", "1")
    assert clean_run(server.url, run_id) is None
    assert loadkit_keys(client) == ["{fleet:bench-a1b2c3}:counters"]

    real = run_loadkit("clean", "--redis-url", server.url)
    assert real.returncode == 0, real.stderr
    assert "{fleet:bench-a1b2c3}" in real.stdout and "deleted 1 key" in real.stdout
    assert loadkit_keys(client) == []
    assert_foreign_intact(client)
    again = run_loadkit("clean", "--redis-url", server.url)
    assert again.returncode == 0 and "no loadkit keys" in again.stdout


def test_clean_refuses_a_remote_redis() -> None:
    out = run_loadkit("clean", "--redis-url", "redis://192.0.2.1:6379/0", "--dry-run")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_dashboard_notices_a_paused_redis_and_deletes_its_fleet(
    server: RedisServer, client: redis.Redis
) -> None:
    proc = start("dashboard", "--redis-url", server.url, "--agents", "20", "--port", "0")
    wait_for(lambda: len(loadkit_keys(client)) > 5, 15, "the dashboard fleet's keys")
    os.kill(server.pid, signal.SIGSTOP)
    paused = time.monotonic()
    try:
        proc.wait(NOTICE_S + 3)  # noticed, then waits for Redis to delete its keys
        pytest.fail("the dashboard ended before Redis came back: its keys stay")
    except subprocess.TimeoutExpired:
        pass
    finally:
        os.kill(server.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, err
    line = [x for x in err.splitlines() if "error" in x]
    assert line and "Redis" in line[-1]
    assert time.monotonic() - paused < 15
    assert loadkit_keys(client) == []
    assert_foreign_intact(client)


@pytest.mark.slow
def test_agents_notice_a_killed_redis_within_5_s(server: RedisServer) -> None:
    proc = start("agents", "--redis-url", server.url, "--fleet", "watched", "--count", "20")
    wait_for(lambda: proc.stdout is not None and "hosting" in proc.stdout.readline(), 15, "agents")
    server.kill()
    killed = time.monotonic()
    _, err = proc.communicate(timeout=NOTICE_S + 5)
    # noticed within 5 s, then up to 1 s trying to deregister from a server that refuses
    assert time.monotonic() - killed <= NOTICE_S + 2
    assert proc.returncode == 1, err
    errors = [x for x in err.splitlines() if "error" in x]
    assert len(errors) == 1 and "Redis" in errors[0]
