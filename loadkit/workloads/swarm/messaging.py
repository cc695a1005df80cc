"""At-least-once messaging on Redis Streams: producers, consumers, reclaim.

A message is one stream field ``m = "<producer>,<seq>,<scheduled_ns>"``. ``seq`` counts
per (producer, swarm) from 0, so the idempotency record is a bitmap per producer and
swarm (bit ``seq``): a message is applied the first time its bit flips, and a redelivery
- a retried XADD whose reply was lost, a reclaimed entry, an apply retried after a
dropped connection - only counts as a duplicate. ``scheduled_ns`` is a
``perf_counter_ns`` (CLOCK_MONOTONIC, system-wide on Linux), so a consumer in another
process measures latency from when the message was *due*, not when it left.

Connection errors are the caller's to retry: a producer re-sends a batch until Redis
answers (same seqs, so nothing is applied twice) or has been silent for
the policy's window (then :class:`loadkit.common.errors.RedisLost`); a
consumer keeps a batch it could not apply and applies it again first. What counts as a
connection error, and when Redis is lost, is :mod:`loadkit.redis_io.retry`.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadkit.redis_io.retry import TRANSIENT, Attempts
from loadkit.redis_io.values import as_text
from loadkit.workloads.swarm.keys import GROUP, SwarmKeys
from loadkit.workloads.swarm.scripts import Call, Scripts

APPLY_CHUNK = 1000  # messages per stream per call (Lua's unpack has a stack limit)
APPLY_CALL_MESSAGES = 2000  # bounds how long one script call holds Redis
FORGET_INTERVAL_S = 5.0  # how often dead consumers are removed from the groups
FORGET_IDLE_FACTOR = 10  # ... once idle this many reclaim_idle_ms with nothing pending


def encode(producer: int, seq: int, scheduled_ns: int) -> str:
    return f"{producer},{seq},{scheduled_ns}"


def decode(raw: bytes | str) -> tuple[int, int, int]:
    text = as_text(raw)
    p, s, t = text.split(",")
    return int(p), int(s), int(t)


def due_count(start_ns: int, rate_per_s: float, now_ns: int, end_ns: int) -> int:
    """Messages due by ``now`` on an open-loop schedule that stops at ``end``."""
    return int((min(now_ns, end_ns) - start_ns) * rate_per_s / 1e9) if now_ns > start_ns else 0


def scheduled_ns(start_ns: int, rate_per_s: float, index: int) -> int:
    return start_ns + int(index * 1e9 / rate_per_s)


@dataclass
class Producer:
    """Sends messages to the swarms round robin; each batch is one pipeline of XADDs."""

    client: Any
    keys: Sequence[SwarmKeys]
    index: int
    stream_cap: int = 200_000
    retry_for_s: float | None = None  # silent this long: RedisLost (None: the policy's)
    on_sent: Callable[[int], None] | None = None
    # paced mode: per message, scheduled time -> Redis acknowledged its XADD
    enqueue_ns: array = field(default_factory=lambda: array("q"))
    seq: list[int] = field(init=False)
    sent: int = 0
    retries: int = 0
    _next_swarm: int = 0

    def __post_init__(self) -> None:
        self.seq = [0] * len(self.keys)
        self._next_swarm = self.index % max(len(self.keys), 1)
        # XADD <stream> MAXLEN ~ <cap> * m <payload>: all but the payload encoded once.
        cap = str(self.stream_cap).encode()
        self._xadd = [(k.stream.encode(), b"MAXLEN", b"~", cap, b"*", b"m") for k in self.keys]

    async def send(self, times_ns: Sequence[int]) -> int:
        """Send one message per time in ``times_ns``; returns once Redis has them all."""
        n_swarms = len(self.keys)
        entries = []
        for t in times_ns:
            s = self._next_swarm
            self._next_swarm = (s + 1) % n_swarms
            entries.append((self._xadd[s], encode(self.index, self.seq[s], t).encode()))
            self.seq[s] += 1
        attempts = Attempts(f"swarm producer {self.index}", self.retry_for_s, max_backoff_s=0.2)
        while True:
            pipe = self.client.pipeline(transaction=False)
            for head, payload in entries:
                pipe.execute_command("XADD", *head, payload)
            try:
                await pipe.execute()
                attempts.ok()
                break
            except TRANSIENT as exc:
                # At-least-once: some of the batch may be in; re-sending the same seqs
                # makes those duplicates, which consumers recognise.
                self.retries += 1
                await asyncio.sleep(attempts.failed(exc))
        self.sent += len(entries)
        if self.on_sent is not None:
            self.on_sent(len(entries))
        return len(entries)

    async def paced(self, rate_per_s: float, duration_s: float, tick_s: float = 0.001) -> int:
        """Open loop: messages are due at ``start + i / rate``; a slow send only makes the
        next batch larger (and its latency, measured from the due time, longer)."""
        start = time.perf_counter_ns()
        end = start + int(duration_s * 1e9)
        done = 0
        while True:
            now = time.perf_counter_ns()
            due = due_count(start, rate_per_s, now, end)
            if due > done:
                times = [scheduled_ns(start, rate_per_s, i) for i in range(done, due)]
                await self.send(times)
                acked = time.perf_counter_ns()
                self.enqueue_ns.extend([acked - t for t in times])
                done = due
            if now >= end:
                return done
            await asyncio.sleep(tick_s)

    async def saturate(
        self,
        duration_s: float,
        in_flight: Callable[[], int],
        window: int,
        batch: int = 500,
        concurrency: int = 2,
    ) -> int:
        """Closed loop at the limit: send batches while fewer than ``window`` messages
        are sent but not yet applied (``in_flight``), so the backlog stays bounded.
        ``concurrency`` batches are in flight at once (encoding one while Redis takes
        another)."""
        end = time.monotonic() + duration_s

        async def loop() -> int:
            done = 0
            while time.monotonic() < end:
                if in_flight() >= window:
                    await asyncio.sleep(0.0005)
                    continue
                done += await self.send([time.perf_counter_ns()] * batch)
            return done

        return sum(await asyncio.gather(*(loop() for _ in range(concurrency))))


def _entry(entry: Any) -> tuple[Any, Any]:
    """(id, payload) of a stream entry: raw ``[id, [b"m", payload]]`` or parsed
    ``(id, {b"m": payload})``."""
    entry_id, fields = entry[0], entry[1]
    if isinstance(fields, dict):
        return entry_id, fields.get(b"m") or fields.get("m")
    return entry_id, fields[1]


@dataclass
class Consumer:
    """One consumer (by name) in every swarm's group; applies through the ``apply`` script.

    Standalone Redis: one blocking XREADGROUP over all streams. Cluster: the streams live
    in different slots, so one non-blocking read per stream in a pipeline.
    """

    client: Any
    scripts: Scripts
    keys: Sequence[SwarmKeys]
    name: str
    cluster: bool = False
    count: int = 200
    block_ms: int = 20
    reclaim_idle_ms: int = 1000
    reclaim_interval_ms: int = 200
    on_applied: Callable[[int], None] | None = None
    applied: int = 0
    duplicates: int = 0
    reclaimed: int = 0
    latencies_ns: array = field(default_factory=lambda: array("q"))
    _unapplied: list[tuple[int, list[Any]]] = field(default_factory=list)
    _reclaim_due: float = 0.0
    _forget_due: float = 0.0
    forgotten: int = 0
    depth: int = 2
    _inflight: set[asyncio.Future[None]] = field(default_factory=set)
    _failed: Exception | None = None
    _reader: Any = None
    _packed_read: Any = None

    def __post_init__(self) -> None:
        self._index = {k.stream: i for i, k in enumerate(self.keys)}
        # The read over every stream is the same command each time: encode it once
        # (with 100 streams, re-encoding its 200 arguments was a tenth of the CPU).
        self._read_args = [
            arg.encode() if isinstance(arg, str) else arg
            for arg in (
                "GROUP", GROUP, self.name, "COUNT", str(self.count), "BLOCK",
                str(self.block_ms), "STREAMS", *(k.stream for k in self.keys),
                *(">" for _ in self.keys),
            )
        ]  # fmt: skip

    async def step(self) -> int:
        """Apply what an earlier step could not, reclaim when due, then read new messages
        and start applying them. Up to ``depth`` applies are in flight while the next
        read goes out, so Redis, this process and the network overlap instead of taking
        turns. Before reclaiming, this consumer's own applies finish: it then claims only
        other consumers' messages."""
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed
        if self._unapplied:
            await self._apply_pending()
        if time.monotonic() >= self._reclaim_due:
            await self.drain()
            self._reclaim_due = time.monotonic() + self.reclaim_interval_ms / 1000
            await self.reclaim()
        batches = await self._read()
        if batches:
            while len(self._inflight) >= self.depth:
                await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.ensure_future(self._apply_in_background(batches))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        elif self.cluster:
            await asyncio.sleep(0.002)
        return sum(len(e) for _, e in batches)

    async def drain(self) -> None:
        """Wait for every apply in flight."""
        while self._inflight:
            await asyncio.wait(set(self._inflight))

    async def _apply_in_background(self, batches: list[tuple[int, list[Any]]]) -> None:
        try:
            await self._apply(batches)
        except Exception as exc:  # kept for the next step: retried there, error raised
            self._unapplied.extend(batches)
            self._failed = exc

    async def _read(self) -> list[tuple[int, list[Any]]]:
        if not self.cluster:
            return self._batches(await self._read_all())
        pipe = self.client.pipeline(transaction=False)
        for k in self.keys:
            pipe.xreadgroup(GROUP, self.name, {k.stream: ">"}, count=self.count)
        out = []
        for reply in await pipe.execute():
            out += self._batches(reply)
        return out

    async def _read_all(self) -> Any:
        """The blocking read over every stream, on a connection of its own that sends a
        command packed once: with 100 streams, packing its 200 arguments through
        redis-py on every read was the largest cost of a coordinator."""
        if self._reader is None:
            reader = self.client.connection_pool.make_connection()
            await reader.connect()
            self._reader = reader
            self._packed_read = reader.pack_command("XREADGROUP", *self._read_args)
        try:
            await self._reader.send_packed_command(self._packed_read, check_health=False)
            return await self._reader.read_response()
        except BaseException:
            reader, self._reader = self._reader, None
            await reader.disconnect()
            raise

    async def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.disconnect()

    def _batches(self, reply: Any) -> list[tuple[int, list[tuple[Any, Any]]]]:
        """(swarm, [(entry id, payload)]) from a raw or a redis-py-parsed read."""
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3 shape
            reply = list(reply.items())
        out = []
        for stream, entries in reply:
            name = as_text(stream)
            if entries:
                out.append((self._index[name], [_entry(e) for e in entries]))
        return out

    async def reclaim(self) -> int:
        """XAUTOCLAIM entries idle longer than ``reclaim_idle_ms`` (their consumer is
        presumed dead) and apply them; returns how many were claimed."""
        pipe = self.client.pipeline(transaction=False)
        for k in self.keys:
            pipe.xautoclaim(
                k.stream, GROUP, self.name, self.reclaim_idle_ms, start_id="0-0", count=1000
            )
        claimed = []
        for i, reply in enumerate(await pipe.execute()):
            entries = [_entry(e) for e in reply[1] if e and e[1]] if reply else []
            if entries:
                claimed.append((i, entries))
        if claimed:
            self._unapplied.extend(claimed)
            await self._apply_pending()
        n = sum(len(e) for _, e in claimed)
        self.reclaimed += n
        if time.monotonic() >= self._forget_due:
            self._forget_due = time.monotonic() + FORGET_INTERVAL_S
            await self.forget_dead()
        return n

    async def forget_dead(self) -> int:
        """Remove consumers that hold nothing and were not seen for a long while (dead
        coordinators) from every group, so groups do not collect them forever. Removing
        one that holds nothing loses nothing: a live one is re-created by its next read."""
        idle_ms = FORGET_IDLE_FACTOR * self.reclaim_idle_ms
        pipe = self.client.pipeline(transaction=False)
        for k in self.keys:
            pipe.xinfo_consumers(k.stream, GROUP)
        doomed = []
        for k, consumers in zip(self.keys, await pipe.execute(), strict=True):
            for c in consumers:
                name = as_text(c["name"])
                if name != self.name and int(c["pending"]) == 0 and int(c["idle"]) > idle_ms:
                    doomed.append((k.stream, name))
        if doomed:
            pipe = self.client.pipeline(transaction=False)
            for stream, name in doomed:
                pipe.xgroup_delconsumer(stream, GROUP, name)
            await pipe.execute()
        self.forgotten += len(doomed)
        return len(doomed)

    async def _apply_pending(self) -> None:
        batches, self._unapplied = self._unapplied, []
        try:
            await self._apply(batches)
        except BaseException:
            self._unapplied = batches + self._unapplied
            raise

    async def _apply(self, batches: list[tuple[int, list[Any]]]) -> None:
        """Apply batches with as few script calls as routing allows: one swarm per call
        on a cluster (its slot), several per call on a single server."""
        per_call = 1 if self.cluster else APPLY_CALL_MESSAGES
        calls: list[Call] = []
        stamps: list[list[list[int]]] = []  # per call, per stream: scheduled times
        keys: list[str] = []
        args: list[Any] = [GROUP]
        times: list[list[int]] = []
        size = 0
        for swarm, entries in batches:
            k = self.keys[swarm]
            for i in range(0, len(entries), APPLY_CHUNK):
                chunk = entries[i : i + APPLY_CHUNK]
                keys.append(k.stream)
                args += [k.prefix, len(chunk)]
                t_list = []
                for entry_id, payload in chunk:
                    p, s, t = decode(payload)
                    args += [entry_id, p, s]
                    t_list.append(t)
                times.append(t_list)
                size += len(chunk)
                if len(keys) >= per_call or size >= APPLY_CALL_MESSAGES:
                    calls.append(("apply", keys, args))
                    stamps.append(times)
                    keys, args, times, size = [], [GROUP], [], 0
        if keys:
            calls.append(("apply", keys, args))
            stamps.append(times)
        replies = await self.scripts.run_many(calls)  # raises on a dropped connection
        now = time.perf_counter_ns()
        applied = 0
        for per_stream, call_times in zip(replies, stamps, strict=True):
            for flags, t_list in zip(per_stream, call_times, strict=True):
                text = as_text(flags)
                for flag, t in zip(text, t_list, strict=True):
                    if flag == "1":
                        applied += 1
                        self.latencies_ns.append(now - t)
                self.duplicates += len(t_list) - text.count("1")
        self.applied += applied
        if self.on_applied is not None and applied:
            self.on_applied(applied)
