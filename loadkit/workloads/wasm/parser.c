/* Expression-document parser compiled to wasm32 (freestanding: no libc, no imports).
 *
 * The algorithm, the grammar, the AST encoding and every error message are the same as
 * in pyparser.py (see language.py for the language): an on-demand scanner over the
 * input bytes (terminated by a NUL sentinel the caller does not count), recursive
 * descent with precedence climbing for binary operators, nodes emitted in postorder.
 * Nodes are packed (language.py, packed.py): one 32-bit word a node, kind | x << 4 |
 * a << 7 | b << 13, where x is the operator (or the child count of a call, list or
 * dict), b the node's length and a how far it starts (a name, number or string) or ends
 * (any other node) after the end of the last name, number or string before it (so only
 * those move the anchor, and the other nodes store nothing more); a field too large for
 * its bits is
 * escaped and its value follows in an extension word (kind 0, value << 4). Real code
 * takes 4 bytes a node this way, 0.75 bytes per byte of input, where three words a
 * node took 2.2: with the input itself, one parse holds under twice its input.
 *
 * How it is made fast without changing the algorithm (measured on the 1 MB corpus
 * document, where scanning took three quarters of the time, and per-token work and
 * branch mispredictions dominate): the scanner still scans one token each time the
 * parser asks, but it finds where the next token starts in a bitmask of the 64 bytes
 * ahead (the window: token starts and name bytes, from wasm SIMD compares, -msimd128;
 * wasmtime enables SIMD by default), so moving from one token to the next is a
 * trailing-zero count rather than a dependent chain of byte loads and compares; a
 * token's first byte is classified with one table, and names and one-byte tokens take
 * one path, their length read from the window; reserved words are looked up with a
 * perfect hash and one 16-byte compare (no probing); string and digit runs are measured
 * with SIMD too; the per-token paths are inlined so a token costs few wasm calls (each
 * call is a prologue, a stack check and an epoch check), and the rare paths are kept
 * out of line.
 *
 * Memory layout: [static data | stack | input (len) | sentinel + padding (64 bytes) |
 * packed AST nodes ... end of memory]. The node array is the last thing in memory, so it
 * grows in place with memory.grow. Room is made once per scanner window (64 bytes of
 * input), not per node: enough for every node the parser can emit before the next
 * window (see RESERVE). When the host's memory limit refuses growth the parse fails
 * with status 2 instead of trapping. Errors unwind by return value (-1), never by trap.
 *
 * Exports: memory; __heap_base, where the input goes (the host grows memory to hold
 * len + INPUT_PADDING bytes there and copies the document in); parse(len, max_depth),
 * the one call per document, -> pointer to the result record {status, nodes, count,
 * words, err_pos, msg_len, msg[]}: status 0 ok (count nodes packed in words 32-bit
 * words from nodes on), 1 syntax error (err_pos: where), 2 out of memory (err_pos: the
 * bytes parsed when the node array could grow no more). The host reads the nodes where
 * they are, until its next call.
 */

#include <stdint.h>
#include <wasm_simd128.h>

typedef uint8_t u8;
typedef int32_t i32;
typedef uint32_t u32;
typedef uint64_t u64;

#define EXPORT(name) __attribute__((export_name(name)))
/* Every wasm call costs a prologue, a stack check and an epoch check: the per-token
 * paths are inlined into few functions, and the rare paths (errors, memory growth)
 * kept out of them so they don't crowd the registers. */
#define INLINE __attribute__((always_inline)) inline
#define COLD __attribute__((noinline, cold))
#define PAGE 65536u
/* Bytes after the input the host makes sure are in memory: the sentinel and the 63 more
 * the scanner's 64-byte window reads when it starts on the sentinel. */
#define INPUT_PADDING 64u

extern u8 __heap_base;

/* Node kinds and operators: language.py. */
enum { K_NAME = 1, K_NUMBER, K_STRING, K_ATTR, K_CALL, K_INDEX, K_LIST, K_DICT,
       K_UNARY, K_NOT, K_BINARY, K_COMPARE, K_BOOL };
enum { OP_NEG = 1, OP_POS = 2 };
enum { OP_POW = 6 };
/* A packed node's kind and x field (the operator; 0 for kinds without one). */
#define H(kind, op) ((u32)(kind) | (u32)(op) << 4)
/* Field values that mean "the value is in an extension word" (packed.py). */
#define X_ESC 7u
#define A_ESC 63u
#define B_ESC 0x7FFFFu

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
    [T_AND] = H(K_BOOL, 1), [T_OR] = H(K_BOOL, 2),
    [T_LT] = H(K_COMPARE, 1), [T_LE] = H(K_COMPARE, 2), [T_GT] = H(K_COMPARE, 3),
    [T_GE] = H(K_COMPARE, 4), [T_EQ] = H(K_COMPARE, 5), [T_NE] = H(K_COMPARE, 6),
    [T_PLUS] = H(K_BINARY, 1), [T_MINUS] = H(K_BINARY, 2),
    [T_STAR] = H(K_BINARY, 3), [T_SLASH] = H(K_BINARY, 4),
    [T_PERCENT] = H(K_BINARY, 5),
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
    i32 status, nodes, count, words, err_pos, msg_len;
    char msg[128];
} result;

/* The input, at a link-time constant address (no pointer to load before each byte). */
#define src ((const u8 *)&__heap_base)
static i32 len, pos;
static i32 tok, tstart, tend, prev_end;
static i32 depth, max_depth;
static u32 *nodes;
static u32 *next_node, *nodes_end; /* where the next word goes; end of memory */
static i32 leaf_end;    /* the end of the last name, number or string (0 before one) */
static i32 reserve;     /* words of room each window starts with (RESERVE) */
static i32 extra_words; /* extension words written (the rest are nodes) */

/* --- errors ------------------------------------------------------------------- */

/* Out of memory (status 2) is the answer once it is: the parser's complaints about the
 * document cut short after it are not. */
static void msg_add(const char *s) {
    if (result.status == 2) return;
    while (*s && result.msg_len < (i32)sizeof result.msg) result.msg[result.msg_len++] = *s++;
}

static void msg_add_bytes(const u8 *s, i32 n) {
    if (result.status == 2) return;
    for (i32 i = 0; i < n && result.msg_len < (i32)sizeof result.msg; i++)
        result.msg[result.msg_len++] = (char)s[i];
}

static void msg_add_int(i32 v) {
    if (result.status == 2) return;
    char digits[12];
    i32 n = 0;
    do digits[n++] = (char)('0' + v % 10); while ((v /= 10) > 0);
    while (n > 0 && result.msg_len < (i32)sizeof result.msg) result.msg[result.msg_len++] = digits[--n];
}

COLD static int fail_at(i32 at, const char *message) {
    if (result.status == 2) return -1;
    result.status = 1;
    result.err_pos = at;
    result.msg_len = 0;
    msg_add(message);
    return -1;
}

COLD static int fail_char(i32 at) {
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

/* Words that fit between the node array's start and the end of memory. */
static i32 room(void) {
    uint64_t end = (uint64_t)__builtin_wasm_memory_size(0) * PAGE;
    uint64_t start = (uint64_t)(__SIZE_TYPE__)nodes;
    return end > start ? (i32)((end - start) / 4u) : 0;
}

/* Grow by a 32nd (at least a page): a fresh instance's first big parse then holds at
 * most a page or a 32nd more than it needs, and growing is cheap (wasmtime has
 * reserved the address space; an instance that parses again has grown already). */
COLD static int grow(void) {
    u32 pages = (u32)__builtin_wasm_memory_size(0);
    u32 delta = pages / 32 > 1 ? pages / 32 : 1;
    if (__builtin_wasm_memory_grow(0, delta) == (__SIZE_TYPE__)-1) {
        delta = 1; /* close to the limit: take what is left, a page at a time */
        if (__builtin_wasm_memory_grow(0, delta) == (__SIZE_TYPE__)-1) return -1;
    }
    nodes_end = nodes + room();
    return 0;
}

/* Status 2, unless the parse has failed already; err_pos: how far it got. */
COLD static int out_of_memory(i32 at) {
    if (result.status == 0) {
        fail_at(at, "out of memory: the AST outgrew the memory limit");
        result.status = 2;
    }
    return -1;
}

/* RESERVE: the room each scanner window starts with, in words. Every node has a token
 * of its own (a leaf its token; the others their operator, '.', or opening bracket),
 * scanned before the node is emitted, and no two nodes share one. So the nodes emitted
 * between two window loads are at most the tokens starting in the window (BLOCK), the
 * one being scanned when the window loaded, and the nodes whose token was scanned
 * before it but that were not emitted yet: those wait on the parser's stack, at most 8
 * for each nesting level (5 binary operators of rising precedence, a postfix, a list
 * or dict, a unary, not or '**'). Twice that, for margin. A node that needs extension
 * words writes them in put_slow, which first makes room for them on top of this. */
static i32 reserve_for(i32 nesting) {
    u64 levels = (u64)(nesting > 0 ? nesting : 0) + 2;
    u64 words = 64 + 2 + 16 * levels;
    return words < (1u << 26) ? (i32)words : (i32)(1u << 26);
}

/* Grow until the node array has `reserve` words of room; -1 when the limit refuses. */
COLD static int make_room(void) {
    while (nodes_end - next_node < reserve)
        if (grow() < 0) return -1;
    return 0;
}

/* A window found no room and memory can grow no more: the parse is out of memory, after
 * the last leaf it made a node of (everything before its end was parsed). It stops by
 * scanning on at the end of the document (the parser sees the end and unwinds); the
 * few nodes emitted meanwhile go over the start of the array, which parse() made sure
 * holds `reserve` words. Returns where the scanner goes on. */
COLD static i32 out_of_room(void) {
    out_of_memory(leaf_end);
    next_node = nodes;
    return len;
}

/* A node with a field too large for its bits (or a child count of 7 or more: count is
 * then >= 0), or one that finds no room: the escaped fields' values follow the node
 * word in extension words (count, a, b, in that order). */
COLD static int put_slow(u32 head, i32 count, u32 a, u32 b, i32 end) {
    u32 ext[3];
    i32 k = 0;
    if (count >= 0) ext[k++] = (u32)count << 4;
    if (a >= A_ESC) { ext[k++] = a << 4; a = A_ESC; }
    if (b >= B_ESC) { ext[k++] = b << 4; b = B_ESC; }
    /* the words it writes come on top of the reserve the window started with */
    while (nodes_end - next_node < 1 + k + reserve)
        if (grow() < 0) return out_of_memory(end);
    *next_node++ = head | a << 7 | b << 13;
    for (i32 i = 0; i < k; i++) *next_node++ = ext[i];
    extra_words += k;
    return 0;
}

/* One word for almost every node, after one compare: a | b >> 13 is below A_ESC only
 * when a is and b is below 63 << 13 (the few lengths from there to B_ESC take the slow
 * path, which packs them without escaping). No test for room: the window made it. */
static INLINE int put(u32 head, u32 a, u32 b, i32 end) {
    if (__builtin_expect((a | b >> 13) >= A_ESC, 0)) return put_slow(head, -1, a, b, end);
    *next_node++ = head | a << 7 | b << 13;
    return 0;
}

/* A name, number or string: a is the gap before it. */
static INLINE int emit_leaf(u32 head, i32 start, i32 end) {
    u32 a = (u32)(start - leaf_end);
    leaf_end = end;
    return put(head, a, (u32)(end - start), end);
}

/* Any other node: a is how far it ends past the last leaf (its closing brackets). */
static INLINE int emit_node(u32 head, i32 start, i32 end) {
    return put(head, (u32)(end - leaf_end), (u32)(end - start), end);
}

/* A call, list or dict: its child count in x, or in an extension word from 7 on. */
static INLINE int emit_items(u32 kind, i32 count, i32 start, i32 end) {
    if (__builtin_expect(count >= (i32)X_ESC, 0))
        return put_slow(H(kind, X_ESC), count, (u32)(end - leaf_end), (u32)(end - start), end);
    return emit_node(H(kind, count), start, end);
}

/* --- scanner ------------------------------------------------------------------ */

/* Runs of bytes in a class are measured 16 (or 32) at a time with wasm SIMD (a compare
 * per class, a bitmask, a count of trailing zeros) instead of a loop whose exit branch
 * mispredicts once per token. The loads read up to 31 bytes past the sentinel, into
 * the padding the host leaves after the input (INPUT_PADDING); no run crosses the
 * sentinel, since NUL is in no class. */
#define SPLAT(c) wasm_i8x16_splat((int8_t)(c))
#define IN_RANGE(v, lo, n) wasm_u8x16_lt(wasm_i8x16_sub((v), SPLAT(lo)), SPLAT(n))

static inline v128_t name_lanes(v128_t v) { /* ASCII letters, digits, '_' */
    v128_t letter = IN_RANGE(wasm_v128_or(v, SPLAT(0x20)), 'a', 26);
    return wasm_v128_or(wasm_v128_or(letter, IN_RANGE(v, '0', 10)), wasm_i8x16_eq(v, SPLAT('_')));
}

static inline v128_t digit_lanes(v128_t v) { return IN_RANGE(v, '0', 10); }

/* Bytes a string body skips over without a closer look: tab, and printable or
 * non-ASCII bytes other than quotes and the backslash. */
static inline v128_t plain_lanes(v128_t v) {
    v128_t control = wasm_v128_andnot(wasm_u8x16_lt(v, SPLAT(0x20)), wasm_i8x16_eq(v, SPLAT('\t')));
    v128_t special = wasm_v128_or(wasm_i8x16_eq(v, SPLAT('"')), wasm_i8x16_eq(v, SPLAT('\'')));
    special = wasm_v128_or(special, wasm_i8x16_eq(v, SPLAT('\\')));
    return wasm_v128_not(wasm_v128_or(control, special));
}

/* How many of the bytes from s on are in the class (lanes() marks them). */
#define RUN_LENGTH(name, lanes)                                                         \
    static inline i32 name(const u8 *s) {                                               \
        for (i32 n = 0;; n += 16) {                                                     \
            u32 outside = ~wasm_i8x16_bitmask(lanes(wasm_v128_load(s + n))) & 0xFFFFu; \
            if (outside) return n + __builtin_ctz(outside);                             \
        }                                                                               \
    }
RUN_LENGTH(name_run, name_lanes)
RUN_LENGTH(digit_run, digit_lanes)
/* String bodies are longer: 32 bytes a step (the padding after the input covers it). */
static inline i32 plain_run(const u8 *s) {
    for (i32 n = 0;; n += 32) {
        u32 low = wasm_i8x16_bitmask(plain_lanes(wasm_v128_load(s + n)));
        u32 high = wasm_i8x16_bitmask(plain_lanes(wasm_v128_load(s + n + 16)));
        u32 outside = ~(low | high << 16);
        if (outside) return n + __builtin_ctz(outside);
    }
}

static int scan_string(i32 p) {
    u8 quote = src[p];
    i32 start = p++;
    for (;;) {
        p += plain_run(src + p);
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
        p += digit_run(src + p);
    }
    if (src[p] == '.') {
        p++;
        if (!IS_DIGIT[src[p]]) return fail_at(p, "expected digits after '.'");
        p += digit_run(src + p);
    }
    if ((src[p] | 0x20) == 'e') {
        p++;
        if (src[p] == '+' || src[p] == '-') p++;
        if (!IS_DIGIT[src[p]]) return fail_at(p, "expected digits in exponent");
        p += digit_run(src + p);
    }
    if (IS_NAME[src[p]]) return fail_at(p, "invalid character after a number");
    tok = T_NUMBER;
    return p;
}

/* Reserved words in a table indexed by a perfect hash of their first 8 bytes and length
 * (no two reserved words share a slot), holding each word's first 16 bytes zero
 * padded. A name is looked up with one 16-byte compare with its slot's key (an empty
 * slot's key, all zeros, matches no name) instead of probing: measured faster than a
 * sparse table with a branch to the probe, which mispredicted on and/or/not. */
#define WORD_BITS 10
#define WORD_SLOTS (1 << WORD_BITS)
/* Found by trying a few odd 64-bit constants: with it no two of the 60 words share a
 * slot (init_words checks). */
#define WORD_MULTIPLIER 0xd6e8feb86659fd93ull
static v128_t word_key[WORD_SLOTS];
static u8 word_tok[WORD_SLOTS];  /* T_AND, T_OR, T_NOT, or T_EOF for a reserved word */
static int words_ready;

static inline v128_t first_bytes(const u8 *s, i32 n) { /* lanes past n zeroed */
    const v128_t lane = wasm_u8x16_make(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return wasm_v128_and(wasm_v128_load(s), wasm_u8x16_lt(lane, SPLAT(n)));
}

static inline u32 word_slot(v128_t key, i32 n) {
    u64 first8 = (u64)wasm_i64x2_extract_lane(key, 0);
    return (u32)(((first8 ^ (u64)n) * WORD_MULTIPLIER) >> (64 - WORD_BITS));
}

static void init_words(void) {
    for (i32 letter = 0; letter < 26; letter++) {
        const char *w = WORDS[letter];
        while (w && *w) {
            i32 n = 0;
            while (w[n] && w[n] != ' ') n++;
            u8 bytes[16] = {0};
            for (i32 i = 0; i < n; i++) bytes[i] = (u8)w[i];
            v128_t key = wasm_v128_load(bytes);
            u32 h = word_slot(key, n);
            /* two words in one slot: WORD_MULTIPLIER no longer suits the list (the host
             * reports the trap; the reserved-word tests fail) */
            if (wasm_v128_any_true(word_key[h])) __builtin_trap();
            word_key[h] = key;
            word_tok[h] = n == 3 && w[0] == 'a' ? T_AND
                        : n == 2 && w[0] == 'o' ? T_OR
                        : n == 3 && w[0] == 'n' && w[1] == 'o' ? T_NOT : T_EOF;
            w += n;
            while (*w == ' ') w++;
        }
    }
}

/* The token type of the name or one-byte token (cls) s[0..n): cls, or for a reserved
 * word T_AND, T_OR, T_NOT, or T_EOF (a word the language refuses). */
static INLINE i32 word_kind(const u8 *s, i32 n, i32 cls) {
    v128_t key = first_bytes(s, n);
    u32 h = word_slot(key, n);
    i32 match = wasm_i8x16_all_true(wasm_i8x16_eq(key, word_key[h])) & (cls == T_NAME);
    return match ? word_tok[h] : cls;
}

COLD static int reserved_error(i32 p, i32 n) {
    fail_at(p, "'");
    msg_add_bytes(src + p, n);
    msg_add("' is a reserved word");
    return -1;
}

/* What the byte that starts a token says: T_NAME, a one-byte token, or (C_DIGIT and
 * above, or C_BAD) a token that scan_other() handles. */
enum { C_BAD = 0, C_DIGIT = T_COUNT, C_QUOTE, C_PAIRED, C_NUL };
static const u8 CHAR_CLASS[256] = {
    [0] = C_NUL, ['\n'] = T_NEWLINE, /* blanks never start a token */
    ['('] = T_LPAREN, [')'] = T_RPAREN, ['['] = T_LBRACKET, [']'] = T_RBRACKET,
    ['{'] = T_LBRACE, ['}'] = T_RBRACE, [','] = T_COMMA, [':'] = T_COLON, ['.'] = T_DOT, ['+'] = T_PLUS, ['-'] = T_MINUS,
    ['/'] = T_SLASH, ['%'] = T_PERCENT,
    ['a' ... 'z'] = T_NAME, ['A' ... 'Z'] = T_NAME, ['_'] = T_NAME,
    ['0' ... '9'] = C_DIGIT, ['"'] = C_QUOTE, ['\''] = C_QUOTE,
    ['*'] = C_PAIRED, ['<'] = C_PAIRED, ['>'] = C_PAIRED, ['='] = C_PAIRED, ['!'] = C_PAIRED,
};

static void seek(i32 p);

/* Strings, numbers, two-byte operators, the end and bad bytes (a sixth of tokens); the
 * window then goes on after the token. Tested in a chain rather than a switch, which
 * clang turns into an indirect jump unless told not to (the build passes
 * -fno-jump-tables): the jump measured slower on the 1 MB document. */
__attribute__((noinline)) static int scan_other(i32 p, u8 cls) {
    if (cls == C_QUOTE) {
        p = scan_string(p);
    } else if (cls == C_DIGIT) {
        p = scan_number(p);
    } else if (cls == C_PAIRED) {
        const u8 *pair = PAIRED[src[p]];
        if (src[p + 1] == pair[0]) { tok = pair[1]; p += 2; }
        else if (pair[2]) { tok = pair[2]; p++; }
        else return fail_char(p);
    } else if (cls == C_NUL && p >= len) {
        tok = T_EOF;
    } else {
        return fail_char(p);
    }
    if (p < 0) return -1;
    tend = p;
    seek(p);
    return 0;
}

/* The scanner's window: the BLOCK bytes from win on, as bitmasks. win_name marks name
 * bytes; win_starts marks where tokens start that the scanner has not reached yet: the
 * first byte of each run of name bytes, and every byte that is neither a name byte nor
 * a blank. The next token starts at the lowest bit of win_starts, so going from one
 * token to the next is a trailing-zero count and clearing a bit, not a scan; a token
 * longer than its first run (a string, a number, a two-byte operator) clears the
 * starts inside it (seek). */
#define BLOCK 64
static i32 win;
static u64 win_name, win_starts;

static INLINE void load_window(i32 p) {
    if (__builtin_expect(nodes_end - next_node < reserve, 0) && make_room() < 0)
        p = out_of_room();
    u64 name = 0, blank = 0;
    for (int k = 0; k < BLOCK / 16; k++) {
        v128_t v = wasm_v128_load(src + p + 16 * k);
        v128_t sp = wasm_v128_or(wasm_i8x16_eq(v, SPLAT(' ')), wasm_i8x16_eq(v, SPLAT('\t')));
        name |= (u64)(u32)wasm_i8x16_bitmask(name_lanes(v)) << (16 * k);
        blank |= (u64)(u32)wasm_i8x16_bitmask(sp) << (16 * k);
    }
    win = p;
    win_name = name;
    /* p is never inside a token, so a run of name bytes at p starts one */
    win_starts = (name & ~(name << 1)) | ~(name | blank);
}

/* The window at p, where a token ended or a line starts. */
__attribute__((noinline)) static void refresh_window(i32 p) { load_window(p); }

/* Scanning goes on at p: drop the starts before it, or move the window there. */
static inline void seek(i32 p) {
    u32 off = (u32)(p - win);
    if (__builtin_expect(off < BLOCK, 1)) win_starts &= ~0ull << off;
    else refresh_window(p);
}

/* The next window with a token start in it. The sentinel is one, so this ends; were the
 * parser to ask for a token after the end, the window stays on the sentinel. */
__attribute__((noinline)) static u64 next_window(void) {
    do load_window(win + BLOCK < len ? win + BLOCK : len); while (!win_starts);
    return win_starts;
}

/* A name or one-byte token that reaches the window's end: its length, from a window
 * that starts with it. */
__attribute__((noinline)) static i32 token_across(i32 start) {
    load_window(start);
    if (win != start) return 1; /* out of memory: the scanner went to the end */
    win_starts &= win_starts - 1; /* its own start */
    i32 n = __builtin_ctzll(~win_name);
    if (n == BLOCK) { /* a name of BLOCK bytes or more */
        n += name_run(src + start + BLOCK);
        seek(start + n);
    }
    return n + (n == 0);
}

/* Scan the next token. Names and one-byte tokens (five in six) take one path, their
 * length read from the window: a one-byte token is a "name" of length 0 counted as 1. */
static INLINE int next_token(void) {
    u64 m = win_starts;
    if (__builtin_expect(m == 0, 0)) m = next_window();
    i32 at = __builtin_ctzll(m);
    win_starts = m & (m - 1);
    i32 start = win + at;
    const u8 *s = src + start;
    tstart = start;
    u8 cls = CHAR_CLASS[s[0]];
    if (__builtin_expect((u8)(cls - 1) >= C_DIGIT - 1, 0)) return scan_other(start, cls);
    i32 n = __builtin_ctzll(~(win_name >> at));
    n += n == 0;
    if (__builtin_expect(at + n >= BLOCK, 0)) n = token_across(start); /* may go on */
    tok = word_kind(s, n, cls);
    if (__builtin_expect(tok == T_EOF, 0)) return reserved_error(start, n);
    tend = start + n;
    return 0;
}

/* Consume the current token and scan the next one. Inlined where the parser calls it:
 * a wasm call costs more than the common path. */
static INLINE int advance(void) {
    prev_end = tend;
    return next_token();
}

/* --- parser ------------------------------------------------------------------- */

COLD static int too_deep(void) {
    fail_at(tstart, "nesting deeper than ");
    msg_add_int(max_depth);
    msg_add(" levels");
    return -1;
}

static INLINE int enter(void) {
    return ++depth <= max_depth ? 0 : too_deep();
}

static INLINE int expect(i32 t, const char *message) {
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
        if (emit_leaf(H(tok == T_STRING ? K_STRING : K_NUMBER, 0), tstart, tend) < 0 ||
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
    return emit_items(K_DICT, n, start, prev_end);
}

/* The node kind of a literal or name token (0: not one). */
static const u32 LEAF_NODE[T_COUNT] = {
    [T_NAME] = H(K_NAME, 0), [T_NUMBER] = H(K_NUMBER, 0), [T_STRING] = H(K_STRING, 0),
};

static INLINE int parse_primary(void) {
    i32 start = tstart, n;
    u32 leaf = LEAF_NODE[tok]; /* most primaries: one test, not a switch */
    if (leaf) return emit_leaf(leaf, tstart, tend) < 0 ? -1 : advance();
    switch (tok) {
    case T_LPAREN:
        if (advance() < 0 || parse_expr() < 0) return -1;
        return expect(T_RPAREN, "expected ')'");
    case T_LBRACKET:
        if (advance() < 0 || (n = parse_items(T_RBRACKET, "expected ',' or ']'")) < 0) return -1;
        return emit_items(K_LIST, n, start, prev_end);
    case T_LBRACE:
        return parse_dict();
    }
    return fail_at(tstart, "expected an expression");
}

/* A primary followed by any number of .name, (args) and [index]. */
static const u8 IS_POSTFIX[T_COUNT] = {[T_DOT] = 1, [T_LPAREN] = 1, [T_LBRACKET] = 1};

static INLINE int parse_postfix(void) {
    i32 start = tstart, n;
    if (parse_primary() < 0) return -1;
    /* Tested before the loop too: most operands have no suffix, and entering a loop
     * costs an epoch check. */
    if (!IS_POSTFIX[tok]) return 0;
    do {
        if (tok == T_DOT) {
            if (advance() < 0) return -1;
            if (tok != T_NAME) return fail_at(tstart, "expected a name after '.'");
            if (emit_leaf(H(K_NAME, 0), tstart, tend) < 0 || advance() < 0 ||
                emit_node(H(K_ATTR, 0), start, prev_end) < 0)
                return -1;
        } else if (tok == T_LPAREN) {
            if (advance() < 0 || (n = parse_items(T_RPAREN, "expected ',' or ')'")) < 0 ||
                emit_items(K_CALL, n + 1, start, prev_end) < 0)
                return -1;
        } else { /* T_LBRACKET */
            if (advance() < 0 || parse_expr() < 0 || expect(T_RBRACKET, "expected ']'") < 0 ||
                emit_node(H(K_INDEX, 0), start, prev_end) < 0)
                return -1;
        }
    } while (IS_POSTFIX[tok]);
    return 0;
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
    return emit_node(H(K_UNARY, op), start, prev_end);
}

/* The right operand of '**' (a call, so that parse_unary can be inlined). */
__attribute__((noinline)) static int parse_power_operand(void) { return parse_unary(); }

static INLINE int parse_unary(void) {
    i32 start = tstart;
    if (tok == T_MINUS || tok == T_PLUS) {
        if (parse_signed() < 0) return -1;
        if (tok == T_POW) return fail_at(tstart, "'**' after a unary operator needs parentheses");
        return 0;
    }
    if (parse_postfix() < 0) return -1;
    if (tok != T_POW) return 0;
    if (enter() < 0 || advance() < 0 || parse_power_operand() < 0) return -1;
    depth--;
    return emit_node(H(K_BINARY, OP_POW), start, prev_end);
}

/* Precedence climbing over the binary operators binding at least as tight as min_prec. */
static int parse_binary(i32 min_prec) {
    i32 start = tstart;
    if (tok == T_NOT && min_prec <= NOT_PREC) {
        if (enter() < 0 || advance() < 0 || parse_binary(NOT_PREC) < 0) return -1;
        depth--;
        if (emit_node(H(K_NOT, 0), start, prev_end) < 0) return -1;
    } else if (parse_unary() < 0) {
        return -1;
    }
    while (PREC[tok] >= min_prec) { /* PREC is 0 for the rest and min_prec >= 1 */
        i32 t = tok, prec = PREC[t];
        if (advance() < 0 || parse_binary(prec + 1) < 0 ||
            emit_node(BINARY_NODE[t], start, prev_end) < 0)
            return -1;
        if (prec == CMP_PREC && PREC[tok] == CMP_PREC)
            return fail_at(tstart, "comparisons cannot be chained; add parentheses");
    }
    return 0;
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
        if (pos != tend) seek(pos); /* blank lines skipped */
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
    if (!words_ready) {
        init_words();
        words_ready = 1;
    }
    input[n] = 0; /* sentinel: every scanning loop stops on it */
    len = n;
    pos = 0;
    tend = 0;
    depth = 0;
    max_depth = max_nesting;
    result.status = 0;
    result.msg_len = 0;
    result.err_pos = 0;
    nodes = (u32 *)(((__SIZE_TYPE__)input + (u32)n + INPUT_PADDING + 3) & ~(__SIZE_TYPE__)3);
    next_node = nodes;
    nodes_end = nodes + room();
    leaf_end = 0;
    extra_words = 0;
    reserve = reserve_for(max_nesting);
    if (make_room() == 0) { /* else no room for even the reserve: status 2 at byte 0 */
        refresh_window(0);
        parse_document();
    } else {
        out_of_memory(0);
    }
    result.nodes = (i32)(__SIZE_TYPE__)nodes;
    result.words = (i32)(next_node - nodes);
    result.count = result.words - extra_words;
    return &result;
}
