"""The real-code corpus: which expressions are taken from a module, and the documents.

Pure functions get small sources written here; ``stdlib_expressions`` reads the real
standard library of the Python running the tests (and an almost empty one in tmp_path).
"""

from __future__ import annotations

import itertools

import pytest

from loadkit.workloads.wasm import realcode

MODULE = """
import os
x = len(items) + 1
total += price * quantity
limit: int = config.get("limit")
if user.active and not user.banned:
    print("café", x)
while retry_count < 3:
    pass
for item in sorted(items):
    assert item.ok, "bad item"
with open(path) as f:
    raise ValueError("no")
def f():
    return a.b(c)[0]
y = [
    1,
]
z = f(key=1)
"""


def test_expressions_in_takes_each_statement_expression_as_written():
    found = realcode.expressions_in(MODULE)
    assert set(found) == {
        "len(items) + 1", "price * quantity", 'config.get("limit")',
        "user.active and not user.banned", 'print("café", x)', "retry_count < 3",
        "sorted(items)", "item.ok", "open(path)", 'ValueError("no")', "a.b(c)[0]",
        "f(key=1)",
    }  # fmt: skip
    # the multi-line list is left out; the import and `pass` hold no expression


def test_expressions_in_invalid_python_is_nothing():
    assert realcode.expressions_in("def (:\n") == []
    assert realcode.expressions_in("x = a +\n") == []


def test_accepted_keeps_distinct_lines_the_language_takes():
    lines = ["a + b", "f(key=1)", "a[1:2]", "x if y else z", "a + b", "not ok", "a is b"]
    assert realcode.accepted(lines) == ["a + b", "not ok"]


def test_library_files_skip_tests_and_installed_packages(tmp_path):
    for rel in ("os.py", "json/decoder.py", "test/test_os.py", "json/tests/t.py",
                "site-packages/pkg/m.py", "idlelib/idle_test/x.py", "idlelib/run.py"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    found = [p.relative_to(tmp_path).as_posix() for p in realcode.library_files(tmp_path)]
    assert found == ["idlelib/run.py", "json/decoder.py", "os.py"]


def test_a_missing_standard_library_is_a_clear_error(tmp_path):
    (tmp_path / "tiny.py").write_text("x = a + b\n")
    with pytest.raises(realcode.CorpusUnavailable, match="found 1 usable expressions in "):
        realcode.stdlib_expressions(tmp_path)


def test_the_standard_library_gives_thousands_of_distinct_lines():
    pool = realcode.stdlib_expressions()
    assert len(pool) >= realcode.MIN_LINES
    assert len(set(pool)) == len(pool)
    assert all("\n" not in line and line == line.strip() for line in pool)


def test_streams_go_through_the_whole_pool_before_repeating():
    pool = ("a", "b + c", "d(e)")
    stream = realcode.lines(4, pool)
    first, second = list(itertools.islice(stream, 3)), list(itertools.islice(stream, 3))
    assert sorted(first) == sorted(second) == sorted(pool)
    assert list(itertools.islice(realcode.lines(4, pool), 6)) == first + second


def test_documents_are_seeded_sized_and_made_of_real_lines():
    pool = set(realcode.stdlib_expressions())
    a = realcode.document(100_000, seed=7)
    assert a == realcode.document(100_000, seed=7) != realcode.document(100_000, seed=8)
    assert 100_000 <= len(a.encode()) < 101_000
    lines = a.splitlines()
    assert set(lines) <= pool and len(set(lines)) == len(lines)
    small = realcode.small_documents(5, seed=1, lines_each=3)
    assert len(small) == 5 and all(len(d.splitlines()) == 3 for d in small)
