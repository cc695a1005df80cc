"""The cross-process message counters survive a writer SIGKILLed at any moment.

A coordinator is killed mid-run on purpose (recovery is measured that way); a counter
guarded by a lock that the dead process held would freeze its replacement and the
parent's reads for good."""

from __future__ import annotations

import os
import signal
import time

from loadkit.workloads.swarm.procs import Counters, context


def _count_forever(counters: Counters, index: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counters.add_applied(index, 1)


def _count_once(counters: Counters, index: int) -> None:
    counters.add_applied(index, 1)


def test_a_writer_killed_mid_count_leaves_the_counter_usable_by_its_successor() -> None:
    ctx = context()
    counters = Counters(producers=1, coordinators=2)
    for _ in range(5):
        writer = ctx.Process(target=_count_forever, args=(counters, 0, 20.0), daemon=True)
        writer.start()
        time.sleep(0.3)
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(10)
        before = counters.applied()
        successor = ctx.Process(target=_count_once, args=(counters, 0), daemon=True)
        successor.start()
        successor.join(15)
        if successor.exitcode is None:
            successor.kill()
        assert successor.exitcode == 0, "the successor hung on the dead writer's counter"
        assert counters.applied() == before + 1
    assert counters.applied() > 5


def test_each_writer_counts_in_its_own_slot_and_readers_see_the_sum() -> None:
    ctx = context()
    counters = Counters(producers=2, coordinators=2)
    procs = [ctx.Process(target=_count_once, args=(counters, i)) for i in (0, 1, 1)]
    for p in procs:
        p.start()
        p.join(15)  # one writer per slot at a time
        assert p.exitcode == 0
    counters.add_sent(1, 7)
    assert counters.applied() == 3
    assert counters.sent() == 7
    assert counters.in_flight() == 4
