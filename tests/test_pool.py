"""Pool bookkeeping (layer 4, ``_pool``): counts, limits, the queue, keep-alive, against hypercorn.

Every count asserted here is also checked from the server's side where it can
be: ``server.app.connections`` (distinct client addresses hypercorn saw) or a
raw ``FaultServer``'s ``accepted``, whose bodies end when the test says.
"""

from __future__ import annotations

import asyncio

import pytest

import httpstream

from .peers.servers import FaultServer, HypercornServer, read_request

pytestmark = pytest.mark.usefixtures("no_leaks")


def paced_server(finish: asyncio.Event) -> FaultServer:
    """Each connection: a 10-byte body of which the last 5 bytes wait for ``finish``; keep-alive."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234")
            await finish.wait()
            writer.write(b"56789")

    return FaultServer(handler)


async def test_repr_and_stats_count_connections_by_state() -> None:
    finish = asyncio.Event()
    empty = "<ConnectionPool connections=0 active=0 idle=0 draining=0 connecting=0 queued=0>"
    async with paced_server(finish) as srv, httpstream.ConnectionPool() as pool:
        assert repr(pool) == empty
        response = await pool.handle_request(httpstream.Request("GET", srv.url()))
        # The head is in, the body is not: the connection belongs to this response.
        assert repr(pool) == "<ConnectionPool connections=1 active=1 idle=0 draining=0 connecting=0 queued=0>"
        assert pool.stats().in_use == 1
        finish.set()
        assert b"".join([chunk async for chunk in response.stream]) == b"0123456789"
        # Read to the end: back to the pool at once, idle.
        assert repr(pool) == "<ConnectionPool connections=1 active=0 idle=1 draining=0 connecting=0 queued=0>"
        stats = pool.stats()
        assert (stats.connections, stats.active, stats.idle, stats.in_use, stats.queued) == (1, 0, 1, 0, 0)
        response = await pool.handle_request(httpstream.Request("GET", srv.url()))  # the idle one, reused
        assert b"".join([chunk async for chunk in response.stream]) == b"0123456789"
        await pool.aclose()
        assert repr(pool) == empty
        assert srv.accepted == 1


async def test_idle_connections_beyond_max_keepalive_are_closed() -> None:
    finish = asyncio.Event()
    limits = httpstream.Limits(max_keepalive_connections=1)
    async with paced_server(finish) as srv, httpstream.AsyncClient(limits=limits) as client:
        pool = client.transport
        assert isinstance(pool, httpstream.ConnectionPool)
        held = [await client.stream("GET", srv.url()).__aenter__() for _ in range(3)]
        assert (pool.stats().connections, pool.stats().active) == (3, 3)
        finish.set()
        for response in held:
            assert await response.aread() == b"0123456789"  # read to the end: each goes back to the pool
        stats = pool.stats()
        assert (stats.connections, stats.idle, stats.in_use) == (1, 1, 0)  # two over the keep-alive limit closed
        for _ in range(2):
            assert (await client.get(srv.url())).content == b"0123456789"
        assert pool.stats().connections == 1
        assert srv.accepted == 3  # the later GETs reused the one kept


async def test_keepalive_expiry(server: HypercornServer) -> None:
    limits = httpstream.Limits(keepalive_expiry=0.1)
    async with httpstream.AsyncClient(limits=limits) as client:
        await client.get(server.url("/hello"))
        assert client.transport.stats().idle == 1  # type: ignore[attr-defined]
        await asyncio.sleep(0.25)
        assert client.transport.stats().idle == 0  # type: ignore[attr-defined]
        await client.get(server.url("/hello"))
    assert server.app.connections == 2


async def test_pool_limits_queue_and_pool_timeout(server: HypercornServer) -> None:
    limits = httpstream.Limits(max_connections=2, max_keepalive_connections=1)
    async with httpstream.AsyncClient(limits=limits, timeout=httpstream.Timeout(pool=0.2)) as client:
        pool = client.transport
        assert isinstance(pool, httpstream.ConnectionPool)
        a = await client.stream("GET", server.url("/stall")).__aenter__()
        b = await client.stream("GET", server.url("/stall")).__aenter__()
        with pytest.raises(httpstream.PoolTimeout, match="pool timeout"):
            await client.get(server.url("/hello"))
        waiting = asyncio.create_task(client.get(server.url("/hello"), timeout=httpstream.Timeout(pool=5)))
        await asyncio.sleep(0.05)
        assert pool.stats().queued == 1
        await a.aclose()  # a large remainder: closed, which frees a slot
        assert (await waiting).status_code == 200
        await b.aclose()
        stats = pool.stats()
        assert stats.idle <= 1
        assert stats.in_use == 0


async def test_cancelled_pool_waiter_leaks_nothing(server: HypercornServer) -> None:
    limits = httpstream.Limits(max_connections=1)
    async with httpstream.AsyncClient(limits=limits) as client:
        pool = client.transport
        assert isinstance(pool, httpstream.ConnectionPool)
        held = await client.stream("GET", server.url("/stall")).__aenter__()
        waiters = [asyncio.create_task(client.get(server.url("/hello"))) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert pool.stats().queued == 5
        waiters[0].cancel()
        waiters[2].cancel()
        await held.aclose()
        done = await asyncio.gather(*waiters, return_exceptions=True)
        assert [isinstance(d, asyncio.CancelledError) for d in done] == [True, False, True, False, False]
        stats = pool.stats()
        assert (stats.in_use, stats.queued) == (0, 0)


# -- the one connection interface ---------------------------------------------------------------


def test_every_connection_kind_implements_the_interface() -> None:
    """HTTP/1.1, HTTP/2 and HTTP/3 connections all carry every member of ``Connection``."""
    import inspect

    from httpstream._h1 import HTTP11Connection
    from httpstream._h2 import HTTP2Connection
    from httpstream._h3 import HTTP3Connection
    from httpstream._interfaces import Connection

    members = {
        name
        for name, value in vars(Connection).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    } | set(Connection.__annotations__)
    assert {"handle_request", "is_available", "is_idle", "has_expired", "is_closed", "aclose", "info"} <= members
    for kind in (HTTP11Connection, HTTP2Connection, HTTP3Connection):
        for name in members - set(Connection.__annotations__):
            assert callable(getattr(kind, name, None)), f"{kind.__name__} lacks {name}"
        for name in ("handle_request", "check", "aclose"):
            assert inspect.iscoroutinefunction(getattr(kind, name)), f"{kind.__name__}.{name} is not async"


def test_the_pool_speaks_to_connections_through_the_interface_only() -> None:
    """No ``isinstance`` on a connection class and no reach into a connection's protocol in ``_pool``."""
    import ast
    import pathlib

    source = pathlib.Path(httpstream.__file__).parent / "_pool.py"
    tree = ast.parse(source.read_text())
    classes = {"HTTP11Connection", "HTTP2Connection", "HTTP3Connection"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
            named = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            assert not named & classes, f"line {node.lineno}: isinstance on {named & classes}"
        opened = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "connected"
        if isinstance(node, ast.Attribute) and node.attr in ("protocol", "lost", "lost_future", "transport") and not opened:
            # (``connected`` is the fresh socket from _net, before any connection owns it)
            raise AssertionError(f"line {node.lineno}: the pool reads a connection's .{node.attr}")


async def test_a_detached_connection_is_neither_counted_nor_closed_by_the_pool() -> None:
    """A 101 hands the connection over: stats forget it, aclose() leaves it open."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()

    async with FaultServer(handler) as srv:
        pool = httpstream.ConnectionPool()
        request = httpstream.Request("GET", srv.url(), headers={"Upgrade": "echo", "Connection": "Upgrade"})
        response = await pool.handle_request(request)
        stream = response.extensions["network_stream"]
        assert pool.stats() == httpstream.PoolStats(0, 0, 0, 0, 0, 0)
        await pool.aclose()
        await stream.write(b"still here", timeout=5)
        assert await stream.read(100, timeout=5) == b"still here"
        await stream.aclose()
