"""``loadkit serve``: the asv site and the history page on 127.0.0.1
(:mod:`loadkit.asvsuite.serve`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from loadkit.common.argtypes import port_number


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the asv site and the history page on 127.0.0.1 (until Ctrl-C)",
        description="Serves <html> and <html>-loadkit (the history page) read-only. "
        "Exit 130 on Ctrl-C, 143 on SIGTERM, 2 on usage errors.",
    )
    parser.add_argument(
        "--html",
        type=Path,
        help="asv html dir (default: html_dir of ./asv.conf.json, else html)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8080, help="port (8080; 0: any)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs: reading asv.conf.json pulls in asv.
    from loadkit.asvsuite.serve import serve

    return serve(args.html, args.host, args.port)
