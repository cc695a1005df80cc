"""loadkit: continuous benchmarking for an agent-orchestration stack.

The package holds the systems under test (fleet, swarm, dashboard, wasm), the load
generators that drive them, and the scoring that turns asv history into confidence.
"""

__version__ = "0.1.0"
