"""The two parsers against each other, and against CPython's own parser.

Equivalence: on hypothesis-generated documents (valid ones rendered from random trees,
malformed ones made by editing them, and raw text from the language's alphabet) and on a
fixed set of tricky cases, the WASM module and the pure-Python baseline give identical
ASTs or identical errors (offset and message). The anchor: every valid document is also
parsed by ``ast.parse``, and its tree, converted to our flat encoding, must match ours
node for node and span for span - so "identical" also means "right".
"""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadkit.workloads.wasm import corpus, pyparser, realcode
from loadkit.workloads.wasm.flat import FlatAst, ParseError
from loadkit.workloads.wasm.host import WasmParser
from loadkit.workloads.wasm.language import MAX_DEPTH, MAX_INPUT_BYTES, RESERVED, Kind
from loadkit.workloads.wasm.scenarios import outcome

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def wasm() -> Iterator[WasmParser]:
    with WasmParser() as parser:
        yield parser


def both(wasm: WasmParser, source: str | bytes) -> FlatAst | ParseError:
    """The common answer of the two parsers; fails the test when they differ."""
    data = source.encode() if isinstance(source, str) else source
    ours, theirs = outcome(wasm.parse, data), outcome(pyparser.parse, data)
    assert ours == theirs, f"WASM {ours!r} != Python {theirs!r} for {data!r}"
    return ours


# --- CPython anchor ------------------------------------------------------------------

BIN = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%", ast.Pow: "**"}
CMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def cpython_nodes(source: bytes) -> list[tuple[Kind, str, int, int, int]]:
    """CPython's tree in our encoding: (kind, op, children, start, end) in postorder."""
    starts = [0] + [i + 1 for i, b in enumerate(source) if b == 0x0A]
    out: list[tuple[Kind, str, int, int, int]] = []

    def span(n: ast.AST) -> tuple[int, int]:
        return starts[n.lineno - 1] + n.col_offset, starts[n.end_lineno - 1] + n.end_col_offset

    def visit(n: ast.AST) -> None:
        start, end = span(n)
        match n:
            case ast.Constant():
                first = source[start : start + 1]
                kind = (
                    Kind.STRING
                    if first in b"'\""
                    else Kind.NUMBER
                    if first.isdigit()
                    else Kind.NAME
                )
                out.append((kind, "", 0, start, end))
            case ast.Name():
                out.append((Kind.NAME, "", 0, start, end))
            case ast.Attribute(value=value, attr=attr):
                visit(value)
                out.append((Kind.NAME, "", 0, end - len(attr), end))
                out.append((Kind.ATTR, "", 2, start, end))
            case ast.Call(func=func, args=args):
                visit(func)
                for a in args:
                    visit(a)
                out.append((Kind.CALL, "", len(args) + 1, start, end))
            case ast.Subscript(value=value, slice=index):
                visit(value)
                visit(index)
                out.append((Kind.INDEX, "", 2, start, end))
            case ast.List(elts=items):
                for item in items:
                    visit(item)
                out.append((Kind.LIST, "", len(items), start, end))
            case ast.Dict(keys=keys, values=values):
                for k, v in zip(keys, values, strict=True):
                    visit(k)
                    visit(v)
                out.append((Kind.DICT, "", 2 * len(keys), start, end))
            case ast.UnaryOp(op=ast.Not(), operand=x):
                visit(x)
                out.append((Kind.NOT, "", 1, start, end))
            case ast.UnaryOp(op=op, operand=x):
                visit(x)
                out.append((Kind.UNARY, "-" if isinstance(op, ast.USub) else "+", 1, start, end))
            case ast.BinOp(left=left, op=op, right=right):
                visit(left)
                visit(right)
                out.append((Kind.BINARY, BIN[type(op)], 2, start, end))
            case ast.Compare(left=left, ops=[op], comparators=[right]):
                visit(left)
                visit(right)
                out.append((Kind.COMPARE, CMP[type(op)], 2, start, end))
            case ast.BoolOp(op=op, values=values):
                # CPython flattens `a and b and c`; ours nests to the left. An inner node
                # ends where its last operand's closing parentheses end.
                word = "and" if isinstance(op, ast.And) else "or"
                visit(values[0])
                for k in range(1, len(values)):
                    visit(values[k])
                    inner_end = end
                    if k + 1 < len(values):
                        operand_end = span(values[k])[1]
                        gap = source[operand_end : span(values[k + 1])[0]]
                        inner_end = operand_end + len(gap[: gap.index(word.encode())].rstrip())
                    out.append((Kind.BOOL, word, 2, start, inner_end))
            case _:
                raise AssertionError(f"node outside the language: {ast.dump(n)}")

    for stmt in ast.parse(source).body:
        assert isinstance(stmt, ast.Expr)
        visit(stmt.value)
    return out


def flat_nodes(tree: FlatAst) -> list[tuple[Kind, str, int, int, int]]:
    return [(k, op, tree.child_count(i), s, e) for i, (k, op, s, e) in enumerate(tree.walk())]


# --- strategies ----------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in RESERVED and s not in ("and", "or", "not")
)
numbers = st.from_regex(r"(0|[1-9][0-9]{0,5})(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?", fullmatch=True)
plain_chars = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="'\"\\"
)  # no surrogates, control characters, quotes or backslash
escapes = st.sampled_from(["\\n", "\\t", "\\r", "\\\\", "\\'", '\\"', "\\x4A", "\\u00e9"])
strings = st.builds(
    lambda parts, q: q + "".join(parts) + q,
    st.lists(plain_chars | escapes, max_size=8),
    st.sampled_from(["'", '"']),
)
leaves = st.one_of(
    names.map(lambda s: ("name", s)),
    numbers.map(lambda s: ("number", s)),
    strings.map(lambda s: ("string", s)),
)
ALL_BINARY = ("+", "-", "*", "/", "%", "**", "<", "<=", ">", ">=", "==", "!=", "and", "or")


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    keys = st.one_of(numbers.map(lambda s: ("number", s)), strings.map(lambda s: ("string", s)))
    return st.one_of(
        st.tuples(st.just("attr"), children, names),
        st.tuples(st.just("call"), children, st.lists(children, max_size=3)),
        st.tuples(st.just("index"), children, children),
        st.tuples(st.just("list"), st.lists(children, max_size=3)),
        st.tuples(st.just("dict"), st.lists(st.tuples(keys, children), max_size=3)),
        st.tuples(st.just("unary"), st.sampled_from(["-", "+"]), children),
        st.tuples(st.just("not"), children),
        st.tuples(st.just("binary"), st.sampled_from(ALL_BINARY), children, children),
    )


trees = st.recursive(leaves, _extend, max_leaves=12)
documents = st.lists(trees.map(corpus.render), min_size=1, max_size=4).map(
    lambda lines: "\n".join(lines) + "\n"
)
ALPHABET = "ab1 .,:()[]{}+-*/%<>=!'\"\\\n\t0eé_x"


# --- equivalence ---------------------------------------------------------------------


@SETTINGS
@given(documents)
def test_generated_documents_parse_identically_and_match_cpython(wasm, doc):
    tree = both(wasm, doc)
    assert isinstance(tree, FlatAst), f"valid document rejected: {tree}"
    assert flat_nodes(tree) == cpython_nodes(doc.encode())


@SETTINGS
@given(documents, st.integers(min_value=0), st.sampled_from(["delete", "insert", "replace"]),
       st.sampled_from(list(ALPHABET)))  # fmt: skip
def test_edited_documents_give_identical_errors(wasm, doc, where, edit, char):
    i = where % len(doc)
    doc = {
        "delete": doc[:i] + doc[i + 1 :],
        "insert": doc[:i] + char + doc[i:],
        "replace": doc[:i] + char + doc[i + 1 :],
    }[edit]
    both(wasm, doc)


@SETTINGS
@given(st.text(alphabet=ALPHABET, max_size=40))
def test_arbitrary_text_gives_identical_answers(wasm, text):
    both(wasm, text)


def test_corpus_documents_are_identical_and_match_cpython(wasm):
    doc = corpus.document(30_000, seed=3).encode()
    tree = both(wasm, doc)
    assert len(tree) > 3000
    assert flat_nodes(tree) == cpython_nodes(doc)
    rng = random.Random(3)
    small = corpus.small_documents(100, seed=3)
    for d in small + [corpus.mutate(rng.choice(small), rng) for _ in range(300)]:
        both(wasm, d)


@pytest.mark.slow
def test_every_real_expression_is_identical_and_matches_cpython(wasm):
    """The whole real-code pool as one document: the two parsers agree node for node, and
    with CPython's own parser, on ~44,000 lines people wrote."""
    doc = ("\n".join(realcode.stdlib_expressions()) + "\n").encode()
    tree = both(wasm, doc)
    assert isinstance(tree, FlatAst) and len(tree) > 100_000
    assert flat_nodes(tree) == cpython_nodes(doc)


def test_corpus_is_seeded_and_sized():
    a = corpus.document(200_000, seed=7)
    assert a == corpus.document(200_000, seed=7)
    assert a != corpus.document(200_000, seed=8)
    assert 200_000 <= len(a.encode()) < 201_000


# --- tricky cases --------------------------------------------------------------------

VALID = {
    "a + b * c - d": "(binary - (binary + a (binary * b c)) d)",
    "a ** b ** c": "(binary ** a (binary ** b c))",
    "a ** -b": "(binary ** a (unary - b))",
    "(-a) ** 2": "(binary ** (unary - a) 2)",
    "- -a": "(unary - (unary - a))",
    "-a.b(c)[d]": "(unary - (index (call (attr a b) c) d))",
    "not a == b": "(not (compare == a b))",
    "not not a": "(not (not a))",
    "a and not b or c": "(bool or (bool and a (not b)) c)",
    "a or b and c": "(bool or a (bool and b c))",
    "(a < b) < c": "(compare < (compare < a b) c)",
    "a < b and b < c": "(bool and (compare < a b) (compare < b c))",
    "f()": "(call f)",
    "f(a, b,)": "(call f a b)",
    "[]": "(list)",
    "[1, [2], [],]": "(list 1 (list 2) (list))",
    "{}": "(dict)",
    '{"a": 1, 2: [x],}': '(dict "a" 1 2 (list x))',
    "(1).real": "(attr 1 real)",
    "1 .real": "(attr 1 real)",
    "0.5e-3 + 0 + 10E+2": "(binary + (binary + 0.5e-3 0) 10E+2)",
    "'it\\'s' + \"q\\\"\\\\\"": "(binary + 'it\\'s' \"q\\\"\\\\\")",
    "'\\x41\\u00e9\\n\\t\\r' + 'tab\there'": "(binary + '\\x41\\u00e9\\n\\t\\r' 'tab\there')",
    "'café 東京'.upper()": "(call (attr 'café 東京' upper))",
    "True == None != false": None,  # chained: an error, see below
    "match.case_": "(attr match case_)",
    "a % b / c * d": "(binary * (binary / (binary % a b) c) d)",
}


@pytest.mark.parametrize("source", [s for s, v in VALID.items() if v is not None])
def test_tricky_valid_cases(wasm, source):
    tree = both(wasm, source)
    assert isinstance(tree, FlatAst), tree
    assert [tree.sexpr(r) for r in tree.roots()] == [VALID[source]]
    assert flat_nodes(tree) == cpython_nodes(source.encode())


def test_lines_blank_lines_and_spans(wasm):
    doc = "a\n\n  \nb.c(1,)\n\t\n(x)+y"
    tree = both(wasm, doc)
    assert [tree.sexpr(r) for r in tree.roots()] == ["a", "(call (attr b c) 1)", "(binary + x y)"]
    last = tree.roots()[-1]
    assert tree.span(last) == (doc.index("(x)"), len(doc))  # the operand's parentheses count
    assert flat_nodes(tree) == cpython_nodes(doc.encode())


MALFORMED = {
    "-a ** 2": (3, "'**' after a unary operator needs parentheses"),
    "a ** -b ** c": (8, "'**' after a unary operator needs parentheses"),
    "a < b < c": (6, "comparisons cannot be chained; add parentheses"),
    "a == b < c": (7, "comparisons cannot be chained; add parentheses"),
    "True == None != false": (13, "comparisons cannot be chained; add parentheses"),
    "  a": (2, "unexpected indentation"),
    "a\n b": (3, "unexpected indentation"),
    "01": (0, "leading zeros are not allowed"),
    "1.a": (2, "expected digits after '.'"),
    "1.": (2, "expected digits after '.'"),
    "1e+": (3, "expected digits in exponent"),
    "1_000": (1, "invalid character after a number"),
    "0x1f": (1, "invalid character after a number"),
    "if": (0, "'if' is a reserved word"),
    "a.this": (2, "'this' is a reserved word"),
    '"abc': (0, "unterminated string"),
    '"ab\nc"': (0, "unterminated string"),
    "'a\\": (0, "unterminated string"),
    "'\\q'": (1, "invalid escape sequence"),
    "'\\x4'": (1, "invalid escape sequence"),
    "'\\u12g4'": (1, "invalid escape sequence"),
    "'a\x01'": (2, "control character in string"),
    "(a": (2, "expected ')'"),
    "(a, b)": (2, "expected ')'"),
    "f(a b)": (4, "expected ',' or ')'"),
    "[a b]": (3, "expected ',' or ']'"),
    "a[1": (3, "expected ']'"),
    "{a: 1}": (1, "dict keys must be string or number literals"),
    '{"a" 1}': (5, "expected ':'"),
    '{"a": 1 "b": 2}': (8, "expected ',' or '}'"),
    "a.": (2, "expected a name after '.'"),
    "a.1": (2, "expected a name after '.'"),
    "x = 1": (2, "unexpected character '='"),
    "a && b": (2, "unexpected character '&'"),
    "!a": (0, "unexpected character '!'"),
    "a # comment": (2, "unexpected character '#'"),
    "é": (0, "unexpected non-ASCII character"),
    "a\rb": (1, "unexpected control character"),
    "a b": (2, "expected end of line"),
    '"a" "b"': (4, "expected end of line"),
    "a +": (3, "expected an expression"),
    "()": (1, "expected an expression"),
    "f(,)": (2, "expected an expression"),
    "a < not b": (4, "expected an expression"),
    "- not a": (2, "expected an expression"),
    "a\n)": (2, "expected an expression"),
}


@pytest.mark.parametrize("source", list(MALFORMED))
def test_tricky_malformed_cases(wasm, source):
    error = both(wasm, source)
    assert isinstance(error, ParseError), error
    assert (error.offset, error.message) == MALFORMED[source]


def test_error_positions_are_lines_and_columns():
    with pytest.raises(ParseError) as caught:
        pyparser.parse("a + 1\nb * (c\n")
    assert (caught.value.line, caught.value.column) == (2, 7)
    assert str(caught.value) == "line 2, column 7 (byte 12): expected ')'"


# Names, strings, numbers and blank runs of every length across the WASM scanner's
# 16-byte vector steps, at the end of the input too; and names that share a reserved
# word's letters, length or hash-table neighbourhood without being one.
WIDTHS = [1, 2, 14, 15, 16, 17, 31, 32, 33, 47, 48, 49, 70]
LOOKALIKES = [
    "iffy", "android", "nothing", "order", "or_", "not_", "and1", "classy", "Class",
    "instanceof_", "implementsX", "yields", "tags", "region", "len", "all", "count",
    "notable", "o", "a", "n", "_and", "ANDROID", "returning", "protectedness",
]  # fmt: skip


@pytest.mark.parametrize("width", WIDTHS)
def test_tokens_of_every_width_parse_identically(wasm, width):
    name = ("n" + "a1_Z" * width)[:width]
    string = "'" + ("é x" * width)[:width] + "\\t'"
    number = "1" * width + "." + "2" * width
    spaces = " " * width
    doc = f"{name}({string},{spaces}{number}){spaces}+ {name}.{name}\n{name}"
    tree = both(wasm, doc)
    assert isinstance(tree, FlatAst), tree
    assert flat_nodes(tree) == cpython_nodes(doc.encode())
    for ending in (name, string, number, name + spaces, "(" + name):
        both(wasm, ending)  # the last token ends on the input's last byte


# The WASM scanner finds token starts in a bitmask of the 64 bytes ahead: every kind of
# token, starting at every offset across two such windows (ending on, starting on or
# crossing a window's last byte), with the input ending right after it or not.
WINDOW_TOKENS = [
    "n", "na", "name_7", "n" * 63, "n" * 64, "n" * 65, "x ** 2", "x <= 1", "x == y", "x > y",
    "'é s\\t'", "'" + "s" * 70 + "'", '"a \\" b"', "12.5e+3", "0", "7" * 66, "[]", "f(a)",
    "(not x)", "(x and y)",
]  # fmt: skip


@pytest.mark.parametrize("token", WINDOW_TOKENS)
def test_tokens_at_every_offset_of_the_scanner_window_parse_identically(wasm, token):
    for offset in range(132):
        line = "x" + " " * offset + "+ " + token
        for doc in (line, line + "\n", line + "\n" + " " * offset + "\n" + token):
            tree = both(wasm, doc)
            assert isinstance(tree, FlatAst), (doc, tree)


@pytest.mark.parametrize("blank", [" ", "\t", " \t"])
def test_blank_lines_and_indentation_of_every_length_identically(wasm, blank):
    for width in range(132):
        both(wasm, "a\n" + blank * width + "\nb\n")  # a blank line
        both(wasm, "a\n" + blank * width + "b\n")  # indentation (from width 1): an error
        both(wasm, "a" + blank * width + "\n\n" + blank * width)  # ends on blanks


def test_names_that_look_like_reserved_words_are_names(wasm):
    doc = " + ".join(LOOKALIKES)
    tree = both(wasm, doc)
    assert isinstance(tree, FlatAst), tree
    assert [tree.text(i) for i in range(len(tree)) if tree.kind(i) == Kind.NAME] == LOOKALIKES
    assert flat_nodes(tree) == cpython_nodes(doc.encode())


@pytest.mark.parametrize("word", sorted(RESERVED))
def test_every_reserved_word_is_refused_by_both(wasm, word):
    error = both(wasm, f"x + {word}")
    assert error == ParseError(4, f"'{word}' is a reserved word")


# --- limits --------------------------------------------------------------------------


@pytest.mark.parametrize("opener,closer", [("(", ")"), ("[", "]"), ("f(", ")"), ("-", "")])
def test_nesting_up_to_the_limit_parses_and_past_it_is_a_clear_error(wasm, opener, closer):
    levels = MAX_DEPTH - 1  # the line itself is the first level
    ok = opener * levels + "x" + closer * levels
    assert isinstance(both(wasm, ok), FlatAst)
    deep = opener * (levels + 1) + "x" + closer * (levels + 1)
    error = both(wasm, deep)
    assert isinstance(error, ParseError)
    assert error.message == f"nesting deeper than {MAX_DEPTH} levels"


def test_pathological_nesting_is_an_error_not_a_crash(wasm):
    for doc in ("(" * 100_000, "-" * 100_000 + "x", "not " * 50_000 + "x", "a**" * 50_000 + "a"):
        error = both(wasm, doc)
        assert isinstance(error, ParseError)
        assert error.message == f"nesting deeper than {MAX_DEPTH} levels"


def test_huge_inputs(wasm):
    wide = "[" + "1," * 2_000_000 + "]\n"  # one 4 MB line, one node of 2M children
    tree = wasm.parse(wide)
    assert tree.child_count(len(tree) - 1) == 2_000_000
    too_big = b"x\n" * (MAX_INPUT_BYTES // 2 + 1)
    for parse in (wasm.parse, pyparser.parse):
        with pytest.raises(ParseError, match="the limit is 16777216 bytes"):
            parse(too_big)
