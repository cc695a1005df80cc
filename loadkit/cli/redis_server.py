"""``loadkit redis``: a private Redis on loopback for as long as the command runs."""

from __future__ import annotations

import argparse
import subprocess

from loadkit.common.argtypes import positive_float
from loadkit.common.errors import Failure, signal_name
from loadkit.redis_io.server import PERSISTENCE_MODES, RedisServer
from loadkit.runtime import lifetime
from loadkit.supervise import guard


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    red = subparsers.add_parser("redis", help="start a private Redis on loopback and print its URL")
    red.add_argument("--persistence", choices=PERSISTENCE_MODES, default="none")
    red.add_argument("--duration", type=positive_float, default=3600.0, metavar="S")
    red.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until ``--duration`` is up (0) or a stop signal (128 + n); a server that
    dies on its own is a failure (1). The data folder goes in every case."""
    with (
        lifetime.stop_on_signals(),
        guard.guarded(),
        RedisServer(persistence=args.persistence) as server,
    ):
        print(server.url, flush=True)
        assert server.process is not None
        try:
            server.process.wait(timeout=args.duration)
        except subprocess.TimeoutExpired:
            return 0
        raise Failure(f"redis-server (pid {server.pid}) {ended_how(server.process.returncode)}")


def ended_how(returncode: int) -> str:
    """How a child ended, for a message: its exit code or the signal that killed it."""
    if returncode < 0:
        return f"was killed by {signal_name(-returncode)}"
    return f"exited with code {returncode}"
