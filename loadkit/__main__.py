"""Allow ``python -m loadkit``; the console script ``loadkit`` runs :func:`main` too.

Secrets typed on the command line are hidden from the process table before the command
line interface (and the libraries it imports) is loaded: see :mod:`loadkit.common.process_title`.
"""

from __future__ import annotations

from loadkit.common.process_title import hide_secrets_in_command_line


def main() -> int:
    hide_secrets_in_command_line()
    # Imported after the title is rewritten: a password typed in --redis-url leaves ps
    # before the command line's modules load.
    from loadkit.cli.main import main as cli_main

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
