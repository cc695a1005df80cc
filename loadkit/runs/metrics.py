"""Measurement primitives shared by every workload: latency, throughput, memory.

Latencies are recorded as integer nanoseconds from ``time.perf_counter_ns`` (on Linux,
CLOCK_MONOTONIC, which is system-wide, so a timestamp taken in one process can be
subtracted in another on the same host). Summaries are computed once, at the end, with
numpy, so recording stays a cheap append on the hot path.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import threading
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import psutil

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
LATENCY_FIGURES: tuple[str, ...] = ("avg", "p50", "p95", "p99", "max")


def percentile(values: Iterable[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile, NaN when there are no values: a figure that could not be
    measured stays missing (and scores 0) instead of raising or reading as zero."""
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float)
    return float(np.percentile(arr, q)) if arr.size else math.nan


def latency_figures(
    ms: Iterable[float] | np.ndarray, prefix: str, figures: Iterable[str] = LATENCY_FIGURES
) -> dict[str, float]:
    """``<prefix>_<figure>_ms`` for each of ``avg``, ``max`` and ``pNN`` over latencies in
    milliseconds; every figure NaN when there are none. One spelling of the metric names
    for every workload, so reports and asv read the same keys."""
    arr = np.asarray(ms if isinstance(ms, np.ndarray) else list(ms), dtype=float)
    out: dict[str, float] = {}
    for figure in figures:
        if not arr.size:
            value = math.nan
        elif figure == "avg":
            value = float(arr.mean())
        elif figure == "max":
            value = float(arr.max())
        else:
            value = float(np.percentile(arr, float(figure.removeprefix("p"))))
        out[f"{prefix}_{figure}_ms"] = value
    return out


class LatencyRecorder:
    """Append-only store of latency samples with percentile summaries in milliseconds."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples = array("q")

    def record_ns(self, duration_ns: int) -> None:
        self._samples.append(duration_ns)

    def record_since(self, start_ns: int) -> int:
        """Record ``now - start_ns`` and return it (start from ``perf_counter_ns``)."""
        duration = time.perf_counter_ns() - start_ns
        self._samples.append(duration)
        return duration

    def extend_ns(self, durations: Iterator[int] | list[int]) -> None:
        self._samples.extend(durations)

    @contextlib.contextmanager
    def time(self) -> Iterator[None]:
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            self._samples.append(time.perf_counter_ns() - start)

    def __len__(self) -> int:
        return len(self._samples)

    def as_ms(self) -> np.ndarray:
        return np.frombuffer(self._samples, dtype=np.int64).astype(np.float64) / 1e6

    def summary(self) -> dict[str, float]:
        """count, mean, p50/p90/p95/p99 and max in ms; NaN-free: empty gives count 0 only."""
        if not self._samples:
            return {"count": 0}
        ms = self.as_ms()
        out: dict[str, float] = {"count": int(ms.size), "mean": float(ms.mean())}
        for p, value in zip(PERCENTILES, np.percentile(ms, PERCENTILES), strict=True):
            out[f"p{p}"] = float(value)
        out["max"] = float(ms.max())
        return out


@dataclass
class Throughput:
    """Events per second over a measured wall-clock window."""

    count: int = 0
    start_ns: int = 0
    end_ns: int = 0

    def start(self) -> None:
        self.start_ns = time.perf_counter_ns()

    def add(self, n: int = 1) -> None:
        self.count += n

    def stop(self) -> None:
        self.end_ns = time.perf_counter_ns()

    @property
    def elapsed_s(self) -> float:
        end = self.end_ns or time.perf_counter_ns()
        return max(end - self.start_ns, 1) / 1e9

    @property
    def per_s(self) -> float:
        return self.count / self.elapsed_s


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default)."""
    return int(psutil.Process(pid).memory_info().rss)


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def settled_rss_bytes(pid: int | None = None) -> int:
    """RSS after a full garbage collection and ``malloc_trim``, so before/after comparisons
    see live data rather than heap pages glibc keeps cached for reuse."""
    if pid is None:
        gc.collect()
        _malloc_trim()
    return rss_bytes(pid)


def open_fds(pid: int | None = None) -> int:
    return int(psutil.Process(pid).num_fds())


class RssSampler:
    """Samples a process's RSS on a background thread and keeps the peak.

    A thread (not an asyncio task) so sampling continues while the event loop is busy,
    which is exactly when memory peaks.
    """

    def __init__(self, pid: int | None = None, interval_s: float = 0.05) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples: list[int] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append(int(self._proc.memory_info().rss))
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)
