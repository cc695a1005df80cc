"""The one policy for Redis errors against a real redis-server: a dropped connection is
retried on a fresh one and counted, a Redis that is gone is called lost within the
window, and an answer to anyone in the process keeps Redis alive for everyone."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from loadkit.common.errors import RedisLost
from loadkit.redis_io.connect import connect_async
from loadkit.redis_io.health import LOST_AFTER_S, Heard, Liveness
from loadkit.redis_io.retry import RECONNECTS, client_retry, retried
from loadkit.redis_io.server import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_to_another_loop_keeps_redis_alive() -> None:
    clock, heard = Clock(), Heard()
    dropped = Liveness("inbox", lost_after_s=3.0, clock=clock, heard=heard)
    fine = Liveness("heartbeat", lost_after_s=3.0, clock=clock, heard=heard)
    dropped.failed(RedisConnectionError("reset"))
    for _ in range(10):  # 5 s of one loop failing while another is answered
        clock.now += 0.5
        fine.ok()
        dropped.failed(RedisConnectionError("reset"))
    clock.now += 3.0  # now nobody is answered
    with pytest.raises(RedisLost, match="inbox"):
        dropped.failed(RedisConnectionError("refused"))


def test_standalone_clients_leave_retries_to_the_policy() -> None:
    assert client_retry(cluster=False).get_retries() == 0
    assert client_retry(cluster=True).get_retries() > 0


def test_a_killed_connection_is_retried_on_a_fresh_one_and_counted(redis_url: str) -> None:
    async def scenario() -> int:
        client = connect_async(redis_url, max_connections=1)
        try:
            await client.set("retry:probe", "1")
            killer = redis.Redis.from_url(redis_url)
            assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
            killer.close()
            before = RECONNECTS.count
            assert await retried("probe", lambda: client.get("retry:probe")) == b"1"
            return RECONNECTS.count - before
        finally:
            await client.delete("retry:probe")
            await client.aclose()

    assert asyncio.run(scenario()) >= 1


def test_a_killed_server_is_lost_within_the_window() -> None:
    async def scenario(url: str, server: RedisServer) -> float:
        client = connect_async(url)
        try:
            await client.ping()
            server.kill()
            t0 = time.monotonic()
            with pytest.raises(RedisLost, match="probe"):
                await retried("probe", client.ping, lost_after_s=LOST_AFTER_S)
            return time.monotonic() - t0
        finally:
            await client.aclose()

    with RedisServer() as server:
        took = asyncio.run(scenario(server.url, server))
    assert LOST_AFTER_S - 0.5 <= took <= LOST_AFTER_S + 1.0


def test_a_loop_stops_when_a_library_swallowed_its_cancellation() -> None:
    """Python 3.11's ``asyncio.wait_for`` (redis-py sends commands through it) returns a
    result instead of raising when the cancellation arrives as the command completes;
    the loop must still end instead of running for ever."""
    from loadkit.redis_io.aio import keep_running

    async def scenario() -> bool:
        swallowed = False

        async def step() -> None:
            nonlocal swallowed
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed = True  # what wait_for does when its inner future is done

        loop = asyncio.ensure_future(keep_running("swallower", step))
        await asyncio.sleep(0.05)
        loop.cancel()
        done, _ = await asyncio.wait([loop], timeout=1.0)
        if not done:  # stop it for good, then fail
            loop.cancel()
            await asyncio.wait([loop])
        return bool(done) and swallowed and loop.cancelled()

    assert asyncio.run(scenario())
