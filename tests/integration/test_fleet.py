"""The agent fleet against a real redis-server: spawning, exactly-once allocation, crash
reclaim, stale results, retirement, cleanup and autoscaling.

Async code is driven with ``asyncio.run`` from plain tests (no pytest-asyncio), each
scenario bounded by :func:`run`'s deadline so a hang fails instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from loadkit.workloads.fleet.autoscaler import AutoscalerConfig
from loadkit.workloads.fleet.host import AgentHost, Task, Work, encode_task_body
from loadkit.workloads.fleet.manager import FleetManager
from loadkit.workloads.fleet.scenarios import open_loop, wait_completed
from loadkit.workloads.fleet.store import FleetStore, prefix_for

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def eventually(predicate: Any, timeout_s: float, what: str) -> None:
    """Await until ``predicate()`` (sync or async) is true, keeping the loop running."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


async def results(store: FleetStore) -> list[tuple[str, str]]:
    """(task id, agent id) of every entry in the fleet's results stream, in order."""
    entries = await store.client.xrange(store.key("results"))
    return [(fields[b"t"].decode(), fields[b"a"].decode()) for _id, fields in entries]


async def fleet_keys(store: FleetStore) -> list[str]:
    return [k.decode() async for k in store.client.scan_iter(match=store.prefix + ":*")]


class Completions:
    """An ``on_complete`` hook: which agent finished which task, and when."""

    def __init__(self) -> None:
        self.by_task: Counter[str] = Counter()
        self.agent_of: dict[str, str] = {}
        self.finishes: defaultdict[str, list[int]] = defaultdict(list)

    def __call__(self, task: Task, agent_id: str) -> None:
        self.by_task[task.id] += 1
        self.agent_of[task.id] = agent_id
        self.finishes[agent_id].append(time.perf_counter_ns())


# --- spawning and exactly-once allocation ---------------------------------------------


def test_thousand_agents_each_task_allocated_and_completed_exactly_once(
    redis_url: str, fleet_name: str
) -> None:
    agents, tasks, work_ms = 1000, 3000, 20

    async def scenario() -> None:
        manager = await FleetManager(redis_url, fleet_name).start()
        store = manager.store
        try:
            latencies = await manager.spawn(agents)
            assert len(latencies) == agents and min(latencies) > 0
            counts = await store.counts()
            assert counts["agents"] == agents and counts["idle"] == agents
            assert await store.client.zcard(store.key("leases")) == agents
            assert len(await store.agent_keys()) == agents
            assert manager.host.size == agents
            assert all(a.startswith(manager.host.host_id + "-") for a in manager.host.agents)

            hook = Completions()
            manager.host.on_complete = hook
            assigned, queued = await manager.submit(tasks, Work(sleep_ms=work_ms))
            assert (assigned, queued) == (agents, tasks - agents)
            assert await wait_completed(manager, tasks, timeout_s=30) == tasks

            done = await results(store)
            ids = [tid for tid, _agent in done]
            assert len(ids) == tasks
            assert Counter(ids).most_common(1)[0][1] == 1  # no task completed twice
            assert set(ids) == {str(i) for i in range(1, tasks + 1)}  # none missing
            # Each task ran on exactly one agent, the one Redis recorded.
            assert len(hook.by_task) == tasks and set(hook.by_task.values()) == {1}
            assert dict(done) == hook.agent_of
            # No agent ran two tasks at once: equal-length tasks on one agent finish at
            # least one task length apart (overlapping runs would finish closer).
            slack_ns = 1_000_000
            for agent_id, finishes in hook.finishes.items():
                finishes.sort()
                gaps = [b - a for a, b in itertools.pairwise(finishes)]
                assert all(g >= work_ms * 1_000_000 - slack_ns for g in gaps), agent_id
            assert len(hook.finishes) == agents  # the first wave reached every agent

            counts = await store.counts()
            assert counts["submitted"] == counts["completed"] == tasks
            assert counts["stale"] == 0 and counts["pending"] == 0
            assert counts["idle"] == agents and manager.host.busy == 0
            assert manager.host.completed == tasks and manager.host.stale == 0
            # Allocation latency was measured for every task.
            assert len(manager.host.alloc_latency) == tasks
            assert manager.host.alloc_latency.summary()["p50"] > 0
        finally:
            await manager.close()
        assert await fleet_keys(store) == []

    run(scenario())


def test_tasks_wait_for_agents_and_new_agents_take_them(redis_url: str, fleet_name: str) -> None:
    async def scenario() -> None:
        async with FleetManager(redis_url, fleet_name) as manager:
            assert await manager.submit(30, Work(sleep_ms=1)) == (0, 30)
            assert (await manager.store.counts())["pending"] == 30
            await manager.spawn(10)  # registration hands queued work out at once
            assert await wait_completed(manager, 30, timeout_s=10) == 30
            ids = [tid for tid, _ in await results(manager.store)]
            assert sorted(ids, key=int) == [str(i) for i in range(1, 31)]
            # FIFO: the queue is served in submission order.
            assert ids[:10] == [str(i) for i in range(1, 11)]

    run(scenario())


# --- crash, reclaim and stale results -------------------------------------------------


@pytest.mark.slow
def test_crashed_agents_task_is_reclaimed_and_a_late_result_is_stale(
    redis_url: str, fleet_name: str
) -> None:
    async def scenario() -> None:
        async with FleetManager(
            redis_url, fleet_name, lease_ms=1000, reap_interval_s=0.05
        ) as manager:
            store = manager.store
            hook = Completions()
            manager.host.on_complete = hook
            await manager.spawn(10)
            await manager.submit(3, Work(sleep_ms=300))
            await eventually(lambda: manager.host.busy == 3, 5, "3 busy agents")
            holders = {a.id: a.task_id for a in manager.host.agents.values() if a.task_id}
            victim, victim_task = sorted(holders.items())[0]
            assert victim_task is not None
            manager.host.crash(victim)
            crashed_at = time.monotonic()

            assert await wait_completed(manager, 3, timeout_s=10) == 3
            # Not before the lease ran out: nobody knew of the crash earlier.
            assert time.monotonic() - crashed_at >= 0.5
            assert manager.reaped == [victim] and manager.reclaimed == 1
            done = dict(await results(store))
            assert sorted(done, key=int) == ["1", "2", "3"]
            assert done[victim_task] != victim
            assert hook.agent_of[victim_task] == done[victim_task]
            assert victim not in {
                m.decode() for m in await store.client.smembers(store.key("agents"))
            }
            assert await store.client.exists(store.key("agent", victim)) == 0

            # The crashed agent "comes back" with its result: refused, counted as stale.
            assert await store.complete([(victim, victim_task, "late")]) == [0]
            counts = await store.counts()
            assert counts["completed"] == 3 and counts["stale"] == 1
            assert counts["reaped"] == 1 and counts["reclaimed"] == 1
            assert [t for t, _ in await results(store)].count(victim_task) == 1

    run(scenario())


@pytest.mark.slow
def test_a_stalled_hosts_result_arrives_late_and_is_rejected(
    redis_url: str, fleet_name: str
) -> None:
    """A host whose event loop stalls (CPU-bound work) misses its heartbeats; the reaper
    gives its task to another host, and the stalled host's own result is refused."""
    ready, finish = threading.Event(), threading.Event()
    slow: dict[str, Any] = {}

    def slow_host() -> None:
        async def main() -> None:
            host = await AgentHost(redis_url, fleet_name, host_id="slow", lease_ms=400).start()
            hook = Completions()
            host.on_complete = hook
            await host.spawn(1)
            ready.set()
            while not finish.is_set():
                await asyncio.sleep(0.01)
            slow.update(stale=host.stale, completed=host.completed, ran=dict(hook.agent_of))
            slow["size"] = host.size
            await host.stop()

        asyncio.run(main())

    thread = threading.Thread(target=slow_host, daemon=True)

    async def scenario() -> None:
        async with FleetManager(
            redis_url, fleet_name, lease_ms=5000, reap_interval_s=0.05
        ) as manager:
            thread.start()
            await eventually(ready.is_set, 10, "the slow host")
            # Only the slow host's agent is idle: the task goes there. 1 s of CPU with a
            # 0.4 s lease: its heartbeats stop while it works.
            assert await manager.submit(1, Work(sleep_ms=10, cpu_us=1_000_000)) == (1, 0)
            await manager.spawn(2)
            assert await wait_completed(manager, 1, timeout_s=15) == 1
            store = manager.store
            await eventually(
                _stale_is(store, 1), 10, "the stalled host's late result to be refused"
            )
            finish.set()
            await asyncio.to_thread(thread.join, 10)
            assert not thread.is_alive()
            done = await results(store)
            assert len(done) == 1
            task_id, agent = done[0]
            assert agent.startswith(manager.host.host_id + "-")
            assert manager.reaped == ["slow-0"]
            # The slow agent did run the task (at-least-once execution) but its result
            # was not recorded (exactly-once completion).
            assert slow["ran"] == {task_id: "slow-0"}
            assert slow["stale"] == 1 and slow["completed"] == 0 and slow["size"] == 0
            counts = await store.counts()
            assert counts["completed"] == 1 and counts["stale"] == 1

    try:
        run(scenario())
    finally:
        finish.set()
        thread.join(10)


@pytest.mark.slow
def test_a_host_forgets_idle_agents_reaped_while_its_loop_stalled(
    redis_url: str, fleet_name: str
) -> None:
    """Idle agents whose leases ran out during a stall are gone from Redis for good; the
    host must not keep counting them (the autoscaler reads ``size`` as capacity)."""
    ready, stalled, finish = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def stalling_host() -> None:
        async def main() -> None:
            host = await AgentHost(redis_url, fleet_name, host_id="stall", lease_ms=400).start()
            await host.spawn(3)
            ready.set()
            await asyncio.sleep(0.2)
            time.sleep(1.0)  # the event loop is blocked: no heartbeats (a GC pause, a bug)
            stalled.set()
            deadline = time.monotonic() + 3
            while host.size and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            seen["size"] = host.size
            while not finish.is_set():
                await asyncio.sleep(0.01)
            await host.stop()

        asyncio.run(main())

    thread = threading.Thread(target=stalling_host, daemon=True)

    async def scenario() -> None:
        async with FleetManager(redis_url, fleet_name, reap_interval_s=0.05) as manager:
            thread.start()
            await eventually(ready.is_set, 10, "the host to spawn")
            await eventually(stalled.is_set, 10, "the stall to end")
            await eventually(lambda: "size" in seen, 10, "the host to settle")
            assert sorted(manager.reaped) == ["stall-0", "stall-1", "stall-2"]
            assert seen["size"] == 0
            finish.set()
            await asyncio.to_thread(thread.join, 10)
            await manager.stop()
            assert await manager.store.leftovers() == 0

    try:
        run(scenario())
    finally:
        finish.set()
        thread.join(10)


def _stale_is(store: FleetStore, n: int) -> Any:
    async def check() -> bool:
        return (await store.counts())["stale"] == n

    return check


# --- retiring, stopping, cleanup ------------------------------------------------------


def test_retire_spares_busy_agents_and_leaves_no_keys(redis_url: str, fleet_name: str) -> None:
    async def scenario() -> None:
        manager = await FleetManager(redis_url, fleet_name).start()
        store = manager.store
        try:
            await manager.spawn(100)
            await manager.submit(4, Work(sleep_ms=300))
            await eventually(lambda: manager.host.busy == 4, 5, "4 busy agents")
            assert await manager.host.retire(0) == 0
            assert await manager.host.retire(-3) == 0
            assert await manager.host.retire(100) == 96  # busy agents are not interrupted
            assert manager.host.size == 4 and manager.host.busy == 4
            counts = await store.counts()
            assert counts["agents"] == 4 and counts["idle"] == 0
            assert len(await store.agent_keys()) == 4
            assert await wait_completed(manager, 4, timeout_s=10) == 4
            await eventually(lambda: manager.host.busy == 0, 5, "agents idle again")
            assert await manager.host.retire(100) == 4
            assert manager.host.size == 0
            assert await store.agent_keys() == []
            client = store.client
            assert await client.scard(store.key("agents")) == 0
            assert await client.zcard(store.key("leases")) == 0
            assert await client.llen(store.key("idle")) == 0
            await manager.stop()
            assert await store.leftovers() == 0
            # stop() keeps the counters and results for inspection; close() purges.
            assert (await store.counts())["completed"] == 4
        finally:
            await manager.close()
        assert await fleet_keys(store) == []

    run(scenario())


def test_stop_hands_held_and_queued_tasks_back_without_loss(
    redis_url: str, fleet_name: str
) -> None:
    """A stopping host finishes what runs, takes nothing new, and requeues what it held."""

    async def scenario() -> None:
        async with FleetManager(redis_url, fleet_name) as manager:
            store = manager.store
            await manager.spawn(5)
            await manager.submit(100, Work(sleep_ms=100))
            await eventually(lambda: manager.host.busy == 5, 5, "5 busy agents")
            t0 = time.monotonic()
            requeued = await manager.host.stop(drain_timeout_s=5)
            took = time.monotonic() - t0
            counts = await store.counts()
            # The five running tasks were finished, none started after the stop.
            assert counts["completed"] == 5, counts
            assert took < 1.5
            assert counts["completed"] + counts["pending"] == 100
            assert requeued == 5 and counts["agents"] == 0
            assert await store.leftovers() == 0
            # A new host picks the queue up from where the old one left it.
            other = await AgentHost(redis_url, fleet_name, host_id="next").start()
            try:
                await other.spawn(20)
                assert await wait_completed(manager, 100, timeout_s=10) == 100
            finally:
                await other.stop()
            ids = [t for t, _ in await results(store)]
            assert sorted(ids, key=int) == [str(i) for i in range(1, 101)]

    run(scenario())


def test_stop_with_nothing_running_returns_at_once(redis_url: str, fleet_name: str) -> None:
    async def scenario() -> None:
        async with FleetManager(redis_url, fleet_name) as manager:
            await manager.spawn(50)
            t0 = time.monotonic()
            assert await manager.host.stop() == 0
            assert time.monotonic() - t0 < 1
            assert await manager.store.leftovers() == 0
            assert await manager.host.stop() == 0  # idempotent

    run(scenario())


def test_a_retried_result_whose_reply_was_lost_is_recorded_once(
    redis_url: str, fleet_name: str
) -> None:
    """A host that lost the reply to its results (connection dropped) sends the batch
    again: Redis recognises each retry and answers with the agent's current state."""

    async def scenario() -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(redis_url)
        try:
            store = FleetStore(client, fleet_name)
            assert await store.register("h0", ["h0-0", "h0-1"], lease_ms=5000) == []
            body = encode_task_body(Work(sleep_ms=1), "x", 0)
            assert await store.submit([body] * 3) == (2, 1)
            held = {}
            for agent in ("h0-0", "h0-1"):
                payload = await client.hget(store.key("agent", agent), "task")
                held[agent] = payload.decode().split("\t", 1)[0]
            batch = [(agent, tid, "ok") for agent, tid in sorted(held.items())]
            first = await store.complete(batch)
            # One agent took the queued third task, the other went idle.
            assert sorted(map(type, first), key=str) == [int, str]
            assert await store.complete(batch) == first
            counts = await store.counts()
            assert counts["completed"] == 2 and counts["stale"] == 0
            assert sorted(t for t, _ in await results(store)) == sorted(held.values())
            assert await client.llen(store.key("idle")) == 1
        finally:
            await FleetStore(client, fleet_name).purge()
            await client.aclose()

    run(scenario())


def test_retried_submissions_registrations_and_retirements_take_effect_once(
    redis_url: str, fleet_name: str
) -> None:
    """Each script is sent again as a retry would after its reply was lost: the second
    run changes nothing and answers as the first did."""

    async def scenario() -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(redis_url)
        store = FleetStore(client, fleet_name)
        try:
            body = encode_task_body(Work(sleep_ms=1), "x", 0)
            # submit: the same request token is one submission
            args = [store.prefix, "tok1", body, body]
            submit = store._scripts["submit"]
            first = await submit(keys=[store.key("seq")], args=args)
            assert await submit(keys=[store.key("seq")], args=args) == first == [0, 2]
            assert (await store.counts())["submitted"] == 2
            assert await client.llen(store.key("pending")) == 2
            # register: an agent registered again keeps the task it was handed
            started = await store.register("h0", ["h0-0", "h0-1", "h0-2"], lease_ms=5000)
            assert len(started) == 2
            assert await store.register("h0", ["h0-0", "h0-1", "h0-2"], lease_ms=5000) == started
            idle = [a.decode() for a in await client.lrange(store.key("idle"), 0, -1)]
            assert idle == ["h0-2"]  # once, not twice
            # retire: an agent already gone counts as retired, a busy one is spared
            assert await store.retire(["h0-2"]) == ["h0-2"]
            assert await store.retire(["h0-2", "h0-0"]) == ["h0-2"]
            assert (await store.counts())["agents"] == 2
        finally:
            await store.purge()
            await client.aclose()

    run(scenario())


def test_a_task_whose_inbox_message_went_down_with_the_connection_still_runs(
    redis_url: str, fleet_name: str, sync_redis: Any
) -> None:
    """The state Redis is in when a host popped an inbox message but the reply was lost
    with its connection: the agent holds the task in Redis, no message is left. Once
    the host's connections are killed, it reads back what its idle agents hold."""

    async def scenario() -> None:
        host = await AgentHost(redis_url, fleet_name, lease_ms=5000).start()
        done = Completions()
        host.on_complete = done
        try:
            await host.spawn(1)
            (agent,) = host.agents
            payload = "77\t" + encode_task_body(Work(sleep_ms=1), "lost", time.perf_counter_ns())
            key = host.store.key("agent", agent)
            sync_redis.lrem(host.store.key("idle"), 1, agent)
            sync_redis.hset(key, mapping={"state": "busy", "task": payload})
            await asyncio.sleep(0.2)
            assert host.agents[agent].state == "idle"  # nothing told the host
            sync_redis.client_kill_filter(_type="normal", skipme=True)
            await eventually(lambda: "77" in done.by_task, 10, "the read-back task to run")
            await eventually(lambda: host.completed == 1, 10, "its result to be recorded")
            assert done.by_task["77"] == 1 and done.agent_of["77"] == agent
            assert (await host.store.counts())["completed"] == 1
        finally:
            await host.stop()
            for k in sync_redis.scan_iter(match=host.store.prefix + ":*"):
                sync_redis.delete(k)

    run(scenario())


def test_close_removes_everything_under_the_fleet_prefix(
    redis_url: str, fleet_name: str, sync_redis: Any
) -> None:
    neighbour = fleet_name + "_neighbour"

    async def scenario() -> None:
        async with FleetManager(redis_url, neighbour) as other:
            await other.spawn(3)
            manager = await FleetManager(redis_url, fleet_name).start()
            await manager.spawn(20)
            await manager.submit(10, Work(sleep_ms=1))
            await wait_completed(manager, 10, timeout_s=10)
            await manager.submit(50, Work(sleep_ms=800))  # some still running, some queued
            prefix = manager.store.prefix
            assert len(await fleet_keys(manager.store)) > 5
            await manager.close()
            assert sync_redis.keys(prefix + ":*") == []
            assert list(sync_redis.scan_iter(match=prefix + ":*")) == []
            # Only this fleet: the neighbour is untouched.
            assert (await other.store.counts())["agents"] == 3

    run(scenario())


def test_close_without_purge_keeps_counters_but_no_agent_state(
    redis_url: str, fleet_name: str
) -> None:
    async def scenario() -> None:
        manager = await FleetManager(redis_url, fleet_name).start()
        store = FleetStore(manager.store.client, fleet_name)
        await manager.spawn(10)
        await manager.submit(10, Work(sleep_ms=1))
        await wait_completed(manager, 10, timeout_s=10)
        await manager.stop()
        await manager.close(purge=False)
        from redis.asyncio import Redis

        client = Redis.from_url(redis_url)
        try:
            store = FleetStore(client, fleet_name)
            assert await store.leftovers() == 0
            assert (await store.counts())["completed"] == 10
            assert await client.xlen(store.key("results")) == 10
            assert await store.purge() >= 3
            assert await fleet_keys(store) == []
        finally:
            await client.aclose()

    run(scenario())


# --- autoscaling ----------------------------------------------------------------------


@pytest.mark.slow
def test_autoscaler_scales_up_under_a_load_step_and_back_down(
    redis_url: str, fleet_name: str
) -> None:
    config = AutoscalerConfig(
        min_agents=2,
        max_agents=300,
        service_time_s=0.05,
        target_utilization=0.7,
        horizon_s=1.0,
        scale_up_cooldown_s=0.2,
        scale_down_cooldown_s=0.5,
    )
    high_rate = 800
    needed = math.ceil(high_rate * config.service_time_s / config.target_utilization)

    async def scenario() -> None:
        manager = FleetManager(
            redis_url, fleet_name, lease_ms=2000, autoscaler=config, autoscale_interval_s=0.1
        )
        async with manager:
            await manager.spawn(config.min_agents)
            trace: list[tuple[float, int]] = []
            schedule = [(0.5, 10), (2.0, high_rate), (2.5, 10)]
            submitted = await open_loop(
                manager,
                schedule,
                Work(sleep_ms=50),
                on_tick=lambda t: trace.append((t, manager.host.size)),
            )
            assert await wait_completed(manager, submitted, timeout_s=10) == submitted
            ids = [t for t, _ in await results(manager.store)]
            assert len(ids) == len(set(ids)) == submitted
            log = manager.scaling_log
            await manager.stop()
            assert await manager.store.leftovers() == 0

        sizes_in_step = [n for t, n in trace if 0.5 <= t <= 2.5]
        peak = max(n for _, n in trace)
        final = trace[-1][1]
        reasons = Counter(e.reason for e in log)
        assert reasons["scale_up"] >= 1 and reasons["scale_down"] >= 1
        assert max(sizes_in_step) >= needed, (needed, peak)
        assert peak <= config.max_agents
        assert final < peak / 2, (final, peak)
        # Scaled up during the step, down after it.
        first_up = next(e.t for e in log if e.reason == "scale_up")
        last_down = max(e.t for e in log if e.reason == "scale_down")
        assert first_up < last_down
        assert all(config.min_agents <= e.desired <= config.max_agents for e in log)

    run(scenario())


# --- bad input ------------------------------------------------------------------------


def test_negative_counts_are_refused(redis_url: str, fleet_name: str) -> None:
    async def scenario() -> None:
        async with FleetManager(redis_url, fleet_name) as manager:
            with pytest.raises(ValueError, match="agent count"):
                await manager.spawn(-1)
            with pytest.raises(ValueError, match="task count"):
                await manager.submit(-5, Work())
            assert await manager.spawn(0) == []
            assert await manager.submit(0, Work()) == (0, 0)
            counts = await manager.store.counts()
            assert counts["agents"] == 0 and counts["submitted"] == 0

    run(scenario())


def test_host_and_work_validation(redis_url: str) -> None:
    with pytest.raises(ValueError):
        Work(sleep_ms=-1)
    with pytest.raises(ValueError):
        Work(cpu_us=-1)
    with pytest.raises(ValueError, match="lease_ms"):
        AgentHost(redis_url, "f", lease_ms=50)
    with pytest.raises(ValueError, match="host_id"):
        AgentHost(redis_url, "f", host_id="a-b")
    for bad in ("", "a{b", "a}b", "a b", "a\tb"):
        with pytest.raises(ValueError, match="invalid fleet name"):
            prefix_for(bad)

    async def not_started() -> None:
        host = AgentHost(redis_url, "f")
        try:
            with pytest.raises(RuntimeError, match="not started"):
                await host.spawn(1)
        finally:
            await host.client.aclose()
            await host._blocking.aclose()

    run(not_started())


def test_task_payload_round_trip() -> None:
    body = encode_task_body(Work(sleep_ms=2.5, cpu_us=7), "a\tb", submit_ns=123)
    task = Task.parse("42\t" + body)
    assert task == Task("42", 123, 2500, 7, "a\tb")
