"""The ``loadkit`` command line.

``run`` is the orchestrator (workloads -> report), ``bench`` the whole
continuous-benchmarking job (asv run on this commit, asv publish, history page, run
report), ``check`` / ``calibrate`` / ``report`` the history scoring
(:mod:`loadkit.cli.history_commands`), ``agents`` hosts agents that join a fleet through
Redis from any process or host, ``dashboard`` serves the live page
(:mod:`loadkit.workloads.dashboard.app`), ``redis`` starts a private Redis and prints its URL,
``clean`` deletes what loadkit runs left on a Redis (:mod:`loadkit.redis_io.clean`), ``serve``
serves the asv site and the history page on 127.0.0.1 (:mod:`loadkit.asvsuite.serve`).
Exit codes (:mod:`loadkit.common.errors`): 0 passed; 1 a missed target, a regression or a
failure (one line); 2 bad usage (one line); 130 / 143 / 129 stopped by SIGINT / SIGTERM
/ SIGHUP, after stopping what the command started (:mod:`loadkit.runtime.lifetime`,
:mod:`loadkit.supervise.guard`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from loadkit.asvsuite.serve import add_command as add_serve_command
from loadkit.cli.history_commands import add_commands as add_history_commands
from loadkit.common.argtypes import aa_runs, positive_float, positive_int
from loadkit.common.errors import Failure, UsageError, exit_code_of, signal_name
from loadkit.common.path_checks import check_input_file, check_output_dir, check_output_file
from loadkit.common.process_title import hide_secrets_in_command_line
from loadkit.redis_io.clean import add_command as add_clean_command
from loadkit.redis_io.server import ENV_URL, PERSISTENCE_MODES, RedisServer, check_url, redis_url
from loadkit.runs import workload
from loadkit.runtime import lifetime
from loadkit.supervise import guard
from loadkit.workloads.dashboard.app import add_command as add_dashboard_command


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

    run = sub.add_parser("run", help="run workloads and write the report")
    run.add_argument(
        "workloads",
        nargs="*",
        metavar="WORKLOAD",
        help=f"workloads to run (default: all of {', '.join(workload.WORKLOADS)})",
    )
    run.add_argument("--scale", choices=workload.SCALES, default="quick")
    run.add_argument("--json", metavar="PATH", help="write the JSON report")
    run.add_argument("--markdown", metavar="PATH", help="write the Markdown report")
    run.add_argument("--redis-url", help=f"use this Redis instead of an embedded one (${ENV_URL})")
    run.add_argument(
        "--timeout",
        type=positive_float,
        default=120.0,
        metavar="S",
        help="per-workload timeout in seconds (default 120)",
    )
    run.add_argument("--baseline", metavar="PATH", help="previous JSON report to compare with")
    run.set_defaults(func=cmd_run)

    agents = sub.add_parser("agents", help="host agents that join a fleet through Redis")
    agents.add_argument("--redis-url", required=True)
    agents.add_argument("--fleet", default="default", help="fleet name (default: default)")
    agents.add_argument("--count", type=positive_int, required=True)
    agents.add_argument("--lease-ms", type=positive_int, default=3000)
    agents.add_argument(
        "--duration",
        type=positive_float,
        default=600.0,
        metavar="S",
        help="stop by itself after this many seconds (default 600)",
    )
    agents.set_defaults(func=cmd_agents)

    red = sub.add_parser("redis", help="start a private Redis on loopback and print its URL")
    red.add_argument("--persistence", choices=PERSISTENCE_MODES, default="none")
    red.add_argument("--duration", type=positive_float, default=3600.0, metavar="S")
    red.set_defaults(func=cmd_redis)

    bench = sub.add_parser("bench", help="asv run on this commit, asv publish, run report")
    bench.add_argument("--bench", metavar="REGEX", help="only benchmarks matching (asv -b)")
    bench.add_argument("--scale", choices=workload.SCALES, default="quick")
    bench.add_argument("--skip-report", action="store_true", help="only asv run + publish")
    bench.add_argument(
        "--aa",
        type=aa_runs,
        metavar="N",
        help="A/A study: run the suite N times (2-50) on this commit and print each "
        "figure's spread and the effect 1 and 5 runs detect (no publish, no report)",
    )
    bench.add_argument("--json", metavar="PATH", help="with --aa: write the study's table here")
    bench.set_defaults(func=cmd_bench)

    add_history_commands(sub)
    add_dashboard_command(sub)
    add_clean_command(sub)
    add_serve_command(sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from loadkit.redis_io.keyspace import new_run_id
    from loadkit.runs.run_report import build_report, git_commit, load_report
    from loadkit.runs.run_report_output import print_summary, write_report
    from loadkit.supervise.orchestrator import run_workloads

    names = workload.resolve(args.workloads)
    plots = _check_run_paths(args)
    baseline = load_report(args.baseline) if args.baseline else None
    console = Console(stderr=True)
    run_id = new_run_id()  # prefixes every key of this run: clean_run(url, run_id) deletes them
    # A stop signal unwinds like an error: the worker is stopped, the run's keys deleted,
    # the embedded Redis stopped, the temp folders removed; a SIGKILL leaves it to the guard.
    with (
        lifetime.stop_on_signals(),
        guard.guarded() as watcher,
        redis_url(args.redis_url) as url,
    ):
        if args.redis_url or os.environ.get(ENV_URL):  # an embedded Redis just stops
            watcher.watch_run(url, run_id)
        entries, targets = run_workloads(
            names, args.scale, url, args.timeout, console, plots, run_id
        )
    links = {}
    if args.markdown:
        page = _history_page(Path(args.markdown))
        if page:
            links["history page"] = page
    report = build_report(
        entries, targets, scale=args.scale, baseline=baseline, commit=git_commit(), links=links
    )
    print_summary(report, Console())
    write_report(report, args.json, args.markdown)
    return 0 if report["passed"] else 1


def _check_run_paths(args: argparse.Namespace) -> Path | None:
    """Every path of ``run`` checked before Redis starts or a workload runs; returns the
    folder for plots (beside the report) or None when no report is written."""
    args.json = check_output_file(args.json, "--json")
    args.markdown = check_output_file(args.markdown, "--markdown")
    check_input_file(args.baseline, "--baseline")
    report_path = args.markdown or args.json
    if report_path is None:
        return None
    plots = report_path.parent / "plots"
    check_output_dir(plots, "plots folder")
    return plots


def _history_page(markdown: Path) -> str | None:
    """The history page for this repository's asv site (if ``loadkit report`` wrote it),
    as a link relative to the Markdown report."""
    from loadkit.cli.history_commands import history_page_link
    from loadkit.history.sources.asv_config import load_config

    conf = Path("asv.conf.json")
    if not conf.is_file():
        return None
    try:
        html_dir = load_config(conf).html_dir
    except UsageError:
        return None
    page = history_page_link(html_dir)
    return os.path.relpath(page, markdown.resolve().parent) if page else None


def cmd_agents(args: argparse.Namespace) -> int:
    from loadkit.workloads.fleet.host import AgentHost, deregister_later

    check_url(args.redis_url)

    async def host_agents() -> int:
        host = await AgentHost(args.redis_url, args.fleet, lease_ms=args.lease_ms).start()
        signals = lifetime.StopSignals().install(asyncio.get_running_loop())
        stop = signals.event
        try:
            await host.spawn(args.count)
            print(
                f"hosting {host.size} agents as {host.host_id} in fleet {args.fleet!r}", flush=True
            )
            # Until the duration is up, a signal, or Redis lost (then host.stop() raises).
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(host.wait_failed())]
            try:
                await asyncio.wait(waits, timeout=args.duration, return_when="FIRST_COMPLETED")
            finally:
                for w in waits:
                    w.cancel()
        finally:
            try:
                requeued = await host.stop()
            except BaseException:
                # The agents may still be registered: try again over a fresh connection.
                left = list(host.agents)
                if left and not await deregister_later(
                    args.redis_url, args.fleet, host.host_id, left
                ):
                    print(
                        f"{len(left)} agents may stay registered until their leases run out",
                        file=sys.stderr,
                    )
                raise
        print(f"stopped: {host.completed} tasks completed, {requeued} handed back", flush=True)
        return signals.exit_code

    return asyncio.run(host_agents())


def cmd_redis(args: argparse.Namespace) -> int:
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


def cmd_bench(args: argparse.Namespace) -> int:
    from loadkit.asvsuite.bench import run_bench

    return run_bench(args)


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
