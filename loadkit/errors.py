"""Errors that the command line turns into a one-line message and an exit code.

Expected failures (bad options, a server that does not answer, unreadable input) are
raised as :class:`UsageError` so the CLI can print one clear line and exit 2 instead
of a traceback; anything else is a bug and keeps its traceback.
"""


class UsageError(Exception):
    """Bad input or an unusable environment: print the message, exit with code 2."""

    exit_code = 2
