"""What each ``track_`` benchmark of the asv suite declares, and where loadkit reads it.

A ``track_`` number means nothing without its unit and which way is better; guessing
the direction from a name inverts a verdict the first time a name says less than it
seems to. So every ``track_`` of the suite is made by
:func:`loadkit.asvsuite.track.track`, which states the
workload metric it reports, a unit from :data:`UNITS` and a direction.

asv keeps only its own benchmark attributes in ``results/benchmarks.json`` (a custom
``direction`` is dropped), so ``loadkit bench`` writes the declarations beside it, in
``results/loadkit-suite.jsonl`` (one JSON object a line; not ``.json``, which asv would
try to read as results): the history scoring reads the direction from there
(falling back to the name rule for suites that declare nothing), and the run report
maps asv's recorded values back to workload metrics with it.

Each declaration also says what the figure is for. A **headline** figure is one the
suite is judged by (the few named in :data:`HEADLINES`); an **informational** one is
recorded and shown but never gated, and says why (an at-least-once count, a figure the
host decides); every other figure is gated like a headline one. A figure measured in
repeated trials (:mod:`loadkit.runs.trials`) hands asv its trials as samples: asv
records their median as the value and keeps the samples with ``--record-samples``, so
each run's own noise is in asv's results, where ``loadkit check`` reads it. A figure
whose way of measuring changed says so in its ``method``: asv's ``version`` changes
with it and the figure's history starts a new series instead of showing a false step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from loadkit.common.atomic_file import write_text_atomically

# One vocabulary for every track_: seconds, milliseconds, kibibytes, megabytes per
# second, events per second, a multiplier, a dimensionless share, a count, a yes/no (1/0).
UNITS: tuple[str, ...] = ("s", "ms", "KiB", "MB/s", "1/s", "x", "ratio", "count", "bool")
HIGHER = "higher_is_better"
LOWER = "lower_is_better"
DIRECTIONS: tuple[str, ...] = (HIGHER, LOWER)
SIDECAR = "loadkit-suite.jsonl"
HEADLINE, GATED, INFORMATIONAL = "headline", "gated", "informational"
ROLES: tuple[str, ...] = (HEADLINE, GATED, INFORMATIONAL)
# The figures the suite is judged by: one or two per workload, each the one a user of
# that workload would quote. None of them may be informational.
HEADLINES: frozenset[str] = frozenset(
    {
        "spawn_ceiling_ratio",
        "allocation_p99_ceiling_ratio",
        "delivered_ceiling_ratio",
        "delivery_p99_ms",
        "ws_latency_p99_ceiling_ratio",
        "poll_latency_p95_ms",
        "speedup_ratio",
        "ops_per_s",
    }
)

Metrics = Mapping[str, float]


@dataclass(frozen=True)
class Tracked:
    """One ``track_`` benchmark: the workload metric it reads, its unit and direction.

    ``metric`` may name parameters of its class in braces (``speedup_ratio_{document}``):
    each parameter combination then reads its own metric."""

    benchmark: str
    workload: str
    metric: str
    unit: str
    direction: str
    param_names: tuple[str, ...] = ()
    setup_cache_key: str | None = None
    role: str = GATED
    why: str = ""  # why an informational figure is not gated

    @property
    def gated(self) -> bool:
        """Whether a regression of this figure may fail a check."""
        return self.role != INFORMATIONAL

    def metric_for(self, params: tuple[str, ...]) -> str:
        """The metric one parameter combination reads (asv stores values as repr)."""
        values = {name: _unquote(v) for name, v in zip(self.param_names, params, strict=False)}
        return self.metric.format(**values)


def _unquote(value: str) -> str:
    """asv records a string parameter as its repr: ``'quick'`` -> ``quick``."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def declared_role(metric: str, *, headline: bool, informational: str) -> str:
    """The role a declaration gives its figure, or a ValueError for one that makes no
    sense (a headline not in :data:`HEADLINES` or one of them not declared so, an
    informational headline, an informational figure that does not say why)."""
    if informational and not informational.strip():
        raise ValueError(f"{metric}: say why it is informational")
    if headline and metric not in HEADLINES:
        raise ValueError(f"{metric} is not a headline metric ({', '.join(sorted(HEADLINES))})")
    if metric in HEADLINES and informational:
        raise ValueError(f"{metric} is a headline metric: it cannot be informational")
    if metric in HEADLINES and not headline:
        raise ValueError(f"{metric} is a headline metric: declare it with headline=True")
    if informational:
        return INFORMATIONAL
    return HEADLINE if headline else GATED


def write_sidecar(results_dir: Path, tracked: list[Tracked]) -> Path:
    """The declarations beside asv's ``benchmarks.json``, written whole or not at all."""
    path = results_dir / SIDECAR
    lines = [json.dumps(asdict(t), sort_keys=True) for t in tracked]
    write_text_atomically(path, "".join(line + "\n" for line in lines))
    return path


def read_sidecar(results_dir: Path) -> dict[str, Tracked]:
    """The declarations ``loadkit bench`` wrote, by benchmark name; nothing when there is
    no sidecar (a foreign suite: the name rule decides). Lines that are not a
    declaration are skipped."""
    try:
        lines = (results_dir / SIDECAR).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    found: dict[str, Tracked] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        tracked = _tracked(entry)
        if tracked is not None:
            found[tracked.benchmark] = tracked
    return found


def _tracked(entry: object) -> Tracked | None:
    if not isinstance(entry, dict):
        return None
    try:
        tracked = Tracked(
            benchmark=str(entry["benchmark"]),
            workload=str(entry["workload"]),
            metric=str(entry["metric"]),
            unit=str(entry["unit"]),
            direction=str(entry["direction"]),
            param_names=tuple(str(n) for n in entry.get("param_names") or ()),
            setup_cache_key=entry.get("setup_cache_key"),
            role=str(entry.get("role") or GATED),
            why=str(entry.get("why") or ""),
        )
    except (KeyError, TypeError):
        return None
    return tracked if tracked.direction in DIRECTIONS else None
