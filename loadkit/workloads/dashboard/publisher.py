"""The one owner of a board: turns a source's ticks into numbered, encoded messages.

Every message of a board carries the board's id (``boot``, chosen when the publisher
starts) and its sequence number (``seq``), so the numbering belongs to the board, not
to whichever server process forwards it: a viewer that moves to another server process
of the same board picks up at the next number. Every ``keyframe_every``-th update is a
keyframe (every agent's state) instead of a delta. The bytes made here go out unchanged
to every viewer, through one server in this process or through Redis to many
(:mod:`.fanout`). Pure: no sockets, no Redis.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loadkit.workloads.dashboard import protocol
from loadkit.workloads.dashboard.board import AgentBoard
from loadkit.workloads.dashboard.sources import Tick

KEYFRAME_EVERY = 20  # a keyframe every 20 updates: 10 s at the CLI's default pace


def snapshot_message(board: AgentBoard, seq: int, ts_ms: float, boot: str) -> bytes:
    """The full board as a ``snapshot`` message."""
    return protocol.encode("snapshot", seq, ts_ms, boot, board.snapshot_body()).encode()


class BoardPublisher:
    """Owns ``board``; :meth:`publish` applies a tick and returns the update to send."""

    def __init__(
        self,
        board: AgentBoard | None = None,
        keyframe_every: int = KEYFRAME_EVERY,
        boot: str | None = None,
    ) -> None:
        if keyframe_every < 0:
            raise ValueError(f"keyframe_every must be >= 0 (0: none), got {keyframe_every}")
        self.board = board or AgentBoard()
        self.boot = boot or secrets.token_hex(3)
        self.seq = 0
        self.ts_ms = time.time() * 1000
        self.keyframe_every = keyframe_every
        self._snapshot: tuple[int, bytes] | None = None

    def publish(self, tick: Tick, now_s: float | None = None) -> bytes:
        board = self.board
        delta = (
            board.replace(tick.full)
            if tick.full is not None
            else board.update(tick.changed, tick.removed)
        )
        point = board.set_stats(tick.stats, time.monotonic() if now_s is None else now_s)
        self.seq += 1
        self.ts_ms = time.time() * 1000
        every = self.keyframe_every
        body = board.update_body(delta, point, keyframe=every > 0 and self.seq % every == 0)
        return protocol.encode("update", self.seq, self.ts_ms, self.boot, body).encode()

    def snapshot(self) -> bytes:
        """The current board as a snapshot message, encoded once per update."""
        if self._snapshot is None or self._snapshot[0] != self.seq:
            message = snapshot_message(self.board, self.seq, self.ts_ms, self.boot)
            self._snapshot = (self.seq, message)
        return self._snapshot[1]


async def run_ticks(
    publish: Callable[[Tick, float], Any],
    tick: Callable[[float], Tick | Awaitable[Tick]],
    interval_s: float,
    duration_s: float,
) -> None:
    """Publish ``tick(seconds since the last)`` (a plain or async callable) every
    ``interval_s`` for ``duration_s``; ``publish`` may be plain or async too."""
    start = last = time.monotonic()
    due = start
    while time.monotonic() - start < duration_s:
        now = time.monotonic()
        result = tick(now - last)
        done = publish(await result if inspect.isawaitable(result) else result, now)
        if inspect.isawaitable(done):
            await done
        last = now
        due += interval_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))
