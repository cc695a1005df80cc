"""``loadkit compare BASE [HEAD]``: does HEAD make any benchmark worse than BASE?

The pull-request gate. Everything the user can get wrong is checked before asv builds
anything: the config, both commits, the output paths. Then the two commits run in
alternating rounds on this machine (:mod:`loadkit.asvsuite.compare_run`), the rounds
are judged per benchmark with false discoveries controlled across all of them
(:mod:`loadkit.history.stats.compare_rows`), and the verdict is printed, and written as the
pull request's comment (``--markdown``) and as JSON (``--json``).

Exit codes: 0 no benchmark confidently worse; 1 a benchmark confidently worse by at
least ``--min-effect``, or broken by HEAD; 2 bad usage; 128 + n stopped by signal n.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from loadkit.asvsuite.bench import _asv, asv_exit_code
from loadkit.asvsuite.compare_run import (
    DEFAULT_MACHINE,
    Commits,
    RunClock,
    RunRecord,
    SideValues,
    append_round,
    asv_run_args,
    block_pattern,
    compare_folder,
    read_asv_config,
    read_round,
    resolve_commit,
    run_env,
    selects,
    set_aside_earlier,
    shared_versions,
    suite_blocks,
    write_compare_config,
)
from loadkit.asvsuite.known_noise import known_noise, read_study, study_path
from loadkit.asvsuite.machine import ensure_machine
from loadkit.common.atomic_file import write_text_atomically
from loadkit.common.errors import Failure, UsageError
from loadkit.common.path_checks import check_input_file, check_output_dir, check_output_file
from loadkit.history.present.compare_output import (
    CompareFacts,
    effect_text,
    json_document,
    markdown,
    summary_line,
    text_table,
)
from loadkit.history.stats.compare_rows import SideData, build_rows, exit_code, family_of
from loadkit.history.stats.round_plan import (
    MIN_ROUNDS,
    Side,
    first_round_deviations,
    first_round_scales,
    planned_effects,
    round_runs,
    rounds_for_budget,
    rounds_for_noise,
)
from loadkit.runs.declarations import Tracked
from loadkit.runs.direction import Direction, infer_direction

DEFAULT_ROUNDS = 5
_PARAMS = re.compile(r"\(.*\)$")


@dataclass(frozen=True)
class CompareOptions:
    base: str
    head: str = "HEAD"
    rounds: int | None = None
    budget_min: float | None = None
    scale: str | None = None
    config: str | None = None
    machine: str = DEFAULT_MACHINE
    bench: str | None = None
    markdown: str | None = None
    json: str | None = None
    confidence: float = 0.95
    min_effect: float = 0.05
    false_discovery: float = 0.01
    show_stderr: bool = False
    noise: str | None = None


def _find_config(given: str | None) -> Path:
    if given is not None:
        path = check_input_file(given, "--config")
        assert path is not None
        return path
    here = Path.cwd()
    for folder in (here, *here.parents):
        candidate = folder / "asv.conf.json"
        if candidate.is_file():
            checked = check_input_file(candidate, "asv.conf.json")  # readable?
            assert checked is not None
            return checked
    raise UsageError("no asv.conf.json here or above: run inside the project or pass --config")


@dataclass(frozen=True)
class Prepared:
    config: Path
    settings: dict
    commits: Commits
    markdown: Path | None
    json: Path | None
    study: dict | None = None


def prepare(options: CompareOptions) -> Prepared:
    """Every check a user can fail, before anything is built."""
    if options.rounds is not None and options.budget_min is not None:
        raise UsageError("give --rounds or --budget, not both")
    if options.rounds is not None and options.rounds < MIN_ROUNDS:
        raise UsageError(f"--rounds: at least {MIN_ROUNDS} rounds are needed to judge a change")
    if options.bench is not None:
        try:
            re.compile(options.bench)
        except re.error as exc:
            raise UsageError(
                f"--bench {options.bench!r}: not a regular expression ({exc})"
            ) from None
    markdown_path = check_output_file(options.markdown, "--markdown")
    json_path = check_output_file(options.json, "--json")
    config = _find_config(options.config)
    settings = read_asv_config(config)
    repo = str(settings.get("repo") or ".")
    if "://" in repo or "@" in repo.split("/")[0]:
        raise UsageError(f"repo {repo!r} in {config} is not a local repository")
    repo_path = (config.parent / Path(repo).expanduser()).resolve()
    if not repo_path.is_dir():
        raise UsageError(f"repo {repo!r} in {config} is not a folder")
    base = resolve_commit(repo_path, options.base)
    head = resolve_commit(repo_path, options.head)
    folder = compare_folder(config.parent.resolve(), base, head)
    check_output_dir(folder, "comparison folder")
    if options.noise is not None:
        study = read_study(Path(options.noise).expanduser(), required=True)
    else:
        study = read_study(study_path(config.parent.resolve(), options.scale or "quick"), False)
    return Prepared(config, settings, Commits(base, head, folder), markdown_path, json_path, study)


def _declarations(benchmark_dir: Path) -> list[Tracked]:
    """What the suite declares (loadkit's ``track``): directions and roles; nothing for
    other suites or a suite that does not import here."""
    from loadkit.asvsuite.track import discover

    try:
        return discover(benchmark_dir)
    except Exception:  # a foreign suite: asv's units and the names decide, all gated
        return []


def informational_keys(keys: set[str], declared: list[Tracked]) -> frozenset[str]:
    """The measured keys (a benchmark and its parameters) of informational benchmarks."""
    ungated = {t.benchmark for t in declared if not t.gated}
    return frozenset(key for key in keys if _PARAMS.sub("", key) in ungated)


def directions_for(
    keys: set[str], units: Mapping[str, str], declared: Mapping[str, str]
) -> dict[str, Direction]:
    out = {}
    for key in keys:
        name = _PARAMS.sub("", key)
        out[key] = infer_direction(name, units.get(key), declared.get(name))
    return out


class _Runner:
    """The asv runs of one comparison, block by block, with their clock."""

    def __init__(self, prepared: Prepared, options: CompareOptions, console: Console) -> None:
        self.prepared = prepared
        self.options = options
        self.console = console
        self.clock = RunClock()
        ledger: dict[tuple[str, str], int] = {}
        self.sides = {Side.BASE: SideValues(ledger=ledger), Side.HEAD: SideValues(ledger=ledger)}
        self.root = prepared.config.parent.resolve()
        suite = Path(str(prepared.settings.get("benchmark_dir") or "benchmarks")).expanduser()
        suite = suite if suite.is_absolute() else self.root / suite
        # Blocks: the suite's modules; one block of everything if it has no such folder.
        self.blocks: list[str | None] = list(suite_blocks(suite)) if suite.is_dir() else []
        self.blocks = self.blocks or [None]
        self.took: dict[tuple[Side, str | None], bool] = {}

    def commit(self, side: Side) -> str:
        commits = self.prepared.commits
        return commits.base if side is Side.BASE else commits.head

    def run_round(self, round_number: int, tmp: Path) -> None:
        """Every block's two runs of one round; after the first, drop the blocks that
        hold no benchmark (a helper module) and stop if a side recorded nothing."""
        for index, side in round_runs(round_number, len(self.blocks)):
            self.run(side, round_number, self.blocks[index], tmp)
        if round_number != 1:
            return
        for side in Side:
            if not any(self.took.get((side, block)) for block in self.blocks):
                commit = self.commit(side)
                raise Failure(
                    f"asv recorded nothing for {side.value} {commit[:8]}: its environment "
                    "did not build or the suite did not import (see asv's output above)"
                )
        self.blocks = [b for b in self.blocks if any(self.took.get((s, b)) for s in Side)]

    def run(self, side: Side, round_number: int, block: str | None, tmp: Path) -> None:
        commit = self.commit(side)
        where = f" {block}" if block else ""
        self.console.rule(f"round {round_number}{where}: {side.value} {commit[:8]}")
        pattern = block_pattern(block, self.options.bench)
        commits = self.prepared.commits
        args = asv_run_args(
            commits.config if side is Side.BASE else commits.head_config,
            self.options.machine,
            commit,
            pattern,
            self.options.show_stderr,
        )
        started = self.clock.elapsed()
        status = _asv(self.root, *args, env=run_env(self.options.scale, tmp))
        self.clock.runs.append((side.value, self.clock.elapsed() - started))
        code = asv_exit_code(status)
        if code > 2:
            raise SystemExit(code)
        values = self.sides[side]
        before = {key: len(series) for key, series in values.rounds.items()}
        taken = read_round(
            commits.results, self.options.machine, commit, values, round_number, selects(pattern)
        )
        self.took[(side, block)] = self.took.get((side, block), False) or bool(taken)
        if taken:
            record = RunRecord(side.value, round_number, commit, block)
            append_round(commits.rounds, record, before, values, taken)


def _print_plan(console: Console, effects: Mapping[str, float], rounds: int, note: str) -> None:
    console.print(f"[bold]plan:[/] {rounds} rounds each {note}")
    shown = sorted(effects.items(), key=lambda kv: kv[1])
    for name, effect in shown:
        console.print(f"  detectable worsening {effect_text(effect):>8}  {name}", soft_wrap=True)


@contextlib.contextmanager
def project_lock(compare_root: Path) -> Iterator[None]:
    """One comparison at a time per project: they share asv's environments, into which
    each run installs its own commit, so two at once would measure each other's code."""
    compare_root.mkdir(parents=True, exist_ok=True)
    with (compare_root / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another loadkit compare is running in this project ({compare_root}): "
                "it installs its commits into the same asv environments"
            ) from None
        yield


def run_compare(options: CompareOptions) -> int:
    prepared = prepare(options)
    with project_lock(prepared.commits.folder.parent):
        return _compare(prepared, options)


def _compare(prepared: Prepared, options: CompareOptions) -> int:
    console = Console(stderr=True)
    runner = _Runner(prepared, options, console)
    write_compare_config(prepared.settings, prepared.config, prepared.commits)
    earlier = set_aside_earlier(prepared.commits)
    if earlier is not None:
        console.print(f"an earlier comparison of these commits was moved to {earlier}")
    ensure_machine(options.machine, lambda *a: _asv(runner.root, *a))
    budget_s = options.budget_min * 60.0 if options.budget_min is not None else None
    rounds = options.rounds if options.rounds is not None else MIN_ROUNDS
    if budget_s is None and options.rounds is None:
        rounds = DEFAULT_ROUNDS
    with tempfile.TemporaryDirectory(prefix="loadkit-compare-") as tmp:
        runner.run_round(1, Path(tmp))
        deviations = first_round_deviations(
            runner.sides[Side.BASE].rounds, runner.sides[Side.HEAD].rounds
        )
        families = {key: family_of(key) for key in deviations}
        scales = first_round_scales(deviations, families) if deviations else {}
        note = "(detectable effects from the first round's differences)"
        needed = rounds_for_noise(
            scales, options.min_effect, options.false_discovery, options.min_effect
        )
        if budget_s is not None:
            plan = rounds_for_budget(budget_s, runner.clock.elapsed(), runner.clock.elapsed(), 1)
            rounds = min(plan.rounds, needed)
            if plan.over_budget:
                note += f"; over the {options.budget_min:g} min budget: {MIN_ROUNDS} is the least"
            elif needed < plan.rounds:
                note += f"; the noise needs no more of the {plan.rounds} the budget holds"
        effects = planned_effects(scales, rounds, options.false_discovery, options.min_effect)
        _print_plan(console, effects, rounds, note)
        done = 1
        while done < rounds:
            before = runner.clock.elapsed()
            runner.run_round(done + 1, Path(tmp))
            done += 1
            if budget_s is not None and done == 2:
                plan = rounds_for_budget(
                    budget_s, runner.clock.elapsed(), runner.clock.elapsed() - before, done
                )
                replanned = min(plan.rounds, needed)
                if replanned != rounds:
                    console.print(
                        f"plan: {replanned} rounds each (a round takes "
                        f"{runner.clock.elapsed() - before:.0f} s)"
                        + (", over the budget" if plan.over_budget else "")
                    )
                rounds = replanned
    return _report(runner, prepared, options, rounds, console)


def _known(
    prepared: Prepared, keys: set[str], machine: str, console: Console
) -> dict[str, tuple[float, float]]:
    """The A/A study's noise for the benchmarks whose code it measured on both sides,
    said aloud."""
    if prepared.study is None:
        console.print("noise: no A/A study (loadkit bench --aa); each module lends its own")
        return {}
    commits = prepared.commits
    versions = shared_versions(commits.results, machine, commits.base, commits.head)
    known = known_noise(prepared.study, versions)
    known = {key: value for key, value in known.items() if key in keys}
    commit = str(prepared.study.get("commit") or "?")[:8]
    runs = len(prepared.study.get("runs") or [])
    console.print(
        f"noise: the A/A study of {commit} ({runs} runs) knows {len(known)} of {len(keys)} "
        "benchmarks at their current version; the rest borrow from their module"
    )
    return known


def _report(
    runner: _Runner, prepared: Prepared, options: CompareOptions, rounds: int, console: Console
) -> int:
    base, head = runner.sides[Side.BASE], runner.sides[Side.HEAD]
    keys = base.seen | head.seen
    units = {**base.units, **head.units}
    suite = Path(json.loads(prepared.commits.config.read_text(encoding="utf-8"))["benchmark_dir"])
    declared = _declarations(suite)
    known = _known(prepared, keys, options.machine, console)
    rows = build_rows(
        SideData(base.rounds, base.failed, frozenset(base.seen), base.round_ids),
        SideData(head.rounds, head.failed, frozenset(head.seen), head.round_ids),
        directions_for(keys, units, {t.benchmark: t.direction for t in declared}),
        units,
        options.confidence,
        options.min_effect,
        options.false_discovery,
        known,
        informational_keys(keys, declared),
    )
    facts = CompareFacts(
        base=prepared.commits.base,
        head=prepared.commits.head,
        rounds=rounds,
        confidence=options.confidence,
        min_effect=options.min_effect,
        false_discovery=options.false_discovery,
        wall_s=runner.clock.elapsed(),
        scale=options.scale,
    )
    # CI logs are no terminal: give the table room rather than wrapping every cell.
    out = Console() if Console().is_terminal else Console(width=200)
    out.print(text_table(rows))
    out.print(summary_line(rows, facts))
    if prepared.markdown is not None:
        write_text_atomically(prepared.markdown, markdown(rows, facts))
        console.print(f"markdown: {prepared.markdown}")
    if prepared.json is not None:
        write_text_atomically(
            prepared.json, json.dumps(json_document(rows, facts), indent=2) + "\n"
        )
        console.print(f"json: {prepared.json}")
    return exit_code(rows)
