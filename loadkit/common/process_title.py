"""Passwords out of the process table.

Any local user can read any process's command line (``ps``, ``/proc/<pid>/cmdline``).
loadkit never puts a secret on a command line it builds (the Redis URL reaches child
processes through their environment, which only their owner can read), but a user may
type one: ``loadkit run --redis-url redis://user:password@host/0``. As the first thing
it does, the process rewrites its own command line with every URL redacted (the
``setproctitle`` library overwrites the memory ``/proc`` reads it from), so the password
shows only for the moment the interpreter takes to start. ``$LOADKIT_REDIS_URL`` keeps it
out of the process table entirely.
"""

from __future__ import annotations

import sys

from loadkit.common.redaction import redact_text


def shown_command_line(argv: list[str]) -> list[str]:
    """The command line as it may be shown: every URL in it redacted."""
    return [redact_text(arg) for arg in argv]


def hide_secrets_in_command_line() -> bool:
    """Rewrite this process's command line if it holds a secret; True when it did."""
    argv = list(sys.orig_argv)
    shown = shown_command_line(argv)
    if shown == argv:
        return False
    try:
        import setproctitle
    except ImportError:  # a broken install; the command itself still works
        return False
    setproctitle.setproctitle(" ".join(shown))
    return True
