"""The WASM multiplier from pairs measured in turns: a slow spell of the host that
lasts one pair moves both of its sides, so the pair's ratio and the median stand."""

from __future__ import annotations

import pytest

from loadkit.workloads.wasm.scenarios import SpeedPoint, speed_metrics, speed_samples


def _point(wasm: list[float], python: list[float]) -> SpeedPoint:
    return SpeedPoint(
        size_bytes=1_000_000,
        wasm_times=tuple(wasm),
        python_times=tuple(python),
        ast_times=(1.0,) * len(wasm),
        nodes=10,
        equivalent=True,
    )


def test_a_slow_spell_on_two_pairs_leaves_the_paired_ratio_alone() -> None:
    # Pairs 2 and 3 ran 40 % slow on both sides; pair 4's Python parse alone was slow.
    wasm = [3.0, 4.2, 4.2, 3.0, 3.0]
    python = [180.0, 252.0, 252.0, 240.0, 180.0]
    point = _point(wasm, python)
    assert point.speedup == pytest.approx(60.0)
    # The ratio of the two sides' medians mixes slow and quick pairs and is off by 20 %.
    assert point.python_s / point.wasm_s == pytest.approx(80.0)


def test_the_headline_pairs_are_the_runs_samples_of_the_multiplier() -> None:
    small = _point([0.2, 0.2, 0.2], [10.0, 11.0, 12.0])
    small = SpeedPoint(**{**small.__dict__, "size_bytes": 50_000})
    big = _point([3.0, 3.0, 3.0], [180.0, 183.0, 186.0])
    assert speed_samples([small, big]) == {"speedup_ratio": [60.0, 61.0, 62.0]}
    assert speed_metrics([small, big])["speedup_ratio"] == 61.0


def test_one_pair_is_the_ratio_of_its_times() -> None:
    point = SpeedPoint(1000, (2.0,), (100.0,), (50.0,), 5, True)
    assert point.speedup == 50.0 and point.speedup_vs_ast == 25.0
