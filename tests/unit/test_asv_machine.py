"""Which asv machine names are registered before a run, and when asv is asked to."""

from __future__ import annotations

import json

import pytest

from loadkit.asvsuite.machine import default_machine, ensure_machine, known_machines


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def _write(home, machines: dict) -> None:
    (home / ".asv-machine.json").write_text(json.dumps({**machines, "version": 1}))


def _ensure(machine: str | None) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []
    ensure_machine(machine, lambda *args: calls.append(args) or 0)
    return calls


def test_this_host_is_added_once_a_second_machine_makes_asv_refuse_it(home) -> None:
    _write(home, {"compare": {}, "ci": {}})
    assert _ensure(None) == [("machine", "--yes", "--machine", default_machine())]


def test_a_single_machine_stands_for_this_host_as_asv_itself_decides(home) -> None:
    _write(home, {"laptop": {}})
    assert _ensure(None) == []
    assert _ensure("ci") == [("machine", "--yes", "--machine", "ci")]


def test_a_known_name_is_left_alone_and_a_missing_or_broken_file_means_none(home) -> None:
    _write(home, {"ci": {}, "other": {}})
    assert _ensure("ci") == []
    assert known_machines() == {"ci": {}, "other": {}}
    (home / ".asv-machine.json").write_text("{not json")
    assert known_machines() == {}
    assert _ensure(None) == [("machine", "--yes", "--machine", default_machine())]
