"""Agents and the process that hosts them.

An agent is a small object, not a coroutine: it is registered in Redis with a heartbeat
lease, waits idle in the fleet's idle list, is handed a task through its host's inbox,
"runs" it (simulated work: a timer, optionally with real CPU time), reports the result
and is idle again, until it is retired or the host stops. Keeping agents as plain
objects with ``__slots__`` and running work on loop timers is what lets one process
hold 10,000 of them in a few MiB.

One host talks to Redis over two connections: a blocking one that drains its inbox
(``BLPOP`` then ``LPOP count``) and a small pool for everything else. Results from many
agents are flushed together in one script call, so a busy host makes few round trips.
Any process can host agents for a fleet - ``loadkit agents`` does exactly this - since
all coordination goes through Redis.

A dropped connection is retried (:mod:`loadkit.redis_io.retry`) and loses nothing: the
task a message carries is also recorded with its agent in Redis, so after the inbox
connection failed - a popped message may have gone down with it - the host reads back
what its idle agents hold and starts it; a task that arrives twice (message and
read-back, or a retried script's reply) is started once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loadkit.redis_io.aio import cancel_and_wait, first_failure, keep_running
from loadkit.redis_io.connect import connect_async
from loadkit.redis_io.health import Patience
from loadkit.redis_io.retry import TRANSIENT
from loadkit.runs.metrics import LatencyRecorder
from loadkit.workloads.fleet.store import FleetStore

# NEW: created here, registration in Redis not yet confirmed.
NEW, IDLE, BUSY, DEAD = "new", "idle", "busy", "dead"


@dataclass(frozen=True)
class Work:
    """What a task costs an agent: wall time (a timer) plus optional real CPU time."""

    sleep_ms: float = 1.0
    cpu_us: int = 0

    def __post_init__(self) -> None:
        if self.sleep_ms < 0 or self.cpu_us < 0:
            raise ValueError("work durations must be >= 0")


def encode_task_body(work: Work, body: str = "", submit_ns: int | None = None) -> str:
    """The part of a task payload the submitter writes (the id is added by Redis)."""
    ns = time.perf_counter_ns() if submit_ns is None else submit_ns
    return f"{ns}\t{int(work.sleep_ms * 1000)}\t{work.cpu_us}\t{body}"


@dataclass(frozen=True)
class Task:
    id: str
    submit_ns: int
    sleep_us: int
    cpu_us: int
    body: str

    @classmethod
    def parse(cls, payload: str) -> Task:
        tid, submit_ns, sleep_us, cpu_us, body = payload.split("\t", 4)
        return cls(tid, int(submit_ns), int(sleep_us), int(cpu_us), body)


class Agent:
    __slots__ = ("id", "last", "state", "task_id")

    def __init__(self, agent_id: str, state: str = IDLE) -> None:
        self.id = agent_id
        self.state = state
        self.task_id: str | None = None
        self.last: str | None = None  # the task it finished last


def _burn_cpu(us: int) -> None:
    end = time.perf_counter_ns() + us * 1000
    while time.perf_counter_ns() < end:
        pass


class AgentHost:
    """Hosts agents of one fleet in this process."""

    def __init__(
        self,
        url: str,
        fleet: str,
        *,
        host_id: str | None = None,
        lease_ms: int = 3000,
        batch_size: int = 50,
        max_inflight_batches: int = 4,
    ) -> None:
        if lease_ms < 100:
            raise ValueError("lease_ms must be >= 100")
        if batch_size < 1 or max_inflight_batches < 1:
            raise ValueError("batch_size and max_inflight_batches must be >= 1")
        self.client = connect_async(url)
        self.store = FleetStore(self.client, fleet)
        self.host_id = host_id or secrets.token_hex(4)
        if "-" in self.host_id:
            raise ValueError("host_id must not contain '-'")
        self.lease_ms = lease_ms
        self.batch_size = batch_size
        self.max_inflight = max_inflight_batches
        # The inbox reader blocks in BLPOP; it gets a connection of its own.
        self._blocking = connect_async(url, max_connections=2)
        self.agents: dict[str, Agent] = {}
        self._seq = 0
        self._outbox: list[tuple[str, str, str]] = []
        self._outbox_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self.alloc_latency = LatencyRecorder()
        self.completed = 0
        self.stale = 0
        self._resync = False
        self.on_complete: Callable[[Task, str], None] | None = None
        self._running = False
        self._draining = False

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> AgentHost:
        if self._running:
            return self
        self._running = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(
                self._keep("inbox", self._inbox_step, self._inbox_failed), name="fleet-inbox"
            ),
            loop.create_task(self._keep("flush", self._flush_step), name="fleet-flush"),
            loop.create_task(self._keep("heartbeat", self._heartbeat_step), name="fleet-beat"),
        ]
        return self

    def failure(self) -> BaseException | None:
        """The error that ended one of this host's loops (Redis lost), if any."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    def check(self) -> None:
        """Raise the error that ended one of this host's loops, so a caller waiting on
        agents learns that Redis is gone instead of waiting for work that cannot come."""
        failure = self.failure()
        if failure is not None:
            raise failure

    async def wait_failed(self) -> BaseException:
        """Wait until one of this host's loops gives up on Redis; returns its error."""
        return await first_failure(self._tasks)

    async def stop(self, drain_timeout_s: float = 5.0) -> int:
        """Stop taking work, let running tasks finish (bounded), deregister every agent and
        release this host's keys and connections. Returns tasks handed back to the queue.

        While draining, a task that reaches one of our agents (the next queued task handed
        out with a result, or an inbox message) is not started: it stays with the agent in
        Redis and deregistering hands it back, so under sustained load stopping takes as
        long as the running tasks, not the whole ``drain_timeout_s``.

        The loops end and the connections close however it goes. When Redis is lost (a
        loop gave up) or a request of the stop fails, the error is raised without trying
        further requests, which would only wait out their timeouts: ``agents`` then still
        holds the agents that may be registered (their leases run out and any manager of
        the fleet reaps them)."""
        if not self._running:
            return 0
        self._draining = True
        try:
            try:
                self.check()
                deadline = time.monotonic() + drain_timeout_s
                # Retire idle agents first so no new work is assigned to them.
                await self.retire(len(self.agents))
                while (
                    any(a.state == BUSY for a in self.agents.values())
                    and time.monotonic() < deadline
                    and self.failure() is None
                ):
                    await asyncio.sleep(0.01)
            finally:
                failure = self.failure()
                self._running = False
                for timer in self._timers:
                    timer.cancel()
                self._timers.clear()
                self._outbox_ready.set()
                await cancel_and_wait(self._tasks)
                self._tasks = []
            if failure is not None:
                raise failure
            await self._flush_once()
            requeued = await self.store.deregister(self.host_id, list(self.agents), True)
            self.agents.clear()
            return requeued
        finally:
            await self._blocking.aclose()
            await self.client.aclose()

    # -- spawning and retiring -----------------------------------------------------
    def _new_ids(self, n: int) -> list[str]:
        ids = [f"{self.host_id}-{self._seq + i}" for i in range(n)]
        self._seq += n
        return ids

    async def spawn(self, n: int, progress: Callable[[int], None] | None = None) -> list[int]:
        """Spawn ``n`` agents in batches; returns each agent's spawn latency in ns, measured
        from its batch's spawn request to the agent being registered and ready."""
        if n < 0:
            raise ValueError("agent count must be >= 0")
        if not self._running:
            raise RuntimeError("host not started")
        latencies: list[int] = []
        gate = asyncio.Semaphore(self.max_inflight)

        async def one_batch(size: int) -> None:
            async with gate:
                requested = time.perf_counter_ns()
                ids = self._new_ids(size)
                for agent_id in ids:
                    self.agents[agent_id] = Agent(agent_id, NEW)
                started = await self.store.register(self.host_id, ids, self.lease_ms)
                ready = time.perf_counter_ns()
                latencies.extend([ready - requested] * size)
                for agent_id in ids:
                    agent = self.agents.get(agent_id)
                    if agent is not None and agent.state == NEW:
                        agent.state = IDLE
                for agent_id, payload in started:
                    self._start(agent_id, payload)
                if progress is not None:
                    progress(size)

        sizes = [self.batch_size] * (n // self.batch_size)
        if n % self.batch_size:
            sizes.append(n % self.batch_size)
        await asyncio.gather(*(one_batch(s) for s in sizes))
        return latencies

    async def retire(self, n: int) -> int:
        """Retire up to ``n`` idle agents (busy agents are never interrupted)."""
        if n <= 0:
            return 0
        candidates = [a.id for a in self.agents.values() if a.state == IDLE][:n]
        retired = await self.store.retire(candidates)
        for agent_id in retired:
            agent = self.agents.pop(agent_id, None)
            if agent is not None:
                agent.state = DEAD
        return len(retired)

    def crash(self, agent_id: str) -> None:
        """Make one agent vanish as if its process died: no heartbeat, no result."""
        agent = self.agents.pop(agent_id)
        agent.state = DEAD

    @property
    def size(self) -> int:
        return len(self.agents)

    @property
    def busy(self) -> int:
        return sum(1 for a in self.agents.values() if a.state == BUSY)

    # -- work ------------------------------------------------------------------------
    def _start(self, agent_id: str, payload: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is None:
            return  # crashed or retired here; its lease will expire and Redis reclaims it
        if self._draining:
            # Stopping: leave the task with the agent in Redis; deregister hands it back.
            agent.state = IDLE
            agent.task_id = None
            return
        task = Task.parse(payload)
        if task.id in (agent.task_id, agent.last):
            return  # the same task again: a message and a read-back, or a retried reply
        self.alloc_latency.record_ns(time.perf_counter_ns() - task.submit_ns)
        agent.state = BUSY
        agent.task_id = task.id
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle
        handle = loop.call_later(task.sleep_us / 1e6, lambda: self._finish(agent, task, handle))
        self._timers.add(handle)

    def _finish(self, agent: Agent, task: Task, handle: asyncio.TimerHandle) -> None:
        self._timers.discard(handle)
        if agent.state != BUSY or agent.task_id != task.id:
            return
        agent.last = task.id
        if task.cpu_us:
            _burn_cpu(task.cpu_us)
        result = f"ok:{agent.id}"
        if self.on_complete is not None:
            self.on_complete(task, agent.id)
        self._outbox.append((agent.id, task.id, result))
        self._outbox_ready.set()

    async def _flush_once(self) -> None:
        while self._outbox:
            batch = self._outbox[:500]
            replies = await self.store.complete(batch)
            # Dropped only once Redis answered: a connection error retries the batch.
            del self._outbox[: len(batch)]
            for (agent_id, _tid, _res), reply in zip(batch, replies, strict=True):
                agent = self.agents.get(agent_id)
                if reply == 0:
                    self.stale += 1
                    if agent is not None:  # reaped while we were slow: it is gone
                        agent.state = DEAD
                        self.agents.pop(agent_id, None)
                    continue
                self.completed += 1
                if agent is None:
                    continue
                if reply == 1:
                    agent.state = IDLE
                    agent.task_id = None
                else:
                    self._start(agent_id, str(reply))

    def _keep(
        self,
        name: str,
        step: Callable[[], Awaitable[None]],
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> Awaitable[None]:
        label = f"fleet host {self.host_id} {name}"
        return keep_running(label, step, lambda: self._running, on_retry)

    async def _flush_step(self) -> None:
        await self._outbox_ready.wait()
        self._outbox_ready.clear()
        try:
            await self._flush_once()
        except BaseException:
            self._outbox_ready.set()  # results still waiting: try again
            raise

    def _inbox_failed(self, _exc: BaseException) -> None:
        self._resync = True

    async def _read_back(self) -> None:
        """Start the tasks Redis says our idle agents hold: a message popped from the
        inbox whose reply was lost with the connection is not lost with it."""
        idle = [a.id for a in self.agents.values() if a.state == IDLE]
        for i in range(0, len(idle), 1000):
            chunk = idle[i : i + 1000]
            pipe = self.client.pipeline(transaction=False)
            for agent_id in chunk:
                pipe.hget(self.store.key("agent", agent_id), "task")
            for agent_id, held in zip(chunk, await pipe.execute(), strict=True):
                if held is not None:
                    self._start(agent_id, held.decode() if isinstance(held, bytes) else held)

    async def _inbox_step(self) -> None:
        if self._resync:
            await self._read_back()
            self._resync = False
        inbox = self.store.key("inbox", self.host_id)
        item = await self._blocking.blpop([inbox], timeout=1)
        if item is None:
            return
        messages = [item[1]]
        more = await self._blocking.lpop(inbox, 1000)
        if more:
            messages.extend(more)
        for raw in messages:
            msg = raw.decode() if isinstance(raw, bytes) else raw
            kind, agent_id, payload = msg.split("\t", 2)
            if kind == "T":
                self._start(agent_id, payload)

    async def _heartbeat_step(self) -> None:
        await asyncio.sleep(self.lease_ms / 3000)
        live = list(self.agents)
        if live and await self.store.heartbeat(self.host_id, live, self.lease_ms) < len(live):
            await self._forget_reaped(live)

    async def _forget_reaped(self, agent_ids: list[str]) -> None:
        """Idle agents whose lease ran out while this host could not renew it (a stalled
        event loop) were reaped and are gone from Redis for good: forget them, so ``size``
        counts real capacity. A busy one is forgotten when its result comes back stale;
        a NEW one simply is not registered yet."""
        scores = await self.client.zmscore(self.store.key("leases"), agent_ids)
        for agent_id, expiry in zip(agent_ids, scores, strict=True):
            agent = self.agents.get(agent_id)
            if expiry is None and agent is not None and agent.state == IDLE:
                agent.state = DEAD
                del self.agents[agent_id]


async def deregister_later(
    url: str, fleet: str, host_id: str, agents: list[str], budget_s: float = 10.0
) -> bool:
    """Deregister the agents of a host whose own stop could not reach Redis, over a fresh
    connection, waiting for a paused Redis to come back for up to ``budget_s`` (a gone one
    for a second: :class:`loadkit.redis_io.health.Patience`). True when it was done; if not,
    the agents' leases run out and any manager of the fleet reaps them."""
    client = connect_async(url, max_connections=2)
    store = FleetStore(client, fleet, retry=False)  # the patience below is the policy here
    patience = Patience(budget_s)
    try:
        while True:
            try:
                await store.deregister(host_id, agents, drop_inbox=True)
                return True
            except TRANSIENT as exc:
                if not patience.retry(exc):
                    return False
                await asyncio.sleep(0.2)
    finally:
        await client.aclose()
