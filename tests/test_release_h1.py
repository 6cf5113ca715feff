"""The HTTP/1.1 release rules of the lifecycle table, checked by the server's counts."""

from __future__ import annotations

import asyncio
import gc

import pytest

import httpstream

from .peers.servers import FaultServer, HypercornServer, pattern, read_request

pytestmark = pytest.mark.usefixtures("no_leaks")


def head(length: int | None = None, extra: bytes = b"") -> bytes:
    framing = b"Content-Length: %d\r\n" % length if length is not None else b"Transfer-Encoding: chunked\r\n"
    return b"HTTP/1.1 200 OK\r\n" + framing + extra + b"\r\n"


async def test_full_read_returns_connection_at_once(server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        for _ in range(20):
            r = await client.get(server.url("/bytes/5000"))
            assert r.content == pattern(5000)
            assert client.transport.stats().idle == 1  # type: ignore[attr-defined]
        async with client.stream("GET", server.url("/chunked/70000")) as r:
            async for _ in r.aiter_raw():
                pass
            stats = client.transport.stats()  # type: ignore[attr-defined]
            assert (stats.active, stats.idle) == (0, 1)
    assert server.app.connections == 1


async def test_early_close_small_remainder_is_drained_and_reused() -> None:
    go_on = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(50_000) + pattern(1000))
        await go_on.wait()
        writer.write(pattern(49_000, 1000))
        while True:
            await read_request(reader)
            writer.write(head(5) + b"hello")

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        pool = client.transport
        assert isinstance(pool, httpstream.ConnectionPool)
        async with client.stream("GET", srv.url()) as r:
            assert await anext(r.aiter_raw()) == pattern(1000)
        assert pool.stats().draining == 1
        go_on.set()
        for _ in range(3):  # the first one waits for the drain instead of connecting
            assert (await client.get(srv.url())).content == b"hello"
        assert pool.stats().draining == 0
        assert srv.accepted == 1


async def test_early_close_large_remainder_closes() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(10_000_000) + pattern(1000))
        await reader.read()  # until the client closes

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        async with client.stream("GET", srv.url()) as r:
            await anext(r.aiter_raw())
        assert client.transport.stats().connections == 0  # type: ignore[attr-defined]


async def test_early_close_unknown_remainder_closes() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(None) + b"5\r\nhello\r\n")
        await reader.read()

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        async with client.stream("GET", srv.url()) as r:
            assert await anext(r.aiter_raw()) == b"hello"
        assert client.transport.stats().connections == 0  # type: ignore[attr-defined]


async def test_drain_has_a_deadline() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(2000) + pattern(100))
        await reader.read()

    limits = httpstream.Limits(drain_timeout=0.1)
    async with FaultServer(handler) as srv, httpstream.AsyncClient(limits=limits) as client:
        pool = client.transport
        assert isinstance(pool, httpstream.ConnectionPool)
        async with client.stream("GET", srv.url()) as r:
            await anext(r.aiter_raw())
        assert pool.stats().draining == 1
        for _ in range(100):
            await asyncio.sleep(0.01)
            if pool.stats().connections == 0:
                break
        assert pool.stats().connections == 0


async def test_cancel_while_waiting_for_head(server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        task = asyncio.create_task(client.get(server.url("/slow/5")))
        await asyncio.sleep(0.1)
        assert client.transport.stats().active == 1  # type: ignore[attr-defined]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = client.transport.stats()  # type: ignore[attr-defined]
        assert stats.in_use == 0
        assert stats.connections == 0  # an unanswered request poisons the connection
        assert (await client.get(server.url("/hello"))).status_code == 200


async def test_cancel_while_reading_body() -> None:
    started = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(1_000_000) + pattern(1000))
        await reader.read()

    async def reader_task(client: httpstream.AsyncClient, url: str) -> None:
        async with client.stream("GET", url) as r:
            async for _ in r.aiter_raw():
                started.set()

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        task = asyncio.create_task(reader_task(client, srv.url()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.transport.stats().in_use == 0  # type: ignore[attr-defined]


async def test_dropped_response_warns_and_closes() -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(1_000_000) + pattern(1000))
        await reader.read()
        closed.set()

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        context = client.stream("GET", srv.url())
        response = await context.__aenter__()
        del context
        with pytest.warns(ResourceWarning, match="never closed"):
            del response
            gc.collect()
        await asyncio.wait_for(closed.wait(), 5)
        assert client.transport.stats().connections == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        (head(100) + pattern(40), httpstream.RemoteProtocolError, "40 of 100 body bytes"),
        (head(None) + b"5\r\nhello\r\n", httpstream.RemoteProtocolError, "last chunk"),
        (head(None) + b"5\r\nhello\r\nzz\r\n", httpstream.RemoteProtocolError, "chunk"),
        (b"HTTP/1.1 200 OK\r\nContent-Len", httpstream.RemoteProtocolError, "response head"),
        (b"", httpstream.RemoteProtocolError, "without sending a response"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n", httpstream.RemoteProtocolError, "."),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 10_000 + b"\r\n", httpstream.RemoteProtocolError, "."),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 300 + b"Content-Length: 0\r\n\r\n", httpstream.RemoteProtocolError, "header fields"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", httpstream.RemoteProtocolError, "."),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", httpstream.RemoteProtocolError, "."),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", httpstream.RemoteProtocolError, "."),
        (b"NOTHTTP garbage\r\n\r\n", httpstream.RemoteProtocolError, "."),
    ],
)
async def test_broken_responses_raise(payload: bytes, error: type[Exception], message: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(payload)
        await writer.drain()
        writer.close()

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        with pytest.raises(error, match=message):
            await client.get(srv.url())
        assert client.transport.stats().connections == 0  # type: ignore[attr-defined]


async def test_reset_mid_body_is_a_read_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(100_000) + pattern(1000))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        got = b""
        with pytest.raises((httpstream.ReadError, httpstream.RemoteProtocolError)):
            async with client.stream("GET", srv.url()) as r:
                async for chunk in r.aiter_raw():
                    got += chunk
        assert got == pattern(len(got))
        assert len(got) < 100_000


async def test_obsolete_line_folding_is_unfolded() -> None:
    # RFC 9112 section 5.2: a user agent replaces obs-fold with SP before use.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 2\r\n\r\nok")
        await reader.read()

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        r = await client.get(srv.url())
        assert r.headers["x"] == "a folded"


async def test_te_and_cl_together_uses_chunked_and_does_not_reuse() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        assert (await client.get(srv.url())).content == b"hello"
        assert (await client.get(srv.url())).content == b"hello"
        assert srv.accepted == 2


async def test_extra_bytes_after_body_prevent_reuse() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(head(5) + b"helloEXTRA")

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        assert (await client.get(srv.url())).content == b"hello"
        assert (await client.get(srv.url())).content == b"hello"
        assert srv.accepted == 2


async def test_idle_close_is_detected_before_reuse() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(2) + b"ok")
        await writer.drain()
        writer.close()  # keep-alive promised, then closed while idle

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        for _ in range(3):
            assert (await client.get(srv.url())).content == b"ok"
            await asyncio.sleep(0.05)
        assert srv.accepted == 3


async def test_stale_connection_retried_once_for_idempotent_requests() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(2) + b"ok")
        await read_request(reader)  # the next request on this connection...
        writer.transport.abort()  # ...is never answered

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        assert (await client.get(srv.url())).content == b"ok"
        assert (await client.get(srv.url())).content == b"ok"  # retried on a new connection
        assert srv.accepted == 2
        with pytest.raises(httpstream.StaleConnection, match="reused"):
            await client.post(srv.url(), content=b"x")
        assert srv.accepted == 2
        assert client.transport.stats().in_use == 0  # type: ignore[attr-defined]


async def test_backpressure_holds_bounded_buffer() -> None:
    sent = 0
    blocked = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        size = 256 * 1024 * 1024
        writer.write(head(size))
        while sent < size:
            writer.write(pattern(65536, sent))
            sent += 65536
            try:
                await asyncio.wait_for(writer.drain(), 0.3)
            except TimeoutError:
                blocked.set()
                await writer.drain()

    limits = httpstream.Limits(read_high_water=512 * 1024, read_low_water=128 * 1024)
    async with FaultServer(handler) as srv, httpstream.AsyncClient(limits=limits) as client:
        async with client.stream("GET", srv.url()) as r:
            stream = r.stream
            assert isinstance(stream, httpstream.ResponseStream)
            await asyncio.wait_for(blocked.wait(), 10)  # the server cannot send more
            assert stream.buffer.size <= 512 * 1024 + 256 * 1024
            assert sent < 64 * 1024 * 1024  # socket buffers, not the whole body
            got = 0
            async for chunk in r.aiter_raw():
                assert chunk == pattern(len(chunk), got)
                got += len(chunk)
                if got > 32 * 1024 * 1024:
                    break
            assert stream.buffer.size <= 512 * 1024 + 256 * 1024


async def test_close_delimited_body_ends_with_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + pattern(5000))
        await writer.drain()
        writer.close()

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        async with client.stream("GET", srv.url()) as r:
            assert r.content_length is None
            assert await r.aread() == pattern(5000)
        assert (await client.get(srv.url())).content == pattern(5000)
        assert srv.accepted == 2  # never reused


async def test_informational_responses_are_skipped_and_capped() -> None:
    count = 3

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * count + head(2) + b"ok")

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        assert (await client.get(srv.url())).content == b"ok"
        count = 17
        with pytest.raises(httpstream.RemoteProtocolError, match="informational"):
            await client.get(srv.url())


async def test_trailers_are_delivered() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(None, b"Trailer: X-Sum\r\n") + b"5\r\nhello\r\n0\r\nX-Sum: 42\r\n\r\n")
        await reader.read()

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        async with client.stream("GET", srv.url()) as r:
            assert await r.aread() == b"hello"
            assert r.trailers["x-sum"] == "42"


async def test_http10_response_reports_its_version_and_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        await reader.read()

    async with FaultServer(handler) as srv, httpstream.AsyncClient() as client:
        r = await client.get(srv.url())
        assert (r.http_version, r.content) == ("HTTP/1.0", b"hi")
        assert client.transport.stats().connections == 0  # type: ignore[attr-defined]
