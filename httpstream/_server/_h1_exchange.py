"""The answering half of an HTTP/1.1 server exchange: ``H1ServerExchange`` and the request body.

``H1ServerProtocol`` (``_h1``) parses and frames; this module is what a handler
holds: the request body as an async iterator with backpressure, and the
answer (``informational``, ``respond``, ``upgrade``, ``abort``) serialized
onto the protocol's transport.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING

from .._exceptions import LocalProtocolError, WriteError
from .._headers import Headers, HeaderTypes
from .._models import Request
from .._network import NetworkStream, TransportChannel
from .._streams import BodyBuffer
from ._h1_parse import ParsedHead

if TYPE_CHECKING:
    from ._h1 import H1ServerProtocol

__all__ = ["H1ServerExchange", "RequestBody", "simple_response"]

logger = logging.getLogger("httpstream.server")


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class RequestBody(AsyncIterator[bytes]):
    """A request body as it arrives: iterate it (each item is what one read brought)."""

    __slots__ = ("_buffer", "_on_first_read", "content_length", "_closed")

    def __init__(self, buffer: BodyBuffer, on_first_read: Callable[[], None], content_length: int | None) -> None:
        self._buffer = buffer
        self._on_first_read: Callable[[], None] | None = on_first_read
        self.content_length = content_length  # the pool sends a known length as Content-Length
        self._closed = False

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        first = self._on_first_read
        if first is not None:
            self._on_first_read = None
            first()
        data = self._buffer.read_nowait()
        if data is None:
            data = await self._buffer.read()
        if not data:
            self._closed = True
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        """Stop reading; the server reads off (or closes on) the rest when the exchange ends."""
        self._closed = True


class H1ServerExchange:
    """One request on an HTTP/1.1 server connection, and the means to answer it (a ``ServerExchange``)."""

    def __init__(
        self,
        proto: H1ServerProtocol,
        request: Request,
        head: ParsedHead,
        *,
        client_addr: tuple[str, int],
        server_addr: tuple[str, int],
        tls: bool,
    ) -> None:
        self._proto = proto
        self.request = request
        self.http_version = "HTTP/" + head.version
        self.client_addr = client_addr
        self.server_addr = server_addr
        self.tls = tls
        self.head = head
        self.keep_alive = head.keep_alive
        self.head_sent = False  # the final head went out (or a refusal took its place)
        self.finished = False  # the whole response went out
        self.aborted = False
        self.continue_sent = False
        self.network_stream: NetworkStream | None = None
        self._sending = False

    # -- the ServerExchange API ---------------------------------------------------------
    async def informational(self, status: int, headers: HeaderTypes = None) -> None:
        if not 100 <= status < 200 or status == 101:
            raise LocalProtocolError(f"informational() takes a 1xx status other than 101, not {status}")
        self._check_open()
        if self.head.version == "1.0":
            return  # RFC 9110 section 15.2: not to an HTTP/1.0 client
        if status == 100:
            if self.continue_sent:
                return
            self.continue_sent = True
        self._proto.write(_serialize_head(status, Headers(headers)))
        await self._proto.drain(None)

    async def respond(
        self,
        status: int,
        headers: HeaderTypes = None,
        body: bytes | AsyncIterable[bytes] | None = None,
        *,
        trailers: Headers | None = None,
    ) -> None:
        if not 200 <= status <= 999:
            raise LocalProtocolError(f"respond() takes a final status (200-999), not {status}; see informational()")
        self._check_open()
        method = self.request.method
        if method == "CONNECT" and 200 <= status < 300:
            raise LocalProtocolError("a 2xx answer to CONNECT opens a tunnel: use upgrade()")
        fields = headers.copy() if isinstance(headers, Headers) else Headers(headers)
        proto = self._proto
        version10 = self.head.version == "1.0"
        no_body = method == "HEAD" or status in (204, 304)
        codings = fields.get_raw(b"transfer-encoding")
        lengths = fields.get_raw(b"content-length")
        if codings and (lengths or [c.lower() for c in codings] != [b"chunked"]):
            raise LocalProtocolError("a response takes Transfer-Encoding: chunked only, never with Content-Length")
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            raise LocalProtocolError(f"invalid Content-Length in the response: {lengths!r}")
        if isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        length: int | None = int(lengths[0]) if lengths else None
        chunked = False
        close_delimited = False
        if no_body:
            pass
        elif codings or (trailers is not None and length is None):
            chunked = True
        elif length is None and (body is None or isinstance(body, bytes)):
            length = len(body or b"")
            fields.add(b"Content-Length", str(length).encode("ascii"))
        elif length is None:
            chunked = True
        if chunked and not codings:
            fields.add(b"Transfer-Encoding", b"chunked")
        if chunked and version10:
            # No chunked coding for an HTTP/1.0 client (RFC 9112 section 7): the close ends the body.
            del fields["Transfer-Encoding"]
            chunked = False
            close_delimited = True
        if isinstance(body, bytes) and length is not None and not no_body and len(body) != length:
            raise LocalProtocolError(f"the body has {len(body)} bytes but Content-Length says {length}")
        close = close_delimited or not self.keep_alive or proto.closing or proto.unread_body_needs_close(self)
        connection = b",".join(fields.get_raw(b"connection")).lower()
        if b"close" in connection:
            close = True
        elif close:
            fields.add(b"Connection", b"close")
        self.keep_alive = not close
        self.head_sent = True
        self._sending = True
        try:
            head = _serialize_head(status, fields)
            if no_body:
                proto.write(head)
                await _close_iterator(body)
            elif isinstance(body, bytes) or body is None:
                data = body or b""
                if chunked:
                    proto.write(head + (b"%x\r\n%s\r\n" % (len(data), data) if data else b""))
                else:
                    proto.write(head + data if len(data) < 65536 else head)
                    if len(data) >= 65536:
                        proto.write(data)
                await proto.drain(None)
            else:
                proto.write(head)
                await self._stream(body, chunked, length)
            if chunked:
                proto.write(_last_chunk(trailers))
                await proto.drain(None)
        except BaseException:
            self._sending = False
            self.abort()
            raise
        self._sending = False
        self.finished = True

    async def _stream(self, body: AsyncIterable[bytes], chunked: bool, length: int | None) -> None:
        proto = self._proto
        sent = 0
        try:
            async for chunk in body:
                if not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise LocalProtocolError(f"response body iterator yielded {type(chunk).__name__}, not bytes")
                if not chunk:
                    continue
                sent += len(chunk)
                if length is not None and sent > length:
                    raise LocalProtocolError(f"the response body is longer than its Content-Length ({length})")
                if chunked:
                    proto.write(b"%x\r\n" % len(chunk))
                    proto.write(bytes(chunk))
                    proto.write(b"\r\n")
                else:
                    proto.write(bytes(chunk))
                await proto.drain(None)
        finally:
            await _close_iterator(body)
        if length is not None and sent != length:
            raise LocalProtocolError(f"the response body ended after {sent} of {length} bytes (Content-Length)")

    async def upgrade(self, status: int, headers: HeaderTypes = None) -> NetworkStream:
        self._check_open()
        request = self.request
        if status == 101:
            if not request.headers.has(b"upgrade"):
                raise LocalProtocolError("101 Switching Protocols answers a request with Upgrade; this one has none")
        elif 200 <= status < 300:
            if request.method != "CONNECT":
                raise LocalProtocolError(f"a {status} upgrade answers CONNECT, not {request.method}")
        else:
            raise LocalProtocolError(f"upgrade() takes 101 or a 2xx to CONNECT, not {status}")
        proto = self._proto
        if not proto.request_complete:
            raise LocalProtocolError("upgrade() before the request body was read to its end")
        self.head_sent = True
        self.finished = True
        self.keep_alive = False
        proto.write(_serialize_head(status, Headers(headers)))
        stream = NetworkStream(proto.to_raw(), TransportChannel(proto, server_side=True))
        self.network_stream = stream
        await proto.drain(None)
        return stream

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            self.keep_alive = False
            self._proto.abort()

    # -- helpers ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.aborted or self._proto.lost:
            raise WriteError("the client connection is closed")
        if self.head_sent:
            raise LocalProtocolError("this request was answered already")
        if self._sending:
            raise LocalProtocolError("a response is being sent already")

    def send_continue(self) -> None:
        """The handler started reading the body: ``100 Continue`` if the client waits for it (RFC 9110 10.1.1)."""
        if self.head.expect and not self.head_sent and not self.continue_sent and not self._proto.lost:
            self.continue_sent = True
            self._proto.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def _serialize_head(status: int, fields: Headers) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _phrase(status))]
    for name, value in fields.raw:
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines)


def _last_chunk(trailers: Headers | None) -> bytes:
    if not trailers:
        return b"0\r\n\r\n"
    return b"0\r\n" + b"".join(b"%s: %s\r\n" % item for item in trailers.raw) + b"\r\n"


async def _close_iterator(body: object) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # the iterator's own cleanup failing is not the answer's problem
            logger.debug("response body iterator failed to close", exc_info=True)


def simple_response(status: int, message: str) -> bytes:
    body = message.encode("utf-8", "replace") + b"\n"
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (status, _phrase(status), len(body))
    ) + body


