"""asv benchmarks for the WASM expression parser against pure Python and ``ast.parse``.

The measurement functions are the ones ``loadkit run wasm`` reports from
(:mod:`loadkit.wasm.scenarios`), so asv's history and the run report agree. Documents
are seeded, so every commit parses the same bytes: real expressions from the standard
library of the environment's Python (:mod:`loadkit.wasm.realcode`; reading it takes a few
seconds, so each class does it once, in ``setup_cache``), and random expression trees
for the stress case. The ratios are
``track_`` benchmarks: both sides are timed in the same process, one after the other,
so a regression of the multiplier shows in ``loadkit check`` like any other series.
"""

from __future__ import annotations

import ast

from loadkit.wasm import pyparser, realcode, scenarios
from loadkit.wasm.host import WasmParser

SEED = 5
SIZES = [200_000, 1_000_000, 4_000_000]
Documents = dict[int, bytes]


def _documents(sizes: list[int]) -> Documents:
    return {size: realcode.document(size, SEED).encode() for size in sizes}


class _WasmCase:
    """A parser (module compiled, this thread's instance warm) and one document."""

    warmup_time = 0
    timeout = 300

    def _start(self, data: bytes) -> None:
        self.data = data
        self.wasm = WasmParser()
        self.wasm.parse(self.data)

    def teardown(self, *params: object) -> None:
        self.wasm.close()


class WasmParse(_WasmCase):
    """One document through each parser: WASM (copy in, parse, copy out), the same
    algorithm in pure Python, and CPython's C parser as the native anchor."""

    params = SIZES
    param_names = ["document_bytes"]
    repeat = (3, 10, 30.0)
    rounds = 1

    def setup_cache(self) -> Documents:
        return _documents(SIZES)

    def setup(self, documents: Documents, size: int) -> None:
        self._start(documents[size])

    def time_wasm(self, documents: Documents, size: int) -> None:
        self.wasm.parse(self.data)

    def time_python(self, documents: Documents, size: int) -> None:
        pyparser.parse(self.data)

    def time_ast_parse(self, documents: Documents, size: int) -> None:
        ast.parse(self.data)


class WasmSpeedup(_WasmCase):
    """Ratios of medians measured in one process: the multiplier the issue tracks."""

    params = SIZES
    param_names = ["document_bytes"]
    rounds = 1
    repeat = 1
    number = 1

    def setup_cache(self) -> Documents:
        return _documents(SIZES)

    def setup(self, documents: Documents, size: int) -> None:
        self._start(documents[size])
        self.point = scenarios.measure_speed_on(
            self.wasm, self.data, python_repeats=3, wasm_repeats=15
        )

    def track_speedup_ratio(self, documents: Documents, size: int) -> float:
        return self.point.speedup

    track_speedup_ratio.unit = "x"

    def track_speedup_vs_ast_ratio(self, documents: Documents, size: int) -> float:
        return self.point.speedup_vs_ast

    track_speedup_vs_ast_ratio.unit = "x"

    def track_wasm_mb_per_s(self, documents: Documents, size: int) -> float:
        return self.point.size_bytes / 1e6 / self.point.wasm_s

    track_wasm_mb_per_s.unit = "MB/s"

    def track_equivalent(self, documents: Documents, size: int) -> float:
        return float(self.point.equivalent)

    track_equivalent.unit = "bool"


class WasmRandomTrees(_WasmCase):
    """The multiplier on 1 MB of random expression trees, the stress case: every node's
    shape drawn independently, so the next token is harder to guess than in real code."""

    rounds = 1
    repeat = 1
    number = 1

    def setup(self) -> None:
        self.wasm = WasmParser()
        self.found = scenarios.measure_random_trees(
            self.wasm, 1_000_000, python_repeats=3, wasm_repeats=15, seed=SEED
        )

    def track_speedup_ratio_random_trees(self) -> float:
        return self.found["speedup_ratio_random_trees"]

    track_speedup_ratio_random_trees.unit = "x"

    def track_wasm_mb_per_s_random_trees(self) -> float:
        return self.found["wasm_mb_per_s_random_trees"]

    track_wasm_mb_per_s_random_trees.unit = "MB/s"


class WasmRepeatedLine(_WasmCase):
    """The same on one real line repeated to 1 MB, whose branches the CPU predicts: a
    change here and not in ``WasmSpeedup`` is a change in per-token work; one only in
    ``WasmSpeedup`` is a change in how the parser's branches predict on varied code."""

    rounds = 1
    repeat = 1
    number = 1

    def setup_cache(self) -> bytes:
        return scenarios.repeated_line_data(1_000_000, SEED)

    def setup(self, data: bytes) -> None:
        self.wasm = WasmParser()
        self.found = scenarios.measure_repeated_line(
            self.wasm, data, python_repeats=3, wasm_repeats=15
        )

    def track_speedup_ratio_repeated_line(self, data: bytes) -> float:
        return self.found["speedup_ratio_repeated_line"]

    track_speedup_ratio_repeated_line.unit = "x"

    def track_wasm_mb_per_s_repeated_line(self, data: bytes) -> float:
        return self.found["wasm_mb_per_s_repeated_line"]

    track_wasm_mb_per_s_repeated_line.unit = "MB/s"


class WasmThroughput(_WasmCase):
    """Threads and small documents: parallel scaling (threads = cores vs 1) on the 1 MB
    document, and small documents per second through one instance."""

    rounds = 1
    repeat = 1
    number = 1

    def setup_cache(self) -> tuple[bytes, list[bytes]]:
        small = [d.encode() for d in realcode.small_documents(50, seed=SEED)]
        return _documents([1_000_000])[1_000_000], small

    def setup(self, documents: tuple[bytes, list[bytes]]) -> None:
        self._start(documents[0])

    def track_parallel_scaling_ratio(self, documents: tuple[bytes, list[bytes]]) -> float:
        return scenarios.measure_parallel(self.wasm, self.data, parses_each=20)[
            "parallel_scaling_ratio"
        ]

    track_parallel_scaling_ratio.unit = "x"

    def track_ops_per_s(self, documents: tuple[bytes, list[bytes]]) -> float:
        return scenarios.measure_ops(self.wasm, documents[1], operations=10_000)["ops_per_s"]

    track_ops_per_s.unit = "ops/s"

    def track_memory_per_parse_kib(self, documents: tuple[bytes, list[bytes]]) -> float:
        return scenarios.measure_memory(self.wasm, self.data)["memory_per_parse_kib"]

    track_memory_per_parse_kib.unit = "KiB"

    def track_compile_ms(self, documents: tuple[bytes, list[bytes]]) -> float:
        return scenarios.measure_compile()["compile_ms"]

    track_compile_ms.unit = "ms"


class WasmMemory(_WasmCase):
    """Peak memory of one parse of the 1 MB document; ``peakmem_reference`` holds the
    same parser and document without parsing, so the difference is the parse itself."""

    rounds = 1

    def setup_cache(self) -> Documents:
        return _documents([1_000_000])

    def setup(self, documents: Documents) -> None:
        self.data = documents[1_000_000]
        self.wasm = WasmParser()
        self.wasm.parse(b"x\n")  # the instance exists; its memory has not grown yet

    def peakmem_reference(self, documents: Documents) -> None:
        pass

    def peakmem_wasm_parse(self, documents: Documents) -> None:
        self.wasm.parse(self.data)

    def peakmem_python_parse(self, documents: Documents) -> None:
        pyparser.parse(self.data)
