"""The keys loadkit owns on a Redis: how they are named, found and deleted.

Every run of a workload that writes to Redis has a run id, ``lk`` and six hex digits,
chosen before the run starts (by ``loadkit run`` before it launches the worker), and
every key the run writes starts with it:

* a run's fleets are named ``<run>-<part>`` (``lk3f9a1c-bench``, ``lk3f9a1c-cycle-2``,
  ``lk3f9a1c-dashboard``), so their keys are ``{fleet:lk3f9a1c-bench}:...``;
* a run's swarms are ``<run>[-<part>]:{swarm:<n>}:...`` (``lk3f9a1c:{swarm:7}:stream``,
  ``lk3f9a1c-fence:{swarm:7}:lease``, a saturation trial's scratch streams
  ``lk3f9a1c-2-ceiling:{swarm:7}:stream``); a part is named as a fleet's is.

So whoever knows the run id - the worker in its last ``finally``, the parent after it
killed the worker - deletes exactly that run's keys, and ``loadkit clean`` recognises
any run's leftovers (and the per-run names of earlier releases: ``bench-``, ``scale-``,
``cycle-``, ``dashboard-`` fleets, ``cli`` swarms) without touching anything else: a key
is loadkit's only when its whole prefix has one of these shapes. Keys are found with
SCAN (never KEYS, so the server keeps serving) on every primary of a cluster and removed
with UNLINK in batches, split by slot on a cluster.

The shapes and the grouping are pure functions; the few functions that talk to Redis
take a synchronous client.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from loadkit.redis_io.health import CLIENT_OPTIONS, Patience, address, refused
from loadkit.redis_io.retry import TRANSIENT
from loadkit.redis_io.urls import is_cluster_url, node_url
from loadkit.redis_io.values import as_text

RUN_ID = re.compile(r"lk[0-9a-f]{6}")
_RUN = r"lk[0-9a-f]{6}"
_PART = r"[A-Za-z0-9_.-]+"
UNLINK_BATCH = 500
SCAN_COUNT = 1000


def new_run_id() -> str:
    return "lk" + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(f"invalid run id {run_id!r}: 'lk' and six hex digits")
    return run_id


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a SCAN MATCH pattern."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


@dataclass(frozen=True)
class Namespace:
    """Keys loadkit owns of one shape: a SCAN MATCH pattern that finds a superset, and a
    regular expression that decides. Group 1 of the expression names the prefix that
    counts are given per (a fleet, or a run's swarms)."""

    glob: str
    pattern: re.Pattern[str]
    kind: str  # "fleet" | "swarm"

    def prefix_of(self, key: str) -> str | None:
        match = self.pattern.match(key)
        if match is None:
            return None
        if self.kind == "fleet":
            return "{fleet:" + match[1] + "}"
        return match[1] + ":{swarm:*}"


def _fleets(names: str, glob: str) -> Namespace:
    return Namespace(glob, re.compile(r"\{fleet:(" + names + r")\}:"), "fleet")


def _swarms(runs: str, glob: str) -> Namespace:
    return Namespace(glob, re.compile("(" + runs + "(?:-" + _PART + r")?):\{swarm:\d+\}:"), "swarm")


def run_namespaces(run_id: str) -> tuple[Namespace, ...]:
    """The keys of one run."""
    run = re.escape(check_run_id(run_id))
    return (
        _fleets(run + "-" + _PART, "{fleet:" + run_id + "-*"),
        _swarms(run, run_id + "*"),
    )


def leftover_namespaces() -> tuple[Namespace, ...]:
    """The keys of every run, this release's and earlier ones'."""
    earlier = r"(?:bench|scale|dashboard)-[0-9a-f]{6}|cycle-[0-9a-f]{6}-\d+"
    return (
        _fleets(_RUN + "-" + _PART + "|" + earlier, "{fleet:*"),
        _swarms(_RUN, "lk*"),
        _swarms(r"cli[0-9a-f]{6}", "cli*"),
    )


def fleet_namespace(name: str) -> Namespace:
    """Every key of one named fleet (one that ``loadkit agents`` joins, say)."""
    if not name or any(c in name for c in "{}\t "):
        raise ValueError(f"invalid fleet name {name!r}: non-empty, no braces or whitespace")
    return _fleets(re.escape(name), "{fleet:" + glob_escape(name) + "}:*")


def group_keys(
    keys: Iterable[bytes | str], namespaces: Iterable[Namespace]
) -> dict[str, list[bytes | str]]:
    """The keys that belong to loadkit, by prefix; every other key is left out."""
    spaces = tuple(namespaces)
    groups: dict[str, list[bytes | str]] = {}
    for key in keys:
        text = as_text(key, "latin-1")
        for ns in spaces:
            prefix = ns.prefix_of(text)
            if prefix is not None:
                groups.setdefault(prefix, []).append(key)
                break
    return groups


# -- talking to Redis ------------------------------------------------------------------


def sync_client(url: str) -> Any:
    """A synchronous client with loadkit's timeouts: a cluster client for a
    ``redis+cluster://`` URL (it scans every primary and splits UNLINK by slot)."""
    if is_cluster_url(url):
        return redis.RedisCluster.from_url(node_url(url), **CLIENT_OPTIONS)
    return redis.Redis.from_url(url, **CLIENT_OPTIONS)


def find(client: Any, namespaces: Iterable[Namespace]) -> dict[str, list[bytes | str]]:
    """loadkit's keys under ``namespaces``, by prefix: one SCAN per distinct pattern, each
    key found judged against every namespace (a key two patterns find counts once)."""
    spaces = tuple(namespaces)
    found: dict[bytes | str, None] = {}
    for glob in dict.fromkeys(ns.glob for ns in spaces):
        found.update(dict.fromkeys(client.scan_iter(match=glob, count=SCAN_COUNT)))
    return group_keys(found, spaces)


def unlink(client: Any, keys: list[bytes | str], batch: int = UNLINK_BATCH) -> int:
    deleted = 0
    for i in range(0, len(keys), batch):
        deleted += int(client.unlink(*keys[i : i + batch]))
    return deleted


def in_use(client: Any, groups: dict[str, list[bytes | str]]) -> set[str]:
    """Prefixes that a live process still holds: a fleet with a host whose lease has not
    run out, a run's swarms with a leader lease (leases expire within a few seconds of
    their holder's death, so leftovers of a killed run are never in use for long)."""
    live: set[str] = set()
    now_ms: int | None = None
    for prefix, keys in groups.items():
        if prefix.startswith("{fleet:"):
            if now_ms is None:
                sec, usec = client.time()
                now_ms = int(sec) * 1000 + int(usec) // 1000
            if client.zrangebyscore(prefix + ":hosts", f"({now_ms}", "+inf", start=0, num=1):
                live.add(prefix)
        else:
            leases = [k for k in keys if as_text(k, "latin-1").endswith(":lease")]
            if leases and any(int(client.exists(k)) for k in leases):
                live.add(prefix)
    return live


@dataclass(frozen=True)
class Purge:
    """What deleting one run's keys achieved: how many went, and, when some may be left,
    why (Redis unreachable)."""

    deleted: int
    error: str | None = None


def purge_run(
    url: str,
    run_id: str,
    budget_s: float = 10.0,
    settle_s: float = 0.3,
    sleep: Callable[[float], None] = time.sleep,
) -> Purge:
    """Delete every key of run ``run_id`` (and nothing else), retrying while Redis does
    not answer for up to ``budget_s`` (:class:`loadkit.redis_io.health.Patience`): a paused
    server that comes back within it is cleaned, one that refuses connections is given
    up on after a second. A pass that found keys is followed by another after
    ``settle_s``, even past the budget, because a write a dead process had already sent
    may land late; the purge ends with a pass that finds nothing."""
    namespaces = run_namespaces(run_id)
    patience = Patience(budget_s)
    deleted = passes = 0
    client: Any = None
    reason = "no pass finished"
    try:
        while True:
            try:
                if client is None:
                    client = sync_client(url)
                keys = [k for group in find(client, namespaces).values() for k in group]
                if not keys:
                    return Purge(deleted)
                deleted += unlink(client, keys)
                passes += 1
                reason = "keys kept appearing"
                if patience.expired() and passes >= 3:  # something still writes them
                    break
            except TRANSIENT as exc:
                how = "refused connections" if refused(exc) else "did not answer"
                reason = f"Redis at {address(url)} {how}"
                if client is not None and is_cluster_url(url):
                    client.close()  # a cluster client re-learns the nodes when rebuilt
                    client = None
                if not patience.retry(exc):
                    break
            sleep(settle_s)
    finally:
        if client is not None:
            client.close()
    return Purge(deleted, reason)
