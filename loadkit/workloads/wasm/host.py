"""The wasmtime host: one Engine and compiled Module shared, one Store per thread.

A ``Store`` is not thread-safe, so each thread that parses gets its own Store and
Instance (a ``threading.local``) from the one compiled ``Module``; wasm calls go through
ctypes, which releases the GIL, so threads parse in parallel. Per document: the host
grows linear memory if the document needs more (the document plus ``INPUT_PADDING``
bytes: the module's scanner reads 64 bytes at a time), copies the bytes in at the
module's ``__heap_base``, calls ``parse`` (the one wasm call per document), and reads
the result record. The packed nodes are not copied: the ``FlatAst`` handed back reads
them where they lie in linear memory. Before the thread's next parse overwrites them,
a tree still referenced gets its own copy (4 bytes a node) and lets go of the instance;
a tree already dropped, or already unpacked, costs nothing. So one parse holds its
input and its packed nodes once, in linear memory, and a caller that keeps every tree
holds each one's packed bytes, copied once.

Reading linear memory from Python is safe here because nothing else writes it: the
instance belongs to one thread, which moves the previous tree out (under the
instance's lock, which readers hold while they unpack) before it calls into the
module again, and memory only grows, and so only moves, inside such a call. A tree
keeps its instance alive, so a thread that ends does not free the memory under it.

Guards, each with its own exception: an epoch deadline (a ticker thread advances the
engine's epoch; a parse running past its deadline traps, and the thread's instance is
replaced, since a trapped instance's stack pointer is left wherever it stopped) and a
memory limit on each Store (growth past it fails: for the input here, for the node
array inside the module, which reports it instead of trapping).
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import wasmtime

from loadkit.workloads.wasm.flat import FlatAst, ParseError, as_bytes
from loadkit.workloads.wasm.language import MAX_DEPTH

T = TypeVar("T")

WASM_PATH = Path(__file__).with_name("parser.wasm")
TICK_S = 0.005
MIB = 1024 * 1024
PAGE = 65536
RESULT_WORDS = 6  # status, nodes pointer, node count, word count, error offset, message length
# Bytes after the document that must be in memory: the sentinel, and the rest of the
# scanner's 64-byte window when it starts on it (INPUT_PADDING in parser.c).
INPUT_PADDING = 64


class WasmLimitError(RuntimeError):
    """A guard stopped a parse (not a syntax error in the document)."""


class DeadlineExceeded(WasmLimitError):
    pass


class MemoryLimitExceeded(WasmLimitError):
    pass


class WasmTrap(RuntimeError):
    """The module trapped for a reason the host does not expect: a bug, not bad input."""


def load_module_bytes(path: Path = WASM_PATH) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing; build it with `python -m loadkit.workloads.wasm.build`"
        ) from None


def make_engine() -> wasmtime.Engine:
    """An engine that optimises for speed and can interrupt wasm at epoch deadlines."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.cranelift_opt_level = "speed"
    return wasmtime.Engine(config)


def _tick(engine: wasmtime.Engine, stop: threading.Event, interval_s: float) -> None:
    while not stop.wait(interval_s):
        engine.increment_epoch()


@dataclass
class _Instance:
    store: wasmtime.Store
    memory: wasmtime.Memory
    parse: wasmtime.Func
    input_at: int  # where the module reads the document from
    # Held while the last tree's nodes are read in place or moved out of linear memory.
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The packed nodes of the last tree, while they are still read in place.
    tenant: weakref.ref[_LinearNodes] | None = None

    def base(self) -> int:
        """Address of linear memory now (it moves when memory grows)."""
        return ctypes.addressof(self.memory.data_ptr(self.store).contents)

    def vacate(self) -> None:
        """Give the last tree, if it is still in use, its own copy of its nodes, so
        the next parse may overwrite them."""
        nodes = self.tenant() if self.tenant is not None else None
        self.tenant = None
        if nodes is not None:
            nodes.move_out()


class _LinearNodes:
    """A tree's packed nodes: in its instance's linear memory until the instance parses
    again, then in a ``bytes`` of their own (``FlatAst``'s ``PackedNodes``)."""

    __slots__ = ("__weakref__", "_buffer", "_instance", "nbytes")

    def __init__(self, inst: _Instance, address: int, nbytes: int) -> None:
        self._instance: _Instance | None = inst  # keeps the memory alive
        self._buffer: bytes | memoryview = memoryview(
            (ctypes.c_ubyte * nbytes).from_address(address)
        )
        self.nbytes = nbytes

    def use(self, fn: Callable[[bytes | memoryview], T]) -> T:
        inst = self._instance
        if inst is None:
            return fn(self._buffer)
        with inst.lock:
            return fn(self._buffer)

    def move_out(self) -> None:
        inst = self._instance
        if inst is None:
            return
        with inst.lock:
            self._buffer = bytes(self._buffer)
            self._instance = None


class WasmParser:
    """Parses documents with the compiled ``parser.wasm``; safe to share between threads.

    ``deadline_s`` bounds each parse (to within one epoch tick, 5 ms);
    ``memory_limit_bytes`` bounds each thread's linear memory (input + node array).
    """

    def __init__(
        self,
        *,
        deadline_s: float = 10.0,
        memory_limit_bytes: int = 512 * MIB,
        wasm: bytes | None = None,
    ) -> None:
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        self.deadline_s = deadline_s
        self.memory_limit_bytes = memory_limit_bytes
        self.engine = make_engine()
        code = wasm if wasm is not None else load_module_bytes()
        start = time.perf_counter_ns()
        self.module = wasmtime.Module(self.engine, code)
        self.compile_ms = (time.perf_counter_ns() - start) / 1e6
        self._local = threading.local()
        self._ticks = math.ceil(deadline_s / TICK_S) + 1
        stop = threading.Event()
        ticker = threading.Thread(
            target=_tick, args=(self.engine, stop, TICK_S), name="wasm-epoch", daemon=True
        )
        ticker.start()
        self._finalizer = weakref.finalize(self, stop.set)

    def close(self) -> None:
        """Stop the epoch ticker (also happens when the parser is garbage-collected)."""
        self._finalizer()

    def __enter__(self) -> WasmParser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _instance(self) -> _Instance:
        inst: _Instance | None = getattr(self._local, "instance", None)
        if inst is None:
            store = wasmtime.Store(self.engine)
            store.set_limits(memory_size=self.memory_limit_bytes)
            store.set_epoch_deadline(self._ticks)
            try:
                instance = wasmtime.Instance(store, self.module, [])
            except wasmtime.WasmtimeError as exc:
                raise MemoryLimitExceeded(
                    f"the parser does not start within a {self.memory_limit_bytes} byte "
                    f"memory limit: {exc}"
                ) from None
            exports = instance.exports(store)
            heap_base = exports["__heap_base"]
            assert isinstance(heap_base, wasmtime.Global)
            inst = _Instance(store, exports["memory"], exports["parse"], heap_base.value(store))
            self._local.instance = inst
        return inst

    def memory_bytes(self) -> int:
        """Size of this thread's instance's linear memory (0 before its first parse)."""
        inst: _Instance | None = getattr(self._local, "instance", None)
        return inst.memory.data_len(inst.store) if inst is not None else 0

    def document_memory_bytes(self) -> int:
        """This thread's instance's linear memory past its static data and stack: where
        documents and their nodes go (0 before its first parse). After a parse, what it
        held: the input, its padding, the packed nodes, and what growth left unused."""
        inst: _Instance | None = getattr(self._local, "instance", None)
        return self.memory_bytes() - inst.input_at if inst is not None else 0

    def parse(self, source: str | bytes) -> FlatAst:
        """Parse one document; raises ``ParseError`` for bad syntax, ``DeadlineExceeded``
        or ``MemoryLimitExceeded`` when a guard stops it. The tree reads its packed
        nodes in this thread's linear memory until the thread parses again (then, if
        still referenced, from a copy of its own)."""
        if not self._finalizer.alive:
            raise RuntimeError("this WasmParser is closed (its deadline ticker has stopped)")
        data = as_bytes(source)
        size = len(data)
        inst = self._instance()
        store = inst.store
        inst.vacate()  # before anything writes linear memory
        try:
            self._make_room(inst, size)
            ctypes.memmove(inst.base() + inst.input_at, data, size)
            store.set_epoch_deadline(self._ticks)
            result = inst.parse(store, size, MAX_DEPTH)
        except wasmtime.Trap as trap:
            del self._local.instance  # a trapped instance is left mid-call: start afresh
            if trap.trap_code == wasmtime.TrapCode.INTERRUPT:
                raise DeadlineExceeded(
                    f"parsing a {size} byte document ran past its {self.deadline_s:g} s "
                    "deadline and was stopped"
                ) from None
            raise WasmTrap(f"parser module trapped: {trap.message}") from trap
        base = inst.base()
        status, nodes, count, words, err_pos, msg_len = (
            ctypes.c_int32 * RESULT_WORDS
        ).from_address(base + result)
        if status == 0:
            packed = _LinearNodes(inst, base + nodes, 4 * words)
            inst.tenant = weakref.ref(packed)
            return FlatAst.from_packed(data, count, packed)
        message = ctypes.string_at(base + result + 4 * RESULT_WORDS, msg_len).decode()
        if status == 1:
            raise ParseError(err_pos, message, data)
        # err_pos is how far the parse got when the node array could grow no more.
        raise MemoryLimitExceeded(
            f"the AST of a {size} byte document outgrew the {self._limit_text()} memory "
            f"limit of a parser instance; parsing stopped after byte {err_pos} of {size}"
        )

    def _make_room(self, inst: _Instance, size: int) -> None:
        """Grow linear memory to hold the document and the padding after it."""
        short = inst.input_at + size + INPUT_PADDING - inst.memory.data_len(inst.store)
        if short > 0:
            try:
                inst.memory.grow(inst.store, -(-short // PAGE))
            except wasmtime.WasmtimeError:
                raise MemoryLimitExceeded(
                    f"a {size} byte document does not fit the {self._limit_text()} "
                    "memory limit of a parser instance"
                ) from None

    def _limit_text(self) -> str:
        return f"{self.memory_limit_bytes / MIB:g} MiB"
