"""Every registered workload keeps the contract the runner relies on."""

from __future__ import annotations

import inspect

import pytest

from loadkit.runs import workload


@pytest.mark.parametrize("name", list(workload.WORKLOADS))
def test_each_registered_workload_satisfies_the_contract(name: str) -> None:
    module = workload.load(name)
    assert inspect.iscoroutinefunction(module.run)
    assert all(target.metric for target in module.targets("quick"))
    assert isinstance(module.bottlenecks({}), list)


def test_a_module_without_the_contract_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(workload.WORKLOADS, "json", ("json", "not a workload"))
    with pytest.raises(TypeError, match="lacks targets, run, bottlenecks"):
        workload.load("json")
