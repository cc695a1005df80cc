"""A lean WebSocket client for reading the dashboard's stream, for the load generator.

Thousands of viewers in one process spend most of their time in the client library,
not in the socket: a general client hands each message through a frame parser, a
queue and a task wake-up. This one is an :class:`asyncio.Protocol` that does the RFC
6455 opening handshake itself (checking ``Sec-WebSocket-Accept``), then parses frames
in ``data_received`` and calls ``on_message(client, payload)`` with each text message
at once (the first may come with the handshake's answer). It
answers pings and close frames, masks what it sends, and refuses what a server must
not send (masked frames, frames over ``max_size``) by closing with an error code; it
is enough for a stream of text messages and small replies, not a general client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CONT, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
MAX_HEAD_BYTES = 16 * 1024
DEFAULT_MAX_SIZE = 64 * 1024 * 1024


class HandshakeFailed(Exception):
    """The server did not switch protocols properly (status, missing or wrong accept)."""


def accept_for(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked frame, as a client must send (RFC 6455 5.3)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    repeated = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return head + mask + masked


class StreamClient(asyncio.Protocol):
    """One connection; ``on_message(self, payload)`` is called for every text message."""

    def __init__(
        self, path: str, host: str, on_message: Callable[[StreamClient, bytes], None], max_size: int
    ) -> None:
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.on_message = on_message
        self.max_size = max_size
        self.headers: dict[str, str] = {}
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._open = False

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionResetError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        if not self._open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > MAX_HEAD_BYTES:
                    self._fail_handshake("response head too long")
                else:
                    self._buffer = data
                return
            if not self._handshake(data[:end].decode("latin-1")):
                return
            data = data[end + 4 :]
        self._frames(data)

    # -- handshake -------------------------------------------------------------------
    def _handshake(self, head: str) -> bool:
        status, *lines = head.split("\r\n")
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            self._fail_handshake(f"status {parts[1] if len(parts) > 1 else status!r}")
            return False
        if self.headers.get("sec-websocket-accept") != accept_for(self.key):
            self._fail_handshake("wrong Sec-WebSocket-Accept")
            return False
        self._open = True
        self.opened.set_result(None)
        return True

    def _fail_handshake(self, why: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeFailed(why))
        assert self.transport is not None
        self.transport.abort()

    # -- frames ----------------------------------------------------------------------
    def _frames(self, data: bytes) -> None:
        pos, size = 0, len(data)
        while size - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, at = b1 & 0x7F, pos + 2
            if length == 126:
                if size - at < 2:
                    break
                (length,) = struct.unpack_from("!H", data, at)
                at += 2
            elif length == 127:
                if size - at < 8:
                    break
                (length,) = struct.unpack_from("!Q", data, at)
                at += 8
            if b1 & 0x80:
                return self.fail(1002, "masked frame from the server")
            if length > self.max_size:
                return self.fail(1009, "message too big")
            if size - at < length:
                break
            pos = at + length
            self._frame(b0 & 0x80, b0 & 0x0F, data[at:pos])
            if self.transport is None or self.transport.is_closing():
                return
        if pos < size:
            self._buffer = data[pos:]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (_TEXT, _BINARY, _CONT):
            if opcode != _CONT:
                self._fragments = []
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments = []
            self.on_message(self, payload)
        elif opcode == _PING:
            self._write(_PONG, payload)
        elif opcode == _CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self._write(_CLOSE, payload[:2])
            assert self.transport is not None
            self.transport.close()

    # -- sending and closing ---------------------------------------------------------
    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(opcode, payload))

    def send_text(self, text: str) -> None:
        self._write(_TEXT, text.encode())

    def fail(self, code: int, reason: str) -> None:
        """Close with ``code`` at once (the server broke the protocol)."""
        self.close_code = code
        self._write(_CLOSE, struct.pack("!H", code) + reason.encode()[:100])
        assert self.transport is not None
        self.transport.close()

    def abort(self) -> None:
        """Cut the connection without a close frame (as a crash would)."""
        if self.transport is not None:
            self.transport.abort()

    async def close(self, timeout_s: float = 2.0) -> None:
        """Close politely: a close frame, then wait for the server's end."""
        if self.transport is None or self.closed.done():
            return
        self._write(_CLOSE, struct.pack("!H", 1000))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), timeout_s)
        self.abort()


async def open_stream(
    url: str,
    on_message: Callable[[StreamClient, bytes], None],
    timeout_s: float = 10.0,
    max_size: int = DEFAULT_MAX_SIZE,
) -> StreamClient:
    """Connect to ``ws://host:port/path?query`` and finish the opening handshake."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname or parts.port is None:
        raise ValueError(f"expected ws://host:port/..., got {url!r}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rsplit("@", 1)[-1]
    loop = asyncio.get_running_loop()

    def factory() -> StreamClient:
        return StreamClient(path, host, on_message, max_size)

    async with asyncio.timeout(timeout_s):
        _, client = await loop.create_connection(factory, parts.hostname, parts.port)
        try:
            await asyncio.shield(client.opened)
        except BaseException:
            client.abort()
            raise
    return client
