"""``Expect: 100-continue`` (RFC 9110 section 10.1.1) over HTTP/1.1, HTTP/2 and HTTP/3.

Three behaviours, each against peers that show what was (not) sent:
(a) the server answers 100 Continue: the body follows it, not before;
(b) the server answers with a final status at once: the caller gets it and the
    body is never sent (HTTP/1.1 closes the connection, HTTP/2 and HTTP/3 end
    our side of the stream with NO_ERROR and keep the connection);
(c) the server never answers 100: the body goes out after ``Timeout.expect``.

Peers: raw asyncio servers (HTTP/1.1), the scriptable h2 server (HTTP/2), and
hypercorn over TLS + QUIC serving ``ExpectApp`` (on HTTP/1.1 it sends 100 as soon
as it has parsed the head, before the app runs, so an HTTP/1.1 refusal is tested
against the raw servers only; on HTTP/2 and HTTP/3 it never sends 100).  The request is
sent through the pool (the transport contract) so nothing above it takes part.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import h2.errors
import pytest

import httpstream

from .peers.h2_servers import H2FaultServer, H2ServerConnection, ServerStream
from .peers.servers import App, FaultServer, HypercornServer, Receive, Scope, Send, pattern

pytestmark = pytest.mark.usefixtures("no_leaks")

EXPECT = {"Expect": "100-continue"}


class ExpectApp(App):
    async def h_refuse(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """417 at once, never reading the body."""
        await self._send(send, 417, b"nope")


@pytest.fixture(scope="module")
def expect_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    server = HypercornServer(
        ExpectApp(), certfile=cert_files["cert"], keyfile=cert_files["key"], alpn=("h2", "http/1.1"), quic=True
    )
    server.start()
    yield server
    server.stop()


class Body:
    """A streamed request body that records whether anyone started reading it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.started = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        yield self.data[: len(self.data) // 2]
        yield self.data[len(self.data) // 2 :]


async def send(
    pool: httpstream.ConnectionPool,
    url: str,
    content: bytes | Body,
    timeout: httpstream.Timeout,
    headers: dict[str, str] | None = None,
) -> tuple[httpstream.Response, bytes, float]:
    """POST through the pool; the response, its body and the seconds it took (bounded)."""
    if headers is None:
        headers = dict(EXPECT)
    if isinstance(content, Body):
        headers = {**headers, "Content-Length": str(len(content.data))}
    start = time.monotonic()
    async with asyncio.timeout(10):
        request = httpstream.Request("POST", url, headers=headers, content=content, timeout=timeout)
        response = await pool.handle_request(request)
        body = await response.aread()
    return response, body, time.monotonic() - start


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError("no Content-Length in the request head")


async def quiet(reader: asyncio.StreamReader, seconds: float = 0.1) -> bytes:
    """What the client sends within ``seconds`` (b"" when it waits, as it should)."""
    try:
        return await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return b""


# -- HTTP/1.1 --------------------------------------------------------------------------------------


async def test_h1_body_follows_100_continue() -> None:
    early: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"\r\nexpect: 100-continue\r\n" in head.lower()
            first = await quiet(reader)
            early.append(first)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = first + await reader.readexactly(content_length(head) - len(first))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    async with FaultServer(handler) as srv, httpstream.ConnectionPool() as pool:
        timeout = httpstream.Timeout(expect=30)  # only the 100 can let the body go in time
        r, body, _ = await send(pool, srv.url(), pattern(100_000), timeout)
        assert (r.status_code, body) == (200, pattern(100_000))
        streamed = Body(b"streamed body")
        r, body, _ = await send(pool, srv.url(), streamed, timeout)
        assert (r.status_code, body) == (200, b"streamed body")
        assert early == [b"", b""]  # nothing of either body came before the 100
        assert srv.accepted == 1  # a completed exchange: the connection is reused


@pytest.mark.parametrize("status", [417, 401])
async def test_h1_final_answer_first_body_never_sent(status: int) -> None:
    after_head: list[bytes] = []
    both_closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 %d No\r\nContent-Length: 4\r\n\r\nnope" % status)
        after_head.append(await reader.read())  # until the client closes
        if len(after_head) == 2:
            both_closed.set()

    async with FaultServer(handler) as srv, httpstream.ConnectionPool() as pool:
        timeout = httpstream.Timeout(expect=30)
        for content in (Body(pattern(50_000)), pattern(50_000)):
            r, body, elapsed = await send(pool, srv.url(), content, timeout)
            assert (r.status_code, body) == (status, b"nope")
            assert elapsed < 5
            if isinstance(content, Body):
                assert not content.started
            # the request is incomplete on the wire: the connection is not reused
            assert pool.stats().connections == 0
        async with asyncio.timeout(5):
            await both_closed.wait()
        assert after_head == [b"", b""]  # not one body byte, then the client closed
        assert srv.accepted == 2


async def test_h1_no_answer_body_sent_after_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(content_length(head))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    async with FaultServer(handler) as srv, httpstream.ConnectionPool() as pool:
        # the header in any case
        r, body, elapsed = await send(
            pool, srv.url(), b"late", httpstream.Timeout(expect=0.3), {"EXPECT": "100-Continue"}
        )
        assert (r.status_code, body) == (200, b"late")
        assert elapsed >= 0.29
        # Timeout.expect None is no endless wait: the read timeout bounds it
        r, body, elapsed = await send(pool, srv.url(), Body(b"later"), httpstream.Timeout(expect=None, read=0.4))
        assert body == b"later"
        assert elapsed >= 0.39
        # no Expect header: no wait at all, whatever Timeout.expect says
        r, body, elapsed = await send(pool, srv.url(), b"at once", httpstream.Timeout(expect=30), {})
        assert body == b"at once"
        assert elapsed < 0.25
        assert srv.accepted == 1


async def test_h1_cancelled_while_waiting_for_100() -> None:
    got_head = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        got_head.set()
        await reader.read()

    async with FaultServer(handler) as srv, httpstream.ConnectionPool() as pool:
        task = asyncio.create_task(send(pool, srv.url(), b"body", httpstream.Timeout(expect=30)))
        async with asyncio.timeout(5):
            await got_head.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.stats().connections == 0


# -- HTTP/2 (scripted server, h2c) --------------------------------------------------------------------


def h2c_pool() -> httpstream.ConnectionPool:
    return httpstream.ConnectionPool(http1=False, http2=True)


async def test_h2_body_follows_100_continue() -> None:
    early: list[bytes] = []

    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        assert (b"expect", b"100-continue") in stream.headers
        await asyncio.sleep(0.1)  # a window in which a body sent too early would show
        early.append(bytes(stream.body))
        conn.send_headers(stream.stream_id, 100)
        await srv.until(lambda: stream.ended)
        await conn.respond(stream.stream_id, bytes(stream.body))

    async with H2FaultServer(handler, on_headers=True) as srv, h2c_pool() as pool:
        timeout = httpstream.Timeout(expect=30)
        r, body, _ = await send(pool, srv.url(), pattern(200_000), timeout)
        assert (r.status_code, r.http_version, body) == (200, "HTTP/2", pattern(200_000))
        r, body, _ = await send(pool, srv.url(), Body(b"streamed"), timeout)
        assert body == b"streamed"
        assert early == [b"", b""]
        assert srv.errors == []


async def test_h2_final_answer_first_ends_stream_with_no_error() -> None:
    seen: list[ServerStream] = []

    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        seen.append(stream)
        if stream.path == "/refuse":
            await conn.respond(stream.stream_id, b"nope", status=417)
        else:
            await srv.until(lambda: stream.ended)
            await conn.respond(stream.stream_id, b"ok")

    async with H2FaultServer(handler, on_headers=True) as srv, h2c_pool() as pool:
        content = Body(pattern(100_000))
        r, body, _ = await send(pool, srv.url("/refuse"), content, httpstream.Timeout(expect=30))
        assert (r.status_code, body) == (417, b"nope")
        assert not content.started
        refused = seen[0]
        await srv.until(lambda: refused.reset_by_client is not None)
        assert refused.reset_by_client == h2.errors.ErrorCodes.NO_ERROR
        assert refused.body == b"" and not refused.ended
        assert pool.stats().streams == 0
        # the connection carries on
        r, body, _ = await send(pool, srv.url("/next"), b"data", httpstream.Timeout(expect=0.05))
        assert body == b"ok"
        assert srv.accepted == 1
        assert srv.errors == []


async def test_h2_no_answer_body_sent_after_timeout() -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        await srv.until(lambda: stream.ended)
        await conn.respond(stream.stream_id, bytes(stream.body))

    async with H2FaultServer(handler, on_headers=True) as srv, h2c_pool() as pool:
        _, body, elapsed = await send(pool, srv.url(), b"late", httpstream.Timeout(expect=0.3))
        assert body == b"late"
        assert elapsed >= 0.29


# -- hypercorn: HTTP/1.1 (it sends 100), HTTP/2 and HTTP/3 (it never does) ---------------------------


def hypercorn_pool(protocol: str, cert_files: dict[str, str]) -> httpstream.ConnectionPool:
    if protocol == "h2":
        return httpstream.ConnectionPool(verify=cert_files["ca"], http2=True)
    if protocol == "h3":
        return httpstream.ConnectionPool(verify=cert_files["ca"], http3="only")
    return httpstream.ConnectionPool(verify=cert_files["ca"])


VERSIONS = {"h1": "HTTP/1.1", "h2": "HTTP/2", "h3": "HTTP/3"}


@pytest.mark.parametrize("protocol", ["h1", "h2", "h3"])
async def test_hypercorn_upload(protocol: str, expect_server: HypercornServer, cert_files: dict[str, str]) -> None:
    expect_server.app.reset()
    # HTTP/1.1: hypercorn's 100 must release the body (a 30 s wait would fail the bound);
    # HTTP/2 and HTTP/3: no 100 ever comes, the body goes after the timeout.
    expect = 30.0 if protocol == "h1" else 0.2
    async with hypercorn_pool(protocol, cert_files) as pool:
        for content in (pattern(300_000), Body(pattern(300_000))):
            r, body, elapsed = await send(
                pool, expect_server.url("/upload"), content, httpstream.Timeout(expect=expect)
            )
            assert r.http_version == VERSIONS[protocol]
            assert body == b'{"received": 300000, "pattern_ok": true}'
            assert elapsed < 5
            if protocol != "h1":
                assert elapsed >= 0.19
    assert expect_server.app.connections == 1


@pytest.mark.parametrize("protocol", ["h2", "h3"])
async def test_hypercorn_refusal(protocol: str, expect_server: HypercornServer, cert_files: dict[str, str]) -> None:
    expect_server.app.reset()
    async with hypercorn_pool(protocol, cert_files) as pool:
        for _ in range(2):
            content = Body(pattern(100_000))
            r, body, elapsed = await send(pool, expect_server.url("/refuse"), content, httpstream.Timeout(expect=30))
            assert (r.status_code, r.http_version, body) == (417, VERSIONS[protocol], b"nope")
            assert not content.started
            assert elapsed < 5
            assert pool.stats().streams == 0
    # the stream ended (NO_ERROR), the connection kept
    assert expect_server.app.connections == 1
