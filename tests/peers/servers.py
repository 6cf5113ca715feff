"""Loopback peers for the tests: hypercorn serving an ASGI app, and raw fault servers.

hypercorn runs in its own thread with its own event loop, so one server serves
the whole session while each test keeps its own loop.  The app records the
client address of every request: the number of distinct addresses is the number
of TCP connections the server accepted, which is how reuse is checked (never by
trusting the client's own stats).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import ssl
import threading
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Self
from urllib.parse import parse_qs

from hypercorn.asyncio import serve
from hypercorn.config import Config

SERVER_PORTS: set[int] = set()  # ports of servers running in this process (see conftest)
BLOCK = bytes(range(256)) * 256  # 64 KiB of a known pattern


def pattern(size: int, offset: int = 0) -> bytes:
    """The first ``size`` bytes of the body pattern, starting at ``offset``."""
    out = bytearray()
    start = offset % len(BLOCK)
    while len(out) < size:
        out += BLOCK[start : start + size - len(out)]
        start = 0
    return bytes(out)


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class App:
    """The ASGI test application."""

    def __init__(self) -> None:
        self.clients: set[tuple[str, int]] = set()
        self.requests = 0
        self.disconnects = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.clients.clear()
            self.requests = 0
            self.disconnects = 0

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self.clients)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        with self._lock:
            client = scope.get("client")
            if client:
                self.clients.add((client[0], client[1]))
            self.requests += 1
        path: str = scope["path"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        parts = path.strip("/").split("/")
        handler = getattr(self, "h_" + parts[0].replace("-", "_"), None)
        if handler is None:
            await self._send(send, 404, b"not found\n")
            return
        await handler(scope, receive, send, parts[1:], query)

    async def _send(
        self, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        hdrs = [(b"content-length", str(len(body)).encode())] + (headers or [])
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, receive: Receive) -> bytes:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        return bytes(body)

    async def h_hello(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        await self._send(send, 200, b"hello world\n", [(b"content-type", b"text/plain")])

    async def h_echo(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        body = await self._read_body(receive)
        info = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body_length": len(body),
            "body": body.decode("latin-1") if len(body) < 4096 else "",
            "http_version": scope["http_version"],
        }
        await self._send(send, 200, json.dumps(info).encode(), [(b"content-type", b"application/json")])

    async def h_upload(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """Count the request body and check it against the pattern."""
        total = 0
        ok = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if chunk and chunk != pattern(len(chunk), total):
                ok = False
            total += len(chunk)
            if not message.get("more_body"):
                break
        await self._send(send, 200, json.dumps({"received": total, "pattern_ok": ok}).encode())

    async def h_bytes(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/bytes/N: N pattern bytes with Content-Length, sent in 64 KiB pieces."""
        size = int(args[0])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(size).encode())]})
        sent = 0
        while sent < size:
            piece = min(65536, size - sent)
            await send({"type": "http.response.body", "body": pattern(piece, sent), "more_body": sent + piece < size})
            sent += piece
        if size == 0:
            await send({"type": "http.response.body", "body": b""})

    async def h_chunked(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/chunked/N: N pattern bytes with no Content-Length (chunked on HTTP/1.1)."""
        size = int(args[0])
        piece_size = int(q.get("piece", "8192"))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]})
        sent = 0
        while sent < size:
            piece = min(piece_size, size - sent)
            await send({"type": "http.response.body", "body": pattern(piece, sent), "more_body": True})
            sent += piece
        await send({"type": "http.response.body", "body": b""})

    async def h_lines(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/lines/N: N lines 'line i', chunked, split at awkward places."""
        count = int(args[0])
        data = "".join(f"line {i}\r\n" if i % 2 else f"line {i}\n" for i in range(count)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        for start in range(0, len(data), 7):
            await send({"type": "http.response.body", "body": data[start : start + 7], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def h_status(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        await self._send(send, int(args[0]), b"status\n")

    async def h_redirect(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/redirect/N[?status=S]: N hops, then /echo."""
        hops = int(args[0])
        status = int(q.get("status", "302"))
        target = f"/redirect/{hops - 1}?status={status}" if hops > 1 else "/echo"
        await self._send(send, status, b"moved\n", [(b"location", target.encode())])

    async def h_slow(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/slow/SECONDS: the head waits that long."""
        await asyncio.sleep(float(args[0]))
        await self._send(send, 200, b"slow\n")

    async def h_stall(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """/stall: head and some body, then nothing for a long time."""
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100000")]})
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        await asyncio.sleep(30)


class HypercornServer:
    """hypercorn on 127.0.0.1 in a thread of its own."""

    def __init__(
        self,
        app: App,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        alpn: tuple[str, ...] = ("http/1.1",),
        quic: bool = False,
    ) -> None:
        self.app = app
        self._alpn = alpn
        self._quic = quic
        self._certfile = certfile
        self._keyfile = keyfile
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    @property
    def scheme(self) -> str:
        return "https" if self._certfile else "http"

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        SERVER_PORTS.add(self.port)
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.keep_alive_timeout = 30
        config.accesslog = None
        config.errorlog = None
        config.loglevel = "CRITICAL"
        if self._certfile:
            config.certfile = self._certfile
            config.keyfile = self._keyfile
            config.alpn_protocols = list(self._alpn)
            if self._quic:
                # HTTP/3 on the same port number over UDP; hypercorn then adds
                # Alt-Svc: h3=":port" to its TCP responses.
                config.quic_bind = [f"127.0.0.1:{self.port}"]

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            stop = self._stop

            async def main() -> None:
                task = loop.create_task(serve(self.app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
                for _ in range(200):
                    try:
                        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                        writer.close()
                        break
                    except OSError:
                        await asyncio.sleep(0.02)
                self._ready.set()
                await task

            loop.run_until_complete(main())
            loop.close()
            # hypercorn leaves the server side of some connections to the garbage
            # collector; collect them here, quietly, not in some later test.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()

        self._thread = threading.Thread(target=run, name="hypercorn", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("hypercorn did not start")
        self.app.reset()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class LoopbackServer:
    """An asyncio listener on 127.0.0.1 that owns its connections and ends them all on exit.

    Subclasses implement ``handle(reader, writer)``.  ``accepted`` counts TCP
    connections (how reuse is checked).  A connection ends when its handler
    returns: closed gracefully (so what the handler wrote still goes out) or
    aborted, as ``graceful_close`` says; ``__aexit__`` aborts the rest and waits
    for their tasks.  Errors of a client that went away end a handler quietly.
    """

    graceful_close = False
    gone: tuple[type[BaseException], ...] = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def track(self, writer: asyncio.StreamWriter) -> None:
        """Have ``__aexit__`` abort another connection (an upstream one, say)."""
        self._writers.add(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handle(reader, writer)
        except asyncio.CancelledError:
            pass  # cancelled by __aexit__
        except self.gone:
            pass  # the client went away
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            if self.graceful_close:
                writer.close()
            else:
                writer.transport.abort()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # let the aborted transports release their sockets


class FaultServer(LoopbackServer):
    """A raw server that misbehaves as its handler says (test code only: the
    library itself never uses StreamReader/Writer)."""

    graceful_close = True

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(ssl_context)
        self._handler = handler

    def url(self, path: str = "/") -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._handler(reader, writer)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one request head (and a Content-Length body) off a raw connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return head


# -- leak accounting ------------------------------------------------------------------
def _server_side_inodes(ports: set[int]) -> set[str]:
    """Socket inodes whose local port is one of the in-process servers' ports."""
    inodes: set[str] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6", "/proc/self/net/udp", "/proc/self/net/udp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                inodes.add(fields[9])
    return inodes


def open_fds() -> int:
    """Open descriptors of this process, not counting the in-process servers' sockets.

    hypercorn runs in this process and keeps its side of a closed connection
    (CLOSE_WAIT) until its own timers fire; those are the server's, not leaks
    of the client under test.
    """
    server = _server_side_inodes(SERVER_PORTS)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in server:
            continue
        count += 1
    return count
