"""The HTTP/1.1 server side (httpstream/_server/) against real clients: httpstream's pool, curl and raw sockets."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

import httpstream
from httpstream._server import Server, ServerExchange, ServerLimits
from httpstream._server._h1_parse import ChunkedReader, Refusal, parse_request_head

pytestmark = pytest.mark.usefixtures("no_leaks")

TIMEOUT = httpstream.Timeout.all(5)


@dataclass
class Seen:
    method: str
    target: str
    url: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    trailers: list[tuple[bytes, bytes]] | None
    exchange: ServerExchange = field(repr=False)


class Recorder:
    """A handler that reads the whole body, records the request, and answers 200 "ok"."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.started = 0

    async def __call__(self, ex: ServerExchange) -> None:
        self.started += 1
        request = ex.request
        body = b""
        if request.content is not None:
            assert not isinstance(request.content, bytes)
            async for chunk in request.content:
                body += chunk
        trailers = request.trailers.raw if request.trailers is not None else None
        self.seen.append(Seen(request.method, request.target, str(request.url), request.headers.raw, body, trailers, ex))
        await ex.respond(200, [("Content-Type", "text/plain")], b"ok:" + body)


@asynccontextmanager
async def serve(handler: Callable[[ServerExchange], Awaitable[None]], **options: object) -> AsyncIterator[Server]:
    options.setdefault("http2", False)
    async with Server(handler, **options) as server:  # type: ignore[arg-type]
        yield server


async def raw(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection, read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(timeout):
            return await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()


def pool(**options: object) -> httpstream.ConnectionPool:
    return httpstream.ConnectionPool(timeout=TIMEOUT, **options)  # type: ignore[arg-type]


async def read_all(response: httpstream.Response) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.stream])
    finally:
        await response.stream.aclose()


# -- the request-side vectors: refused (4xx and close) or exactly one message ----------------------

H = b"Host: a.test\r\n"
REFUSED: list[tuple[str, bytes, int]] = [
    ("cl-repeated-identical", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("cl-conflicting", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("cl-list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    ("cl-plus", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400),
    ("cl-negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("cl-hex", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", 400),
    ("cl-inner-space", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5 5\r\n\r\nhello", 400),
    ("cl-and-te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-and-cl", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("te-gzip-chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-chunked-gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("te-identity", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("te-repeated", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("te-chunked-twice", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-xchunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    ("te-obs-fold", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs-fold-space", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n", 400),
    ("lf-only-head", b"GET / HTTP/1.1\nHost: a.test\n\n", 400),
    ("lf-one-line", b"GET / HTTP/1.1\r\nHost: a.test\nX-A: b\r\n\r\n", 400),
    ("bare-cr-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    ("bare-cr-request-line", b"GET /\r HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bare-cr-line-end", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\r\n\r\n", 400),
    ("nul-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("nul-target", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("del-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n", 400),
    ("tab-before-colon", b"POST / HTTP/1.1\r\n" + H + b"Content-Length\t: 5\r\n\r\nhello", 400),
    ("name-not-token", b"GET / HTTP/1.1\r\n" + H + b"X(A): b\r\n\r\n", 400),
    ("name-non-ascii", b"GET / HTTP/1.1\r\n" + H + b"X\xe9: b\r\n\r\n", 400),
    ("empty-name", b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n", 400),
    ("no-colon", b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", 400),
    ("method-not-token", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("double-space-request-line", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("no-version", b"GET /\r\n" + H + b"\r\n", 400),
    ("lowercase-http", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("http10-chunked", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400),
    ("no-host-http11", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n", 400),
    ("host-path", b"GET / HTTP/1.1\r\nHost: a.test/evil\r\n\r\n", 400),
    ("connect-origin-form", b"CONNECT / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("get-authority-form", b"GET a.test:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("get-asterisk", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("chunk-size-not-hex", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-0x", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-negative", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-trailing-space", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-huge", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1" + b"0" * 16 + b"\r\nx", 400),
    ("chunk-ext-bare-cr", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-line-bare-lf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
    ("chunk-data-no-crlf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400),
    ("chunk-data-lf-only", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", 400),
    ("last-chunk-bare-lf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\n\r\n", 400),
    ("trailer-content-length", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 9\r\n\r\n", 400),
    ("trailer-obs-fold", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n b\r\n\r\n", 400),
    ("trailer-bare-lf", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\n\r\n", 400),
    ("request-line-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("head-too-large", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    ("too-many-fields", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
]


@pytest.mark.parametrize(("data", "status"), [(d, s) for _, d, s in REFUSED], ids=[n for n, _, _ in REFUSED])
async def test_malformed_request_is_refused_and_closed(data: bytes, status: int) -> None:
    recorder = Recorder()
    async with serve(recorder) as server:
        answer = await raw(server.port, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert b"\r\nConnection: close" in head
    assert body  # a short text that says why
    assert answer.count(b"HTTP/1.1 ") == 1
    assert recorder.seen == []  # no request was ever complete: nothing a role could forward


ACCEPTED: list[tuple[str, bytes, list[tuple[str, bytes]]]] = [
    (
        "body-longer-than-cl-is-the-next-request",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\n" + H
        + b"Connection: close\r\n\r\n",
        [("/", b"hello"), ("/next", b"")],
    ),
    (
        "chunk-extensions",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b'5;name=value;q="a b"\r\nhello\r\n3 ; x\r\nabc\r\n0\r\n\r\n',
        [("/", b"helloabc")],
    ),
    (
        "te-chunked-any-case",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        [("/", b"hello")],
    ),
    (
        "leading-empty-line",
        b"\r\nGET /x HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
        [("/x", b"")],
    ),
    (
        "cl-leading-zeros",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 005\r\nConnection: close\r\n\r\nhello",
        [("/", b"hello")],
    ),
    (
        "http10-content-length",
        b"POST /old HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        [("/old", b"abc")],
    ),
    (
        "pipelined-chunked-then-get",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /b HTTP/1.1\r\n" + H
        + b"Connection: close\r\n\r\n",
        [("/", b"hi"), ("/b", b"")],
    ),
]


@pytest.mark.parametrize(("data", "expected"), [(d, e) for _, d, e in ACCEPTED], ids=[n for n, _, _ in ACCEPTED])
async def test_request_is_read_as_exactly_the_expected_messages(data: bytes, expected: list[tuple[str, bytes]]) -> None:
    recorder = Recorder()
    async with serve(recorder) as server:
        answer = await raw(server.port, data)
    assert [(seen.target, seen.body) for seen in recorder.seen] == expected
    assert answer.count(b"HTTP/1.1 200 OK") == len(expected)


async def test_extra_bytes_after_the_body_that_are_no_request_are_refused() -> None:
    recorder = Recorder()
    data = b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello[GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"
    async with serve(recorder) as server:
        answer = await raw(server.port, data)
    assert [(seen.target, seen.body) for seen in recorder.seen] == [("/", b"hello")]
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 400 Bad Request" in answer


async def test_unsupported_version_is_505() -> None:
    async with serve(Recorder()) as server:
        answer = await raw(server.port, b"GET / HTTP/1.2\r\n" + H + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 505 ")


def test_parser_units() -> None:
    limits = ServerLimits()
    head = parse_request_head(b"get /p?q HTTP/1.1\r\nHOST: a.test\r\nX-Two:  v  \r\n\r\n", limits)
    assert (head.method, head.target, head.version) == ("get", "/p?q", "1.1")
    assert head.fields == [(b"HOST", b"host", b"a.test"), (b"X-Two", b"x-two", b"v")]
    reader = ChunkedReader(limits)
    buf = bytearray(b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nrest")
    assert reader.read(buf) == b"abc"
    assert reader.read(buf) == [(b"X-T", b"x-t", b"1")]
    assert bytes(buf) == b"rest"
    with pytest.raises(Refusal, match="bare LF"):
        parse_request_head(b"GET / HTTP/1.1\r\nHost: a\n\r\n", limits)


# -- real clients: the pool and curl -------------------------------------------------------------


async def test_pool_get_and_post_and_keep_alive() -> None:
    recorder = Recorder()
    async with serve(recorder) as server:
        client = pool()
        try:
            url = f"http://127.0.0.1:{server.port}"
            r = await client.handle_request(httpstream.Request("GET", url + "/a?b=1", headers=[("X-Case", "Kept")]))
            assert r.status_code == 200 and await read_all(r) == b"ok:"

            async def upload() -> AsyncIterator[bytes]:
                for piece in (b"one", b"two", b"three"):
                    yield piece

            r = await client.handle_request(httpstream.Request("POST", url + "/up", content=upload()))
            assert await read_all(r) == b"ok:onetwothree"
            r = await client.handle_request(httpstream.Request("PUT", url + "/put", content=b"x" * 100000))
            assert await read_all(r) == b"ok:" + b"x" * 100000
        finally:
            await client.aclose()
    first, second, third = recorder.seen
    assert first.url == f"http://127.0.0.1:{server.port}/a?b=1" and first.target == "/a?b=1"
    assert (b"X-Case", b"Kept") in first.headers
    assert first.headers[0][0] == b"Host"
    assert first.exchange.http_version == "HTTP/1.1" and not first.exchange.tls
    assert (b"Transfer-Encoding", b"chunked") in second.headers and second.trailers == []
    # one TCP connection for all three (keep-alive reuse)
    assert first.exchange.client_addr == second.exchange.client_addr == third.exchange.client_addr


async def test_received_headers_are_not_altered() -> None:
    recorder = Recorder()
    data = b"post /p HTTP/1.1\r\nx-first: 1\r\nhOsT: a.test:8080\r\nX-Dup: a\r\nX-Dup: b\r\nConnection: close\r\n\r\n"
    async with serve(recorder) as server:
        await raw(server.port, data)
    (seen,) = recorder.seen
    assert seen.method == "post"  # methods are case-sensitive (RFC 9110 section 9.1): kept as received
    assert seen.headers == [
        (b"x-first", b"1"), (b"hOsT", b"a.test:8080"), (b"X-Dup", b"a"), (b"X-Dup", b"b"), (b"Connection", b"close")
    ]
    assert seen.url == "http://a.test:8080/p"


async def test_absolute_form_wins_and_connect_keeps_authority_form() -> None:
    recorder = Recorder()
    async with serve(recorder) as server:
        await raw(server.port, b"GET http://origin.test:81/x?y HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n")
        await raw(server.port, b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    absolute, asterisk = recorder.seen
    assert absolute.url == "http://origin.test:81/x?y" and absolute.target == "http://origin.test:81/x?y"
    assert asterisk.target == "*" and asterisk.url == "http://a.test/"

    async def tunnel(ex: ServerExchange) -> None:
        assert ex.request.target == "example.test:443"
        assert ex.request.url.host == "example.test"
        stream = await ex.upgrade(200)
        while data := await stream.read():
            await stream.write(data.upper())
        await stream.aclose()

    async with serve(tunnel) as server:
        client = pool()
        try:
            r = await client.handle_request(
                httpstream.Request("CONNECT", f"http://127.0.0.1:{server.port}", target="example.test:443")
            )
            assert r.status_code == 200
            stream = r.extensions["network_stream"]
            assert isinstance(stream, httpstream.NetworkStream)
            await stream.write(b"hello")
            assert await stream.read(timeout=5) == b"HELLO"
            await stream.aclose()
        finally:
            await client.aclose()


async def _curl(*args: str) -> tuple[int, bytes, bytes]:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (apt-get install curl)")
    proc = await asyncio.create_subprocess_exec(
        curl, "-sS", "--max-time", "10", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(15):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_curl_get_post_and_expect_continue() -> None:
    recorder = Recorder()
    async with serve(recorder) as server:
        url = f"http://127.0.0.1:{server.port}"
        code, out, err = await _curl(url + "/a", url + "/b")  # two URLs: one connection, reused
        assert code == 0, err
        assert out == b"ok:ok:"
        code, out, err = await _curl("-H", "Expect: 100-continue", "--data-binary", "payload", url + "/c")
        assert code == 0, err
        assert out == b"ok:payload"
    assert [seen.target for seen in recorder.seen] == ["/a", "/b", "/c"]
    assert recorder.seen[0].exchange.client_addr == recorder.seen[1].exchange.client_addr


async def test_tls_with_curl_and_pool(cert_files: dict[str, str]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_files["cert"], cert_files["key"])
    recorder = Recorder()
    async with serve(recorder, ssl_context=context) as server:
        url = f"https://127.0.0.1:{server.port}"
        code, out, err = await _curl("--cacert", cert_files["ca"], "--http1.1", url + "/tls")
        assert code == 0, err
        assert out == b"ok:"
        client = pool(verify=cert_files["ca"])
        try:
            r = await client.handle_request(httpstream.Request("POST", url + "/p", content=b"secret"))
            assert await read_all(r) == b"ok:secret"
        finally:
            await client.aclose()
    assert [seen.url for seen in recorder.seen] == [url + "/tls", url + "/p"]
    assert all(seen.exchange.tls for seen in recorder.seen)


async def test_alpn_and_prior_knowledge_reach_http2_when_it_is_there(cert_files: dict[str, str]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_files["cert"], cert_files["key"])
    recorder = Recorder()
    async with serve(recorder, ssl_context=context, http2=True) as server:
        if not server.http2:
            pytest.skip("the HTTP/2 side (httpstream/_server/_h2.py) is not there")
        client = pool(http2=True, verify=cert_files["ca"])
        try:
            r = await client.handle_request(httpstream.Request("GET", f"https://127.0.0.1:{server.port}/h2"))
            assert r.http_version == "HTTP/2" and await read_all(r) == b"ok:"
        finally:
            await client.aclose()
    async with serve(recorder, http2=True) as server:
        client = pool(http1=False, http2=True)
        try:
            r = await client.handle_request(httpstream.Request("GET", f"http://127.0.0.1:{server.port}/h2c"))
            assert r.http_version == "HTTP/2" and await read_all(r) == b"ok:"
            plain = pool()
            try:
                r = await plain.handle_request(httpstream.Request("GET", f"http://127.0.0.1:{server.port}/h1"))
                assert r.http_version == "HTTP/1.1" and await read_all(r) == b"ok:"
            finally:
                await plain.aclose()
        finally:
            await client.aclose()
    assert [seen.exchange.http_version for seen in recorder.seen] == ["HTTP/2", "HTTP/2", "HTTP/1.1"]


# -- responses: streaming, 1xx, trailers, failures ---------------------------------------------


async def test_streamed_response_is_one_chunk_per_item_with_trailers() -> None:
    async def handler(ex: ServerExchange) -> None:
        async def body() -> AsyncIterator[bytes]:
            for piece in (b"a" * 10, b"b" * 3000, b"c"):
                yield piece

        await ex.respond(200, [("X-Kind", "stream")], body(), trailers=httpstream.Headers([("X-Sum", "3011")]))

    async with serve(handler) as server:
        answer = await raw(server.port, b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head and b"\r\nX-Kind: stream" in head
    assert body == b"a\r\n" + b"a" * 10 + b"\r\nbb8\r\n" + b"b" * 3000 + b"\r\n1\r\nc\r\n0\r\nX-Sum: 3011\r\n\r\n"


async def test_informational_and_http10_client() -> None:
    async def handler(ex: ServerExchange) -> None:
        await ex.informational(103, [("Link", "</style.css>; rel=preload")])
        await ex.respond(200, None, b"done")

    seen: list[int] = []
    async with serve(handler) as server:
        client = pool()
        try:
            request = httpstream.Request(
                "GET", f"http://127.0.0.1:{server.port}/", extensions={"on_informational": lambda s, h: seen.append(s)}
            )
            r = await client.handle_request(request)
            assert await read_all(r) == b"done"
        finally:
            await client.aclose()
        answer = await raw(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert seen == [103]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")  # no 1xx to an HTTP/1.0 client
    assert b"Connection: close" in answer and answer.endswith(b"done")


async def test_expect_100_continue_is_sent_when_the_handler_reads() -> None:
    async def handler(ex: ServerExchange) -> None:
        if ex.request.target == "/read":
            assert ex.request.content is not None and not isinstance(ex.request.content, bytes)
            body = b"".join([c async for c in ex.request.content])
            await ex.respond(200, None, b"got:" + body)
        else:
            await ex.respond(403, None, b"no")

    async with serve(handler) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"POST /read HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            async with asyncio.timeout(5):
                assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
                writer.write(b"data")
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" not in head
                assert await reader.readexactly(8) == b"got:data"
                # Not read: no 100, and the answer closes the connection (the body may never come).
                writer.write(b"POST /no HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nExpect: 100-continue\r\n\r\n")
                rest = await reader.read(-1)
        finally:
            writer.close()
            await writer.wait_closed()
    assert rest.startswith(b"HTTP/1.1 403 Forbidden") and b"Connection: close" in rest and b"100 Continue" not in rest


async def test_failing_body_never_ends_cleanly() -> None:
    async def handler(ex: ServerExchange) -> None:
        async def body() -> AsyncIterator[bytes]:
            yield b"first"
            raise RuntimeError("upstream died")

        headers = [("Content-Length", "100")] if ex.request.target == "/sized" else None
        with pytest.raises(RuntimeError):
            await ex.respond(200, headers, body())

    async with serve(handler) as server:
        chunked = await raw(server.port, b"GET /chunked HTTP/1.1\r\n" + H + b"\r\n")
        sized = await raw(server.port, b"GET /sized HTTP/1.1\r\n" + H + b"\r\n")
        client = pool()
        try:
            r = await client.handle_request(httpstream.Request("GET", f"http://127.0.0.1:{server.port}/chunked"))
            with pytest.raises(httpstream.RemoteProtocolError):
                await read_all(r)
        finally:
            await client.aclose()
    assert chunked.endswith(b"5\r\nfirst\r\n")  # no last chunk
    assert sized.endswith(b"\r\n\r\nfirst")  # 5 of 100 bytes, then the close


async def test_handler_errors_and_no_answer_give_500() -> None:
    async def handler(ex: ServerExchange) -> None:
        if ex.request.target == "/raise":
            raise ValueError("boom")

    async with serve(handler) as server:
        raised = await raw(server.port, b"GET /raise HTTP/1.1\r\n" + H + b"\r\n")
        silent = await raw(server.port, b"GET /silent HTTP/1.1\r\n" + H + b"\r\n")
    assert raised.startswith(b"HTTP/1.1 500 ") and silent.startswith(b"HTTP/1.1 500 ")


async def test_unread_small_body_is_drained_for_keep_alive_large_closes() -> None:
    async def handler(ex: ServerExchange) -> None:
        await ex.respond(200, None, b"ignored")

    async with serve(handler) as server:
        small = await raw(
            server.port,
            b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\n\r\n" + b"x" * 1000
            + b"GET /again HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
        )
        assert small.count(b"HTTP/1.1 200 OK") == 2
        big = 1024 * 1024
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % big + b"x" * 1000)
            async with asyncio.timeout(5):
                answer = await reader.read(-1)
        finally:
            writer.close()
            await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in answer


# -- upgrade ---------------------------------------------------------------------------------


async def test_upgrade_to_raw_echo_keeps_early_bytes() -> None:
    async def handler(ex: ServerExchange) -> None:
        stream = await ex.upgrade(101, [("Upgrade", "echo"), ("Connection", "upgrade")])
        while data := await stream.read(timeout=5):
            await stream.write(data)
        await stream.aclose()

    async with serve(handler) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: echo\r\nConnection: upgrade\r\n\r\nEARLY")
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo")
                assert await reader.readexactly(5) == b"EARLY"
                writer.write(b"more")
                assert await reader.readexactly(4) == b"more"
                writer.write_eof()
                assert await reader.read(-1) == b""
        finally:
            writer.close()
            await writer.wait_closed()


# -- backpressure ------------------------------------------------------------------------------


async def _send_until_stalled(sock: socket.socket, total: int) -> int:
    """Send from a non-blocking socket until the peer stops taking bytes (bounded polling)."""
    chunk = b"u" * 65536
    sent = 0
    stalls = 0
    while sent < total and stalls < 10:
        try:
            sent += sock.send(chunk[: min(len(chunk), total - sent)])
            stalls = 0
        except BlockingIOError:
            stalls += 1
            await asyncio.sleep(0.02)
    return sent


async def test_upload_stalls_at_a_bound_when_the_handler_does_not_read() -> None:
    release = asyncio.Event()
    received: list[int] = []

    async def handler(ex: ServerExchange) -> None:
        await release.wait()
        content = ex.request.content
        assert content is not None and not isinstance(content, bytes)
        received.append(sum([len(c) async for c in content]))
        await ex.respond(200, None, b"%d" % received[0])

    total = 256 * 1024 * 1024
    limits = ServerLimits(stream_window=64 * 1024)
    async with serve(handler, limits=limits) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            sock.setblocking(False)
            sock.send(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % total)
            sent = await _send_until_stalled(sock, total)
            assert sent < 32 * 1024 * 1024, f"{sent} bytes went up while nobody read"
            release.set()
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(30):
                while sent < total:
                    n = min(1 << 20, total - sent)
                    await loop.sock_sendall(sock, b"u" * n)
                    sent += n
                answer = b""
                while not answer.endswith(b"%d" % total):
                    data = await loop.sock_recv(sock, 65536)
                    assert data
                    answer += data
        finally:
            sock.close()
    assert received == [total]


async def test_slow_reader_makes_respond_wait_with_bounded_memory() -> None:
    produced = 0
    finished = asyncio.Event()
    total = 64 * 1024 * 1024

    async def handler(ex: ServerExchange) -> None:
        async def body() -> AsyncIterator[bytes]:
            nonlocal produced
            piece = b"d" * 65536
            while produced < total:
                produced += len(piece)
                yield piece

        await ex.respond(200, [("Content-Length", str(total))], body())
        finished.set()

    limits = ServerLimits(write_high_water=64 * 1024)
    async with serve(handler, limits=limits) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, ("127.0.0.1", server.port))
            await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
            last = -1
            for _ in range(200):  # until the producer stops advancing (bounded)
                await asyncio.sleep(0.02)
                if produced == last:
                    break
                last = produced
            assert not finished.is_set()
            assert produced < 16 * 1024 * 1024, f"{produced} bytes produced for a client that reads nothing"
            got = 0
            async with asyncio.timeout(30):
                while data := await loop.sock_recv(sock, 1 << 20):
                    got += len(data)
        finally:
            sock.close()
    assert finished.is_set()
    assert got > total


# -- timers, limits, closing ---------------------------------------------------------------------


async def test_header_timeout_and_keepalive_timeout() -> None:
    limits = ServerLimits(header_timeout=0.2, keepalive_timeout=0.2)
    async with serve(Recorder(), limits=limits) as server:
        slow = await raw(server.port, b"GET / HTTP/1.1\r\nHost: a")
        assert slow.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in slow
        assert await raw(server.port, b"") == b""  # nothing sent: closed quietly
        idle = await raw(server.port, b"GET / HTTP/1.1\r\n" + H + b"\r\n")  # keep-alive, then idle
        assert idle.startswith(b"HTTP/1.1 200 OK") and idle.count(b"HTTP/1.1") == 1


async def test_close_with_requests_in_flight_leaves_nothing_behind() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def handler(ex: ServerExchange) -> None:
        if ex.request.target == "/quick":
            started.set()
            await asyncio.sleep(0.05)
            await ex.respond(200, None, b"quick")
            return
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    loop = asyncio.get_running_loop()
    server = Server(handler, http2=False, shutdown_grace=0.3)
    await server.start()
    stuck = asyncio.create_task(raw(server.port, b"GET /stuck HTTP/1.1\r\n" + H + b"\r\n"))
    await started.wait()
    started.clear()
    quick = asyncio.create_task(raw(server.port, b"GET /quick HTTP/1.1\r\n" + H + b"\r\n"))
    await started.wait()
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
    begin = loop.time()
    await server.aclose()
    assert loop.time() - begin < 2
    assert cancelled == [True]
    assert await stuck == b""
    answer = await quick
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in answer  # finished within the grace
    async with asyncio.timeout(5):
        assert await idle_reader.read(-1) == b""
    idle_writer.close()
    await idle_writer.wait_closed()
    assert server.connection_count == 0
