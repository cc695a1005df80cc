"""Errors that the command line turns into a one-line message and an exit code.

Expected failures (bad options, a server that does not answer, unreadable input) are
raised as :class:`UsageError` so the CLI can print one clear line and exit 2 instead
of a traceback. A job that was set up right but failed (a benchmark that failed, a
server that died) is a :class:`Failure`: one line and exit 1; a Redis that stops
answering in the middle of a run is one of those, :class:`RedisLost`. A stop signal is
:class:`Interrupted`: exit ``128 + n``. Anything else is a bug and keeps its traceback.

Exit codes, the same for every command: 0 passed, 1 a target missed / a regression /
a failure, 2 bad usage, 130 / 143 / 129 stopped by SIGINT / SIGTERM / SIGHUP.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from loadkit.common.redaction import redact_text


class UsageError(Exception):
    """Bad input or an unusable environment: print the message, exit with code 2."""

    exit_code = 2


class Failure(Exception):
    """The input was fine but the job failed (a benchmark failed, a server died):
    print the message, exit with code 1."""

    exit_code = 1


class RedisLost(Failure):
    """Redis stopped answering mid-run for longer than loadkit waits for it: what was
    running cannot go on, so it ends with this error instead of retrying forever."""


class Interrupted(SystemExit):
    """A stop signal arrived: unwind (so every ``finally`` cleans up) and exit
    ``128 + signum``, as a shell reports a process ended by that signal. A SystemExit,
    so ``except Exception`` blocks let it through."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"stopped by {signal_name(self.signum)}"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code_of(prog: str, command: Callable[[], int]) -> int:
    """Run a command-line entry point: a UsageError becomes ``prog: error: ...`` and
    its exit code, a stop signal ``prog: interrupted (SIGTERM)`` and ``128 + n``
    (Ctrl-C without a handler: 130), so every loadkit command ends the same way."""
    try:
        return int(command())
    except (UsageError, Failure) as exc:
        # Messages are written to hide credentials; redacting again catches one that quotes
        # a URL from elsewhere (a library's message, a file's contents).
        print(f"{prog}: error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        print(f"{prog}: interrupted ({signal_name(exc.signum)})", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (SIGINT)", file=sys.stderr)
        return 130
