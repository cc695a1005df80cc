"""Key names of a swarm, all under one hash tag so every script also runs on a cluster.

A swarm's keys look like ``<run>:{swarm:<id>}:<part>``: the hash tag ``{swarm:<id>}``
puts all of them in one slot (multi-key Lua scripts are legal on Redis Cluster), and the
run prefix keeps concurrent runs against one server apart.

==================  ======  ===================================================
``stream``          stream  work messages (consumer group ``GROUP``), trimmed once
                            every consumer has acknowledged them
``seen:<p>``        bitmap  bit ``s`` set once message ``s`` of producer ``p`` was
                            applied: the idempotency record (1 bit per message)
``state``           hash    applied, duplicates, leader, leader_token, snapshot_*,
                            stale_rejected, fenced_writes
``epoch``           string  fencing token counter (INCR on every grant)
``lease``           string  the leader's lease: holder id, PX expiry
``members``         hash    member id -> the coordinator hosting it
``hints``           pubsub  "vacant" when a leader releases its lease (lossy)
==================  ======  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "workers"


def check_name(text: str, what: str) -> str:
    if not text or any(c in text for c in "{}: \t\n"):
        raise ValueError(f"invalid {what} {text!r}: non-empty, no braces, colons or whitespace")
    return text


@dataclass(frozen=True)
class SwarmKeys:
    run: str
    swarm: int

    def __post_init__(self) -> None:
        check_name(self.run, "run name")
        if self.swarm < 0:
            raise ValueError("swarm id must be >= 0")

    @property
    def prefix(self) -> str:
        return f"{self.run}:{{swarm:{self.swarm}}}"

    def key(self, part: str) -> str:
        return f"{self.prefix}:{part}"

    @property
    def stream(self) -> str:
        return self.key("stream")

    @property
    def state(self) -> str:
        return self.key("state")

    @property
    def lease(self) -> str:
        return self.key("lease")

    @property
    def epoch(self) -> str:
        return self.key("epoch")

    @property
    def members(self) -> str:
        return self.key("members")

    def seen(self, producer: int) -> str:
        return self.key(f"seen:{producer}")


def swarm_keys(run: str, swarms: int) -> list[SwarmKeys]:
    return [SwarmKeys(run, i) for i in range(swarms)]
