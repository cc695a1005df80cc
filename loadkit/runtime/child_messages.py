"""How a parent and the child processes it starts talk to each other.

Every child loadkit starts (a swarm's coordinator and producer processes, the dashboard's
load-client processes, a workload's worker, the guard that outlives a command) speaks one
shape: a :class:`Message` of a ``kind`` and a ``body``. The parent sends a command (its
kind names it, its body holds the arguments); the child answers with ``ready``, ``ok``,
``error`` (the body is one line: the exception's type and text) or ``stopped``, and a
worker reports ``progress`` on the way. Pipes between Python processes carry messages
pickled; the worker and the guard, separate programs, exchange them as JSON lines
(:func:`to_json_line`).

The waiting side never blocks for ever: :func:`receive` gives up after a timeout and
says when the other end has gone, so a child whose parent died stops by itself and a
parent whose child died says which one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, NamedTuple

READY = "ready"
OK = "ok"
ERROR = "error"
STOPPED = "stopped"
STOP = "stop"
PROGRESS = "progress"


class Message(NamedTuple):
    kind: str
    body: Any = None


GONE = Message("gone")  # the other end of the pipe closed


class ChildFailed(RuntimeError):
    """A child answered ``error``, or never answered."""


def error_text(exc: BaseException) -> str:
    """An exception as one line for the other side: its type and its text."""
    return f"{type(exc).__name__}: {exc}"


def send(conn: Connection, kind: str, body: Any = None) -> None:
    conn.send(Message(kind, body))


def send_error(conn: Connection, exc: BaseException) -> None:
    conn.send(Message(ERROR, error_text(exc)))


def receive(conn: Connection, timeout_s: float) -> Message | None:
    """The next message; None when nothing came within ``timeout_s``; :data:`GONE` once
    the other side has closed its end (it exited or was killed)."""
    try:
        if not conn.poll(timeout_s):
            return None
        message = conn.recv()
    except (EOFError, OSError):
        return GONE
    return message if isinstance(message, Message) else Message(*message)


def expect(conn: Connection, kind: str, timeout_s: float, who: str) -> Any:
    """The body of the next message, which must be of ``kind``; anything else (an
    ``error``, silence, a closed pipe) raises :class:`ChildFailed` naming ``who``."""
    message = receive(conn, timeout_s)
    if message is None:
        raise ChildFailed(f"{who} gave no answer within {timeout_s:g} s")
    if message is GONE:
        raise ChildFailed(f"{who} exited without answering")
    if message.kind != kind:
        raise ChildFailed(
            f"{who}: {message.body}" if message.kind == ERROR else f"{who}: {message}"
        )
    return message.body


def to_json_line(kind: str, body: Any = None) -> str:
    """A message as one line of JSON, for children that talk through a stream."""
    return json.dumps({"kind": kind, "body": body})


def from_json_line(line: str) -> Message | None:
    """The message on one line, or None for a line that is not one (stray output)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return None
    return Message(data["kind"], data.get("body"))


def stop_children(
    procs: Sequence[BaseProcess], pipes: Sequence[Connection], wait_s: float, ask: bool = True
) -> None:
    """End a set of children that answer on ``pipes``: tell each to stop (unless
    ``ask`` is False: they stop on their own), give each ``wait_s`` to exit, kill the
    ones still there, and close the pipes. Safe on children that are already gone."""
    if ask:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                send(pipe, STOP)
    for proc in procs:
        proc.join(timeout=wait_s)
        if proc.is_alive():
            proc.kill()
            proc.join()
    for pipe in pipes:
        pipe.close()
