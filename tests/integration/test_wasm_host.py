"""The wasmtime host: guards, threads, the committed module, and the workload's plumbing.

Everything runs the real ``parser.wasm`` under real wasmtime. The rebuild test needs
clang and wasm-ld (Debian: ``apt-get install clang lld``) and is skipped without them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import shutil
import subprocess
import sys
import threading

import pytest

from loadkit.runs.trials import TrialPlan
from loadkit.runs.workload import RunContext
from loadkit.workloads.wasm import build, corpus, pyparser, realcode, scenarios, workload
from loadkit.workloads.wasm.flat import FlatAst, ParseError
from loadkit.workloads.wasm.host import (
    INPUT_PADDING,
    PAGE,
    DeadlineExceeded,
    MemoryLimitExceeded,
    WasmParser,
)
from loadkit.workloads.wasm.plots import plot_speedup, points_from_metrics
from loadkit.workloads.wasm.scenarios import outcome

MIB = 1024 * 1024
REPORTED_METRICS = (
    "speedup_ratio",
    "speedup_vs_ast_ratio",
    "wasm_mb_per_s",
    "python_mb_per_s",
    "ops_per_s",
    "memory_per_parse_kib",
    "parallel_instances",
    "parallel_scaling_ratio",
    "compile_ms",
    "equivalent",
)


@pytest.fixture(scope="module")
def wasm():
    with WasmParser() as parser:
        yield parser


def test_deadline_stops_a_long_parse_and_the_thread_recovers():
    doc = b"alpha.beta(gamma, [1, 2, 3]) + delta * 2\n" * 250_000  # 10 MB
    with WasmParser(deadline_s=0.001) as quick:
        with pytest.raises(DeadlineExceeded, match=r"ran past its 0\.001 s deadline"):
            quick.parse(doc)
        assert quick.parse("a + b").sexpr(0) == "a"  # a fresh instance took over
    with pytest.raises(RuntimeError, match="closed"):
        quick.parse("a")  # no ticker, no deadline: refused
    with WasmParser(deadline_s=30) as patient:
        assert len(patient.parse(doc)) == 250_000 * 13


def test_memory_limit_holds_with_clear_errors():
    with WasmParser(memory_limit_bytes=4 * MIB) as small:
        with pytest.raises(MemoryLimitExceeded, match="does not fit the 4 MiB memory limit"):
            small.parse(b"x\n" * (3 * MIB))  # 6 MB of input alone
        dense = b"[" + b"1," * 1_000_000 + b"]\n"  # 2 MB, 1M nodes = 4 MB of packed AST
        with pytest.raises(MemoryLimitExceeded, match="outgrew the 4 MiB memory limit"):
            small.parse(dense)
        assert small.memory_bytes() <= 4 * MIB
        assert isinstance(small.parse("a.b(c)"), FlatAst)  # the instance is still usable
    with pytest.raises(MemoryLimitExceeded, match="does not start"):
        WasmParser(memory_limit_bytes=64 * 1024).parse("a")


def test_syntax_errors_come_back_as_errors_not_traps(wasm):
    for bad in ("(" * 10_000, "'" + "a" * 100_000, "\x00", "é" * 1000):
        with pytest.raises(ParseError):
            wasm.parse(bad)
    assert wasm.parse("").words.tolist() == []


TOKENS = {
    "name": lambda n: "x" * n,
    "string": lambda n: "'" + "é" * (n // 2 - 1) + "'" * (1 + n % 2),
    "number": lambda n: "7" * n,
    "unterminated string": lambda n: "'" + "a" * (n - 1),
}


@pytest.mark.parametrize("prefix", ["", "(", "[-"])
@pytest.mark.parametrize("token", list(TOKENS))
def test_documents_ending_where_linear_memory_ends(prefix, token):
    """The scanner reads 16 bytes at a time; the host leaves INPUT_PADDING bytes after
    the document, so reading a token that reaches the last byte of memory (before any
    node has grown it) stays inside linear memory instead of trapping."""
    with WasmParser() as fresh:
        fresh.parse("x")
        input_at, memory = fresh._instance().input_at, fresh.memory_bytes()
        size = (memory // PAGE + 3) * PAGE - input_at - INPUT_PADDING  # ends on a page
        doc = (prefix + TOKENS[token](size - len(prefix))).encode()
        assert len(doc) == size
        assert outcome(fresh.parse, doc) == outcome(pyparser.parse, doc)


def test_ten_threads_parse_concurrently_and_correctly(wasm):
    docs = [corpus.document(20_000, seed=i).encode() for i in range(10)]
    expected = [pyparser.parse(d) for d in docs]
    barrier = threading.Barrier(10, timeout=30)
    results: list[object] = [None] * 10

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            results[i] = wasm.parse(docs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_parallel_measurement_counts_correct_instances(wasm):
    data = corpus.document(50_000).encode()
    found = scenarios.measure_parallel(wasm, data, parses_each=3, rounds=2)
    assert found["parallel_instances"] == 10
    one, many = found["parallel_docs_per_s_1_thread"], found["parallel_docs_per_s"]
    assert all(math.isfinite(rate) and rate > 0 for rate in (one, many))
    assert found["parallel_scaling_ratio"] == pytest.approx(many / one)
    # Threads in parallel give the pure-Python AST, and a wrong answer counts as wrong.
    expected = pyparser.parse(data)
    rate, answers = scenarios.parse_in_threads(wasm, data, 4, 2)
    assert math.isfinite(rate) and rate > 0
    assert answers == [expected] * 4
    bad = data + b"\n)"
    _, answers = scenarios.parse_in_threads(wasm, bad, 3, 1)
    assert answers == [outcome(pyparser.parse, bad)] * 3
    assert all(isinstance(a, ParseError) for a in answers)


@pytest.mark.slow
def test_speed_ops_memory_and_compile_measurements(wasm):
    point = scenarios.measure_speed(wasm, 20_000, python_repeats=3, wasm_repeats=6)
    assert point.equivalent and point.wasm_s > 0 and point.python_s > point.wasm_s
    assert len(point.pair_speedups) == len(point.wasm_times) == len(point.ast_times) == 3
    metrics = scenarios.speed_metrics([point], headline_bytes=20_000)
    assert metrics["speedup_ratio"] == metrics["speedup_ratio_20kb"] == point.speedup
    samples = scenarios.speed_samples([point], headline_bytes=20_000)
    assert samples["speedup_ratio"] == list(point.pair_speedups)
    ops = scenarios.measure_ops(wasm, [b"a + b\n", b"f(x)[1]\n"], operations=500)
    assert ops.metrics["ops_per_s"] > 0 and ops.metrics["ops_count"] == 500
    assert len(ops.samples["ops_per_s"]) == scenarios.OPS_TRIALS.kept
    data = corpus.document(100_000).encode()
    memory = scenarios.measure_memory(wasm, data)
    # at least the input copy and the node array handed back
    assert memory["memory_per_parse_kib"] * 1024 >= len(data) + wasm.parse(data).nbytes
    one = TrialPlan(kept=1, warmup=0)
    assert scenarios.measure_compile(one).metrics["compile_ms"] > 0
    assert scenarios.mismatches(wasm, [b"a +", b"a + b", b"(("]) == 0


@pytest.mark.slow
def test_workload_reports_every_promised_metric_and_the_plot(tmp_path, monkeypatch):
    small = workload.WasmScale(("200kb",), 1, 3, 2_000, 2, 50)
    monkeypatch.setitem(workload.SCALE, "quick", small)
    ctx = RunContext(redis_url="unused", scale="quick", artifacts_dir=tmp_path)
    out = asyncio.run(workload.run(ctx))
    for name in REPORTED_METRICS:
        assert math.isfinite(out.metrics[name]), name
    assert out.metrics["equivalent"] == 1
    assert out.metrics["parallel_instances"] == 10
    assert "speedup_ratio_200kb" in out.metrics
    assert out.metrics["wasm_mb_per_s_repeated_line"] > 0
    assert out.metrics["wasm_mb_per_s_random_trees"] > 0
    assert out.metrics["equivalent_random_trees"] == 1
    assert out.metrics["real_code_lines"] >= realcode.MIN_LINES
    (png,) = out.artifacts.values()
    assert (tmp_path / png).read_bytes().startswith(b"\x89PNG")
    json.dumps(out.metrics)  # flat numbers only


def test_targets_and_bottlenecks_read_the_metrics():
    names = {t.metric for t in workload.targets("quick")}
    assert {"speedup_ratio", "ops_per_s", "parallel_instances", "equivalent"} <= names
    slow = workload.bottlenecks(
        {"speedup_ratio": 20, "wasm_mb_per_s": 120, "python_mb_per_s": 6, "equivalent": 0,
         "parallel_scaling_ratio": 1.1, "parallel_threads": 2, "memory_per_input_ratio": 5}
    )  # fmt: skip
    assert len(slow) == 4 and "disagree" in slow[0]
    assert workload.bottlenecks({"speedup_ratio": 60, "equivalent": 1}) == []
    (mispredicts,) = workload.bottlenecks(
        {"speedup_ratio": 38, "wasm_mb_per_s": 200, "python_mb_per_s": 5.3,
         "wasm_mb_per_s_repeated_line": 500, "speedup_ratio_repeated_line": 90}
    )  # fmt: skip
    assert "500 MB/s" in mispredicts and "60% of its time" in mispredicts
    (stress,) = workload.bottlenecks(
        {"speedup_ratio": 54, "wasm_mb_per_s": 310, "python_mb_per_s": 5.8,
         "speedup_ratio_random_trees": 38, "wasm_mb_per_s_random_trees": 225}
    )  # fmt: skip
    assert "falls to 38x" in stress and "225 MB/s there against 310 MB/s" in stress
    assert workload.bottlenecks(
        {"speedup_ratio": 54, "wasm_mb_per_s": 310, "speedup_ratio_random_trees": 45,
         "wasm_mb_per_s_random_trees": 260}
    ) == []  # fmt: skip


@pytest.mark.slow
def test_repeated_line_document_repeats_one_line_of_its_stream(wasm):
    doc = corpus.repeated_line_document(20_000, corpus.lines(3))
    lines = doc.splitlines()
    assert len(doc.encode()) >= 20_000 and len(set(lines)) == 1
    assert lines[0] in set(itertools.islice(corpus.lines(3), 101))
    real = corpus.repeated_line_document(20_000, realcode.lines(3)).splitlines()
    assert real[0] in set(itertools.islice(realcode.lines(3), 101))
    data = scenarios.repeated_line_data(20_000, seed=3)
    assert data.decode() == corpus.repeated_line_document(20_000, realcode.lines(3))
    found = scenarios.measure_repeated_line(wasm, data, python_repeats=1, wasm_repeats=3)
    assert found["speedup_ratio_repeated_line"] > 1
    assert found["wasm_mb_per_s_repeated_line"] > found["python_mb_per_s_repeated_line"] > 0
    assert found["equivalent_repeated_line"] == 1


def test_plot_from_metrics_or_points(tmp_path):
    metrics = {
        "speedup_ratio_200kb": 30.0,
        "speedup_ratio_1mb": 35.0,
        "speedup_vs_ast_ratio_1mb": 90.0,
    }
    assert points_from_metrics(metrics) == [(200_000, 30.0, None), (1_000_000, 35.0, 90.0)]
    repeated = metrics | {"speedup_ratio_repeated_line": 80.0, "speedup_ratio_random_trees": 25.0}
    for name, source in (
        ("m.png", metrics),
        ("r.png", repeated),
        ("p.png", [(200_000, 30.0, 80.0)]),
    ):
        assert plot_speedup(source, tmp_path / name).read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="no speedup points"):
        plot_speedup({}, tmp_path / "none.png")


def test_committed_module_matches_its_recorded_source():
    stamp = build.recorded()
    assert stamp["source_sha256"] == build.sha256(build.SOURCE), "parser.c changed: rebuild"
    assert stamp["wasm_sha256"] == build.sha256(build.OUTPUT)
    assert stamp["flags"] == " ".join(build.FLAGS)


@pytest.mark.skipif(
    shutil.which("clang") is None or shutil.which("wasm-ld") is None,
    reason="clang and wasm-ld not installed (apt-get install clang lld)",
)
def test_rebuilding_reproduces_the_committed_module():
    compiler = build.toolchain()
    if compiler != build.recorded()["compiler"]:
        pytest.skip(f"{compiler} is not the recorded {build.recorded()['compiler']}")
    assert build.rebuilt_matches(), "parser.wasm differs from a fresh build of parser.c"
    check = subprocess.run(
        [sys.executable, "-m", "loadkit.workloads.wasm.build", "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
