"""Hostile inputs: a Redis password, output paths that cannot work, text no UTF-8 has.

- A real ``redis-server`` that requires a password (an ACL user and ``requirepass``, set
  in a config file so the server's own command line has no secret) takes real
  ``loadkit run`` processes while the process table is sampled: the password is in no
  command line of any process (the workers get the URL by environment), the one the user
  typed leaves the top process's title as it starts, and no output (stdout, stderr, the
  JSON and Markdown reports) holds it. Every message that shows a URL hides the password.
- Every bad path is refused by a real ``python -m loadkit`` process within a second with
  one line and exit 2, before any work: a ``redis-server`` stand-in records whether it
  was started, and the working folder must be left exactly as it was.
- WASM: a lone surrogate is the same ``ParseError`` in both parsers, and the memory-limit
  error says how far parsing got.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import redis
from helpers import child_env, loadkit_cmd, workload_outcome

from loadkit.common.errors import UsageError
from loadkit.common.redaction import redact_text, redact_url, url_secrets
from loadkit.redis_io.server import ENV_BINARY, find_redis_binary, free_port
from loadkit.redis_io.urls import ENV_ALLOW_REMOTE, ENV_URL
from loadkit.workloads.wasm import pyparser
from loadkit.workloads.wasm.flat import ParseError
from loadkit.workloads.wasm.host import MIB, MemoryLimitExceeded, WasmParser

PASSWORD = "Sup3rS3cret-7f1c"
USER = "admin"


# --- a Redis that wants a password ---------------------------------------------------


@pytest.fixture(scope="module")
def secret_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server with ``requirepass`` and an ACL user; yields the URL."""
    folder = tmp_path_factory.mktemp("secret-redis")
    port = free_port()
    conf = folder / "redis.conf"
    conf.write_text(
        f'port {port}\nbind 127.0.0.1\ndir {folder}\nsave ""\nappendonly no\n'
        f"requirepass {PASSWORD}\nuser {USER} on >{PASSWORD} ~* &* +@all\n"
        "maxclients 10000\n"
    )
    conf.chmod(0o600)
    proc = subprocess.Popen(
        [find_redis_binary(), str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://{USER}:{PASSWORD}@127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(url, socket_timeout=1) as client:
                    client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the password-protected redis-server did not start")
                time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as anonymous:
            anonymous.sendall(b"PING\r\n")
            assert anonymous.recv(100).startswith(b"-NOAUTH")  # the password is required
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class ProcessTable:
    """Every process's command line, sampled while commands run."""

    leaks: list[tuple[float, int, str]] = field(default_factory=list)
    workers: dict[int, int] = field(default_factory=dict)  # worker pid -> its parent's pid
    samples: int = 0

    def sample(self, started: float) -> None:
        self.samples += 1
        for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
            line = " ".join(proc.info["cmdline"] or ())
            if PASSWORD in line:
                self.leaks.append((time.monotonic() - started, proc.info["pid"], line))
            if "loadkit.supervise.worker" in line:
                self.workers[proc.info["pid"]] = proc.info["ppid"]


@dataclass
class Run:
    """One ``loadkit run`` with a JSON and a Markdown report in its own folder."""

    folder: Path
    proc: subprocess.Popen[str]
    stdout: str = ""
    stderr: str = ""

    def outputs(self) -> dict[str, str]:
        return {
            "stdout": self.stdout,
            "stderr": self.stderr,
            "json": (self.folder / "report.json").read_text(),
            "markdown": (self.folder / "report.md").read_text(),
        }


def _start_run(folder: Path, workload: str, secret_url: str, given_by: str) -> Run:
    folder.mkdir()
    args = ["run", workload, "--scale", "quick", "--json", "report.json"]
    args += ["--markdown", "report.md"]
    env = child_env()
    if given_by == "environment":
        env[ENV_URL] = secret_url
    else:
        args += ["--redis-url", secret_url]
    proc = subprocess.Popen(
        loadkit_cmd(*args),
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Run(folder, proc)


def _sample_until_done(runs: list[Run], table: ProcessTable) -> None:
    """Sample the process table every 10 ms until every run has ended."""
    started = time.monotonic()

    def finish(run: Run) -> None:
        run.stdout, run.stderr = run.proc.communicate(timeout=240)

    readers = [threading.Thread(target=finish, args=(run,)) for run in runs]
    for reader in readers:
        reader.start()
    while any(reader.is_alive() for reader in readers):
        table.sample(started)
        time.sleep(0.01)
    for reader in readers:
        reader.join()


@pytest.mark.slow
def test_the_password_is_in_no_command_line_and_no_output(
    secret_redis: str, tmp_path: Path
) -> None:
    """Two runs at once on the password-protected Redis: swarm given the URL by
    environment, fleet given it as ``--redis-url``."""
    by_env = _start_run(tmp_path / "env", "swarm", secret_redis, "environment")
    typed = _start_run(tmp_path / "typed", "fleet", secret_redis, "option")
    table = ProcessTable()
    _sample_until_done([by_env, typed], table)

    for run, workload in ((by_env, "swarm"), (typed, "fleet")):
        # passed or missed a target
        assert run.proc.returncode in (0, 1), workload_outcome(
            run.folder / "report.json", run.stderr
        )
        # A worker of this run was seen, and it ran on the password-protected server.
        assert run.proc.pid in table.workers.values(), f"{table.samples} samples: {table}"
        document = json.loads((run.folder / "report.json").read_text())
        assert document["workloads"][workload]["status"] in ("passed", "failed"), document
        for name, text in run.outputs().items():
            assert PASSWORD not in text, f"{workload} {name}"
    # No worker ever, and the top process only for the moment the interpreter starts
    # and only when the user typed the password.
    assert {pid for _, pid, _ in table.leaks} <= {typed.proc.pid}, table.leaks
    assert all(at < 0.5 for at, _, _ in table.leaks), table.leaks


@pytest.mark.slow
def test_a_typed_password_leaves_the_process_title_as_the_process_starts(
    secret_redis: str, tmp_path: Path
) -> None:
    """The top process's own title, read from /proc while it runs (a short ``agents``)."""
    proc = subprocess.Popen(
        loadkit_cmd("agents", "--redis-url", secret_redis, "--count", "2", "--duration", "1.5"),
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("hosting 2 agents")  # connected: it works
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        assert PASSWORD not in cmdline
        assert f"{USER}:***@127.0.0.1" in cmdline and "agents" in cmdline
    finally:
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert PASSWORD not in out + err


@pytest.mark.parametrize(
    "url",
    [
        f"redis://{USER}:{PASSWORD}@10.1.2.3:6379/0",  # refused: not loopback
        f"redis://{USER}:{PASSWORD}@127.0.0.1:DEAD/0",  # nothing listens
        f"redis://{USER}:{PASSWORD}@127.0.0.1:notaport/0",
        f"http://{USER}:{PASSWORD}@127.0.0.1:6379/",  # not a Redis URL
        f"rediss://:{PASSWORD}@[::1/0",  # not a URL at all
        f"unix:///nonexistent/redis.sock?password={PASSWORD}&db=1",
        f"unix://:{PASSWORD}@/nonexistent/redis.sock",
        f"redis+cluster://{USER}:{PASSWORD}@127.0.0.1:LIVE",  # no cluster there
        f"redis://{USER}:wrong-{PASSWORD}@127.0.0.1:LIVE/0",  # refused by the server
    ],
)
@pytest.mark.parametrize("command", ["run", "agents", "dashboard"])
def test_messages_that_show_a_url_hide_the_password(
    secret_redis: str, url: str, command: str, tmp_path: Path
) -> None:
    live_port = secret_redis.rsplit(":", 1)[1].split("/")[0]
    url = url.replace("DEAD", str(free_port())).replace("LIVE", live_port)
    args = {
        "run": ["run", "fleet", "--redis-url", url],
        "agents": ["agents", "--redis-url", url, "--count", "1", "--duration", "1"],
        "dashboard": ["dashboard", "--fleet", "f", "--duration", "1"],
    }[command]
    env = child_env()
    if command == "dashboard":
        env[ENV_URL] = url  # the variable is read the same way
    out = subprocess.run(
        loadkit_cmd(*args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadkit: error: "), out.stderr
    assert PASSWORD not in out.stderr + out.stdout
    assert "***" in lines[0]
    assert sorted(os.listdir(tmp_path)) == []


def test_remote_servers_still_need_the_deliberate_step(tmp_path: Path) -> None:
    env = child_env() | {ENV_ALLOW_REMOTE: "0"}
    out = subprocess.run(
        loadkit_cmd("run", "fleet", "--redis-url", f"redis://:{PASSWORD}@10.9.9.9:1/0"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    err = out.stderr
    assert "refusing non-loopback Redis redis://:***@10.9.9.9:1/0" in err
    assert ENV_ALLOW_REMOTE in err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://admin:pw@host:6390/0", "redis://admin:***@host:6390/0"),
        ("redis://:pw@host:6390", "redis://:***@host:6390"),
        ("rediss://admin:p%40ss@h.example:6380/2", "rediss://admin:***@h.example:6380/2"),
        ("redis+cluster://u:pw@127.0.0.1:7000", "redis+cluster://u:***@127.0.0.1:7000"),
        ("unix:///run/redis.sock?db=1&password=pw", "unix:///run/redis.sock?db=1&password=***"),
        ("unix://:pw@/run/redis.sock", "unix://:***@/run/redis.sock"),
        ("redis://u:p@ss@host:1/0", "redis://u:***@host:1/0"),  # '@' in the password
        ("redis://u:pw@[::1/0", "redis://u:***@[::1/0"),  # malformed: still hidden
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),  # nothing to hide
        ("redis://admin@host:1/0", "redis://admin@host:1/0"),  # a user is no secret
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    for secret in url_secrets(url):
        assert secret not in shown


def test_redact_text_hides_urls_and_known_secrets_in_any_message() -> None:
    message = (
        "Traceback ...\nValueError: cannot use 'redis://a:p%40ss@h:1/0': auth with p@ss "
        "failed (see unix:///s?password=zz)"
    )
    shown = redact_text(message, url_secrets("redis://a:p%40ss@h:1/0"))
    assert "p%40ss" not in shown and "p@ss" not in shown and "zz" not in shown
    assert "redis://a:***@h:1/0" in shown and "auth with *** failed" in shown


def test_the_worker_is_refused_without_the_url_in_its_environment(tmp_path: Path) -> None:
    """The worker takes the URL from its environment only: no option carries it."""
    env = {k: v for k, v in child_env().items() if k != ENV_URL}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadkit.supervise.worker",
            "wasm",
            "--out",
            str(tmp_path / "r.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and ENV_URL in out.stderr
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadkit.supervise.worker",
            "wasm",
            "--out",
            "r.json",
            "--redis-url",
            "x",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "unrecognized arguments: --redis-url" in refused.stderr
    assert not (tmp_path / "r.json").exists()


@dataclass
class Workdir:
    path: Path
    read_only: Path | None  # a folder nobody here can write (None: cannot be made here)
    marker: Path  # written if the redis-server stand-in is ever started


def _make_read_only(folder: Path) -> bool:
    """A folder this process (even as root) cannot write; False if none can be made."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return True
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0:
        return not os.access(folder, os.W_OK)
    return False


def _undo_read_only(folder: Path) -> None:
    chattr = shutil.which("chattr")
    if os.geteuid() == 0 and chattr:
        subprocess.run([chattr, "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workdir]:
    root = tmp_path_factory.mktemp("paths")
    (root / "results").mkdir()
    (root / "results" / "keep.json").write_text("{}")
    (root / "out").mkdir()
    (root / "out" / "report.json").write_text("earlier report\n")
    (root / "a-file").write_text("not a folder\n")
    (root / "locked").mkdir()
    locked = root / "locked" / "site"
    read_only = locked if _make_read_only(locked) else None
    marker = root.parent / (root.name + "-redis-started")
    yield Workdir(root, read_only, marker)
    if read_only is not None:
        _undo_read_only(read_only)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


def _stand_in(workdir: Workdir) -> dict[str, str]:
    """An environment whose redis-server is a script that leaves a mark, then runs it."""
    stand_in = workdir.path.parent / "redis-stand-in"
    stand_in.write_text(f'#!/bin/sh\ntouch {workdir.marker}\nexec {find_redis_binary()} "$@"\n')
    stand_in.chmod(0o755)
    return child_env() | {ENV_BINARY: str(stand_in)}


# --- paths that cannot work -----------------------------------------------------------


PATH_CASES: dict[str, tuple[list[str], str]] = {
    # name: (arguments, what the one line must say); RO is a read-only folder
    "json_under_proc": (["run", "fleet", "--json", "/proc/x"], "under /proc"),
    "markdown_under_sys": (["run", "fleet", "--markdown", "/sys/x.md"], "under /sys"),
    "markdown_read_only": (["run", "wasm", "--markdown", "RO/r.md"], "not writable"),
    "json_is_a_folder": (["run", "fleet", "--json", "out"], "is a directory"),
    "json_names_a_folder": (["run", "fleet", "--json", "new/"], "is a directory"),
    "json_is_a_device": (["run", "fleet", "--json", "/dev/null"], "not a regular file"),
    "json_below_a_file": (["run", "fleet", "--json", "a-file/r.json"], "not a directory"),
    "json_is_the_root": (["run", "fleet", "--json", "/"], "is a directory"),
    "markdown_missing_parent_read_only": (
        ["run", "swarm", "--markdown", "RO/new/r.md"],
        "not writable",
    ),
    "baseline_missing_parent": (["run", "fleet", "--baseline", "gone/b.json"], "not found"),
    "baseline_missing": (["run", "fleet", "--baseline", "nope.json"], "not found"),
    "baseline_is_a_folder": (["run", "fleet", "--baseline", "out"], "is a directory"),
    "check_json_root": (["check", "--json", "/"], "is a directory"),
    "check_json_proc": (["check", "--json", "/proc/1/x.json"], "under /proc"),
    "check_results_missing": (["check", "--results", "gone"], "not found"),
    "check_results_a_file": (["check", "--results", "a-file"], "not a directory"),
    "check_config_missing": (["check", "--config", "nope.json"], "not found"),
    "calibrate_json_proc": (["calibrate", "--json", "/proc/x"], "under /proc"),
    "report_html_root": (["report", "--results", "results", "--html", "/"], "filesystem root"),
    "report_html_proc": (["report", "--results", "results", "--html", "/proc/h"], "under /proc"),
    "report_html_a_file": (["report", "--results", "results", "--html", "a-file"], "not a dir"),
    "report_html_read_only": (["report", "--results", "results", "--html", "RO/h"], "writable"),
}


def _timed_run(
    args: list[str], cwd: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """A ``loadkit`` process run to its end: its outcome, wall time and CPU time (user +
    system, of it and the processes it waited for)."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(
        loadkit_cmd(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    wall = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return out, wall, cpu


@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_a_bad_path_is_refused_within_a_second_before_any_work(workdir: Workdir, case: str) -> None:
    args, says = PATH_CASES[case]
    if any("RO" in a for a in args):
        if workdir.read_only is None:
            pytest.skip("no read-only folder can be made here (root without chattr)")
        args = [a.replace("RO", str(workdir.read_only)) for a in args]
    env = _stand_in(workdir)
    before = _snapshot(workdir.path)
    out, wall, cpu = _timed_run(args, workdir.path, env)
    assert out.returncode == 2, out
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadkit: error: "), out.stderr
    assert says in lines[0] and "Traceback" not in out.stderr
    assert out.stdout == ""
    # Under a second of work; the wall clock gets slack for a machine busy with other
    # processes (a command that does the work first takes 15 s or more).
    assert cpu < 1.0 and wall < 3.0, f"{cpu:.2f} s of CPU, {wall:.2f} s in all"
    assert not workdir.marker.exists(), "a Redis was started"
    assert _snapshot(workdir.path) == before
    assert not Path("/-loadkit").exists()


def test_the_redis_stand_in_leaves_its_mark_when_started(workdir: Workdir) -> None:
    """The control for the cases above: a command that does start Redis is seen doing it."""
    out = subprocess.run(
        loadkit_cmd("redis", "--duration", "0.2"),
        env=_stand_in(workdir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert workdir.marker.exists()
    workdir.marker.unlink()


def test_bench_checks_where_it_will_write_before_asv_runs(tmp_path: Path) -> None:
    (tmp_path / "asv.conf.json").write_text(json.dumps({"version": 1, "html_dir": "/"}))
    out, wall, cpu = _timed_run(["bench"], tmp_path, child_env())
    assert out.returncode == 2 and cpu < 1.0 and wall < 3.0, (out, cpu, wall)
    assert out.stderr.count("\n") == 1 and "filesystem root" in out.stderr, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asv.conf.json"]


def test_the_path_checks_say_why_in_process(tmp_path: Path) -> None:
    from loadkit.common.path_checks import check_html_dir, check_output_file

    with pytest.raises(UsageError, match="filesystem root"):
        check_html_dir("/")
    (tmp_path / "html").mkdir()
    assert check_html_dir(tmp_path / "html") == tmp_path / "html"
    assert check_output_file(str(tmp_path / "new" / "deeper" / "r.json"), "--json")
    assert check_output_file(None, "--json") is None


# --- WASM: text no UTF-8 has, memory that runs out -------------------------------------


@pytest.fixture(scope="module")
def wasm() -> Iterator[WasmParser]:
    with WasmParser(memory_limit_bytes=4 * MIB) as parser:
        yield parser


@pytest.mark.parametrize(
    ("source", "offset", "line"),
    [
        ('"\ud800"', 1, 1),
        ("\udfff", 0, 1),
        ("a + b\nf('é', \ud83d)", 14, 2),  # é is two bytes: offsets count bytes
        ("x\n" * 3 + "[1, '\udc80']", 11, 4),
    ],
)
def test_a_lone_surrogate_is_the_same_parse_error_in_both_parsers(
    wasm: WasmParser, source: str, offset: int, line: int
) -> None:
    with pytest.raises(ParseError) as in_python:
        pyparser.parse(source)
    with pytest.raises(ParseError) as in_wasm:
        wasm.parse(source)
    assert in_python.value == in_wasm.value
    assert in_wasm.value.offset == offset and in_wasm.value.line == line
    assert "lone surrogate" in in_wasm.value.message
    assert wasm.parse("a.b(c)").sexpr(0)  # the instance is still usable


@pytest.mark.parametrize("lead", [1, 13, 16, 22, 37])
def test_the_memory_limit_error_says_how_far_parsing_got(wasm: WasmParser, lead: int) -> None:
    # A left-leaning chain: every operator node starts at byte 0, so the start of the
    # node that found no room says nothing about how far the parse got.
    document = "a" * lead + "+1" * 1_000_000  # 2 MB, 2M nodes: 8 MB of packed AST
    with pytest.raises(MemoryLimitExceeded) as stopped:
        wasm.parse(document)
    message = str(stopped.value)
    found = re.search(r"parsing stopped after byte (\d+) of (\d+)", message)
    assert found is not None, message
    at, size = int(found[1]), int(found[2])
    assert size == len(document) and 0 < at < size
    # Where it stopped is the end of a whole expression: what was read up to it parses.
    prefix = pyparser.parse(document[:at])
    # most of what the input left of the limit was AST (4 bytes a node) when it ran out
    assert len(prefix) * 4 > 1.5 * MIB
