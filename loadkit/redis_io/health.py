"""How loadkit notices that its Redis is gone, and how long it waits for it.

Every client loadkit opens has a socket timeout, a connect timeout and a health-check
interval (:data:`CLIENT_OPTIONS`), so a paused or unreachable server turns into an
error within seconds instead of a read that never returns. Loops that outlive one
error (heartbeats, reapers, consumers, producers re-sending a batch) retry with
backoff, but only while Redis has answered recently: :class:`Liveness` remembers the
last answer and, once nothing has come back for :data:`LOST_AFTER_S`, turns the next
error into :class:`loadkit.common.errors.RedisLost`. A restart that takes a fraction of a
second is ridden out; a server that is gone ends the run with a clear reason within
about :data:`LOST_AFTER_S` plus one socket timeout.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.exceptions import TimeoutError as RedisTimeoutError

from loadkit.common.errors import RedisLost

# A reply slower than this is a server that is not answering (the slowest command
# loadkit sends - a BLPOP - blocks for 1 s on the server).
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
# A connection idle this long is checked with PING before it carries a command.
HEALTH_CHECK_S = 1.0
# No answer for this long (counted from the last one) means Redis is lost.
LOST_AFTER_S = 3.0

CLIENT_OPTIONS: dict[str, float] = {
    "socket_timeout": SOCKET_TIMEOUT_S,
    "socket_connect_timeout": CONNECT_TIMEOUT_S,
    "health_check_interval": HEALTH_CHECK_S,
}

TIMEOUTS: tuple[type[BaseException], ...] = (RedisTimeoutError, TimeoutError)


def address(url: str) -> str:
    """``host:port`` (or the socket path) of a Redis URL, without credentials, for
    messages that may end up in reports and logs."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "unix":
        return parsed.path
    host = parsed.hostname or "?"
    return f"{host}:{parsed.port}" if parsed.port else host


def refused(exc: BaseException) -> bool:
    """True when nothing listens at the address (the server process is gone), as opposed
    to a server that is paused or slow (a timeout)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ConnectionRefusedError | FileNotFoundError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return "Connection refused" in str(exc) or "Error 111 " in str(exc)


@dataclass
class Heard:
    """When Redis last answered anyone in this process. Loops share it, so one loop
    whose connections keep being dropped does not call Redis lost while another loop
    gets answers: Redis is lost only when nobody has heard from it for the window."""

    last: float | None = None


@dataclass
class Liveness:
    """Whether Redis has been silent long enough to call it lost.

    ``ok()`` after every answer; ``failed(exc)`` after an error returns the seconds to
    back off before retrying, or raises :class:`RedisLost` once Redis has not answered
    for ``lost_after_s``. The silence starts when the first failing request of a streak
    was sent: for a timeout that is one socket timeout before the error (the server said
    nothing all that time), for a refused or dropped connection it is the error itself
    - so a loop that idled for minutes and then finds its connection killed gets the
    whole ``lost_after_s`` to reconnect. With a shared :class:`Heard`, an answer to any
    other loop sharing it also counts as Redis answering. Pure bookkeeping around a
    clock, so it is tested without a server."""

    what: str
    lost_after_s: float = LOST_AFTER_S
    clock: Callable[[], float] = time.monotonic
    socket_timeout_s: float = SOCKET_TIMEOUT_S
    min_backoff_s: float = 0.01
    max_backoff_s: float = 0.5
    heard: Heard | None = None
    last_ok: float = field(init=False)
    silent_since: float | None = field(default=None, init=False)
    errors: int = field(default=0, init=False)
    _backoff: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_ok = self.clock()
        self._backoff = self.min_backoff_s

    def ok(self) -> None:
        self.last_ok = self.clock()
        if self.heard is not None:
            self.heard.last = self.last_ok
        self.silent_since = None
        self._backoff = self.min_backoff_s

    def failed(self, exc: BaseException) -> float:
        self.errors += 1
        now = self.clock()
        if self.silent_since is None:
            waited = self.socket_timeout_s if isinstance(exc, TIMEOUTS) else 0.0
            self.silent_since = max(self.last_ok, now - waited)
        since = self.silent_since
        if self.heard is not None and self.heard.last is not None:
            since = max(since, self.heard.last)
        silent = now - since
        if silent >= self.lost_after_s:
            raise RedisLost(
                f"lost Redis: no answer to the {self.what} for {silent:.1f} s "
                f"({type(exc).__name__}: {_first_line(exc)})"
            ) from exc
        wait = min(self._backoff, self.lost_after_s - silent)
        self._backoff = min(self._backoff * 2, self.max_backoff_s)
        return wait


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


# Nothing listening for this long: the server is gone, not paused.
REFUSED_GIVE_UP_S = 1.0


@dataclass
class Patience:
    """How long a clean-up waits for Redis to come back: up to ``budget_s`` for a server
    that does not answer (paused, overloaded), but only ``refused_s`` for one that
    refuses connections (its process is gone: nothing can be cleaned until it is back,
    and then its data may be gone too). Pure, like :class:`Liveness`."""

    budget_s: float
    refused_s: float = REFUSED_GIVE_UP_S
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    refused_since: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def retry(self, exc: BaseException) -> bool:
        """After a failed attempt: is another one worth making?"""
        now = self.clock()
        if refused(exc):
            self.refused_since = now if self.refused_since is None else self.refused_since
            if now - self.refused_since >= self.refused_s:
                return False
        else:
            self.refused_since = None
        return now - self.started < self.budget_s

    def expired(self) -> bool:
        return self.clock() - self.started >= self.budget_s
