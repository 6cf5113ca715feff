"""Raw network streams: a 101 to an Upgrade, a 2xx to CONNECT, RFC 8441 extended CONNECT.

Peers: hypercorn's WebSocket support (``DuplexApp`` ``/ws``: HTTP/1.1 Upgrade,
HTTP/2 and HTTP/3 extended CONNECT), wsproto framing the messages over our
stream (an independent WebSocket implementation), httpx-ws over the httpx
adapter, and the loopback HTTP proxy tunnelling CONNECT to a TCP echo server.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx
import httpx_ws
import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage

import httpstream

from .peers.proxy_servers import HTTPProxy
from .peers.servers import FaultServer, HypercornServer

pytestmark = pytest.mark.usefixtures("no_leaks")

VERSIONS = {"h1": "HTTP/1.1", "h2": "HTTP/2", "h3": "HTTP/3"}


class WebSocket:
    """wsproto's frame layer (after the handshake) over a ``NetworkStream``."""

    def __init__(self, stream: httpstream.NetworkStream) -> None:
        self.stream = stream
        self.ws = Connection(ConnectionType.CLIENT)

    async def send(self, message: str | bytes) -> None:
        await self.stream.write(self.ws.send(Message(data=message)), timeout=5)

    async def receive(self) -> str | bytes:
        parts: list[Any] = []
        while True:
            for event in self.ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    parts.append(event.data)
                    if event.message_finished:
                        return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
                if isinstance(event, Ping):
                    await self.stream.write(self.ws.send(event.response()), timeout=5)
                if isinstance(event, CloseConnection):
                    raise AssertionError(f"the server closed the WebSocket: {event.code}")
            data = await self.stream.read(65536, timeout=5)
            assert data, "the stream ended before a message came"
            self.ws.receive_data(data)

    async def close(self) -> None:
        await self.stream.write(self.ws.send(CloseConnection(code=1000)), timeout=5)
        await self.stream.aclose()


async def echo_twice(stream: httpstream.NetworkStream) -> None:
    ws = WebSocket(stream)
    await ws.send("hello")
    assert await ws.receive() == "hello"
    await ws.send(b"\x00\x01" * 40_000)  # larger than one read: the framing spans reads
    assert await ws.receive() == b"\x00\x01" * 40_000
    await ws.close()


def tls_pool(kind: str, cert_files: dict[str, str]) -> httpstream.ConnectionPool:
    timeout = httpstream.Timeout.all(10)
    if kind == "h1":
        return httpstream.ConnectionPool(verify=cert_files["ca"], timeout=timeout)
    if kind == "h2":
        return httpstream.ConnectionPool(http2=True, verify=cert_files["ca"], timeout=timeout)
    return httpstream.ConnectionPool(http3="only", verify=cert_files["ca"], timeout=timeout)


async def test_websocket_upgrade_over_http1_hands_back_the_connection(duplex_server: HypercornServer) -> None:
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    async with httpstream.ConnectionPool(timeout=httpstream.Timeout.all(10)) as pool:
        response = await pool.handle_request(httpstream.Request("GET", duplex_server.url("/ws"), headers=headers))
        assert response.status_code == 101
        assert response.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455's example
        stream = response.extensions["network_stream"]
        assert isinstance(stream, httpstream.NetworkStream)
        assert pool.stats().connections == 0  # detached: the pool forgot it
        server_addr = stream.get_extra_info("server_addr")
        assert isinstance(server_addr, tuple) and server_addr[1] == duplex_server.port
        assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
        assert stream.get_extra_info("ssl_object") is None
        await pool.aclose()  # the pool's end is not the stream's
        await echo_twice(stream)
    assert duplex_server.app.ws_messages == 2


@pytest.mark.parametrize("kind", ["h1", "h2", "h3"])
async def test_extended_connect_is_websocket_whatever_the_pool_picked(
    kind: str, duplex_tls_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    """One request for all three: RFC 8441 (HTTP/2), RFC 9220 (HTTP/3), the Upgrade handshake (HTTP/1.1)."""
    request = httpstream.Request(
        "CONNECT",
        duplex_tls_server.url("/ws"),
        headers={"sec-websocket-version": "13"},
        extensions={"protocol": "websocket"},
    )
    async with tls_pool(kind, cert_files) as pool:
        response = await pool.handle_request(request)
        assert response.http_version == VERSIONS[kind]
        assert response.status_code == (101 if kind == "h1" else 200)
        assert response.headers["x-http-version"] == {"h1": "1.1", "h2": "2", "h3": "3"}[kind]
        stream = response.extensions["network_stream"]
        if kind != "h3":
            assert isinstance(stream.get_extra_info("ssl_object"), ssl.SSLObject)
        await echo_twice(stream)
        if kind != "h1":
            for _ in range(100):
                if pool.stats().streams == 0:
                    break
                await asyncio.sleep(0.02)
            assert pool.stats().streams == 0  # the stream was released; the connection stays
            again = await pool.handle_request(httpstream.Request("GET", duplex_tls_server.url("/early-hints")))
            assert again.status_code == 200
            await again.aread()
            assert pool.connects == 1
    assert duplex_tls_server.app.ws_messages == 2


async def test_httpx_ws_runs_on_the_httpx_adapter(duplex_server: HypercornServer) -> None:
    transport = httpstream.HTTPXTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        async with httpx_ws.aconnect_ws(duplex_server.url("/ws"), client, keepalive_ping_interval_seconds=None) as ws:
            await ws.send_text("hi")
            assert await ws.receive_text(timeout=5) == "hi"
            await ws.send_bytes(b"\x01\x02")
            assert await ws.receive_bytes(timeout=5) == b"\x01\x02"
    assert duplex_server.app.ws_messages == 2


async def tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def test_connect_through_a_proxy_relays_bytes_both_ways() -> None:
    async with FaultServer(tcp_echo) as echo, HTTPProxy() as proxy:
        request = httpstream.Request("CONNECT", proxy.url, target=f"127.0.0.1:{echo.port}")
        async with httpstream.ConnectionPool(timeout=httpstream.Timeout.all(10)) as pool:
            response = await pool.handle_request(request)
            assert response.status_code == 200
            stream = response.extensions["network_stream"]
            assert pool.stats().connections == 0
            payload = bytes(range(256)) * 4096  # 1 MiB: backpressure both ways
            received = bytearray()

            async def reader() -> None:
                while len(received) < len(payload):
                    data = await stream.read(10_000, timeout=5)
                    assert data and len(data) <= 10_000
                    received.extend(data)

            async with asyncio.timeout(10):
                task = asyncio.create_task(reader())
                for start in range(0, len(payload), 65536):
                    await stream.write(payload[start : start + 65536], timeout=5)
                await task
            assert bytes(received) == payload
            await stream.aclose()
    assert proxy.seen[0].request_line == f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1"


async def test_connect_in_authority_form_goes_to_the_host_named() -> None:
    """``Request("CONNECT", "host:port")``: the connection goes to that host, which is the proxy."""
    async with FaultServer(tcp_echo) as echo, HTTPProxy() as proxy:
        async with httpstream.ConnectionPool(timeout=httpstream.Timeout.all(10)) as pool:
            # the proxy's own address in authority form: it tunnels to itself, then to nothing
            response = await pool.handle_request(httpstream.Request("CONNECT", f"127.0.0.1:{proxy.port}"))
            assert response.status_code == 200
            stream = response.extensions["network_stream"]
            await stream.aclose()
        assert echo.accepted == 0
    assert proxy.seen[0].request_line == f"CONNECT 127.0.0.1:{proxy.port} HTTP/1.1"


async def test_a_refused_connect_is_an_ordinary_response() -> None:
    async with HTTPProxy(refuse_connect=True) as proxy, httpstream.ConnectionPool() as pool:
        response = await pool.handle_request(httpstream.Request("CONNECT", proxy.url, target="127.0.0.1:9"))
        assert response.status_code == 403
        assert "network_stream" not in response.extensions
        await response.aread()


async def test_a_read_timeout_leaves_the_stream_usable_and_reads_are_bounded() -> None:
    """Backpressure: a peer that sends without pause is held at the high-water mark."""
    go = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nfirst")
        await writer.drain()
        await go.wait()
        for _ in range(400):  # 25 MiB, far past any buffer
            writer.write(b"z" * 65536)
            await writer.drain()

    limits = httpstream.Limits()
    async with FaultServer(handler) as srv, httpstream.ConnectionPool() as pool:
        request = httpstream.Request("GET", srv.url("/"), headers={"Upgrade": "x", "Connection": "Upgrade"})
        response = await pool.handle_request(request)
        stream = response.extensions["network_stream"]
        assert await stream.read(3) == b"fir"
        assert await stream.read(100) == b"st"  # the rest of a chunk first
        with pytest.raises(httpstream.ReadTimeout):
            await stream.read(100, timeout=0.1)
        go.set()
        assert await stream.read(10, timeout=5) == b"z" * 10  # still usable
        await asyncio.sleep(0.5)  # the server pushes what it can
        assert stream._buffer.size <= limits.read_high_water + 1024 * 1024
        await stream.aclose()
        with pytest.raises(httpstream.StreamClosed):
            await stream.read(10)


async def test_an_unexpected_101_is_still_refused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
        await writer.drain()

    async with FaultServer(handler) as srv, httpstream.ConnectionPool() as pool:
        with pytest.raises(httpstream.RemoteProtocolError, match="no upgrade was asked for"):
            await pool.handle_request(httpstream.Request("GET", srv.url("/")))


async def test_a_wrong_websocket_accept_is_refused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBvbmU=\r\n\r\n"
        )
        await writer.drain()

    async with FaultServer(handler) as srv, httpstream.ConnectionPool() as pool:
        request = httpstream.Request("CONNECT", srv.url("/ws"), extensions={"protocol": "websocket"})
        with pytest.raises(httpstream.RemoteProtocolError, match="Sec-WebSocket-Accept"):
            await pool.handle_request(request)
        assert pool.stats().connections == 0
