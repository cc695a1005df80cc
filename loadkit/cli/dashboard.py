"""``loadkit dashboard``: serve the live page of a fleet (the options; the serving is
:mod:`loadkit.workloads.dashboard.app`)."""

from __future__ import annotations

import argparse
import dataclasses

from loadkit.common.argtypes import positive_float, positive_int
from loadkit.workloads.dashboard.access import format_origin, parse_origin


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def _origin(text: str) -> str:
    try:
        return format_origin(parse_origin(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``loadkit dashboard`` on the CLI's subparsers."""
    p = subparsers.add_parser("dashboard", help="serve a live dashboard of a simulated fleet")
    p.add_argument("--agents", type=positive_int, default=200, help="fleet size (default 200)")
    p.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--token", help="access token, required off loopback ($LOADKIT_DASHBOARD_TOKEN)")
    p.add_argument(
        "--allow-origin",
        type=_origin,
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept pages from this origin (scheme://host[:port]; repeatable)",
    )
    p.add_argument(
        "--interval", type=positive_float, default=0.5, metavar="S", help="update period"
    )
    p.add_argument(
        "--duration",
        type=positive_float,
        default=3600.0,
        metavar="S",
        help="stop by itself after this many seconds (default 3600)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="server processes sharing the viewers on one port, fed through Redis (default 1)",
    )
    p.add_argument("--simulate", action="store_true", help="in-process simulator, no Redis")
    p.add_argument("--redis-url", help="use this Redis instead of an embedded one")
    p.add_argument(
        "--fleet",
        metavar="NAME",
        help="watch this existing fleet (e.g. run by `loadkit agents`) instead of starting one",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs: the server pulls in websockets and the fleet.
    from loadkit.workloads.dashboard.app import DashboardOptions, run_dashboard

    names = {f.name for f in dataclasses.fields(DashboardOptions)} - {"run_id"}
    return run_dashboard(DashboardOptions(**{n: getattr(args, n) for n in names}))
