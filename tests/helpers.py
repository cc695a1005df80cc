"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from loadkit.cli import calibrate, check, history_page
from loadkit.common.errors import UsageError
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
