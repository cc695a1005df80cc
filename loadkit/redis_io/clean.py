"""``loadkit clean``: delete what loadkit runs left on a Redis, and nothing else.

A run deletes its own keys when it ends, and ``loadkit run`` deletes a run's keys after
killing its worker; what is left comes from runs killed with their parent, or a Redis
that was unreachable for longer than they waited. ``clean`` finds every key whose prefix
has the shape of a loadkit run (:mod:`loadkit.redis_io.keyspace`), prints the count per prefix,
and deletes them unless ``--dry-run``. ``--fleet NAME`` adds a named fleet (one that
``loadkit agents`` joined). A prefix that a live process still holds - a fleet host or a
swarm leader whose lease has not run out - is listed and skipped, so a run in progress
on the same server is never cut short. Other keys are never read or written.
"""

from __future__ import annotations

import os

from loadkit.common.errors import UsageError
from loadkit.redis_io.connect import check_url
from loadkit.redis_io.health import address
from loadkit.redis_io.keyspace import (
    Namespace,
    find,
    fleet_namespace,
    in_use,
    leftover_namespaces,
    sync_client,
    unlink,
)
from loadkit.redis_io.retry import TRANSIENT
from loadkit.redis_io.urls import ENV_URL


def _namespaces(fleets: list[str]) -> list[Namespace]:
    spaces = list(leftover_namespaces())
    for name in fleets:
        try:
            spaces.append(fleet_namespace(name))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return spaces


def clean(redis_url: str | None, fleets: list[str], dry_run: bool) -> int:
    """Delete (or with ``dry_run`` only list) the keys loadkit runs left; exit code."""
    spaces = _namespaces(fleets)
    url = redis_url or os.environ.get(ENV_URL)
    if not url:
        raise UsageError(f"name the Redis to clean: --redis-url URL or ${ENV_URL}")
    check_url(url)
    client = sync_client(url)
    try:
        groups = find(client, spaces)
        live = in_use(client, groups)
        deleted = 0
        if not dry_run:
            for prefix, keys in groups.items():
                if prefix not in live:
                    deleted += unlink(client, keys)
    except TRANSIENT as exc:
        raise UsageError(f"Redis at {address(url)} stopped answering: {exc}") from None
    finally:
        client.close()
    counts = {prefix: len(keys) for prefix, keys in groups.items()}
    print(render(counts, live, dry_run, deleted, address(url)))
    return 0


def render(counts: dict[str, int], live: set[str], dry_run: bool, deleted: int, where: str) -> str:
    """The listing: one line per prefix (sorted), then what was done."""
    if not counts:
        return f"no loadkit keys on {where}"
    width = max(len(p) for p in counts)
    lines = []
    for prefix in sorted(counts):
        note = "  in use: skipped" if prefix in live else ""
        lines.append(f"{prefix:<{width}}  {_count(counts[prefix], 'key'):>12}{note}")
    todo = {p: n for p, n in counts.items() if p not in live}
    under = f"under {_count(len(todo), 'prefix')} on {where}"
    if dry_run:
        lines.append(f"would delete {_count(sum(todo.values()), 'key')} {under} (dry run)")
    else:
        lines.append(f"deleted {_count(deleted, 'key')} {under}")
    if live:
        lines.append(
            f"skipped {_count(len(live), 'prefix')} a live process holds "
            "(a fleet host or swarm leader lease not yet run out)"
        )
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("x") else "s")
    return f"{n} {noun if n == 1 else plural}"
