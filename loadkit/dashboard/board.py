"""The dashboard's model of the fleet: agent states, counters, a chart series, diffs.

Pure data, no I/O. A source hands the board either a full sample of agent states (the
real fleet: whatever :class:`loadkit.fleet.host.AgentHost` holds right now) or just the
agents that changed (the simulator); the board answers with the :class:`Delta` to
broadcast and keeps a version number that changes exactly when the snapshot does, which
is what the polling endpoint's ETag is made of.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

HISTORY_POINTS = 300  # chart: one point a second, the last five minutes
HISTORY_EVERY_S = 1.0


@dataclass(frozen=True)
class Delta:
    version: int
    changed: dict[str, str]
    removed: list[str]

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)


@dataclass
class AgentBoard:
    states: dict[str, str] = field(default_factory=dict)
    version: int = 0
    stats: dict[str, float] = field(default_factory=dict)
    history: deque[tuple[float, float | None, float | None]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_POINTS)
    )
    _counts: Counter[str] = field(default_factory=Counter)

    def update(self, changed: Mapping[str, str], removed: Iterable[str] = ()) -> Delta:
        """Apply the agents that changed (and those gone); unchanged entries are ignored."""
        real: dict[str, str] = {}
        for agent_id, state in changed.items():
            old = self.states.get(agent_id)
            if old != state:
                if old is not None:
                    self._counts[old] -= 1
                self._counts[state] += 1
                self.states[agent_id] = state
                real[agent_id] = state
        gone = []
        for agent_id in removed:
            old = self.states.pop(agent_id, None)
            if old is not None:
                self._counts[old] -= 1
                gone.append(agent_id)
        if real or gone:
            self.version += 1
        return Delta(self.version, real, gone)

    def replace(self, sample: Mapping[str, str]) -> Delta:
        """Make the board equal to a full sample of agent states."""
        removed = [a for a in self.states if a not in sample]
        return self.update(sample, removed)

    def counts(self) -> dict[str, int]:
        return {state: n for state, n in self._counts.items() if n > 0}

    def set_stats(self, stats: Mapping[str, float], now_s: float) -> tuple | None:
        """Record the source's latest figures; returns a new chart point when one is due."""
        self.stats = dict(stats)
        if self.history and now_s - self.history[-1][0] < HISTORY_EVERY_S:
            return None
        point = (round(now_s, 3), stats.get("throughput_per_s"), stats.get("latency_ms"))
        self.history.append(point)
        return point

    def snapshot_body(self) -> dict[str, Any]:
        return {
            "v": self.version,
            "agents": self.states,
            "counts": self.counts(),
            "stats": self.stats,
            "history": list(self.history),
        }

    def update_body(self, delta: Delta, point: tuple | None) -> dict[str, Any]:
        body: dict[str, Any] = {"v": self.version, "changed": delta.changed}
        if delta.removed:
            body["removed"] = delta.removed
        body["counts"] = self.counts()
        body["stats"] = self.stats
        if point is not None:
            body["point"] = point
        return body


def apply_update(agents: dict[str, str], body: Mapping[str, Any]) -> None:
    """Client side: apply an update body to a local copy of the agents (as the page does)."""
    agents.update(body.get("changed", {}))
    for agent_id in body.get("removed", ()):
        agents.pop(agent_id, None)
