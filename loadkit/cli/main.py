"""The ``loadkit`` command line: one parser, one module per command, exit codes.

Every command is a module of this package with ``add_parser(subparsers)`` (its options,
nothing heavy imported) and ``run(args)`` (the body, which imports the library it
drives when the command runs, so ``loadkit --help`` or a usage error costs no scipy,
asv or Redis client). :data:`COMMANDS` is the registry, in the order ``--help`` lists
them. Exit codes (:mod:`loadkit.common.errors`): 0 passed; 1 a missed target, a
regression or a failure (one line); 2 bad usage (one line); 130 / 143 / 129 stopped by
SIGINT / SIGTERM / SIGHUP, after stopping what the command started
(:mod:`loadkit.runtime.lifetime`, :mod:`loadkit.supervise.guard`). The argparse
namespace never leaves this package: the library takes typed options.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from types import ModuleType
from typing import NoReturn

from loadkit.cli import (
    agents,
    bench,
    calibrate,
    check,
    clean,
    compare,
    dashboard,
    history_page,
    redis_server,
    serve,
)
from loadkit.cli import run as run_command
from loadkit.common.errors import exit_code_of
from loadkit.common.process_title import hide_secrets_in_command_line

# run, bench, compare, check, calibrate, report, serve, agents, dashboard, redis, clean
COMMANDS: tuple[ModuleType, ...] = (
    run_command,
    bench,
    compare,
    check,
    calibrate,
    history_page,
    serve,
    agents,
    dashboard,
    redis_server,
    clean,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="loadkit",
        description="Continuous benchmarking for an agent-orchestration stack: real load, asv "
        "history, regression-aware confidence.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # this process's own command line: hide any password in it first
        hide_secrets_in_command_line()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return exit_code_of("loadkit", lambda: args.func(args))
    except BrokenPipeError:
        # Output piped into something that quit early (| head): not an error of ours.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
