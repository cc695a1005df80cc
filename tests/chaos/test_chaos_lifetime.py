"""Nothing of a loadkit command survives it: stopped by SIGTERM, SIGINT or SIGKILL in the
middle of a run, ``loadkit run`` and ``loadkit dashboard`` leave no process, no temp
folder and no key of theirs; ``loadkit redis`` leaves no folder and says when its server
died; exit codes are loadkit's everywhere.

Real ``loadkit`` processes, real signals, a real ``redis-server`` owned by each test and
seeded with keys that must survive. Each command runs with a private ``$TMPDIR``, so the
temp-folder checks are exact, and a private environment variable that every process it
starts inherits, so its processes are found wherever they were reparented to.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import redis
from helpers import child_env, loadkit_cmd

from loadkit.asvsuite.bench import asv_exit_code, job_exit_code
from loadkit.common.errors import Interrupted, exit_code_of
from loadkit.redis_io.server import RedisServer
from loadkit.runtime import lifetime

pytestmark = pytest.mark.slow  # real runs stopped by real signals

MARK = "LOADKIT_LIFETIME_PROBE"
GONE_WITHIN_S = 2.0  # every process of a stopped command is gone within this
WATCH_S = 15.0  # how long the tests look before calling something left behind
FOREIGN = {"user:config": "keep", "{fleet:users}:profile": "mine", "lk:{swarm:1}:x": "no run"}


@dataclass
class Command:
    """One ``loadkit`` process with its private TMPDIR and probe, and every process it
    has been seen to start."""

    args: tuple[str, ...]
    tmp: Path
    proc: subprocess.Popen[str] = field(init=False)
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def start(self) -> Command:
        env = child_env() | {"TMPDIR": str(self.tmp), MARK: self.tmp.name}
        self.proc = subprocess.Popen(
            loadkit_cmd(*self.args),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.seen[self.proc.pid] = psutil.Process(self.proc.pid)
        return self

    def alive(self) -> list[psutil.Process]:
        """Processes of this command that have not ended: every one seen so far (a
        redis-server rewrites its environment, so it is known by having been seen as a
        descendant) and any that carries the probe."""
        with contextlib.suppress(psutil.Error):
            for child in self.seen[self.proc.pid].children(recursive=True):
                self.seen.setdefault(child.pid, child)
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if p.pid not in self.seen and p.environ().get(MARK) == self.tmp.name:
                    self.seen[p.pid] = p
        return [p for p in self.seen.values() if not lifetime.ended(p)]

    def left_in_tmp(self) -> list[str]:
        return sorted(os.listdir(self.tmp))


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    # Short on purpose: a worker's multiprocessing socket lives two folders below it.
    path = Path(tempfile.mkdtemp(prefix="lk"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis(port=server.port, decode_responses=True)
    c.mset(FOREIGN)
    yield c
    c.close()


@pytest.fixture
def launch(private_tmp: Path) -> Iterator[Callable[..., Command]]:
    started: list[Command] = []

    def launch(*args: str) -> Command:
        started.append(Command(args, private_tmp).start())
        return started[-1]

    yield launch
    for cmd in started:  # a failed test must not leave load running on a shared machine
        for p in cmd.alive():
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            cmd.proc.communicate(timeout=10)


def their_keys(c: redis.Redis) -> list[str]:
    return sorted(k for k in c.scan_iter(count=1000) if k not in FOREIGN)


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll until true; returns the seconds it took, fails the test naming ``what``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"no {what} within {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - start


def stop_and_measure(cmd: Command, sig: int) -> tuple[float, int | None]:
    """Send ``sig`` to the command; seconds until its last process ended, and its exit
    status (negative: killed by that signal)."""
    cmd.alive()  # everything started so far is known before the signal
    os.kill(cmd.proc.pid, sig)
    sent = time.monotonic()
    wait_until(lambda: not cmd.alive(), WATCH_S, "end of every process of the command")
    gone_s = time.monotonic() - sent
    cmd.proc.communicate(timeout=10)
    return gone_s, cmd.proc.returncode


def assert_clean(cmd: Command, c: redis.Redis | None, what: str, gone_s: float) -> None:
    # The guard of a SIGKILLed command removes its folders as its last act, so they are
    # gone once its processes are; a moment is allowed for a slow rmtree.
    left = cmd.left_in_tmp()
    keys = their_keys(c) if c is not None else []
    print(f"{what}: last process gone after {gone_s:.2f} s, left {left} and {len(keys)} keys")
    assert gone_s <= GONE_WITHIN_S, f"{what}: processes lived {gone_s:.2f} s after the signal"
    assert left == [], f"{what}: left {left} in TMPDIR"
    if c is not None:
        assert keys == [], f"{what}: left {len(keys)} keys, e.g. {keys[:3]}"
        assert dict(zip(FOREIGN, c.mget(list(FOREIGN)), strict=True)) == FOREIGN


EXPECTED = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGHUP: 129, signal.SIGKILL: -9}


# -- loadkit run -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workload", "sig"),
    [
        ("swarm", signal.SIGTERM),
        ("swarm", signal.SIGINT),
        ("swarm", signal.SIGKILL),
        ("fleet", signal.SIGTERM),
        ("fleet", signal.SIGKILL),
    ],
    ids=lambda v: v.name if isinstance(v, signal.Signals) else v,
)
def test_a_stopped_run_leaves_no_process_folder_or_key(
    launch: Callable[..., Command],
    server: RedisServer,
    client: redis.Redis,
    workload: str,
    sig: signal.Signals,
) -> None:
    cmd = launch("run", workload, "--redis-url", server.url)
    # Mid-run: the run's keys are there and, for a swarm, its forkserver's children run
    # (parent, guard, worker, forkserver, resource tracker, swarm processes).
    least = 6 if workload == "swarm" else 3
    wait_until(
        lambda: len(their_keys(client)) > 20 and len(cmd.alive()) >= least,
        30,
        f"{workload} under way",
    )
    if workload == "swarm":  # multiprocessing's folder is inside the run's own
        assert list(cmd.tmp.glob("loadkit-run-*/pymp-*")), cmd.left_in_tmp()
    gone_s, code = stop_and_measure(cmd, sig)
    assert code == EXPECTED[sig], cmd.proc.stderr
    assert_clean(cmd, client, f"run {workload} {sig.name}", gone_s)


def test_a_killed_run_on_its_embedded_redis_leaves_no_process_or_folder(
    launch: Callable[..., Command],
) -> None:
    cmd = launch("run", "swarm")
    wait_until(lambda: len(cmd.alive()) >= 7, 30, "swarm processes and the embedded Redis")
    names = [p.name() for p in cmd.alive()]
    assert "redis-server" in names, names
    assert any(n.startswith("loadkit-redis-") for n in cmd.left_in_tmp())
    gone_s, code = stop_and_measure(cmd, signal.SIGKILL)
    assert code == -9
    assert_clean(cmd, None, "run swarm (embedded Redis) SIGKILL", gone_s)


def test_a_worker_whose_parent_died_stops_at_once() -> None:
    """PR_SET_PDEATHSIG, raced the way the docs warn: a parent that is already gone when
    the child asks is noticed by the parent-pid check."""
    probe = (
        "import os, signal, time\n"
        "from loadkit.runtime import lifetime\n"
        "signal.signal(signal.SIGTERM, lambda *a: os._exit(43))\n"
        "lifetime.die_with_parent(os.getppid() + 1)\n"  # not our parent: as if it died
        "time.sleep(10)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=child_env(), capture_output=True, timeout=20
    )
    assert out.returncode == 43, out.stderr


# -- loadkit dashboard -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "embedded"),
    [
        (signal.SIGTERM, False),
        (signal.SIGINT, True),
        (signal.SIGKILL, False),
        (signal.SIGKILL, True),
    ],
    ids=["SIGTERM", "SIGINT-embedded", "SIGKILL", "SIGKILL-embedded"],
)
def test_a_stopped_dashboard_leaves_no_process_folder_or_key(
    launch: Callable[..., Command],
    server: RedisServer,
    client: redis.Redis,
    sig: signal.Signals,
    embedded: bool,
) -> None:
    args = ["dashboard", "--agents", "30", "--port", "0"]
    cmd = launch(*args) if embedded else launch(*args, "--redis-url", server.url)
    assert cmd.proc.stdout is not None
    assert cmd.proc.stdout.readline().startswith("dashboard for 30 agents")
    if not embedded:
        wait_until(lambda: len(their_keys(client)) > 5, 15, "the dashboard fleet's keys")
    else:
        assert "redis-server" in [p.name() for p in cmd.alive()]
    gone_s, code = stop_and_measure(cmd, sig)
    assert code == EXPECTED[sig], cmd.proc.stderr
    label = f"dashboard{' (embedded Redis)' if embedded else ''} {sig.name}"
    assert_clean(cmd, None if embedded else client, label, gone_s)


# -- loadkit redis -----------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=str)
def test_redis_command_leaves_no_folder_when_stopped(
    launch: Callable[..., Command], sig: signal.Signals
) -> None:
    cmd = launch("redis", "--persistence", "aof-everysec")
    assert cmd.proc.stdout is not None
    assert cmd.proc.stdout.readline().startswith("redis://127.0.0.1:")
    (folder,) = cmd.left_in_tmp()
    assert (cmd.tmp / folder / "appendonly.aof").exists() or any(
        (cmd.tmp / folder).glob("appendonly*")
    )
    gone_s, code = stop_and_measure(cmd, sig)
    assert code == EXPECTED[sig], cmd.proc.stderr
    assert_clean(cmd, None, f"redis {sig.name}", gone_s)


def test_redis_command_exits_1_when_its_server_dies(launch: Callable[..., Command]) -> None:
    cmd = launch("redis")
    assert cmd.proc.stdout is not None
    cmd.proc.stdout.readline()
    (server,) = [p for p in cmd.alive() if p.name() == "redis-server"]
    server.kill()
    killed = time.monotonic()
    _, err = cmd.proc.communicate(timeout=10)
    print(f"loadkit redis noticed its server's death after {time.monotonic() - killed:.2f} s")
    assert cmd.proc.returncode == 1
    assert err.strip() == f"loadkit: error: redis-server (pid {server.pid}) was killed by SIGKILL"
    wait_until(lambda: not cmd.alive() and not cmd.left_in_tmp(), 5, "the folder removed")


# -- exit codes --------------------------------------------------------------------------


def test_stop_signals_end_commands_with_128_plus_n(capsys: pytest.CaptureFixture[str]) -> None:
    def stopped(sig: int) -> Callable[[], int]:
        def command() -> int:
            raise Interrupted(sig)

        return command

    assert [exit_code_of("loadkit", stopped(s)) for s in lifetime.STOP_SIGNALS] == [130, 143, 129]
    assert capsys.readouterr().err.splitlines() == [
        "loadkit: interrupted (SIGINT)",
        "loadkit: interrupted (SIGTERM)",
        "loadkit: interrupted (SIGHUP)",
    ]


def test_asv_statuses_map_to_loadkit_exit_codes() -> None:
    assert asv_exit_code(0) == 0
    assert asv_exit_code(2) == 1  # asv: a benchmark failed or timed out
    assert asv_exit_code(1) == 1
    assert asv_exit_code(-signal.SIGTERM) == 143  # asv killed by SIGTERM
    assert asv_exit_code(130) == 130
    assert job_exit_code(0, 0) == 0
    assert job_exit_code(2, 0) == 1
    assert job_exit_code(0, 1) == 1  # loadkit run missed a target
    assert job_exit_code(2, None) == 1  # --skip-report
    assert job_exit_code(-signal.SIGINT, 0) == 130


def test_temp_folders_of_dead_owners_are_swept(private_tmp: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = lifetime.make_temp_dir("run")
    assert mine.name.startswith(f"loadkit-run-{os.getpid()}-")
    for name in (f"loadkit-redis-{dead.pid}-abc", f"loadkit-run-{os.getpid()}-abc", "pymp-x"):
        (private_tmp / name).mkdir()
        (private_tmp / name / "appendonly.aof").write_text("x")
    removed = lifetime.sweep_temp_dirs(private_tmp)
    assert [p.name for p in removed] == [f"loadkit-redis-{dead.pid}-abc"]
    assert sorted(os.listdir(private_tmp)) == sorted([f"loadkit-run-{os.getpid()}-abc", "pymp-x"])
    shutil.rmtree(mine)


# -- loadkit bench -----------------------------------------------------------------------

PROBE_BENCHMARKS = """
import time


def time_fine():
    sum(range(100))


def time_broken():
    raise RuntimeError("this benchmark fails")


def time_stuck():
    time.sleep(30)


time_stuck.timeout = 1.0


def time_long():
    time.sleep(60)


time_long.timeout = 120.0
"""


def _probe_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git repository holding the probe benchmarks, and the environment to run it in."""
    repo, home = tmp_path / "repo", tmp_path / "home"
    (repo / "benchmarks").mkdir(parents=True)
    home.mkdir()
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "bench_probe.py").write_text(PROBE_BENCHMARKS)
    (repo / "asv.conf.json").write_text(
        '{"version": 1, "project": "probe", "repo": ".", "branches": ["main"], '
        '"environment_type": "virtualenv", "benchmark_dir": "benchmarks", '
        '"results_dir": "results", "html_dir": "html"}'
    )
    env = child_env() | {
        "HOME": str(home),  # asv's machine file goes here, not in the user's home
        "GIT_AUTHOR_NAME": "probe",
        "GIT_AUTHOR_EMAIL": "probe@localhost",
        "GIT_COMMITTER_NAME": "probe",
        "GIT_COMMITTER_EMAIL": "probe@localhost",
    }
    for git in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "probe"]):
        subprocess.run(["git", *git], cwd=repo, env=env, check=True, capture_output=True)
    return repo, env


@pytest.mark.parametrize("which", ["broken", "stuck"])
def test_bench_exits_1_when_a_benchmark_fails_or_times_out(tmp_path: Path, which: str) -> None:
    """The real path: ``asv run`` (which exits 2) on a repository with one benchmark that
    fails or overruns its timeout; loadkit's exit code is 1, never the usage error's 2."""
    repo, env = _probe_repo(tmp_path)
    out = subprocess.run(
        loadkit_cmd("bench", "--skip-report", "--bench", f"time_({which}|fine)"),
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "asv run exited 2" in out.stderr + out.stdout, out.stderr
    assert out.returncode == 1, out.stderr[-2000:]
    assert (repo / "html" / "index.html").exists()  # what was recorded is published


def test_a_stopped_bench_leaves_no_asv_process_or_folder(tmp_path: Path, private_tmp: Path) -> None:
    """SIGTERM while asv runs a benchmark: asv, its forkserver and the benchmark stop
    with loadkit, which exits 143, and no temp folder stays."""
    repo, env = _probe_repo(tmp_path)
    env["TMPDIR"] = str(private_tmp)
    proc = subprocess.Popen(
        loadkit_cmd("bench", "--skip-report", "--bench", "time_long"),
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def of_this_repo() -> list[str]:
        """Command lines of the live processes working on the probe repository."""
        found = []
        for p in psutil.process_iter(["cmdline", "status"]):
            cmdline = " ".join(p.info["cmdline"] or [])
            if str(repo) in cmdline and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(cmdline)
        return found

    try:
        wait_until(
            lambda: any("time_long" in cmdline for cmdline in of_this_repo()),
            90,
            "asv running the long benchmark",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143
        gone_s = wait_until(lambda: not of_this_repo(), 2, "end of asv's processes")
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"bench SIGTERM: asv's processes gone {gone_s:.2f} s after loadkit exited")
    assert os.listdir(private_tmp) == []
