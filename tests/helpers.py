"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loadkit.errors import UsageError
from loadkit.history.commands import add_commands
from loadkit.redis_server import ENV_ALLOW_REMOTE, ENV_URL

REPO = Path(__file__).resolve().parent.parent


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
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
