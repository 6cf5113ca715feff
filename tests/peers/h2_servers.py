"""A scriptable HTTP/2 fault server: the h2 library server side on an asyncio Protocol.

Theory of operation
-------------------
``H2FaultServer`` listens on 127.0.0.1 (h2c by prior knowledge, or TLS with ALPN
"h2" when given an SSLContext).  Each accepted connection is an
``H2ServerConnection``: ``data_received`` feeds h2, the events update per-stream
state, and h2's output is written at once.  When a request is complete (the
client's END_STREAM; or at its head, with ``on_headers``) the test's
``handler(conn, stream)`` runs as a task; it answers, resets, sends GOAWAY,
truncates, stalls... as the test scripts it.

Everything the tests assert is counted here, on the server side: accepted TCP
connections, requests per connection, the largest number of streams open at
once, streams opened beyond the advertised SETTINGS_MAX_CONCURRENT_STREAMS after
the client acknowledged it, PINGs received, and every error h2 or a handler
raised (a test that expects none asserts ``errors == []``).

A GOAWAY that lets lower streams finish is written as a raw frame: h2's own
``close_connection`` moves its state machine to CLOSED, after which it refuses
to send anything, which is not what a gracefully shutting-down server does.

``H2CutServer`` is the byte-exact truncator: it builds its whole answer to a
request at once and sends only the first k bytes of it before ending the
connection (tests/test_faults_h2.py walks k over every offset).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

__all__ = ["H2CutServer", "H2FaultServer", "H2ServerConnection", "ServerStream"]


class ServerStream:
    """One request as the server saw it."""

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.stream_id = stream_id
        self.headers = headers
        fields = dict(headers)
        self.method = fields.get(b":method", b"").decode()
        self.path = fields.get(b":path", b"").decode()
        self.body = bytearray()
        self.ended = False  # the client's END_STREAM arrived
        self.response_ended = False  # we sent END_STREAM
        self.reset_by_client: int | None = None  # the client's RST_STREAM error code
        self.reset_by_server = False
        self.refused = False


Handler = Callable[["H2ServerConnection", ServerStream], Awaitable[None]]


class H2ServerConnection(asyncio.Protocol):
    """The server side of one HTTP/2 connection."""

    def __init__(self, server: H2FaultServer) -> None:
        self.server = server
        self.index = 0
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, ServerStream] = {}
        self.open: set[int] = set()  # streams open on both sides or half-closed
        self.settings_acked = False  # the client acknowledged our SETTINGS
        self.lost = False
        self.reading = True
        self.garbage_sent = False
        self._window: asyncio.Event = asyncio.Event()

    # -- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        server.accepted += 1
        self.index = server.accepted
        server.connections.append(self)
        server.notify()
        if server.preface is not None:
            if not server.preface_after_client:
                self.write_raw(server.preface)
                self.garbage_sent = True
            return
        self.h2.initiate_connection()
        if server.settings:
            # A second SETTINGS frame, in force once the client acknowledges it
            # (RFC 9113 section 6.5.3): before that the client may not know it.
            self.h2.update_settings(server.settings)
        self.flush()

    def data_received(self, data: bytes) -> None:
        server = self.server
        if not self.reading:
            return
        if server.preface is not None:
            if not self.garbage_sent:
                self.write_raw(server.preface)
                self.garbage_sent = True
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            server.errors.append(exc)
            self.flush()  # h2's GOAWAY
            self.close()
            return
        for event in events:
            self._dispatch(event)
        self.flush()
        server.notify()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._window.set()
        self.server.notify()

    # -- events -----------------------------------------------------------------------------------
    def _dispatch(self, event: h2.events.Event) -> None:
        server = self.server
        if isinstance(event, h2.events.RequestReceived):
            new = ServerStream(event.stream_id or 0, list(event.headers or []))
            self.streams[new.stream_id] = new
            server.requests.append((self.index, new.stream_id, new.method, new.path))
            limit = (server.settings or {}).get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
            if limit is not None and len(self.open) >= limit:
                if self.settings_acked:
                    server.violations += 1
                # RFC 9113 section 5.1.2: REFUSED_STREAM lets the client retry.
                new.refused = True
                server.refused += 1
                self.reset(new.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            self.open.add(new.stream_id)
            server.max_open = max(server.max_open, len(self.open))
            if server.on_headers:
                server.start_handler(self, new)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream.body += event.data or b""
            if event.flow_controlled_length and server.ack_data:
                try:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id or 0)
                except h2.exceptions.StreamClosedError:
                    pass
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None and not stream.refused:
                stream.ended = True
                self._maybe_closed(stream)
                if not server.on_headers:
                    server.start_handler(self, stream)
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream.reset_by_client = int(event.error_code or 0)
                server.client_resets += 1
                self.open.discard(stream.stream_id)
            self._window.set()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._window.set()
        elif isinstance(event, h2.events.SettingsAcknowledged):
            self.settings_acked = True
        elif isinstance(event, h2.events.PingReceived):
            server.pings += 1
        elif isinstance(event, h2.events.ConnectionTerminated):
            server.goaways_received += 1

    def _maybe_closed(self, stream: ServerStream) -> None:
        if (stream.ended and stream.response_ended) or stream.reset_by_server or stream.reset_by_client is not None:
            self.open.discard(stream.stream_id)

    # -- what handlers call ----------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.write_raw(data)

    def write_raw(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_headers(
        self, stream_id: int, status: int = 200, headers: Iterable[tuple[bytes, bytes]] = (), end: bool = False
    ) -> None:
        fields = [(b":status", str(status).encode()), *headers]
        self.h2.send_headers(stream_id, fields, end_stream=end)
        if end:
            self._response_end(stream_id)
        self.flush()

    async def send_data(self, stream_id: int, data: bytes, end: bool = False) -> bool:
        """Send ``data`` as the client's windows allow; False if the stream or connection went away."""
        view = memoryview(data)
        while view:
            stream = self.streams.get(stream_id)
            if self.lost or stream is None or stream.reset_by_client is not None:
                return False
            window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            if window <= 0:
                self._window.clear()
                await self._window.wait()
                continue
            self.h2.send_data(stream_id, bytes(view[:window]))
            view = view[window:]
            self.flush()
        if end:
            self.h2.end_stream(stream_id)
            self._response_end(stream_id)
            self.flush()
        return True

    async def respond(
        self,
        stream_id: int,
        body: bytes = b"",
        status: int = 200,
        headers: Iterable[tuple[bytes, bytes]] = (),
        content_length: bool = True,
    ) -> bool:
        """A complete response with a Content-Length (unless told otherwise)."""
        fields = list(headers)
        if content_length:
            fields.append((b"content-length", str(len(body)).encode()))
        if not body:
            self.send_headers(stream_id, status, fields, end=True)
            return True
        self.send_headers(stream_id, status, fields)
        return await self.send_data(stream_id, body, end=True)

    def send_trailers(self, stream_id: int, trailers: Iterable[tuple[bytes, bytes]]) -> None:
        self.h2.send_headers(stream_id, list(trailers), end_stream=True)
        self._response_end(stream_id)
        self.flush()

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        self.h2.reset_stream(stream_id, code)
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.reset_by_server = True
            self._maybe_closed(stream)
        self.flush()

    def goaway(self, last_stream_id: int, code: int = 0, debug: bytes = b"") -> None:
        """GOAWAY that still lets streams up to ``last_stream_id`` finish."""
        self.flush()
        frame = GoAwayFrame(stream_id=0, last_stream_id=last_stream_id, error_code=code, additional_data=debug)
        self.write_raw(frame.serialize())
        self.server.goaways_sent += 1

    def stop_reading(self) -> None:
        """Go silent: read nothing more (so PINGs are never answered), write nothing."""
        self.reading = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _response_end(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.response_ended = True
            self._maybe_closed(stream)


class H2FaultServer:
    """An HTTP/2 server on 127.0.0.1 whose every answer is scripted by ``handler``.

    settings: extra SETTINGS sent after the initial frame (e.g. MAX_CONCURRENT_STREAMS);
      a request beyond that limit is refused with REFUSED_STREAM, and counted in
      ``violations`` if the client had already acknowledged the limit.
    preface: bytes sent *instead* of a server preface (garbage), at once or, with
      ``preface_after_client``, once the client's first bytes arrive.
    on_headers: run the handler as soon as the request head arrives, not at its end.
    ack_data: give the client flow-control credit for the request body it sent
      (False: the client's windows run dry).
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        settings: dict[h2.settings.SettingCodes | int, int] | None = None,
        preface: bytes | None = None,
        preface_after_client: bool = False,
        on_headers: bool = False,
        ack_data: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.settings = settings
        self.preface = preface
        self.preface_after_client = preface_after_client
        self.on_headers = on_headers
        self.ack_data = ack_data
        self._ssl = ssl_context
        self.port = 0
        self.accepted = 0
        self.connections: list[H2ServerConnection] = []
        self.requests: list[tuple[int, int, str, str]] = []  # (connection index, stream id, method, path)
        self.errors: list[BaseException] = []
        self.max_open = 0
        self.violations = 0
        self.refused = 0
        self.pings = 0
        self.client_resets = 0
        self.goaways_sent = 0
        self.goaways_received = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None

    def url(self, path: str = "/") -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    # -- waiting for the server's state (no sleeps) ----------------------------------------------------
    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked on every server-side change."""
        assert self._changed is not None
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # -- handlers ----------------------------------------------------------------------------
    def start_handler(self, conn: H2ServerConnection, stream: ServerStream) -> None:
        if self.handler is None:
            return
        task = asyncio.get_running_loop().create_task(self._run(conn, stream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, conn: H2ServerConnection, stream: ServerStream) -> None:
        assert self.handler is not None
        try:
            await self.handler(conn, stream)
        except asyncio.CancelledError:
            raise
        except h2.exceptions.StreamClosedError:
            pass  # the client reset the stream while we answered: normal
        except Exception as exc:
            if not conn.lost:
                self.errors.append(exc)
        finally:
            self.notify()

    # -- lifecycle -----------------------------------------------------------------------------------
    async def __aenter__(self) -> H2FaultServer:
        self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: H2ServerConnection(self), "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.connections:
            conn.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()



# -- every-offset truncation ------------------------------------------------------------------------

Script = Callable[[h2.connection.H2Connection, int], None]


class _CutConnection(asyncio.Protocol):
    """One connection of ``H2CutServer``: the first request gets the first k bytes of the script."""

    def __init__(self, server: H2CutServer) -> None:
        self.server = server
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self.transport: asyncio.Transport | None = None
        self.paths: dict[int, bytes] = {}
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.live.add(self)
        # Queued in h2, not written: the server preface is the start of the script.
        self.h2.initiate_connection()

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return  # what the client sends after the cut (SETTINGS ACK, GOAWAY) is ignored
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.server.errors.append(exc)
            self.answered = True
            self._cut(b"")
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.paths[event.stream_id or 0] = dict(event.headers or []).get(b":path", b"")
            elif isinstance(event, h2.events.StreamEnded):
                self.answered = True
                stream_id = event.stream_id or 0
                cut = int(self.paths[stream_id].rsplit(b"/", 1)[-1])
                self.server.script(self.h2, stream_id)
                whole = self.h2.data_to_send()
                self.server.lengths.add(len(whole))
                self._cut(whole[:cut])
                return

    def _cut(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(data)
        if transport.can_write_eof():
            # FIN, and go on reading: closing with the client's later bytes unread
            # would answer them with a RST, which may cost the client bytes it
            # has not read yet, and the cut must fall exactly after byte k.
            transport.write_eof()
        else:
            transport.close()  # TLS: close_notify, an end that looks clean

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.live.discard(self)


class H2CutServer:
    """HTTP/2 server that sends the first k bytes of a scripted answer, then ends the connection.

    Nothing is written before the client's request is complete; then the whole
    answer is built at once by ``script(h2_connection, stream_id)`` (the server
    preface and SETTINGS that h2 queued, the SETTINGS ACK, then whatever the
    script sends: HEADERS, DATA with or without padding, trailers).  The request
    path ends in k (``/cut/123``), so one server serves every offset; ``lengths``
    collects the length of every full answer it built (the test checks that it is
    one number, so that every k really fell inside the same bytes).
    """

    def __init__(self, script: Script, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.script = script
        self._ssl = ssl_context
        self.port = 0
        self.lengths: set[int] = set()
        self.errors: list[BaseException] = []
        self.live: set[_CutConnection] = set()
        self._server: asyncio.Server | None = None

    def url(self, cut: int) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}/cut/{cut}"

    async def __aenter__(self) -> H2CutServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _CutConnection(self), "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in list(self.live):
            if conn.transport is not None:
                conn.transport.abort()
        await self._server.wait_closed()
