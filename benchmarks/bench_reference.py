"""The interpreter's own peak memory, the baseline for every ``peakmem_`` figure."""

from __future__ import annotations


class MemoryReference:
    """The interpreter's own peak memory with everything imported: subtract it from the
    ``peakmem_`` figures to see what a workload itself costs."""

    # The series' identity from before the package moved into layers: the suite imports
    # the same modules as then (all of them, once, in asv's forkserver), only the name
    # of the module this setup imports changed, so the history goes on.
    version = "96329c3d6942b9e16643377debb8f6fbcd3f634698f8f11dd432e4b6531777bb"

    def setup(self) -> None:
        import benchmarks.common  # noqa: F401  (import cost belongs to the reference)

    def peakmem_reference(self) -> None:
        pass
