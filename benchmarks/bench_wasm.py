"""asv benchmarks for the WASM expression parser against pure Python and ``ast.parse``.

The WASM workload (``loadkit.workloads.wasm.workload``, what ``loadkit run wasm`` reports) runs
once per asv run, in ``WasmRun.setup_cache``, at the bench scale; the speed, throughput
and memory classes read their figures from that one run. Both sides of each ratio are
timed in the same process, one after the other, so a regression of the multiplier shows
in ``loadkit check`` like any other series.

``WasmParse`` and ``WasmMemory`` are asv's own timings and peak memory of one parse;
their documents are seeded real expressions from the standard library of the
environment's Python (reading it takes a few seconds, so it happens once, in the
``setup_cache`` they share), and their ``setup`` only makes a parser.
"""

from __future__ import annotations

import ast

from benchmarks.common import (
    HIGHER,
    LOWER,
    Measured,
    WasmParser,
    WorkloadRun,
    bench_scale,
    pyparser,
    run_workload,
    track,
    wasm_document,
    wasm_scenarios,
    wasm_sizes,
)

scenarios = wasm_scenarios
TRIALS = "median of trials"
LONG = "median of trials over 1.5 s"
PAIRED = "median of paired ratios"
SIZES = wasm_sizes(bench_scale())  # the scale's document sizes: 50kb, 200kb, ...
Documents = dict[str, bytes]


class WasmRun(WorkloadRun):
    """The WASM workload's one run, shared by every class of this file that reads it."""

    workload = "wasm"

    def setup_cache(self) -> Measured:
        return run_workload(self.workload)


class WasmSpeedup(WasmRun):
    """The headline multiplier on the document nearest 1 MB of real code, and whether
    the two parsers agreed on every document of the run."""

    track_speedup_ratio = track("speedup_ratio", "x", HIGHER, headline=True, method=PAIRED)
    track_speedup_vs_ast_ratio = track("speedup_vs_ast_ratio", "x", HIGHER, method=PAIRED)
    track_wasm_mb_per_s = track("wasm_mb_per_s", "MB/s", HIGHER)
    track_python_mb_per_s = track("python_mb_per_s", "MB/s", HIGHER)
    track_equivalent = track("equivalent", "bool", HIGHER)


class WasmSpeedupBySize(WasmRun):
    """The multiplier at each document size of the scale."""

    params = [[bench_scale()], SIZES]
    param_names = ["scale", "document"]

    track_speedup_ratio = track("speedup_ratio_{document}", "x", HIGHER, method=PAIRED)
    track_speedup_vs_ast_ratio = track(
        "speedup_vs_ast_ratio_{document}", "x", HIGHER, method=PAIRED
    )


class WasmRandomTrees(WasmRun):
    """The multiplier on random expression trees, the stress case: every node's shape
    drawn independently, so the next token is harder to guess than in real code."""

    track_speedup_ratio_random_trees = track(
        "speedup_ratio_random_trees", "x", HIGHER, method=PAIRED
    )
    track_wasm_mb_per_s_random_trees = track("wasm_mb_per_s_random_trees", "MB/s", HIGHER)


class WasmRepeatedLine(WasmRun):
    """The same on one real line repeated, whose branches the CPU predicts: a change here
    and not in ``WasmSpeedup`` is a change in per-token work; one only in ``WasmSpeedup``
    is a change in how the parser's branches predict on varied code."""

    track_speedup_ratio_repeated_line = track(
        "speedup_ratio_repeated_line", "x", HIGHER, method=PAIRED
    )
    track_wasm_mb_per_s_repeated_line = track("wasm_mb_per_s_repeated_line", "MB/s", HIGHER)


class WasmThroughput(WasmRun):
    """Threads and small documents: parallel scaling (threads = cores vs 1), instances
    parsing at once, small documents per second, memory per parse, compile time."""

    track_parallel_scaling_ratio = track(
        "parallel_scaling_ratio",
        "x",
        HIGHER,
        informational="how much of a second core the host has free decides it; that "
        "instances at once all answer right is gated as parallel_instances, one "
        "instance's speed as ops_per_s",
    )
    track_parallel_threads = track("parallel_threads", "count", HIGHER)
    track_parallel_instances = track("parallel_instances", "count", HIGHER)
    track_ops_per_s = track("ops_per_s", "1/s", HIGHER, headline=True, method=LONG)
    track_memory_per_op_kib = track("memory_per_op_kib", "KiB", LOWER)
    track_memory_per_parse_kib = track("memory_per_parse_kib", "KiB", LOWER)
    track_memory_per_input_ratio = track("memory_per_input_ratio", "ratio", LOWER)
    track_compile_ms = track(
        "compile_ms",
        "ms",
        LOWER,
        informational="wasmtime compiling the module: the host's speed decides it; the "
        "parser it compiles is gated by its speedups",
        method=TRIALS,
    )


def _documents(sizes: list[str]) -> Documents:
    return {size: wasm_document(size) for size in sizes}


class WasmDocuments:
    """The documents ``WasmParse`` and ``WasmMemory`` parse, read once for both."""

    rounds = 1
    warmup_time = 0
    timeout = 300

    def setup_cache(self) -> Documents:
        return _documents(sorted({*SIZES, "1mb"}, key=scenarios.SIZES.__getitem__))


class WasmParse(WasmDocuments):
    """One document through each parser: WASM (copy in, parse, copy out), the same
    algorithm in pure Python, and CPython's C parser as the native anchor."""

    params = SIZES
    param_names = ["document"]
    repeat = (3, 10, 10.0)

    def setup(self, documents: Documents, size: str) -> None:
        self.data = documents[size]
        self.wasm = WasmParser()
        self.wasm.parse(self.data)  # module compiled, this thread's instance warm

    def teardown(self, documents: Documents, size: str) -> None:
        self.wasm.close()

    def time_wasm(self, documents: Documents, size: str) -> None:
        self.wasm.parse(self.data)

    # A WASM parse takes milliseconds, a shared host's slow spells up to ~150 ms: many
    # samples of at least 20 ms over up to 3 s, so asv's median rests on more than one
    # spell. The other two parsers take tens to hundreds of ms a parse, long enough.
    time_wasm.repeat = (10, 60, 3.0)  # type: ignore[attr-defined]
    time_wasm.sample_time = 0.02  # type: ignore[attr-defined]

    def time_python(self, documents: Documents, size: str) -> None:
        pyparser.parse(self.data)

    def time_ast_parse(self, documents: Documents, size: str) -> None:
        ast.parse(self.data)


class WasmMemory(WasmDocuments):
    """Peak memory of one parse of the 1 MB document; ``peakmem_reference`` holds the
    same parser and document without parsing, so the difference is the parse itself."""

    def setup(self, documents: Documents) -> None:
        self.data = documents["1mb"]
        self.wasm = WasmParser()
        self.wasm.parse(b"x\n")  # the instance exists; its memory has not grown yet

    def teardown(self, documents: Documents) -> None:
        self.wasm.close()

    def peakmem_reference(self, documents: Documents) -> None:
        pass

    def peakmem_wasm_parse(self, documents: Documents) -> None:
        self.wasm.parse(self.data)

    def peakmem_python_parse(self, documents: Documents) -> None:
        pyparser.parse(self.data)
