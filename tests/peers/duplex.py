"""Peers for full-duplex streaming, WebSocket, 103 Early Hints and request trailers.

``DuplexApp`` is an ASGI app for hypercorn (run it with ``servers.HypercornServer``):

``/echo``
    The response head goes out at once (200, no Content-Length: chunked on
    HTTP/1.1), then every request body chunk is echoed back as it arrives, so a
    client can send a chunk, read it back, and only then send the next.
``/ws``
    WebSocket echo (text and bytes).  hypercorn accepts it over HTTP/1.1 Upgrade
    (101), HTTP/2 extended CONNECT (RFC 8441, 200) and HTTP/3 extended CONNECT
    (RFC 9220, 200).
``/early-hints``
    A 103 (``Link: </style.css>; rel=preload; as=style``) and then a 200, where
    hypercorn can: only over HTTP/2 and HTTP/3 (it ignores 103 on HTTP/1.1; use
    ``EarlyHintsServer`` there).  The body says ``sent`` or ``unsupported``.
``/upload-then-413``
    413 at once, the request body left unread.

hypercorn drops request trailers on every version, so these are purpose-built
servers, each an async context manager on 127.0.0.1 in the test's own loop:

``TrailerServerH1``
    h11; records each request (``requests``: ``RecordedRequest``) with its
    chunked trailers and answers 200 with them as JSON.
``TrailerServerH2``
    h2; h2c by prior knowledge, or TLS (ALPN h2) given an SSLContext; same
    recording and JSON answer from the trailing HEADERS frame.  Path
    ``/early-hints`` gets a 103 before the 200.
``EarlyHintsServer``
    raw HTTP/1.1: ``hints`` 103 responses, then a 200 with a Content-Length body.

Every wait is bounded by ``idle_timeout``; ``__aexit__`` aborts what is left.

hypercorn 0.18 pitfalls, seen here: over HTTP/2 any DATA frame (even an empty
END_STREAM one) on a stream it has already finished raises KeyError
(protocol/h2.py:259) and drops the whole connection without GOAWAY: after
``/upload-then-413``, or after a WebSocket close (hypercorn never ends that
stream; end it with RST_STREAM).  Over HTTP/3 a request trailer HEADERS frame
raises UnboundLocalError (protocol/h3.py:56-100) and kills its QUIC listener
for good, so never send request trailers to a shared h3 server.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11

from .servers import LoopbackServer

__all__ = [
    "EARLY_HINT_LINK",
    "DuplexApp",
    "EarlyHintsServer",
    "RecordedRequest",
    "TrailerServerH1",
    "TrailerServerH2",
]

EARLY_HINT_LINK = b"</style.css>; rel=preload; as=style"

Scope = dict[str, Any]


class DuplexApp:
    """The ASGI app (see the module docstring).  Thread-safe counters, as hypercorn runs in its own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.websockets = 0
        self.ws_messages = 0
        self.early_hints_sent = 0
        self.echo_chunks = 0
        self.disconnects = 0

    def reset(self) -> None:
        with self._lock:
            self.requests = self.websockets = self.ws_messages = 0
            self.early_hints_sent = self.echo_chunks = self.disconnects = 0

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        self._count("requests")
        path = scope["path"]
        if path == "/echo":
            await self._echo(scope, receive, send)
        elif path == "/early-hints":
            await self._early_hints(scope, receive, send)
        elif path == "/upload-then-413":
            await self._respond(send, 413, b"too large\n")
        else:
            await self._respond(send, 404, b"not found\n")

    async def _respond(
        self, send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        hdrs = [(b"content-length", str(len(body)).encode()), *(headers or [])]
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})

    async def _echo(self, scope: Scope, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"x-http-version", scope["http_version"].encode()),
                ],
            }
        )
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._count("disconnects")
                return
            body = message.get("body", b"")
            if body:
                self._count("echo_chunks")
                await send({"type": "http.response.body", "body": body, "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _early_hints(self, scope: Scope, receive: Any, send: Any) -> None:
        # hypercorn offers the extension on HTTP/2 and HTTP/3 only; "links" must be bytes.
        if "http.response.early_hint" in scope.get("extensions", {}):
            await send({"type": "http.response.early_hint", "links": [EARLY_HINT_LINK]})
            self._count("early_hints_sent")
            body = b"sent"
        else:
            body = b"unsupported"
        await self._respond(send, 200, body, [(b"content-type", b"text/plain")])

    async def _websocket(self, scope: Scope, receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] != "websocket.connect" or scope["path"] != "/ws":
            await send({"type": "websocket.close", "code": 1008})
            return
        self._count("websockets")
        await send({"type": "websocket.accept", "headers": [(b"x-http-version", scope["http_version"].encode())]})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            self._count("ws_messages")
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


@dataclass
class RecordedRequest:
    """One request as a trailer server saw it."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    http_version: str = "1.1"

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "method": self.method,
                "path": self.path,
                "http_version": self.http_version,
                "headers": [list(h) for h in self.headers],
                "body_length": len(self.body),
                "trailers": [list(t) for t in self.trailers],
            }
        ).encode()


def _text(fields: Any) -> list[tuple[str, str]]:
    return [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in fields]


class _Recording(LoopbackServer):
    graceful_close = True

    def __init__(self, ssl_context: ssl.SSLContext | None = None, *, idle_timeout: float = 10.0) -> None:
        super().__init__(ssl_context)
        self.idle_timeout = idle_timeout
        self.requests: list[RecordedRequest] = []
        self.errors: list[BaseException] = []

    def url(self, path: str = "/") -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        async with asyncio.timeout(self.idle_timeout):
            return await reader.read(65536)


class TrailerServerH1(_Recording):
    """HTTP/1.1 (h11): records request trailers and answers 200 with the request as JSON (keep-alive)."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        current: RecordedRequest | None = None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.errors.append(exc)
                return
            if event is h11.NEED_DATA:
                try:
                    data = await self._read(reader)
                except TimeoutError:
                    return
                conn.receive_data(data)
                if not data:
                    return
            elif isinstance(event, h11.Request):
                current = RecordedRequest(
                    event.method.decode(), event.target.decode("latin-1"), _text(event.headers), http_version="1.1"
                )
            elif isinstance(event, h11.Data):
                assert current is not None
                current.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert current is not None
                current.trailers = _text(event.headers)
                self.requests.append(current)
                body = current.as_json()
                out = conn.send(
                    h11.Response(
                        status_code=200,
                        headers=[("content-type", "application/json"), ("content-length", str(len(body)))],
                    )
                )
                out = (out or b"") + (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
                writer.write(out)
                await writer.drain()
                current = None
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return


class TrailerServerH2(_Recording):
    """HTTP/2 (h2): h2c by prior knowledge, or TLS with ALPN h2 when given an SSLContext.

    Records the trailing HEADERS of each request and answers 200 with the request as
    JSON; ``/early-hints`` gets a 103 with ``EARLY_HINT_LINK`` first.
    """

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        pending: dict[int, RecordedRequest] = {}
        while True:
            try:
                data = await self._read(reader)
            except TimeoutError:
                return
            if not data:
                return
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self.errors.append(exc)
                writer.write(conn.data_to_send())
                return
            for event in events:
                sid = getattr(event, "stream_id", None) or 0
                if isinstance(event, h2.events.RequestReceived):
                    fields = dict(event.headers or [])
                    pending[sid] = RecordedRequest(
                        fields.get(b":method", b"").decode(),
                        fields.get(b":path", b"").decode(),
                        _text(event.headers or []),
                        http_version="2",
                    )
                    if pending[sid].path == "/early-hints":
                        conn.send_headers(sid, [(b":status", b"103"), (b"link", EARLY_HINT_LINK)])
                elif isinstance(event, h2.events.DataReceived):
                    if sid in pending:
                        pending[sid].body += event.data or b""
                    if event.flow_controlled_length:
                        try:
                            conn.acknowledge_received_data(event.flow_controlled_length, sid)
                        except h2.exceptions.StreamClosedError:
                            pass
                elif isinstance(event, h2.events.TrailersReceived):
                    if sid in pending:
                        pending[sid].trailers = _text(event.headers or [])
                elif isinstance(event, h2.events.StreamEnded):
                    request = pending.pop(sid, None)
                    if request is None:
                        continue
                    self.requests.append(request)
                    body = request.as_json()
                    conn.send_headers(
                        sid,
                        [
                            (b":status", b"200"),
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    )
                    # Small answers: fits the client's initial window (65535) in practice.
                    conn.send_data(sid, body, end_stream=True)
                elif isinstance(event, h2.events.StreamReset):
                    pending.pop(sid, None)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    writer.write(conn.data_to_send())
                    return
            out = conn.data_to_send()
            if out:
                writer.write(out)
                await writer.drain()


class EarlyHintsServer(LoopbackServer):
    """Raw HTTP/1.1: ``hints`` 103 Early Hints (``delay`` seconds apart), then 200 with ``body``.

    Reads each request head (and a Content-Length body), keeps the connection alive.
    ``requests`` holds the request heads received.
    """

    graceful_close = True

    def __init__(
        self,
        *,
        hints: int = 1,
        delay: float = 0.0,
        body: bytes = b"final\n",
        link: bytes = EARLY_HINT_LINK,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = 10.0,
    ) -> None:
        super().__init__(ssl_context)
        self.hints = hints
        self.delay = delay
        self.body = body
        self.link = link
        self.idle_timeout = idle_timeout
        self.requests: list[bytes] = []

    def url(self, path: str = "/") -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    if length:
                        await reader.readexactly(length)
            except (TimeoutError, asyncio.IncompleteReadError):
                return
            self.requests.append(head)
            for i in range(self.hints):
                if i and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: " + self.link + b"\r\n\r\n")
                await writer.drain()
            if self.delay:
                await asyncio.sleep(self.delay)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(self.body)).encode()
                + b"\r\n\r\n"
                + self.body
            )
            await writer.drain()
