"""The interpreter's own peak memory, the baseline for every ``peakmem_`` figure."""

from __future__ import annotations


class MemoryReference:
    """The interpreter's own peak memory with everything imported: subtract it from the
    ``peakmem_`` figures to see what a workload itself costs."""

    def setup(self) -> None:
        import loadkit.workloads.fleet.scenarios  # noqa: F401  (import cost belongs to the reference)

    def peakmem_reference(self) -> None:
        pass
