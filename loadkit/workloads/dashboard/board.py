"""The dashboard's model of the fleet: agent states, counters, a chart series, diffs.

Pure data, no I/O. A source hands the board either a full sample of agent states (the
real fleet: whatever :class:`loadkit.workloads.fleet.host.AgentHost` holds right now) or just the
agents that changed (the simulator); the board answers with the :class:`Delta` to
broadcast and keeps a version number that changes exactly when the snapshot does, which
is what the polling endpoint's ETag is made of.

Every agent has a *slot*: its position in the board's order (the order agents joined).
Updates name agents by slot and state by one letter (:data:`CODES`), so a round in
which a thousand agents change costs about a kilobyte on the wire instead of twenty:

* a delta lists only the slots whose state changed, as a hex bitmap over all slots
  (``"m"``) or as a list of slot numbers (``"s"``), whichever is shorter, and their new
  letters in slot order (``"c"``);
* a keyframe carries every slot's letter (``"k"``), and the agents' ids in slot order
  (``"ids"``) whenever agents joined or left, which renumbers the slots.

A board that follows another one (a server process fed by the process that owns the
board) applies these same bodies with :meth:`AgentBoard.follow`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

HISTORY_POINTS = 300  # chart: one point a second, the last five minutes
HISTORY_EVERY_S = 1.0

# One letter per agent state on the wire; the fleet's states are exactly these.
CODES = {"idle": "i", "busy": "b", "new": "n", "dead": "d"}
STATE_OF = {code: state for state, code in CODES.items()}


@dataclass(frozen=True)
class Delta:
    version: int
    changed: dict[str, str]
    removed: list[str]
    joined: bool = False  # agents joined or left: the slots were renumbered

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)


def encode_slots(slots: list[int], total: int) -> tuple[str, Any]:
    """The shorter way to name ``slots`` (ascending) of ``total``: ``("m", hex bitmap)``,
    most significant bit first, or ``("s", [slot, ...])``."""
    bitmap_chars = 2 * ((total + 7) // 8)
    list_chars = sum(len(str(s)) + 1 for s in slots)
    if list_chars <= bitmap_chars:
        return "s", slots
    bits = bytearray(bitmap_chars // 2)
    for s in slots:
        bits[s >> 3] |= 0x80 >> (s & 7)
    return "m", bits.hex()


def decode_slots(body: Mapping[str, Any]) -> list[int]:
    """The slots an update body names (ascending), from either form."""
    if "s" in body:
        return list(body["s"])
    bits = bytes.fromhex(body.get("m", ""))
    return [8 * i + b for i, byte in enumerate(bits) if byte for b in range(8) if byte & 0x80 >> b]


def check_state(state: str) -> str:
    if state not in CODES:
        raise ValueError(f"unknown agent state {state!r}; one of {', '.join(CODES)}")
    return state


@dataclass
class AgentBoard:
    states: dict[str, str] = field(default_factory=dict)  # iteration order = slot order
    version: int = 0
    stats: dict[str, float] = field(default_factory=dict)
    history: deque[tuple[float, float | None, float | None]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_POINTS)
    )
    _counts: Counter[str] = field(default_factory=Counter)
    _slot: dict[str, int] = field(default_factory=dict)
    _codes: bytearray = field(default_factory=bytearray)
    _ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.states:
            self._renumber()

    def _renumber(self) -> None:
        self._ids = list(self.states)
        self._slot = {agent_id: i for i, agent_id in enumerate(self._ids)}
        self._codes = bytearray("".join(CODES[s] for s in self.states.values()), "ascii")
        self._counts = Counter(self.states.values())

    def update(self, changed: Mapping[str, str], removed: Iterable[str] = ()) -> Delta:
        """Apply the agents that changed (and those gone); unchanged entries are ignored."""
        real: dict[str, str] = {}
        joined = False
        for agent_id, state in changed.items():
            old = self.states.get(agent_id)
            if old != state:
                check_state(state)
                if old is None:
                    joined = True
                else:
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
        if joined or gone:
            self._renumber()
        else:
            slot, codes = self._slot, self._codes
            for agent_id, state in real.items():
                codes[slot[agent_id]] = ord(CODES[state])
        if real or gone:
            self.version += 1
        return Delta(self.version, real, gone, joined or bool(gone))

    def replace(self, sample: Mapping[str, str]) -> Delta:
        """Make the board equal to a full sample of agent states."""
        removed = [a for a in self.states if a not in sample]
        return self.update(sample, removed)

    def counts(self) -> dict[str, int]:
        return {state: n for state, n in self._counts.items() if n > 0}

    def codes(self) -> str:
        """Every slot's state letter, in slot order."""
        return self._codes.decode("ascii")

    def set_stats(self, stats: Mapping[str, float], now_s: float) -> tuple | None:
        """Record the source's latest figures; returns a new chart point when one is due."""
        self.stats = dict(stats)
        if self.history and now_s - self.history[-1][0] < HISTORY_EVERY_S:
            return None
        point = (round(now_s, 3), stats.get("throughput_per_s"), stats.get("latency_ms"))
        self.history.append(point)
        return point

    # -- message bodies ------------------------------------------------------------
    def snapshot_body(self) -> dict[str, Any]:
        """Everything, readable: ``agents`` maps id to state, ``ids`` gives slot order."""
        return {
            "v": self.version,
            "ids": list(self.states),
            "agents": self.states,
            "counts": self.counts(),
            "stats": self.stats,
            "history": list(self.history),
        }

    def update_body(
        self, delta: Delta, point: tuple | None, keyframe: bool = False
    ) -> dict[str, Any]:
        """A compact delta, or a keyframe when asked or when the slots were renumbered."""
        body: dict[str, Any] = {"v": self.version}
        if keyframe or delta.joined:
            body["k"] = self.codes()
            if delta.joined:
                body["ids"] = list(self.states)
        else:
            slot = self._slot
            slots = sorted(slot[a] for a in delta.changed)
            form, value = encode_slots(slots, len(slot))
            body[form] = value
            body["c"] = "".join(chr(self._codes[s]) for s in slots)
        body["counts"] = self.counts()
        body["stats"] = self.stats
        if point is not None:
            body["point"] = point
        return body

    # -- following another board ---------------------------------------------------
    def load(self, body: Mapping[str, Any]) -> None:
        """Become the board a snapshot body describes."""
        agents = body["agents"]
        self.states = {agent_id: check_state(agents[agent_id]) for agent_id in body["ids"]}
        self._renumber()
        self.version = int(body["v"])
        self.stats = dict(body.get("stats", {}))
        self.history.clear()
        self.history.extend(tuple(p) for p in body.get("history", ()))

    def follow(self, body: Mapping[str, Any]) -> None:
        """Apply an update body made by :meth:`update_body` of the board this one follows.

        Raises ValueError for a body that does not fit this board (slots out of range, a
        keyframe of another size): the follower then needs a snapshot."""
        if "ids" in body:
            ids, codes = body["ids"], body["k"]
            if len(ids) != len(codes):
                raise ValueError("keyframe ids and states differ in length")
            self.states = {a: STATE_OF[c] for a, c in zip(ids, codes, strict=True)}
            self._renumber()
        elif "k" in body:
            codes = body["k"]
            if len(codes) != len(self.states):
                raise ValueError(f"keyframe of {len(codes)} slots, board of {len(self.states)}")
            self.states = {a: STATE_OF[c] for a, c in zip(self.states, codes, strict=True)}
            self._renumber()
        else:
            slots, codes = decode_slots(body), body.get("c", "")
            if len(slots) != len(codes) or (slots and slots[-1] >= len(self._codes)):
                raise ValueError("delta does not fit the board")
            ids = self._ids
            counts, states, mine = self._counts, self.states, self._codes
            for s, c in zip(slots, codes, strict=True):
                agent_id = ids[s]
                counts[states[agent_id]] -= 1
                state = STATE_OF[c]
                counts[state] += 1
                states[agent_id] = state
                mine[s] = ord(c)
        self.version = int(body["v"])
        self.stats = dict(body.get("stats", {}))
        if body.get("point") is not None:
            self.history.append(tuple(body["point"]))


class BoardView:
    """A viewer's copy of the board, kept from a snapshot and the updates after it (what
    the page does in JavaScript and the load client does in bulk)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.codes = bytearray()

    def load(self, snapshot: Mapping[str, Any]) -> None:
        self.ids = list(snapshot["ids"])
        agents = snapshot["agents"]
        self.codes = bytearray("".join(CODES[agents[a]] for a in self.ids), "ascii")

    def apply(self, update: Mapping[str, Any]) -> bool:
        """Apply one update body; False when it does not fit (ask for a snapshot)."""
        if "ids" in update:
            self.ids = list(update["ids"])
        if "k" in update:
            if len(update["k"]) != len(self.ids):
                return False
            self.codes = bytearray(update["k"].encode("ascii"))
            return True
        slots, letters = decode_slots(update), update.get("c", "")
        if len(slots) != len(letters) or (slots and slots[-1] >= len(self.codes)):
            return False
        for s, c in zip(slots, letters, strict=True):
            self.codes[s] = ord(c)
        return True

    def agents(self) -> dict[str, str]:
        return {a: STATE_OF[chr(c)] for a, c in zip(self.ids, self.codes, strict=True)}
