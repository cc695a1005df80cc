"""The expression language both parsers accept, and the flat AST's node encoding.

One expression per line, in the common subset of JavaScript and Python expression
syntax, so CPython's ``ast.parse`` parses the same documents (used as a native anchor):

* literals: decimal numbers (``0``, ``12``, ``3.25``, ``1e-9``; no leading zeros, no
  ``_``, digits required after ``.``), strings in ``'`` or ``"`` with the escapes
  ``\\\\ \\' \\" \\n \\r \\t \\xHH \\uHHHH``, lists ``[a, b]``, dicts ``{"k": v}`` whose keys are
  string or number literals; a trailing comma is allowed in lists, dicts and calls;
* names (ASCII letters, digits, ``_``); words reserved in either language are rejected;
* postfix: attribute ``a.b``, call ``f(x, y)``, subscript ``a[i]``;
* operators, loosest first: ``or``, ``and``, ``not``, comparisons (``< <= > >= == !=``,
  which do not chain), ``+ -``, ``* / %``, unary ``- +``, ``**`` (right associative; a
  unary operand on its left needs parentheses, as in JavaScript). The boolean words are
  Python's: JavaScript and Python share no spelling for them, and the corpus must stay
  parseable by ``ast.parse``.

Lines are separated by ``\\n``; blank lines are fine, indentation is not (Python rejects
it). Offsets are byte offsets into the UTF-8 document, as in CPython's ``col_offset``.

The AST is a flat ``int32`` array, three words per node in postorder (children come
before their parent): ``kind | op << 4 | child_count << 8``, ``start``, ``end``. The WASM
module writes the same nodes packed, one 32-bit word for almost every node
(:mod:`loadkit.workloads.wasm.packed`), and they are unpacked into these words on demand. Spans run
from the first to the last token of the node (a parenthesised operand's span includes its
parentheses, the node inside does not), exactly as CPython reports them. The C source
(``parser.c``) repeats these numbers; the equivalence tests hold the two together.
"""

from __future__ import annotations

from enum import IntEnum

WORDS_PER_NODE = 3
MAX_DEPTH = 64  # nesting levels (brackets, calls, unary operators, '**')
MAX_INPUT_BYTES = 16 * 1024 * 1024  # child counts have 24 bits; offsets stay far from 2**31


class Kind(IntEnum):
    NAME = 1
    NUMBER = 2
    STRING = 3
    ATTR = 4  # children: object, NAME
    CALL = 5  # children: callee, arguments...
    INDEX = 6  # children: object, index
    LIST = 7
    DICT = 8  # children: key, value, key, value...
    UNARY = 9
    NOT = 10
    BINARY = 11
    COMPARE = 12
    BOOL = 13


# Operator codes, per kind: the symbol at index ``op``.
UNARY_OPS = ("", "-", "+")
BINARY_OPS = ("", "+", "-", "*", "/", "%", "**")
COMPARE_OPS = ("", "<", "<=", ">", ">=", "==", "!=")
BOOL_OPS = ("", "and", "or")
OPS: dict[Kind, tuple[str, ...]] = {
    Kind.UNARY: UNARY_OPS,
    Kind.BINARY: BINARY_OPS,
    Kind.COMPARE: COMPARE_OPS,
    Kind.BOOL: BOOL_OPS,
}


def words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words, for long word lists."""
    return tuple(text.split())


# Hard keywords of Python and reserved words of JavaScript (strict mode), minus the
# boolean operators, which are tokens of the language.
RESERVED = frozenset(
    words("""
    as assert async await break case catch class const continue debugger def default del
    delete do elif else enum except export extends finally for from function global if
    implements import in instanceof interface is lambda let new nonlocal package pass
    private protected public raise return static super switch this throw try typeof var
    void while with yield
    """)
)


def pack(kind: int, op: int, children: int) -> int:
    return kind | op << 4 | children << 8
