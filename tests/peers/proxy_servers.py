"""Loopback proxies for tests/test_proxy.py: an HTTP proxy (forwarding and CONNECT) and SOCKS5.

Both run on the test's own event loop, bound to 127.0.0.1, and record what they
were asked (request lines, ``Proxy-Authorization``, CONNECT targets, SOCKS
address types and hosts) so tests check what went over the wire rather than the
client's own account.  ``accepted`` counts TCP connections, which is how reuse
through a proxy is checked.

h11 parses both sides of a forwarded exchange (test code may use it directly;
the library keeps it inside ``_h1``).  Tunnels are plain byte pipes.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from .servers import LoopbackServer

__all__ = ["HTTPProxy", "Seen", "Socks5Proxy"]


@dataclass
class Seen:
    """One request as the HTTP proxy received it."""

    request_line: str
    proxy_authorization: str | None
    headers: list[tuple[str, str]]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
            continue
        return event


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def _splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter], b: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    """Copy bytes both ways until either side ends; then both are closed."""
    tasks = {asyncio.ensure_future(_pipe(a[0], b[1])), asyncio.ensure_future(_pipe(b[0], a[1]))}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()
        a[1].transport.abort()
        b[1].transport.abort()


class _Server(LoopbackServer):
    """What both proxies add to the loopback listener: their URL, and upstream
    connections that are ended with theirs."""

    scheme = "http"
    gone = (*LoopbackServer.gone, h11.ProtocolError)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        self.track(writer)
        return reader, writer


class HTTPProxy(_Server):
    """An HTTP proxy: forwards absolute-form requests, tunnels CONNECT.

    ``auth=(user, password)``: Basic proxy authentication, 407 with
    ``Proxy-Authenticate`` when missing or wrong.  ``refuse_connect``: CONNECT
    gets 403.  ``stall``: requests are read and never answered; the proxy
    waits for the client to hang up and then sets ``hung_up`` (so a test can
    tell that a client gave its socket up rather than left it open).  With
    ``ssl_context`` it is an HTTPS proxy (TLS to the proxy itself).
    """

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        refuse_connect: bool = False,
        stall: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(ssl_context)
        self.scheme = "https" if ssl_context is not None else "http"
        self._auth = None if auth is None else basic(*auth)
        self._refuse_connect = refuse_connect
        self._stall = stall
        self.seen: list[Seen] = []
        self.request_seen = asyncio.Event()
        self.hung_up = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        down = h11.Connection(h11.SERVER)
        upstreams: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]] = {}
        try:
            while True:
                event = await _next_event(down, reader)
                if not isinstance(event, h11.Request):
                    return
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
                authorization = next((v for k, v in headers if k.lower() == "proxy-authorization"), None)
                line = f"{event.method.decode()} {event.target.decode()} HTTP/{event.http_version.decode()}"
                self.seen.append(Seen(line, authorization, headers))
                self.request_seen.set()
                body = b""
                while not isinstance(end := await _next_event(down, reader), h11.EndOfMessage):
                    assert isinstance(end, h11.Data)
                    body += end.data
                if self._stall:
                    await reader.read()  # until the client hangs up
                    self.hung_up.set()
                    return
                if self._auth is not None and authorization != self._auth:
                    writer.write(
                        down.send(
                            h11.Response(
                                status_code=407,
                                headers=[("Proxy-Authenticate", 'Basic realm="test proxy"'), ("Content-Length", "0")],
                            )
                        )
                        or b""
                    )
                    writer.write(down.send(h11.EndOfMessage()) or b"")
                    if event.method == b"CONNECT":
                        return
                    down.start_next_cycle()
                    continue
                if event.method == b"CONNECT":
                    await self._tunnel(down, reader, writer, event.target.decode())
                    return
                await self._forward(down, writer, event, body, upstreams)
                if down.our_state is not h11.DONE or down.their_state is not h11.DONE:
                    return
                down.start_next_cycle()
        finally:
            for _, up_writer, _ in upstreams.values():
                up_writer.transport.abort()

    async def _tunnel(
        self, down: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
    ) -> None:
        if self._refuse_connect:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden")
            return
        host, _, port = target.rpartition(":")
        try:
            up = await self._open(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        early, _ = down.trailing_data
        if early:
            up[1].write(early)
        await _splice((reader, writer), up)

    async def _forward(
        self,
        down: h11.Connection,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
        upstreams: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]],
    ) -> None:
        url = urlsplit(request.target.decode())
        assert url.hostname is not None
        key = (url.hostname, url.port or 80)
        if key not in upstreams:
            up_reader, up_writer = await self._open(*key)
            upstreams[key] = (up_reader, up_writer, h11.Connection(h11.CLIENT))
        up_reader, up_writer, up = upstreams[key]
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        hop = {b"proxy-authorization", b"proxy-connection", b"connection", b"keep-alive"}
        headers = [(k, v) for k, v in request.headers if k.lower() not in hop]
        up_writer.write(up.send(h11.Request(method=request.method, target=path, headers=headers)) or b"")
        if body:
            up_writer.write(up.send(h11.Data(data=body)) or b"")
        up_writer.write(up.send(h11.EndOfMessage()) or b"")
        while True:
            response = await _next_event(up, up_reader)
            if isinstance(response, h11.Response):
                break
        reply_headers = [(k, v) for k, v in response.headers if k.lower() not in hop]
        writer.write(
            down.send(h11.Response(status_code=response.status_code, headers=reply_headers, reason=response.reason))
            or b""
        )
        while True:
            event = await _next_event(up, up_reader)
            if isinstance(event, h11.Data):
                writer.write(down.send(h11.Data(data=event.data)) or b"")
                await writer.drain()
            elif isinstance(event, h11.EndOfMessage):
                writer.write(down.send(h11.EndOfMessage()) or b"")
                break
            else:
                raise ConnectionError("upstream went away")
        if up.our_state is h11.DONE and up.their_state is h11.DONE:
            up.start_next_cycle()
        else:
            up_writer.transport.abort()
            del upstreams[key]


class Socks5Proxy(_Server):
    """A minimal SOCKS5 server (RFC 1928): CONNECT only; no-auth or username/password (RFC 1929).

    ``seen`` records (address type, host, port) of every CONNECT request, so a
    test can tell a domain name (type 3, remote DNS) from an address (1 or 4).
    ``reply``: a non-zero code refuses every CONNECT with it.
    """

    def __init__(self, *, auth: tuple[str, str] | None = None, reply: int = 0) -> None:
        super().__init__()
        self.scheme = "socks5"
        self._auth = auth
        self._reply = reply
        self.seen: list[tuple[int, str, int]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != 5:
            return
        wanted = 2 if self._auth is not None else 0
        if wanted not in methods:
            writer.write(b"\x05\xff")
            return
        writer.write(bytes([5, wanted]))
        if self._auth is not None:
            _, size = await reader.readexactly(2)
            user = (await reader.readexactly(size)).decode()
            (size,) = await reader.readexactly(1)
            password = (await reader.readexactly(size)).decode()
            ok = (user, password) == self._auth
            writer.write(b"\x01\x00" if ok else b"\x01\x01")
            if not ok:
                return
        _, command, _, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = ".".join(str(b) for b in await reader.readexactly(4))
        elif atyp == 3:
            (size,) = await reader.readexactly(1)
            host = (await reader.readexactly(size)).decode()
        else:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        port = int.from_bytes(await reader.readexactly(2), "big")
        self.seen.append((atyp, host, port))
        bound = b"\x00\x01" + bytes(4) + bytes(2)
        if command != 1 or self._reply:
            writer.write(bytes([5, self._reply or 7]) + bound)
            return
        try:
            up = await self._open(host, port)
        except OSError:
            writer.write(b"\x05\x05" + bound)
            return
        writer.write(b"\x05\x00" + bound)
        await _splice((reader, writer), up)
