"""The fleet's state in Redis, changed only through atomic Lua scripts.

Every key of a fleet shares the hash tag ``{fleet:<name>}``, so the scripts are valid on
Redis Cluster too. Allocation is done inside Redis, not by a dispatcher loop: a submitted
task goes straight to an idle agent (``LPOP idle``) in the same script that accepts it,
and an agent that finishes takes the next pending task in the script that records its
result. That makes "each task to exactly one agent" a property of script atomicity, and
costs one round trip per batch instead of a poll cycle.

Keys (``P`` = ``{fleet:<name>}``):

=====================  =====  ==================================================
``P:agent:<id>``       hash   host, state (idle|busy), task (the payload it holds),
                              last (id of the last task it completed)
``P:agents``           set    registered agent ids
``P:leases``           zset   agent id -> lease expiry (Redis TIME, ms)
``P:idle``             list   idle agents, least recently used first
``P:pending``          list   tasks waiting for an agent (FIFO)
``P:inbox:<host>``     list   messages for one agent host ("T\\t<agent>\\t<task>")
``P:hosts``            zset   host id -> lease expiry (renewed with its agents' leases)
``P:results``          stream completed tasks (capped)
``P:stats``            hash   submitted, completed, stale, reaped, reclaimed
``P:seq``              str    task id counter
``P:req:<token>``      str    reply of a submission (expires): a retry gets it back
=====================  =====  ==================================================

Every script is safe to repeat, because a request whose reply was lost with its
connection is retried (:mod:`loadkit.redis_io.retry`): a submission carries a request
token and is done once; registering an agent that is already registered answers with
the task it holds; a result already recorded is answered with the agent's current
state; retiring an agent that is gone counts as retired; heartbeats, reaping and
deregistering are idempotent by nature.

A task payload is ``"<id>\\t<submit_ns>\\t<work_us>\\t<body>"``. An agent id is
``"<host>-<n>"`` so a script can find the owning host's inbox without a lookup.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from loadkit.redis_io.retry import retried

T = TypeVar("T")

_PRELUDE = r"""
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function host_of(agent)
  return string.match(agent, '^(.*)%-[^%-]*$')
end
local function assign(agent, task)
  redis.call('HSET', P .. ':agent:' .. agent, 'state', 'busy', 'task', task)
  redis.call('RPUSH', P .. ':inbox:' .. host_of(agent), 'T\t' .. agent .. '\t' .. task)
end
-- Remove an agent from every registry structure; a task it held goes to another idle
-- agent or back to the front of the queue. Returns 1 if a task was handed on.
local function drop(agent)
  local key = P .. ':agent:' .. agent
  local task = redis.call('HGET', key, 'task')
  redis.call('LREM', P .. ':idle', 1, agent)
  redis.call('DEL', key)
  redis.call('SREM', P .. ':agents', agent)
  redis.call('ZREM', P .. ':leases', agent)
  if not task then return 0 end
  local other = redis.call('LPOP', P .. ':idle')
  if other then assign(other, task) else redis.call('LPUSH', P .. ':pending', task) end
  return 1
end
"""

# ARGV: P, token, body... -> {assigned, queued}; a token seen before: the first reply
_SUBMIT = r"""
local req = P .. ':req:' .. ARGV[2]
local seen = redis.call('GET', req)
if seen then
  local a, q = string.match(seen, '^(%d+),(%d+)$')
  return {tonumber(a), tonumber(q)}
end
local assigned, queued = 0, 0
for i = 3, #ARGV do
  local id = redis.call('INCR', P .. ':seq')
  local task = id .. '\t' .. ARGV[i]
  local agent = redis.call('LPOP', P .. ':idle')
  if agent then
    assign(agent, task)
    assigned = assigned + 1
  else
    redis.call('RPUSH', P .. ':pending', task)
    queued = queued + 1
  end
end
redis.call('HINCRBY', P .. ':stats', 'submitted', #ARGV - 2)
redis.call('SET', req, assigned .. ',' .. queued, 'PX', 60000)
return {assigned, queued}
"""

# ARGV: P, lease_ms, host, agent... -> {agent, task, agent, task, ...} handed out directly
_REGISTER = r"""
local expiry = now_ms() + tonumber(ARGV[2])
local host = ARGV[3]
redis.call('ZADD', P .. ':hosts', expiry, host)
local started = {}
for i = 4, #ARGV do
  local agent = ARGV[i]
  local key = P .. ':agent:' .. agent
  local again = redis.call('SADD', P .. ':agents', agent) == 0
  redis.call('ZADD', P .. ':leases', expiry, agent)
  local task = false
  if again then
    task = redis.call('HGET', key, 'task')
  else
    task = redis.call('LPOP', P .. ':pending')
  end
  if again then
    if task then
      started[#started + 1] = agent
      started[#started + 1] = task
    end
  elseif task then
    redis.call('HSET', key, 'host', host, 'state', 'busy', 'task', task)
    started[#started + 1] = agent
    started[#started + 1] = task
  else
    redis.call('HSET', key, 'host', host, 'state', 'idle')
    redis.call('RPUSH', P .. ':idle', agent)
  end
end
return started
"""

# ARGV: P, results_cap, (agent, task_id, result)... -> per agent: 0 stale | 1 idle | next task
# A retry of a result Redis already recorded (the reply was lost with a connection) is
# recognised by the agent's ``last`` field and answered with the agent's current state,
# without recording the result twice.
_COMPLETE = r"""
local cap = ARGV[2]
local out = {}
local done, stale = 0, 0
for i = 3, #ARGV, 3 do
  local agent, tid, result = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = P .. ':agent:' .. agent
  local fields = redis.call('HMGET', key, 'task', 'last')
  local task, last = fields[1], fields[2]
  if task and string.sub(task, 1, #tid + 1) == (tid .. '\t') then
    redis.call('XADD', P .. ':results', 'MAXLEN', '~', cap, '*', 't', tid, 'a', agent, 'r', result)
    done = done + 1
    local nxt = redis.call('LPOP', P .. ':pending')
    if nxt then
      redis.call('HSET', key, 'task', nxt, 'last', tid)
      out[#out + 1] = nxt
    else
      redis.call('HSET', key, 'state', 'idle', 'last', tid)
      redis.call('HDEL', key, 'task')
      redis.call('RPUSH', P .. ':idle', agent)
      out[#out + 1] = 1
    end
  elseif last == tid then
    out[#out + 1] = task or 1
  else
    out[#out + 1] = 0
    stale = stale + 1
  end
end
if done > 0 then redis.call('HINCRBY', P .. ':stats', 'completed', done) end
if stale > 0 then redis.call('HINCRBY', P .. ':stats', 'stale', stale) end
return out
"""

# ARGV: P, lease_ms, host, agent... -> number of leases renewed (reaped agents stay gone)
_HEARTBEAT = r"""
local expiry = now_ms() + tonumber(ARGV[2])
redis.call('ZADD', P .. ':hosts', expiry, ARGV[3])
local renewed = 0
for i = 4, #ARGV do
  renewed = renewed + redis.call('ZADD', P .. ':leases', 'XX', 'CH', expiry, ARGV[i])
end
return renewed
"""

# ARGV: P, limit -> {reaped agent ids..., then the number of tasks reclaimed as last item}
# Hosts whose lease ran out (crashed processes) lose their inbox: every agent they had is
# reaped with them, so what the inbox held was already handed on.
_REAP = r"""
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now,
                           'LIMIT', 0, tonumber(ARGV[2]))
local reclaimed = 0
for _, agent in ipairs(expired) do
  reclaimed = reclaimed + drop(agent)
end
local dead_hosts = redis.call('ZRANGEBYSCORE', P .. ':hosts', '-inf', now, 'LIMIT', 0, 100)
for _, host in ipairs(dead_hosts) do
  redis.call('ZREM', P .. ':hosts', host)
  redis.call('DEL', P .. ':inbox:' .. host)
end
if #expired > 0 then
  redis.call('HINCRBY', P .. ':stats', 'reaped', #expired)
  redis.call('HINCRBY', P .. ':stats', 'reclaimed', reclaimed)
end
expired[#expired + 1] = reclaimed
return expired
"""

# ARGV: P, agent... -> agents that were idle and are now gone (busy ones are left alone;
# one already gone - a retry, or reaped - is gone all the same)
_RETIRE = r"""
local retired = {}
for i = 2, #ARGV do
  local agent = ARGV[i]
  if redis.call('SISMEMBER', P .. ':agents', agent) == 0 then
    retired[#retired + 1] = agent
  elseif redis.call('LREM', P .. ':idle', 1, agent) == 1 then
    redis.call('DEL', P .. ':agent:' .. agent)
    redis.call('SREM', P .. ':agents', agent)
    redis.call('ZREM', P .. ':leases', agent)
    retired[#retired + 1] = agent
  end
end
return retired
"""

# ARGV: P, host, drop_inbox(0|1), agent... -> number of held tasks handed back to the queue
_DEREGISTER = r"""
local requeued = 0
for i = 4, #ARGV do
  requeued = requeued + drop(ARGV[i])
end
if ARGV[3] == '1' then
  redis.call('DEL', P .. ':inbox:' .. ARGV[2])
  redis.call('ZREM', P .. ':hosts', ARGV[2])
end
return requeued
"""

# Lua's unpack and Redis's argument handling both prefer bounded argument lists.
CHUNK = 1000


def prefix_for(fleet: str) -> str:
    if not fleet or any(c in fleet for c in "{}\t "):
        raise ValueError(f"invalid fleet name {fleet!r}: non-empty, no braces or whitespace")
    return "{fleet:" + fleet + "}"


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FleetStore:
    """Typed async wrappers around the fleet scripts for one fleet name."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        fleet: str,
        results_cap: int = 100_000,
        retry: bool = True,
    ) -> None:
        """``retry=False``: a dropped connection is the caller's to handle (a clean-up
        with its own patience), not retried here."""
        self.client = client
        self.retry = retry
        self.fleet = fleet
        self.prefix = prefix_for(fleet)
        self.results_cap = results_cap
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(_PRELUDE + body)
            for name, body in {
                "submit": _SUBMIT,
                "register": _REGISTER,
                "complete": _COMPLETE,
                "heartbeat": _HEARTBEAT,
                "reap": _REAP,
                "retire": _RETIRE,
                "deregister": _DEREGISTER,
            }.items()
        }

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def _retried(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        if not self.retry:
            return await request()
        return await retried(f"fleet {self.fleet} {what}", request)

    async def _call(self, name: str, args: Sequence[Any]) -> Any:
        """Run a script, retried after a dropped connection (every script is safe to
        repeat). KEYS[1] routes the call on a cluster; every key used shares its hash tag."""
        script = self._scripts[name]
        keys, argv = [self.key("seq")], [self.prefix, *args]
        return await self._retried(name, lambda: script(keys=keys, args=argv))

    async def submit(self, bodies: Sequence[str]) -> tuple[int, int]:
        assigned = queued = 0
        for i in range(0, len(bodies), CHUNK):
            token = secrets.token_hex(8)  # one per chunk: a retry of it is done once
            a, q = await self._call("submit", [token, *bodies[i : i + CHUNK]])
            assigned += int(a)
            queued += int(q)
        return assigned, queued

    async def register(
        self, host: str, agents: Sequence[str], lease_ms: int
    ) -> list[tuple[str, str]]:
        """Register agents; returns (agent, task) pairs for agents that got work at once."""
        flat = await self._call("register", [lease_ms, host, *agents])
        items = [_decode(x) for x in flat]
        return list(zip(items[0::2], items[1::2], strict=True))

    async def complete(self, results: Sequence[tuple[str, str, str]]) -> list[str | int]:
        """Record results; per agent returns 0 (stale, task not held), 1 (now idle) or the
        next task payload it must run."""
        args: list[str | int] = [self.results_cap]
        for agent, task_id, result in results:
            args += [agent, task_id, result]
        replies = await self._call("complete", args)
        return [r if isinstance(r, int) else _decode(r) for r in replies]

    async def heartbeat(self, host: str, agents: Sequence[str], lease_ms: int) -> int:
        """Renew the host's lease and its agents'; returns how many agent leases existed."""
        renewed = 0
        for i in range(0, len(agents), CHUNK):
            chunk = agents[i : i + CHUNK]
            renewed += int(await self._call("heartbeat", [lease_ms, host, *chunk]))
        return renewed

    async def reap(self, limit: int = 500) -> tuple[list[str], int]:
        """Remove agents whose lease expired; their tasks go to another agent or the queue."""
        reply = await self._call("reap", [limit])
        return [_decode(a) for a in reply[:-1]], int(reply[-1])

    async def retire(self, agents: Sequence[str]) -> list[str]:
        retired: list[str] = []
        for i in range(0, len(agents), CHUNK):
            retired += [_decode(a) for a in await self._call("retire", agents[i : i + CHUNK])]
        return retired

    async def deregister(self, host: str, agents: Sequence[str], drop_inbox: bool) -> int:
        requeued = 0
        chunks = [agents[i : i + CHUNK] for i in range(0, len(agents), CHUNK)] or [[]]
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            flag = "1" if (drop_inbox and last) else "0"
            requeued += int(await self._call("deregister", [host, flag, *chunk]))
        return requeued

    async def counts(self) -> dict[str, int]:
        """Registry sizes and counters in one round trip."""

        async def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.scard(self.key("agents"))
            pipe.llen(self.key("idle"))
            pipe.llen(self.key("pending"))
            pipe.hgetall(self.key("stats"))
            return await pipe.execute()

        agents, idle, pending, stats = await self._retried("counts", read)
        out = {"agents": int(agents), "idle": int(idle), "pending": int(pending)}
        for k in ("submitted", "completed", "stale", "reaped", "reclaimed"):
            out[k] = int(stats.get(k.encode(), stats.get(k, 0)) or 0)
        return out

    async def _scan(self, pattern: str) -> list[str]:
        """Keys matching ``pattern`` (SCAN, so safe on a busy server); a dropped connection
        starts the scan over."""

        async def scan() -> list[str]:
            return [_decode(k) async for k in self.client.scan_iter(match=pattern, count=1000)]

        return await self._retried("scan", scan)

    async def agent_keys(self) -> list[str]:
        """Per-agent keys still present."""
        return await self._scan(self.key("agent", "*"))

    async def leftovers(self) -> int:
        """Entries that must be gone once every agent is gone: agent hashes, registry
        members, leases, idle entries and host inboxes."""

        async def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.scard(self.key("agents"))
            pipe.zcard(self.key("leases"))
            pipe.llen(self.key("idle"))
            pipe.zcard(self.key("hosts"))
            return await pipe.execute()

        registry = sum(int(x) for x in await self._retried("leftovers", read))
        inboxes = await self._scan(self.key("inbox", "*"))
        return registry + len(await self.agent_keys()) + len(inboxes)

    async def purge(self) -> int:
        """Delete every key of this fleet (and only this fleet)."""
        keys = await self._scan(self.prefix + ":*")
        deleted = 0
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i : i + CHUNK]
            deleted += int(await self._retried("purge", lambda c=chunk: self.client.delete(*c)))
        return deleted
