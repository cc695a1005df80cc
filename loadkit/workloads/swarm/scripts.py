"""The swarm's Lua scripts and a small runner that survives a Redis restart.

Each script is one atomic step: applying a batch of messages (dedupe, acknowledge, trim),
granting a lease with a new fencing token, renewing or releasing it, and writing state
only with a current token. Every key a script touches shares the swarm's hash tag; the
first key is passed in ``KEYS`` so a cluster client routes the call to the right node.

Scripts are called by SHA. A restarted Redis (the crash-recovery case) has an empty script
cache: :meth:`Scripts.run_many` re-loads and re-sends only the calls Redis refused with
NOSCRIPT - the others did run, so re-sending them would not be the same thing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

_PRELUDE = r"""
local P = ARGV[1]
-- a current fencing token or nil: reject older tokens (and count them), refuse unknown ones
local function fence(token)
  local current = tonumber(redis.call('GET', P .. ':epoch') or '0')
  token = tonumber(token)
  if token < current then
    redis.call('HINCRBY', P .. ':state', 'stale_rejected', 1)
    return nil
  end
  if token > current then
    return redis.error_reply('fencing token ' .. token .. ' was never granted')
  end
  return token
end
local function id_after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am > bm end
  return tonumber(as) > tonumber(bs)
end
"""

# KEYS: the streams of one or more swarms. ARGV: group, then per stream in KEYS order:
# swarm prefix, n, and n times (entry id, producer, seq) -> per stream a string with one
# '1'/'0' per message (1 = applied now, 0 = a duplicate: applied before). Applying,
# acknowledging and trimming are one step, so a consumer that dies between them cannot
# leave half of it done. On a cluster each call carries one swarm (one slot); on a single
# server one call carries every swarm with messages, which saves a command per swarm.
_APPLY = r"""
local group = ARGV[1]
local out = {}
local a = 2
for k = 1, #KEYS do
  local stream, prefix, n = KEYS[k], ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local ids, flags = {}, {}
  local applied = 0
  for i = 1, n do
    ids[i] = ARGV[a]
    if redis.call('SETBIT', prefix .. ':seen:' .. ARGV[a + 1], ARGV[a + 2], 1) == 0 then
      applied = applied + 1
      flags[i] = '1'
    else
      flags[i] = '0'
    end
    a = a + 3
  end
  if n > 0 then
    redis.call('XACK', stream, group, unpack(ids))
    local state = prefix .. ':state'
    if applied > 0 then redis.call('HINCRBY', state, 'applied', applied) end
    if applied < n then redis.call('HINCRBY', state, 'duplicates', n - applied) end
    -- Entries older than the oldest pending one were delivered and acknowledged by
    -- everyone (reads with '>' go in order), so they can go; pending ones never are.
    local floor = redis.call('XPENDING', stream, group)[2]
    if not floor then
      floor = ids[1]
      for _, id in ipairs(ids) do if id_after(id, floor) then floor = id end end
    end
    redis.call('XTRIM', stream, 'MINID', '~', floor)
  end
  out[k] = table.concat(flags)
end
return out
"""

# KEYS: lease. ARGV: P, holder, ttl_ms -> {token, ttl} granted | {0, ms until it expires}
# A retry by the current holder (its reply was lost) gets its own token back.
_ACQUIRE = r"""
local holder, ttl = ARGV[2], ARGV[3]
if redis.call('SET', KEYS[1], holder, 'NX', 'PX', ttl) then
  local token = redis.call('INCR', P .. ':epoch')
  redis.call('HSET', P .. ':state', 'leader', holder, 'leader_token', token)
  return {token, tonumber(ttl)}
end
if redis.call('GET', KEYS[1]) == holder then
  return {tonumber(redis.call('GET', P .. ':epoch')), redis.call('PTTL', KEYS[1])}
end
return {0, redis.call('PTTL', KEYS[1])}
"""

# KEYS: lease. ARGV: P, holder, token, ttl_ms -> 1 extended | 0 not ours any more
_RENEW = r"""
if redis.call('GET', KEYS[1]) == ARGV[2] and redis.call('GET', P .. ':epoch') == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: P, holder, token -> 1 released | 0 not ours. Publishes a hint so
# waiting candidates try at once (a hint may be lost: they also wake at the lease's end).
_RELEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[2] and redis.call('GET', P .. ':epoch') == ARGV[3] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', P .. ':hints', 'vacant')
  return 1
end
return 0
"""

# KEYS: a hash of the swarm (state or members). ARGV: P, token, field, value, ...
# -> 1 written | 0 rejected: a newer leader was granted since this token.
_FENCED_HSET = r"""
local token = fence(ARGV[2])
if not token then return 0 end
if type(token) == 'table' then return token end
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
redis.call('HSET', P .. ':state', 'written_token', token)
redis.call('HINCRBY', P .. ':state', 'fenced_writes', 1)
return 1
"""

# KEYS: state. ARGV: P, token -> 1 | 0: the leader's snapshot of the swarm's progress.
_SNAPSHOT = r"""
local token = fence(ARGV[2])
if not token then return 0 end
if type(token) == 'table' then return token end
local s = redis.call('HMGET', KEYS[1], 'applied', 'duplicates')
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'snapshot_applied', s[1] or 0, 'snapshot_duplicates', s[2] or 0,
           'snapshot_token', token, 'snapshot_ms', t[1] * 1000 + math.floor(t[2] / 1000),
           'written_token', token)
redis.call('HINCRBY', KEYS[1], 'fenced_writes', 1)
return 1
"""

# KEYS: stream. ARGV: P, group, coordinator, member... -> 1 created | 0 existed already
_CREATE = r"""
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[2], '$', 'MKSTREAM')
  local t = redis.call('TIME')
  redis.call('HSET', P .. ':state', 'applied', 0, 'duplicates', 0, 'stale_rejected', 0,
             'fenced_writes', 0, 'created_ms', t[1] * 1000 + math.floor(t[2] / 1000))
  redis.call('SETNX', P .. ':epoch', 0)
  created = 1
end
for i = 4, #ARGV do redis.call('HSET', P .. ':members', ARGV[i], ARGV[3]) end
return created
"""

SOURCES: dict[str, str] = {
    "apply": _APPLY,
    "acquire": _ACQUIRE,
    "renew": _RENEW,
    "release": _RELEASE,
    "fenced_hset": _FENCED_HSET,
    "snapshot": _SNAPSHOT,
    "create": _CREATE,
}

Call = tuple[str, Sequence[Any], Sequence[Any]]  # (script, keys, args)
# Script calls per pipeline for the coordinator's periodic bursts. A thousand members'
# acquires and renewals in one pipeline held Redis and the coordinator's event loop for
# long enough that every message in flight waited: in five quick benches on 2 cores,
# paced delivery's p99 was 11.7-21.8 ms with one pipeline and 5.9-10.1 ms with 25
# calls a pipeline (100 a pipeline: about 7 ms).
CHUNK = 25


class Scripts:
    """The scripts for one client (a Redis or a RedisCluster, asyncio)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.body = {name: _PRELUDE + src for name, src in SOURCES.items()}
        self.sha = {name: hashlib.sha1(b.encode()).hexdigest() for name, b in self.body.items()}

    async def load(self) -> None:
        """Load every script (on a cluster: on every primary)."""
        for body in self.body.values():
            await self.client.script_load(body)

    async def call(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return (await self.run_many([(name, keys, args)]))[0]

    async def run_in_chunks(self, calls: Sequence[Call], size: int = CHUNK) -> list[Any]:
        """:meth:`run_many`, ``size`` calls a pipeline, one after the other: between
        them Redis serves other clients and this event loop its other tasks."""
        if size < 1:
            raise ValueError("a chunk holds at least one call")
        replies: list[Any] = []
        for start in range(0, len(calls), size):
            replies += await self.run_many(calls[start : start + size])
        return replies

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run calls in one pipeline; replies in order. Connection errors propagate (the
        caller decides whether a retry is safe); a script error is raised."""
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for i in todo:
                name, keys, args = calls[i]
                # execute_command, not pipe.evalsha: redis-py's cluster pipeline blocks
                # the evalsha method but routes an EVALSHA command by its keys.
                pipe.execute_command("EVALSHA", self.sha[name], len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(i)
                elif isinstance(reply, Exception):
                    # a script error, or (a cluster pipeline reports them in place) a
                    # connection error: the caller decides whether to retry
                    raise reply
                else:
                    results[i] = reply
            if not missing:
                break
            await self.load()
            todo = missing
        return results
