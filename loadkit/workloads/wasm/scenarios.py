"""WASM parser measurements, each a plain function returning flat metrics.

The workload (``loadkit run wasm``) and the asv benchmarks (``benchmarks/bench_wasm.py``)
compose the same functions, so a ratio in the report and a ratio in asv's history mean
the same thing. Speeds are medians of repeated parses of one seeded document, the
three parsers taking turns round by round; every ratio divides two medians taken in the
same call, so machine noise that slows both sides cancels as far as it can. All three
parsers get the same UTF-8 bytes; the WASM time covers the whole ``WasmParser.parse``
call: copying the input in, the parse, and reading the result record (the packed nodes
are read where they lie; unpacking them into words for node-level reads is timed
apart, ``unpack_ms``).

* sizes - WASM, pure Python and ``ast.parse`` over documents of real expressions
  (:mod:`loadkit.workloads.wasm.realcode`) of several sizes, with the WASM and Python ASTs compared
  on every document;
* random trees - the same on 1 MB of random expression trees (:mod:`loadkit.workloads.wasm.corpus`),
  the stress case: every token harder to guess than in real code;
* repeated line - the same on one real line repeated to 1 MB, whose branches a CPU
  predicts: how much of the time on varied code is branch misprediction;
* ops - many small documents through one instance: operations per second and memory
  retained per operation;
* memory - the memory one parse of a document holds at its peak, in a fresh instance:
  the linear memory from where the input goes to the end of memory (input, padding,
  packed nodes, growth not yet used), plus every byte the host allocates in Python
  during the call (traced: a copy of the nodes would show here);
* parallel - throughput with 1 thread and with as many threads as cores, and 10 threads
  at once each checked against the reference AST;
* compile - compiling the module with the host's engine settings.
"""

from __future__ import annotations

import ast
import math
import os
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import wasmtime

from loadkit.runs.metrics import settled_rss_bytes
from loadkit.runs.trials import TrialPlan, TrialResult, run_trials_sync
from loadkit.workloads.wasm import corpus, pyparser, realcode
from loadkit.workloads.wasm.flat import FlatAst, ParseError
from loadkit.workloads.wasm.host import WasmParser, load_module_bytes, make_engine

Progress = Callable[[float], None]
KIB = 1024
MB = 1_000_000
OPS_TRIALS = TrialPlan(kept=15, warmup=1)
COMPILE_TRIALS = TrialPlan(kept=5, warmup=1)

# Document sizes by the label used in metric names (speedup_ratio_200kb, ...).
SIZES: dict[str, int] = {"50kb": 50_000, "200kb": 200_000, "1mb": 1_000_000, "4mb": 4_000_000}


def _noop(_fraction: float) -> None:
    pass


def median_s(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1e9


def outcome(parse: Callable[[bytes], FlatAst], data: bytes) -> FlatAst | ParseError:
    """A parser's answer as a comparable value: the AST, or the syntax error."""
    try:
        return parse(data)
    except ParseError as exc:
        return exc


def mismatches(wasm: WasmParser, documents: Iterable[bytes]) -> int:
    """How many documents the two parsers answer differently (AST or error)."""
    return sum(outcome(wasm.parse, d) != outcome(pyparser.parse, d) for d in documents)


def size_label(size_bytes: int) -> str:
    for label, size in SIZES.items():
        if size == size_bytes:
            return label
    return f"{size_bytes // 1000}kb"


@dataclass(frozen=True)
class SpeedPoint:
    """One document's timings, pair by pair. The three parsers run in turns (a pair:
    the median of several WASM parses, one Python parse, one ``ast.parse``), and each
    ratio is the median of the pairs' own ratios: a slow spell of the host that lasts a
    pair moves both sides of that pair's ratio, so it cancels instead of landing on one
    side of the median."""

    size_bytes: int
    wasm_times: tuple[float, ...]
    python_times: tuple[float, ...]
    ast_times: tuple[float, ...]
    nodes: int
    equivalent: bool

    @property
    def wasm_s(self) -> float:
        return float(statistics.median(self.wasm_times))

    @property
    def python_s(self) -> float:
        return float(statistics.median(self.python_times))

    @property
    def ast_s(self) -> float:
        return float(statistics.median(self.ast_times))

    @property
    def pair_speedups(self) -> tuple[float, ...]:
        return _ratios(self.python_times, self.wasm_times)

    @property
    def speedup(self) -> float:
        return float(statistics.median(self.pair_speedups))

    @property
    def speedup_vs_ast(self) -> float:
        return float(statistics.median(_ratios(self.ast_times, self.wasm_times)))


def _ratios(slow: tuple[float, ...], fast: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(s / f for s, f in zip(slow, fast, strict=True))


def measure_speed(
    wasm: WasmParser,
    size_bytes: int,
    python_repeats: int,
    wasm_repeats: int,
    seed: int = 0,
    document: Callable[[int, int], str] = realcode.document,
) -> SpeedPoint:
    """One document of ``size_bytes`` (real expressions unless ``document`` says
    otherwise): the three parsers' median times, and whether the WASM and Python ASTs
    are identical."""
    data = document(size_bytes, seed).encode()
    return measure_speed_on(wasm, data, python_repeats, wasm_repeats)


def measure_speed_on(
    wasm: WasmParser, data: bytes, python_repeats: int, wasm_repeats: int
) -> SpeedPoint:
    """``measure_speed`` for a given document."""
    reference = wasm.parse(data)  # warm: instance created, memory grown
    samples: dict[str, list[float]] = {"wasm": [], "python": [], "ast": []}
    wasm_each = -(-wasm_repeats // python_repeats)
    for _ in range(python_repeats):  # in turns, so a neighbour's burst hits all three
        samples["wasm"].append(median_s(lambda: wasm.parse(data), wasm_each))
        samples["python"].append(median_s(lambda: pyparser.parse(data), 1))
        samples["ast"].append(median_s(lambda: ast.parse(data), 1))
    return SpeedPoint(
        size_bytes=len(data),
        wasm_times=tuple(samples["wasm"]),
        python_times=tuple(samples["python"]),
        ast_times=tuple(samples["ast"]),
        nodes=len(reference),
        equivalent=reference == pyparser.parse(data),
    )


def _headline(points: list[SpeedPoint], headline_bytes: int) -> SpeedPoint:
    """The point whose document is nearest ``headline_bytes``."""
    return min(points, key=lambda p: abs(p.size_bytes - headline_bytes))


def speed_metrics(points: list[SpeedPoint], headline_bytes: int = SIZES["1mb"]) -> dict[str, float]:
    """Per-size figures, plus the headline figures from the document nearest 1 MB."""
    metrics: dict[str, float] = {}
    for p in points:
        label = size_label(round(p.size_bytes, -3))
        metrics |= {
            f"speedup_ratio_{label}": p.speedup,
            f"speedup_vs_ast_ratio_{label}": p.speedup_vs_ast,
            f"wasm_ms_{label}": p.wasm_s * 1e3,
            f"python_ms_{label}": p.python_s * 1e3,
            f"ast_ms_{label}": p.ast_s * 1e3,
        }
    head = _headline(points, headline_bytes)
    metrics |= {
        "speedup_ratio": head.speedup,
        "speedup_vs_ast_ratio": head.speedup_vs_ast,
        "wasm_mb_per_s": head.size_bytes / MB / head.wasm_s,
        "python_mb_per_s": head.size_bytes / MB / head.python_s,
        "ast_mb_per_s": head.size_bytes / MB / head.ast_s,
        "nodes_per_kib": head.nodes / (head.size_bytes / KIB),
    }
    return metrics


def speed_samples(
    points: list[SpeedPoint], headline_bytes: int = SIZES["1mb"]
) -> dict[str, list[float]]:
    """The headline multiplier's pairs, as the run's samples of it (asv keeps them)."""
    return {"speedup_ratio": list(_headline(points, headline_bytes).pair_speedups)}


def variant_metrics(point: SpeedPoint, name: str) -> dict[str, float]:
    """A side document's figures, named ``<metric>_<name>``."""
    return {
        f"speedup_ratio_{name}": point.speedup,
        f"wasm_mb_per_s_{name}": point.size_bytes / MB / point.wasm_s,
        f"python_mb_per_s_{name}": point.size_bytes / MB / point.python_s,
        f"equivalent_{name}": float(point.equivalent),
    }


def measure_random_trees(
    wasm: WasmParser, size_bytes: int, python_repeats: int, wasm_repeats: int, seed: int = 0
) -> dict[str, float]:
    """The two parsers on random expression trees (``corpus.document``), the stress
    case: set against the real-code figures, what irregular code costs the WASM side."""
    point = measure_speed(wasm, size_bytes, python_repeats, wasm_repeats, seed, corpus.document)
    return variant_metrics(point, "random_trees")


def repeated_line_data(size_bytes: int, seed: int = 0) -> bytes:
    """One real line repeated to ``size_bytes`` (``corpus.repeated_line_document``)."""
    return corpus.repeated_line_document(size_bytes, realcode.lines(seed)).encode()


def measure_repeated_line(
    wasm: WasmParser, data: bytes, python_repeats: int, wasm_repeats: int
) -> dict[str, float]:
    """The two parsers on one line repeated (``repeated_line_data``): set against the
    real-code figures, the share of WASM time that goes to branch mispredictions on
    varied code."""
    point = measure_speed_on(wasm, data, python_repeats, wasm_repeats)
    return variant_metrics(point, "repeated_line")


def measure_ops(
    wasm: WasmParser, documents: list[bytes], operations: int, plan: TrialPlan = OPS_TRIALS
) -> TrialResult:
    """Small documents parsed one call each, cycling through ``documents``, timed in
    ``plan.total`` consecutive trials of equal size: the rate is the median of the kept
    trials' rates (the first ones warm the caches up). A shared host has slow spells of
    a few hundred milliseconds in which a core does half its work (a pure-Python loop
    shows them too), so the trials together must span well over a second for the median
    to stand on quick trials; pausing between trials does not help, the first
    milliseconds after a pause are slow themselves. Memory is the settled RSS growth
    over the whole run, per operation."""
    if operations < plan.total:
        raise ValueError(f"{operations} operations cannot fill {plan.total} trials")
    wasm.parse(documents[0])
    rss_before = settled_rss_bytes()
    done = 0

    def trial(i: int) -> dict[str, float]:
        nonlocal done
        each = operations // plan.total + (i < operations % plan.total)
        start = time.perf_counter_ns()
        for _ in range(each):
            wasm.parse(documents[done % len(documents)])
            done += 1
        return {"ops_per_s": each / ((time.perf_counter_ns() - start) / 1e9)}

    result = run_trials_sync(trial, plan)
    rss_after = settled_rss_bytes()
    result.metrics |= {
        "ops_count": float(done),
        "memory_per_op_kib": max(0, rss_after - rss_before) / done / KIB,
    }
    return result


def measure_memory(wasm: WasmParser, data: bytes) -> dict[str, float]:
    """Peak bytes one parse of ``data`` holds, in a fresh thread (so a fresh instance).

    Two parts, both measured, not derived from the layout: the instance's linear memory
    past its static data and stack after the parse (``document_memory_bytes``: the
    input copied in, its padding, the packed nodes, and grown memory the nodes did not
    fill; all of it is memory the instance keeps), and the peak of Python allocations
    during the ``parse`` call, traced with ``tracemalloc`` (any copy the host makes,
    of the input or of the nodes, is counted there). The caller's own document is not
    counted. Node-level reads of the tree unpack it later, on demand (``unpack_ms``)."""
    found: dict[str, float] = {}

    def run() -> None:
        wasm.parse(b"x\n")
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            tree = wasm.parse(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        found.update(
            {
                "linear": float(wasm.document_memory_bytes()),
                "host": float(peak - before),
                "ast": float(tree.nbytes),
                "nodes": float(len(tree)),
            }
        )
        start = time.perf_counter_ns()
        tree.words  # noqa: B018 - the unpack is what is timed
        found["unpack_s"] = (time.perf_counter_ns() - start) / 1e9

    thread = threading.Thread(target=run, name="wasm-memory")
    thread.start()
    thread.join()
    held = found["linear"] + found["host"]
    return {
        "memory_per_parse_kib": held / KIB,
        "memory_per_input_ratio": held / len(data),
        "memory_linear_kib": found["linear"] / KIB,
        "memory_host_kib": found["host"] / KIB,
        "ast_bytes_per_node": found["ast"] / found["nodes"] if found["nodes"] else math.nan,
        "unpack_ms": found["unpack_s"] * 1e3,
    }


def parse_in_threads(
    wasm: WasmParser, data: bytes, threads: int, parses_each: int
) -> tuple[float, list[FlatAst | Exception]]:
    """Each thread parses ``data`` ``parses_each`` times after a common start; returns
    documents per second over the whole group and each thread's last answer (a thread
    keeps only its last tree, as a caller that parses and moves on would)."""
    barrier = threading.Barrier(threads + 1, timeout=60)
    answers: list[FlatAst | Exception] = [RuntimeError("did not run")] * threads

    def work(i: int) -> None:
        try:
            wasm.parse(data)  # instance created and its memory grown before the clock
            ready = True
        except Exception as exc:  # reported as a wrong answer, not a crash
            answers[i], ready = exc, False
        barrier.wait()
        try:
            for k in range(parses_each if ready else 0):
                tree = wasm.parse(data)
                if k == parses_each - 1:
                    answers[i] = tree
                del tree
        except Exception as exc:
            answers[i] = exc

    pool = [threading.Thread(target=work, args=(i,), name=f"wasm-{i}") for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter_ns()
    for t in pool:
        t.join()
    elapsed_s = (time.perf_counter_ns() - start) / 1e9
    return threads * parses_each / elapsed_s, answers


def measure_parallel(
    wasm: WasmParser, data: bytes, parses_each: int, instances: int = 10, rounds: int = 5
) -> dict[str, float]:
    """Scaling from 1 thread to one per core: the two take turns for ``rounds`` rounds and
    each keeps its best, so a neighbour's burst on a shared machine does not decide it.
    Then ``instances`` threads at once, each answer checked against the reference. The
    scaling ratio divides the two measured rates, both reported."""
    cores = os.cpu_count() or 1
    reference = wasm.parse(data)
    one = many = 0.0
    for _ in range(rounds):
        one = max(one, parse_in_threads(wasm, data, 1, parses_each)[0])
        many = max(many, parse_in_threads(wasm, data, cores, parses_each)[0])
    _, answers = parse_in_threads(wasm, data, instances, 1)
    return {
        "parallel_instances": float(sum(a == reference for a in answers)),
        "parallel_threads": float(cores),
        "parallel_scaling_ratio": many / one,
        "parallel_docs_per_s": many,
        "parallel_docs_per_s_1_thread": one,
    }


def measure_compile(plan: TrialPlan = COMPILE_TRIALS) -> TrialResult:
    """Compiling ``parser.wasm`` with the host's engine settings: the median of trials,
    each a fresh engine (the first pays for loading the compiler's own code)."""
    code = load_module_bytes()

    def trial(_i: int) -> dict[str, float]:
        engine = make_engine()
        start = time.perf_counter_ns()
        wasmtime.Module(engine, code)
        return {"compile_ms": (time.perf_counter_ns() - start) / 1e6}

    result = run_trials_sync(trial, plan)
    result.metrics["module_kib"] = len(code) / KIB
    return result
