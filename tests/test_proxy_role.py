"""The proxy role in-process: httpstream's pool as the client, hypercorn, our own server and fault servers upstream.

``ProxyServer`` runs on the test's loop (port 0 on 127.0.0.1); every client is a
``ConnectionPool(proxy=...)`` so what crosses the proxy is real HTTP both ways.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from httpstream import ConnectionPool, Request
from httpstream._exceptions import HTTPStreamError
from httpstream._server import Server, ServerExchange
from httpstream.proxy import OptionError, Options, ProxyServer, http, parse_size
from httpstream.proxy._relay import strip_hop_by_hop
from httpstream.proxy.http import Headers

from .peers.servers import FaultServer, HypercornServer, pattern, read_request

pytestmark = pytest.mark.usefixtures("no_leaks")

WAIT = 10.0


async def fetch(proxy: ProxyServer, url: str, **kwargs: Any) -> tuple[int, Any, bytes]:
    async with ConnectionPool(proxy=proxy.url, trust_env=False) as pool:
        response = await pool.handle_request(Request(kwargs.pop("method", "GET"), url, **kwargs))
        try:
            body = await asyncio.wait_for(response.aread(), WAIT)
        finally:
            await response.aclose()
        return response.status_code, response.headers, body


# -- the seed documents' addons, unchanged (bytes literals in the second) ------------------------
class SeedStream:
    @staticmethod
    def responseheaders(flow: Any) -> None:
        """
        Enables streaming for all responses.
        This is equivalent to passing `--set stream_large_bodies=1` to mitmproxy.
        """
        flow.response.stream = True


def modify(chunks: Any) -> Any:
    """
    chunks is a generator that can be used to iterate over all chunks.
    """
    for chunk in chunks:
        yield chunk.replace(b"foo", b"bar")


class SeedModify:
    @staticmethod
    def responseheaders(flow: Any) -> None:
        flow.response.stream = modify


# -- upstreams of our own ------------------------------------------------------------------------
class Feed:
    """An upstream on httpstream's own server: /sse sends one event, waits for ``release``, sends the rest."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.closed = asyncio.Event()  # the SSE body generator ended, however it ended
        self.finished = False
        self.server = Server(self.handle)

    async def handle(self, exchange: ServerExchange) -> None:
        path = exchange.request.target
        if path.startswith("/sse"):
            await exchange.respond(200, [("Content-Type", "text/event-stream; charset=utf-8")], self.events())
        elif path.startswith("/foo"):
            await exchange.respond(200, [("Content-Type", "text/plain")], self.foo())
        else:
            await exchange.respond(404, [], b"")

    async def events(self) -> AsyncIterator[bytes]:
        try:
            yield b"data: one\n\n"
            await asyncio.wait_for(self.release.wait(), WAIT)
            yield b"data: two\n\n"
            self.finished = True
        finally:
            self.closed.set()

    async def foo(self) -> AsyncIterator[bytes]:
        for piece in (b"foo-1 ", b"foo-2 ", b"foofoo"):
            yield piece

    async def __aenter__(self) -> Feed:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.server.aclose()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


# -- forwarding, buffered and streamed -------------------------------------------------------------
async def test_forward_buffered_and_hop_by_hop(server: HypercornServer) -> None:
    async with ProxyServer(listen_port=0) as proxy:
        status, headers, body = await fetch(
            proxy,
            server.url("/echo"),
            headers=[("Connection", "x-secret"), ("X-Secret", "1"), ("Keep-Alive", "5"), ("TE", "trailers")],
        )
    assert status == 200
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert "x-secret" not in seen and "keep-alive" not in seen and "te" not in seen
    assert seen["via"] == "1.1 httpstream"
    assert headers["via"] == "1.1 httpstream"


async def test_streamed_large_body_relayed(server: HypercornServer) -> None:
    async with ProxyServer(listen_port=0, stream_large_bodies=parse_size("64k")) as proxy:
        status, _, body = await fetch(proxy, server.url("/bytes/1000000"))
        status2, _, body2 = await fetch(proxy, server.url("/chunked/300000"))
    assert status == 200 and body == pattern(1000000)
    assert status2 == 200 and body2 == pattern(300000)


async def test_sse_streams_event_by_event_with_no_option() -> None:
    async with Feed() as feed, ProxyServer(listen_port=0) as proxy:
        async with ConnectionPool(proxy=proxy.url, trust_env=False) as pool:
            response = await asyncio.wait_for(pool.handle_request(Request("GET", feed.url("/sse"))), WAIT)
            try:
                chunks = response.stream.__aiter__()
                first = await asyncio.wait_for(chunks.__anext__(), WAIT)
                assert first == b"data: one\n\n"
                assert not feed.finished  # the first event arrived before the upstream finished
                feed.release.set()
                rest = b""
                while True:
                    try:
                        rest += await asyncio.wait_for(chunks.__anext__(), WAIT)
                    except StopAsyncIteration:
                        break
            finally:
                await response.aclose()
    assert rest == b"data: two\n\n"


# -- addons ----------------------------------------------------------------------------------------
async def test_seed_addon_stream_true(server: HypercornServer) -> None:
    async with ProxyServer(listen_port=0, addons=[SeedStream()]) as proxy:
        status, _, body = await fetch(proxy, server.url("/bytes/200000"))
    assert status == 200 and body == pattern(200000)


async def test_seed_addon_generator_modify() -> None:
    async with Feed() as feed, ProxyServer(listen_port=0, addons=[SeedModify()]) as proxy:
        status, _, body = await fetch(proxy, feed.url("/foo"))
    assert status == 200
    assert body == b"bar-1 bar-2 barbar"


async def test_per_chunk_callable_with_flush() -> None:
    calls: list[bytes] = []

    def per_chunk(data: bytes) -> bytes:
        calls.append(data)
        return b"<end>" if data == b"" else data.upper()

    class Addon:
        def responseheaders(self, flow: Any) -> None:
            flow.response.stream = per_chunk

    async with Feed() as feed, ProxyServer(listen_port=0, addons=[Addon()]) as proxy:
        _, _, body = await fetch(proxy, feed.url("/foo"))
    assert body == b"FOO-1 FOO-2 FOOFOO<end>"
    assert calls[-1] == b""


async def test_async_generator_form() -> None:
    async def shout(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk.replace(b"foo", b"baz")

    class Addon:
        def responseheaders(self, flow: Any) -> None:
            flow.response.stream = shout

    async with Feed() as feed, ProxyServer(listen_port=0, addons=[Addon()]) as proxy:
        _, _, body = await fetch(proxy, feed.url("/foo"))
    assert body == b"baz-1 baz-2 bazbaz"


async def test_buffered_body_modified_in_response_hook(server: HypercornServer) -> None:
    class Addon:
        async def response(self, flow: Any) -> None:
            assert flow.response.content == b"hello world\n"
            flow.response.set_text(flow.response.text.replace("world", "proxy, longer"))

    async with ProxyServer(listen_port=0, addons=[Addon()]) as proxy:
        _, headers, body = await fetch(proxy, server.url("/hello"))
    assert body == b"hello proxy, longer\n"
    assert headers["content-length"] == str(len(body))


async def test_raising_hook_is_logged_and_flow_goes_on(
    server: HypercornServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def request(self, flow: Any) -> None:
            raise RuntimeError("boom in the addon")

    async with ProxyServer(listen_port=0, addons=[Broken()]) as proxy:
        status, _, body = await fetch(proxy, server.url("/hello"))
    assert status == 200 and body == b"hello world\n"
    assert "boom in the addon" in caplog.text and "Traceback" in caplog.text


async def test_response_set_in_request_hook_skips_upstream(server: HypercornServer) -> None:
    seen: list[str] = []

    def request(flow: Any) -> None:
        seen.append(flow.request.pretty_url)
        flow.response = http.Response.make(418, b"short and stout", {"Content-Type": "text/plain"})

    class Addon:
        pass

    addon = Addon()
    addon.request = request  # type: ignore[attr-defined]
    async with ProxyServer(listen_port=0, addons=[addon]) as proxy:
        status, _, body = await fetch(proxy, server.url("/hello"))
    assert status == 418 and body == b"short and stout"
    assert server.app.requests == 0
    assert seen == [server.url("/hello")]


# -- upstream failures -----------------------------------------------------------------------------
async def _short_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    await writer.drain()


async def test_truncated_upstream_buffered_is_502() -> None:
    async with FaultServer(_short_body) as upstream, ProxyServer(listen_port=0) as proxy:
        status, _, body = await fetch(proxy, upstream.url("/"))
    assert status == 502
    assert b"upstream failed" in body


async def test_truncated_upstream_streamed_never_ends_cleanly() -> None:
    async with FaultServer(_short_body) as upstream, ProxyServer(listen_port=0, stream_large_bodies=1) as proxy:
        async with ConnectionPool(proxy=proxy.url, trust_env=False) as pool:
            response = await pool.handle_request(Request("GET", upstream.url("/")))
            try:
                with pytest.raises(HTTPStreamError):
                    await asyncio.wait_for(response.aread(), WAIT)
            finally:
                await response.aclose()


async def test_connect_refused_is_502() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with ProxyServer(listen_port=0) as proxy:
        status, headers, body = await fetch(proxy, f"http://127.0.0.1:{port}/")
    assert status == 502
    assert headers["content-type"].startswith("text/plain")
    assert b"ConnectError" in body


async def test_upstream_timeout_is_504() -> None:
    gate = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await gate.wait()

    async with FaultServer(stall) as upstream, ProxyServer(listen_port=0, read_timeout=0.3) as proxy:
        status, _, body = await fetch(proxy, upstream.url("/"))
        gate.set()
    assert status == 504
    assert b"ReadTimeout" in body


# -- modes and options -----------------------------------------------------------------------------
async def test_reverse_mode(server: HypercornServer) -> None:
    async with ProxyServer(listen_port=0, mode=f"reverse:{server.url('/')}") as proxy:
        async with ConnectionPool(trust_env=False) as pool:
            response = await pool.handle_request(Request("GET", f"{proxy.url}/echo?x=1"))
            body = await asyncio.wait_for(response.aread(), WAIT)
    info = json.loads(body)
    seen = {k.lower(): v for k, v in info["headers"]}
    assert info["path"] == "/echo" and info["query"] == "x=1"
    assert seen["host"] == server.url("/").split("//")[1].rstrip("/")
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{proxy.port}"


async def test_upstream_mode_chains_to_another_proxy(server: HypercornServer) -> None:
    async with ProxyServer(listen_port=0) as first, ProxyServer(listen_port=0, mode=f"upstream:{first.url}") as second:
        status, headers, body = await fetch(second, server.url("/hello"))
    assert status == 200 and body == b"hello world\n"
    assert headers.get_list("via") == ["1.1 httpstream", "1.1 httpstream"]


async def test_body_size_limit_request_is_413(server: HypercornServer) -> None:
    async with ProxyServer(listen_port=0, body_size_limit=1000) as proxy:
        status, _, body = await fetch(proxy, server.url("/upload"), method="POST", content=b"x" * 5000)
    assert status == 413 and b"body_size_limit" in body


@pytest.mark.parametrize("path", ["/bytes/500000", "/chunked/500000"])  # past the drain cap: closed at once
async def test_body_size_limit_response_is_502(server: HypercornServer, path: str) -> None:
    async with ProxyServer(listen_port=0, body_size_limit=1000) as proxy:
        status, _, body = await fetch(proxy, server.url(path))
    assert status == 502 and b"body_size_limit" in body


def test_options_validation() -> None:
    assert parse_size("3m") == 3 * 1024 * 1024 and parse_size("10k") == 10240 and parse_size("7") == 7
    assert Options.from_settings(["stream_large_bodies=1m"]).stream_large_bodies == 1024 * 1024
    with pytest.raises(OptionError, match="unknown option 'nope'"):
        Options.from_settings(["nope=1"])
    with pytest.raises(OptionError, match="stream_large_bodies"):
        Options.from_settings(["stream_large_bodies=lots"])
    with pytest.raises(OptionError, match="block_global"):
        Options.from_settings(["block_global=maybe"])
    with pytest.raises(OptionError, match="invalid mode"):
        Options(mode="sideways")
    with pytest.raises(OptionError, match="non-loopback"):
        ProxyServer(listen_host="0.0.0.0", listen_port=0)


def test_hop_by_hop_strip() -> None:
    headers = Headers(
        [
            ("Connection", "close, X-Drop"),
            ("X-Drop", "1"),
            ("Proxy-Authorization", "Basic x"),
            ("Proxy-Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Trailer", "x"),
            ("X-Keep", "2"),
        ]
    )
    assert list(strip_hop_by_hop(headers)) == ["X-Keep"]
    flow_headers = Headers([("A", "1"), ("a", "2")])
    assert flow_headers["a"] == "1, 2" and flow_headers.get_all("A") == ["1", "2"]
    flow_headers.set_all("a", ["3"])
    assert flow_headers.items(multi=True) == [("a", "3")]


@pytest.mark.xfail(
    strict=True,
    raises=TimeoutError,
    reason="_server gives a handler no signal that the client left (H2 RST_STREAM, H1 EOF) while the "
    "handler waits on something other than the client: the proxy learns it only at its next write",
)
async def test_client_leaving_mid_body_closes_the_upstream() -> None:
    # HTTP/2 (h2c) to the proxy in reverse mode, a quiet SSE stream: the client resets its stream
    # after the first event; the upstream should see its stream closed at once, not at the next event.
    async with Feed() as feed:
        async with ProxyServer(listen_port=0, mode=f"reverse:{feed.url('')}") as proxy:
            async with ConnectionPool(http2=True, http2_prior_knowledge=True, trust_env=False) as pool:
                response = await asyncio.wait_for(pool.handle_request(Request("GET", f"{proxy.url}/sse")), WAIT)
                assert response.http_version == "HTTP/2"
                chunks = response.stream.__aiter__()
                assert await asyncio.wait_for(chunks.__anext__(), WAIT) == b"data: one\n\n"
                await response.aclose()
                await asyncio.wait_for(feed.closed.wait(), 1.0)  # the upstream saw the stream go
        assert not feed.finished


async def test_unknown_length_switches_to_streaming_and_is_not_recorded(server: HypercornServer) -> None:
    recorded: list[Any] = []

    class Addon:
        def response(self, flow: Any) -> None:
            recorded.append((flow.response.content, flow.response.truncated))

    async with ProxyServer(listen_port=0, stream_large_bodies=64 * 1024, addons=[Addon()]) as proxy:
        _, _, body = await fetch(proxy, server.url("/chunked/300000"))
    assert body == pattern(300000)
    assert recorded == [(None, False)]  # the response hook still fires after a streamed body


async def test_store_streamed_bodies_keeps_a_bounded_prefix(server: HypercornServer) -> None:
    recorded: list[Any] = []

    class Addon:
        def response(self, flow: Any) -> None:
            recorded.append((flow.response.content, flow.response.truncated))

    async with ProxyServer(
        listen_port=0, stream_large_bodies=1024, store_streamed_bodies=True, stored_body_limit=1000, addons=[Addon()]
    ) as proxy:
        _, _, body = await fetch(proxy, server.url("/bytes/100000"))
    assert body == pattern(100000)
    assert recorded == [(pattern(1000), True)]


async def test_streamed_upload_keeps_its_length(server: HypercornServer) -> None:
    size = 1024 * 1024

    async def upload() -> AsyncIterator[bytes]:
        for start in range(0, size, 65536):
            yield pattern(65536, start)

    async with ProxyServer(listen_port=0, stream_large_bodies=64 * 1024) as proxy:
        status, _, body = await fetch(
            proxy, server.url("/upload"), method="POST", content=upload(), headers={"Content-Length": str(size)}
        )
    assert status == 200
    assert json.loads(body) == {"received": size, "pattern_ok": True}


async def test_buffered_request_seen_and_changed_by_the_request_hook(server: HypercornServer) -> None:
    class Addon:
        def request(self, flow: Any) -> None:
            assert flow.request.content == b"ping"
            flow.request.content = b"pong, longer"
            flow.request.headers["X-Added"] = "yes"

    async with ProxyServer(listen_port=0, addons=[Addon()]) as proxy:
        _, _, body = await fetch(proxy, server.url("/echo"), method="POST", content=b"ping")
    info = json.loads(body)
    assert info["body"] == "pong, longer"
    assert ["x-added", "yes"] in info["headers"]


async def test_http2_upstream_chosen_by_the_pool(h2_server: HypercornServer, cert_files: dict[str, str]) -> None:
    mode = f"reverse:{h2_server.url('/')}"
    async with ProxyServer(listen_port=0, ssl_verify_upstream_trusted_ca=cert_files["ca"], mode=mode) as proxy:
        async with ConnectionPool(trust_env=False) as pool:
            response = await pool.handle_request(Request("GET", f"{proxy.url}/echo"))
            body = await asyncio.wait_for(response.aread(), WAIT)
    assert response.http_version == "HTTP/1.1"  # the client's side ...
    assert json.loads(body)["http_version"] == "2"  # ... and the upstream's, picked by ALPN


async def test_upstream_tls_failure_is_502(tls_server: HypercornServer) -> None:
    errors: list[str] = []

    class Addon:
        def error(self, flow: Any) -> None:
            errors.append(flow.error.msg)

    async with ProxyServer(listen_port=0, mode=f"reverse:{tls_server.url('/')}", addons=[Addon()]) as proxy:
        async with ConnectionPool(trust_env=False) as pool:
            response = await pool.handle_request(Request("GET", f"{proxy.url}/hello"))
            body = await asyncio.wait_for(response.aread(), WAIT)
    assert response.status_code == 502
    assert b"ConnectError" in body
    assert len(errors) == 1 and "ConnectError" in errors[0]


async def test_proxyauth(server: HypercornServer) -> None:
    async with ProxyServer(listen_port=0, proxyauth="alice:secret") as proxy:
        status, headers, _ = await fetch(proxy, server.url("/hello"))
        assert status == 407 and headers["proxy-authenticate"].startswith("Basic")
        async with ConnectionPool(proxy=f"http://alice:secret@127.0.0.1:{proxy.port}", trust_env=False) as pool:
            response = await pool.handle_request(Request("GET", server.url("/echo")))
            body = await asyncio.wait_for(response.aread(), WAIT)
    assert response.status_code == 200
    assert "proxy-authorization" not in {k.lower() for k, _ in json.loads(body)["headers"]}


async def test_kill_in_request_hook_resets_the_client(server: HypercornServer) -> None:
    class Addon:
        def request(self, flow: Any) -> None:
            flow.kill()

    async with ProxyServer(listen_port=0, addons=[Addon()]) as proxy:
        async with ConnectionPool(proxy=proxy.url, trust_env=False) as pool:
            with pytest.raises(HTTPStreamError):
                await asyncio.wait_for(pool.handle_request(Request("GET", server.url("/hello"))), WAIT)
    assert server.app.requests == 0


async def test_connect_intercepted_through_the_hook_point(
    tls_server: HypercornServer, ca: Any, cert_files: dict[str, str]
) -> None:
    seen: list[str] = []

    def intercept(host: str, port: int) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(host).configure_cert(context)
        return context

    class Addon:
        def response(self, flow: Any) -> None:
            seen.append(flow.request.url)
            flow.response.content = flow.response.content.replace(b"world", b"inside")

    async with ProxyServer(listen_port=0, ssl_verify_upstream_trusted_ca=cert_files["ca"], addons=[Addon()]) as proxy:
        proxy.intercept = intercept
        async with ConnectionPool(proxy=proxy.url, verify=cert_files["ca"], trust_env=False) as pool:
            response = await pool.handle_request(Request("GET", tls_server.url("/hello")))
            body = await asyncio.wait_for(response.aread(), WAIT)
    assert body == b"hello inside\n"
    assert seen == [tls_server.url("/hello")]


async def test_connect_passes_through_ignored_hosts(tls_server: HypercornServer, cert_files: dict[str, str]) -> None:
    def intercept(host: str, port: int) -> ssl.SSLContext:
        raise AssertionError("an ignored host is never intercepted")

    async with ProxyServer(listen_port=0, ignore_hosts=(r"^127\.0\.0\.1:",)) as proxy:
        proxy.intercept = intercept
        async with ConnectionPool(proxy=proxy.url, verify=cert_files["ca"], trust_env=False) as pool:
            response = await pool.handle_request(Request("GET", tls_server.url("/hello")))
            body = await asyncio.wait_for(response.aread(), WAIT)
    assert body == b"hello world\n"


async def test_http_connect_hook_may_refuse_a_tunnel(tls_server: HypercornServer, cert_files: dict[str, str]) -> None:
    seen: list[tuple[str, int]] = []

    def http_connect(flow: Any) -> None:
        seen.append((flow.request.host, flow.request.port))
        flow.response = http.Response.make(403, b"no tunnels today\n")

    class Addon:
        pass

    addon = Addon()
    addon.http_connect = http_connect  # type: ignore[attr-defined]
    async with ProxyServer(listen_port=0, addons=[addon]) as proxy:
        async with ConnectionPool(proxy=proxy.url, verify=cert_files["ca"], trust_env=False) as pool:
            with pytest.raises(HTTPStreamError, match="403"):
                await asyncio.wait_for(pool.handle_request(Request("GET", tls_server.url("/hello"))), WAIT)
    assert seen == [("127.0.0.1", tls_server.port)]


async def test_streamed_request_streams_its_response(server: HypercornServer) -> None:
    # application/grpc streams by default; its response streams too (bidirectional gRPC, mitmproxy#7567).
    kinds: list[object] = []

    class Addon:
        def response(self, flow: Any) -> None:
            kinds.append(flow.response.content)

    async def body() -> AsyncIterator[bytes]:
        yield b"frame-1"
        yield b"frame-2"

    async with ProxyServer(listen_port=0, addons=[Addon()]) as proxy:
        status, _, data = await fetch(
            proxy, server.url("/echo"), method="POST", content=body(), headers={"Content-Type": "application/grpc"}
        )
    assert status == 200 and json.loads(data)["body"] == "frame-1frame-2"
    assert kinds == [None]  # streamed, so not recorded
