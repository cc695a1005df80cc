"""Real code for the corpus: the expressions of the running Python's standard library.

The random trees of :mod:`loadkit.workloads.wasm.corpus` pick every node's shape, operator and
name independently, which makes a token's kind far harder to guess than in code people
write (measured: the WASM parser runs ~225 MB/s on them and ~320 MB/s on the standard
library's expressions, while pure Python runs ~6 MB/s on both). Real code repeats
itself: ``self.x``, ``len(items)``, ``isinstance(a, b)``, names reused across a module.
So the documents the headline figures come from are made of real expressions, and the
random trees stay as the stress case (``speedup_ratio_random_trees``).

Where they come from: every ``.py`` file of the standard library (``sysconfig``'s
``stdlib`` path, without tests and third-party packages), the expression of each
statement that holds one (``x = <expr>``, ``return <expr>``, ``if <expr>:``, a call on a
line of its own, ...) when it fits on one line and the language accepts it (the
pure-Python parser is the judge: most lines with keyword arguments, comprehensions,
slices or f-strings are left out). Nothing is copied into this repository: the lines are
read from the Python that runs the benchmark, so they change with its version, as the
pure-Python baseline's speed does; asv keeps one history per Python version.

A seed shuffles the distinct lines; a document longer than all of them goes through them
again in a new order, so no line repeats within ~1 MB.
"""

from __future__ import annotations

import ast
import functools
import random
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from loadkit.workloads.wasm import pyparser
from loadkit.workloads.wasm.corpus import fill, split_documents
from loadkit.workloads.wasm.flat import ParseError

# Folders of the standard library that are not the library itself.
SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages"})
# Fewer distinct lines than this and the "standard library" found is not one.
MIN_LINES = 5_000


class CorpusUnavailable(RuntimeError):
    """The standard library's sources are not where Python says they are."""


def statement_expressions(tree: ast.AST) -> Iterator[ast.expr]:
    """The expression each statement holds: its value, test, iterable or context."""
    for node in ast.walk(tree):
        match node:
            case ast.Expr(value=e) | ast.Assign(value=e) | ast.AugAssign(value=e):
                yield e
            case ast.AnnAssign(value=e) | ast.Return(value=e) if e is not None:
                yield e
            case ast.Raise(exc=e) if e is not None:
                yield e
            case ast.If(test=e) | ast.While(test=e) | ast.Assert(test=e):
                yield e
            case ast.For(iter=e):
                yield e
            case ast.With(items=items):
                yield from (item.context_expr for item in items)


def expressions_in(source: str) -> list[str]:
    """Single-line statement expressions of one module's source, as written; none if the
    source is not valid Python."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    found = []
    for e in statement_expressions(tree):
        if e.lineno == e.end_lineno and e.end_col_offset is not None:
            line = lines[e.lineno - 1].encode()  # offsets count UTF-8 bytes
            found.append(line[e.col_offset : e.end_col_offset].decode())
    return found


def accepted(expressions: Iterable[str]) -> list[str]:
    """The distinct expressions the language accepts, in first-seen order."""
    out = []
    for text in dict.fromkeys(expressions):
        try:
            pyparser.parse(text)
        except ParseError:
            continue
        out.append(text)
    return out


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def library_files(root: Path) -> list[Path]:
    """The library's ``.py`` files under ``root``, in a fixed order."""
    return sorted(
        path
        for path in root.rglob("*.py")
        if not SKIPPED_DIRS.intersection(path.relative_to(root).parts[:-1])
    )


@functools.cache
def stdlib_expressions(root: Path | None = None) -> tuple[str, ...]:
    """The distinct accepted expressions of the standard library at ``root`` (this
    Python's by default). Reading and parsing it takes ~3 s; the result is kept for the
    process."""
    root = root or stdlib_root()
    texts = []
    for path in library_files(root):
        try:
            texts.extend(expressions_in(path.read_text("utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    lines = accepted(texts)
    if len(lines) < MIN_LINES:
        raise CorpusUnavailable(
            f"found {len(lines)} usable expressions in {root}, expected at least {MIN_LINES}: "
            "the real-code corpus needs the standard library's .py sources"
        )
    return tuple(lines)


def lines(seed: int = 0, pool: tuple[str, ...] | None = None) -> Iterator[str]:
    """An endless stream of real expressions: all of ``pool`` (the standard library's by
    default) in a seeded order, then all again in another."""
    pool = pool if pool is not None else stdlib_expressions()
    rng = random.Random(seed)
    order = list(pool)
    while True:
        rng.shuffle(order)
        yield from order


def document(size_bytes: int, seed: int = 0) -> str:
    """Real expression lines until the UTF-8 size reaches ``size_bytes``."""
    return fill(lines(seed), size_bytes)


def small_documents(count: int, seed: int = 0, lines_each: int = 3) -> list[str]:
    """``count`` documents of a few real lines each, for operations per second."""
    return split_documents(lines(seed), count, lines_each)
