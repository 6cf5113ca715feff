"""HTTP/3 against hypercorn's QUIC server (aioquic): discovery, explicit mode, fallback, release rules."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import pytest

import httpstream
from httpstream._h3 import HTTP3Connection

from .peers.caddy import SMALL, Caddy
from .peers.servers import HypercornServer, pattern

pytestmark = pytest.mark.usefixtures("no_leaks")


def client(cert_files: dict[str, str], **options: object) -> httpstream.AsyncClient:
    return httpstream.AsyncClient(verify=cert_files["ca"], **options)  # type: ignore[arg-type]


def pool_of(c: httpstream.AsyncClient) -> httpstream.ConnectionPool:
    pool = c.transport
    assert isinstance(pool, httpstream.ConnectionPool)
    return pool


async def test_alt_svc_discovery_then_http3(h3_server: HypercornServer, cert_files: dict[str, str]) -> None:
    async with client(cert_files, http2=True, http3=True) as c:
        first = await c.get(h3_server.url("/hello"))
        assert first.http_version == "HTTP/2"
        assert first.headers["alt-svc"].startswith("h3=")
        second = await c.get(h3_server.url("/hello"))
        assert second.http_version == "HTTP/3"
        assert second.content == b"hello world\n"
    async with client(cert_files, http3=False) as c:  # off: Alt-Svc is ignored
        for _ in range(2):
            assert (await c.get(h3_server.url("/hello"))).http_version == "HTTP/1.1"


async def test_explicit_http3(h3_server: HypercornServer, cert_files: dict[str, str]) -> None:
    async with client(cert_files, http3="only") as c:
        r = await c.get(h3_server.url("/bytes/100000"))
        assert r.http_version == "HTTP/3"
        assert r.content == pattern(100000)
        r = await c.post(h3_server.url("/upload"), content=pattern(3_000_000))
        assert r.json() == {"received": 3_000_000, "pattern_ok": True}
    assert h3_server.app.connections == 1


async def test_fallback_when_nothing_listens_on_udp(cert_files: dict[str, str], tls_server: HypercornServer) -> None:
    """An Alt-Svc pointing at a dead UDP port: fast fallback to TCP, origin marked broken."""
    async with client(cert_files, http3=True) as c:
        pool = pool_of(c)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        dead_port = udp.getsockname()[1]
        udp.close()
        origin = httpstream.URL(tls_server.url("/")).origin
        pool._altsvc.update(origin, [f'h3=":{dead_port}"; ma=60'], time.monotonic())
        start = time.monotonic()
        r = await c.get(tls_server.url("/hello"))
        assert r.http_version == "HTTP/1.1"
        assert time.monotonic() - start < 1.5  # within the handshake deadline, no hang
        assert pool._altsvc.is_broken(origin, time.monotonic())
        start = time.monotonic()
        assert (await c.get(tls_server.url("/hello"))).http_version == "HTTP/1.1"
        assert time.monotonic() - start < 0.5  # broken: no second attempt
    async with client(cert_files, http3="only", timeout=httpstream.Timeout(connect=2)) as c:
        with pytest.raises(httpstream.ConnectError, match="UDP"):
            await c.get(f"https://127.0.0.1:{dead_port}/")


async def test_alt_svc_clear_and_max_age(h3_server: HypercornServer, cert_files: dict[str, str]) -> None:
    async with client(cert_files, http3=True) as c:
        pool = pool_of(c)
        origin = httpstream.URL(h3_server.url("/")).origin
        pool._altsvc.update(origin, [f'h3=":{h3_server.port}"; ma=1'], time.monotonic() - 5)  # expired
        assert (await c.get(h3_server.url("/hello"))).http_version == "HTTP/1.1"
        pool._altsvc.update(origin, ["clear"], time.monotonic())
        assert pool._altsvc.lookup(origin, time.monotonic()) is None


async def test_100_concurrent_streams_share_one_quic_connection(
    h3_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    async with client(cert_files, http3="only") as c:
        results = await asyncio.gather(*(c.get(h3_server.url("/bytes/2000")) for _ in range(100)))
        assert {r.http_version for r in results} == {"HTTP/3"}
        assert all(r.content == pattern(2000) for r in results)
        stats = pool_of(c).stats()
        assert (stats.connections, stats.streams) == (1, 0)
    assert h3_server.app.connections == 1


# hypercorn's QUIC server dies when a client resets a stream it is still sending
# on ("Cannot send data after the stream was reset"), so the reset rules run
# against caddy (quic-go), a second, independent QUIC implementation.


async def test_caddy_discovery_and_early_close(caddy: Caddy, cert_files: dict[str, str]) -> None:
    async with client(cert_files, http2=True, http3=True) as c:
        pool = pool_of(c)
        assert (await c.get(caddy.url("/small"))).http_version == "HTTP/2"
        r = await c.get(caddy.url("/small"))
        assert (r.http_version, r.content) == ("HTTP/3", SMALL)
        async with c.stream("GET", caddy.url("/big")) as r:
            assert r.http_version == "HTTP/3"
            assert r.content_length == 256 * 1024 * 1024
            await anext(r.aiter_raw())
        assert pool.stats().streams == 0
        quic = [s for s in pool._slots if isinstance(s, HTTP3Connection)]
        assert len(quic) == 1
        start = time.monotonic()
        for _ in range(5):
            assert (await c.get(caddy.url("/small"))).content == SMALL
        assert time.monotonic() - start < 2
        assert [s for s in pool._slots if isinstance(s, HTTP3Connection)] == quic  # the same connection


async def test_slow_reader_buffer_is_bounded_by_the_stream_window(caddy: Caddy, cert_files: dict[str, str]) -> None:
    window = 256 * 1024
    async with client(cert_files, http3="only", limits=httpstream.Limits(h3_stream_window=window)) as c:
        async with c.stream("GET", caddy.url("/big")) as r:
            stream = r.stream
            assert isinstance(stream, httpstream.ResponseStream)
            await asyncio.sleep(0.5)  # the server sends what the window allows, then waits
            assert 0 < stream.buffer.size <= window + 64 * 1024
            got = 0
            async for chunk in r.aiter_raw():
                got += len(chunk)
                if got > 4 * 1024 * 1024:
                    break
            assert stream.buffer.size <= window + 64 * 1024
        assert (await c.get(caddy.url("/small"))).content == SMALL


async def test_cancellation_leaves_no_active_streams(caddy: Caddy, cert_files: dict[str, str]) -> None:
    rng = random.Random(3)

    async def one(c: httpstream.AsyncClient) -> None:
        path = rng.choice(["/small", "/big"])
        async with c.stream("GET", caddy.url(path)) as r:
            async for _ in r.aiter_raw():
                await asyncio.sleep(0)

    async with client(cert_files, http3="only") as c:
        pool = pool_of(c)
        for _ in range(4):
            tasks = [asyncio.create_task(one(c)) for _ in range(25)]
            await asyncio.sleep(rng.random() * 0.05)
            for task in tasks:
                if rng.random() < 0.8 or not task.done():
                    task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results), results
        stats = pool.stats()
        assert (stats.streams, stats.in_use) == (0, 0)
        assert stats.connections == 1
        assert (await c.get(caddy.url("/small"))).http_version == "HTTP/3"


async def test_session_ticket_is_kept_for_resumption(caddy: Caddy, cert_files: dict[str, str]) -> None:
    """quic-go issues session tickets (hypercorn does not): kept per origin, offered again."""
    async with client(cert_files, http3="only") as c:
        await c.get(caddy.url("/small"))
        await asyncio.sleep(0.05)
        pool = pool_of(c)
        origin = httpstream.URL(caddy.url("/")).origin
        assert origin in pool._tickets
        for conn in list(pool._slots):
            conn.close()  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
        r = await c.get(caddy.url("/small"))
        assert r.http_version == "HTTP/3"
        assert r.content == SMALL
        (conn,) = [s for s in pool._slots if isinstance(s, HTTP3Connection)]
        assert conn.protocol.resumed


async def test_fallback_when_udp_is_blackholed_takes_under_a_second(
    cert_files: dict[str, str], tls_server: HypercornServer
) -> None:
    """A UDP port that swallows datagrams (no ICMP): the default handshake deadline decides."""
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blackhole.bind(("127.0.0.1", 0))  # bound, never read: datagrams vanish, no "unreachable"
    try:
        async with client(cert_files, http3=True) as c:
            pool = pool_of(c)
            origin = httpstream.URL(tls_server.url("/")).origin
            pool._altsvc.update(origin, [f'h3=":{blackhole.getsockname()[1]}"'], time.monotonic())
            start = time.monotonic()
            r = await c.get(tls_server.url("/hello"))
            elapsed = time.monotonic() - start
            assert r.http_version == "HTTP/1.1"
            assert elapsed < 1.0, elapsed
            assert pool.stats().connections == 1  # the abandoned QUIC attempt left nothing behind
    finally:
        blackhole.close()


async def test_rounds_of_100_streams_wait_for_max_streams_not_for_expiry(caddy: Caddy, cert_files: dict[str, str]) -> None:
    """Rounds past the server's initial stream limit go on as MAX_STREAMS arrives, on one connection."""
    async with client(cert_files, http3="only") as c:
        for _ in range(4):
            start = time.monotonic()
            results = await asyncio.gather(*(c.get(caddy.url("/small")) for _ in range(100)))
            assert time.monotonic() - start < 2.0
            assert {r.http_version for r in results} == {"HTTP/3"}
        stats = pool_of(c).stats()
        assert (stats.connections, stats.streams, stats.queued) == (1, 0, 0)
