"""The result both parsers return: a flat AST over the source, or a ``ParseError``.

Pure data, no I/O: the pure-Python parser builds the node words itself; the WASM host
hands over its packed nodes (:mod:`loadkit.workloads.wasm.packed`) where they lie, and they are
unpacked into the same words the first time a node is read. Equivalence is plain
equality of the two parsers' words.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

from loadkit.workloads.wasm.language import MAX_INPUT_BYTES, OPS, WORDS_PER_NODE, Kind
from loadkit.workloads.wasm.packed import unpack

T = TypeVar("T")


class ParseError(ValueError):
    """A syntax error: where (byte offset into the document) and what."""

    def __init__(self, offset: int, message: str, source: bytes | None = None) -> None:
        self.offset = offset
        self.message = message
        if source is None:
            self.line = self.column = 0
            super().__init__(f"byte {offset}: {message}")
        else:
            self.line, self.column = position(source, offset)
            super().__init__(f"line {self.line}, column {self.column} (byte {offset}): {message}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParseError):
            return NotImplemented
        return (self.offset, self.message) == (other.offset, other.message)

    def __hash__(self) -> int:
        return hash((self.offset, self.message))


def position(source: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of a byte offset."""
    line_start = source.rfind(b"\n", 0, offset) + 1
    return source.count(b"\n", 0, offset) + 1, offset - line_start + 1


def as_bytes(source: str | bytes) -> bytes:
    """The document as UTF-8 bytes, refused past the size limit (both parsers call this,
    so they refuse the same documents with the same error)."""
    if isinstance(source, str):
        try:
            data = source.encode()
        except UnicodeEncodeError as exc:
            # A str can hold half of a surrogate pair, which is no character: no UTF-8
            # (and no document) has it. Where it is, in bytes of the text before it.
            before = source[: exc.start].encode()
            raise ParseError(
                len(before),
                f"lone surrogate U+{ord(source[exc.start]):04X} (not a character; "
                "the document is not valid Unicode text)",
                before,
            ) from None
    else:
        data = bytes(source)
    if len(data) > MAX_INPUT_BYTES:
        raise ParseError(
            MAX_INPUT_BYTES,
            f"document is {len(data)} bytes; the limit is {MAX_INPUT_BYTES} bytes "
            "(split it into smaller documents)",
        )
    return data


class PackedNodes(Protocol):
    """Packed node bytes that may live in memory someone else reuses (a WASM instance's):
    ``use`` runs a function on them while they are sure to stay put, and the function
    must not keep a reference to the buffer it is given."""

    nbytes: int

    def use(self, fn: Callable[[bytes | memoryview], T]) -> T: ...


class FlatAst:
    """Nodes in postorder, three ``int32`` words each (``words``): ``kind | op << 4 |
    children << 8``, ``start``, ``end`` (byte offsets into ``source``).

    A tree from the WASM parser starts out packed (4 bytes a node, 12 unpacked); its
    words are unpacked once, on the first look at a node, and the packed bytes let go.
    ``nbytes`` is what the tree holds in whichever form it is in."""

    __slots__ = ("_count", "_packed", "_sizes", "_words", "source")

    def __init__(self, source: bytes, words: array) -> None:
        self.source = source
        self._words: array | None = words
        self._packed: PackedNodes | None = None
        self._count = len(words) // WORDS_PER_NODE
        self._sizes: list[int] | None = None

    @classmethod
    def from_packed(cls, source: bytes, count: int, packed: PackedNodes) -> FlatAst:
        """A tree of ``count`` nodes held packed until a node is read."""
        tree = cls.__new__(cls)
        tree.source = source
        tree._words = None
        tree._packed = packed
        tree._count = count
        tree._sizes = None
        return tree

    @property
    def words(self) -> array:
        if self._words is None:
            assert self._packed is not None
            count = self._count
            self._words = self._packed.use(lambda buf: unpack(buf, count))
            self._packed = None
        return self._words

    @property
    def packed(self) -> bool:
        """Still packed (no node read yet)."""
        return self._words is None

    def __len__(self) -> int:
        return self._count

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlatAst):
            return NotImplemented
        return self.source == other.source and self.words.tobytes() == other.words.tobytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<FlatAst {len(self)} nodes over {len(self.source)} bytes>"

    @property
    def nbytes(self) -> int:
        """Bytes the nodes take now: packed, or unpacked once read."""
        if self._words is None:
            assert self._packed is not None
            return self._packed.nbytes
        return len(self._words) * self._words.itemsize

    def kind(self, i: int) -> Kind:
        return Kind(self.words[WORDS_PER_NODE * i] & 0xF)

    def op(self, i: int) -> str:
        word = self.words[WORDS_PER_NODE * i]
        ops = OPS.get(Kind(word & 0xF))
        return ops[(word >> 4) & 0xF] if ops else ""

    def child_count(self, i: int) -> int:
        return (self.words[WORDS_PER_NODE * i] >> 8) & 0xFFFFFF

    def span(self, i: int) -> tuple[int, int]:
        base = WORDS_PER_NODE * i
        return self.words[base + 1], self.words[base + 2]

    def text(self, i: int) -> str:
        start, end = self.span(i)
        return self.source[start:end].decode()

    def _subtree_sizes(self) -> list[int]:
        if self._sizes is None:
            sizes: list[int] = []
            for i in range(len(self)):
                size, child = 1, i - 1
                for _ in range(self.child_count(i)):
                    size += sizes[child]
                    child -= sizes[child]
                sizes.append(size)
            self._sizes = sizes
        return self._sizes

    def children(self, i: int) -> list[int]:
        sizes, found, child = self._subtree_sizes(), [], i - 1
        for _ in range(self.child_count(i)):
            found.append(child)
            child -= sizes[child]
        return found[::-1]

    def roots(self) -> list[int]:
        """The top-level expression of each non-blank line, in order."""
        sizes, found, i = self._subtree_sizes(), [], len(self) - 1
        while i >= 0:
            found.append(i)
            i -= sizes[i]
        return found[::-1]

    def sexpr(self, i: int) -> str:
        """A readable rendering of one subtree, for tests and error reports."""
        kind = self.kind(i)
        if kind in (Kind.NAME, Kind.NUMBER, Kind.STRING):
            return self.text(i)
        head = kind.name.lower() + (f" {self.op(i)}" if self.op(i) else "")
        return f"({' '.join([head, *(self.sexpr(c) for c in self.children(i))])})"

    def walk(self) -> Iterator[tuple[Kind, str, int, int]]:
        """(kind, operator, start, end) for every node, in postorder."""
        for i in range(len(self)):
            yield (self.kind(i), self.op(i), *self.span(i))
