"""The swarm against a real redis-server: fencing, exactly-once application, reclaim,
recovery after a coordinator kill and a Redis SIGKILL, connections killed mid-run, and
bad input. Swarm runs are isolated by run name (every key carries it)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
import redis
from helpers import child_env, run_loadkit

from loadkit.common.errors import UsageError
from loadkit.redis_io.server import free_port
from loadkit.workloads.swarm import scripts as swarm_scripts
from loadkit.workloads.swarm.config import SwarmConfig
from loadkit.workloads.swarm.coordinator import Coordinator, connect, create_swarms
from loadkit.workloads.swarm.election import Candidacy, ElectionBoard, fenced_write, snapshot
from loadkit.workloads.swarm.keys import GROUP
from loadkit.workloads.swarm.messaging import Consumer, Producer
from loadkit.workloads.swarm.rig import SwarmRig
from loadkit.workloads.swarm.scenarios import (
    measure_churn,
    measure_coordinator_kill,
    measure_fencing,
    measure_redis_kill,
)
from loadkit.workloads.swarm.scripts import CHUNK, Scripts

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def _config(url: str, **kw: Any) -> SwarmConfig:
    defaults: dict[str, Any] = {
        "run": "t" + secrets.token_hex(4),
        "swarms": 10,
        "members": 4,
        "coordinators": 1,
        "producers": 1,
        "lease_ms": 200,
        "reclaim_idle_ms": 200,
        "reclaim_interval_ms": 50,
        "lifetime_s": 60,
    }
    return SwarmConfig(url=url, **(defaults | kw))


async def _setup(config: SwarmConfig) -> tuple[Any, Scripts]:
    client = connect(config, f"{config.run}-test")
    scripts = Scripts(client)
    await scripts.load()
    await create_swarms(scripts, config, "test", config.member_ids())
    return client, scripts


def test_a_paused_leaders_writes_are_rejected_and_the_new_leaders_are_not(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    config = _config(redis_url, swarms=1, lease_ms=50)
    k = config.keys[0]

    async def scenario() -> None:
        client, scripts = await _setup(config)
        try:
            a, b = Candidacy(k, "a", 50), Candidacy(k, "b", 50)
            a.on_reply("acquire", await scripts.call(*a.call("acquire")), 0, 1)
            refused = await scripts.call(*b.call("acquire"))
            assert int(refused[0]) == 0 and 0 < int(refused[1]) <= 50
            assert await scripts.call(*fenced_write(k, a.token, {"x": "a1"})) == 1
            await asyncio.sleep(0.08)  # a is paused past its lease
            b.on_reply("acquire", await scripts.call(*b.call("acquire")), 0, 1)
            assert b.leading and b.token == a.token + 1
            # a wakes up: renew, snapshot and write with its old token all fail.
            assert await scripts.call(*a.call("renew")) == 0
            assert await scripts.call(*snapshot(k, a.token)) == 0
            assert await scripts.call(*fenced_write(k, a.token, {"x": "a2"})) == 0
            assert await scripts.call(*fenced_write(k, b.token, {"x": "b1"})) == 1
            with pytest.raises(redis.ResponseError, match="never granted"):
                await scripts.call(*fenced_write(k, b.token + 5, {"x": "forged"}))
        finally:
            await client.aclose()

    run(scenario())
    state = sync_redis.hgetall(k.state)
    assert state["x"] == "b1"
    assert state["stale_rejected"] == "2"
    assert state["leader"] == "b"


class _CountedScripts(Scripts):
    """The real scripts on the real server, noting how many calls each pipeline held."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.pipelines: list[int] = []

    async def run_many(self, calls):  # type: ignore[no-untyped-def]
        self.pipelines.append(len(calls))
        return await super().run_many(calls)


def test_a_board_of_many_candidates_sends_its_calls_a_few_dozen_a_pipeline(
    redis_url: str,
) -> None:
    """Sixty swarms of three: the first tick's 180 acquires go in pipelines of at most
    CHUNK calls, one grant per swarm, every reply to its own caller; the next ticks
    renew only the leaders' leases, in pipelines as small."""
    config = _config(redis_url, swarms=60, members=3, lease_ms=300)

    async def scenario() -> None:
        client, _ = await _setup(config)
        scripts = _CountedScripts(client)
        try:
            board = ElectionBoard(
                scripts,
                [Candidacy(k, m, config.lease_ms) for k in config.keys for m in ("a", "b", "c")],
            )
            assert await board.tick() == 60
            assert scripts.pipelines == [CHUNK] * (180 // CHUNK) + [180 % CHUNK]
            leaders = board.leaders()
            assert sorted(c.keys.swarm for c in leaders) == list(range(60))
            tokens = await asyncio.gather(*(client.get(c.keys.epoch) for c in leaders))
            assert [int(t) for t in tokens] == [c.token for c in leaders]
            scripts.pipelines.clear()
            await asyncio.sleep(config.lease_ms / 3 / 1000 + 0.02)
            assert await board.tick() == 0  # renewals (and acquires refused): no new grant
            assert scripts.pipelines and max(scripts.pipelines) <= CHUNK
            assert len(board.leaders()) == 60 and board.leaders() == leaders
        finally:
            await client.aclose()

    run(scenario())


def test_fencing_holds_across_hundreds_of_injected_pauses(redis_url: str) -> None:
    m = run(measure_fencing(redis_url, "t" + secrets.token_hex(4), swarms=20, rounds=10, ttl_ms=50))
    assert m["injected_pauses"] == 200
    assert m["failovers_failed"] == 0
    assert m["stale_writes_accepted"] == 0
    assert m["stale_writes_rejected"] == 3 * 200  # renew, snapshot and write per pause
    assert m["stale_rejections_counted_by_redis"] == 2 * 200
    assert 50 <= m["failover_p50_ms"] < 1000  # bounded below by the lease


def test_the_fencing_measurement_catches_a_fence_that_lets_stale_writes_in(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: with a write script that ignores the token, the same
    measurement reports every stale write as accepted."""
    broken = "redis.call('HSET', KEYS[1], unpack(ARGV, 3))\nreturn 1\n"
    monkeypatch.setitem(swarm_scripts.SOURCES, "fenced_hset", broken)
    m = run(measure_fencing(redis_url, "t" + secrets.token_hex(4), swarms=5, rounds=3, ttl_ms=50))
    assert m["injected_pauses"] == 15
    assert m["stale_writes_accepted"] == 15  # the write; snapshot and renew still refuse


def test_redelivered_messages_are_applied_exactly_once(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    config = _config(redis_url, swarms=2)

    async def scenario() -> tuple[int, int, int, int]:
        client, scripts = await _setup(config)
        try:
            producer = Producer(client, config.keys, index=0)
            await producer.send([0] * 100)
            # The same seqs again: a retried XADD whose first reply was lost.
            producer.seq = [0, 0]
            await producer.send([0] * 100)
            dead = Consumer(client, scripts, config.keys, "dead", reclaim_idle_ms=0)
            taken = await dead._read()  # read, then "dies" before applying
            live = Consumer(client, scripts, config.keys, "live", reclaim_idle_ms=0)
            await live.reclaim()  # takes over what "dead" held
            while await live.step():
                pass
            await live.drain()
            dead._unapplied = taken  # the dead one wakes up and applies its old batch
            await dead._apply_pending()
            await dead.close()
            await live.close()
            return len(taken), live.applied, live.duplicates, dead.duplicates
        finally:
            await client.aclose()

    taken, applied, dup_live, dup_dead = run(scenario())
    assert taken > 0
    assert applied == 100
    assert dup_live == 100  # the re-sent copies
    assert dup_dead == 200  # everything the dead one held was applied already
    total = sum(int(sync_redis.hget(k.state, "applied")) for k in config.keys)
    bits = sum(sync_redis.bitcount(k.seen(0)) for k in config.keys)
    assert total == bits == 100
    for k in config.keys:  # nothing pending; acknowledged entries were trimmed
        assert sync_redis.xpending(k.stream, GROUP)["pending"] == 0


def test_streams_are_trimmed_once_everyone_acknowledged_but_never_past_pending(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    config = _config(redis_url, swarms=1)
    k = config.keys[0]

    async def scenario() -> None:
        client, scripts = await _setup(config)
        try:
            producer = Producer(client, config.keys, index=0)
            await producer.send([0] * 500)
            slow = Consumer(client, scripts, config.keys, "slow", count=10)
            held = await slow._read()  # 10 entries stay pending with "slow"
            fast = Consumer(client, scripts, config.keys, "fast", count=1000)
            await fast.step()
            await fast.drain()
            assert fast.applied == 490
            # Everything after the oldest pending entry may go; that entry must stay.
            assert sync_redis.xlen(k.stream) == 500
            slow._unapplied = held
            await slow._apply_pending()
            await producer.send([0] * 500)
            await fast.step()
            await fast.drain()
            await slow.close()
            await fast.close()
        finally:
            await client.aclose()

    run(scenario())
    assert sync_redis.xpending(k.stream, GROUP)["pending"] == 0
    assert sync_redis.xlen(k.stream) < 200  # trimmed by whole stream nodes (~)


def test_a_coordinator_reclaims_what_a_dead_consumer_held(redis_url: str) -> None:
    config = _config(redis_url, swarms=3)

    async def scenario() -> tuple[int, int]:
        client, scripts = await _setup(config)
        coordinator = None
        try:
            await Producer(client, config.keys, index=0).send([0] * 60)
            dead = Consumer(client, scripts, config.keys, "dead")
            held = sum(len(e) for _, e in await dead._read())
            await dead.close()
            coordinator = await Coordinator(config, 0).start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while coordinator.consumer.applied < 60 and loop.time() < deadline:
                await asyncio.sleep(0.02)
            return held, coordinator.consumer.reclaimed
        finally:
            if coordinator is not None:
                await coordinator.stop()
            await client.aclose()

    held, reclaimed = run(scenario())
    assert held == 60
    assert reclaimed == 60


def _rig_case(url: str, measure: Any, **kw: Any) -> tuple[dict, dict]:
    async def scenario() -> tuple[dict, dict]:
        rig = await SwarmRig(_config(url, **kw)).start()
        try:
            led, _ = await rig.wait_leaders()
            assert led == rig.config.swarms
            metrics = await measure(rig)
            return metrics, await rig.verify()
        finally:
            await rig.close()

    return run(scenario(), timeout_s=90)


@pytest.mark.slow
def test_a_killed_coordinator_is_replaced_and_every_swarm_recovers(redis_url: str) -> None:
    m, check = _rig_case(redis_url, lambda rig: measure_coordinator_kill(rig, 1000, 1.5, 0.5))
    assert m["recovery_coordinator_ratio"] == 1.0
    assert 0 < m["recovery_coordinator_s"] < 10
    assert check["lost"] == 0
    assert check["applied"] == check["sent"] == 1500


@pytest.mark.slow
def test_connections_killed_mid_run_lose_nothing(redis_url: str) -> None:
    m, check = _rig_case(redis_url, lambda rig: measure_churn(rig, 1000, 1.2, kills=3))
    assert m["connections_killed"] >= 3
    assert m["reconnects"] >= 1
    assert m["churn_drained"] == 1
    assert check["lost"] == 0
    assert check["applied"] == check["sent"] == 1200


@pytest.mark.slow
def test_swarms_resume_intact_after_redis_sigkill_and_aof_restart(redis_url: str) -> None:
    base = _config(redis_url)
    m = run(measure_redis_kill(base, 1000, 1.5, 0.5), timeout_s=90)
    assert m["recovery_redis_ratio"] == 1.0
    assert m["recovery_redis_lost"] == 0
    assert m["aof_messages_delivered"] == m["aof_messages_sent"] == 1500
    assert 0 < m["redis_restart_s"] < m["recovery_redis_s"] < 15


def _swarm_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadkit.workloads.swarm", *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_zero_swarms_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="at least 1 swarm"):
        _config("redis://127.0.0.1:1/0", swarms=0)
    out = _swarm_cli("--swarms", "0")
    assert out.returncode == 2
    assert out.stderr.strip() == "loadkit swarm: error: need at least 1 swarm, got 0"


@pytest.mark.slow
def test_the_swarm_command_runs_swarms_and_reports_delivery(redis_url: str) -> None:
    out = _swarm_cli(
        "--redis-url", redis_url, "--swarms", "5", "--members", "3", "--rate", "500",
        "--duration", "1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "5 swarms x 3 members, 5 led; sent 500, delivered 500, lost 0" in out.stdout


def test_an_unreachable_server_is_a_clear_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    for out in (run_loadkit("run", "swarm", "--redis-url", url), _swarm_cli("--redis-url", url)):
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "does not answer" in lines[0], out.stderr


def test_an_unreachable_cluster_url_is_a_clear_error() -> None:
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    out = run_loadkit("run", "swarm", "--redis-url", url, timeout=60)
    assert out.returncode == 2
    assert "does not answer" in out.stderr and "Traceback" not in out.stderr


def test_a_released_lease_is_taken_over_at_once_through_the_pubsub_hint(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    """Without the hint the other coordinator would wait for the 3 s lease to run out."""
    config = _config(redis_url, swarms=5, coordinators=2, lease_ms=3000)

    async def scenario() -> tuple[float, int]:
        client, _scripts = await _setup(config)
        first = await Coordinator(config, 0).start()
        loop = asyncio.get_running_loop()
        while len(first.board.leaders()) < 5:  # c0 starts first and leads everything
            await asyncio.sleep(0.01)
        second = await Coordinator(config, 1).start()
        try:
            await asyncio.sleep(0.3)  # c1 is subscribed and waiting for the leases
            assert second.board.leaders() == []
            t0 = loop.time()
            await first.stop(release=True)
            while len(second.board.leaders()) < 5 and loop.time() - t0 < 5:
                await asyncio.sleep(0.005)
            return loop.time() - t0, second.hints
        finally:
            await second.stop()
            await client.aclose()

    took, hints = run(scenario())
    assert hints >= 5
    assert took < 1.0
    assert all(sync_redis.get(k.lease) is None for k in config.keys)  # released at stop


def test_dead_consumers_holding_nothing_are_removed_from_the_groups(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    config = _config(redis_url, swarms=1)
    k = config.keys[0]

    async def scenario() -> int:
        client, scripts = await _setup(config)
        consumers = [Consumer(client, scripts, config.keys, n, reclaim_idle_ms=5) for n in "abc"]
        try:
            producer = Producer(client, config.keys, index=0)
            await producer.send([0])
            await consumers[0].step()  # "a" read and applied: it holds nothing
            await consumers[0].drain()
            await producer.send([0] * 3)
            await consumers[1]._read()  # "b" holds 3 messages
            await asyncio.sleep(0.1)  # both idle for longer than 10 x 5 ms
            return await consumers[2].forget_dead()
        finally:
            for c in consumers:
                await c.close()
            await client.aclose()

    assert run(scenario()) == 1
    names = {c["name"] for c in sync_redis.xinfo_consumers(k.stream, GROUP)}
    assert names == {"b"}
