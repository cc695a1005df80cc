"""An A/A study's spreads as the comparison's known noise: only at the same version."""

from __future__ import annotations

import json

import pytest

from loadkit.asvsuite.known_noise import known_noise, read_study, study_path
from loadkit.common.errors import UsageError

STUDY = {
    "commit": "c0ffee",
    "runs": [{}, {}, {}, {}, {}],
    "figures": [
        {"name": "m.Speed.track_rate('quick')", "spread": 0.012},
        {"name": "m.Speed.track_old('quick')", "spread": 0.03},
        {"name": "m.Count.track_zero", "spread": 0.0},
        {"name": "m.Parse.time_doc('1mb')", "spread": 0.05},
        {"name": "m.Parse.time_doc('50kb')", "spread": None},
    ],
    "versions": {
        "m.Speed.track_rate": "v1",
        "m.Speed.track_old": "v1",
        "m.Count.track_zero": "v1",
        "m.Parse.time_doc": "v7",
    },
}


def test_only_figures_whose_code_is_unchanged_are_known():
    now = {"m.Speed.track_rate": "v1", "m.Speed.track_old": "v2", "m.Parse.time_doc": "v7"}
    known = known_noise(STUDY, now)
    assert known == {
        "m.Speed.track_rate('quick')": (0.012, 4.0),
        "m.Parse.time_doc('1mb')": (0.05, 4.0),
    }


def test_a_study_without_versions_or_runs_knows_nothing():
    assert known_noise({**STUDY, "versions": {}}, {"m.Speed.track_rate": "v1"}) == {}
    assert known_noise({**STUDY, "runs": [{}]}, {"m.Speed.track_rate": "v1"}) == {}
    assert known_noise({"figures": "x"}, {}) == {}


def test_reading_a_study(tmp_path):
    path = study_path(tmp_path, "quick")
    assert path == tmp_path / ".asv" / "aa" / "quick.json"
    assert read_study(path, required=False) is None
    with pytest.raises(UsageError, match="no A/A study"):
        read_study(path, required=True)
    path.parent.mkdir(parents=True)
    path.write_text("{broken", encoding="utf-8")
    assert read_study(path, required=False) is None
    with pytest.raises(UsageError, match="cannot read A/A study"):
        read_study(path, required=True)
    path.write_text(json.dumps(STUDY), encoding="utf-8")
    assert read_study(path, required=True) == STUDY
