"""HTTP/2: the lifecycle table's HTTP/2 column, multiplexing and hostile peers.

Two kinds of peers: hypercorn (TLS with ALPN h2, and h2c by prior knowledge on
its plain port) for the real-server behaviour, and ``H2FaultServer``
(tests/peers/h2_servers.py, h2's server side on a raw asyncio Protocol) for scripted
faults: GOAWAY mid-flight, RST_STREAM, REFUSED_STREAM, early answers to uploads,
withheld flow-control credit, truncation, oversized headers, CONTINUATION floods,
a garbage preface, MAX_CONCURRENT_STREAMS and a peer that stops answering PINGs.
nginx interop lives in test_h2_nginx.py.

Connections are always counted on the server side (``App.connections``,
``H2FaultServer.accepted``), never from the client's own stats.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import h2.errors
import h2.exceptions
import h2.settings
import hpack
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame

import httpstream

from .peers.h2_servers import H2FaultServer, H2ServerConnection, ServerStream
from .peers.servers import App, HypercornServer, Receive, Scope, Send, pattern

pytestmark = pytest.mark.usefixtures("no_leaks")

WINDOW = httpstream.Limits().h2_stream_window
FRAME = httpstream.Limits().h2_max_frame_size
CONNECTION_WINDOW = httpstream.Limits().h2_connection_window


def h2_client(cert_files: dict[str, str], **kwargs: object) -> httpstream.AsyncClient:
    kwargs.setdefault("timeout", httpstream.Timeout.all(10))
    return httpstream.AsyncClient(http2=True, verify=cert_files["ca"], **kwargs)  # type: ignore[arg-type]


def h2c_client(**kwargs: object) -> httpstream.AsyncClient:
    """HTTP/2 over cleartext by prior knowledge (the fault servers speak nothing else)."""
    kwargs.setdefault("timeout", httpstream.Timeout.all(5))
    return httpstream.AsyncClient(http1=False, http2=True, **kwargs)  # type: ignore[arg-type]


def pool_of(client: httpstream.AsyncClient) -> httpstream.ConnectionPool:
    pool = client.transport
    assert isinstance(pool, httpstream.ConnectionPool)
    return pool


async def until(predicate: object, timeout: float = 5.0) -> None:
    """Poll a client-side condition (buffer sizes, pool counts) on the event loop."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


async def settled(value: object, quiet: float = 0.15, timeout: float = 5.0) -> None:
    """Wait until ``value()`` has stopped changing for ``quiet`` seconds."""
    assert callable(value)
    deadline = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the value never settled"
        await asyncio.sleep(0.01)
        now = value()
        if now != last:
            last, since = now, time.monotonic()


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it was raised during, except an explicit ``from`` cause.

    DESIGN.md: a library error is converted and chained with ``raise ... from exc``
    so the cause stays visible; what must never happen is an h2 exception
    escaping, or one raised *while* handling ours (an unconverted leak).
    """
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = None if seen.__cause__ is not None else seen.__context__


# ----------------------------------------------------------------------------------------------
# hypercorn: TLS with ALPN h2, and h2c by prior knowledge
# ----------------------------------------------------------------------------------------------


async def test_alpn_picks_http2(h2_server: HypercornServer, cert_files: dict[str, str]) -> None:
    async with h2_client(cert_files) as client:
        r = await client.get(h2_server.url("/echo"))
        assert r.http_version == "HTTP/2"
        assert r.json()["http_version"] == "2"  # what the server saw
        r = await client.get(h2_server.url("/bytes/100000"))
        assert r.content == pattern(100_000)
    async with httpstream.AsyncClient(verify=cert_files["ca"]) as client:  # http2 off: HTTP/1.1
        r = await client.get(h2_server.url("/echo"))
        assert (r.http_version, r.json()["http_version"]) == ("HTTP/1.1", "1.1")
    assert h2_server.app.connections == 2


async def test_100_concurrent_first_requests_share_one_connection(
    h2_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    # The pool is empty: 99 requests must wait for the first handshake's ALPN
    # answer instead of each opening a connection of its own.
    async with h2_client(cert_files) as client:
        responses = await asyncio.gather(*(client.get(h2_server.url(f"/bytes/{1000 + i}")) for i in range(100)))
        for i, r in enumerate(responses):
            assert (r.status_code, r.http_version) == (200, "HTTP/2")
            assert r.content == pattern(1000 + i)
        stats = pool_of(client).stats()
        assert (stats.streams, stats.in_use) == (0, 0)
    assert h2_server.app.connections == 1


async def test_h2c_prior_knowledge(server: HypercornServer) -> None:
    async with httpstream.AsyncClient(http1=False, http2=True, timeout=httpstream.Timeout.all(10)) as client:
        r = await client.get(server.url("/echo"))
        assert r.http_version == "HTTP/2"
        assert r.json()["http_version"] == "2"
        responses = await asyncio.gather(*(client.get(server.url("/bytes/3000")) for _ in range(50)))
        assert all(r.content == pattern(3000) for r in responses)
    assert server.app.connections == 1
    server.app.reset()
    async with httpstream.ConnectionPool(http2=True, http2_prior_knowledge=True) as pool:
        response = await pool.handle_request(httpstream.Request("GET", server.url("/echo")))
        body = b"".join([chunk async for chunk in response.stream])
        assert response.http_version == "HTTP/2"
        assert b'"http_version": "2"' in body
    async with httpstream.AsyncClient(http2=True) as client:  # no prior knowledge: HTTP/1.1 on http://
        r = await client.get(server.url("/echo"))
        assert (r.http_version, r.json()["http_version"]) == ("HTTP/1.1", "1.1")
    assert server.app.connections == 2


async def test_early_close_resets_the_stream_and_keeps_the_connection(
    h2_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    async with h2_client(cert_files, timeout=httpstream.Timeout.all(5)) as client:
        pool = pool_of(client)
        # Together these streams leave more unread bytes behind than the whole
        # connection window: if the credit of what they dropped were not given
        # back, the connection would stall below.
        for fill in (True, True, True, True, True, False, False, False):
            async with client.stream("GET", h2_server.url("/bytes/200000000")) as r:
                chunks = r.aiter_raw()  # held: a dropped generator would close the body itself
                chunk = await anext(chunks)
                assert chunk == pattern(len(chunk))
                if fill:
                    buffer = r.stream.buffer  # type: ignore[union-attr]
                    # the window is full: what we read plus what waits unread
                    got = len(chunk)
                    await until(lambda buffer=buffer, got=got: got + buffer.size >= WINDOW - 2 * FRAME)
            assert pool.stats().streams == 0
        assert 5 * (WINDOW - 2 * FRAME) > CONNECTION_WINDOW
        for i in range(20):
            size = 20_000_000 if i == 0 else 1000 * i  # the first is larger than the connection window
            r = await client.get(h2_server.url(f"/bytes/{size}"))
            assert r.content == pattern(size)
        stats = pool.stats()
        assert (stats.streams, stats.in_use, stats.connections) == (0, 0, 1)
    assert h2_server.app.connections == 1


async def test_slow_reader_holds_one_window_and_stalls_only_itself(
    h2_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    async with h2_client(cert_files) as client:
        async with client.stream("GET", h2_server.url("/bytes/100000000")) as slow:
            chunks = slow.aiter_raw()
            first = await anext(chunks)
            buffer = slow.stream.buffer  # type: ignore[union-attr]
            other = await client.get(h2_server.url("/bytes/5000000"))  # same connection, meanwhile
            assert other.content == pattern(5_000_000)
            await settled(lambda: buffer.bytes_fed)
            # What the server could send is one stream window (plus the credit of
            # the chunk we read): the unread bytes stay within one window.
            assert WINDOW // 2 <= buffer.size <= WINDOW + FRAME
            assert buffer.bytes_fed <= len(first) + WINDOW + FRAME
            # Reading on lets the server send on, byte-exact.
            got = len(first)
            async for chunk in chunks:
                assert chunk == pattern(len(chunk), got)
                got += len(chunk)
                if got >= 3 * WINDOW:
                    break
            assert buffer.size <= WINDOW + FRAME
    assert h2_server.app.connections == 1


@pytest.mark.parametrize("streamed", [False, True], ids=["bytes", "iterator"])
async def test_upload_larger_than_the_windows(
    h2_server: HypercornServer, cert_files: dict[str, str], streamed: bool
) -> None:
    size = 20_000_000
    content: bytes | AsyncIterator[bytes]
    if streamed:

        async def body() -> AsyncIterator[bytes]:
            for offset in range(0, size, 1_000_000):
                yield pattern(1_000_000, offset)

        content = body()
    else:
        content = pattern(size)
    async with h2_client(cert_files) as client:
        r = await client.post(h2_server.url("/upload"), content=content)
        assert r.http_version == "HTTP/2"
        assert r.json() == {"received": size, "pattern_ok": True}
    assert h2_server.app.connections == 1


@pytest.mark.parametrize("streamed", [False, True], ids=["bytes", "iterator"])
async def test_early_answer_with_rst_no_error_ends_the_upload(streamed: bool) -> None:
    # RFC 9113 section 8.1: a server may answer before the request body is done
    # and then stop it with RST_STREAM(NO_ERROR); the answer stands.
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        await conn.respond(stream.stream_id, b"too large", status=413)
        conn.reset(stream.stream_id, h2.errors.ErrorCodes.NO_ERROR)

    size = 10_000_000  # far beyond the server's windows: the upload is still running
    content: bytes | AsyncIterator[bytes]
    if streamed:

        async def body() -> AsyncIterator[bytes]:
            for offset in range(0, size, 100_000):
                yield pattern(100_000, offset)

        content = body()
    else:
        content = pattern(size)
    async with H2FaultServer(handler, on_headers=True) as srv, h2c_client() as client:
        r = await client.post(srv.url("/upload"), content=content)
        assert (r.status_code, r.content) == (413, b"too large")
        assert len(srv.connections[0].streams[1].body) < size
        assert (await client.get(srv.url("/next"))).status_code == 413  # same connection, still fine
        assert srv.accepted == 1
        assert srv.errors == []
        assert pool_of(client).stats().streams == 0


async def test_upload_without_flow_control_credit_times_out_and_resets() -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        await conn.respond(stream.stream_id, b"ok")

    timeout = httpstream.Timeout(read=5, write=0.3)
    async with H2FaultServer(handler, ack_data=False) as srv, h2c_client(timeout=timeout) as client:
        with pytest.raises(httpstream.WriteTimeout, match="flow-control window"):
            await client.post(srv.url("/up"), content=pattern(1_000_000))
        # Cancelled while it waits for credit: the same release, RST_STREAM(CANCEL).
        task = asyncio.create_task(client.post(srv.url("/up"), content=pattern(1_000_000), timeout=10))
        await srv.until(lambda: len(srv.requests) == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await srv.until(lambda: srv.client_resets == 2)
        streams = srv.connections[0].streams
        assert [(s.stream_id, s.reset_by_client) for s in streams.values()] == [
            (1, h2.errors.ErrorCodes.CANCEL),
            (3, h2.errors.ErrorCodes.CANCEL),
        ]
        stats = pool_of(client).stats()
        assert (stats.streams, stats.in_use) == (0, 0)
        assert srv.accepted == 1


class TrailersApp(App):
    async def h_trailers(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        if "http.response.trailers" not in scope.get("extensions", {}):
            await self._send(send, 501, b"no trailers\n")
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"trailer", b"x-sum")], "trailers": True}
        )
        await send({"type": "http.response.body", "body": b"hello", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"42")], "more_trailers": False})


@pytest.fixture(scope="module")
def trailers_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    srv = HypercornServer(TrailersApp(), certfile=cert_files["cert"], keyfile=cert_files["key"], alpn=("h2",))
    srv.start()
    yield srv
    srv.stop()


async def test_trailers_from_hypercorn(trailers_server: HypercornServer, cert_files: dict[str, str]) -> None:
    async with h2_client(cert_files) as client:
        async with client.stream("GET", trailers_server.url("/trailers"), headers={"TE": "trailers"}) as r:
            if r.status_code == 501:
                pytest.skip("this hypercorn does not offer the http.response.trailers extension")
            assert r.http_version == "HTTP/2"
            assert await r.aread() == b"hello"
            assert r.trailers["x-sum"] == "42"


async def test_trailers_from_fault_server() -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        conn.send_headers(stream.stream_id, 200, [(b"trailer", b"x-sum")])
        await conn.send_data(stream.stream_id, b"hello")
        conn.send_trailers(stream.stream_id, [(b"x-sum", b"42"), (b"x-other", b"a")])

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        async with client.stream("GET", srv.url()) as r:
            assert await r.aread() == b"hello"
            assert (r.trailers["x-sum"], r.trailers["x-other"]) == ("42", "a")
        assert srv.errors == []




@pytest.mark.parametrize("status", [304, 204])
async def test_no_content_status_with_content_length_from_hypercorn(
    h2_server: HypercornServer, cert_files: dict[str, str], status: int
) -> None:
    async with h2_client(cert_files) as client:
        r = await client.get(h2_server.url(f"/status/{status}"))  # the app says Content-Length: 7
        assert (r.status_code, r.http_version, r.content) == (status, "HTTP/2", b"")


@pytest.mark.parametrize("status", [304, 204])
async def test_no_content_status_with_content_length_spares_other_streams(status: int) -> None:
    answered = asyncio.Event()

    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if stream.path == "/no-content":
            conn.send_headers(stream.stream_id, status, [(b"content-length", b"1000")])
            await conn.send_data(stream.stream_id, b"", end=True)  # END_STREAM on an empty DATA frame
            answered.set()
        else:
            conn.send_headers(stream.stream_id, 200, [(b"content-length", b"200000")])
            await conn.send_data(stream.stream_id, pattern(100_000))
            await answered.wait()
            await conn.send_data(stream.stream_id, pattern(100_000, 100_000), end=True)

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        other = asyncio.create_task(client.get(srv.url("/other")))
        await srv.until(lambda: len(srv.requests) == 1)
        results = await asyncio.gather(
            client.get(srv.url("/no-content"), headers={"If-None-Match": '"v1"'}), other, return_exceptions=True
        )
        assert [(r.status_code, r.content) if isinstance(r, httpstream.Response) else r for r in results] == [
            (status, b""),
            (200, pattern(200_000)),
        ]
        assert srv.accepted == 1




@pytest.mark.parametrize(
    "fields",
    [[(b"X-Upper", b"1")], [(b"connection", b"keep-alive")]],
    ids=["uppercase-name", "connection-specific"],
)
async def test_malformed_response_fails_only_its_stream(fields: list[tuple[bytes, bytes]]) -> None:
    answered = asyncio.Event()

    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if stream.path == "/malformed":
            # Encoded with the connection's own HPACK encoder: the connection stays in sync.
            frame = HeadersFrame(stream.stream_id, data=conn.h2.encoder.encode([(b":status", b"200"), *fields]))
            frame.flags.add("END_HEADERS")
            frame.flags.add("END_STREAM")
            conn.write_raw(frame.serialize())
            answered.set()
        else:
            conn.send_headers(stream.stream_id, 200, [(b"content-length", b"200000")])
            await conn.send_data(stream.stream_id, pattern(100_000))
            await answered.wait()
            await conn.send_data(stream.stream_id, pattern(100_000, 100_000), end=True)

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        other = asyncio.create_task(client.get(srv.url("/other")))
        await srv.until(lambda: len(srv.requests) == 1)
        malformed, ok = await asyncio.gather(client.get(srv.url("/malformed")), other, return_exceptions=True)
        assert srv.errors == []
        assert isinstance(malformed, httpstream.RemoteProtocolError), malformed
        assert isinstance(ok, httpstream.Response), ok
        assert ok.content == pattern(200_000)
        assert (await client.get(srv.url("/other"))).status_code == 200
        assert srv.accepted == 1


@pytest.mark.parametrize("per_host", [1, None], ids=["one-connection", "default-limits"])
async def test_cancelling_1000_streams_at_random_points_leaks_nothing(
    h2_server: HypercornServer, cert_files: dict[str, str], per_host: int | None
) -> None:
    rng = random.Random(20240611)
    count = 1000 if per_host == 1 else 300
    # Each task is cancelled at a random moment of the phase it was given:
    # before its head (queued for a stream slot or waiting on the server), or
    # in its body (between reads or inside one); a few are left to finish.
    targets = rng.choices(["head", "body", "none"], weights=[45, 45, 10], k=count)
    cancelled_in: Counter[str] = Counter()
    limits = httpstream.Limits(max_connections_per_host=per_host)
    paths = ["/slow/0.1", "/bytes/300000", "/chunked/200000?piece=4096", "/bytes/20000"]
    async with h2_client(cert_files, limits=limits, timeout=httpstream.Timeout.all(20)) as client:
        pool = pool_of(client)
        loop = asyncio.get_running_loop()

        async def one(i: int) -> None:
            phase = "head"
            task = asyncio.current_task()
            assert task is not None
            if targets[i] == "head":
                loop.call_later(rng.uniform(0.0, 0.3), task.cancel)
            try:
                async with client.stream("GET", h2_server.url(paths[i % len(paths)])) as r:
                    phase = "body"
                    if targets[i] == "body":
                        loop.call_later(rng.uniform(0.0, 0.02), task.cancel)
                    async for chunk in r.aiter_raw():
                        assert chunk
                        await asyncio.sleep(0)
                phase = "done"
            except asyncio.CancelledError:
                cancelled_in[phase] += 1
                raise

        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        unexpected = [r for r in results if r is not None and not isinstance(r, asyncio.CancelledError)]
        assert unexpected == []  # a cancelled stream never breaks another one
        assert cancelled_in["head"] >= count // 5, cancelled_in
        assert cancelled_in["body"] >= count // 5, cancelled_in
        stats = pool.stats()
        assert (stats.streams, stats.in_use, stats.queued) == (0, 0, 0), stats
        for i in range(20):
            assert (await client.get(h2_server.url(f"/bytes/{i * 100}"))).content == pattern(i * 100)
        stats = pool.stats()
        assert (stats.streams, stats.in_use) == (0, 0)
    # With or without a per-host cap: a busy HTTP/2 connection is waited for,
    # never doubled (RFC 9113 section 9.1).
    assert h2_server.app.connections == 1


async def test_dropped_response_warns_and_resets_its_stream(
    h2_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    async with h2_client(cert_files, timeout=httpstream.Timeout.all(5)) as client:
        pool = pool_of(client)
        # Five dropped windows are more than the connection window: the resets
        # must hand their unread bytes' credit back, or the last GET stalls.
        for _ in range(5):
            context = client.stream("GET", h2_server.url("/bytes/200000000"))
            response = await context.__aenter__()
            buffer = response.stream.buffer  # type: ignore[union-attr]  # does not keep the response alive
            await until(lambda buffer=buffer: buffer.size >= WINDOW - 2 * FRAME)
            assert pool.stats().streams == 1
            del context
            with pytest.warns(ResourceWarning, match="never closed"):
                del response
                gc.collect()
            await until(lambda: pool.stats().streams == 0)
        r = await client.get(h2_server.url("/bytes/20000000"))
        assert r.content == pattern(20_000_000)
        assert (await client.get(h2_server.url("/hello"))).content == b"hello world\n"
        stats = pool.stats()
        assert (stats.streams, stats.in_use) == (0, 0)
    assert h2_server.app.connections == 1


# ----------------------------------------------------------------------------------------------
# H2FaultServer: scripted faults
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["aclose", "cancel-in-body", "cancel-before-head", "dropped", "read-to-end"])
async def test_release_resets_the_stream_with_cancel(how: str) -> None:
    size = 10_000_000  # far more than one stream window

    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if stream.path == "/big":
            if how == "cancel-before-head":
                await asyncio.Event().wait()  # never answers; cancelled at the end
            conn.send_headers(stream.stream_id, 200, [(b"content-length", str(size).encode())])
            await conn.send_data(stream.stream_id, pattern(size), end=True)  # returns once reset
        else:
            await conn.respond(stream.stream_id, b"ok")

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        if how == "aclose":
            async with client.stream("GET", srv.url("/big")) as r:
                chunks = r.aiter_raw()
                await anext(chunks)
        elif how == "cancel-in-body":
            reading = asyncio.Event()

            async def reader() -> None:
                async with client.stream("GET", srv.url("/big")) as r:
                    async for _ in r.aiter_raw():
                        reading.set()

            task = asyncio.create_task(reader())
            await reading.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        elif how == "cancel-before-head":
            waiting = asyncio.create_task(client.get(srv.url("/big")))
            await srv.until(lambda: len(srv.requests) == 1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        elif how == "dropped":
            context = client.stream("GET", srv.url("/big"))
            response = await context.__aenter__()
            del context
            with pytest.warns(ResourceWarning, match="never closed"):
                del response
                gc.collect()
        else:
            assert len((await client.get(srv.url("/big"))).content) == size
        if how != "read-to-end":
            await srv.until(lambda: srv.client_resets == 1)
        big = srv.connections[0].streams[1]
        assert (await client.get(srv.url("/small"))).content == b"ok"  # same connection, still fine
        expected = None if how == "read-to-end" else h2.errors.ErrorCodes.CANCEL
        assert big.reset_by_client == expected
        assert srv.client_resets == (0 if how == "read-to-end" else 1)
        assert srv.accepted == 1
        assert srv.errors == []
        stats = pool_of(client).stats()
        assert (stats.streams, stats.in_use) == (0, 0)


async def test_goaway_before_any_stream_retries_every_get_on_a_new_connection() -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if conn.index == 1:
            await conn.server.until(lambda: len(conn.streams) >= 6)
            if conn.server.goaways_sent == 0:
                conn.goaway(0)  # none of them will be processed
        else:
            await conn.respond(stream.stream_id, stream.path.encode())

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        paths = [f"/r{i}" for i in range(6)]
        results = await asyncio.gather(*(client.get(srv.url(p)) for p in paths), return_exceptions=True)
        assert [r.content if isinstance(r, httpstream.Response) else r for r in results] == [p.encode() for p in paths]
        assert srv.accepted == 2
        assert sorted(p for c, _, _, p in srv.requests if c == 2) == paths  # each retried once, on the new one
        assert srv.errors == []
        stats = pool_of(client).stats()
        assert (stats.streams, stats.in_use) == (0, 0)


async def test_goaway_fails_an_unprocessed_post_clearly() -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if conn.index == 1:
            conn.goaway(0)
        else:
            await conn.respond(stream.stream_id, b"fresh")

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        with pytest.raises(httpstream.StaleConnection, match="GOAWAY") as info:
            await client.post(srv.url("/post"), content=b"not idempotent")
        assert isinstance(info.value, httpstream.RemoteProtocolError)
        assert [(c, m) for c, _, m, _ in srv.requests] == [(1, "POST")]  # never resent
        assert (await client.get(srv.url("/after"))).content == b"fresh"
        assert srv.accepted == 2
        assert srv.errors == []


async def test_goaway_mid_flight_lets_lower_streams_finish() -> None:
    last_stream_id = 5
    body = pattern(300_000)  # several DATA frames, all after the GOAWAY

    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        server = conn.server
        if conn.index == 1:
            await server.until(lambda: len(conn.streams) >= 6)
            if server.goaways_sent == 0:
                conn.goaway(last_stream_id)
            if stream.stream_id > last_stream_id:
                return
            # The GOAWAY has been read and acted on once the retries are here.
            await server.until(lambda: len([r for r in server.requests if r[0] == 2]) >= 3)
            await conn.respond(stream.stream_id, stream.path.encode() + body)
            if all(s.response_ended for s in conn.streams.values() if s.stream_id <= last_stream_id):
                conn.close()
        else:
            await conn.respond(stream.stream_id, stream.path.encode() + body)

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        paths = [f"/r{i}" for i in range(6)]
        results = await asyncio.gather(*(client.get(srv.url(p)) for p in paths), return_exceptions=True)
        assert [r.content if isinstance(r, httpstream.Response) else r for r in results] == [
            p.encode() + body for p in paths
        ]
        assert srv.accepted == 2
        assert sorted(sid for conn, sid, _, _ in srv.requests if conn == 1) == [1, 3, 5, 7, 9, 11]
        retried = {path for conn, _, _, path in srv.requests if conn == 2}
        above = {path for conn, sid, _, path in srv.requests if conn == 1 and sid > last_stream_id}
        assert retried == above
        assert srv.errors == []


async def test_goaway_and_a_lower_streams_answer_in_one_read() -> None:
    # GET is stream 1, POST stream 3; GOAWAY(last_stream_id=1) and the GET's
    # answer leave the server in one write, as a server shutting down does.
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if conn.index == 1:
            await conn.server.until(lambda: len(conn.streams) >= 2)
            if stream.method == "GET":
                conn.goaway(stream.stream_id)
                await conn.respond(stream.stream_id, b"get done")
                conn.close()
        else:
            await conn.respond(stream.stream_id, b"fresh")

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        get = asyncio.create_task(client.get(srv.url("/get")))
        await srv.until(lambda: len(srv.requests) == 1)
        post = asyncio.create_task(client.post(srv.url("/post"), content=b"not idempotent"))
        results = await asyncio.gather(get, post, return_exceptions=True)
        assert [(c, s, m) for c, s, m, _ in srv.requests] == [(1, 1, "GET"), (1, 3, "POST")]
        assert isinstance(results[1], httpstream.StaleConnection), results
        assert "GOAWAY" in str(results[1])
        assert isinstance(results[0], httpstream.Response), results
        assert results[0].content == b"get done"


@pytest.mark.parametrize("head_sent", [False, True], ids=["before-head", "mid-body"])
async def test_goaway_with_an_error_then_close_fails_the_lower_stream_at_once(head_sent: bool) -> None:
    # The stream is at or below last_stream_id, so GOAWAY itself does not fail
    # it; the connection's end must, at once (not after the read timeout).
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if head_sent:
            conn.send_headers(stream.stream_id, 200, [(b"content-length", b"100000")])
            await conn.send_data(stream.stream_id, pattern(1000))
        conn.goaway(stream.stream_id, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)  # this stream included
        conn.close()

    async with H2FaultServer(handler) as srv, h2c_client(timeout=httpstream.Timeout.all(1.5)) as client:
        started = time.monotonic()
        with pytest.raises(httpstream.TransportError) as info:
            await client.get(srv.url())
        assert isinstance(info.value, (httpstream.RemoteProtocolError, httpstream.ReadError)), info.value
        assert time.monotonic() - started < 1.0
        assert pool_of(client).stats().streams == 0


async def test_rst_stream_fails_only_its_stream() -> None:
    reset_done = asyncio.Event()

    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if stream.path == "/reset-body":
            conn.send_headers(stream.stream_id, 200, [(b"content-length", b"100000")])
            await conn.send_data(stream.stream_id, pattern(1000))
            conn.reset(stream.stream_id, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            reset_done.set()
        elif stream.path == "/reset-head":
            conn.reset(stream.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        else:
            await reset_done.wait()
            await conn.respond(stream.stream_id, pattern(200_000))

    async with H2FaultServer(handler) as srv, h2c_client() as client:

        async def read_reset() -> bytes:
            got = b""
            async with client.stream("GET", srv.url("/reset-body")) as r:
                assert r.status_code == 200
                async for chunk in r.aiter_raw():
                    got += chunk
            return got

        reset, ok = await asyncio.gather(read_reset(), client.get(srv.url("/ok")), return_exceptions=True)
        assert isinstance(reset, httpstream.RemoteProtocolError), reset
        assert not isinstance(reset, httpstream.StaleConnection)
        assert reset.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        assert "ENHANCE_YOUR_CALM" in str(reset)
        assert isinstance(ok, httpstream.Response), ok
        assert ok.content == pattern(200_000)

        with pytest.raises(httpstream.RemoteProtocolError, match="INTERNAL_ERROR") as info:
            await client.get(srv.url("/reset-head"))
        assert info.value.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
        assert [p for _, _, _, p in srv.requests].count("/reset-head") == 1  # not retried
        assert (await client.get(srv.url("/ok"))).content == pattern(200_000)
        assert srv.accepted == 1
        assert srv.errors == []
        assert pool_of(client).stats().streams == 0


async def test_refused_stream_is_retried_for_get() -> None:
    refused: set[str] = set()

    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if stream.path not in refused:
            refused.add(stream.path)
            conn.reset(stream.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        else:
            await conn.respond(stream.stream_id, b"second try")

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        assert (await client.get(srv.url("/get"))).content == b"second try"
        assert [(s, p) for _, s, _, p in srv.requests] == [(1, "/get"), (3, "/get")]
        with pytest.raises(httpstream.StaleConnection, match="REFUSED_STREAM"):
            await client.post(srv.url("/post"), content=b"x")  # not idempotent: the caller decides
        assert srv.accepted == 1
        assert srv.errors == []


@pytest.mark.parametrize(
    ("content_length", "ending"),
    [
        (100_000, "abort"),
        (100_000, "close"),
        (None, "abort"),
        (None, "close"),
        (100_000, "end_stream"),  # END_STREAM, but Content-Length promised more
    ],
)
async def test_truncated_body_is_never_complete(content_length: int | None, ending: str) -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        headers = [(b"content-length", str(content_length).encode())] if content_length else []
        conn.send_headers(stream.stream_id, 200, headers)
        await conn.send_data(stream.stream_id, pattern(1000), end=ending == "end_stream")
        if ending == "abort":
            conn.abort()
        elif ending == "close":
            conn.close()

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        got = b""
        with pytest.raises((httpstream.RemoteProtocolError, httpstream.ReadError)) as info:
            async with client.stream("GET", srv.url()) as r:
                async for chunk in r.aiter_raw():
                    got += chunk
        assert got == pattern(len(got))
        assert len(got) <= 1000
        assert all(not isinstance(e, h2.exceptions.H2Error) for e in chain(info.value))
        with pytest.raises((httpstream.RemoteProtocolError, httpstream.ReadError)):
            await client.get(srv.url())
        assert pool_of(client).stats().streams == 0


@pytest.mark.parametrize(
    ("limits", "headers", "message"),
    [
        (httpstream.Limits(), [(b"x-big", b"a" * 100_000)], "header"),
        (httpstream.Limits(max_header_bytes=8192), [(b"x-big", b"a" * 10_000)], "header"),
        (httpstream.Limits(), [(b"x-f%d" % i, b"v") for i in range(300)], "header fields"),
    ],
    ids=["100k-value", "own-limit", "300-fields"],
)
async def test_oversized_response_head_is_a_clear_error(
    limits: httpstream.Limits, headers: list[tuple[bytes, bytes]], message: str
) -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if stream.path == "/big":
            await conn.respond(stream.stream_id, b"body", headers=headers)
        else:
            await conn.respond(stream.stream_id, b"fine", headers=[(b"x-small", b"a" * 4000)])

    async with H2FaultServer(handler) as srv, h2c_client(limits=limits) as client:
        with pytest.raises(httpstream.RemoteProtocolError, match=message) as info:
            await client.get(srv.url("/big"))
        assert all(not isinstance(e, h2.exceptions.H2Error) for e in chain(info.value))
        r = await client.get(srv.url("/small"))  # the client recovers (a new connection if need be)
        assert r.content == b"fine"
        assert pool_of(client).stats().streams == 0


async def test_endless_continuation_frames_are_cut_off() -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        block = hpack.Encoder().encode([(b":status", b"200"), (b"x-a", b"a" * 300)])
        pieces = [block[i : i + 2] for i in range(0, len(block), 2)]  # > 100 frames
        frames = [HeadersFrame(stream.stream_id, data=pieces[0])]
        frames += [ContinuationFrame(stream.stream_id, data=piece) for piece in pieces[1:]]
        frames[-1].flags.add("END_HEADERS")
        conn.write_raw(b"".join(frame.serialize() for frame in frames))

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        with pytest.raises(httpstream.RemoteProtocolError, match="continuation") as info:
            await client.get(srv.url())
        assert all(not isinstance(e, h2.exceptions.H2Error) for e in chain(info.value))
        assert pool_of(client).stats().streams == 0


HTTP1_ANSWER = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"  # an HTTP/1.1-only server's answer
DATA_ON_IDLE_STREAM = b"\x00\x00\x00\x00\x01\x00\x00\x00\x01"  # empty DATA, END_STREAM, stream 1


@pytest.mark.parametrize(
    ("garbage", "after_client"),
    [
        # h2 itself would buffer this as the start of a 4,740,180-byte frame and
        # hang until the read timeout: the preface must be checked (RFC 9113 section 3.4).
        pytest.param(HTTP1_ANSWER, False, id="http1-at-once"),
        pytest.param(HTTP1_ANSWER, True, id="http1-after-preface"),
        pytest.param(DATA_ON_IDLE_STREAM, False, id="frame-at-once"),
        pytest.param(DATA_ON_IDLE_STREAM, True, id="frame-after-preface"),
    ],
)
async def test_garbage_instead_of_a_preface(garbage: bytes, after_client: bool) -> None:
    server = H2FaultServer(preface=garbage, preface_after_client=after_client)
    async with server as srv, h2c_client(timeout=httpstream.Timeout.all(1)) as client:
        with pytest.raises(httpstream.RemoteProtocolError, match="HTTP/2") as info:
            await client.get(srv.url())
        assert all(not isinstance(e, h2.exceptions.H2Error) for e in chain(info.value))
        pool = pool_of(client)
        await until(lambda: pool.stats().connections == 0)
        assert pool.stats().streams == 0


@pytest.mark.parametrize(
    ("warm", "per_host"),
    [
        pytest.param(True, 1, id="settings-known-per-host-1"),
        pytest.param(False, 1, id="cold-start-per-host-1"),
        pytest.param(True, None, id="settings-known"),
        pytest.param(False, None, id="cold-start"),
    ],
)
async def test_server_max_concurrent_streams_is_respected(warm: bool, per_host: int | None) -> None:
    # Cold, the 10 requests may be given slots before the server's SETTINGS
    # arrive: they must wait for a stream slot, not fail, and a stream sent
    # beyond the limit before the SETTINGS arrived is refused (REFUSED_STREAM)
    # and retried.  Once the client has acknowledged the SETTINGS it must never
    # open a stream beyond the limit (``violations``), nor a second connection
    # to the same origin (RFC 9113 section 9.1), per-host cap or not.
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        await asyncio.sleep(0.01)  # hold the stream a moment so the client has to queue
        await conn.respond(stream.stream_id, stream.path.encode())

    settings: dict[h2.settings.SettingCodes | int, int] = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2}
    limits = httpstream.Limits(max_connections_per_host=per_host)
    async with H2FaultServer(handler, settings=settings) as srv, h2c_client(limits=limits) as client:
        if warm:
            assert (await client.get(srv.url("/first"))).content == b"/first"
        results = await asyncio.gather(*(client.get(srv.url(f"/r{i}")) for i in range(10)), return_exceptions=True)
        assert [r.content if isinstance(r, httpstream.Response) else r for r in results] == [
            f"/r{i}".encode() for i in range(10)
        ]
        assert srv.accepted == 1
        assert srv.max_open == 2
        assert srv.violations == 0
        if warm:
            assert srv.refused == 0
        assert srv.errors == []
        stats = pool_of(client).stats()
        assert (stats.streams, stats.in_use, stats.queued) == (0, 0, 0)


async def test_ping_liveness_check_replaces_a_silent_connection() -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        await conn.respond(stream.stream_id, b"conn %d" % conn.index)
        if conn.index == 1:
            conn.stop_reading()  # alive at the TCP level, deaf at the HTTP/2 level

    limits = httpstream.Limits(h2_ping_after=0.05)
    async with H2FaultServer(handler) as srv, h2c_client(limits=limits) as client:
        assert (await client.get(srv.url())).content == b"conn 1"
        await asyncio.sleep(0.1)  # idle past h2_ping_after
        started = time.monotonic()
        async with asyncio.timeout(5):
            assert (await client.get(srv.url())).content == b"conn 2"
        assert time.monotonic() - started < 3
        assert srv.accepted == 2
        stats = pool_of(client).stats()
        assert (stats.connections, stats.streams, stats.in_use) == (1, 0, 0)


async def test_ping_liveness_check_keeps_a_live_connection() -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        await conn.respond(stream.stream_id, b"conn %d" % conn.index)

    limits = httpstream.Limits(h2_ping_after=0.05)
    async with H2FaultServer(handler) as srv, h2c_client(limits=limits) as client:
        assert (await client.get(srv.url())).content == b"conn 1"
        await asyncio.sleep(0.1)
        assert srv.pings == 0
        assert (await client.get(srv.url())).content == b"conn 1"
        assert srv.pings == 1  # checked once, answered, reused
        assert (await client.get(srv.url())).content == b"conn 1"  # not idle long: no PING
        assert srv.pings == 1
        assert srv.accepted == 1




async def test_ping_liveness_check_of_concurrent_requests_keeps_the_connection() -> None:
    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        if stream.path == "/slow":
            await asyncio.sleep(1.2)  # still in flight when a lost PING would give up (1 s)
        await conn.respond(stream.stream_id, b"conn %d" % conn.index)

    limits = httpstream.Limits(h2_ping_after=0.05)
    async with H2FaultServer(handler) as srv, h2c_client(limits=limits) as client:
        assert (await client.get(srv.url())).content == b"conn 1"
        await asyncio.sleep(0.1)  # idle past h2_ping_after: each of the next requests checks it
        started = time.monotonic()
        results = await asyncio.gather(
            client.post(srv.url("/slow"), content=b"x"), client.get(srv.url("/a")), return_exceptions=True
        )
        assert [r.content if isinstance(r, httpstream.Response) else r for r in results] == [b"conn 1", b"conn 1"]
        assert time.monotonic() - started < 2.0
        assert srv.accepted == 1


async def test_ping_flood_is_cut_off() -> None:
    """DESIGN.md: queued control replies are bounded; a PING flood ends the connection with a clear error."""
    import hyperframe.frame

    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        conn.send_headers(stream.stream_id, 200)
        pings = b"".join(hyperframe.frame.PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize() for i in range(5000))
        conn.write_raw(pings)
        await asyncio.sleep(30)

    async with H2FaultServer(handler) as srv, h2c_client() as client:
        start = time.monotonic()
        with pytest.raises(httpstream.RemoteProtocolError, match="flood"):
            async with client.stream("GET", srv.url("/")) as r:
                await r.aread()
        assert time.monotonic() - start < 3
        assert pool_of(client).stats().in_use == 0
