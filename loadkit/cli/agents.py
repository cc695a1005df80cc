"""``loadkit agents``: host agents in this process that join a fleet through Redis."""

from __future__ import annotations

import argparse
import asyncio
import sys

from loadkit.common.argtypes import positive_float, positive_int
from loadkit.runtime import lifetime


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    agents = subparsers.add_parser("agents", help="host agents that join a fleet through Redis")
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
    agents.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs: the fleet pulls in the Redis client.
    from loadkit.redis_io.connect import check_url
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
