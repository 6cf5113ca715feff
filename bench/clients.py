"""Client adapters: one small uniform interface over each HTTP client.

Every adapter is an async context manager exposing:

    await a.get(url)                      -> int   full small GET, body length
    await a.download(url, chunk_size)     -> int   streamed GET, total bytes read
    await a.early_close(url, chunk_size)  -> int   streamed GET, read ONE chunk,
                                                   then close the response early

Imports of the client libraries happen lazily inside ``make_adapter`` so that a
missing/broken library only affects its own worker subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from typing import Self

CLIENTS = ("httpstream", "httpx", "aiohttp", "niquests", "bare")


class AdapterError(RuntimeError):
    pass


def _check_status(status: Any, url: str) -> None:
    if status != 200:
        raise AdapterError(f"GET {url} -> status {status!r}")


class Adapter:
    name = "?"

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()

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


# ---------------------------------------------------------------------------
# httpx and httpstream share the same API shape.
# ---------------------------------------------------------------------------
class HttpxStyleAdapter(Adapter):
    """``AsyncClient`` / ``client.get`` / ``client.stream(...).aiter_bytes``."""

    def __init__(self, module: Any, name: str) -> None:
        super().__init__()
        self.mod = module
        self.name = name
        self.client: Any = None

    async def open(self) -> None:
        self.client = await self._stack.enter_async_context(self.mod.AsyncClient())

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


# ---------------------------------------------------------------------------
# aiohttp
# ---------------------------------------------------------------------------
class AiohttpAdapter(Adapter):
    name = "aiohttp"

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.mod = module
        self.session: Any = None

    async def open(self) -> None:
        self.session = await self._stack.enter_async_context(self.mod.ClientSession())

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


# ---------------------------------------------------------------------------
# niquests
# ---------------------------------------------------------------------------
class NiquestsAdapter(Adapter):
    name = "niquests"

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.mod = module
        self.session: Any = None

    async def open(self) -> None:
        self.session = await self._stack.enter_async_context(self.mod.AsyncSession())

    async def get(self, url: str) -> int:
        r = await self.session.get(url)
        _check_status(r.status_code, url)
        body = r.content
        if inspect.isawaitable(body):
            body = await body
        return len(body)

    async def download(self, url: str, chunk_size: int) -> int:
        n = 0
        r = await self.session.get(url, stream=True)
        async with r:
            _check_status(r.status_code, url)
            async for chunk in await r.iter_content(chunk_size):
                n += len(chunk)
        return n

    async def early_close(self, url: str, chunk_size: int) -> int:
        n = 0
        r = await self.session.get(url, stream=True)
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
def library_version(client: str) -> str:
    if client == "bare":
        return "-"
    mod = importlib.import_module(client)
    return str(getattr(mod, "__version__", "?"))


def probe(client: str) -> str:
    """Import the library and build (not open) its adapter; return its version."""
    make_adapter(client)
    return library_version(client)


def make_adapter(client: str) -> Adapter:
    """Import the client library and build its adapter (may raise ImportError)."""
    if client == "bare":
        return BareAdapter()
    if client in ("httpx", "httpstream"):
        mod = importlib.import_module(client)
        if not hasattr(mod, "AsyncClient"):
            # e.g. a package still being written (no __init__ / no export yet)
            raise ImportError(f"{client} does not export AsyncClient (yet)")
        return HttpxStyleAdapter(mod, client)
    if client == "aiohttp":
        return AiohttpAdapter(importlib.import_module("aiohttp"))
    if client == "niquests":
        return NiquestsAdapter(importlib.import_module("niquests"))
    raise ValueError(f"unknown client {client!r}; choose from {', '.join(CLIENTS)}")
