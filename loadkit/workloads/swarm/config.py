"""What a swarm run is made of: one picklable value handed to every process."""

from __future__ import annotations

from dataclasses import dataclass

from loadkit.common.errors import UsageError
from loadkit.workloads.swarm.keys import SwarmKeys, check_name, swarm_keys


@dataclass(frozen=True)
class SwarmConfig:
    url: str
    run: str
    swarms: int = 100
    members: int = 10
    coordinators: int = 2
    producers: int = 1
    lease_ms: int = 300
    snapshot_interval_ms: int = 250
    read_count: int = 100
    apply_depth: int = 2  # apply calls in flight per coordinator
    send_concurrency: int = 2  # batches in flight per saturating producer
    block_ms: int = 20
    reclaim_idle_ms: int = 500
    reclaim_interval_ms: int = 200
    stream_cap: int = 200_000
    max_connections: int = 32
    lifetime_s: float = 300.0  # every child process exits by itself after this
    # Every node of a cluster as (host, port), learnt by the first process that connected:
    # a process started later can find the cluster even if the node the URL names died.
    seeds: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.swarms < 1:
            raise UsageError(f"need at least 1 swarm, got {self.swarms}")
        if self.members < 1:
            raise UsageError(f"need at least 1 member per swarm, got {self.members}")
        if self.coordinators < 1 or self.producers < 1:
            raise UsageError("need at least 1 coordinator and 1 producer process")
        if self.lease_ms < 20:
            raise UsageError(f"lease_ms must be >= 20, got {self.lease_ms}")
        try:
            check_name(self.run, "run name")
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    @property
    def keys(self) -> list[SwarmKeys]:
        return swarm_keys(self.run, self.swarms)

    def member_ids(self) -> list[str]:
        return [f"m{k}" for k in range(self.members)]

    def members_of(self, coordinator: int) -> list[str]:
        """The members a coordinator hosts (round robin, so each hosts about M/C)."""
        return [m for k, m in enumerate(self.member_ids()) if k % self.coordinators == coordinator]
