"""The measurement machinery measures: known data in, known summaries out; real memory."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from loadkit.runs.metrics import (
    LatencyRecorder,
    RssSampler,
    Throughput,
    open_fds,
    rss_bytes,
    settled_rss_bytes,
)

MIB = 2**20


def test_percentiles_of_one_to_a_hundred_ms() -> None:
    rec = LatencyRecorder()
    for ms in range(100, 0, -1):  # order must not matter
        rec.record_ns(ms * 1_000_000)
    s = rec.summary()
    assert s["count"] == 100
    assert s["mean"] == pytest.approx(50.5)
    # Linear interpolation between closest ranks (numpy's default).
    assert s["p50"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p95"] == pytest.approx(95.05)
    assert s["p99"] == pytest.approx(99.01)
    assert s["max"] == pytest.approx(100.0)


def test_a_single_outlier_moves_the_tail_not_the_median() -> None:
    rec = LatencyRecorder()
    rec.extend_ns([1_000_000] * 999 + [500_000_000])
    s = rec.summary()
    assert s["p50"] == pytest.approx(1.0)
    assert s["p99"] == pytest.approx(1.0)
    assert s["max"] == pytest.approx(500.0)
    assert s["mean"] == pytest.approx((999 + 500) / 1000)


def test_empty_recorder_reports_count_zero_only() -> None:
    rec = LatencyRecorder()
    assert len(rec) == 0
    assert rec.summary() == {"count": 0}


def test_sub_millisecond_samples_keep_their_precision() -> None:
    rec = LatencyRecorder()
    rec.extend_ns([1, 999, 250_000])
    assert rec.as_ms().tolist() == pytest.approx([1e-6, 999e-6, 0.25])


def test_timing_helpers_measure_real_time() -> None:
    rec = LatencyRecorder()
    with rec.time():
        time.sleep(0.02)
    start = time.perf_counter_ns()
    time.sleep(0.01)
    returned = rec.record_since(start)
    assert len(rec) == 2
    first, second = rec.as_ms().tolist()
    assert 20 <= first < 1000
    assert 10 <= second < 1000
    assert returned == pytest.approx(second * 1e6)


def test_time_context_records_even_when_the_block_raises() -> None:
    rec = LatencyRecorder()
    with pytest.raises(KeyError), rec.time():
        raise KeyError("x")
    assert len(rec) == 1


def test_throughput_is_count_over_the_window() -> None:
    tp = Throughput()
    tp.start()
    time.sleep(0.05)
    tp.add(10)
    tp.add()
    tp.stop()
    assert tp.count == 11
    assert 0.05 <= tp.elapsed_s < 1.0
    assert tp.per_s == pytest.approx(11 / tp.elapsed_s)
    frozen = tp.elapsed_s
    time.sleep(0.01)
    assert tp.elapsed_s == frozen  # stopped: the window no longer grows


def test_rss_sampler_sees_an_allocation_grow_and_keeps_the_peak() -> None:
    with RssSampler(interval_s=0.01) as sampler:
        time.sleep(0.05)
        before = max(sampler.samples)
        block = np.ones(96 * MIB, dtype=np.uint8)  # written, so resident
        time.sleep(0.1)
        del block
        settled_rss_bytes()
        time.sleep(0.05)
    assert len(sampler.samples) >= 5
    assert sampler.peak - before >= 80 * MIB
    # The sampler kept the peak although the block is gone again.
    assert sampler.samples[-1] < sampler.peak - 64 * MIB


def test_rss_of_another_process_and_settled_rss_after_free() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; b = bytearray(b'x') * (64 << 20); print('ok', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ok"
        assert rss_bytes(child.pid) >= 64 * MIB
    finally:
        child.communicate("", timeout=10)

    base = settled_rss_bytes()
    block = np.ones(64 * MIB, dtype=np.uint8)
    assert rss_bytes() - base >= 56 * MIB
    del block
    assert settled_rss_bytes() - base < 16 * MIB


def test_open_fds_counts_real_descriptors(tmp_path: Path) -> None:
    before = open_fds()
    files = [open(tmp_path / f"f{i}", "w") for i in range(5)]  # noqa: SIM115
    try:
        assert open_fds() - before == 5
    finally:
        for f in files:
            f.close()
    assert open_fds() == before


def test_summary_is_free_of_nan() -> None:
    rec = LatencyRecorder()
    rec.record_ns(0)
    assert all(math.isfinite(v) for v in rec.summary().values())


def test_percentile_and_latency_figures_agree_with_numpy_and_mark_missing() -> None:
    from loadkit.runs.metrics import latency_figures, percentile

    ms = np.array([5.0, 1.0, 3.0, 2.0, 4.0])
    assert percentile(ms, 50) == 3.0
    assert percentile([1, 2, 3, 4], 95) == float(np.percentile([1, 2, 3, 4], 95))
    assert math.isnan(percentile([], 50))
    figures = latency_figures(ms, "delivery")
    assert figures == {
        "delivery_avg_ms": 3.0,
        "delivery_p50_ms": 3.0,
        "delivery_p95_ms": float(np.percentile(ms, 95)),
        "delivery_p99_ms": float(np.percentile(ms, 99)),
        "delivery_max_ms": 5.0,
    }
    empty = latency_figures([], "failover", ("p50", "p95"))
    assert list(empty) == ["failover_p50_ms", "failover_p95_ms"]
    assert all(math.isnan(v) for v in empty.values())
