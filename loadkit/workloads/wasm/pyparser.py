"""The pure-Python baseline: the same algorithm as ``parser.c``, written as Python.

What a competent Python programmer writes for a hand-made recursive-descent parser, with
no deliberate slowness and no C help: an on-demand scanner over the document's bytes
(indexing ``bytes`` gives small ints; character classes are ``frozenset``s; a NUL
sentinel ends every scanning loop), recursive descent with precedence climbing, nodes
appended to a list and packed into an ``array`` at the end, errors raised as exceptions.
It deliberately does not use ``re`` for scanning or ``bytes.find`` for string bodies:
those would run a different algorithm in C, and this is the baseline for "the same
parser, in Python". The WASM module must match it node for node and error for error.
"""

from __future__ import annotations

from array import array

from loadkit.workloads.wasm.flat import FlatAst, ParseError, as_bytes
from loadkit.workloads.wasm.language import MAX_DEPTH, RESERVED, Kind, pack

# Token types (numbering as in parser.c, which uses them as table indexes).
(EOF, NEWLINE, NAME, NUMBER, STRING, LPAREN, RPAREN, LBRACKET, RBRACKET, LBRACE, RBRACE,
 COMMA, COLON, DOT, NOT, POW, OR, AND, LT, LE, GT, GE, EQ, NE, PLUS, MINUS, STAR, SLASH,
 PERCENT) = range(29)  # fmt: skip

NOT_PREC = 3
CMP_PREC = 4
PREC = {OR: 1, AND: 2, LT: 4, LE: 4, GT: 4, GE: 4, EQ: 4, NE: 4}
PREC |= {PLUS: 5, MINUS: 5, STAR: 6, SLASH: 6, PERCENT: 6}
BINARY_NODE = {
    AND: pack(Kind.BOOL, 1, 2),
    OR: pack(Kind.BOOL, 2, 2),
    **{t: pack(Kind.COMPARE, i, 2) for i, t in enumerate((LT, LE, GT, GE, EQ, NE), 1)},
    **{t: pack(Kind.BINARY, i, 2) for i, t in enumerate((PLUS, MINUS, STAR, SLASH, PERCENT), 1)},
}
POW_NODE = pack(Kind.BINARY, 6, 2)
LEAF_NODE = {
    NAME: pack(Kind.NAME, 0, 0),
    NUMBER: pack(Kind.NUMBER, 0, 0),
    STRING: pack(Kind.STRING, 0, 0),
}
WORD_TOKENS = {b"and": AND, b"or": OR, b"not": NOT}
RESERVED_BYTES = frozenset(word.encode() for word in RESERVED)

SINGLE = dict(zip(b"\n()[]{},:.+-/%", (NEWLINE, LPAREN, RPAREN, LBRACKET, RBRACKET, LBRACE,
              RBRACE, COMMA, COLON, DOT, PLUS, MINUS, SLASH, PERCENT), strict=True))  # fmt: skip
# '*' -> '**' or '*', '<' -> '<=' or '<', ...: (token with '=' or '*' after, token alone)
DOUBLE = {ord("*"): (ord("*"), POW, STAR), ord("<"): (ord("="), LE, LT),
          ord(">"): (ord("="), GE, GT), ord("="): (ord("="), EQ, None),
          ord("!"): (ord("="), NE, None)}  # fmt: skip

DIGITS = frozenset(b"0123456789")
HEX = frozenset(b"0123456789abcdefABCDEF")
NAME_START = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
NAME_CHARS = NAME_START | DIGITS
QUOTES = frozenset(b"\"'")
SIMPLE_ESCAPES = frozenset(b"\\'\"nrt")
BLANK = frozenset(b" \t")
# Bytes a string body skips over without a closer look: tab, and printable or non-ASCII
# bytes other than quotes and the backslash.
PLAIN = frozenset({9} | set(range(0x20, 0x100)) - set(b"\"'\\"))


class _Parser:
    def __init__(self, data: bytes, max_depth: int) -> None:
        self.source = data
        self.src = data + b"\0"  # sentinel
        self.len = len(data)
        self.max_depth = max_depth
        self.depth = 0
        self.nodes: list[int] = []
        self.tok = EOF
        self.start = self.end = self.prev_end = 0

    # --- errors ----------------------------------------------------------------------

    def error(self, at: int, message: str) -> ParseError:
        return ParseError(at, message, self.source)

    def bad_char(self, at: int) -> ParseError:
        c = self.src[at]
        if 0x21 <= c <= 0x7E:
            return self.error(at, f"unexpected character '{chr(c)}'")
        if c >= 0x80:
            return self.error(at, "unexpected non-ASCII character")
        return self.error(at, "unexpected control character")

    # --- scanner ---------------------------------------------------------------------

    def scan_string(self, p: int) -> int:
        src = self.src
        quote = src[p]
        start = p
        p += 1
        while True:
            while src[p] in PLAIN:
                p += 1
            c = src[p]
            if c == quote:
                return p + 1
            if c == 0x5C:  # backslash
                escape = p
                p += 1
                kind = src[p]
                if kind in SIMPLE_ESCAPES:
                    p += 1
                    continue
                width = 2 if kind == 0x78 else 4 if kind == 0x75 else 0  # \x, \u
                if width and all(src[p + i] in HEX for i in range(1, width + 1)):
                    p += width + 1
                    continue
                if p >= self.len:
                    raise self.error(start, "unterminated string")
                raise self.error(escape, "invalid escape sequence")
            if c in QUOTES:  # the other quote
                p += 1
                continue
            if p >= self.len or c == 0x0A:
                raise self.error(start, "unterminated string")
            raise self.error(p, "control character in string")

    def scan_number(self, p: int) -> int:
        src = self.src
        start = p
        if src[p] == 0x30:  # '0'
            p += 1
            if src[p] in DIGITS:
                raise self.error(start, "leading zeros are not allowed")
        else:
            while src[p] in DIGITS:
                p += 1
        if src[p] == 0x2E:  # '.'
            p += 1
            if src[p] not in DIGITS:
                raise self.error(p, "expected digits after '.'")
            while src[p] in DIGITS:
                p += 1
        if src[p] in b"eE":
            p += 1
            if src[p] in b"+-":
                p += 1
            if src[p] not in DIGITS:
                raise self.error(p, "expected digits in exponent")
            while src[p] in DIGITS:
                p += 1
        if src[p] in NAME_CHARS:
            raise self.error(p, "invalid character after a number")
        return p

    def scan_name(self, p: int) -> tuple[int, int]:
        src = self.src
        start = p
        while src[p] in NAME_CHARS:
            p += 1
        word = src[start:p]
        if word in RESERVED_BYTES:
            raise self.error(start, f"'{word.decode()}' is a reserved word")
        return WORD_TOKENS.get(word, NAME), p

    def advance(self) -> None:
        """Consume the current token and scan the next one."""
        src = self.src
        self.prev_end = p = self.end
        while src[p] in BLANK:
            p += 1
        self.start = p
        if p >= self.len:
            self.tok, self.end = EOF, p
            return
        c = src[p]
        if c in SINGLE:
            self.tok, self.end = SINGLE[c], p + 1
        elif c in NAME_START:
            self.tok, self.end = self.scan_name(p)
        elif c in DOUBLE:
            second, paired, alone = DOUBLE[c]
            if src[p + 1] == second:
                self.tok, self.end = paired, p + 2
            elif alone is not None:
                self.tok, self.end = alone, p + 1
            else:
                raise self.bad_char(p)
        elif c in QUOTES:
            self.tok, self.end = STRING, self.scan_string(p)
        elif c in DIGITS:
            self.tok, self.end = NUMBER, self.scan_number(p)
        else:
            raise self.bad_char(p)

    # --- parser ----------------------------------------------------------------------

    def emit(self, word: int, start: int, end: int) -> None:
        self.nodes += (word, start, end)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.error(self.start, f"nesting deeper than {self.max_depth} levels")

    def expect(self, tok: int, message: str) -> None:
        if self.tok != tok:
            raise self.error(self.start, message)
        self.advance()

    def parse_items(self, close: int, message: str) -> int:
        """Expressions up to the closing token; returns how many."""
        n = 0
        while self.tok != close:
            self.parse_expr()
            n += 1
            if self.tok == COMMA:
                self.advance()
            elif self.tok != close:
                raise self.error(self.start, message)
        self.advance()
        return n

    def parse_dict(self) -> None:
        start, n = self.start, 0
        self.advance()
        while self.tok != RBRACE:
            if self.tok not in (STRING, NUMBER):
                raise self.error(self.start, "dict keys must be string or number literals")
            self.emit(LEAF_NODE[self.tok], self.start, self.end)
            self.advance()
            self.expect(COLON, "expected ':'")
            self.parse_expr()
            n += 2
            if self.tok == COMMA:
                self.advance()
            elif self.tok != RBRACE:
                raise self.error(self.start, "expected ',' or '}'")
        self.advance()
        self.emit(pack(Kind.DICT, 0, n), start, self.prev_end)

    def parse_primary(self) -> None:
        tok, start = self.tok, self.start
        if tok in LEAF_NODE:
            self.emit(LEAF_NODE[tok], start, self.end)
            self.advance()
        elif tok == LPAREN:
            self.advance()
            self.parse_expr()
            self.expect(RPAREN, "expected ')'")
        elif tok == LBRACKET:
            self.advance()
            n = self.parse_items(RBRACKET, "expected ',' or ']'")
            self.emit(pack(Kind.LIST, 0, n), start, self.prev_end)
        elif tok == LBRACE:
            self.parse_dict()
        else:
            raise self.error(start, "expected an expression")

    def parse_postfix(self) -> None:
        """A primary followed by any number of .name, (args) and [index]."""
        start = self.start
        self.parse_primary()
        while True:
            tok = self.tok
            if tok == DOT:
                self.advance()
                if self.tok != NAME:
                    raise self.error(self.start, "expected a name after '.'")
                self.emit(LEAF_NODE[NAME], self.start, self.end)
                self.advance()
                self.emit(pack(Kind.ATTR, 0, 2), start, self.prev_end)
            elif tok == LPAREN:
                self.advance()
                n = self.parse_items(RPAREN, "expected ',' or ')'")
                self.emit(pack(Kind.CALL, 0, n + 1), start, self.prev_end)
            elif tok == LBRACKET:
                self.advance()
                self.parse_expr()
                self.expect(RBRACKET, "expected ']'")
                self.emit(pack(Kind.INDEX, 0, 2), start, self.prev_end)
            else:
                return

    def parse_signed(self) -> None:
        """'-' or '+' applied to a signed operand or a postfix expression (not a power)."""
        start, op = self.start, 1 if self.tok == MINUS else 2
        self.enter()
        self.advance()
        if self.tok == MINUS or self.tok == PLUS:
            self.parse_signed()
        else:
            self.parse_postfix()
        self.depth -= 1
        self.emit(pack(Kind.UNARY, op, 1), start, self.prev_end)

    def parse_unary(self) -> None:
        start = self.start
        if self.tok == MINUS or self.tok == PLUS:
            self.parse_signed()
            if self.tok == POW:
                raise self.error(self.start, "'**' after a unary operator needs parentheses")
            return
        self.parse_postfix()
        if self.tok != POW:
            return
        self.enter()
        self.advance()
        self.parse_unary()
        self.depth -= 1
        self.emit(POW_NODE, start, self.prev_end)

    def parse_binary(self, min_prec: int) -> None:
        """Precedence climbing over the operators binding at least as tight as min_prec."""
        start = self.start
        if self.tok == NOT and min_prec <= NOT_PREC:
            self.enter()
            self.advance()
            self.parse_binary(NOT_PREC)
            self.depth -= 1
            self.emit(pack(Kind.NOT, 0, 1), start, self.prev_end)
        else:
            self.parse_unary()
        while True:
            tok = self.tok
            prec = PREC.get(tok, 0)
            if prec == 0 or prec < min_prec:
                return
            self.advance()
            self.parse_binary(prec + 1)
            self.emit(BINARY_NODE[tok], start, self.prev_end)
            if prec == CMP_PREC and PREC.get(self.tok) == CMP_PREC:
                raise self.error(self.start, "comparisons cannot be chained; add parentheses")

    def parse_expr(self) -> None:
        self.enter()
        self.parse_binary(1)
        self.depth -= 1

    def parse_document(self) -> None:
        src, pos = self.src, 0
        while True:
            p = pos
            while src[p] in BLANK:
                p += 1
            if p >= self.len:
                return
            if src[p] == 0x0A:
                pos = p + 1
                continue
            if p != pos:
                raise self.error(p, "unexpected indentation")
            self.end = pos
            self.advance()
            self.parse_expr()
            if self.tok == EOF:
                return
            if self.tok != NEWLINE:
                raise self.error(self.start, "expected end of line")
            pos = self.end


def parse(source: str | bytes, max_depth: int = MAX_DEPTH) -> FlatAst:
    """Parse a document; raises ``ParseError`` on the first syntax error."""
    data = as_bytes(source)
    parser = _Parser(data, max_depth)
    parser.parse_document()
    return FlatAst(data, array("i", parser.nodes))
