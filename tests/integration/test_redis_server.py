"""The embedded Redis: a real redis-server process started, used, killed and stopped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import redis
from helpers import child_env, wait_for

import loadkit.redis_io.server as rs
from loadkit.common.errors import UsageError
from loadkit.redis_io.connect import check_url
from loadkit.redis_io.server import RedisServer, find_redis_binary, free_port
from loadkit.redis_io.urls import is_loopback_url


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def test_binary_is_found_and_is_a_redis_server() -> None:
    binary = find_redis_binary()
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    assert "Redis server" in out.stdout or "Valkey server" in out.stdout


def test_starts_serves_and_stops_without_a_trace() -> None:
    server = RedisServer().start()
    try:
        pid, data_dir, url = server.pid, server.data_dir, server.url
        assert pid is not None and data_dir is not None
        assert data_dir.is_dir()
        assert url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(url)
        try:
            client.set("k", "v")
            assert client.get("k") == b"v"
            # Our binary, not some other server that happened to be on the port.
            assert psutil.Process(pid).name().startswith(("redis-server", "valkey-server"))
            assert client.info("server")["process_id"] == pid
        finally:
            client.close()
    finally:
        server.stop()
    assert server.process is None and server.pid is None
    assert _gone(pid)
    assert not data_dir.exists()
    assert not _answers(url)
    server.stop()  # idempotent


def test_two_servers_side_by_side_are_independent() -> None:
    with RedisServer() as a, RedisServer() as b:
        assert a.port != b.port
        assert a.data_dir != b.data_dir
        ca, cb = redis.Redis.from_url(a.url), redis.Redis.from_url(b.url)
        try:
            ca.set("only-in-a", 1)
            assert cb.get("only-in-a") is None
            assert ca.info("server")["process_id"] == a.pid
            assert cb.info("server")["process_id"] == b.pid
        finally:
            ca.close()
            cb.close()
        b_pid = b.pid
    assert a.process is None and b.process is None and b_pid is not None
    assert _gone(b_pid)


@pytest.mark.parametrize(("persistence", "survives"), [("aof-always", True), ("none", False)])
def test_kill_and_restart_keeps_data_only_with_aof(persistence: str, survives: bool) -> None:
    server = RedisServer(persistence=persistence).start()  # type: ignore[arg-type]
    try:
        port, data_dir, old_pid = server.port, server.data_dir, server.pid
        assert old_pid is not None
        client = redis.Redis.from_url(server.url)
        try:
            client.set("survivor", "yes")
            client.rpush("queue", *range(100))
        finally:
            client.close()
        server.kill()
        assert _gone(old_pid)
        assert not _answers(f"redis://127.0.0.1:{port}/0")
        assert data_dir is not None and data_dir.is_dir()  # kept for the restart
        server.restart()
        assert server.port == port and server.data_dir == data_dir
        assert server.pid != old_pid
        client = redis.Redis.from_url(server.url)
        try:
            if survives:
                assert client.get("survivor") == b"yes"
                assert client.llen("queue") == 100
            else:  # no persistence: the kill really lost the data
                assert client.get("survivor") is None
                assert client.dbsize() == 0
        finally:
            client.close()
    finally:
        server.stop()
    assert not data_dir.exists()


def test_server_dies_with_its_owner_process(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: SIGKILL of the owning Python process takes redis-server along."""
    script = textwrap.dedent(
        """
        import sys, time
        from loadkit.redis_io.server import RedisServer
        server = RedisServer().start()
        print(server.pid, server.url, flush=True)
        time.sleep(60)
        """
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=child_env()
    )
    try:
        assert owner.stdout is not None
        pid_text, url = owner.stdout.readline().split()
        redis_pid = int(pid_text)
        assert _answers(url)
    finally:
        owner.kill()
        owner.wait(timeout=10)
    wait_for(lambda: _gone(redis_pid), 5, "redis-server to exit after its owner was killed")
    assert not _answers(url)


def test_a_taken_fixed_port_is_a_usage_error() -> None:
    with RedisServer() as first:
        second = RedisServer(port=first.port, start_timeout_s=3)
        with pytest.raises(UsageError, match="did not start"):
            second.start()
        assert second.process is None
        assert _answers(first.url)  # the failed start did not disturb the running one
        second.stop()


def test_unknown_persistence_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown persistence"):
        RedisServer(persistence="rdb")  # type: ignore[arg-type]


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = RedisServer().url


def test_check_url_accepts_a_live_server(redis_url: str) -> None:
    check_url(redis_url)  # does not raise


def test_check_url_on_an_unreachable_server_raises_usage_error() -> None:
    port = free_port()  # nothing listens here
    start = time.monotonic()
    with pytest.raises(UsageError, match="does not answer"):
        check_url(f"redis://127.0.0.1:{port}/0", timeout_s=1)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    "url", ["redis://10.1.2.3:6379/0", "redis://example.com:6379", "rediss://8.8.8.8:6380/0"]
)
def test_check_url_refuses_non_loopback(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="refusing non-loopback"):
        check_url(url)


def test_remote_opt_in_skips_only_the_loopback_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOADKIT_ALLOW_REMOTE", "1")
    # Allowed past the guard, so the failure is now the (unroutable, reserved) address.
    with pytest.raises(UsageError, match="does not answer"):
        check_url("redis://192.0.2.1:6379/0", timeout_s=0.3)


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", ""])
def test_check_url_refuses_what_is_not_a_redis_url(url: str) -> None:
    with pytest.raises(UsageError, match="not a Redis URL"):
        check_url(url)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("redis://127.8.9.10:6379", True),
        ("redis://localhost:6379", True),
        ("redis://[::1]:6379", True),
        ("unix:///tmp/redis.sock", True),
        ("redis://10.0.0.1:6379", False),
        ("redis://redis.internal:6379", False),
        ("redis://0.0.0.0:6379", False),
    ],
)
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_redis_url_uses_a_given_server_and_leaves_it_running(redis_url: str) -> None:
    with rs.redis_url(redis_url) as url:
        assert url == redis_url
    assert _answers(redis_url)


def test_redis_url_without_configuration_embeds_a_private_server() -> None:
    with rs.redis_url() as url:
        assert url.startswith("redis://127.0.0.1:")
        assert _answers(url)
    assert not _answers(url)


def test_redis_url_reads_the_environment(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOADKIT_REDIS_URL", redis_url)
    with rs.redis_url() as url:
        assert url == redis_url
    port = free_port()
    monkeypatch.setenv("LOADKIT_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    with pytest.raises(UsageError), rs.redis_url():
        pass


def test_connect_async_client_closes_its_sockets(redis_url: str) -> None:
    """aclose() must close the pool's connections: a client that leaves them open leaks
    one file descriptor per connection (the fleet's cleanup figures count them)."""
    import asyncio

    from loadkit.redis_io.connect import connect_async
    from loadkit.runs.metrics import open_fds

    async def use_and_close() -> None:
        client = connect_async(redis_url, max_connections=8)
        await asyncio.gather(*(client.ping() for _ in range(8)))
        await client.aclose()

    asyncio.run(use_and_close())  # warm-up: imports and the loop's own descriptors
    before = open_fds()
    asyncio.run(use_and_close())
    assert open_fds() == before
