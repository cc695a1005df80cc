"""Every (series, commit) point of one machine in flat arrays, then series in commit order.

A machine's history is hundreds of thousands of points and millions of samples. Kept as
Python objects (asv's ``Results``, a dict and a list per point) they cost gigabytes and
most of the reading time; appended to a few typed arrays they cost a few bytes a number,
and the checks every number needs (finite, positive) run once over a whole array. The
table is filled while files are read and knows nothing of files; :meth:`PointTable.series`
turns it into :class:`~loadkit.history.stats.series.Series` once the commit order is known.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from loadkit.history.stats.series import Series
from loadkit.runs.direction import infer_direction


def _number(value: object) -> float:
    """A stored number as a float; anything else (None, text) as NaN, dropped later."""
    return float(value) if isinstance(value, int | float) else math.nan


@dataclass(frozen=True)
class SeriesKey:
    """What tells series apart: benchmark, parameter combination, environment."""

    benchmark: str
    label: str
    env: str


class PointTable:
    """Append-only points of one machine; series and commits are numbered as first seen."""

    def __init__(self) -> None:
        self.keys: list[SeriesKey] = []
        self._key_ids: dict[SeriesKey, int] = {}
        self.commits: list[str] = []
        self.dates: dict[str, int | None] = {}
        self._commit_ids: dict[str, int] = {}
        self._series = array("i")
        self._commit = array("i")
        self._value = array("d")
        self._start = array("q")
        self._count = array("i")
        self._samples = array("d")

    def __len__(self) -> int:
        return len(self._series)

    def series_id(self, key: SeriesKey) -> int:
        known = self._key_ids.get(key)
        if known is None:
            known = self._key_ids[key] = len(self.keys)
            self.keys.append(key)
        return known

    def commit_id(self, commit: str, date: int | None) -> int:
        known = self._commit_ids.get(commit)
        if known is None:
            known = self._commit_ids[commit] = len(self.commits)
            self.commits.append(commit)
            self.dates[commit] = date
        return known

    def mark(self) -> tuple[int, int, int]:
        """Where the table ends now, to :meth:`rollback` to if a file turns out bad."""
        return len(self._series), len(self._samples), len(self.commits)

    def rollback(self, mark: tuple[int, int, int]) -> None:
        points, samples, commits = mark
        for column in (self._series, self._commit, self._value, self._start, self._count):
            del column[points:]
        del self._samples[samples:]
        for commit in self.commits[commits:]:
            del self._commit_ids[commit], self.dates[commit]
        del self.commits[commits:]

    def extend(self, other: PointTable) -> None:
        """Append another table's points after this one's (tables read in parallel)."""
        series_map = np.array([self.series_id(k) for k in other.keys], dtype=np.int32)
        commit_map = np.array(
            [self.commit_id(c, other.dates[c]) for c in other.commits], dtype=np.int32
        )
        if len(other):
            series = np.frombuffer(other._series, dtype=np.int32)
            commit = np.frombuffer(other._commit, dtype=np.int32)
            start = np.frombuffer(other._start, dtype=np.int64) + len(self._samples)
            self._series.frombytes(series_map[series].tobytes())
            self._commit.frombytes(commit_map[commit].tobytes())
            self._start.frombytes(start.tobytes())
        self._value.extend(other._value)
        self._count.extend(other._count)
        self._samples.extend(other._samples)

    def add(
        self,
        series_ids: Sequence[int],
        commit: int,
        values: Sequence[object],
        samples: Sequence[object] | None,
    ) -> None:
        """One benchmark at one commit: a value (and maybe samples) per combination.

        ``values[i]`` belongs to ``series_ids[i]``; a None value (a failed or skipped
        combination) adds nothing. Numbers are checked later, all at once.
        """
        for offset, value in enumerate(values):
            if value is None:
                continue
            self._series.append(series_ids[offset])
            self._commit.append(commit)
            self._value.append(value if type(value) is float else _number(value))
            raw = samples[offset] if samples is not None else None
            self._start.append(len(self._samples))
            if raw:
                self._extend(self._samples, raw)
                self._count.append(len(raw))  # type: ignore[arg-type]
            else:
                self._count.append(0)

    @staticmethod
    def _extend(column: array, numbers: object) -> None:
        """Append numbers fast; a stray non-number makes the whole run go one by one."""
        before = len(column)
        try:
            column.extend(numbers)  # type: ignore[arg-type]
        except TypeError:
            del column[before:]
            column.extend(_number(n) for n in numbers)  # type: ignore[attr-defined]

    def series(
        self, order: Sequence[str], metadata: Mapping[str, Mapping[str, object]]
    ) -> list[Series]:
        """Series (sorted by benchmark, parameters, environment) over the commits in
        ``order``, oldest first; points at other commits are left out.

        A point's measurements are its finite positive samples, or its value alone when
        no sample is; a point whose value is not finite and positive is dropped, as asv
        drops failed runs. Two points of one series at one commit: the later one wins.
        """
        if not len(self) or not order:
            return []
        value = np.array(self._value, dtype=float)
        commit = np.array(self._commit, dtype=np.int64)
        series = np.array(self._series, dtype=np.int64)
        position_of = np.full(len(self.commits), -1, dtype=np.int64)
        ids = self._commit_ids
        for position, known in enumerate(order):
            if known in ids:
                position_of[ids[known]] = position
        position = position_of[commit]
        keep = np.flatnonzero(np.isfinite(value) & (value > 0) & (position >= 0))
        if keep.size == 0:
            return []
        chosen = keep[np.lexsort((keep, position[keep], series[keep]))]
        same_as_next = (series[chosen][1:] == series[chosen][:-1]) & (
            position[chosen][1:] == position[chosen][:-1]
        )
        chosen = chosen[np.append(~same_as_next, True)]

        buffer, first, length = self._measurement_spans(value)
        environments = {self.keys[i].env for i in np.unique(series[chosen]).tolist()}
        groups = np.split(chosen, np.flatnonzero(np.diff(series[chosen])) + 1)
        built: list[tuple[SeriesKey, Series]] = []
        for points in groups:
            key = self.keys[int(series[points[0]])]
            info = metadata.get(key.benchmark, {})
            unit = str(info.get("unit") or "")
            suffix = f" [{key.env}]" if len(environments) > 1 else ""
            spans = zip(first[points].tolist(), length[points].tolist(), strict=True)
            built.append(
                (
                    key,
                    Series(
                        name=key.benchmark + key.label + suffix,
                        commits=[order[p] for p in position[points].tolist()],
                        measurements=[buffer[s : s + n] for s, n in spans],
                        direction=infer_direction(key.benchmark, unit, info.get("direction")),
                        unit=unit,
                        benchmark=key.benchmark,
                        environment=key.env,
                    ),
                )
            )
        built.sort(key=lambda item: (item[0].benchmark, item[0].label, item[0].env))
        return [series for _, series in built]

    def _measurement_spans(self, value: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One buffer holding every point's measurements, and each point's span in it.

        Samples that are not finite and positive are dropped in one pass; a point left
        with none is measured by its value, which sits after the samples in the buffer.
        """
        samples = np.array(self._samples, dtype=float)
        good = np.isfinite(samples) & (samples > 0)
        kept_before = np.concatenate(([0], np.cumsum(good)))
        start = np.array(self._start, dtype=np.int64)
        count = np.array(self._count, dtype=np.int64)
        kept = kept_before[start + count] - kept_before[start]
        kept_samples = samples[good]
        buffer = np.concatenate((kept_samples, value))
        buffer.flags.writeable = False  # series share it: an in-place change must fail
        own_value = kept_samples.size + np.arange(value.size)
        first = np.where(kept > 0, kept_before[start], own_value)
        length = np.where(kept > 0, kept, 1)
        return buffer, first, length
