"""HTTP/2 interop with nginx over TLS (ALPN h2), connections counted in nginx's access log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import httpstream

from .peers.nginx import Nginx
from .peers.servers import pattern

pytestmark = pytest.mark.usefixtures("no_leaks")

BIG = 50 * 1024 * 1024
SMALL = b"hello from nginx\n"
WINDOW = httpstream.Limits().h2_stream_window


@pytest.fixture(scope="module")
def _nginx(cert_files: dict[str, str]) -> Iterator[Nginx]:
    server = Nginx(cert=cert_files["cert"], key=cert_files["key"], files={"big": pattern(BIG), "small": SMALL})
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def nginx(_nginx: Nginx) -> Nginx:
    _nginx.clear_log()
    return _nginx


def client(cert_files: dict[str, str]) -> httpstream.AsyncClient:
    return httpstream.AsyncClient(http2=True, verify=cert_files["ca"], timeout=httpstream.Timeout.all(10))


async def test_nginx_speaks_http2(nginx: Nginx, cert_files: dict[str, str]) -> None:
    async with client(cert_files) as c:
        r = await c.get(nginx.url("/small"))
        assert (r.status_code, r.http_version, r.content) == (200, "HTTP/2", SMALL)
    (line,) = nginx.wait_log(1)
    assert (line.protocol, line.status, line.uri) == ("HTTP/2.0", 200, "/small")


async def test_100_concurrent_gets_share_one_connection(nginx: Nginx, cert_files: dict[str, str]) -> None:
    async with client(cert_files) as c:  # an empty pool: the ALPN wait keeps them on one connection
        responses = await asyncio.gather(*(c.get(nginx.url(f"/small?i={i}")) for i in range(100)))
        assert all((r.http_version, r.content) == ("HTTP/2", SMALL) for r in responses)
    lines = nginx.wait_log(100)
    assert len(lines) == 100
    assert len({line.connection for line in lines}) == 1
    assert {line.protocol for line in lines} == {"HTTP/2.0"}


async def test_early_close_of_a_big_file_keeps_the_connection(nginx: Nginx, cert_files: dict[str, str]) -> None:
    async with client(cert_files) as c:
        for _ in range(3):
            async with c.stream("GET", nginx.url("/big")) as r:
                assert r.content_length == BIG
                chunks = r.aiter_raw()  # held: a dropped generator would close the body itself
                first = await anext(chunks)
                assert first == pattern(len(first))
        for i in range(10):
            assert (await c.get(nginx.url(f"/small?after={i}"))).content == SMALL
        pool = c.transport
        assert isinstance(pool, httpstream.ConnectionPool)
        stats = pool.stats()
        assert (stats.streams, stats.in_use, stats.connections) == (0, 0, 1)
    lines = nginx.wait_log(13)
    # nginx logs a request when it ends: the RST_STREAM ended each big one at
    # once, after no more than the stream window the client had granted.
    assert [line.uri for line in lines[:3]] == ["/big"] * 3
    assert all(line.body_bytes_sent <= 2 * WINDOW for line in lines[:3])
    assert len({line.connection for line in lines}) == 1
    assert [line.connection_requests for line in lines if line.uri.startswith("/small")] == list(range(4, 14))


async def test_50_mb_download(nginx: Nginx, cert_files: dict[str, str]) -> None:
    async with client(cert_files) as c:
        got = 0
        async with c.stream("GET", nginx.url("/big")) as r:
            assert (r.http_version, r.content_length) == ("HTTP/2", BIG)
            async for chunk in r.aiter_raw():
                assert chunk == pattern(len(chunk), got)
                got += len(chunk)
        assert got == BIG
        r = await c.get(nginx.url("/big"))  # buffered, on the same connection
        assert len(r.content) == BIG
    lines = nginx.wait_log(2)
    assert [(line.status, line.body_bytes_sent) for line in lines] == [(200, BIG), (200, BIG)]
    assert len({line.connection for line in lines}) == 1
