"""``loadkit bench --aa N``: the suite run N times on one commit, and what that says.

Nothing changes between the runs, so every difference between them is noise. For each
figure asv recorded, the study prints the spread of its N values (log standard
deviation, :mod:`loadkit.history.stats.spread`), the smallest change one run against
one run and five interleaved runs against five would detect, and whether the figure is
as steady as its role requires (headline within 3 %, every other gated figure within
10 %; informational figures are not gated). The machine's load average is printed
beside every run: a study on a busy machine measures the machine.

Each run is an ordinary ``asv run`` of the commit (its results file is rewritten by
each, as a second ``loadkit bench`` of one commit would); nothing is published and no
report is written. ``--json PATH`` keeps the table; the study is also kept, with each
benchmark's asv version, under ``.asv/aa/<scale>.json``, where ``loadkit compare`` finds
the noise it measured (:mod:`loadkit.asvsuite.known_noise`).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from loadkit.asvsuite.known_noise import benchmark_versions
from loadkit.asvsuite.recorded import read_commit
from loadkit.common.atomic_file import write_text_atomically
from loadkit.common.errors import Failure
from loadkit.history.stats.spread import SpreadRow, band, spread_row, verdict
from loadkit.runs.declarations import GATED, HEADLINE, Tracked


def _load() -> float:
    return os.getloadavg()[0]


def _label(key: str, combo: tuple[str, ...]) -> str:
    return key + (f"({', '.join(combo)})" if combo else "")


def run_aa(
    runs_wanted: int,
    run_once: Callable[[], int],
    results: Path,
    commit: str,
    tracked: list[Tracked],
    console: Console,
    json_path: str | None = None,
    scale: str = "",
    study: Path | None = None,
) -> int:
    """Run the suite ``runs_wanted`` times on ``commit`` (``run_once`` is one ``asv
    run``, returning loadkit's exit code for it) and print each figure's spread."""
    values: dict[str, list[float]] = {}
    roles: dict[str, str] = {}
    by_name = {t.benchmark: t for t in tracked}
    runs: list[dict[str, float]] = []
    for index in range(runs_wanted):
        before, started = _load(), time.monotonic()
        code = run_once()
        if code > 2:  # stopped by a signal
            console.print(f"[red]asv run was stopped (exit {code})[/]")
            return code
        runs.append(
            {
                "seconds": round(time.monotonic() - started, 1),
                "load_before": round(before, 2),
                "load_after": round(_load(), 2),
            }
        )
        console.print(
            f"A/A run {index + 1}/{runs_wanted}: {runs[-1]['seconds']:.0f} s, load average "
            f"{before:.2f} before, {runs[-1]['load_after']:.2f} after"
        )
        view = read_commit(results, commit)
        for key in view.keys():  # noqa: SIM118 (asv results, not a dict)
            declared = by_name.get(key)
            for combo, value in view.values(key):
                if not isinstance(value, int | float) or not math.isfinite(value):
                    continue
                name = _label(key, combo)
                values.setdefault(name, []).append(float(value))
                roles[name] = declared.role if declared is not None else GATED
    rows = [spread_row(name, got) for name, got in values.items() if len(got) == runs_wanted]
    if not rows:
        raise Failure("asv recorded no figure in every run: nothing to compare")
    order = {HEADLINE: 0, GATED: 1}
    rows.sort(key=lambda r: (order.get(roles[r.name], 2), -_sortable(r.spread)))
    console.print(aa_table(rows, roles, runs_wanted, commit, runs))
    noisy = [r.name for r in rows if verdict(roles[r.name], r.spread) == "too noisy"]
    loads = [r["load_before"] for r in runs] + [r["load_after"] for r in runs]
    console.print(
        f"{len(rows)} figures, {len(noisy)} noisier than their role allows; load average "
        f"{min(loads):.2f}-{max(loads):.2f} over the runs",
        highlight=False,
    )
    document = {
        "commit": commit,
        "scale": scale,
        "runs": runs,
        "figures": [
            {**asdict(r), "role": roles[r.name], "verdict": verdict(roles[r.name], r.spread)}
            for r in rows
        ],
        "versions": benchmark_versions(results),
    }
    text = json.dumps(document, indent=2, default=_json_number).replace("NaN", "null") + "\n"
    for path in (Path(json_path) if json_path else None, study):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(path, text)
    if study is not None:
        console.print(f"study kept for loadkit compare: {study}", highlight=False)
    return 0


def _sortable(value: float) -> float:
    return value if math.isfinite(value) else -1.0


def _json_number(value: object) -> object:
    return None


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%" if math.isfinite(value) else "n/a"


def aa_table(
    rows: list[SpreadRow], roles: dict[str, str], n: int, commit: str, runs: list[dict]
) -> Table:
    """The study as a table: headline figures first, noisiest first within a role."""
    table = Table(title=f"A/A: {n} runs of {commit[:8]}", title_justify="left")
    for column in ("benchmark", "role", "median", "spread", "band", "effect 1 run", "5 runs"):
        table.add_column(column, justify="left" if column in ("benchmark", "role") else "right")
    table.add_column("verdict")
    for row in rows:
        role = roles[row.name]
        mark = verdict(role, row.spread)
        style = {"ok": "green", "too noisy": "red"}.get(mark, "dim")
        table.add_row(
            escape(row.name),
            role,
            f"{statistics.median(row.values):.4g}",
            _pct(row.spread),
            band(row.spread),
            _pct(row.effect_1),
            _pct(row.effect_5),
            f"[{style}]{mark}[/]",
        )
    return table
