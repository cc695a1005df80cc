"""The package's layers, read from its own imports: no circle, no arrow pointing up.

The order below is the architecture (docs/architecture.md, "Layers"): a module may
import from its own layer and the layers under it, never from one above, so a layer can
be read, tested and replaced knowing only what lies beneath it. Imports inside
functions count too: a late import still ties the layers together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "loadkit"

# Bottom first. A module belongs to the longest prefix that names it.
LAYERS: list[tuple[str, ...]] = [
    ("loadkit.common",),
    ("loadkit.runtime",),
    ("loadkit.redis_io",),
    ("loadkit.runs",),
    ("loadkit.supervise",),
    ("loadkit.workloads",),
    ("loadkit.history.stats",),
    ("loadkit.history.sources",),
    ("loadkit.history.present",),
    ("loadkit.history.calibration",),
    ("loadkit.history",),
    ("loadkit.asvsuite",),
    ("loadkit.cli",),
    ("loadkit.suite", "loadkit.__main__"),
    ("loadkit",),
]
TOP_LEVEL_MODULES_AT_MOST = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The loadkit modules ``name`` imports, wherever in the file the import stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for candidate in candidates:
            # the deepest known module the name lies in
            parts = candidate.split(".")
            for end in range(len(parts), 0, -1):
                prefix = ".".join(parts[:end])
                if prefix in known:
                    found.add(prefix)
                    break
    found.discard(name)
    found.discard("loadkit")  # the package's own __init__ holds only its version
    return found


def layer_of(name: str) -> int:
    best, best_len = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best >= 0, f"{name} is in no layer"
    return best


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert upward == []


def test_no_import_circle() -> None:
    edges = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges.get(name, ())):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_few_loose_modules_at_the_top() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= TOP_LEVEL_MODULES_AT_MOST, loose


@pytest.mark.parametrize("name", ["loadkit.common.errors", "loadkit.cli.main"])
def test_the_check_sees_the_layers(name: str) -> None:
    """The check reads real imports: a known arrow is found (it would pass vacuously
    otherwise)."""
    edges = graph()
    assert name in edges
    if name == "loadkit.cli.main":
        assert any(layer_of(target) < layer_of(name) for target in edges[name])
