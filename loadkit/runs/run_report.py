"""The run report: one schema for every workload, rendered as JSON and Markdown.

Building the report is pure (measured metrics in, dict out); writing it is the caller's
job. Bottlenecks combine the workload's own heuristics with the checks it failed, and
recommendations are prioritized: HIGH for a check below target, MEDIUM for a metric
degraded against a baseline report, LOW for a passing check with under 20% headroom,
INFO when every target is met.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import psutil

from loadkit.common.errors import UsageError
from loadkit.runs.direction import Direction, direction_from_name
from loadkit.runs.targets import (
    HEADROOM,
    PASS_CONFIDENCE,
    Target,
    confidence,
    evaluate,
    headroom,
    overall_confidence,
)

SCHEMA_ID = "loadkit.report/1"
STATUSES = ("passed", "failed", "error", "timeout", "skipped")
PRIORITIES = ("HIGH", "MEDIUM", "LOW", "INFO")
DEGRADED = 0.10  # a metric 10% worse than the baseline is a MEDIUM recommendation


def machine_info() -> dict[str, Any]:
    return {
        "cpus": psutil.cpu_count(logical=True),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_commit(cwd: str | Path = ".") -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def lower_is_better(metric: str, targets: Sequence[Target] = ()) -> bool | None:
    """Direction of a metric: from its target when it has one, else from its name (the
    same rule ``loadkit check`` applies to asv series); None when neither says."""
    for t in targets:
        if t.metric == metric:
            return t.less_is_better
    direction = direction_from_name(metric)
    return None if direction is None else direction is Direction.LOWER_IS_BETTER


def workload_entry(
    *,
    status: str,
    duration_s: float,
    metrics: Mapping[str, float] | None,
    targets: Sequence[Target],
    bottlenecks: Sequence[str] = (),
    error: str | None = None,
    artifacts: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One workload's block. ``status`` is the runner's verdict (passed/error/timeout/
    skipped); a finished run's passed/failed is decided here from the checks."""
    clean = {k: _finite(v) for k, v in (metrics or {}).items()}
    checks = evaluate(targets, clean) if status not in ("error", "timeout", "skipped") else []
    conf = confidence(checks)
    if status == "passed":
        status = "passed" if conf >= PASS_CONFIDENCE else "failed"
    found = list(bottlenecks)
    for c in checks:
        if not c["passed"]:
            found.append(f"{c['metric']} = {_shown(c['value'])}, target {c['op']} {c['target']:g}")
    return {
        "status": status,
        "duration_s": round(duration_s, 3),
        "metrics": clean,
        "checks": checks,
        "confidence": conf,
        "bottlenecks": found,
        "error": error,
        "artifacts": dict(artifacts or {}),
    }


def _finite(value: Any) -> float | None:
    """JSON has no NaN: an unmeasured value is reported as null."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _rec(priority: str, workload: str, message: str) -> dict[str, str]:
    return {"priority": priority, "workload": workload, "message": message}


def _shown(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4g}"


def _at_best(t: Target, value: float) -> bool:
    return t.metric.endswith("_ratio") and not t.less_is_better and t.target <= 1 <= value


def recommendations(
    workloads: Mapping[str, Mapping[str, Any]],
    targets: Mapping[str, Sequence[Target]],
    baseline: Mapping[str, Any] | None = None,
) -> list[dict[str, str]]:
    recs: list[dict[str, str]] = []
    for name, w in workloads.items():
        if w["status"] in ("error", "timeout"):
            detail = w.get("error") or "no detail"
            recs.append(_rec("HIGH", name, f"{name} did not finish ({w['status']}): {detail}"))
            continue
        by_metric = {t.metric: t for t in targets.get(name, ())}
        for c in w["checks"]:
            t = by_metric.get(c["metric"])
            if not c["passed"]:
                why = f" ({t.why})" if t is not None and t.why else ""
                msg = f"{c['metric']} is {_shown(c['value'])}, target {c['op']} {c['target']:g}"
                recs.append(_rec("HIGH", name, msg + why))
            # Inclusive ops mark counts and zero-tolerance checks, and a success ratio of 1
            # cannot get better: no "headroom" to speak of there.
            elif t is not None and t.op in ("<", ">") and not _at_best(t, c["value"]):
                room = headroom(t, c["value"])
                if room is not None and room < HEADROOM:
                    msg = (
                        f"{c['metric']} = {c['value']:.4g} passes with only {room:.0%} "
                        f"headroom to {c['target']:g}"
                    )
                    recs.append(_rec("LOW", name, msg))
        if baseline is not None:
            recs += _degradations(name, w, baseline, targets.get(name, ()))
    if not any(r["priority"] in ("HIGH", "MEDIUM", "LOW") for r in recs):
        recs.append(_rec("INFO", "*", "all targets met"))
    recs.sort(key=lambda r: PRIORITIES.index(r["priority"]))
    return recs


def _degradations(
    name: str, w: Mapping[str, Any], baseline: Mapping[str, Any], targets: Sequence[Target]
) -> list[dict[str, str]]:
    old = baseline.get("workloads", {}).get(name, {}).get("metrics", {})
    out = []
    for metric, value in w["metrics"].items():
        before = old.get(metric)
        lower = lower_is_better(metric, targets)
        if value is None or before is None or lower is None or before == 0:
            continue
        change = (value - before) / abs(before)
        worse = change if lower else -change
        if worse > DEGRADED:
            msg = (
                f"{metric} degraded {worse:.0%} against the baseline ({before:.4g} -> {value:.4g})"
            )
            out.append(_rec("MEDIUM", name, msg))
    return out


def build_report(
    workloads: Mapping[str, dict[str, Any]],
    targets: Mapping[str, Sequence[Target]],
    *,
    scale: str,
    baseline: Mapping[str, Any] | None = None,
    commit: str | None = None,
    created: datetime | None = None,
    links: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    confs = [w["confidence"] for w in workloads.values()]
    overall = overall_confidence(confs)
    failed = any(w["status"] in ("error", "timeout") for w in workloads.values())
    report: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "created": (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "machine": machine_info(),
        "scale": scale,
        "workloads": dict(workloads),
        "overall_confidence": overall,
        "passed": bool(workloads) and overall >= PASS_CONFIDENCE and not failed,
        "recommendations": recommendations(workloads, targets, baseline),
    }
    if links:
        report["links"] = dict(links)
    return report


def schema() -> dict[str, Any]:
    return json.loads(resources.files("loadkit.runs").joinpath("report.schema.json").read_text())


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a previous report (for --baseline); a clear error when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"baseline report not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"baseline report {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_ID:
        raise UsageError(f"{path} is not a loadkit report (schema {SCHEMA_ID})")
    # The comparison reads workloads -> metrics -> numbers; check that shape now rather
    # than fail with a traceback after the whole run.
    workloads = data.get("workloads")
    if not isinstance(workloads, dict) or not all(
        isinstance(w, dict)
        and isinstance(w.get("metrics", {}), dict)
        and all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool))
            for v in w.get("metrics", {}).values()
        )
        for w in workloads.values()
    ):
        raise UsageError(f"baseline report {path} is corrupt: workloads/metrics malformed")
    return data


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def to_markdown(report: Mapping[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# loadkit run report",
        "",
        f"- created: {report['created']}, commit: `{report.get('commit') or 'n/a'}`, "
        f"scale: {report['scale']}",
        f"- machine: {m['cpus']} CPUs, {m['ram_gib']} GiB, Python {m['python']}",
        f"- overall confidence: **{report['overall_confidence']:.2f}** — "
        + ("**PASSED**" if report["passed"] else "**NOT PASSED**"),
        "",
    ]
    for label, href in (report.get("links") or {}).items():
        lines.append(f"- [{label}]({href})")
    if report.get("links"):
        lines.append("")
    lines += ["| workload | status | confidence | duration |", "|---|---|---|---|"]
    for name, w in report["workloads"].items():
        lines.append(
            f"| {name} | {w['status']} | {w['confidence']:.2f} | {w['duration_s']:.1f} s |"
        )
    lines += ["", "## Recommendations", ""]
    for r in report["recommendations"]:
        lines.append(f"- **{r['priority']}** ({r['workload']}): {r['message']}")
    for name, w in report["workloads"].items():
        lines += ["", f"## {name}", ""]
        if w.get("error"):
            lines += [f"Error: `{w['error']}`", ""]
        if w["checks"]:
            lines += ["| check | value | target | score | |", "|---|---|---|---|---|"]
            for c in w["checks"]:
                mark = "pass" if c["passed"] else "FAIL"
                lines.append(
                    f"| {c['metric']} | {_fmt(c['value'])} | {c['op']} {c['target']:g} "
                    f"| {c['score']:.2f} | {mark} |"
                )
            lines.append("")
        for label, path in (w.get("artifacts") or {}).items():
            lines += [f"![{label}]({path})", ""]
        if w["bottlenecks"]:
            lines += ["Bottlenecks:", ""] + [f"- {b}" for b in w["bottlenecks"]] + [""]
        if w["metrics"]:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(w["metrics"].items())]
    return "\n".join(lines) + "\n"
