"""httpx on httpstream: ``httpx.AsyncClient(transport=HTTPXTransport(...))`` against real peers.

hypercorn (the session servers of conftest, plus one serving ``AdapterApp`` for
repeated headers, gzip and upload progress) and raw fault servers.  What the
server saw is what is asserted: its connection counts, the header fields and
body bytes it received.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

import httpstream
from httpstream._httpx import HTTPXTransport

from .peers.servers import App, FaultServer, HypercornServer, Receive, Scope, Send, pattern, read_request

pytestmark = pytest.mark.usefixtures("no_leaks")

TEXT = ("streaming is the headline; " * 400).encode()


class AdapterApp(App):
    """The session app plus what the adapter tests need."""

    def __init__(self) -> None:
        super().__init__()
        self.upload_progress = 0
        self._progress_lock = threading.Lock()

    async def h_cookies(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """Repeated fields, in an order the client must keep."""
        headers = [(b"set-cookie", b"a=1"), (b"x-order", b"first"), (b"set-cookie", b"b=2"), (b"x-order", b"second")]
        await self._send(send, 200, b"ok", headers)

    async def h_gzip(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        await self._send(send, 200, gzip.compress(TEXT), [(b"content-encoding", b"gzip")])

    async def h_progress(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """Count the request body as it arrives (readable from the test's thread)."""
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            total += len(message.get("body", b""))
            with self._progress_lock:
                self.upload_progress = total
            if not message.get("more_body"):
                break
        await self._send(send, 200, json.dumps({"received": total}).encode())

    def progress(self) -> int:
        with self._progress_lock:
            return self.upload_progress


@pytest.fixture(scope="module")
def adapter_server() -> Iterator[HypercornServer]:
    server = HypercornServer(AdapterApp())
    server.start()
    yield server
    server.stop()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


def refused_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


# -- import -------------------------------------------------------------------------------------


def test_httpx_stays_optional() -> None:
    """``import httpstream`` loads no httpx; the class imports without it and says what is missing."""
    code = (
        "import sys\n"
        "import httpstream\n"
        "assert 'httpx' not in sys.modules, 'import httpstream imported httpx'\n"
        "sys.modules['httpx'] = None  # as if httpx were not installed\n"
        "from httpstream._httpx import HTTPXTransport\n"
        "try:\n"
        "    HTTPXTransport()\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "needs httpx" in out.stdout


# -- requests and responses ----------------------------------------------------------------------


async def test_buffered_get_keeps_fields_in_order(adapter_server: HypercornServer) -> None:
    async with httpx.AsyncClient(transport=HTTPXTransport()) as client:
        r = await client.get(
            adapter_server.url("/echo?q=a%20b/c"), headers=[("X-Rep", "1"), ("X-Other", "o"), ("x-rep", "2")]
        )
        assert (r.status_code, r.http_version, r.reason_phrase) == (200, "HTTP/1.1", "OK")
        info = r.json()
        assert info["query"] == "q=a%20b/c"
        sent = [(k, v) for k, v in info["headers"] if k.startswith("x-")]
        assert sent == [("x-rep", "1"), ("x-other", "o"), ("x-rep", "2")]
        assert not any(k == "content-length" for k, _ in info["headers"])  # a GET announces no body

        r = await client.get(adapter_server.url("/cookies"))
        assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert [(k, v) for k, v in r.headers.multi_items() if k == "x-order"] == [
            ("x-order", "first"),
            ("x-order", "second"),
        ]
        assert dict(r.cookies) == {"a": "1", "b": "2"}

        r = await client.post(adapter_server.url("/echo"), json={"k": [1, 2]})
        info = r.json()
        assert json.loads(info["body"]) == {"k": [1, 2]}
        assert ["content-length", str(len(info["body"]))] in info["headers"]


async def test_httpx_decodes_our_raw_bytes(adapter_server: HypercornServer) -> None:
    async with httpx.AsyncClient(transport=HTTPXTransport()) as client:
        r = await client.get(adapter_server.url("/gzip"))
        assert r.headers["content-encoding"] == "gzip"
        assert r.content == TEXT
        async with client.stream("GET", adapter_server.url("/gzip")) as r:
            raw = b"".join([chunk async for chunk in r.aiter_raw()])
        assert raw == gzip.compress(TEXT)  # the stream hands over the wire bytes


async def test_stream_early_close_drains_and_reuses(server: HypercornServer) -> None:
    transport = HTTPXTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", server.url("/bytes/60000")) as r:
            first = await anext(r.aiter_raw())
            assert first == pattern(len(first))
        # small known remainder: drained, then the connection is reused
        for _ in range(3):
            assert (await client.get(server.url("/hello"))).text == "hello world\n"
        assert server.app.connections == 1

        async with client.stream("GET", server.url("/bytes/5000000")) as r:
            await anext(r.aiter_raw())
        # large remainder: closed at once, a new connection for the next request
        assert transport.pool.stats().connections == 0
        assert (await client.get(server.url("/hello"))).status_code == 200
        assert server.app.connections == 2


async def test_upload_streams(adapter_server: HypercornServer) -> None:
    app = adapter_server.app
    assert isinstance(app, AdapterApp)
    piece = 256 * 1024

    sent = 0

    def caught_up() -> bool:
        return app.progress() >= sent

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for i in range(8):
            yield pattern(piece, i * piece)
            sent += piece
            # The next piece only once the server got this one: a transport that
            # buffered the upload before sending would never get here.
            await until(caught_up)

    async with httpx.AsyncClient(transport=HTTPXTransport()) as client:
        r = await client.post(adapter_server.url("/progress"), content=body())
    assert r.json() == {"received": 8 * piece}


async def test_http2_multiplexes(h2_server: HypercornServer, cert_files: dict[str, str]) -> None:
    transport = HTTPXTransport(http2=True, verify=cert_files["ca"])
    async with httpx.AsyncClient(transport=transport) as client:
        responses = await asyncio.gather(*(client.get(h2_server.url(f"/bytes/{1000 + i}")) for i in range(20)))
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert [len(r.content) for r in responses] == [1000 + i for i in range(20)]
        async with client.stream("GET", h2_server.url("/bytes/3000000")) as r:
            await anext(r.aiter_raw())
        assert transport.pool.stats().streams == 0  # early close reset the stream
        r = await client.post(h2_server.url("/upload"), content=pattern(500_000))
        assert r.json() == {"received": 500_000, "pattern_ok": True}
    assert h2_server.app.connections == 1


async def test_http3(h3_server: HypercornServer, cert_files: dict[str, str]) -> None:
    async with httpx.AsyncClient(transport=HTTPXTransport(http3="only", verify=cert_files["ca"])) as client:
        r = await client.get(h3_server.url("/bytes/100000"))
        assert r.http_version == "HTTP/3"
        assert r.content == pattern(100000)


async def test_pool_passed_in_stays_open(server: HypercornServer) -> None:
    async with httpstream.ConnectionPool() as pool:
        async with httpx.AsyncClient(transport=HTTPXTransport(pool)) as client:
            assert (await client.get(server.url("/hello"))).status_code == 200
        async with httpstream.AsyncClient(transport=pool) as ours:  # the same pool, still usable
            assert (await ours.get(server.url("/hello"))).status_code == 200
    assert server.app.connections == 1
    with pytest.raises(TypeError):
        HTTPXTransport(pool, http2=True)


# -- errors ----------------------------------------------------------------------------------------


async def test_errors_are_httpx_errors(server: HypercornServer) -> None:
    async with httpx.AsyncClient(transport=HTTPXTransport()) as client:
        with pytest.raises(httpx.ConnectError) as connect:
            await client.get(f"http://127.0.0.1:{refused_port()}/")
        assert isinstance(connect.value.__cause__, httpstream.ConnectError)
        assert connect.value.request.url.port is not None

        # httpx's per-request timeout becomes ours (the pool's read timeout is 30 s)
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url("/slow/2"), timeout=httpx.Timeout(5, read=0.2))
        async with client.stream("GET", server.url("/stall"), timeout=httpx.Timeout(5, read=0.2)) as r:
            with pytest.raises(httpx.ReadTimeout):
                async for _ in r.aiter_raw():
                    pass

        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1/")


async def test_truncated_body_is_a_remote_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()

    async with FaultServer(handler) as srv, httpx.AsyncClient(transport=HTTPXTransport()) as client:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await client.get(srv.url())
        assert isinstance(info.value.__cause__, httpstream.IncompleteBody)


async def test_pool_timeout(server: HypercornServer) -> None:
    transport = HTTPXTransport(limits=httpstream.Limits(max_connections=1))
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", server.url("/stall")):
            with pytest.raises(httpx.PoolTimeout):
                await client.get(server.url("/hello"), timeout=httpx.Timeout(5, pool=0.1))
