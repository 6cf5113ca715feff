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
