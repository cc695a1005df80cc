"""The result both parsers return: a flat AST over the source, or a ``ParseError``.

Pure data, no I/O: the WASM host copies the node words out of linear memory into a
``FlatAst``, the pure-Python parser builds the same words itself, and equivalence is
plain equality of the two.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

from loadkit.wasm.language import MAX_INPUT_BYTES, OPS, WORDS_PER_NODE, Kind


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


class FlatAst:
    """Nodes in postorder, three ``int32`` words each: ``kind | op << 4 | children << 8``,
    ``start``, ``end`` (byte offsets into ``source``)."""

    __slots__ = ("_sizes", "source", "words")

    def __init__(self, source: bytes, words: array) -> None:
        self.source = source
        self.words = words
        self._sizes: list[int] | None = None

    def __len__(self) -> int:
        return len(self.words) // WORDS_PER_NODE

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlatAst):
            return NotImplemented
        return self.source == other.source and self.words.tobytes() == other.words.tobytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<FlatAst {len(self)} nodes over {len(self.source)} bytes>"

    @property
    def nbytes(self) -> int:
        return len(self.words) * self.words.itemsize

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
