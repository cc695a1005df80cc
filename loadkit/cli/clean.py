"""``loadkit clean``: delete the keys loadkit runs left on a Redis
(:mod:`loadkit.redis_io.clean`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``loadkit clean`` on the CLI's subparsers."""
    p = subparsers.add_parser("clean", help="delete the keys loadkit runs left on a Redis")
    p.add_argument("--redis-url", help="the Redis to clean ($LOADKIT_REDIS_URL)")
    p.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    p.add_argument(
        "--fleet",
        action="append",
        default=[],
        metavar="NAME",
        help="also delete this named fleet's keys (repeatable)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs: the Redis client is not needed to build the parser.
    from loadkit.redis_io.clean import clean

    return clean(args.redis_url, args.fleet, args.dry_run)
