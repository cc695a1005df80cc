"""The dashboard server with real sockets: real ``websockets`` clients, real HTTP polls."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Callable
from typing import TypeVar

import pytest
from helpers import run, started
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from loadkit.workloads.dashboard.board import BoardView
from loadkit.workloads.dashboard.loadclient import Shared, WsClient, http_get, stuck_client
from loadkit.workloads.dashboard.protocol import peek_header
from loadkit.workloads.dashboard.server import DashboardServer, ServerConfig

T = TypeVar("T")


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


def ws_url(server: DashboardServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/ws{query}"


async def get(server: DashboardServer, path: str, etag: str | None = None):
    return await http_get("127.0.0.1", server.port, path, etag)


def test_broadcast_reaches_every_client_in_order() -> None:
    async def scenario() -> None:
        server, sim = await started(200)
        try:
            clients = [await connect(ws_url(server), compression=None) for _ in range(20)]
            views = []
            for ws in clients:
                snap = json.loads(await ws.recv())
                assert snap["type"] == "snapshot"
                view = BoardView()
                view.load(snap)
                views.append((snap["seq"], view))
            for _ in range(30):
                server.publish(sim.tick(50))
            for ws, (seq, view) in zip(clients, views, strict=True):
                for expected in range(seq + 1, seq + 31):
                    msg = json.loads(await ws.recv())
                    assert (msg["type"], msg["seq"]) == ("update", expected)
                    assert view.apply(msg)
                assert view.agents() == server.board.states == sim.states
            for ws in clients:
                await ws.close()
        finally:
            await server.close()

    run(scenario())


def test_polling_returns_the_streamed_snapshot_and_honours_the_etag() -> None:
    async def scenario() -> None:
        server, sim = await started(150)
        try:
            async with connect(ws_url(server), compression=None) as ws:
                streamed = json.loads(await ws.recv())
                status, headers, body = await get(server, "/api/snapshot")
                assert status == 200
                assert headers["content-type"] == "application/json"
                assert json.loads(body) == streamed
                status, _, body = await get(server, "/api/snapshot", headers["etag"])
                assert (status, body) == (304, b"")
                server.publish(sim.tick(10))
                update = json.loads(await ws.recv())
                status, again, body = await get(server, "/api/snapshot", headers["etag"])
                assert status == 200 and again["etag"] != headers["etag"]
                polled = json.loads(body)
                assert polled["seq"] == update["seq"]
                assert polled["agents"] == sim.states
        finally:
            await server.close()

    run(scenario())


def test_page_and_assets_are_served_and_unknown_paths_get_404() -> None:
    async def scenario() -> None:
        server, _ = await started()
        try:
            status, headers, body = await get(server, "/")
            assert status == 200 and headers["content-type"].startswith("text/html")
            assert b'<script src="dashboard.js">' in body
            for asset, ctype in (
                ("/dashboard.js", "text/javascript"),
                ("/dashboard.css", "text/css"),
            ):
                status, headers, body = await get(server, asset)
                assert status == 200 and headers["content-type"].startswith(ctype) and body
            for path in ("/nope", "/static/../loadkit.py", "/api"):
                assert (await get(server, path))[0] == 404
            assert server.refused["not_found"] == 3
        finally:
            await server.close()

    run(scenario())


def test_bad_messages_close_only_their_connection() -> None:
    async def scenario() -> None:
        server, sim = await started()
        try:
            bystander = await connect(ws_url(server), compression=None)
            await bystander.recv()
            cases = [("{not json", 1008), (b"\x00binary", 1003), ('{"type":"x"}', 1008)]
            cases.append(('{"type":"ping","pad":"' + "x" * 4096 + '"}', 1009))
            for message, code in cases:
                async with connect(ws_url(server), compression=None) as ws:
                    await ws.recv()
                    await ws.send(message)
                    with pytest.raises(ConnectionClosed):
                        while True:
                            await ws.recv()
                    assert ws.close_code == code, message
            server.publish(sim.tick(5))
            assert peek_header(await bystander.recv()).type == "update"
            await bystander.send('{"type":"resync"}')
            assert peek_header(await bystander.recv()).type == "snapshot"
            await bystander.send('{"type":"ping"}')
            assert peek_header(await bystander.recv()).type == "pong"
            await bystander.close()
            await until(lambda: server.refused["oversize"] == 1, 5, "oversize counted")
            assert server.refused["bad_message"] == 3
        finally:
            await server.close()

    run(scenario())


def test_token_is_required_by_page_api_and_stream() -> None:
    async def scenario() -> None:
        server, _ = await started(token="s3cret")
        try:
            for path in ("/", "/api/snapshot", "/api/snapshot?token=wrong", "/?token="):
                assert (await get(server, path))[0] == 401, path
            assert (await get(server, "/dashboard.js"))[0] == 200  # public code, no data
            with pytest.raises(InvalidStatus) as info:
                await connect(ws_url(server))
            assert info.value.response.status_code == 401
            assert (await get(server, "/?token=s3cret"))[0] == 200
            assert (await get(server, "/api/snapshot?token=s3cret"))[0] == 200
            async with connect(
                ws_url(server), additional_headers={"Authorization": "Bearer s3cret"}
            ) as ws:
                assert peek_header(await ws.recv()).type == "snapshot"
            async with connect(ws_url(server, "?token=s3cret")) as ws:
                assert peek_header(await ws.recv()).type == "snapshot"
            assert server.refused["token"] == 5
        finally:
            await server.close()

    run(scenario())


def test_connection_limit_refuses_extra_clients_only() -> None:
    async def scenario() -> None:
        server, sim = await started(max_connections=2)
        try:
            first = [await connect(ws_url(server)) for _ in range(2)]
            for ws in first:
                await ws.recv()
            with pytest.raises(InvalidStatus) as info:
                await connect(ws_url(server))
            assert info.value.response.status_code == 503
            server.publish(sim.tick(5))
            for ws in first:
                assert peek_header(await ws.recv()).type == "update"
                await ws.close()
        finally:
            await server.close()

    run(scenario())


def test_stuck_client_is_dropped_and_others_get_every_message() -> None:
    async def scenario() -> None:
        server, sim = await started(2000, max_buffer_bytes=64 * 1024, send_buffer_bytes=16 * 1024)
        stop = asyncio.Event()
        shared = Shared()
        readers = [WsClient(ws_url(server), shared) for _ in range(5)]
        tasks = [asyncio.ensure_future(c.run(stop)) for c in readers]
        try:
            await until(lambda: all(c.first_snapshot.is_set() for c in readers), 10, "readers")
            wake = asyncio.Event()
            stuck = asyncio.ensure_future(stuck_client(ws_url(server), wake))
            await until(lambda: len(server.clients) == 6, 5, "the stuck client")
            rounds = 0
            while server.slow_clients_dropped == 0 and rounds < 400:
                server.publish(sim.tick(2000))
                rounds += 1
                await asyncio.sleep(0.01)
            assert server.slow_clients_dropped == 1, f"not dropped after {rounds} rounds"
            assert len(server.clients) == 5
            wake.set()
            assert await asyncio.wait_for(stuck, 5) is True  # its connection really ended
            last = server.seq
            await until(
                lambda: all(c.gaps.last_seq == last for c in readers), 10, "readers caught up"
            )
            assert [c.gaps.missed for c in readers] == [0] * 5
            assert [len(c.connected_at) for c in readers] == [1] * 5  # never disconnected
            assert len(server.clients) == 5
        finally:
            stop.set()
            for c in readers:
                if c.ws is not None:
                    await c.ws.close()
            await asyncio.gather(*tasks)
            await server.close()

    run(scenario(), timeout_s=60)


def test_clients_come_back_after_restart_and_after_drop_all() -> None:
    async def scenario() -> None:
        server, sim = await started(100)
        port = server.port
        stop = asyncio.Event()
        shared = Shared()
        clients = [WsClient(ws_url(server), shared) for _ in range(10)]
        tasks = [asyncio.ensure_future(c.run(stop)) for c in clients]
        try:
            await until(lambda: all(c.connected_at for c in clients), 10, "first connections")
            old_boot = server.boot
            await server.close()
            server = await DashboardServer(ServerConfig(port=port)).start()
            server.publish(sim.tick(100))
            await until(lambda: all(len(c.connected_at) == 2 for c in clients), 10, "reconnects")
            assert {c.gaps.boot for c in clients} == {server.boot} != {old_boot}
            assert server.drop_all() == 10
            await until(lambda: all(len(c.connected_at) == 3 for c in clients), 10, "after drop")
            for _ in range(5):
                server.publish(sim.tick(10))
            await until(lambda: all(c.gaps.last_seq == server.seq for c in clients), 10, "data")
            assert sum(c.gaps.missed for c in clients) == 0
        finally:
            stop.set()
            for c in clients:
                if c.ws is not None:
                    await c.ws.close()
            await asyncio.gather(*tasks)
            await server.close()

    run(scenario())


def test_large_snapshot_reaches_a_slow_poller_whole() -> None:
    """A plain HTTP response is closed right after it is sent: every byte of a snapshot
    bigger than the socket buffers must reach a client that is slow to read it."""

    async def scenario() -> None:
        server, _ = await started(20_000)
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader
            sock.connect(("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            host = f"127.0.0.1:{server.port}"
            writer.write(f"GET /api/snapshot HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            await asyncio.sleep(0.5)  # the server has long finished "sending" by now
            data = await reader.read()
            writer.close()
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            assert len(body) == length > 300_000
            assert len(json.loads(body)["agents"]) == 20_000
        finally:
            await server.close()

    run(scenario())
