"""Two processes, one fleet: ``loadkit agents`` in a subprocess joins a fleet that a
FleetManager in this process also hosts agents for, all coordination through Redis."""

from __future__ import annotations

import asyncio
import queue
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

import pytest
from helpers import child_env, loadkit_cmd

from loadkit.workloads.fleet.host import Work
from loadkit.workloads.fleet.manager import FleetManager
from loadkit.workloads.fleet.scenarios import wait_completed
from loadkit.workloads.fleet.store import FleetStore

T = TypeVar("T")
HOSTING = re.compile(r"^hosting (\d+) agents as (\w+) in fleet '(.+)'$")


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


class AgentsProcess:
    """``python -m loadkit agents ...`` with its output read on background threads."""

    def __init__(self, url: str, fleet: str, count: int, *extra: str) -> None:
        args = ["agents", "--redis-url", url, "--fleet", fleet, "--count", str(count)]
        self.proc = subprocess.Popen(
            loadkit_cmd(*args, "--duration", "60", *extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, is_stdout: bool) -> None:
        for line in stream:
            (self.stdout if is_stdout else self.stderr).append(line.rstrip("\n"))
            if is_stdout:
                self.lines.put(line.rstrip("\n"))

    def wait_hosting(self, timeout_s: float = 30) -> tuple[int, str]:
        """Block until the child says it hosts its agents; returns (count, host id)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = HOSTING.match(line)
            if match:
                return int(match.group(1)), match.group(2)
        pytest.fail(f"loadkit agents did not start: {self.stdout} {self.stderr[-5:]}")

    def finish(self) -> None:
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> AgentsProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.finish()


async def host_entries(store: FleetStore, host_id: str) -> dict[str, int]:
    """Everything in Redis that still refers to agents or the inbox of ``host_id``."""
    client, mine = store.client, host_id + "-"
    agents = [a.decode() for a in await client.smembers(store.key("agents"))]
    leases = [a.decode() for a in await client.zrange(store.key("leases"), 0, -1)]
    idle = [a.decode() for a in await client.lrange(store.key("idle"), 0, -1)]
    keys = [k async for k in client.scan_iter(match=store.key("agent", mine + "*"))]
    return {
        "agents": sum(a.startswith(mine) for a in agents),
        "leases": sum(a.startswith(mine) for a in leases),
        "idle": sum(a.startswith(mine) for a in idle),
        "agent_keys": len(keys),
        "inbox": int(await client.exists(store.key("inbox", host_id))),
        "hosts": int(await client.zscore(store.key("hosts"), host_id) is not None),
    }


async def results(store: FleetStore) -> list[tuple[str, str]]:
    entries = await store.client.xrange(store.key("results"))
    return [(f[b"t"].decode(), f[b"a"].decode()) for _id, f in entries]


def host_of(agent_id: str) -> str:
    return agent_id.rsplit("-", 1)[0]


def test_two_hosts_share_work_and_sigterm_deregisters_cleanly(
    redis_url: str, fleet_name: str
) -> None:
    with AgentsProcess(redis_url, fleet_name, 200) as child:
        count, child_host = child.wait_hosting()
        assert count == 200

        async def scenario() -> None:
            async with FleetManager(redis_url, fleet_name) as manager:
                store, own_host = manager.store, manager.host.host_id
                assert (await host_entries(store, child_host))["agents"] == 200
                await manager.spawn(200)
                assert (await store.counts())["agents"] == 400

                await manager.submit(2000, Work(sleep_ms=20))
                assert await wait_completed(manager, 2000, timeout_s=20) == 2000
                done = await results(store)
                by_host = Counter(host_of(agent) for _tid, agent in done)
                assert set(by_host) == {child_host, own_host}
                # The first 400 tasks went one per agent, so each host ran at least 200.
                assert min(by_host.values()) >= 200, by_host

                # SIGTERM while work is flowing: the child drains and deregisters, and
                # whatever it held is handed back and finished here.
                await manager.submit(1000, Work(sleep_ms=50))
                await asyncio.sleep(0.05)
                child.proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(child.proc.wait, 20) == 143  # stopped, in order
                assert await wait_completed(manager, 3000, timeout_s=20) == 3000
                ids = [tid for tid, _agent in await results(store)]
                assert len(ids) == len(set(ids)) == 3000
                assert (await store.counts())["stale"] == 0
                assert await host_entries(store, child_host) == {
                    "agents": 0,
                    "leases": 0,
                    "idle": 0,
                    "agent_keys": 0,
                    "inbox": 0,
                    "hosts": 0,
                }
                # Our own agents are untouched by the other host's departure.
                assert (await host_entries(store, own_host))["agents"] == 200
                assert (await store.counts())["agents"] == 200

        run(scenario())
        child.finish()
        assert child.stdout[-1].startswith("stopped: "), child.stdout
        assert not any("Traceback" in line for line in child.stderr), child.stderr


@pytest.mark.slow
def test_sigkilled_hosts_agents_are_reaped_and_their_tasks_finished_elsewhere(
    redis_url: str, fleet_name: str
) -> None:
    with AgentsProcess(redis_url, fleet_name, 50, "--lease-ms", "500") as child:
        _count, child_host = child.wait_hosting()

        async def scenario() -> None:
            async with FleetManager(
                redis_url, fleet_name, lease_ms=3000, reap_interval_s=0.1
            ) as manager:
                store = manager.store
                # Only the child's agents are idle yet: every task goes to one of them.
                assert await manager.submit(50, Work(sleep_ms=1000)) == (50, 0)
                held = {}
                for agent in await store.client.smembers(store.key("agents")):
                    payload = await store.client.hget(store.key("agent", agent.decode()), "task")
                    held[agent.decode()] = payload.decode().split("\t", 1)[0]
                assert len(held) == 50 and all(host_of(a) == child_host for a in held)
                inbox = store.key("inbox", child_host)

                async def child_took_its_tasks() -> bool:
                    return await store.client.llen(inbox) == 0

                deadline = time.monotonic() + 5
                while not await child_took_its_tasks() and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await manager.spawn(50)
                child.proc.kill()
                assert await asyncio.to_thread(child.proc.wait, 10) == -signal.SIGKILL
                killed_at = time.monotonic()

                assert await wait_completed(manager, 50, timeout_s=15) == 50
                assert time.monotonic() - killed_at >= 0.3  # only after the leases ran out
                assert sorted(manager.reaped) == sorted(held)
                assert manager.reclaimed == 50
                done = await results(store)
                assert sorted(tid for tid, _ in done) == sorted(held.values())
                assert all(host_of(agent) == manager.host.host_id for _tid, agent in done)
                entries = await host_entries(store, child_host)
                assert entries["agents"] == entries["leases"] == entries["agent_keys"] == 0
                assert entries["idle"] == 0
                await manager.reap_now()  # the host's own lease has run out by now too
                entries = await host_entries(store, child_host)
                assert entries["hosts"] == entries["inbox"] == 0
                counts = await store.counts()
                assert counts["agents"] == 50 and counts["reaped"] == 50
                assert counts["completed"] == 50 and counts["pending"] == 0

        run(scenario())
