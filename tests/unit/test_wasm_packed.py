"""The packed AST: its layout, the module's bytes against the reference encoder, the
memory one parse holds, and trees read in place from linear memory while threads parse
on. All of it runs the committed ``parser.wasm`` under real wasmtime."""

from __future__ import annotations

import threading
from array import array

import pytest

from loadkit.workloads.wasm import corpus, pyparser, realcode, scenarios
from loadkit.workloads.wasm.flat import FlatAst
from loadkit.workloads.wasm.host import INPUT_PADDING, MemoryLimitExceeded, WasmParser
from loadkit.workloads.wasm.language import Kind, pack
from loadkit.workloads.wasm.packed import A_ESC, B_ESC, X_ESC, PackedError, unpack
from loadkit.workloads.wasm.packed import pack as pack_nodes

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def wasm():
    with WasmParser() as parser:
        yield parser


def packed_bytes(tree: FlatAst) -> bytes:
    assert tree.packed, "the tree was unpacked already"
    assert tree._packed is not None
    return tree._packed.use(bytes)


# Documents whose nodes need every kind of extension word: a gap of 63 or more before
# a leaf (blank lines), a node ending 63 or more past the last leaf (spaces before a
# closing bracket), a node longer than B_ESC, and child counts of 7 and more.
ESCAPES = {
    "blank lines": "a\n" + "\n" * 100 + "b + c\n",
    "spaces before a bracket": "f(x" + " " * 70 + ")\n[" + " " * 200 + "]\n",
    "long string": "'" + "s" * (B_ESC + 10) + "' + x\n",
    "long list": "[" + "1, " * (B_ESC // 3 + 10) + "]\n",
    "many arguments": "f(1, 2, 3, 4, 5, 6)\nf(1, 2, 3, 4, 5, 6, 7)\n{1: 2, 3: 4, 5: 6, 7: 8}\n",
    "empty lists far from a leaf": "x\n" + "[[], [], []]\n" * 40,
}


@pytest.mark.parametrize("name", list(ESCAPES))
def test_module_writes_the_reference_encoding(wasm, name):
    data = ESCAPES[name].encode()
    tree, expected = wasm.parse(data), pyparser.parse(data)
    raw = packed_bytes(tree)
    assert raw == pack_nodes(expected.words)
    words = array("I", raw)
    assert len(words) > len(tree), "no extension word: the case tests nothing"
    assert unpack(raw, len(tree)).tobytes() == expected.words.tobytes()
    assert tree == expected


def test_pack_and_unpack_round_trip_every_field_at_its_limits():
    cases = [
        (Kind.NAME, 0, 0, 0, 1),
        (Kind.NAME, 0, 0, A_ESC - 1, A_ESC - 1 + B_ESC - 1),  # both just fit
        (Kind.STRING, 0, 0, A_ESC - 1 + B_ESC - 1 + A_ESC, 2**24),  # both escaped
        (Kind.CALL, 0, X_ESC - 1, 2**24, 2**24 + 1),
        (Kind.LIST, 0, X_ESC, 2**24 + 1, 2**24 + 3),
        (Kind.DICT, 0, 2**23 + 5, 2**24 + 3, 2**24 + 3 + A_ESC),
        (Kind.BINARY, 6, 2, 0, 2**24 + 3 + A_ESC + 1),
        (Kind.COMPARE, 6, 2, 5, 2**24 + 3 + A_ESC + 1),
    ]
    words = array("i")
    for kind, op, children, start, end in cases:
        word = pack(kind, op, children)
        words.extend((word - 2**32 if word >= 2**31 else word, start, end))
    raw = pack_nodes(words)
    assert unpack(raw, len(cases)).tobytes() == words.tobytes()
    assert unpack(b"", 0).tolist() == []


def test_unpack_refuses_bytes_that_are_not_the_stated_nodes():
    raw = pack_nodes(pyparser.parse("a + b").words)
    with pytest.raises(PackedError, match="whole number"):
        unpack(raw[:-1], 3)
    with pytest.raises(PackedError, match="2 nodes packed where 3"):
        unpack(raw[:-4], 3)


def test_real_code_packs_into_under_a_byte_per_input_byte(wasm):
    data = realcode.document(200_000, seed=3).encode()
    tree = wasm.parse(data)
    assert tree.nbytes <= 0.8 * len(data)  # measured: 0.75
    assert tree.nbytes <= 4.1 * len(tree)


def test_one_parse_holds_under_twice_its_input_and_copies_nothing(wasm):
    data = realcode.document(1_000_000, seed=5).encode()
    found = scenarios.measure_memory(wasm, data)
    assert found["memory_per_input_ratio"] <= 2.0
    nodes = found["ast_bytes_per_node"] * len(wasm.parse(data))
    # linear memory holds the input and the nodes; the host copied neither
    assert found["memory_linear_kib"] * 1024 >= len(data) + INPUT_PADDING + nodes
    assert found["memory_host_kib"] * 1024 < 0.05 * nodes
    assert found["unpack_ms"] > 0


def test_a_kept_tree_survives_the_next_parse_and_a_dropped_one_costs_nothing(wasm):
    first, second = (corpus.document(30_000, seed=s).encode() for s in (1, 2))
    kept = wasm.parse(first)
    assert kept.packed and kept._packed is not None
    assert kept._packed._instance is not None  # read in place
    wasm.parse(second)  # overwrites linear memory: the kept tree moved out first
    assert kept._packed._instance is None
    assert kept == pyparser.parse(first)
    dropped = wasm.parse(first)
    inst = wasm._instance()
    assert inst.tenant is not None and inst.tenant() is dropped._packed
    del dropped
    assert inst.tenant() is None  # the next parse has nothing to move out


def test_an_unpacked_tree_lets_go_of_the_instance(wasm):
    tree = wasm.parse("a.b(c, [1, 2])")
    assert tree.packed
    assert tree.sexpr(len(tree) - 1) == "(call (attr a b) c (list 1 2))"
    assert not tree.packed and tree._packed is None
    assert tree.nbytes == 12 * len(tree)


def test_trees_outlive_the_thread_and_instance_that_made_them(wasm):
    docs = [corpus.document(20_000, seed=s).encode() for s in range(4)]
    trees: list[FlatAst] = []

    def work(doc: bytes) -> None:
        trees.append(wasm.parse(doc))

    for doc in docs:
        thread = threading.Thread(target=work, args=(doc,))
        thread.start()
        thread.join()  # its thread-local instance is gone; the tree keeps it alive
    assert [t.packed for t in trees] == [True] * 4
    assert trees == [pyparser.parse(d) for d in docs]


def test_reading_a_tree_while_its_thread_parses_again_gives_the_right_nodes(wasm):
    docs = [corpus.document(40_000, seed=s).encode() for s in range(2)]
    expected = [pyparser.parse(d) for d in docs]
    handed: list[FlatAst] = []
    ready, done = threading.Event(), threading.Event()

    def owner() -> None:
        for i in range(30):
            handed.append(wasm.parse(docs[i % 2]))
            ready.set()
            wasm.parse(docs[(i + 1) % 2])  # races the reader below for the memory
        done.set()

    thread = threading.Thread(target=owner)
    thread.start()
    read = 0
    while not done.is_set() or read < len(handed):
        if not ready.wait(timeout=30):
            break
        while read < len(handed):
            assert handed[read] == expected[read % 2], read
            read += 1
    thread.join()
    assert read == 30


def test_out_of_memory_wins_over_a_syntax_error_after_it():
    dense = b"[" + b"1," * 1_000_000 + b"]\n)"  # 4 MB of nodes, then a stray bracket
    with WasmParser(memory_limit_bytes=4 * MIB) as small:
        with pytest.raises(MemoryLimitExceeded, match="outgrew the 4 MiB"):
            small.parse(dense)
        assert small.parse("a") == pyparser.parse("a")


def test_a_document_leaving_no_room_for_nodes_stops_before_parsing():
    with WasmParser(memory_limit_bytes=4 * MIB) as small:
        small.parse("a")
        input_at = small._instance().input_at
        size = 4 * MIB - input_at - INPUT_PADDING - 100  # fits; its nodes cannot
        with pytest.raises(MemoryLimitExceeded, match="after byte 0 of"):
            small.parse(b"x\n" * (size // 2))
        assert small.memory_bytes() <= 4 * MIB
        assert small.parse("a + b") == pyparser.parse("a + b")
