"""An HTTP/3 request recorder (aioquic): the HTTP/3 sibling of ``duplex.TrailerServerH2``.

hypercorn cannot be the peer for request trailers over HTTP/3: a trailing
HEADERS frame raises UnboundLocalError in its protocol/h3.py and kills its QUIC
listener.  ``TrailerServerH3`` is an async context manager running aioquic's
own server (``aioquic.asyncio.serve``) on 127.0.0.1, UDP port 0, in the test's
loop.  Each request stream is recorded (``requests``: ``RecordedRequest``,
``http_version`` "3"): the request HEADERS, the DATA, and a second HEADERS frame
on the same stream as the trailers.  When the stream ends it answers 200 with
``RecordedRequest.as_json()``.  ``accepted`` counts QUIC connections.

The QUIC idle timeout (``idle_timeout``) bounds every connection; ``__aexit__``
closes the connections (CONNECTION_CLOSE), waits at most ``close_timeout`` for
them to finish, and closes the UDP socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Self

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

from .duplex import RecordedRequest

__all__ = ["TrailerServerH3"]


def _text(fields: Any) -> list[tuple[str, str]]:
    return [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in fields]


class _RecorderProtocol(QuicConnectionProtocol):
    """One QUIC connection: an H3Connection that records each request stream and answers it."""

    def __init__(self, *args: Any, recorder: TrailerServerH3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recorder = recorder
        self._h3 = H3Connection(self._quic)
        self._pending: dict[int, RecordedRequest] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            self._pending.pop(event.stream_id, None)
        elif isinstance(event, ConnectionTerminated):
            self._pending.clear()
            self._recorder.terminations.append(event)
        for h3_event in self._h3.handle_event(event):
            self._h3_event_received(h3_event)

    def _h3_event_received(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            sid = event.stream_id
            request = self._pending.get(sid)
            if request is None:
                fields = dict(event.headers)
                request = RecordedRequest(
                    fields.get(b":method", b"").decode(),
                    fields.get(b":path", b"").decode(),
                    _text(event.headers),
                    http_version="3",
                )
                self._pending[sid] = request
            else:
                request.trailers = _text(event.headers)  # the second HEADERS frame on the stream
            if event.stream_ended:
                self._answer(sid)
        elif isinstance(event, DataReceived):
            request = self._pending.get(event.stream_id)
            if request is not None:
                request.body += event.data
            if event.stream_ended:
                self._answer(event.stream_id)

    def _answer(self, stream_id: int) -> None:
        request = self._pending.pop(stream_id, None)
        if request is None:
            return
        self._recorder.requests.append(request)
        body = request.as_json()
        self._h3.send_headers(
            stream_id,
            [
                (b":status", b"200"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        )
        self._h3.send_data(stream_id, body, end_stream=True)
        self.transmit()


class TrailerServerH3:
    """HTTP/3 over QUIC on 127.0.0.1 (aioquic): records request trailers, answers 200 with the request as JSON."""

    def __init__(self, certfile: str, keyfile: str, *, idle_timeout: float = 10.0, close_timeout: float = 2.0) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.idle_timeout = idle_timeout
        self.close_timeout = close_timeout
        self.port = 0
        self.accepted = 0
        self.requests: list[RecordedRequest] = []
        self.terminations: list[ConnectionTerminated] = []
        self._server: QuicServer | None = None
        self._protocols: set[_RecorderProtocol] = set()

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def _create_protocol(self, *args: Any, **kwargs: Any) -> _RecorderProtocol:
        self.accepted += 1
        protocol = _RecorderProtocol(*args, recorder=self, **kwargs)
        self._protocols.add(protocol)
        return protocol

    async def __aenter__(self) -> Self:
        configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, idle_timeout=self.idle_timeout)
        configuration.load_cert_chain(self.certfile, self.keyfile)
        self._server = await serve("127.0.0.1", 0, configuration=configuration, create_protocol=self._create_protocol)
        # serve() binds port 0 but returns no address; the listener's transport has it.
        self.port = self._server._transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        protocols = list(self._protocols)
        self._protocols.clear()
        for protocol in protocols:
            protocol.close()
        # Let each connection send its CONNECTION_CLOSE and end its draining period (a few PTOs).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.close_timeout):
                await asyncio.gather(*(protocol.wait_closed() for protocol in protocols))
        self._server.close()
        self._server = None
