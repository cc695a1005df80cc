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

import argparse
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
from typing import TYPE_CHECKING, Any

from loadkit.common.argtypes import positive_float, positive_int
from loadkit.common.errors import RedisLost, UsageError
from loadkit.runtime import lifetime
from loadkit.supervise import guard
from loadkit.workloads.dashboard.access import format_origin, parse_origin
from loadkit.workloads.dashboard.protocol import is_loopback

# How long a dashboard that lost Redis waits for it to come back to delete its fleet.
PURGE_BUDGET_S = 10.0

if TYPE_CHECKING:  # imported where used: every loadkit command builds this parser
    from loadkit.workloads.dashboard.server import ServerConfig
    from loadkit.workloads.dashboard.sources import Tick

ENV_TOKEN = "LOADKIT_DASHBOARD_TOKEN"
TASK_MS = 400.0  # simulated work per task in fleet mode
MAX_WORKERS = 64


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def _origin(text: str) -> str:
    try:
        return format_origin(parse_origin(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``loadkit dashboard`` on the CLI's subparsers."""
    p = subparsers.add_parser("dashboard", help="serve a live dashboard of a simulated fleet")
    p.add_argument("--agents", type=positive_int, default=200, help="fleet size (default 200)")
    p.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--token", help=f"access token, required off loopback (${ENV_TOKEN})")
    p.add_argument(
        "--allow-origin",
        type=_origin,
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept pages from this origin (scheme://host[:port]; repeatable)",
    )
    p.add_argument(
        "--interval", type=positive_float, default=0.5, metavar="S", help="update period"
    )
    p.add_argument(
        "--duration",
        type=positive_float,
        default=3600.0,
        metavar="S",
        help="stop by itself after this many seconds (default 3600)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="server processes sharing the viewers on one port, fed through Redis (default 1)",
    )
    p.add_argument("--simulate", action="store_true", help="in-process simulator, no Redis")
    p.add_argument("--redis-url", help="use this Redis instead of an embedded one")
    p.add_argument(
        "--fleet",
        metavar="NAME",
        help="watch this existing fleet (e.g. run by `loadkit agents`) instead of starting one",
    )
    p.set_defaults(func=cmd_dashboard)


def _config(args: argparse.Namespace) -> tuple[ServerConfig, bool]:
    """The server settings; True when the token was generated here (so print it)."""
    from loadkit.workloads.dashboard.server import ServerConfig

    token = args.token or os.environ.get(ENV_TOKEN) or None
    generated = False
    if token is None and not is_loopback(args.host):
        token, generated = secrets.token_urlsafe(18), True
    config = ServerConfig(
        host=args.host, port=args.port, token=token, allow_origins=tuple(args.allow_origin)
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


def cmd_dashboard(args: argparse.Namespace) -> int:
    config, generated = _config(args)
    config.check()
    workers = getattr(args, "workers", 1)
    if workers > MAX_WORKERS:
        raise UsageError(f"--workers must be 1-{MAX_WORKERS}, got {workers}")
    if workers > 1:
        _check_port_free(config.host, config.port)
    if args.simulate and workers == 1:
        return asyncio.run(_serve(args, config, generated, None))
    from loadkit.redis_io.keyspace import new_run_id
    from loadkit.redis_io.server import ENV_URL, check_url, redis_url

    # Names the keys this dashboard writes (its fleet's, its board's): their prefix.
    args.run_id = new_run_id()
    if args.fleet:
        url = args.redis_url or os.environ.get(ENV_URL)
        if not url:
            raise UsageError(
                f"--fleet watches a fleet on an existing Redis: give --redis-url or set ${ENV_URL}"
            )
        check_url(url)
        return _run_and_purge(args, config, generated, url)
    with (
        lifetime.stop_on_signals(),
        guard.guarded() as watcher,
        redis_url(args.redis_url) as url,
    ):
        if args.redis_url or os.environ.get(ENV_URL):  # an embedded Redis just stops
            watcher.watch_run(url, args.run_id)
        return _run_and_purge(args, config, generated, url)


def _run_and_purge(
    args: argparse.Namespace, config: ServerConfig, generated: bool, url: str
) -> int:
    from loadkit.redis_io.keyspace import purge_run

    try:
        return asyncio.run(_serve(args, config, generated, url))
    except RedisLost as exc:
        # Said at once: deleting the keys below may wait for Redis to come back.
        print(f"loadkit: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    finally:
        # The fleet deletes its keys when it stops; this catches what a failed stop
        # left (Redis back after a pause) and the board's keys, and is a no-op otherwise.
        purged = purge_run(url, args.run_id, budget_s=PURGE_BUDGET_S)
        if purged.error is not None:
            print(
                f"loadkit: keys of {args.run_id}-dashboard may be left "
                f"({purged.error}); `loadkit clean` deletes them",
                file=sys.stderr,
            )


async def _drive_fleet(manager, agents: int, stop: asyncio.Event) -> None:
    """Tasks at a rate that swings between ~15% and ~85% of the fleet busy (period 60 s).
    Ends with :class:`loadkit.common.errors.RedisLost` once Redis stays silent."""
    from loadkit.redis_io.aio import keep_running
    from loadkit.workloads.fleet.host import Work
    from loadkit.workloads.fleet.scenarios import open_loop

    start = time.monotonic()

    async def one_second() -> None:
        utilization = 0.5 + 0.35 * math.sin((time.monotonic() - start) / 60 * 2 * math.pi)
        rate = max(1.0, utilization * agents / (TASK_MS / 1000))
        await open_loop(manager, [(1.0, rate)], Work(sleep_ms=TASK_MS))

    await keep_running("dashboard load", one_second, lambda: not stop.is_set())


async def _source(
    args: argparse.Namespace,
    url: str | None,
    publish: Callable[[Tick], Any],
    stack: contextlib.AsyncExitStack,
    stop: asyncio.Event,
) -> tuple[Callable[[float], Any], str, list[asyncio.Future[Any]]]:
    """The tick function feeding the board, what it shows (for the banner), and the
    background work whose failure (Redis lost) ends the dashboard. ``publish`` takes
    the source's first state (a plain or async callable)."""
    from loadkit.workloads.dashboard.sources import FleetSource, RedisFleetSource, SimulatedFleet

    if args.simulate:
        sim = SimulatedFleet(args.agents)
        first = publish(sim.snapshot())
        if inspect.isawaitable(first):
            await first
        tick = lambda dt: sim.tick(max(1, args.agents // 20), dt)  # noqa: E731
        return tick, f"{args.agents} simulated agents", []
    assert url is not None
    if args.fleet:
        from loadkit.redis_io.server import connect_async

        client = connect_async(url, max_connections=4)
        stack.push_async_callback(client.aclose)
        return RedisFleetSource(client, args.fleet).tick, f"fleet {args.fleet!r}", []
    from loadkit.workloads.fleet.manager import FleetManager

    manager = FleetManager(url, f"{args.run_id}-dashboard")
    await manager.start()
    stack.push_async_callback(manager.close)
    await manager.spawn(args.agents)
    driver = asyncio.ensure_future(_drive_fleet(manager, args.agents, stop))
    failed = asyncio.ensure_future(manager.wait_failed())
    stack.callback(driver.cancel)
    stack.callback(failed.cancel)
    what = f"{args.agents} agents of fleet {manager.fleet!r}"
    return FleetSource(manager).tick, what, [driver, failed]


async def _serve(
    args: argparse.Namespace, config: ServerConfig, generated: bool, url: str | None
) -> int:
    if getattr(args, "workers", 1) > 1:
        assert url is not None
        return await _serve_fanout(args, config, generated, url)
    from loadkit.workloads.dashboard.server import DashboardServer

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
        tick, what, background = await _source(args, url, server.publish, stack, stop)
        link = server.url + (f"?token={config.token}" if config.token else "")
        print(f"dashboard for {what}: {link}", flush=True)
        if generated:
            print("(access token generated for this run; pass --token to choose one)", flush=True)
        runner = asyncio.ensure_future(server.run(tick, args.interval, args.duration))
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
    args: argparse.Namespace, config: ServerConfig, generated: bool, url: str
) -> int:
    """This process owns the source and the board; ``args.workers`` server processes
    on the one port follow it through Redis."""
    from loadkit.redis_io.server import connect_async
    from loadkit.workloads.dashboard.fanout import BoardKeys, RedisPublisher, ServerPool
    from loadkit.workloads.dashboard.publisher import BoardPublisher, run_ticks

    signals = lifetime.StopSignals().install(asyncio.get_running_loop())
    stop = signals.event
    keys = BoardKeys.for_run(args.run_id)
    async with contextlib.AsyncExitStack() as stack:
        client = connect_async(url, max_connections=4)
        stack.push_async_callback(client.aclose)
        out = RedisPublisher(client, keys, BoardPublisher())
        tick, what, background = await _source(args, url, out.publish, stack, stop)
        if out.publisher.seq == 0:  # the board's first state, before any server looks
            first = tick(args.interval)
            await out.publish(await first if inspect.isawaitable(first) else first)
        pool = ServerPool(config, url, keys, args.workers)
        stack.callback(pool.close)
        await pool.start()
        host = "127.0.0.1" if config.host in ("0.0.0.0", "", "::") else config.host
        host = f"[{host}]" if ":" in host else host
        link = f"http://{host}:{pool.port}/" + (f"?token={config.token}" if config.token else "")
        print(f"dashboard for {what}: {link} ({args.workers} server processes)", flush=True)
        if generated:
            print("(access token generated for this run; pass --token to choose one)", flush=True)
        runner = asyncio.ensure_future(run_ticks(out.publish, tick, args.interval, args.duration))
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
