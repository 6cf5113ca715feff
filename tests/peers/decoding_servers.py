"""Loopback peers for the decoding tests: content codings, Server-Sent Events, NDJSON.

``DecodingApp`` extends the suite's ASGI ``App`` (same routing: ``/name/...`` ->
``h_name``) with endpoints that send encoded bodies in small chunks, corrupt or
truncated ones, decompression bombs, paced event streams gated by the test, and
an EventSource peer that resumes from ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import threading
import zlib
from collections.abc import Iterator

import brotli
import zstandard

from .servers import App, HypercornServer, Receive, Scope, Send

GIB = 1024 * 1024 * 1024


def payload(size: int) -> bytes:
    """A compressible but not trivial body: numbered lines with varying text."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += b"%07d the quick brown fox %x jumps over %d lazy dogs\n" % (i, i * 7919, i % 13)
        i += 1
    return bytes(out[:size])


def encode(body: bytes, codings: list[str]) -> bytes:
    """Apply the codings in the order listed (as a server does for Content-Encoding: a, b).

    ``deflate-raw`` is raw deflate (RFC 1951) sent as ``deflate``.
    """
    for coding in codings:
        if coding == "gzip":
            body = gzip.compress(body, mtime=0)  # reproducible: tests compare raw bytes
        elif coding == "deflate":
            body = zlib.compress(body)
        elif coding == "deflate-raw":
            obj = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            body = obj.compress(body) + obj.flush()
        elif coding == "br":
            body = brotli.compress(body, quality=5)
        elif coding == "zstd":
            body = zstandard.ZstdCompressor(write_checksum=True).compress(body)
        elif coding != "identity" and not coding.startswith("x-unknown"):
            raise ValueError(coding)
    return body


def header_value(codings: list[str]) -> bytes:
    return ", ".join(c.replace("deflate-raw", "deflate") for c in codings).encode()


def _zeros(size: int) -> Iterator[bytes]:
    block = bytes(1024 * 1024)
    for _ in range(size // len(block)):
        yield block


@functools.cache
def bomb(kind: str) -> bytes:
    """1 GiB of zeros, compressed: ``br`` (about 800 bytes), ``zstd`` (32 KiB), ``gzip-gzip`` (2 KiB)."""
    if kind == "br":
        compressor = brotli.Compressor(quality=5, lgwin=24)
        return b"".join(compressor.process(block) for block in _zeros(GIB)) + compressor.finish()
    if kind == "zstd":
        zobj = zstandard.ZstdCompressor(level=1).compressobj()
        return b"".join(zobj.compress(block) for block in _zeros(GIB)) + zobj.flush()
    if kind == "gzip-gzip":
        gobj = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        once = b"".join(gobj.compress(block) for block in _zeros(GIB)) + gobj.flush()
        return gzip.compress(once, 9)
    raise ValueError(kind)


def bomb_header(kind: str) -> bytes:
    return b"gzip, gzip" if kind == "gzip-gzip" else kind.encode()


def sse_headers(extra: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store"), *(extra or [])]


class DecodingApp(App):
    """The ASGI app of the decoding tests (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[threading.Event] = []
        self.sent = 0  # events sent by /sse-slow so far
        self.es_requests: list[dict[str, str]] = []
        self.disconnected = threading.Event()

    def reset(self) -> None:
        super().reset()
        self.gates = []
        self.sent = 0
        self.es_requests = []
        self.disconnected = threading.Event()

    async def _stream(
        self, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], chunk: int
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for start in range(0, len(body), chunk):
            await send({"type": "http.response.body", "body": body[start : start + chunk], "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def h_encoded(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """``?ce=gzip,br&size=N&chunk=K&mode=ok|corrupt|truncated&cl=1``: payload(N) encoded."""
        codings = [c.strip() for c in q.get("ce", "gzip").split(",")]
        body = encode(payload(int(q.get("size", "100000"))), codings)
        mode = q.get("mode", "ok")
        if mode == "corrupt":
            middle = len(body) // 2
            body = body[:middle] + bytes(b ^ 0x55 for b in body[middle : middle + 16]) + body[middle + 16 :]
        elif mode == "truncated":
            body = body[: len(body) - 8]
        headers = [(b"content-encoding", header_value(codings)), (b"content-type", b"text/plain; charset=utf-8")]
        if q.get("cl"):
            headers.append((b"content-length", str(len(body)).encode()))
        await self._stream(send, 200, body, headers, int(q.get("chunk", "1000")))

    async def h_bomb(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        body = bomb(args[0])
        await self._send(send, 200, body, [(b"content-encoding", bomb_header(args[0]))])

    async def h_sse_slow(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """Event i, then wait for ``gates[i]`` (set by the test once it has event i); ``?gzip=1`` compresses."""
        count = len(self.gates)
        headers = sse_headers()
        compressor = None
        if q.get("gzip"):
            compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        loop = asyncio.get_running_loop()
        for i in range(count):
            data = b"id: %d\nevent: tick\ndata: event %d\n\n" % (i, i)
            if compressor is not None:
                data = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
            with self._lock:
                self.sent += 1
            await send({"type": "http.response.body", "body": data, "more_body": True})
            if not await loop.run_in_executor(None, self.gates[i].wait, 10):
                break
        tail = compressor.flush() if compressor is not None else b""
        await send({"type": "http.response.body", "body": tail})

    async def h_ndjson(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """Five NDJSON lines (one blank line between 2 and 3) in 7-byte chunks; ``?bad=N`` spoils line N."""
        lines = [b'{"n": 1}', b'{"n": 2, "s": "caf\xc3\xa9"}', b"", b"[3, 3.5]", b'"four"', b"null"]
        bad = int(q.get("bad", "0"))
        if bad:
            lines[bad - 1] = b'{"n": oops}'
        body = b"\n".join(lines) + b"\n"
        await self._stream(send, 200, body, [(b"content-type", b"application/x-ndjson")], 7)

    async def h_es(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """EventSource peer: events 1-2 and close; from Last-Event-ID 2, event 3 and close; then 204."""
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.es_requests.append(headers)
        last = headers.get("last-event-id")
        if last is None:
            body = b"retry: 50\nid: 1\ndata: one\n\nid: 2\ndata: two\n\n"
        elif last == "2":
            body = b": resumed\nid: 3\nevent: last\ndata: three\n\n"
        else:
            await self._send(send, 204, b"")
            return
        await self._stream(send, 200, body, sse_headers(), 16)

    async def h_es_status(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        self.es_requests.append({})
        ctype = q.get("type", "text/event-stream").encode()
        await self._send(send, int(args[0]), b"data: x\n\n", [(b"content-type", ctype)])

    async def h_es_empty(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """A stream that sets a 1 ms retry and closes without an event, every time."""
        self.es_requests.append({})
        await self._send(send, 200, b"retry: 1\n\n", sse_headers())

    async def h_es_hold(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        """One event, then wait for the client to go away (recorded in ``disconnected``)."""
        await send({"type": "http.response.start", "status": 200, "headers": sse_headers()})
        await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected.set()


def start_server() -> HypercornServer:
    server = HypercornServer(DecodingApp())
    server.start()
    return server
