"""The packed node layout the WASM parser writes: one 32-bit word for almost every node.

Three words a node (``kind | op << 4 | child_count << 8``, ``start``, ``end``) take 12
bytes; real code has about 190 nodes per KiB, so they came to 2.2 bytes per byte of
input. Packed, a node is ``kind | x << 4 | a << 7 | b << 13`` (little-endian ``uint32``),
with the nodes in the same postorder:

* ``x`` (3 bits): the operator code, or for a call, list or dict its child count (7
  means: in an extension word); every other kind's child count is fixed by its kind;
* ``b`` (19 bits): the node's length, ``end - start``;
* ``a`` (6 bits): for a name, number or string (a leaf), the gap from the previous
  leaf's end to its start; for any other node, how far its end lies past the last
  leaf's end (its closing brackets: usually 0 or 1). Leaves come in document order and
  a node ends after every leaf before it, so ``a`` is never negative, leaf ends are a
  running sum, and only leaves move the anchor (the parser stores nothing else for
  the other nodes).

A field too large for its bits holds its escape value (``X_ESC``, ``A_ESC``, ``B_ESC``)
and the value follows in an extension word ``value << 4`` (kind 0, which no node has):
child count first, then ``a``, then ``b``. On real code 0.05% of nodes need one, so the
layout is 4.0 bytes a node, 0.75 bytes per byte of input.

``unpack`` turns packed bytes back into the three-word ``array`` with numpy, in a few
vectorised passes (kinds, escapes, one running sum for the ends); ``pack`` is the
reference encoder, plain Python, for tests and for reading the layout.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np

from loadkit.workloads.wasm.language import WORDS_PER_NODE, Kind

X_ESC = 7
A_ESC = 63
B_ESC = (1 << 19) - 1
LEAVES = frozenset({Kind.NAME, Kind.NUMBER, Kind.STRING})
# Kinds whose child count is stored in x (their operator is always 0).
ITEMS = frozenset({Kind.CALL, Kind.LIST, Kind.DICT})
FIXED_CHILDREN = {
    Kind.ATTR: 2,
    Kind.INDEX: 2,
    Kind.UNARY: 1,
    Kind.NOT: 1,
    Kind.BINARY: 2,
    Kind.COMPARE: 2,
    Kind.BOOL: 2,
}
_CHILDREN = np.zeros(16, dtype=np.uint32)
for _kind, _n in FIXED_CHILDREN.items():
    _CHILDREN[_kind] = _n
_IS_ITEMS = np.zeros(16, dtype=bool)
_IS_ITEMS[list(ITEMS)] = True
_IS_LEAF = np.zeros(16, dtype=bool)
_IS_LEAF[list(LEAVES)] = True


class PackedError(ValueError):
    """Bytes that are not a packed node array of the stated size."""


def pack(words: Sequence[int]) -> bytes:
    """The packed form of a three-word node array (what ``parser.c`` writes)."""
    out = array("I")
    leaf_end = 0
    for i in range(0, len(words), WORDS_PER_NODE):
        word, start, end = words[i], words[i + 1], words[i + 2]
        kind, op, count = word & 0xF, (word >> 4) & 0xF, (word >> 8) & 0xFFFFFF
        extra = []
        x = op
        if kind in ITEMS:
            x = count
            if count >= X_ESC:
                x, extra = X_ESC, [count]
        a = start - leaf_end if kind in LEAVES else end - leaf_end
        b = end - start
        if a < 0 or b < 0:
            raise PackedError(f"node {i // WORDS_PER_NODE} lies before the leaf before it")
        if a >= A_ESC:
            extra.append(a)
            a = A_ESC
        if b >= B_ESC:
            extra.append(b)
            b = B_ESC
        out.append(kind | x << 4 | a << 7 | b << 13)
        out.extend(value << 4 for value in extra)
        if kind in LEAVES:
            leaf_end = end
    return out.tobytes()


def unpack(packed: bytes | memoryview, count: int) -> array:
    """The three-word node array (``array("i")``) of ``count`` packed nodes."""
    if len(packed) % 4:
        raise PackedError(f"{len(packed)} bytes is not a whole number of 32-bit words")
    w = np.frombuffer(packed, dtype="<u4")
    if len(w) == count:  # no extension words: every word is a node
        at, node = None, w
    else:
        at = np.flatnonzero(w & 0xF)  # node words; the rest are extension words
        node = w[at]
    if len(node) != count:
        raise PackedError(f"{len(node)} nodes packed where {count} were expected")
    kind = node & 0xF
    x, a, b = (node >> 4) & 0x7, (node >> 7) & 0x3F, node >> 13
    items = _IS_ITEMS[kind]
    if at is not None:
        # Extension words follow their node in field order: child count, a, b.
        x_ext, a_ext, b_ext = items & (x == X_ESC), a == A_ESC, b == B_ESC
        after = at + 1
        x = np.where(x_ext, w[np.minimum(after, len(w) - 1)] >> 4, x)
        after += x_ext
        a = np.where(a_ext, w[np.minimum(after, len(w) - 1)] >> 4, a)
        after += a_ext
        b = np.where(b_ext, w[np.minimum(after, len(w) - 1)] >> 4, b)
    leaf = _IS_LEAF[kind]
    end = np.cumsum(np.where(leaf, a + b, 0), dtype=np.int64)  # leaf ends, running
    end += np.where(leaf, 0, a)
    out = np.empty((count, WORDS_PER_NODE), dtype=np.uint32)
    out[:, 0] = kind | np.where(items, 0, x) << 4 | np.where(items, x, _CHILDREN[kind]) << 8
    out[:, 1] = end - b
    out[:, 2] = end
    return array("i", out.view(np.int32).tobytes())
