"""Seeded random-tree documents for the parsers, and the helpers all documents share.

Two sources of lines feed the parsers: real expressions from the standard library
(:mod:`loadkit.workloads.wasm.realcode`: the headline figures) and the random trees made here,
which cover every construct of the language in every combination (the tests, and the
stress case ``speedup_ratio_random_trees``: each node's shape, operator and name is
drawn independently, so the next token is much harder to guess than in real code).

A random-tree document is built from expression trees (nested tuples) rendered with the
fewest parentheses the language allows, so every line is valid for both our parsers and
for CPython's ``ast.parse``. The hypothesis tests build trees of the same shape with their
own strategies and render them here, so "what the corpus can contain" is one function.

Tree shapes: ``("name", s)``, ``("number", s)``, ``("string", s)`` (s is the literal's
source text), ``("attr", obj, name)``, ``("call", fn, [args])``, ``("index", obj, key)``,
``("list", [items])``, ``("dict", [(key_leaf, value)])``, ``("unary", "-"|"+", x)``,
``("not", x)``, ``("binary", op, left, right)`` with op any binary, comparison or
boolean operator.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from loadkit.workloads.wasm.language import words

Tree = tuple[Any, ...]

PREC = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}
PREC |= {"unary": 7, "**": 8, "postfix": 9, "atom": 10}
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
ARITHMETIC = ("+", "-", "*", "/", "%", "**")

NAMES = words(
    "user order items total price quantity discount config request response metrics "
    "status region limits cart account session retry_count threshold score rate "
    "inventory warehouse shipment customer invoice payload headers timeout ratio "
    "created_at updated_at tags owner team budget forecast latency_ms error_rate"
)
METHODS = words(
    "get count filter lower upper startswith endswith strip round split join keys "
    "values items append find replace format total_seconds isoformat"
)
FUNCTIONS = words("len max min sum abs round sorted any all str int float")
WORDS = words(
    "open closed pending shipped eu-west us-east admin guest premium error ok "
    "timeout retry name id email Zürich café 東京 naïve résumé"
)
ESCAPES = ("\\n", "\\t", '\\"', "\\'", "\\\\", "\\u00e9", "\\x41", "\\r")


def precedence(tree: Tree) -> int:
    kind = tree[0]
    if kind == "binary":
        return PREC["cmp"] if tree[1] in COMPARISONS else PREC[tree[1]]
    if kind in ("not", "unary"):
        return PREC[kind]
    if kind in ("attr", "call", "index"):
        return PREC["postfix"]
    return PREC["atom"]


def _wrap(tree: Tree, ok: bool) -> str:
    text = render(tree)
    return text if ok else f"({text})"


def render(tree: Tree) -> str:
    """Source text for a tree, parenthesised only where the grammar needs it."""
    kind = tree[0]
    if kind in ("name", "number", "string"):
        return tree[1]
    if kind in ("attr", "call", "index"):
        obj = tree[1]
        # `1.x` would scan as a malformed number: numbers need parentheses here
        head = _wrap(obj, precedence(obj) >= PREC["postfix"] and obj[0] != "number")
        if kind == "attr":
            return f"{head}.{tree[2]}"
        if kind == "call":
            return f"{head}({', '.join(render(a) for a in tree[2])})"
        return f"{head}[{render(tree[2])}]"
    if kind == "list":
        return f"[{', '.join(render(i) for i in tree[1])}]"
    if kind == "dict":
        return "{" + ", ".join(f"{k[1]}: {render(v)}" for k, v in tree[1]) + "}"
    if kind == "unary":
        operand = tree[2]
        p = precedence(operand)
        return tree[1] + _wrap(operand, p == PREC["unary"] or p >= PREC["postfix"])
    if kind == "not":
        return "not " + _wrap(tree[1], precedence(tree[1]) >= PREC["not"])
    op, left, right = tree[1], tree[2], tree[3]
    if op == "**":  # right associative; a unary on the left needs parentheses
        lhs = _wrap(left, precedence(left) >= PREC["postfix"])
        rhs = _wrap(right, precedence(right) >= PREC["unary"])
    elif op in COMPARISONS:  # comparisons don't chain
        lhs = _wrap(left, precedence(left) > PREC["cmp"])
        rhs = _wrap(right, precedence(right) > PREC["cmp"])
    else:
        p = PREC[op]
        lhs = _wrap(left, precedence(left) >= p)
        rhs = _wrap(right, precedence(right) > p)
    return f"{lhs} {op} {rhs}"


class _Generator:
    """Random trees that look like rules, filters and formulas in a config language."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def number(self) -> Tree:
        r = self.rng
        choice = r.random()
        if choice < 0.5:
            return ("number", str(r.choice((0, 1, 2, 3, 5, 10, 60, 100, 1000, r.randrange(10**6)))))
        if choice < 0.9:
            return ("number", f"{r.uniform(0, 1000):.{r.randint(1, 4)}f}")
        return (
            "number",
            f"{r.randint(1, 9)}.{r.randint(0, 99)}e{r.choice('-+')}{r.randint(1, 12)}",
        )

    def string(self) -> Tree:
        r = self.rng
        parts = [r.choice(WORDS) for _ in range(r.randint(1, 3))]
        if r.random() < 0.3:
            parts.insert(r.randrange(len(parts) + 1), r.choice(ESCAPES))
        body = " ".join(parts)
        if r.random() < 0.7:
            return ("string", '"' + body.replace("'", "\\'") + '"')
        return ("string", "'" + body.replace('"', '\\"') + "'")

    def leaf(self) -> Tree:
        roll = self.rng.random()
        if roll < 0.6:
            return ("name", self.rng.choice(NAMES))
        return self.number() if roll < 0.8 else self.string()

    def postfix(self, depth: int) -> Tree:
        r = self.rng
        tree: Tree = ("name", r.choice(NAMES + FUNCTIONS))
        for _ in range(r.choice((0, 1, 1, 2, 3))):
            roll = r.random()
            if roll < 0.45:
                tree = ("attr", tree, r.choice(NAMES + METHODS))
            elif roll < 0.8:
                args = [self.expr(depth - 1) for _ in range(r.choice((0, 1, 1, 2, 3)))]
                tree = ("call", tree, args)
            else:
                key = self.string() if r.random() < 0.5 else self.number()
                tree = ("index", tree, key if depth <= 1 else self.expr(depth - 1))
        return tree

    def expr(self, depth: int) -> Tree:
        r = self.rng
        if depth <= 0:
            return self.leaf()
        roll = r.random()
        if roll < 0.2:
            return self.leaf()
        if roll < 0.45:
            return self.postfix(depth)
        if roll < 0.65:
            op = r.choice(ARITHMETIC)
            return ("binary", op, self.expr(depth - 1), self.expr(depth - 1))
        if roll < 0.78:
            op = r.choice(COMPARISONS)
            return ("binary", op, self.expr(depth - 1), self.expr(depth - 1))
        if roll < 0.86:
            return ("binary", r.choice(("and", "or")), self.expr(depth - 1), self.expr(depth - 1))
        if roll < 0.9:
            return (
                ("not", self.expr(depth - 1))
                if r.random() < 0.5
                else ("unary", "-", self.expr(depth - 1))
            )
        if roll < 0.95:
            return ("list", [self.expr(depth - 2) for _ in range(r.randint(0, 4))])
        keys = [
            self.string() if r.random() < 0.8 else self.number() for _ in range(r.randint(0, 3))
        ]
        return ("dict", [(k, self.expr(depth - 2)) for k in keys])

    def line(self) -> str:
        return render(self.expr(self.rng.randint(2, 5)))


def lines(seed: int = 0) -> Iterator[str]:
    """An endless, reproducible stream of random-tree lines."""
    gen = _Generator(random.Random(seed))
    while True:
        yield gen.line()


def fill(stream: Iterator[str], size_bytes: int) -> str:
    """Whole lines from ``stream`` until the UTF-8 size reaches ``size_bytes`` (it may
    pass it by a line)."""
    out: list[str] = []
    total = 0
    for line in stream:
        if total >= size_bytes:
            break
        out.append(line)
        total += len(line.encode()) + 1
    return "\n".join(out) + "\n"


def document(size_bytes: int, seed: int = 0) -> str:
    """Random-tree lines until the UTF-8 size reaches ``size_bytes``."""
    return fill(lines(seed), size_bytes)


def repeated_line_document(size_bytes: int, stream: Iterator[str], sample: int = 101) -> str:
    """One line of ``stream``, of the median length among its first ``sample`` lines,
    repeated until the document reaches ``size_bytes``: the same kind of code as the
    stream's documents, but a CPU predicts every branch of its parse after the first
    lines, which shows how much of a parse's time goes to branch mispredictions."""
    line = sorted((next(stream) for _ in range(sample)), key=len)[sample // 2]
    count = max(1, -(-size_bytes // (len(line.encode()) + 1)))
    return (line + "\n") * count


def split_documents(stream: Iterator[str], count: int, lines_each: int = 3) -> list[str]:
    """``count`` short documents of ``lines_each`` lines from ``stream``."""
    return ["\n".join(next(stream) for _ in range(lines_each)) + "\n" for _ in range(count)]


def small_documents(count: int, seed: int = 0, lines_each: int = 3) -> list[str]:
    """``count`` short random-tree documents (a few lines each)."""
    return split_documents(lines(seed), count, lines_each)


def mutate(text: str, rng: random.Random) -> str:
    """One random edit (delete, duplicate or replace a character): most results are
    malformed, which is what the error-equivalence checks need."""
    if not text:
        return text
    i = rng.randrange(len(text))
    roll = rng.random()
    if roll < 0.4:
        return text[:i] + text[i + 1 :]
    if roll < 0.7:
        return text[:i] + text[i] + text[i:]
    return text[:i] + rng.choice("()[]{},.:+-*<=!'\"\\ \n\tx0") + text[i + 1 :]
