"""``loadkit dashboard``: serve the live page for a running fleet on this machine.

By default it starts an embedded Redis (or uses ``--redis-url``) and a real
:class:`loadkit.workloads.fleet.manager.FleetManager` with ``--agents`` agents under a load that
rises and falls, so the grid moves the way a busy fleet does. ``--fleet NAME`` instead
watches an existing fleet on that Redis, whoever hosts its agents; ``--simulate`` uses
the in-process simulator (no Redis). It binds 127.0.0.1 unless ``--host`` says otherwise,
and any other address needs an access token: ``--token``, ``$LOADKIT_DASHBOARD_TOKEN``,
or a random one printed in the URL.

``--workers N`` (N > 1) serves the viewers from N server processes on the one port:
this process owns the source and the board and publishes each update through Redis
(:mod:`.fanout`; ``--simulate`` then starts an embedded Redis too).

SIGINT, SIGTERM and SIGHUP stop it in order (fleet stopped, its keys deleted, an embedded
Redis stopped) and it exits ``128 + n``; when it runs a fleet, a guard process
(:mod:`loadkit.supervise.guard`) does the same if it is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import math
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loadkit.common.errors import RedisLost, UsageError
from loadkit.redis_io.aio import keep_running
from loadkit.redis_io.connect import check_url, connect_async
from loadkit.redis_io.keyspace import new_run_id, purge_run
from loadkit.redis_io.server import redis_url
from loadkit.redis_io.urls import ENV_URL
from loadkit.runtime import lifetime
from loadkit.supervise import guard
from loadkit.workloads.dashboard.fanout import BoardKeys, RedisPublisher, ServerPool
from loadkit.workloads.dashboard.protocol import is_loopback
from loadkit.workloads.dashboard.publisher import BoardPublisher, run_ticks
from loadkit.workloads.dashboard.server import DashboardServer, ServerConfig
from loadkit.workloads.dashboard.sources import FleetSource, RedisFleetSource, SimulatedFleet
from loadkit.workloads.fleet.host import Work
from loadkit.workloads.fleet.manager import FleetManager
from loadkit.workloads.fleet.scenarios import open_loop

# How long a dashboard that lost Redis waits for it to come back to delete its fleet.
PURGE_BUDGET_S = 10.0

if TYPE_CHECKING:
    from loadkit.workloads.dashboard.sources import Tick

ENV_TOKEN = "LOADKIT_DASHBOARD_TOKEN"
TASK_MS = 400.0  # simulated work per task in fleet mode
MAX_WORKERS = 64


@dataclass
class DashboardOptions:
    """What ``loadkit dashboard`` was asked for (see its ``--help``)."""

    agents: int = 200
    port: int = 8765
    host: str = "127.0.0.1"
    token: str | None = None
    allow_origin: list[str] = field(default_factory=list)
    interval: float = 0.5
    duration: float = 3600.0
    workers: int = 1
    simulate: bool = False
    redis_url: str | None = None
    fleet: str | None = None
    # Names the keys this dashboard writes (its fleet's, its board's): set when it starts.
    run_id: str = ""


def _config(options: DashboardOptions) -> tuple[ServerConfig, bool]:
    """The server settings; True when the token was generated here (so print it)."""

    token = options.token or os.environ.get(ENV_TOKEN) or None
    generated = False
    if token is None and not is_loopback(options.host):
        token, generated = secrets.token_urlsafe(18), True
    config = ServerConfig(
        host=options.host, port=options.port, token=token, allow_origins=tuple(options.allow_origin)
    )
    return config, generated


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on: server processes bind it with
    SO_REUSEPORT, which would otherwise let them join another program's listeners."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} is in use; pick another with --port") from None
            raise UsageError(f"cannot listen on {host}:{port}: {exc}") from None


def run_dashboard(options: DashboardOptions) -> int:
    config, generated = _config(options)
    config.check()
    workers = options.workers
    if workers > MAX_WORKERS:
        raise UsageError(f"--workers must be 1-{MAX_WORKERS}, got {workers}")
    if workers > 1:
        _check_port_free(config.host, config.port)
    if options.simulate and workers == 1:
        return asyncio.run(_serve(options, config, generated, None))

    # Names the keys this dashboard writes (its fleet's, its board's): their prefix.
    options.run_id = new_run_id()
    if options.fleet:
        url = options.redis_url or os.environ.get(ENV_URL)
        if not url:
            raise UsageError(
                f"--fleet watches a fleet on an existing Redis: give --redis-url or set ${ENV_URL}"
            )
        check_url(url)
        return _run_and_purge(options, config, generated, url)
    with (
        lifetime.stop_on_signals(),
        guard.guarded() as watcher,
        redis_url(options.redis_url) as url,
    ):
        if options.redis_url or os.environ.get(ENV_URL):  # an embedded Redis just stops
            watcher.watch_run(url, options.run_id)
        return _run_and_purge(options, config, generated, url)


def _run_and_purge(
    options: DashboardOptions, config: ServerConfig, generated: bool, url: str
) -> int:

    try:
        return asyncio.run(_serve(options, config, generated, url))
    except RedisLost as exc:
        # Said at once: deleting the keys below may wait for Redis to come back.
        print(f"loadkit: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    finally:
        # The fleet deletes its keys when it stops; this catches what a failed stop
        # left (Redis back after a pause) and the board's keys, and is a no-op otherwise.
        purged = purge_run(url, options.run_id, budget_s=PURGE_BUDGET_S)
        if purged.error is not None:
            print(
                f"loadkit: keys of {options.run_id}-dashboard may be left "
                f"({purged.error}); `loadkit clean` deletes them",
                file=sys.stderr,
            )


async def _drive_fleet(manager, agents: int, stop: asyncio.Event) -> None:
    """Tasks at a rate that swings between ~15% and ~85% of the fleet busy (period 60 s).
    Ends with :class:`loadkit.common.errors.RedisLost` once Redis stays silent."""

    start = time.monotonic()

    async def one_second() -> None:
        utilization = 0.5 + 0.35 * math.sin((time.monotonic() - start) / 60 * 2 * math.pi)
        rate = max(1.0, utilization * agents / (TASK_MS / 1000))
        await open_loop(manager, [(1.0, rate)], Work(sleep_ms=TASK_MS))

    await keep_running("dashboard load", one_second, lambda: not stop.is_set())


async def _source(
    options: DashboardOptions,
    url: str | None,
    publish: Callable[[Tick], Any],
    stack: contextlib.AsyncExitStack,
    stop: asyncio.Event,
) -> tuple[Callable[[float], Any], str, list[asyncio.Future[Any]]]:
    """The tick function feeding the board, what it shows (for the banner), and the
    background work whose failure (Redis lost) ends the dashboard. ``publish`` takes
    the source's first state (a plain or async callable)."""

    if options.simulate:
        sim = SimulatedFleet(options.agents)
        first = publish(sim.snapshot())
        if inspect.isawaitable(first):
            await first
        tick = lambda dt: sim.tick(max(1, options.agents // 20), dt)  # noqa: E731
        return tick, f"{options.agents} simulated agents", []
    assert url is not None
    if options.fleet:
        client = connect_async(url, max_connections=4)
        stack.push_async_callback(client.aclose)
        return RedisFleetSource(client, options.fleet).tick, f"fleet {options.fleet!r}", []

    manager = FleetManager(url, f"{options.run_id}-dashboard")
    await manager.start()
    stack.push_async_callback(manager.close)
    await manager.spawn(options.agents)
    driver = asyncio.ensure_future(_drive_fleet(manager, options.agents, stop))
    failed = asyncio.ensure_future(manager.wait_failed())
    stack.callback(driver.cancel)
    stack.callback(failed.cancel)
    what = f"{options.agents} agents of fleet {manager.fleet!r}"
    return FleetSource(manager).tick, what, [driver, failed]


async def _serve(
    options: DashboardOptions, config: ServerConfig, generated: bool, url: str | None
) -> int:
    if options.workers > 1:
        assert url is not None
        return await _serve_fanout(options, config, generated, url)

    server = DashboardServer(config)
    try:
        await server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {config.port} is in use; pick another with --port") from None
        raise UsageError(f"cannot listen on {config.host}:{config.port}: {exc}") from None
    signals = lifetime.StopSignals().install(asyncio.get_running_loop())
    stop = signals.event
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(server.close)
        tick, what, background = await _source(options, url, server.publish, stack, stop)
        link = server.url + (f"?token={config.token}" if config.token else "")
        print(f"dashboard for {what}: {link}", flush=True)
        if generated:
            print("(access token generated for this run; pass --token to choose one)", flush=True)
        runner = asyncio.ensure_future(server.run(tick, options.interval, options.duration))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([runner, stopped, *background], return_when=asyncio.FIRST_COMPLETED)
        failure = _failure_of([runner, *background])
        runner.cancel()
        stopped.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
        if failure is not None:
            raise failure
    print("dashboard stopped", flush=True)
    return signals.exit_code


async def _serve_fanout(
    options: DashboardOptions, config: ServerConfig, generated: bool, url: str
) -> int:
    """This process owns the source and the board; ``options.workers`` server processes
    on the one port follow it through Redis."""

    signals = lifetime.StopSignals().install(asyncio.get_running_loop())
    stop = signals.event
    keys = BoardKeys.for_run(options.run_id)
    async with contextlib.AsyncExitStack() as stack:
        client = connect_async(url, max_connections=4)
        stack.push_async_callback(client.aclose)
        out = RedisPublisher(client, keys, BoardPublisher())
        tick, what, background = await _source(options, url, out.publish, stack, stop)
        if out.publisher.seq == 0:  # the board's first state, before any server looks
            first = tick(options.interval)
            await out.publish(await first if inspect.isawaitable(first) else first)
        pool = ServerPool(config, url, keys, options.workers)
        stack.callback(pool.close)
        await pool.start()
        host = "127.0.0.1" if config.host in ("0.0.0.0", "", "::") else config.host
        host = f"[{host}]" if ":" in host else host
        link = f"http://{host}:{pool.port}/" + (f"?token={config.token}" if config.token else "")
        print(f"dashboard for {what}: {link} ({options.workers} server processes)", flush=True)
        if generated:
            print("(access token generated for this run; pass --token to choose one)", flush=True)
        runner = asyncio.ensure_future(
            run_ticks(out.publish, tick, options.interval, options.duration)
        )
        stopped = asyncio.ensure_future(stop.wait())
        watcher = asyncio.ensure_future(_watch(pool))
        await asyncio.wait(
            [runner, stopped, watcher, *background], return_when=asyncio.FIRST_COMPLETED
        )
        failure = _failure_of([runner, *background])
        for future in (runner, stopped, watcher):
            future.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
        if failure is not None:
            raise failure
        if watcher.done() and not watcher.cancelled():
            print(f"loadkit: error: {watcher.result()}", file=sys.stderr, flush=True)
            return 1
    print("dashboard stopped", flush=True)
    return signals.exit_code


async def _watch(pool: Any) -> str:
    """Returns why a server process ended, should one end before the dashboard does."""
    while (why := pool.failed()) is None:
        await asyncio.sleep(0.5)
    return why


def _failure_of(futures: list[asyncio.Future[Any]]) -> BaseException | None:
    """The error a finished future ended with, if any: a fleet loop that gave up on Redis
    (its RedisLost), or a fleet manager returning what ended it."""
    for future in futures:
        if future.done() and not future.cancelled():
            exc = future.exception()
            if exc is None and isinstance(future.result(), BaseException):
                exc = future.result()
            if exc is not None:
                return exc
    return None
