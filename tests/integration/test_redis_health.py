"""When loadkit calls Redis lost, and how long a clean-up waits for it: pure bookkeeping
around a clock, so the rules are checked exactly (the real-server side of it is in
``test_chaos_redis.py``)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from loadkit.common.errors import RedisLost
from loadkit.redis_io.health import Liveness, Patience, address, refused


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_liveness_rides_out_a_short_outage_and_calls_a_long_one_lost() -> None:
    clock = Clock()
    live = Liveness("heartbeat", lost_after_s=3.0, clock=clock, socket_timeout_s=2.0)
    clock.now += 60  # idle for a minute, then the connection was found dropped
    assert 0 < live.failed(RedisConnectionError("dropped")) <= 3.0
    clock.now += 1
    live.failed(RedisConnectionError("refused"))
    live.ok()  # back: the next streak starts from scratch
    clock.now += 2  # a timeout means the server was silent for the socket timeout already
    live.failed(RedisTimeoutError("read"))
    clock.now += 1.0
    with pytest.raises(RedisLost, match=r"heartbeat for 3\.0 s"):
        live.failed(RedisTimeoutError("read"))


def test_patience_waits_for_a_paused_server_but_not_for_a_gone_one() -> None:
    clock = Clock()
    paused = Patience(10.0, clock=clock)
    clock.now += 9
    assert paused.retry(RedisTimeoutError("Timeout reading"))
    clock.now += 1
    assert not paused.retry(RedisTimeoutError("Timeout reading"))
    gone = Patience(10.0, clock=clock)
    assert gone.retry(RedisConnectionError("Error 111 connecting. Connection refused."))
    clock.now += 1
    assert not gone.retry(RedisConnectionError("Error 111 connecting. Connection refused."))


def test_addresses_in_messages_carry_no_credentials() -> None:
    assert address("redis://user:s3cret@127.0.0.1:6380/0") == "127.0.0.1:6380"
    assert address("unix:///run/redis.sock") == "/run/redis.sock"
    assert refused(RedisConnectionError("Error 111 connecting to x. Connection refused."))
    assert not refused(RedisTimeoutError("Timeout reading from x"))
