"""Errors that the command line turns into a one-line message and an exit code.

Expected failures (bad options, a server that does not answer, unreadable input) are
raised as :class:`UsageError` so the CLI can print one clear line and exit 2 instead
of a traceback. A Redis that stops answering in the middle of a run is
:class:`RedisLost`: one line and exit 1, since the input was fine but the run failed.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from loadkit.redaction import redact_text


class UsageError(Exception):
    """Bad input or an unusable environment: print the message, exit with code 2."""

    exit_code = 2


class RunFailed(Exception):
    """The input was fine but what ran failed (a benchmark that failed or timed out, a
    suite that does not import): print the message, exit with code 1."""

    exit_code = 1


class RedisLost(Exception):
    """Redis stopped answering mid-run for longer than loadkit waits for it: what was
    running cannot go on, so it ends with this error instead of retrying forever."""

    exit_code = 1


def exit_code_of(prog: str, command: Callable[[], int]) -> int:
    """Run a command-line entry point: a UsageError becomes ``prog: error: ...`` and
    its exit code, Ctrl-C becomes ``prog: interrupted`` and 130, so every loadkit
    command ends the same way."""
    try:
        return int(command())
    except (UsageError, RunFailed, RedisLost) as exc:
        # Messages are written to hide credentials; redacting again catches one that quotes
        # a URL from elsewhere (a library's message, a file's contents).
        print(f"{prog}: error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
