"""Leader election per swarm: a lease with a fencing token, as a pure state machine.

A candidate asks for the lease (``SET NX PX`` and ``INCR epoch`` in one script, so every
grant has a larger token than any before it), renews it by compare-and-extend, and
writes state only through scripts that reject a token older than the current epoch. The
state machine here decides *what* to send and *when*; :class:`ElectionBoard` sends the
calls of many candidates in pipelines of a few dozen calls. Nothing here assumes the
candidate's clock is right about the lease: fencing, not timing, is what keeps a paused
ex-leader out.

A non-leader does not poll: a refused acquire returns the lease's remaining time, and the
candidate tries again just after it ends (or at once on a "vacant" hint).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from loadkit.workloads.swarm.keys import SwarmKeys
from loadkit.workloads.swarm.scripts import Call, Scripts

RENEW_FRACTION = 3  # renew when a third of the lease has passed
RETRY_SLACK_MS = 1  # try again this long after the lease should have ended


@dataclass
class Candidacy:
    """One member's standing for the leadership of one swarm."""

    keys: SwarmKeys
    holder: str
    ttl_ms: int
    token: int = 0  # > 0 while this candidate believes it leads
    next_try_ns: int = 0  # when to ask for the lease again (not leading)
    renew_due_ns: int = 0
    valid_until_ns: int = 0  # conservative: measured from when the request was sent
    snapshot_due_ns: int = 0
    last_token: int = 0  # the last token granted to it, kept after stepping down
    granted_ns: list[int] = field(default_factory=list)

    @property
    def leading(self) -> bool:
        return self.token > 0

    def action(self, now_ns: int) -> str | None:
        """What to send now: ``acquire``, ``renew`` or nothing."""
        if self.leading:
            if now_ns >= self.valid_until_ns:
                self.token = 0  # could not renew in time: step down, ask again
                self.next_try_ns = now_ns
                return "acquire"
            return "renew" if now_ns >= self.renew_due_ns else None
        return "acquire" if now_ns >= self.next_try_ns else None

    def call(self, action: str) -> Call:
        k = self.keys
        if action == "acquire":
            return "acquire", [k.lease], [k.prefix, self.holder, self.ttl_ms]
        if action == "renew":
            return "renew", [k.lease], [k.prefix, self.holder, self.token, self.ttl_ms]
        if action == "release":
            return "release", [k.lease], [k.prefix, self.holder, self.token]
        raise ValueError(f"unknown action {action!r}")

    def on_reply(self, action: str, reply: Any, sent_ns: int, now_ns: int) -> bool:
        """Apply a script's reply; returns True when this reply granted the lease."""
        ttl_ns = self.ttl_ms * 1_000_000
        if action == "acquire":
            token, ms = int(reply[0]), int(reply[1])
            if token > 0:
                # Redis may answer a holder that had stepped down (its lease ran out on
                # its own clock, not yet on Redis's) with the token it already had: that
                # is leadership resumed, not a new grant.
                new = token != self.last_token
                self.token = self.last_token = token
                self.valid_until_ns = sent_ns + ms * 1_000_000
                self.renew_due_ns = sent_ns + ttl_ns // RENEW_FRACTION
                if new:
                    self.granted_ns.append(now_ns)
                return new
            self.token = 0
            wait_ms = (ms if ms > 0 else 0) + RETRY_SLACK_MS
            self.next_try_ns = now_ns + wait_ms * 1_000_000
            return False
        if action == "renew":
            if int(reply) == 1:
                self.valid_until_ns = sent_ns + ttl_ns
                self.renew_due_ns = sent_ns + ttl_ns // RENEW_FRACTION
            else:
                self.token = 0
                self.next_try_ns = now_ns
            return False
        if action == "release":
            self.token = 0
            self.next_try_ns = now_ns + ttl_ns
            return False
        raise ValueError(f"unknown action {action!r}")

    def hint_vacant(self, now_ns: int) -> None:
        """A (lossy) hint that the lease is free: try now instead of at its expiry."""
        if not self.leading:
            self.next_try_ns = min(self.next_try_ns, now_ns)


def fenced_write(keys: SwarmKeys, token: int, fields: dict[str, Any]) -> Call:
    flat: list[Any] = []
    for name, value in fields.items():
        flat += [name, value]
    return "fenced_hset", [keys.state], [keys.prefix, token, *flat]


def snapshot(keys: SwarmKeys, token: int) -> Call:
    return "snapshot", [keys.state], [keys.prefix, token]


class ElectionBoard:
    """Drives many candidacies, their due calls a few pipelines per tick."""

    def __init__(self, scripts: Scripts, candidacies: Iterable[Candidacy]) -> None:
        self.scripts = scripts
        self.candidacies = list(candidacies)
        self.grants = 0

    async def tick(self) -> int:
        """Send every due acquire/renew; returns how many leases were granted."""
        now = time.perf_counter_ns()
        due = [(c, a) for c in self.candidacies if (a := c.action(now)) is not None]
        if not due:
            return 0
        # In chunks, measured from before the first: a lease's validity stays conservative.
        replies = await self.scripts.run_in_chunks([c.call(a) for c, a in due])
        done = time.perf_counter_ns()
        granted = sum(c.on_reply(a, r, now, done) for (c, a), r in zip(due, replies, strict=True))
        self.grants += granted
        return granted

    def next_wakeup_ns(self) -> int:
        times = []
        for c in self.candidacies:
            times.append(min(c.renew_due_ns, c.valid_until_ns) if c.leading else c.next_try_ns)
        return min(times, default=time.perf_counter_ns() + 100_000_000)

    def leaders(self) -> list[Candidacy]:
        return [c for c in self.candidacies if c.leading]

    async def release_all(self) -> int:
        held = self.leaders()
        if not held:
            return 0
        replies = await self.scripts.run_many([c.call("release") for c in held])
        now = time.perf_counter_ns()
        for c, r in zip(held, replies, strict=True):
            c.on_reply("release", r, now, now)
        return sum(int(r) for r in replies)
