"""Showing and saving a run report: the summary table, the top recommendations, and
the JSON and Markdown files (written whole or not at all). Shared by ``loadkit run``
(report from its own workload processes) and ``loadkit bench`` (report from asv's
recorded values)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadkit.common.atomic_file import write_text_atomically
from loadkit.runs.run_report import to_markdown


def summary_table(report: dict[str, Any], title: str = "loadkit run") -> Table:
    """One row per workload. ``Redis reconnects`` is how often a workload retried after
    a dropped connection: routine faults it rode out, shown so a noisy network is seen."""
    table = Table(title=f"{title} ({report['scale']})")
    for col in ("workload", "status", "confidence", "checks", "duration", "Redis reconnects"):
        table.add_column(col)
    for name, w in report["workloads"].items():
        passed = sum(c["passed"] for c in w["checks"])
        colour = {"passed": "green", "failed": "yellow"}.get(w["status"], "red")
        reconnects = (w.get("metrics") or {}).get("redis_reconnects")
        table.add_row(
            name,
            f"[{colour}]{w['status']}[/]",
            f"{w['confidence']:.2f}",
            f"{passed}/{len(w['checks'])}",
            f"{w['duration_s']:.1f} s",
            "-" if reconnects is None else f"{reconnects:.0f}",
        )
    return table


def print_summary(report: dict[str, Any], console: Console, title: str = "loadkit run") -> None:
    """The table, the ten most urgent recommendations and the verdict."""
    console.print(summary_table(report, title))
    for rec in report["recommendations"][:10]:
        console.print(f"  {rec['priority']:<6} {rec['workload']}: {rec['message']}")
    console.print(
        f"overall confidence {report['overall_confidence']:.2f}: "
        + ("PASSED" if report["passed"] else "NOT PASSED")
    )


def write_report(
    report: dict[str, Any], json_path: Path | None, markdown_path: Path | None
) -> None:
    if json_path is not None:
        write_text_atomically(json_path, json.dumps(report, indent=2) + "\n")
    if markdown_path is not None:
        write_text_atomically(markdown_path, to_markdown(report))
