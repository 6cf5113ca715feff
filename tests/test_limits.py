"""Limits against hostile or careless peers, each one hit over the network.

Every limit is reached through a real server on 127.0.0.1 (hypercorn speaking
HTTP/1.1, HTTP/2 and HTTP/3, or a raw asyncio server where hypercorn would not
misbehave), and the error must say which limit was hit and what to raise:

    limit                                   where it is set                 error
    --------------------------------------  ------------------------------  -----------------------
    response head bytes (H1, H2, H3)        Limits(max_header_bytes=...)    RemoteProtocolError
    response header fields (H1, H2, H3)     Limits(max_header_count=...)    RemoteProtocolError
    line length                             aiter_lines(max_line_length=)   DecodingError
    Server-Sent Event size                  aiter_sse(max_event_size=)      DecodingError
    decoded body size                       aread(max_body_size=)           DecodingError
    redirects                               AsyncClient(max_redirects=)     TooManyRedirects

Each test also raises the limit and reads the same response successfully, which
proves the message points at the right knob, and checks that the failed request
left nothing in use in the pool.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator

import pytest

import httpstream
from tests.peers.invariants import settled

from .peers.servers import App, FaultServer, HypercornServer, Receive, Scope, Send, read_request


class LimitsApp(App):
    """/head?size=N: one field N bytes long;  /fields?count=N: N small fields;
    /line?length=N: a body holding a line of N characters;  /event?size=N: one SSE
    event of N characters;  /gzip?size=N: N zero bytes, gzip-encoded;  /hops/N:
    N redirects, then 200."""

    async def h_head(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        await self._send(send, 200, b"big head", [(b"x-big", b"a" * int(q["size"]))])

    async def h_fields(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        fields = [(b"x-f%d" % i, b"v") for i in range(int(q["count"]))]
        await self._send(send, 200, b"many fields", fields)

    async def h_line(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        body = b"short\n" + b"x" * int(q["length"]) + b"\nend\n"
        await self._send(send, 200, body, [(b"content-type", b"text/plain; charset=utf-8")])

    async def h_event(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        body = b"data: first\n\ndata: " + b"y" * int(q["size"]) + b"\n\n"
        await self._send(send, 200, body, [(b"content-type", b"text/event-stream")])

    async def h_gzip(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        body = gzip.compress(bytes(int(q["size"])), 6)
        await self._send(send, 200, body, [(b"content-encoding", b"gzip")])

    async def h_hops(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        left = int(args[0])
        if left == 0:
            await self._send(send, 200, b"arrived")
        else:
            await self._send(send, 302, b"", [(b"location", f"/hops/{left - 1}".encode())])


@pytest.fixture(scope="module")
def limits_server(cert_files: dict[str, str]) -> Iterator[HypercornServer]:
    """TLS with h2 and http/1.1 by ALPN, and QUIC (h3) on the same port number."""
    server = HypercornServer(
        LimitsApp(), certfile=cert_files["cert"], keyfile=cert_files["key"], alpn=("h2", "http/1.1"), quic=True
    )
    server.start()
    yield server
    server.stop()


PROTOCOLS: dict[str, dict[str, object]] = {
    "HTTP/1.1": {"http2": False},
    "HTTP/2": {"http2": True},
    "HTTP/3": {"http3": "only"},
}


def make_client(
    cert_files: dict[str, str], protocol: str, limits: httpstream.Limits | None = None, **kwargs: object
) -> httpstream.AsyncClient:
    options: dict[str, object] = {**PROTOCOLS[protocol], **kwargs}
    limits = limits or httpstream.Limits()
    return httpstream.AsyncClient(verify=cert_files["ca"], limits=limits, timeout=10.0, **options)  # type: ignore[arg-type]


# -- response heads --------------------------------------------------------------------------------
def assert_names_knob(message: str, knob: str, value: int) -> None:
    """The error names the setting to raise and the value in force."""
    assert knob in message and str(value) in message, f"{knob}={value} not named in: {message}"


HEAD_PROTOCOLS = ["HTTP/1.1", "HTTP/2", "HTTP/3"]


@pytest.mark.parametrize("protocol", HEAD_PROTOCOLS)
async def test_header_bytes_limit(limits_server: HypercornServer, cert_files: dict[str, str], protocol: str) -> None:
    url = limits_server.url("/head?size=20000")
    async with make_client(cert_files, protocol, httpstream.Limits(max_header_bytes=16384)) as client:
        with pytest.raises(httpstream.RemoteProtocolError) as info:
            await client.get(url)
        assert (await settled(client)).in_use == 0
        assert (await client.get(limits_server.url("/hello"))).status_code == 200  # the client carries on
    async with make_client(cert_files, protocol, httpstream.Limits(max_header_bytes=32768)) as client:
        r = await client.get(url)
        assert r.http_version == protocol
        assert len(r.headers["x-big"]) == 20000
    assert_names_knob(str(info.value), "max_header_bytes", 16384)


@pytest.mark.parametrize("protocol", HEAD_PROTOCOLS)
async def test_header_count_limit(limits_server: HypercornServer, cert_files: dict[str, str], protocol: str) -> None:
    url = limits_server.url("/fields?count=120")
    async with make_client(cert_files, protocol, httpstream.Limits(max_header_count=100)) as client:
        with pytest.raises(httpstream.RemoteProtocolError) as info:
            await client.get(url)
        assert (await settled(client)).in_use == 0
    async with make_client(cert_files, protocol, httpstream.Limits(max_header_count=200)) as client:
        r = await client.get(url)
        assert r.headers["x-f119"] == "v"
    assert_names_knob(str(info.value), "max_header_count", 100)


async def test_default_header_limits_hold_against_a_raw_peer() -> None:
    """The defaults (64 KiB, 256 fields) without any configuration, from a raw server
    that sends a head never ending (hypercorn would not)."""

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(1000):  # 1 MB of header lines unless the client hangs up first
            writer.write(b"X-Filler: " + b"f" * 1000 + b"\r\n")
            await writer.drain()

    async with FaultServer(endless) as srv, httpstream.AsyncClient(timeout=10.0) as client:
        with pytest.raises(httpstream.RemoteProtocolError) as info:
            await client.get(srv.url())
        assert (await settled(client)).connections == 0
    assert_names_knob(str(info.value), "max_header_bytes", 65536)


# -- body decoding limits ------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
async def test_line_length_limit(limits_server: HypercornServer, cert_files: dict[str, str], protocol: str) -> None:
    url = limits_server.url("/line?length=5000")
    async with make_client(cert_files, protocol) as client:
        with pytest.raises(httpstream.DecodingError) as info:
            async with client.stream("GET", url) as r:
                async for _ in r.aiter_lines(max_line_length=4096):
                    pass
        assert_names_knob(str(info.value), "max_line_length", 4096)
        assert (await settled(client)).in_use == 0
        async with client.stream("GET", url) as r:
            lines = [line async for line in r.aiter_lines(max_line_length=8192)]
        assert lines == ["short", "x" * 5000, "end"]


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
async def test_sse_event_size_limit(limits_server: HypercornServer, cert_files: dict[str, str], protocol: str) -> None:
    url = limits_server.url("/event?size=5000")
    async with make_client(cert_files, protocol) as client:
        with pytest.raises(httpstream.DecodingError) as info:
            async with client.stream("GET", url) as r:
                async for _ in r.aiter_sse(max_event_size=4096):
                    pass
        assert_names_knob(str(info.value), "max_event_size", 4096)
        assert (await settled(client)).in_use == 0
        async with client.stream("GET", url) as r:
            events = [event.data async for event in r.aiter_sse(max_event_size=8192)]
        assert events == ["first", "y" * 5000]


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
async def test_max_body_size_counts_decoded_bytes(
    limits_server: HypercornServer, cert_files: dict[str, str], protocol: str
) -> None:
    size = 4 * 1024 * 1024  # about 4 KiB on the wire
    url = limits_server.url(f"/gzip?size={size}")
    async with make_client(cert_files, protocol) as client:
        async with client.stream("GET", url) as r:
            assert r.content_length is not None and r.content_length < 10_000
            with pytest.raises(httpstream.DecodingError) as info:
                await r.aread(max_body_size=1024 * 1024)
        assert_names_knob(str(info.value), "max_body_size", 1024 * 1024)
        assert (await settled(client)).in_use == 0
        async with client.stream("GET", url) as r:
            assert await r.aread(max_body_size=size) == bytes(size)


# -- redirects -------------------------------------------------------------------------------------
async def test_redirect_count_limit(limits_server: HypercornServer, cert_files: dict[str, str]) -> None:
    async with make_client(cert_files, "HTTP/2", follow_redirects=True, max_redirects=3) as client:
        with pytest.raises(httpstream.TooManyRedirects) as info:
            await client.get(limits_server.url("/hops/4"))
        assert (await settled(client)).in_use == 0
        r = await client.get(limits_server.url("/hops/3"))
        assert r.content == b"arrived" and len(r.history) == 3
    async with make_client(cert_files, "HTTP/2", follow_redirects=True, max_redirects=4) as client:
        assert (await client.get(limits_server.url("/hops/4"))).content == b"arrived"
    assert_names_knob(str(info.value), "max_redirects", 3)


async def test_default_redirect_limit_is_20(limits_server: HypercornServer, cert_files: dict[str, str]) -> None:
    async with make_client(cert_files, "HTTP/1.1", follow_redirects=True) as client:
        assert len((await client.get(limits_server.url("/hops/20"))).history) == 20
        with pytest.raises(httpstream.TooManyRedirects) as info:
            await client.get(limits_server.url("/hops/21"))
    assert_names_knob(str(info.value), "max_redirects", 20)
