"""The transport contract, second edition: full duplex, 1xx hooks, request trailers, targets.

Real peers: hypercorn with ``DuplexApp`` echoing each request chunk as it
arrives (HTTP/1.1 chunked, HTTP/2, HTTP/3), the purpose-built trailer and
Early Hints servers of ``peers.duplex`` (hypercorn drops request trailers and
sends no 103 over HTTP/1.1), and raw fault servers that record request lines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import httpstream
from httpstream._streams import _RUNNING

from .peers.duplex import EARLY_HINT_LINK, EarlyHintsServer, TrailerServerH1, TrailerServerH2
from .peers.duplex_fixtures import server_ssl_context
from .peers.servers import FaultServer, HypercornServer, pattern

pytestmark = pytest.mark.usefixtures("no_leaks")

CHUNK = 16 * 1024


def pool_for(kind: str, cert_files: dict[str, str], **options: Any) -> httpstream.ConnectionPool:
    timeout = httpstream.Timeout.all(10)
    if kind == "h1":
        return httpstream.ConnectionPool(timeout=timeout, **options)
    if kind == "h2c":
        return httpstream.ConnectionPool(http1=False, http2=True, timeout=timeout, **options)
    if kind == "h2":
        return httpstream.ConnectionPool(http2=True, verify=cert_files["ca"], timeout=timeout, **options)
    assert kind == "h3"
    return httpstream.ConnectionPool(http3="only", verify=cert_files["ca"], timeout=timeout, **options)


def echo_url(kind: str, plain: HypercornServer, tls: HypercornServer, path: str = "/echo") -> str:
    return plain.url(path) if kind in ("h1", "h2c") else tls.url(path)


VERSIONS = {"h1": "HTTP/1.1", "h2c": "HTTP/2", "h2": "HTTP/2", "h3": "HTTP/3"}


@pytest.mark.parametrize("kind", ["h1", "h2c", "h2", "h3"])
async def test_response_head_and_bytes_arrive_while_the_upload_goes_on(
    kind: str, duplex_server: HypercornServer, duplex_tls_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    """Lock-step echo: each chunk is sent only after the previous one came back.

    A transport that returned at the head only after the whole body went up
    would deadlock here (bounded by the test's timeout); the first response
    byte is asserted before the last request byte is sent.
    """
    echoed = asyncio.Queue[int]()
    sent: list[int] = []
    first_byte_at: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(20):
            if i:
                async with asyncio.timeout(5):
                    await echoed.get()  # the echo of chunk i-1 came back
            sent.append(i)
            yield pattern(CHUNK, i * CHUNK)

    async with pool_for(kind, cert_files) as pool:
        request = httpstream.Request("POST", echo_url(kind, duplex_server, duplex_tls_server), content=body())
        async with asyncio.timeout(20):
            response = await pool.handle_request(request)
            assert response.http_version == VERSIONS[kind]
            assert response.status_code == 200
            assert len(sent) < 20  # the head came while the body was still going up
            received = bytearray()
            async for chunk in response.stream:
                if not first_byte_at:
                    first_byte_at.append(len(sent))
                before = len(received) // CHUNK
                received += chunk
                for _ in range(before, len(received) // CHUNK):
                    echoed.put_nowait(1)
            upload = response.extensions["upload"]
            assert isinstance(upload, httpstream.Upload)
            assert await upload.wait() is True
    assert bytes(received) == pattern(20 * CHUNK)
    assert first_byte_at[0] < 20  # the first response byte before the last request byte
    assert not _RUNNING


@pytest.mark.parametrize("kind", ["h1", "h2", "h3"])
async def test_early_final_answer_stops_the_upload(
    kind: str, duplex_server: HypercornServer, caddy: Any, cert_files: dict[str, str]
) -> None:
    """A 413 before the body: the upload stops as the protocol allows, no slot leaks.

    The peer is caddy (Go's server reads a little of an unwanted body and
    closes without the reset that would take the answer with it; hypercorn
    does not linger).  HTTP/1.1 closes the connection: the rest is large.
    HTTP/2 and HTTP/3 (Go ends the request stream with RST_STREAM(NO_ERROR) /
    STOP_SENDING after its answer) stop the upload,
    free the stream and keep the connection for the next request: HTTP/3 did
    not end its side before the two request paths became one.
    """
    produced = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal produced
        for _ in range(1000):  # 16 MiB unless stopped
            produced += 1
            yield b"x" * CHUNK
            await asyncio.sleep(0)

    url = caddy.url("/upload-then-413")
    if kind == "h1":  # over TLS, ALPN http/1.1
        pool = httpstream.ConnectionPool(verify=cert_files["ca"], timeout=httpstream.Timeout.all(10))
    else:
        pool = pool_for(kind, cert_files)
    async with pool:
        async with asyncio.timeout(20):
            response = await pool.handle_request(httpstream.Request("POST", url, content=body()))
            assert (response.status_code, response.http_version) == (413, VERSIONS[kind])
            assert (await response.aread()).startswith(b"too large")
            upload = response.extensions["upload"]
            assert await upload.wait() is False
        assert produced < 1000
        for _ in range(100):
            if pool.stats().in_use == 0 and pool.stats().streams == 0 and not _RUNNING:
                break
            await asyncio.sleep(0.02)
        assert pool.stats().in_use == 0
        assert pool.stats().streams == 0
        assert not _RUNNING
        if kind != "h1":
            again = await pool.handle_request(httpstream.Request("GET", caddy.url("/small")))
            assert again.status_code == 200
            await again.aread()
            assert pool.connects == 1  # the multiplexed connection outlived the early answer


@pytest.mark.parametrize("kind", ["h1", "h2c", "h3"])
async def test_an_upload_that_fails_after_the_head_fails_the_response_body(
    kind: str, duplex_server: HypercornServer, duplex_tls_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    class Broken(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * CHUNK
        await asyncio.sleep(0.05)
        raise Broken("the producer died")

    async with pool_for(kind, cert_files) as pool:
        async with asyncio.timeout(10):
            request = httpstream.Request("POST", echo_url(kind, duplex_server, duplex_tls_server), content=body())
            response = await pool.handle_request(request)
            assert response.status_code == 200
            with pytest.raises(httpstream.HTTPStreamError, match="request body failed") as caught:
                async for _ in response.stream:
                    pass
            assert isinstance(caught.value.__cause__, Broken) or isinstance(
                caught.value.__cause__.__cause__ if caught.value.__cause__ else None, Broken
            )
            with pytest.raises(Broken):
                await response.extensions["upload"].wait()  # the body's own error
            await response.aclose()
        for _ in range(100):
            if pool.stats().in_use == 0:
                break
            await asyncio.sleep(0.02)
        assert pool.stats().in_use == 0
        assert pool.stats().streams == 0


async def test_an_upload_that_fails_before_the_head_raises_its_own_error(trailer_server_h1: TrailerServerH1) -> None:
    """The server answers only after the whole body: the iterator's error is the request's."""

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"
        raise ValueError("no more")

    async with httpstream.ConnectionPool(timeout=httpstream.Timeout.all(5)) as pool:
        with pytest.raises(ValueError, match="no more"):
            await pool.handle_request(httpstream.Request("POST", trailer_server_h1.url("/x"), content=body()))
        assert pool.stats().in_use == 0


async def test_a_large_bytes_body_goes_up_in_the_background(
    duplex_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    """8 MiB of bytes do not fit the transport's buffer at once: still full duplex."""
    data = pattern(8 * 1024 * 1024)
    async with pool_for("h1", cert_files) as pool, asyncio.timeout(20):
        response = await pool.handle_request(httpstream.Request("POST", duplex_server.url("/echo"), content=data))
        assert "upload" in response.extensions
        assert await response.aread() == data
        assert await response.extensions["upload"].wait() is True
        # a complete exchange: the connection is reused
        again = await pool.handle_request(httpstream.Request("POST", duplex_server.url("/echo"), content=b"x"))
        assert await again.aread() == b"x"
        assert pool.connects == 1


# -- informational answers ----------------------------------------------------------------------


async def test_early_hints_reach_the_hook_over_http1(early_hints_server: EarlyHintsServer) -> None:
    seen: list[tuple[int, list[tuple[str, str]]]] = []
    async with httpstream.ConnectionPool() as pool:
        request = httpstream.Request(
            "GET",
            early_hints_server.url("/"),
            extensions={"on_informational": lambda status, headers: seen.append((status, headers.multi_items()))},
        )
        response = await pool.handle_request(request)
        assert response.status_code == 200
        assert await response.aread() == b"final\n"
    assert seen == [(103, [("Link", EARLY_HINT_LINK.decode())])]


@pytest.mark.parametrize("kind", ["h2", "h3"])
async def test_early_hints_reach_the_hook_over_http2_and_http3(
    kind: str, duplex_tls_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    seen: list[tuple[int, str | None]] = []
    async with pool_for(kind, cert_files) as pool:
        request = httpstream.Request(
            "GET",
            duplex_tls_server.url("/early-hints"),
            extensions={"on_informational": lambda status, headers: seen.append((status, headers.get("link")))},
        )
        response = await pool.handle_request(request)
        assert (response.status_code, response.http_version) == (200, VERSIONS[kind])
        assert await response.aread() == b"sent"
    assert seen == [(103, EARLY_HINT_LINK.decode())]


async def test_a_hook_that_raises_fails_the_request_with_our_error(early_hints_server: EarlyHintsServer) -> None:
    def hook(status: int, headers: httpstream.Headers) -> None:
        raise KeyError("oops")

    async with httpstream.ConnectionPool() as pool:
        request = httpstream.Request("GET", early_hints_server.url("/"), extensions={"on_informational": hook})
        with pytest.raises(httpstream.LocalProtocolError, match="on_informational hook raised KeyError"):
            await pool.handle_request(request)
        assert pool.stats().in_use == 0


# -- request trailers -----------------------------------------------------------------------------


async def _trailer_round(pool: httpstream.ConnectionPool, url: str, content: Any) -> dict[str, Any]:
    trailers = httpstream.Headers({"x-checksum": "abc123"})
    request = httpstream.Request("POST", url, content=content, trailers=trailers)
    response = await pool.handle_request(request)
    assert response.status_code == 200
    result: dict[str, Any] = json.loads(await response.aread())
    return result


async def test_request_trailers_over_http1_chunked(trailer_server_h1: TrailerServerH1) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    async with httpstream.ConnectionPool() as pool:
        for content in (b"hello world", body(), None):
            seen = await _trailer_round(pool, trailer_server_h1.url("/t"), content)
            assert seen["trailers"] == [["x-checksum", "abc123"]]
            assert seen["body_length"] == (0 if content is None else 11)
            assert ["transfer-encoding", "chunked"] in seen["headers"]
        assert trailer_server_h1.accepted == 1  # each exchange complete: one connection


async def test_trailers_filled_in_by_the_body_while_it_runs(trailer_server_h1: TrailerServerH1) -> None:
    trailers = httpstream.Headers()

    async def body() -> AsyncIterator[bytes]:
        yield b"data"
        trailers["x-count"] = "1"  # known only at the end

    async with httpstream.ConnectionPool() as pool:
        request = httpstream.Request("PUT", trailer_server_h1.url("/t"), content=body(), trailers=trailers)
        seen = json.loads(await (await pool.handle_request(request)).aread())
    assert seen["trailers"] == [["x-count", "1"]]


@pytest.mark.parametrize("tls", [False, True])
async def test_request_trailers_over_http2(tls: bool, cert_files: dict[str, str]) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    server = TrailerServerH2(server_ssl_context(cert_files, ["h2"]) if tls else None)
    async with server, pool_for("h2" if tls else "h2c", cert_files) as pool:
        for content in (b"hello world", body(), None):
            seen = await _trailer_round(pool, server.url("/t"), content)
            assert seen["http_version"] == "2"
            assert seen["trailers"] == [["x-checksum", "abc123"]]
            assert seen["body_length"] == (0 if content is None else 11)
        assert server.accepted == 1


# -- request targets ------------------------------------------------------------------------------


async def test_every_target_form_goes_on_the_wire_as_given() -> None:
    lines: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines.append(head.split(b"\r\n")[0])
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async with FaultServer(handler) as srv, httpstream.ConnectionPool() as pool:
        for request in (
            httpstream.Request("GET", srv.url("/a?b=1")),
            httpstream.Request("OPTIONS", srv.url("/"), target="*"),
            httpstream.Request("GET", srv.url("/"), target="http://elsewhere.test/x"),
        ):
            response = await pool.handle_request(request)
            assert response.status_code == 204
            await response.aclose()
    assert lines == [b"GET /a?b=1 HTTP/1.1", b"OPTIONS * HTTP/1.1", b"GET http://elsewhere.test/x HTTP/1.1"]


@pytest.mark.parametrize(
    ("method", "target", "message"),
    [
        ("GET", "*", "for OPTIONS only"),
        ("GET", "example.test:443", "for CONNECT only"),
        ("GET", "/a b", "visible ASCII"),
        ("GET", "/a\r\nX: y", "visible ASCII"),
        ("GET", "relative", "expected"),
    ],
)
def test_invalid_targets_are_refused_where_the_request_is_built(method: str, target: str, message: str) -> None:
    with pytest.raises(httpstream.LocalProtocolError, match=message):
        httpstream.Request(method, "http://h/", target=target)


def test_connect_in_authority_form() -> None:
    request = httpstream.Request("CONNECT", "example.test:443")
    assert (str(request.url), request.target) == ("http://example.test:443/", "example.test:443")
    assert request.headers["host"] == "example.test:443"
    via = httpstream.Request("CONNECT", "http://proxy.test:3128", target="[::1]:8443")
    assert (via.url.host, via.target, via.headers["host"]) == ("proxy.test", "[::1]:8443", "[::1]:8443")


async def test_the_pool_never_changes_the_callers_request(server: HypercornServer) -> None:
    request = httpstream.Request("GET", server.url("/bytes/10"), headers={"x-a": "1"})
    headers_before = request.headers.multi_items()
    async with httpstream.ConnectionPool(timeout=httpstream.Timeout.all(7)) as pool:
        response = await pool.handle_request(request)
        await response.aread()
    assert request.timeout is None  # the pool's timeout was used, not written into the request
    assert request.headers.multi_items() == headers_before
    assert request.extensions == {}
    assert request.target == "/bytes/10"


# -- request trailers over HTTP/3 (aioquic recorder: hypercorn's h3 crashes on them) -------------


async def test_request_trailers_over_http3(cert_files: dict[str, str]) -> None:
    from .peers.h3_recorder import TrailerServerH3

    async def body() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    server = TrailerServerH3(cert_files["cert"], cert_files["key"])
    async with server, pool_for("h3", cert_files) as pool:
        for content in (b"hello world", body(), None):
            seen = await _trailer_round(pool, server.url("/t"), content)
            assert seen["http_version"] == "3"
            assert seen["trailers"] == [["x-checksum", "abc123"]]
            assert seen["body_length"] == (0 if content is None else 11)
        assert pool.connects == 1  # one QUIC connection carried all three
        assert server.accepted == 1
    assert [r.trailers for r in server.requests] == [[("x-checksum", "abc123")]] * 3


@pytest.mark.parametrize("kind", ["h1", "h2c", "h2", "h3"])
async def test_closing_the_response_early_stops_the_upload(
    kind: str, duplex_server: HypercornServer, duplex_tls_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    """The lifecycle table with an upload in flight: aclose() releases both directions."""
    gate = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * CHUNK
        await gate.wait()  # never set: only stopping the upload ends this
        yield b"never"

    async with pool_for(kind, cert_files) as pool:
        async with asyncio.timeout(10):
            request = httpstream.Request("POST", echo_url(kind, duplex_server, duplex_tls_server), content=body())
            response = await pool.handle_request(request)
            first = await response.stream.__anext__()
            assert first
            upload = response.extensions["upload"]
            await response.aclose()
            assert await upload.wait() is False
        for _ in range(100):
            if pool.stats().in_use == 0 and pool.stats().streams == 0 and not _RUNNING:
                break
            await asyncio.sleep(0.02)
        assert pool.stats().in_use == 0
        assert pool.stats().streams == 0
        assert not _RUNNING
        # the pool still serves (HTTP/2 and HTTP/3: on the same connection, the stream was reset)
        again = await pool.handle_request(
            httpstream.Request("POST", echo_url(kind, duplex_server, duplex_tls_server), content=b"ok")
        )
        assert await again.aread() == b"ok"
        assert pool.connects == (2 if kind == "h1" else 1)


async def test_an_error_answer_from_a_closing_server_stops_the_upload_at_once() -> None:
    """RFC 9112 section 9.5: 4xx with ``Connection: close`` mid-upload: cease sending at the head."""
    after_head = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal after_head
        await reader.readuntil(b"\r\n\r\n")
        await reader.read(CHUNK)  # the upload has started
        writer.write(b"HTTP/1.1 413 Too Large\r\nConnection: close\r\nContent-Length: 4\r\n\r\n")
        await writer.drain()
        loop = asyncio.get_running_loop()
        until = loop.time() + 0.5
        while (left := until - loop.time()) > 0:  # read (and count) what still comes, for half a second
            try:
                data = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                break
            if not data:
                break
            after_head += len(data)
        writer.write(b"nope")
        await writer.drain()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(10_000):  # 160 MiB unless stopped
            yield b"y" * CHUNK

    async with FaultServer(handler) as srv, httpstream.ConnectionPool(timeout=httpstream.Timeout.all(5)) as pool:
        response = await pool.handle_request(httpstream.Request("POST", srv.url("/"), content=body()))
        assert response.status_code == 413
        assert await response.aread() == b"nope"
        assert await response.extensions["upload"].wait() is False
    # What was in flight (socket buffers on loopback hold a few MiB), not half a
    # second of uploading (without the rule, all 160 MiB went up in that time).
    assert after_head < 16 * 1024 * 1024


async def test_an_upload_failing_after_a_complete_answer_leaves_the_answer_whole() -> None:
    """HTTP/2: the whole answer came (END_STREAM, no reset), then the body fails: the answer stays whole."""
    from .peers.h2_servers import H2FaultServer, H2ServerConnection, ServerStream

    async def handler(conn: H2ServerConnection, stream: ServerStream) -> None:
        await conn.respond(stream.stream_id, b"early and complete", status=413)

    async def body() -> AsyncIterator[bytes]:
        yield b"z" * CHUNK
        await asyncio.sleep(0.3)  # the 413 arrives, whole, meanwhile
        raise RuntimeError("the producer died late")

    async with H2FaultServer(handler, on_headers=True) as srv, pool_for("h2c", {}) as pool, asyncio.timeout(10):
        response = await pool.handle_request(httpstream.Request("POST", srv.url("/"), content=body()))
        assert response.status_code == 413
        with pytest.raises(RuntimeError, match="died late"):
            await response.extensions["upload"].wait()
        assert await response.aread() == b"early and complete"
        for _ in range(100):
            if pool.stats().streams == 0 and not _RUNNING:
                break
            await asyncio.sleep(0.02)
        assert pool.stats().streams == 0


async def test_the_client_passes_extensions_and_trailers_down(
    early_hints_server: EarlyHintsServer, trailer_server_h1: TrailerServerH1
) -> None:
    seen: list[int] = []
    async with httpstream.AsyncClient() as client:
        response = await client.get(
            early_hints_server.url("/"), extensions={"on_informational": lambda status, headers: seen.append(status)}
        )
        assert response.content == b"final\n"
        response = await client.post(trailer_server_h1.url("/t"), content=b"abc", trailers={"x-sum": "3"})
        assert response.json()["trailers"] == [["x-sum", "3"]]
    assert seen == [103]
