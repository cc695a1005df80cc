"""``python -m loadkit.workloads.swarm``: run N swarms of M members on Redis at a paced rate and
print what happened (delivered, lost, duplicates, latency, leaders).

The same deployment the workload measures, for trying sizes by hand: an embedded Redis
unless ``--redis-url`` (or ``$LOADKIT_REDIS_URL``) names one, one coordinator and one
producer process by default, and a run that ends by itself after ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import sys

from loadkit.common.errors import UsageError, exit_code_of
from loadkit.common.process_title import hide_secrets_in_command_line
from loadkit.redis_io.server import redis_url
from loadkit.redis_io.urls import ENV_URL
from loadkit.runs.metrics import percentile
from loadkit.workloads.swarm.config import SwarmConfig
from loadkit.workloads.swarm.rig import SwarmRig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadkit.workloads.swarm", description=__doc__)
    parser.add_argument("--redis-url", help=f"use this Redis (or ${ENV_URL}); default embedded")
    parser.add_argument("--swarms", type=int, default=100)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--coordinators", type=int, default=1)
    parser.add_argument("--producers", type=int, default=1)
    parser.add_argument("--rate", type=float, default=1000.0, help="messages/s (default 1000)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds (default 5)")
    return parser


async def _run(config: SwarmConfig, rate: float, duration: float) -> int:
    rig = await SwarmRig(config).start()
    try:
        led, _ = await rig.wait_leaders()
        await rig.produce("paced", rate / config.producers, duration, timeout_s=duration + 60)
        await rig.drain()
        ms = await rig.latencies_ms()
        check = await rig.verify()
    finally:
        await rig.close()
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    print(
        f"{config.swarms} swarms x {config.members} members, {led} led; "
        f"sent {check['sent']}, delivered {check['applied']}, lost {check['lost']}, "
        f"duplicates {check['duplicates']}; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    return 0 if check["lost"] == 0 and led == config.swarms else 1


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a password typed in --redis-url leaves the process table first
        hide_secrets_in_command_line()
    args = build_parser().parse_args(argv)
    return exit_code_of("loadkit swarm", lambda: _command(args))


def _command(args: argparse.Namespace) -> int:
    if not (args.rate > 0 and 0 < args.duration <= 3600):
        raise UsageError("--rate must be > 0 and --duration in (0, 3600] seconds")
    config = SwarmConfig(  # checked before any server is started
        url="",
        run="cli" + secrets.token_hex(3),
        swarms=args.swarms,
        members=args.members,
        coordinators=args.coordinators,
        producers=args.producers,
        lifetime_s=args.duration + 120,
    )
    with redis_url(args.redis_url) as url:
        return asyncio.run(_run(dataclasses.replace(config, url=url), args.rate, args.duration))


if __name__ == "__main__":
    sys.exit(main())
