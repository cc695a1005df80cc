/* Expression-document parser compiled to wasm32 (freestanding: no libc, no imports).
 *
 * The algorithm, the grammar, the AST encoding and every error message are the same as
 * in pyparser.py (see language.py for the language): an on-demand scanner over the
 * input bytes (terminated by a NUL sentinel the caller does not count), recursive
 * descent with precedence climbing for binary operators, nodes emitted in postorder as
 * three 32-bit words: kind | op << 4 | child_count << 8, start, end.
 *
 * Memory layout: [static data | stack | input (len + 1 sentinel) | AST nodes ... end of
 * memory]. The node array is the last thing in memory, so it grows in place with
 * memory.grow; when the host's memory limit refuses growth the parse fails with
 * status 2 instead of trapping. Errors unwind by return value (-1), never by trap.
 *
 * Exports: memory; __heap_base, where the input goes (the host grows memory to hold
 * len + 1 bytes there and copies the document in); parse(len, max_depth), the one call
 * per document, -> pointer to the result record {status, nodes, count, err_pos,
 * msg_len, msg[]}: status 0 ok, 1 syntax error, 2 out of memory.
 */

#include <stdint.h>

typedef uint8_t u8;
typedef int32_t i32;
typedef uint32_t u32;

#define EXPORT(name) __attribute__((export_name(name)))
#define PAGE 65536u

extern u8 __heap_base;

/* Node kinds and operators: language.py. */
enum { K_NAME = 1, K_NUMBER, K_STRING, K_ATTR, K_CALL, K_INDEX, K_LIST, K_DICT,
       K_UNARY, K_NOT, K_BINARY, K_COMPARE, K_BOOL };
enum { OP_NEG = 1, OP_POS = 2 };
enum { OP_POW = 6 };
#define W(kind, op, n) ((u32)(kind) | (u32)(op) << 4 | (u32)(n) << 8)

enum { T_EOF, T_NEWLINE, T_NAME, T_NUMBER, T_STRING, T_LPAREN, T_RPAREN, T_LBRACKET,
       T_RBRACKET, T_LBRACE, T_RBRACE, T_COMMA, T_COLON, T_DOT, T_NOT, T_POW,
       T_OR, T_AND, T_LT, T_LE, T_GT, T_GE, T_EQ, T_NE, T_PLUS, T_MINUS, T_STAR,
       T_SLASH, T_PERCENT, T_COUNT };

#define CMP_PREC 4
#define NOT_PREC 3
static const u8 PREC[T_COUNT] = {
    [T_OR] = 1, [T_AND] = 2,
    [T_LT] = CMP_PREC, [T_LE] = CMP_PREC, [T_GT] = CMP_PREC, [T_GE] = CMP_PREC,
    [T_EQ] = CMP_PREC, [T_NE] = CMP_PREC,
    [T_PLUS] = 5, [T_MINUS] = 5, [T_STAR] = 6, [T_SLASH] = 6, [T_PERCENT] = 6,
};
static const u32 BINARY_NODE[T_COUNT] = {
    [T_AND] = W(K_BOOL, 1, 2), [T_OR] = W(K_BOOL, 2, 2),
    [T_LT] = W(K_COMPARE, 1, 2), [T_LE] = W(K_COMPARE, 2, 2), [T_GT] = W(K_COMPARE, 3, 2),
    [T_GE] = W(K_COMPARE, 4, 2), [T_EQ] = W(K_COMPARE, 5, 2), [T_NE] = W(K_COMPARE, 6, 2),
    [T_PLUS] = W(K_BINARY, 1, 2), [T_MINUS] = W(K_BINARY, 2, 2),
    [T_STAR] = W(K_BINARY, 3, 2), [T_SLASH] = W(K_BINARY, 4, 2),
    [T_PERCENT] = W(K_BINARY, 5, 2),
};

static const u8 SINGLE_TOKEN[256] = {
    ['\n'] = T_NEWLINE, ['('] = T_LPAREN, [')'] = T_RPAREN, ['['] = T_LBRACKET,
    [']'] = T_RBRACKET, ['{'] = T_LBRACE, ['}'] = T_RBRACE, [','] = T_COMMA, [':'] = T_COLON,
    ['.'] = T_DOT, ['+'] = T_PLUS, ['-'] = T_MINUS, ['/'] = T_SLASH, ['%'] = T_PERCENT,
};
/* For '*', '<', '>', '=', '!': the second character, the token for the pair, the token
 * for the first character alone (T_EOF: not a token alone). */
static const u8 PAIRED[256][3] = {
    ['*'] = {'*', T_POW, T_STAR}, ['<'] = {'=', T_LE, T_LT}, ['>'] = {'=', T_GE, T_GT},
    ['='] = {'=', T_EQ, T_EOF}, ['!'] = {'=', T_NE, T_EOF},
};

static const u8 IS_DIGIT[256] = {['0' ... '9'] = 1};
static const u8 IS_HEX[256] = {['0' ... '9'] = 1, ['a' ... 'f'] = 1, ['A' ... 'F'] = 1};
static const u8 IS_NAME[256] = {['0' ... '9'] = 1, ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1,
                                ['_'] = 1};
/* Bytes a string body skips over without a closer look. */
static const u8 IS_PLAIN[256] = {['\t'] = 1, [' ' ... '!'] = 1, ['#' ... '&'] = 1,
                                 ['(' ... '['] = 1, [']' ... 255] = 1};

/* Reserved words by first letter (language.py: RESERVED plus the boolean words). */
static const char *const WORDS[26] = {
    ['a' - 'a'] = "and as assert async await",
    ['b' - 'a'] = "break",
    ['c' - 'a'] = "case catch class const continue",
    ['d' - 'a'] = "debugger def default del delete do",
    ['e' - 'a'] = "elif else enum except export extends",
    ['f' - 'a'] = "finally for from function",
    ['g' - 'a'] = "global",
    ['i' - 'a'] = "if implements import in instanceof interface is",
    ['l' - 'a'] = "lambda let",
    ['n' - 'a'] = "new nonlocal not",
    ['o' - 'a'] = "or",
    ['p' - 'a'] = "package pass private protected public",
    ['r' - 'a'] = "raise return",
    ['s' - 'a'] = "static super switch",
    ['t' - 'a'] = "this throw try typeof",
    ['v' - 'a'] = "var void",
    ['w' - 'a'] = "while with",
    ['y' - 'a'] = "yield",
};

static struct {
    i32 status, nodes, count, err_pos, msg_len;
    char msg[128];
} result;

static const u8 *src;
static i32 len, pos;
static i32 tok, tstart, tend, prev_end;
static i32 depth, max_depth;
static u32 *nodes;
static i32 count, capacity;

/* --- errors ------------------------------------------------------------------- */

static void msg_add(const char *s) {
    while (*s && result.msg_len < (i32)sizeof result.msg) result.msg[result.msg_len++] = *s++;
}

static void msg_add_bytes(const u8 *s, i32 n) {
    for (i32 i = 0; i < n && result.msg_len < (i32)sizeof result.msg; i++)
        result.msg[result.msg_len++] = (char)s[i];
}

static void msg_add_int(i32 v) {
    char digits[12];
    i32 n = 0;
    do digits[n++] = (char)('0' + v % 10); while ((v /= 10) > 0);
    while (n > 0 && result.msg_len < (i32)sizeof result.msg) result.msg[result.msg_len++] = digits[--n];
}

static int fail_at(i32 at, const char *message) {
    result.status = 1;
    result.err_pos = at;
    result.msg_len = 0;
    msg_add(message);
    return -1;
}

static int fail_char(i32 at) {
    u8 c = src[at];
    if (c >= 0x21 && c <= 0x7e) {
        fail_at(at, "unexpected character '");
        msg_add_bytes(&src[at], 1);
        msg_add("'");
    } else if (c >= 0x80) {
        fail_at(at, "unexpected non-ASCII character");
    } else {
        fail_at(at, "unexpected control character");
    }
    return -1;
}

/* --- nodes -------------------------------------------------------------------- */

/* Whole nodes that fit between the node array's start and the end of memory. */
static i32 room(void) {
    uint64_t end = (uint64_t)__builtin_wasm_memory_size(0) * PAGE;
    uint64_t start = (uint64_t)(__SIZE_TYPE__)nodes;
    return end > start ? (i32)((end - start) / 12u) : 0;
}

static int grow(void) {
    u32 pages = (u32)__builtin_wasm_memory_size(0);
    u32 delta = pages / 2 > 16 ? pages / 2 : 16;
    if (__builtin_wasm_memory_grow(0, delta) == (__SIZE_TYPE__)-1) {
        delta = 1; /* close to the limit: take what is left, a page at a time */
        if (__builtin_wasm_memory_grow(0, delta) == (__SIZE_TYPE__)-1) return -1;
    }
    capacity = room();
    return 0;
}

static int emit(u32 word, i32 start, i32 end) {
    if (count == capacity && grow() < 0) {
        fail_at(start, "out of memory: the AST outgrew the memory limit");
        result.status = 2;
        return -1;
    }
    u32 *n = nodes + 3 * count++;
    n[0] = word;
    n[1] = (u32)start;
    n[2] = (u32)end;
    return 0;
}

/* --- scanner ------------------------------------------------------------------ */

static int scan_string(i32 p) {
    u8 quote = src[p];
    i32 start = p++;
    for (;;) {
        while (IS_PLAIN[src[p]]) p++;
        u8 c = src[p];
        if (c == quote) break;
        if (c == '\\') {
            i32 esc = p++;
            switch (src[p]) {
            case '\\': case '\'': case '"': case 'n': case 'r': case 't':
                p++;
                continue;
            case 'x':
                if (!IS_HEX[src[p + 1]] || !IS_HEX[src[p + 2]]) break;
                p += 3;
                continue;
            case 'u':
                if (!IS_HEX[src[p + 1]] || !IS_HEX[src[p + 2]] || !IS_HEX[src[p + 3]] ||
                    !IS_HEX[src[p + 4]])
                    break;
                p += 5;
                continue;
            }
            if (p >= len) return fail_at(start, "unterminated string");
            return fail_at(esc, "invalid escape sequence");
        }
        if (c == '"' || c == '\'') { /* the other quote */
            p++;
            continue;
        }
        if (p >= len || c == '\n') return fail_at(start, "unterminated string");
        return fail_at(p, "control character in string");
    }
    tok = T_STRING;
    return p + 1;
}

static int scan_number(i32 p) {
    i32 start = p;
    if (src[p] == '0') {
        p++;
        if (IS_DIGIT[src[p]]) return fail_at(start, "leading zeros are not allowed");
    } else {
        while (IS_DIGIT[src[p]]) p++;
    }
    if (src[p] == '.') {
        p++;
        if (!IS_DIGIT[src[p]]) return fail_at(p, "expected digits after '.'");
        while (IS_DIGIT[src[p]]) p++;
    }
    if (src[p] == 'e' || src[p] == 'E') {
        p++;
        if (src[p] == '+' || src[p] == '-') p++;
        if (!IS_DIGIT[src[p]]) return fail_at(p, "expected digits in exponent");
        while (IS_DIGIT[src[p]]) p++;
    }
    if (IS_NAME[src[p]]) return fail_at(p, "invalid character after a number");
    tok = T_NUMBER;
    return p;
}

/* The reserved word s[0..n) is in the space-separated list, or not. */
static int listed(const char *list, const u8 *s, i32 n) {
    while (*list) {
        i32 i = 0;
        while (i < n && list[i] == (char)s[i]) i++;
        if (i == n && (list[i] == ' ' || list[i] == 0)) return 1;
        while (*list && *list != ' ') list++;
        while (*list == ' ') list++;
    }
    return 0;
}

/* Bit n of WORD_LENGTHS[c - 'a'] is set when a reserved word of length n starts with c:
 * a quick filter before the list is searched (most names are not reserved). */
static uint16_t WORD_LENGTHS[26];

static void init_words(void) {
    for (i32 letter = 0; letter < 26; letter++) {
        const char *w = WORDS[letter];
        while (w && *w) {
            i32 n = 0;
            while (w[n] && w[n] != ' ') n++;
            WORD_LENGTHS[letter] |= (uint16_t)(1u << n);
            w += n;
            while (*w == ' ') w++;
        }
    }
}

static int scan_name(i32 p) {
    i32 start = p;
    while (IS_NAME[src[p]]) p++;
    tok = T_NAME;
    u8 first = src[start];
    if (first >= 'a' && first <= 'z' && p - start <= 10 &&
        (WORD_LENGTHS[first - 'a'] >> (p - start) & 1) &&
        listed(WORDS[first - 'a'], &src[start], p - start)) {
        const u8 *s = &src[start];
        i32 n = p - start;
        if (n == 3 && s[0] == 'a' && s[1] == 'n' && s[2] == 'd') tok = T_AND;
        else if (n == 2 && s[0] == 'o' && s[1] == 'r') tok = T_OR;
        else if (n == 3 && s[0] == 'n' && s[1] == 'o' && s[2] == 't') tok = T_NOT;
        else {
            fail_at(start, "'");
            msg_add_bytes(s, n);
            msg_add("' is a reserved word");
            return -1;
        }
    }
    return p;
}

/* Consume the current token and scan the next one. */
static int advance(void) {
    prev_end = tend;
    i32 p = tend;
    while (src[p] == ' ' || src[p] == '\t') p++;
    tstart = p;
    if (p >= len) {
        tok = T_EOF;
        tend = p;
        return 0;
    }
    u8 c = src[p];
    if (SINGLE_TOKEN[c]) {
        tok = SINGLE_TOKEN[c];
        p++;
    } else if (IS_NAME[c] && !IS_DIGIT[c]) {
        p = scan_name(p);
    } else if (PAIRED[c][0]) {
        const u8 *pair = PAIRED[c];
        if (src[p + 1] == pair[0]) { tok = pair[1]; p += 2; }
        else if (pair[2]) { tok = pair[2]; p++; }
        else return fail_char(p);
    } else if (c == '"' || c == '\'') {
        p = scan_string(p);
    } else if (IS_DIGIT[c]) {
        p = scan_number(p);
    } else {
        return fail_char(p);
    }
    if (p < 0) return -1;
    tend = p;
    return 0;
}

/* --- parser ------------------------------------------------------------------- */

static int enter(void) {
    if (++depth <= max_depth) return 0;
    fail_at(tstart, "nesting deeper than ");
    msg_add_int(max_depth);
    msg_add(" levels");
    return -1;
}

static int expect(i32 t, const char *message) {
    if (tok != t) return fail_at(tstart, message);
    return advance();
}

static int parse_expr(void);
static int parse_unary(void);

/* Items up to the closing token; returns how many nodes were added as children, or -1. */
static i32 parse_items(i32 close, const char *message) {
    i32 n = 0;
    while (tok != close) {
        if (parse_expr() < 0) return -1;
        n++;
        if (tok == T_COMMA) {
            if (advance() < 0) return -1;
        } else if (tok != close) {
            return fail_at(tstart, message);
        }
    }
    if (advance() < 0) return -1;
    return n;
}

static int parse_dict(void) {
    i32 start = tstart, n = 0;
    if (advance() < 0) return -1;
    while (tok != T_RBRACE) {
        if (tok != T_STRING && tok != T_NUMBER)
            return fail_at(tstart, "dict keys must be string or number literals");
        if (emit(W(tok == T_STRING ? K_STRING : K_NUMBER, 0, 0), tstart, tend) < 0 ||
            advance() < 0 || expect(T_COLON, "expected ':'") < 0 || parse_expr() < 0)
            return -1;
        n += 2;
        if (tok == T_COMMA) {
            if (advance() < 0) return -1;
        } else if (tok != T_RBRACE) {
            return fail_at(tstart, "expected ',' or '}'");
        }
    }
    if (advance() < 0) return -1;
    return emit(W(K_DICT, 0, n), start, prev_end);
}

static int parse_primary(void) {
    i32 start = tstart, n;
    switch (tok) {
    case T_NAME:
        return emit(W(K_NAME, 0, 0), tstart, tend) < 0 ? -1 : advance();
    case T_NUMBER:
        return emit(W(K_NUMBER, 0, 0), tstart, tend) < 0 ? -1 : advance();
    case T_STRING:
        return emit(W(K_STRING, 0, 0), tstart, tend) < 0 ? -1 : advance();
    case T_LPAREN:
        if (advance() < 0 || parse_expr() < 0) return -1;
        return expect(T_RPAREN, "expected ')'");
    case T_LBRACKET:
        if (advance() < 0 || (n = parse_items(T_RBRACKET, "expected ',' or ']'")) < 0) return -1;
        return emit(W(K_LIST, 0, n), start, prev_end);
    case T_LBRACE:
        return parse_dict();
    }
    return fail_at(tstart, "expected an expression");
}

/* A primary followed by any number of .name, (args) and [index]. */
static int parse_postfix(void) {
    i32 start = tstart, n;
    if (parse_primary() < 0) return -1;
    for (;;) {
        switch (tok) {
        case T_DOT:
            if (advance() < 0) return -1;
            if (tok != T_NAME) return fail_at(tstart, "expected a name after '.'");
            if (emit(W(K_NAME, 0, 0), tstart, tend) < 0 || advance() < 0 ||
                emit(W(K_ATTR, 0, 2), start, prev_end) < 0)
                return -1;
            break;
        case T_LPAREN:
            if (advance() < 0 || (n = parse_items(T_RPAREN, "expected ',' or ')'")) < 0 ||
                emit(W(K_CALL, 0, n + 1), start, prev_end) < 0)
                return -1;
            break;
        case T_LBRACKET:
            if (advance() < 0 || parse_expr() < 0 || expect(T_RBRACKET, "expected ']'") < 0 ||
                emit(W(K_INDEX, 0, 2), start, prev_end) < 0)
                return -1;
            break;
        default:
            return 0;
        }
    }
}

/* '-' or '+' applied to a signed operand or a postfix expression (not to a power). */
static int parse_signed(void) {
    i32 start = tstart, op = tok == T_MINUS ? OP_NEG : OP_POS;
    if (enter() < 0 || advance() < 0) return -1;
    if (tok == T_MINUS || tok == T_PLUS) {
        if (parse_signed() < 0) return -1;
    } else if (parse_postfix() < 0) {
        return -1;
    }
    depth--;
    return emit(W(K_UNARY, op, 1), start, prev_end);
}

static int parse_unary(void) {
    i32 start = tstart;
    if (tok == T_MINUS || tok == T_PLUS) {
        if (parse_signed() < 0) return -1;
        if (tok == T_POW) return fail_at(tstart, "'**' after a unary operator needs parentheses");
        return 0;
    }
    if (parse_postfix() < 0) return -1;
    if (tok != T_POW) return 0;
    if (enter() < 0 || advance() < 0 || parse_unary() < 0) return -1;
    depth--;
    return emit(W(K_BINARY, OP_POW, 2), start, prev_end);
}

/* Precedence climbing over the binary operators binding at least as tight as min_prec. */
static int parse_binary(i32 min_prec) {
    i32 start = tstart;
    if (tok == T_NOT && min_prec <= NOT_PREC) {
        if (enter() < 0 || advance() < 0 || parse_binary(NOT_PREC) < 0) return -1;
        depth--;
        if (emit(W(K_NOT, 0, 1), start, prev_end) < 0) return -1;
    } else if (parse_unary() < 0) {
        return -1;
    }
    for (;;) {
        i32 t = tok, prec = PREC[t];
        if (prec == 0 || prec < min_prec) return 0;
        if (advance() < 0 || parse_binary(prec + 1) < 0 ||
            emit(BINARY_NODE[t], start, prev_end) < 0)
            return -1;
        if (prec == CMP_PREC && PREC[tok] == CMP_PREC)
            return fail_at(tstart, "comparisons cannot be chained; add parentheses");
    }
}

static int parse_expr(void) {
    if (enter() < 0 || parse_binary(1) < 0) return -1;
    depth--;
    return 0;
}

static int parse_document(void) {
    for (;;) {
        i32 p = pos;
        while (src[p] == ' ' || src[p] == '\t') p++;
        if (p >= len) return 0;
        if (src[p] == '\n') {
            pos = p + 1;
            continue;
        }
        if (p != pos) return fail_at(p, "unexpected indentation");
        tend = pos;
        if (advance() < 0 || parse_expr() < 0) return -1;
        if (tok == T_EOF) return 0;
        if (tok != T_NEWLINE) return fail_at(tstart, "expected end of line");
        pos = tend;
    }
}

/* --- exports ------------------------------------------------------------------ */

EXPORT("parse") void *parse(i32 n, i32 max_nesting) {
    u8 *input = &__heap_base;
    if (!WORD_LENGTHS[0]) init_words();
    input[n] = 0; /* sentinel: every scanning loop stops on it */
    src = input;
    len = n;
    pos = 0;
    depth = 0;
    max_depth = max_nesting;
    nodes = (u32 *)(((__SIZE_TYPE__)input + (u32)n + 1 + 3) & ~(__SIZE_TYPE__)3);
    count = 0;
    capacity = room(); /* may be 0: the first node grows memory */
    result.status = 0;
    result.msg_len = 0;
    result.err_pos = 0;
    parse_document();
    result.nodes = (i32)(__SIZE_TYPE__)nodes;
    result.count = count;
    return &result;
}
