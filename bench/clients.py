"""Client adapters: one small uniform interface over each HTTP client.

Every adapter is an async context manager exposing:

    await a.get(url)                      -> int   full small GET, body length
    await a.download(url, chunk_size)     -> int   streamed GET, total bytes read
    await a.early_close(url, chunk_size)  -> int   streamed GET, read ONE chunk,
                                                   then close the response early
    await a.probe_protocol(url)           -> str   full small GET, the negotiated
                                                   protocol ("HTTP/1.1", "HTTP/2")
    await a.duplex_echo(url, n, size, p)  -> str   POST of n chunks of `size` bytes
                                                   (an async generator) to an echo
                                                   server while reading the echoed
                                                   body; progress in p (Duplex)

``make_adapter(client, tls=TLS(ca_path, http2=True))`` builds an adapter for the
TLS server (HTTP/2 where the client supports it, else HTTP/1.1 over TLS);
``TLS(ca_path, http2=False, http3="only")`` asks for HTTP/3 straight away and
``http3="discover"`` for HTTP/3 found through Alt-Svc (see ``TLS``).

Imports of the client libraries happen lazily inside ``make_adapter`` so that a
missing/broken library only affects its own worker subprocess.

``httpstream-baseline`` is httpstream imported from another source tree (the
worker puts that tree first on ``sys.path``, see bench/worker.py); the adapter
is the same as httpstream's.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from typing import Self

BASELINE = "httpstream-baseline"  # httpstream from another source tree (--baseline)
CLIENTS = ("httpstream", BASELINE, "httpx", "aiohttp", "niquests", "bare", "bare-aioquic")
# clients that can speak HTTP/2 (aiohttp and bare are HTTP/1.1 only)
H2_CLIENTS = ("httpstream", BASELINE, "httpx", "niquests")
# clients that speak HTTP/3 (bare-aioquic: aioquic alone, see bench/h3bare.py)
H3_CLIENTS = ("httpstream", BASELINE, "niquests", "bare-aioquic")


def is_httpstream(client: str) -> bool:
    """httpstream itself or httpstream from the baseline tree."""
    return client in ("httpstream", BASELINE)


def import_name(client: str) -> str:
    """The module a client imports (the baseline is httpstream too)."""
    return {BASELINE: "httpstream", "bare-aioquic": "aioquic"}.get(client, client)


@dataclass
class Duplex:
    """Progress of a full-duplex echo, updated by the adapter as it goes:
    bytes handed to the client as request body (``sent``), bytes of the
    response body read (``received``), and ``sent`` at the moment the
    response head arrived and when the first echoed byte arrived (None while
    not yet)."""

    sent: int = 0
    received: int = 0
    sent_at_head: int | None = None
    sent_at_first_byte: int | None = None

    def body(self, chunks: int, chunk: bytes) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            for _ in range(chunks):
                self.sent += len(chunk)
                yield chunk

        return gen()

    def got(self, n: int) -> None:
        if self.sent_at_first_byte is None and n:
            self.sent_at_first_byte = self.sent
        self.received += n


@dataclass(frozen=True)
class TLS:
    """How to reach the TLS server: the CA file that signed its certificate,
    whether to ask for HTTP/2 (ALPN h2), and HTTP/3: None (never), "only"
    (QUIC straight away, no TCP) or "discover" (TCP first; HTTP/3 once a
    response advertised it with Alt-Svc, falling back to TCP if QUIC fails)."""

    ca_path: str
    http2: bool = True
    http3: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_path)


def normalize_version(v: Any) -> str:
    """'HTTP/2', 20, HttpVersion(1, 1), ... -> 'HTTP/2' / 'HTTP/1.1'."""
    if isinstance(v, int):  # niquests: 11, 20, 30
        major, minor = divmod(v, 10)
        return f"HTTP/{major}" if major >= 2 else f"HTTP/{major}.{minor}"
    if hasattr(v, "major") and hasattr(v, "minor"):  # aiohttp HttpVersion
        return f"HTTP/{v.major}" if v.major >= 2 else f"HTTP/{v.major}.{v.minor}"
    text = str(v)
    return {"HTTP/2.0": "HTTP/2", "HTTP/3.0": "HTTP/3"}.get(text, text)


class AdapterError(RuntimeError):
    pass


def _check_status(status: Any, url: str) -> None:
    if status != 200:
        raise AdapterError(f"GET {url} -> status {status!r}")


class Adapter:
    name = "?"

    def __init__(self, tls: TLS | None = None) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.tls = tls

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        try:
            await self.open()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.__aexit__(*exc)

    async def open(self) -> None:
        raise NotImplementedError

    async def get(self, url: str) -> int:
        raise NotImplementedError

    async def download(self, url: str, chunk_size: int) -> int:
        raise NotImplementedError

    async def early_close(self, url: str, chunk_size: int) -> int:
        raise NotImplementedError

    async def probe_protocol(self, url: str) -> str:
        raise NotImplementedError

    async def duplex_echo(self, url: str, chunks: int, chunk_size: int, progress: Duplex) -> str:
        """POST ``chunks`` chunks of ``chunk_size`` bytes as a streamed body
        (an async generator) to an echo server, reading the echoed response
        body at the same time; returns the protocol of the response."""
        raise AdapterError(f"{self.name} does not run the duplex echo")

    def pool_info(self) -> dict[str, Any]:
        """Client-side view of the pool, where the library exposes one."""
        return {}


# ---------------------------------------------------------------------------
# httpx and httpstream share the same API shape.
# ---------------------------------------------------------------------------
class HttpxStyleAdapter(Adapter):
    """``AsyncClient`` / ``client.get`` / ``client.stream(...).aiter_bytes``."""

    def __init__(self, module: Any, name: str, tls: TLS | None = None) -> None:
        super().__init__(tls)
        self.mod = module
        self.name = name
        self.client: Any = None

    async def open(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.tls is not None:
            kwargs["http2"] = self.tls.http2
            # httpstream takes a CA path; httpx 0.28 deprecates str for verify=
            kwargs["verify"] = self.tls.ca_path if is_httpstream(self.name) else self.tls.ssl_context()
            if self.tls.http3 is not None:
                if not is_httpstream(self.name):
                    raise AdapterError(f"{self.name} does not speak HTTP/3")
                kwargs["http3"] = "only" if self.tls.http3 == "only" else True
        self.client = await self._stack.enter_async_context(self.mod.AsyncClient(**kwargs))

    async def probe_protocol(self, url: str) -> str:
        r = await self.client.get(url)
        _check_status(self._status(r), url)
        return normalize_version(r.http_version)

    def pool_info(self) -> dict[str, Any]:
        stats = getattr(getattr(self.client, "transport", None), "stats", None)
        if stats is None:  # httpx has no public pool statistics
            return {}
        st = stats()
        return {f: getattr(st, f) for f in getattr(st, "__dataclass_fields__", ())}

    @staticmethod
    def _status(r: Any) -> Any:
        return getattr(r, "status_code", getattr(r, "status", None))

    async def get(self, url: str) -> int:
        r = await self.client.get(url)
        _check_status(self._status(r), url)
        body = r.content
        if inspect.isawaitable(body):  # tolerate an awaitable .content
            body = await body
        return len(body)

    async def download(self, url: str, chunk_size: int) -> int:
        n = 0
        async with self.client.stream("GET", url) as r:
            _check_status(self._status(r), url)
            async for chunk in r.aiter_bytes(chunk_size):
                n += len(chunk)
        return n

    async def early_close(self, url: str, chunk_size: int) -> int:
        n = 0
        async with self.client.stream("GET", url) as r:
            _check_status(self._status(r), url)
            async for chunk in r.aiter_bytes(chunk_size):
                n += len(chunk)
                break
        return n

    async def duplex_echo(self, url: str, chunks: int, chunk_size: int, progress: Duplex) -> str:
        body = progress.body(chunks, b"x" * chunk_size)
        async with self.client.stream("POST", url, content=body) as r:
            progress.sent_at_head = progress.sent
            _check_status(self._status(r), url)
            got = progress.got
            async for chunk in r.aiter_raw():
                got(len(chunk))
            return normalize_version(r.http_version)


# ---------------------------------------------------------------------------
# aiohttp
# ---------------------------------------------------------------------------
class AiohttpAdapter(Adapter):
    name = "aiohttp"

    def __init__(self, module: Any, tls: TLS | None = None) -> None:
        super().__init__(tls)
        self.mod = module
        self.session: Any = None

    async def open(self) -> None:
        # aiohttp speaks HTTP/1.1 only: over TLS it offers no ALPN and nginx
        # answers in HTTP/1.1 (one request per connection at a time).
        connector = None if self.tls is None else self.mod.TCPConnector(ssl=self.tls.ssl_context())
        self.session = await self._stack.enter_async_context(self.mod.ClientSession(connector=connector))

    async def probe_protocol(self, url: str) -> str:
        async with self.session.get(url) as r:
            _check_status(r.status, url)
            await r.read()
            return normalize_version(r.version)

    async def get(self, url: str) -> int:
        async with self.session.get(url) as r:
            _check_status(r.status, url)
            return len(await r.read())

    async def download(self, url: str, chunk_size: int) -> int:
        n = 0
        async with self.session.get(url) as r:
            _check_status(r.status, url)
            async for chunk in r.content.iter_chunked(chunk_size):
                n += len(chunk)
        return n

    async def early_close(self, url: str, chunk_size: int) -> int:
        n = 0
        async with self.session.get(url) as r:
            _check_status(r.status, url)
            async for chunk in r.content.iter_chunked(chunk_size):
                n += len(chunk)
                break
        return n

    async def duplex_echo(self, url: str, chunks: int, chunk_size: int, progress: Duplex) -> str:
        # aiohttp writes the request body in a task of its own and hands
        # back the response at its head (HTTP/1.1 only)
        body = progress.body(chunks, b"x" * chunk_size)
        async with self.session.post(url, data=body) as r:
            progress.sent_at_head = progress.sent
            _check_status(r.status, url)
            got = progress.got
            async for chunk in r.content.iter_any():
                got(len(chunk))
            return normalize_version(r.version)


# ---------------------------------------------------------------------------
# niquests
# ---------------------------------------------------------------------------
class NiquestsAdapter(Adapter):
    name = "niquests"

    def __init__(self, module: Any, tls: TLS | None = None) -> None:
        super().__init__(tls)
        self.mod = module
        self.session: Any = None
        self.kw: dict[str, Any] = {}
        # HTTP/3 "only": niquests' QUIC cache ((host, port) -> alternative
        # authority), preset for each origin before its first request, so that
        # niquests opens QUIC (qh3) straight away instead of TCP first
        self.quic_cache: dict[tuple[str, int], tuple[str, int]] | None = None

    def _preset_h3(self, url: str) -> None:
        if self.quic_cache is not None:
            u = urlsplit(url)
            origin = (u.hostname or "", u.port or 443)
            self.quic_cache.setdefault(origin, origin)

    async def open(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.tls is not None and self.tls.http3 == "only":
            self.quic_cache = {}
            kwargs["quic_cache_layer"] = self.quic_cache
        # http3 "discover": niquests' default session learns HTTP/3 from Alt-Svc
        if self.tls is not None:
            # niquests offers h2 by ALPN by default.  The CA goes with each
            # request: like requests, niquests lets REQUESTS_CA_BUNDLE /
            # CURL_CA_BUNDLE from the environment override the session's
            # verify=<path> (the handshake then fails with
            # CERTIFICATE_VERIFY_FAILED); a per-request verify= wins.
            self.kw["verify"] = self.tls.ca_path
            if not self.tls.http2:
                kwargs["disable_http2"] = True
        self.session = await self._stack.enter_async_context(self.mod.AsyncSession(**kwargs))

    async def probe_protocol(self, url: str) -> str:
        self._preset_h3(url)
        r = await self.session.get(url, **self.kw)
        _check_status(r.status_code, url)
        return normalize_version(r.http_version)

    async def get(self, url: str) -> int:
        r = await self.session.get(url, **self.kw)
        _check_status(r.status_code, url)
        body = r.content
        if inspect.isawaitable(body):
            body = await body
        return len(body)

    async def download(self, url: str, chunk_size: int) -> int:
        self._preset_h3(url)
        n = 0
        r = await self.session.get(url, stream=True, **self.kw)
        async with r:
            _check_status(r.status_code, url)
            async for chunk in await r.iter_content(chunk_size):
                n += len(chunk)
        return n

    async def early_close(self, url: str, chunk_size: int) -> int:
        n = 0
        r = await self.session.get(url, stream=True, **self.kw)
        async with r:
            _check_status(r.status_code, url)
            async for chunk in await r.iter_content(chunk_size):
                n += len(chunk)
                break
        return n


# ---------------------------------------------------------------------------
# bare: hand-written HTTP/1.1 over non-blocking sockets, no HTTP library.
# Assumes a well-behaved server sending Content-Length (nginx does here).
# ---------------------------------------------------------------------------
class _BareConn:
    __slots__ = ("buf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""


class BareAdapter(Adapter):
    """Minimal keep-alive HTTP/1.1 client: a stack of idle sockets."""

    name = "bare"

    def __init__(self) -> None:
        super().__init__()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.idle: list[_BareConn] = []
        self.all: list[_BareConn] = []
        self._req_cache: dict[str, tuple[tuple[str, int], bytes]] = {}

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stack.callback(self._close_all)

    def _close_all(self) -> None:
        for c in self.all:
            c.sock.close()
        self.all.clear()
        self.idle.clear()

    def _request(self, url: str) -> tuple[tuple[str, int], bytes]:
        cached = self._req_cache.get(url)
        if cached is None:
            u = urlsplit(url)
            host, port = u.hostname or "127.0.0.1", u.port or 80
            path = u.path or "/"
            if u.query:
                path += "?" + u.query
            raw = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("ascii")
            cached = self._req_cache[url] = ((host, port), raw)
        return cached

    async def _acquire(self, addr: tuple[str, int]) -> _BareConn:
        if self.idle:
            return self.idle.pop()
        assert self.loop is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self.loop.sock_connect(sock, addr)
        except BaseException:
            sock.close()
            raise
        conn = _BareConn(sock)
        self.all.append(conn)
        return conn

    def _discard(self, conn: _BareConn) -> None:
        conn.sock.close()
        if conn in self.all:
            self.all.remove(conn)

    async def _head(self, conn: _BareConn, raw: bytes, url: str) -> int:
        """Send the request, read the response head; return Content-Length.

        On return ``conn.buf`` holds the body bytes already received.
        """
        assert self.loop is not None
        loop, sock = self.loop, conn.sock
        await loop.sock_sendall(sock, raw)
        buf = conn.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            data = await loop.sock_recv(sock, 65536)
            if not data:
                raise AdapterError("connection closed while reading head")
            buf += data
        head = buf[:end]
        conn.buf = buf[end + 4 :]
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        _check_status(status, url)
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return int(value)
        raise AdapterError("bare client needs Content-Length")

    async def get(self, url: str) -> int:
        assert self.loop is not None
        addr, raw = self._request(url)
        conn = await self._acquire(addr)
        try:
            length = await self._head(conn, raw, url)
            buf = conn.buf
            while len(buf) < length:
                data = await self.loop.sock_recv(conn.sock, 65536)
                if not data:
                    raise AdapterError("connection closed while reading body")
                buf += data
            conn.buf = buf[length:]
        except BaseException:
            self._discard(conn)
            raise
        self.idle.append(conn)
        return length

    async def download(self, url: str, chunk_size: int) -> int:
        assert self.loop is not None
        addr, raw = self._request(url)
        conn = await self._acquire(addr)
        try:
            length = await self._head(conn, raw, url)
            got = min(len(conn.buf), length)
            conn.buf = conn.buf[length:]  # leftover beyond the body (none expected)
            mem = bytearray(chunk_size)
            view = memoryview(mem)
            sock, recv_into = conn.sock, self.loop.sock_recv_into
            while got < length:
                want = min(chunk_size, length - got)
                n = await recv_into(sock, view[:want])
                if not n:
                    raise AdapterError("connection closed while reading body")
                got += n
        except BaseException:
            self._discard(conn)
            raise
        self.idle.append(conn)
        return got

    async def early_close(self, url: str, chunk_size: int) -> int:
        assert self.loop is not None
        addr, raw = self._request(url)
        conn = await self._acquire(addr)
        try:
            length = await self._head(conn, raw, url)
            got = len(conn.buf)
            if not got and length:
                got = len(await self.loop.sock_recv(conn.sock, chunk_size))
        finally:
            # Body not fully read: the connection cannot be reused.
            self._discard(conn)
        return min(got, chunk_size)


# ---------------------------------------------------------------------------
# bare-aioquic: HTTP/3 on aioquic alone (bench/h3bare.py), one QUIC connection.
# ---------------------------------------------------------------------------
class BareH3Adapter(Adapter):
    name = "bare-aioquic"

    def __init__(self, tls: TLS) -> None:
        super().__init__(tls)
        self.h3bare = importlib.import_module("bench.h3bare")
        self._conn: asyncio.Future[Any] | None = None
        self._req_cache: dict[str, tuple[bytes, bytes]] = {}

    async def open(self) -> None:
        pass

    async def _connection(self, url: str) -> Any:
        if self._conn is None:  # the first request connects; the others wait for it
            self._conn = asyncio.get_running_loop().create_future()
            u = urlsplit(url)
            assert self.tls is not None
            try:
                proto = await self._stack.enter_async_context(
                    self.h3bare.connect(
                        u.hostname or "127.0.0.1",
                        u.port or 443,
                        configuration=self.h3bare.configuration(self.tls.ca_path),
                        create_protocol=self.h3bare.BareH3Protocol,
                    )
                )
            except BaseException as exc:
                self._conn.set_exception(exc)
                self._conn.exception()
                raise
            self._conn.set_result(proto)
        return await self._conn

    async def _request(self, url: str) -> Any:
        target = self._req_cache.get(url)
        if target is None:
            u = urlsplit(url)
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            target = self._req_cache[url] = (u.netloc.encode("ascii"), path.encode("ascii"))
        proto = self._conn.result() if self._conn is not None and self._conn.done() else await self._connection(url)
        status, stream = await proto.request(*target)
        _check_status(status, url)
        return stream

    async def probe_protocol(self, url: str) -> str:
        stream = await self._request(url)
        await stream.read_all()
        return "HTTP/3"  # nothing else is spoken (ALPN h3 only)

    async def get(self, url: str) -> int:
        stream = await self._request(url)
        return len(await stream.read_all())

    async def download(self, url: str, chunk_size: int) -> int:
        stream = await self._request(url)
        n = 0
        read = stream.read
        while chunk := await read(chunk_size):
            n += len(chunk)
        return n

    def pool_info(self) -> dict[str, Any]:
        return {"connections": 0 if self._conn is None else 1}


# ---------------------------------------------------------------------------
def library_version(client: str) -> str:
    if client == "bare":
        return "-"
    mod = importlib.import_module(import_name(client))
    return str(getattr(mod, "__version__", "?"))


def probe(client: str) -> str:
    """Import the library and build (not open) its adapter; return its version."""
    make_adapter(client, TLS("-", http2=False, http3="only") if client == "bare-aioquic" else None)
    return library_version(client)


def make_adapter(client: str, tls: TLS | None = None) -> Adapter:
    """Import the client library and build its adapter (may raise ImportError).

    ``tls``: talk to the TLS server (see ``TLS``) instead of plain HTTP."""
    if client == "bare":
        if tls is not None:
            raise ValueError("the bare client speaks plain HTTP/1.1 only")
        return BareAdapter()
    if client == "bare-aioquic":
        if tls is None or tls.http3 != "only":
            raise ValueError("the bare-aioquic client speaks HTTP/3 only (TLS(..., http3='only'))")
        return BareH3Adapter(tls)
    if client in ("httpx", "httpstream", BASELINE):
        mod = importlib.import_module(import_name(client))
        if not hasattr(mod, "AsyncClient"):
            # e.g. a package still being written (no __init__ / no export yet)
            raise ImportError(f"{client} does not export AsyncClient (yet)")
        if client == "httpx" and tls is not None and tls.http2:
            importlib.import_module("h2")  # httpx[http2]; ImportError -> n/a
        return HttpxStyleAdapter(mod, client, tls)
    if client == "aiohttp":
        return AiohttpAdapter(importlib.import_module("aiohttp"), tls)
    if client == "niquests":
        return NiquestsAdapter(importlib.import_module("niquests"), tls)
    raise ValueError(f"unknown client {client!r}; choose from {', '.join(CLIENTS)}")
