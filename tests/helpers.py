"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from loadkit.cli import calibrate, check, history_page
from loadkit.common.errors import UsageError
from loadkit.redis_io.server import RedisServer, find_redis_binary
from loadkit.redis_io.urls import ENV_ALLOW_REMOTE, ENV_URL
from loadkit.workloads.dashboard.server import DashboardServer, ServerConfig
from loadkit.workloads.dashboard.sources import SimulatedFleet

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip without Debian's Chromium or Playwright, except under CI, where it fails."""
    import importlib.util

    missing = None
    if not CHROMIUM.exists():
        missing = (
            "browser test needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
        )
    elif importlib.util.find_spec("playwright") is None:
        missing = "browser test needs the playwright package"
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI: {missing}", pytrace=False)
    if missing:
        pytest.skip(missing)


def screenshot_dir(fallback: Path) -> Path:
    """Where screenshots go: ``$LOADKIT_SCREENSHOT_DIR`` when set, else ``fallback``."""
    folder = Path(os.environ.get("LOADKIT_SCREENSHOT_DIR") or fallback)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def child_env() -> dict[str, str]:
    """Environment for ``python -m loadkit`` children: no ambient Redis settings, no
    colour codes in captured output."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV_URL, ENV_ALLOW_REMOTE)}
    env["NO_COLOR"] = "1"
    env["TERM"] = "dumb"
    env["COLUMNS"] = "120"
    return env


def loadkit_cmd(*args: str) -> list[str]:
    """The ``loadkit`` console script pip installed beside this interpreter: the entry
    point users run, not an import of the module."""
    script = Path(sys.executable).with_name("loadkit")
    if not script.is_file():
        raise RuntimeError(f"{script} is missing: install the package (pip install -e .)")
    return [str(script), *args]


def run_loadkit(
    *args: str, cwd: Path | str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        loadkit_cmd(*args),
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def git(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """git in ``repo``, its output stripped; a failing git fails the test there."""
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **(env or {})},
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def asv_config(project: str, benchmark_dir: str = "benchmarks", **extra: Any) -> dict[str, Any]:
    """A throwaway asv project's ``asv.conf.json``: results, site and environments
    inside the repository, virtualenv environments, the ``main`` branch; benchmarks
    started from asv's forkserver as loadkit's own suite is (a new interpreter per
    benchmark doubles the time these projects take to run)."""
    return {
        "version": 1,
        "project": project,
        "repo": ".",
        "branches": ["main"],
        "environment_type": "virtualenv",
        "benchmark_dir": benchmark_dir,
        "results_dir": "results",
        "html_dir": "html",
        "env_dir": ".asv/env",
        "launch_method": "forkserver",
        **extra,
    }


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; fail the test naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    if not predicate():
        pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def run_history_cli(argv: list[str]) -> int:
    """The history commands behind a parser built like the main CLI's, in process."""
    parser = argparse.ArgumentParser(prog="loadkit")
    commands = parser.add_subparsers(dest="command")
    for command in (check, calibrate, history_page):
        command.add_parser(commands)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def start_dashboard(*args: str) -> subprocess.Popen[str]:
    """``loadkit dashboard ARGS`` through the console script, its output captured."""
    return subprocess.Popen(
        loadkit_cmd("dashboard", *args),
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- a real Redis Cluster ---------------------------------------------------------------


def _port_pair_free(port: int) -> bool:
    for p in (port, port + 10_000):  # the cluster bus listens on port + 10000
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _cluster_port() -> int:
    """A port whose pair (the cluster bus, port + 10000) is free and below the kernel's
    ephemeral range: checked free is not kept free, and any outgoing connection of the
    suite's other servers and clients could take a bus port picked inside that range
    between the check and redis-server's bind."""
    high = max(_ephemeral_low() - 10_001, 20_001)
    for _ in range(200):
        port = random.randint(20_000, high)
        if _port_pair_free(port):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _cluster_node(args: tuple[str, ...]) -> RedisServer:
    """One cluster node; a port taken after its check is retried on another pair."""
    for attempt in range(5):
        try:
            return RedisServer(port=_cluster_port(), extra_args=args).start()
        except UsageError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


@dataclass
class TestCluster:
    """A real Redis Cluster on loopback ports (the same redis-server binary): primaries
    with one replica each, so a primary can fail over."""

    nodes: list[RedisServer]

    __test__ = False  # not a test class, whatever its name

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(port=node.port, socket_timeout=5)

    def _info(self, node: RedisServer, section: str) -> dict[str, str]:
        c = self.client(node)
        try:
            text = c.execute_command("CLUSTER", "INFO") if section == "cluster" else None
            if text is None:
                return {k: str(v) for k, v in c.info(section).items()}
        finally:
            c.close()
        raw = text.decode() if isinstance(text, bytes) else str(text)
        return dict(line.split(":", 1) for line in raw.split() if ":" in line)

    def role(self, node: RedisServer) -> str:
        return self._info(node, "replication")["role"]

    def primaries(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.process is not None and self.role(n) == "master"]

    def replica_of(self, primary: RedisServer) -> RedisServer:
        for n in self.nodes:
            if n is primary or n.process is None:
                continue
            info = self._info(n, "replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary.port:
                return n
        raise AssertionError(f"no replica of 127.0.0.1:{primary.port}")

    def settled(self) -> bool:
        """Every live node sees a healthy cluster with every slot served, replicas are in
        sync, and all nodes hand out the same slot map: a client that starts now gets
        one answer whichever node it asks."""
        live = [n for n in self.nodes if n.process is not None]
        maps = set()
        try:
            for n in live:
                info = self._info(n, "cluster")
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                    return False
                if int(info.get("cluster_known_nodes", 0)) < len(self.nodes):
                    return False
                repl = self._info(n, "replication")
                if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                    return False
                c = self.client(n)
                try:
                    maps.add(repr(sorted(map(repr, c.execute_command("CLUSTER", "SLOTS")))))
                finally:
                    c.close()
        except redis.RedisError:
            return False
        return len(maps) == 1

    def wait_settled(self, timeout_s: float = 30.0) -> None:
        wait_for(self.settled, timeout_s, "the cluster to settle")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def start_cluster(primaries: int = 3, node_timeout_ms: int = 3000) -> TestCluster:
    """``primaries`` primaries with one replica each, created by ``redis-cli --cluster
    create`` and waited for until it has settled (:meth:`TestCluster.settled`)."""
    args = ("--cluster-enabled", "yes", "--cluster-node-timeout", str(node_timeout_ms))
    cluster = TestCluster([])
    try:
        for _ in range(2 * primaries):
            cluster.nodes.append(_cluster_node(args))
        cli = Path(find_redis_binary()).with_name("redis-cli")
        if not cli.exists():
            pytest.skip("no redis-cli next to redis-server")
        addresses = [f"127.0.0.1:{n.port}" for n in cluster.nodes]
        create = ["--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"]
        subprocess.run([str(cli), *create], check=True, capture_output=True, timeout=60)
        cluster.wait_settled(60)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# -- workload runs ----------------------------------------------------------------------


def workload_outcome(report: Path, stderr: str = "") -> str:
    """What a ``loadkit run`` ended with, for a failed assertion: each workload's status,
    its error from the report and the checks it missed, then the end of stderr (which
    alone is mostly a progress bar)."""
    lines = []
    try:
        document = json.loads(report.read_text())
    except (OSError, ValueError) as exc:
        lines.append(f"no report at {report.name}: {exc}")
    else:
        for name, w in document.get("workloads", {}).items():
            lines.append(f"{name}: {w.get('status')} {w.get('error') or ''}".rstrip())
            missed = [c for c in w.get("checks", []) if not c.get("passed")]
            lines += [
                f"  missed {c['metric']} = {c.get('value')} ({c['op']} {c['target']})"
                for c in missed
            ]
    tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-15:]
    return "\n".join([*lines, "stderr:", *tail])


def run_workload_cli(
    report: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``loadkit run ARGS --json REPORT`` through the console script."""
    return subprocess.run(
        loadkit_cmd("run", *args, "--json", str(report)),
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# What the dashboard workload reports (its scenario and the asv suite read these).
REPORTED_METRICS = {
    "ws_connections",
    "ws_connect_s",
    "ws_latency_p50_ms",
    "ws_latency_p99_ms",
    "broadcast_all_received_p99_ms",
    "poll_latency_p95_ms",
    "poll_refresh_s",
    "update_process_ms",
    "reconnect_ratio",
    "reconnect_p95_s",
    "memory_per_connection_kib",
    "slow_clients_dropped",
    "messages_missed",
    "boards_wrong",
    # the same rounds through plain websockets, and the ratios to them
    "raw_latency_p99_ms",
    "raw_all_received_p99_ms",
    "ws_latency_p99_ceiling_ratio",
    "all_received_p99_ceiling_ratio",
}


def run(coro: Awaitable[T], timeout_s: float = 30) -> T:
    """Run a coroutine to completion, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def started(agents: int = 100, **config: Any) -> tuple[DashboardServer, SimulatedFleet]:
    """A dashboard server on a free port, publishing a simulated fleet's first state."""
    sim = SimulatedFleet(agents)
    server = await DashboardServer(ServerConfig(port=0, **config)).start()
    server.publish(sim.tick(agents))
    return server, sim
