"""The HTTP/2 server protocol (httpstream/_server/_h2.py) against real clients.

Clients: httpstream's own pool (h2c by prior knowledge, and TLS with ALPN h2),
curl when it is installed, and the raw h2 library (plus hand-built frames) for
malformed input and floods.  The listener is a tiny ``loop.create_server`` here,
so these tests do not depend on ``_server._listener``.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import hpack
import hyperframe.frame
import pytest

import httpstream
from httpstream._server._h2 import H2ServerProtocol
from httpstream._server._types import ServerExchange, ServerLimits

pytestmark = pytest.mark.usefixtures("no_leaks")


class Listener:
    """loop.create_server around H2ServerProtocol, cleartext or TLS (ALPN h2)."""

    def __init__(
        self,
        handler: Callable[[ServerExchange], Any],
        limits: ServerLimits | None = None,
        cert_files: dict[str, str] | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits or ServerLimits()
        self.ssl: ssl.SSLContext | None = None
        if cert_files is not None:
            self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ssl.load_cert_chain(cert_files["cert"], cert_files["key"])
            self.ssl.set_alpn_protocols(["h2"])
        self.protocols: set[H2ServerProtocol] = set()
        self.closed: list[H2ServerProtocol] = []
        self.none_open = asyncio.Event()  # set whenever no connection is open
        self.none_open.set()
        self.port = 0

    def _make(self) -> H2ServerProtocol:
        proto = H2ServerProtocol(self.handler, limits=self.limits, tls=self.ssl is not None, on_closed=self._gone)
        self.protocols.add(proto)
        self.none_open.clear()
        return proto

    def _gone(self, proto: H2ServerProtocol) -> None:
        self.protocols.discard(proto)
        self.closed.append(proto)
        if not self.protocols:
            self.none_open.set()

    async def all_closed(self) -> None:
        async with asyncio.timeout(5):
            await self.none_open.wait()

    def url(self, path: str = "/") -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.get_running_loop().create_server(self._make, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for proto in list(self.protocols):
            proto.abort()
        await self.all_closed()
        async with asyncio.timeout(5):
            await self.server.wait_closed()


def pool(listener: Listener, cert_files: dict[str, str]) -> httpstream.ConnectionPool:
    timeout = httpstream.Timeout.all(10)
    if listener.ssl is not None:
        return httpstream.ConnectionPool(http2=True, http1=False, verify=cert_files["ca"], timeout=timeout)
    return httpstream.ConnectionPool(http2=True, http1=False, timeout=timeout)


async def read_all(exchange: ServerExchange) -> bytes:
    content = exchange.request.content
    if content is None:
        return b""
    assert not isinstance(content, bytes)
    return b"".join([chunk async for chunk in content])


async def app(exchange: ServerExchange) -> None:
    request = exchange.request
    path = request.target
    if path == "/hello":
        await exchange.respond(200, {"content-type": "text/plain"}, b"hello")
    elif path == "/echo":
        body = await read_all(exchange)
        await exchange.respond(
            200, {"x-method": request.method, "x-url": str(request.url), "x-fields": str(len(request.headers))}, body
        )
    elif path == "/duplex":
        content = request.content
        assert content is not None and not isinstance(content, bytes)
        await exchange.respond(200, None, content)  # each chunk echoed as it arrives
    elif path == "/trailers":
        body = await read_all(exchange)
        assert request.trailers is not None
        got = request.trailers.get("x-checksum", "none")
        await exchange.respond(
            200, None, body, trailers=httpstream.Headers({"x-echo": got, "x-length": str(len(body))})
        )
    elif path == "/early":
        await exchange.informational(103, {"link": "</style.css>; rel=preload"})
        await exchange.respond(200, None, b"after hints")
    elif path == "/fail":

        async def failing() -> AsyncIterator[bytes]:
            yield b"first part"
            raise RuntimeError("the upstream went away")

        await exchange.respond(200, None, failing())
    elif path == "/noanswer":
        return
    else:
        await exchange.respond(404, None, b"no such path")


@pytest.fixture(params=["h2c", "h2"])
async def listener(request: pytest.FixtureRequest, cert_files: dict[str, str]) -> AsyncIterator[Listener]:
    async with Listener(app, cert_files=cert_files if request.param == "h2" else None) as server:
        yield server


# -- through httpstream's own client ---------------------------------------------------------------


async def test_get_and_post_echo(listener: Listener, cert_files: dict[str, str]) -> None:
    async with pool(listener, cert_files) as client, asyncio.timeout(10):
        response = await client.handle_request(httpstream.Request("GET", listener.url("/hello")))
        assert (response.status_code, response.http_version) == (200, "HTTP/2")
        assert await response.aread() == b"hello"
        body = bytes(range(256)) * 1000
        response = await client.handle_request(httpstream.Request("POST", listener.url("/echo"), content=body))
        assert await response.aread() == body
        assert response.headers["x-method"] == "POST"
        assert response.headers["x-url"] == listener.url("/echo")
        response = await client.handle_request(httpstream.Request("GET", listener.url("/noanswer")))
        assert response.status_code == 500
        await response.aread()
    assert len(listener.closed) == 1  # one connection for all three


async def test_request_headers_are_kept_as_received(cert_files: dict[str, str]) -> None:
    seen: list[list[tuple[str, str]]] = []

    async def handler(exchange: ServerExchange) -> None:
        seen.append(exchange.request.headers.multi_items())
        assert exchange.http_version == "HTTP/2" and exchange.client_addr[0] == "127.0.0.1"
        await exchange.respond(204)

    async with Listener(handler) as server, pool(server, cert_files) as client, asyncio.timeout(10):
        request = httpstream.Request("POST", server.url("/"), headers={"X-One": "1"}, content=b"abc")
        response = await client.handle_request(request)
        assert response.status_code == 204
        await response.aread()
    assert seen == [[("x-one", "1"), ("content-length", "3")]]  # no Host, no framing added


async def test_streaming_both_ways_head_before_the_upload_ends(listener: Listener, cert_files: dict[str, str]) -> None:
    echoed: asyncio.Queue[None] = asyncio.Queue()
    sent: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(10):
            if i:
                async with asyncio.timeout(5):
                    await echoed.get()
            sent.append(i)
            yield bytes([i]) * 1000

    async with pool(listener, cert_files) as client, asyncio.timeout(10):
        response = await client.handle_request(httpstream.Request("POST", listener.url("/duplex"), content=body()))
        assert response.status_code == 200
        assert len(sent) < 10
        received = bytearray()
        async for chunk in response.stream:
            received += chunk
            if len(received) == 1000 * len(sent) and len(sent) < 10:
                echoed.put_nowait(None)  # chunk i came back: the body may send chunk i+1
        assert bytes(received) == b"".join(bytes([i]) * 1000 for i in range(10))


async def test_trailers_both_ways(listener: Listener, cert_files: dict[str, str]) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    async with pool(listener, cert_files) as client, asyncio.timeout(10):
        request = httpstream.Request(
            "POST", listener.url("/trailers"), content=body(), trailers=httpstream.Headers({"x-checksum": "abc"})
        )
        response = await client.handle_request(request)
        assert await response.aread() == b"hello world"
        assert response.trailers["x-echo"] == "abc"
        assert response.trailers["x-length"] == "11"


async def test_early_hints(listener: Listener, cert_files: dict[str, str]) -> None:
    seen: list[tuple[int, str | None]] = []
    hook = {"on_informational": lambda status, headers: seen.append((status, headers.get("link")))}
    async with pool(listener, cert_files) as client, asyncio.timeout(10):
        response = await client.handle_request(httpstream.Request("GET", listener.url("/early"), extensions=hook))
        assert await response.aread() == b"after hints"
    assert seen == [(103, "</style.css>; rel=preload")]


async def test_extended_connect_raw_echo(cert_files: dict[str, str]) -> None:
    seen: dict[str, object] = {}

    async def handler(exchange: ServerExchange) -> None:
        seen["protocol"] = exchange.request.extensions.get("protocol")
        seen["target"] = exchange.request.target
        stream = await exchange.upgrade(200)
        try:
            while data := await stream.read(65536, timeout=5):
                await stream.write(data.upper(), timeout=5)
        finally:
            await stream.aclose()

    for tls in (False, True):
        async with Listener(handler, cert_files=cert_files if tls else None) as server:
            async with pool(server, cert_files) as client, asyncio.timeout(10):
                request = httpstream.Request("CONNECT", server.url("/chat"), extensions={"protocol": "websocket"})
                response = await client.handle_request(request)
                assert response.status_code == 200
                stream = response.extensions["network_stream"]
                assert isinstance(stream, httpstream.NetworkStream)
                for word in (b"ping", b"pong" * 5000):
                    await stream.write(word, timeout=5)
                    got = b""
                    while len(got) < len(word):
                        got += await stream.read(65536, timeout=5)
                    assert got == word.upper()
                await stream.aclose()
    assert seen == {"protocol": "websocket", "target": "/chat"}


async def test_a_body_that_raises_is_never_a_clean_end(listener: Listener, cert_files: dict[str, str]) -> None:
    async with pool(listener, cert_files) as client, asyncio.timeout(10):
        response = await client.handle_request(httpstream.Request("GET", listener.url("/fail")))
        assert response.status_code == 200
        with pytest.raises((httpstream.RemoteProtocolError, httpstream.IncompleteBody), match="INTERNAL_ERROR"):
            await response.aread()


async def test_client_reset_mid_body_fails_the_handlers_read(cert_files: dict[str, str]) -> None:
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    first = asyncio.Event()

    async def handler(exchange: ServerExchange) -> None:
        content = exchange.request.content
        assert content is not None and not isinstance(content, bytes)
        try:
            async for _ in content:
                first.set()
        except httpstream.HTTPStreamError as exc:
            outcome.set_result(exc)
            raise
        outcome.set_result(AssertionError("the body ended cleanly"))

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await asyncio.sleep(30)  # cancelled below
        yield b""

    async with Listener(handler) as server, pool(server, cert_files) as client, asyncio.timeout(10):
        task = asyncio.ensure_future(client.handle_request(httpstream.Request("POST", server.url("/"), content=body())))
        await first.wait()
        task.cancel()  # the pool resets the stream (RST_STREAM CANCEL)
        with pytest.raises(asyncio.CancelledError):
            await task
        error = await outcome
        assert isinstance(error, httpstream.IncompleteBody)
        assert "CANCEL" in str(error)


async def test_one_slow_stream_does_not_stall_another(cert_files: dict[str, str]) -> None:
    """A handler that stops reading one upload holds back only that stream."""
    limits = ServerLimits(stream_window=64 * 1024, connection_window=1024 * 1024)
    release = asyncio.Event()

    async def handler(exchange: ServerExchange) -> None:
        if exchange.request.target == "/slow":
            await release.wait()  # reads nothing until told
        body = await read_all(exchange)
        await exchange.respond(200, None, str(len(body)).encode())

    sent = 0

    async def slow_body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(16):
            sent += 16 * 1024
            yield b"s" * 16 * 1024

    async with Listener(handler, limits=limits) as server, pool(server, cert_files) as client, asyncio.timeout(10):
        slow = asyncio.ensure_future(
            client.handle_request(httpstream.Request("POST", server.url("/slow"), content=slow_body()))
        )
        for _ in range(3):  # another stream on the same connection goes through meanwhile
            response = await client.handle_request(
                httpstream.Request("POST", server.url("/fast"), content=b"f" * 200_000)
            )
            assert await response.aread() == b"200000"
        assert not slow.done()
        assert sent <= 64 * 1024 + 32 * 1024  # held at about the stream window
        release.set()
        response = await slow
        assert await response.aread() == str(16 * 16 * 1024).encode()
    assert len(server.closed) == 1


async def test_graceful_close_lets_a_stream_in_flight_finish(cert_files: dict[str, str]) -> None:
    go = asyncio.Event()
    started = asyncio.Event()

    async def handler(exchange: ServerExchange) -> None:
        started.set()
        await go.wait()
        await exchange.respond(200, None, b"finished")

    async with Listener(handler) as server, pool(server, cert_files) as client, asyncio.timeout(10):
        task = asyncio.ensure_future(client.handle_request(httpstream.Request("GET", server.url("/"))))
        await started.wait()
        (proto,) = server.protocols
        proto.close_gracefully()
        await asyncio.sleep(0.05)
        go.set()
        response = await task
        assert await response.aread() == b"finished"
        await server.all_closed()
    assert server.closed == [proto]


async def test_idle_connection_is_closed_after_keepalive_timeout(cert_files: dict[str, str]) -> None:
    async with Listener(app, limits=ServerLimits(keepalive_timeout=0.2)) as server:
        async with pool(server, cert_files) as client, asyncio.timeout(10):
            response = await client.handle_request(httpstream.Request("GET", server.url("/hello")))
            await response.aread()
            await server.all_closed()
        assert len(server.closed) == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("tls", [False, True])
async def test_curl(tls: bool, cert_files: dict[str, str]) -> None:
    async with Listener(app, cert_files=cert_files if tls else None) as server:
        flag = ["--http2", "--cacert", cert_files["ca"]] if tls else ["--http2-prior-knowledge"]
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", *flag, "--data-binary", "curl body", "-D", "-", server.url("/echo"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err
        assert out.startswith(b"HTTP/2 200")
        assert b"x-method: POST" in out
        assert out.endswith(b"\r\n\r\ncurl body")


# -- the raw h2 library: malformed input, limits and floods -------------------------------------------


class RawClient:
    """h2's client side over a plain socket, validation off, to send anything."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
            )
        )
        self.events: list[h2.events.Event] = []
        self.closed = False

    async def __aenter__(self) -> RawClient:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.conn.initiate_connection()
        self.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    def request(self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool = True) -> None:
        self.conn.send_headers(stream_id, fields, end_stream=end)
        self.flush()

    async def until(self, predicate: Callable[[h2.events.Event], bool], timeout: float = 5) -> h2.events.Event | None:
        """Read until an event matches (returned) or the connection ends (None)."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if predicate(event):
                        self.events.remove(event)
                        return event
                data = await self.reader.read(65536)
                if not data:
                    self.closed = True
                    return None
                try:
                    self.events.extend(self.conn.receive_data(data))
                except h2.exceptions.ProtocolError:
                    pass
                self.flush()


def get(path: bytes = b"/hello", **extra: bytes) -> list[tuple[bytes, bytes]]:
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", path)]
    return fields + [(name.encode(), value) for name, value in extra.items()]


def is_reset(stream_id: int) -> Callable[[h2.events.Event], bool]:
    return lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id


def is_response(stream_id: int) -> Callable[[h2.events.Event], bool]:
    return lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id


def is_goaway(e: h2.events.Event) -> bool:
    return isinstance(e, h2.events.ConnectionTerminated)


@pytest.mark.parametrize(
    "fields",
    [
        [(b":method", b"GET"), (b":path", b"/")],  # no :scheme
        [*get(), (b":path", b"/again")],  # duplicated pseudo-header
        [(b"x-a", b"1"), *get()],  # pseudo-header after a regular field
        get(connection=b"keep-alive"),  # connection-specific
        get(te=b"gzip"),
        get(**{"X-Upper": b"1"}),  # uppercase name
        get(**{"x-bad": b"a\r\nb"}),
        [(b":method", b"GET"), (b":protocol", b"websocket"), (b":scheme", b"http"), (b":path", b"/")],
        [(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")],
        get(**{"content-length": b"abc"}),
    ],
)
async def test_a_malformed_request_resets_only_its_stream(fields: list[tuple[bytes, bytes]]) -> None:
    async with Listener(app) as server, RawClient(server.port) as raw:
        raw.request(1, fields)
        event = await raw.until(is_reset(1))
        assert isinstance(event, h2.events.StreamReset) and event.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        raw.request(3, get())  # the connection is still good
        assert await raw.until(is_response(3)) is not None


async def test_a_body_longer_than_its_content_length_is_a_stream_error() -> None:
    async with Listener(app) as server, RawClient(server.port) as raw:
        raw.request(1, [(b":method", b"POST"), *get(b"/echo")[1:], (b"content-length", b"3")], end=False)
        raw.conn.send_data(1, b"abcdef", end_stream=True)
        raw.flush()
        event = await raw.until(is_reset(1))
        assert isinstance(event, h2.events.StreamReset) and event.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        raw.request(3, get())
        assert await raw.until(is_response(3)) is not None


async def test_header_limits_answer_431() -> None:
    limits = ServerLimits(max_header_count=10, max_header_bytes=4096)
    async with Listener(app, limits=limits) as server, RawClient(server.port) as raw:
        raw.request(1, get() + [(f"x-{i}".encode(), b"v") for i in range(11)])
        event = await raw.until(is_response(1))
        assert isinstance(event, h2.events.ResponseReceived) and (b":status", b"431") in (event.headers or [])
        raw.request(3, get(**{"x-big": b"v" * 5000}))  # over 4096, under the 8192 hard cap
        event = await raw.until(is_response(3))
        assert isinstance(event, h2.events.ResponseReceived) and (b":status", b"431") in (event.headers or [])
        raw.request(5, get(**{"x-huge": b"v" * 9000}))  # past the hard cap: the HPACK state goes, so the connection
        assert await raw.until(is_goaway) is not None


async def test_max_concurrent_streams_refuses_the_extra_stream() -> None:
    hold = asyncio.Event()

    async def handler(exchange: ServerExchange) -> None:
        await hold.wait()
        await exchange.respond(200, None, b"ok")

    async with Listener(handler, limits=ServerLimits(max_concurrent_streams=2)) as server:
        async with RawClient(server.port) as raw:
            # All three go out before the server's SETTINGS are read, so h2 holds none back.
            for stream_id in (1, 3, 5):
                raw.request(stream_id, get())
            event = await raw.until(is_reset(5))
            assert isinstance(event, h2.events.StreamReset)
            assert event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
            hold.set()
            assert await raw.until(is_response(1)) is not None
            assert await raw.until(is_response(3)) is not None


async def test_ping_flood_gets_goaway_enhance_your_calm() -> None:
    async with Listener(app, limits=ServerLimits(max_control_frames_per_second=50)) as server:
        async with RawClient(server.port) as raw:
            for i in range(200):
                raw.conn.ping(i.to_bytes(8, "big"))
            raw.flush()
            event = await raw.until(is_goaway)
            assert isinstance(event, h2.events.ConnectionTerminated)
            assert event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


async def test_settings_flood_gets_goaway_enhance_your_calm() -> None:
    async with Listener(app, limits=ServerLimits(max_control_frames_per_second=50)) as server:
        async with RawClient(server.port) as raw:
            frame = hyperframe.frame.SettingsFrame(0, settings={h2.settings.SettingCodes.ENABLE_PUSH: 0})
            raw.writer.write(frame.serialize() * 200)
            event = await raw.until(is_goaway)
            assert isinstance(event, h2.events.ConnectionTerminated)
            assert event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


async def test_continuation_flood_gets_goaway() -> None:
    async with Listener(app, limits=ServerLimits(max_continuation_frames=8)) as server:
        async with RawClient(server.port) as raw:
            block = hpack.Encoder().encode(get(), huffman=False)
            frames = [hyperframe.frame.HeadersFrame(1, data=block[:1])]
            frames += [hyperframe.frame.ContinuationFrame(1, data=b"") for _ in range(20)]
            raw.writer.write(b"".join(f.serialize() for f in frames))
            event = await raw.until(is_goaway)
            assert isinstance(event, h2.events.ConnectionTerminated)
            assert event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


async def test_no_request_within_header_timeout_closes() -> None:
    async with Listener(app, limits=ServerLimits(header_timeout=0.2)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            async with asyncio.timeout(5):
                while await reader.read(65536):
                    pass  # the server's SETTINGS, then GOAWAY, then EOF
        finally:
            writer.close()
            await writer.wait_closed()


async def test_preface_replayed_by_a_listener_is_accepted() -> None:
    """The listener sniffs the preface, then hands it over through data_received."""
    sniffed: list[bytes] = []

    async def handler(exchange: ServerExchange) -> None:
        await exchange.respond(200, None, b"ok")

    class Sniffer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            sniffed.append(data)
            proto = H2ServerProtocol(handler, limits=ServerLimits(), tls=False, on_closed=lambda p: None)
            self.transport.set_protocol(proto)
            proto.connection_made(self.transport)
            proto.data_received(data)

    server = await asyncio.get_running_loop().create_server(Sniffer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpstream.ConnectionPool(http2=True, http1=False) as client, asyncio.timeout(10):
            response = await client.handle_request(httpstream.Request("GET", f"http://127.0.0.1:{port}/"))
            assert await response.aread() == b"ok"
    finally:
        server.close()
        await server.wait_closed()
    assert sniffed and sniffed[0].startswith(b"PRI * HTTP/2.0")


async def test_a_handler_that_raises_before_the_head_gives_500_and_abort_resets(cert_files: dict[str, str]) -> None:
    async def handler(exchange: ServerExchange) -> None:
        if exchange.request.target == "/abort":
            exchange.abort()
            return
        raise KeyError("boom")

    async with Listener(handler) as server, pool(server, cert_files) as client, asyncio.timeout(10):
        response = await client.handle_request(httpstream.Request("GET", server.url("/raise")))
        assert response.status_code == 500
        assert await response.aread() == b"the request handler failed\n"
        with pytest.raises(httpstream.RemoteProtocolError, match="INTERNAL_ERROR"):
            await client.handle_request(httpstream.Request("GET", server.url("/abort")))


async def test_rst_stream_flood_gets_goaway_enhance_your_calm() -> None:
    hold = asyncio.Event()

    async def handler(exchange: ServerExchange) -> None:
        await hold.wait()

    async with Listener(handler, limits=ServerLimits(max_control_frames_per_second=20)) as server:
        async with RawClient(server.port) as raw:
            for stream_id in range(1, 200, 2):  # open and cancel at once: "rapid reset"
                raw.conn.send_headers(stream_id, get(), end_stream=True)
                raw.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            raw.flush()
            event = await raw.until(is_goaway)
            assert isinstance(event, h2.events.ConnectionTerminated)
            assert event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
