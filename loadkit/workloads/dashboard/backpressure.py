"""Telling a stuck WebSocket client from a slow one, by its unsent bytes over time.

The server hands every broadcast to every connection without waiting. Bytes a client
has not taken wait in the kernel's send queue (unsent or unacknowledged) and, once that
is full, in the transport's buffer in the server's memory; "unsent" here is the sum of
both. A client that reads, however slowly, keeps taking bytes: its unsent count falls
below what it was plus what was queued since. A client that stopped reading takes
nothing: its receive window is closed, the kernel holds every byte, the count only grows.

So a client is stuck when its unsent bytes have not shrunk, allowing for bytes queued
since, for ``stall_s`` seconds. Looking at the kernel's queue, not only at the server's
buffer, finds such a client within ``stall_s`` of its first untaken message, however
small and rare the messages are: a rule on the server's buffer alone would first wait
for the kernel's buffers (hundreds of KiB) to fill. A separate byte mark on the server's
buffer bounds its memory whatever the clock says. Pure bookkeeping: the caller reads the
sizes and the clock.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass
class _Backlog:
    since: float  # when the client last took bytes (or was first seen with a backlog)
    unsent: int  # unsent bytes at the last look
    queued: int = 0  # bytes handed to the connection since the last look


class StallWatch:
    """The clients with unsent bytes at their last look, and since when they took none."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self._backlog: dict[Hashable, _Backlog] = {}

    def __contains__(self, client: Hashable) -> bool:
        return client in self._backlog

    def __len__(self) -> int:
        return len(self._backlog)

    def clients(self) -> list[Hashable]:
        """The clients with a backlog at their last look."""
        return list(self._backlog)

    def queued(self, client: Hashable, size: int) -> None:
        """``size`` more bytes were handed to ``client``'s connection. Only clients with
        a backlog need telling: for the others the next backlog starts the clock."""
        backlog = self._backlog.get(client)
        if backlog is not None:
            backlog.queued += size

    def look(self, client: Hashable, unsent: int, now: float) -> bool:
        """Record ``unsent`` bytes for ``client`` at ``now``; True if it is stuck."""
        if unsent <= 0:
            self._backlog.pop(client, None)
            return False
        backlog = self._backlog.get(client)
        if backlog is None:
            self._backlog[client] = _Backlog(now, unsent)
            return False
        if unsent < backlog.unsent + backlog.queued:  # it took some: it is reading
            backlog.since = now
        backlog.unsent, backlog.queued = unsent, 0
        return now - backlog.since >= self.stall_s

    def forget(self, client: Hashable) -> None:
        self._backlog.pop(client, None)
