"""One request on an HTTP/2 server connection: ``H2Exchange`` and the checks on its fields.

``H2ServerProtocol`` (``_h2.py``) owns the connection and h2; an ``H2Exchange``
is what a handler gets for one stream (``ServerExchange``): the request, whose
body (``_RequestBody``) reads the stream's ``BodyBuffer``, and the answers,
which go out through the protocol within the client's flow-control windows.
``_malformed`` is RFC 9113 section 8 for a request, checked here because h2's
own inbound validation raises connection errors where the RFC says stream errors.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

import h2.errors

from .._exceptions import LocalProtocolError, StreamClosed
from .._headers import Headers, HeaderTypes
from .._models import Request
from .._network import NetworkStream, transport_extra
from .._streams import BodyBuffer

if TYPE_CHECKING:
    from ._h2 import H2ServerProtocol

__all__ = ["H2Exchange"]

# The longest ``respond`` waits for the client to grant flow-control window or
# take bytes from the socket before it gives up on the stream (WriteTimeout).
# Not a ServerLimits field: a client that reads nothing for this long is gone.
_SEND_STALL = 60.0
_Codes = h2.errors.ErrorCodes


_FIELD_NAME = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_BAD_VALUE = re.compile(rb"[\r\n\x00]|^[ \t]|[ \t]$")
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})


def _malformed(fields: list[tuple[bytes, bytes]], *, trailers: bool) -> str | None:
    """Why a request head (or trailer section) is malformed, or None (RFC 9113 section 8)."""
    pseudo: dict[bytes, bytes] = {}
    regular_seen = False
    for name, value in fields:
        if name.startswith(b":"):
            if trailers or name not in _PSEUDO or name in pseudo or regular_seen:
                return f"unexpected pseudo-header {name!r}"
            pseudo[name] = value
            continue
        regular_seen = True
        if not _FIELD_NAME.match(name):
            return f"invalid field name {name!r} (HTTP/2 field names are lowercase tokens)"
        if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            return f"connection-specific field {name.decode()!r}"  # section 8.2.2
        if _BAD_VALUE.search(value):
            return f"invalid value for {name.decode()!r}"
    if trailers:
        return None
    method = pseudo.get(b":method")
    if not method:
        return "no :method"
    if method == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo or not pseudo.get(b":authority"):
            return "CONNECT carries :authority and no :scheme or :path"  # section 8.5
        return None
    if b":protocol" in pseudo and method != b"CONNECT":
        return ":protocol without CONNECT"  # RFC 8441 section 4
    if not pseudo.get(b":scheme") or not pseudo.get(b":path"):
        return "no :scheme or :path"  # section 8.3.1
    return None


def _head_size(fields: list[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) + 32 for name, value in fields)  # RFC 9113 section 6.5.2


def _response_fields(headers: HeaderTypes) -> list[tuple[bytes, bytes]]:
    # RFC 9113 section 8.2: lowercase names, no connection-specific fields (a
    # role relaying an HTTP/1.1 answer passes them through; they go here).
    return [
        (name, value)
        for _, name, value in Headers(headers).triples()
        if name not in _CONNECTION_SPECIFIC and name != b"host" and not name.startswith(b":")
    ]


class _RequestBody(AsyncIterator[bytes]):
    """The request body as the handler reads it; credit goes back as it reads."""

    __slots__ = ("_buffer", "exchange", "content_length")

    def __init__(self, buffer: BodyBuffer, content_length: int | None) -> None:
        self._buffer = buffer
        self.exchange: H2Exchange | None = None
        self.content_length = content_length  # read by Request framing, as a stream's length

    def __aiter__(self) -> _RequestBody:
        return self

    async def __anext__(self) -> bytes:
        data = await self._buffer.read()
        if not data:
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        """Not reading the rest: drop it (credit returned); it is reset once answered."""
        if self.exchange is not None:
            self.exchange.body_dropped = True
        self._buffer.discard()


class _StreamChannel:
    """The write side of a stream handed over by ``upgrade`` (CONNECT, RFC 8441)."""

    __slots__ = ("_exchange",)

    def __init__(self, exchange: H2Exchange) -> None:
        self._exchange = exchange

    async def send(self, data: bytes, timeout: float | None) -> None:
        exchange = self._exchange
        if exchange.closed or exchange.response_ended:
            raise StreamClosed("the CONNECT stream was reset or closed")
        await exchange.proto.send_data(exchange, data, timeout)

    def close(self) -> None:
        exchange = self._exchange
        exchange.buffer.discard()
        exchange.body_dropped = True
        exchange.proto.end_response(exchange)

    def extra_info(self, name: str) -> object:
        return transport_extra(self._exchange.proto.transport, name, server_side=True)


class H2Exchange:
    """One request on an HTTP/2 server connection (implements ``ServerExchange``)."""

    http_version = "HTTP/2"

    def __init__(self, proto: H2ServerProtocol, stream_id: int, request: Request, buffer: BodyBuffer) -> None:
        self.proto = proto
        self.stream_id = stream_id
        self.request = request
        self.buffer = buffer
        self.client_addr = proto.client_addr
        self.server_addr = proto.server_addr
        self.tls = proto.tls
        self.expected_length: int | None = None  # the request's Content-Length
        self.request_ended = False  # END_STREAM received
        self.head_sent = False  # the final head went out
        self.response_ended = False  # END_STREAM sent
        self.closed = False  # reset (either side) or the connection went
        self.error: BaseException | None = None  # why it closed
        self.body_dropped = False
        self.upgraded = False  # a 2xx to CONNECT: the stream is a tunnel now
        self.unacked = 0
        self.task: asyncio.Task[None] | None = None

    async def informational(self, status: int, headers: HeaderTypes = None) -> None:
        if not 100 <= status < 200 or status == 101:
            raise LocalProtocolError(f"informational status must be 1xx (not 101) over HTTP/2, got {status}")
        if self.head_sent:
            raise LocalProtocolError("an informational answer after the final head")
        self.proto.send_headers(self, [(b":status", str(status).encode()), *_response_fields(headers)], False)

    async def respond(
        self,
        status: int,
        headers: HeaderTypes = None,
        body: bytes | AsyncIterable[bytes] | None = None,
        *,
        trailers: Headers | None = None,
    ) -> None:
        if not 200 <= status < 1000:
            raise LocalProtocolError(f"final status must be 200-999, got {status}")
        if self.head_sent:
            raise LocalProtocolError(f"HTTP/2 stream {self.stream_id} was already answered")
        fields = [(b":status", str(status).encode()), *_response_fields(headers)]
        no_body = self.request.method == "HEAD" or status in (204, 304)
        declared: int | None = None
        for name, value in fields:
            if name == b"content-length" and value.isdigit():
                declared = int(value)
        iterator: AsyncIterable[bytes] | None = None if body is None or isinstance(body, bytes) else body
        data = body if isinstance(body, bytes) else b""
        try:
            if no_body or (iterator is None and not data and not trailers):
                self.head_sent = True
                self.proto.send_headers(self, fields, True)
                return
            self.head_sent = True
            self.proto.send_headers(self, fields, False)
            sent = 0
            if data:
                await self.proto.send_data(self, data, _SEND_STALL)
                sent = len(data)
            if iterator is not None:
                try:
                    async for chunk in iterator:
                        if chunk:
                            await self.proto.send_data(self, bytes(chunk), _SEND_STALL)
                            sent += len(chunk)
                except Exception:
                    self.proto.reset(self, _Codes.INTERNAL_ERROR)  # never a clean end after a failed body
                    raise
            if declared is not None and sent != declared:
                self.proto.reset(self, _Codes.INTERNAL_ERROR)
                raise LocalProtocolError(
                    f"the response body was {sent} bytes but its Content-Length is {declared}; stream reset"
                )
            self.proto.end_response(self, trailers)
        finally:
            if iterator is not None and not self.response_ended:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()

    async def upgrade(self, status: int, headers: HeaderTypes = None) -> NetworkStream:
        if self.request.method != "CONNECT" or not 200 <= status < 300:
            raise LocalProtocolError("over HTTP/2 only a CONNECT is upgraded, with a 2xx (RFC 9113 section 8.5)")
        if self.head_sent:
            raise LocalProtocolError(f"HTTP/2 stream {self.stream_id} was already answered")
        self.head_sent = True
        self.upgraded = True
        self.proto.send_headers(self, [(b":status", str(status).encode()), *_response_fields(headers)], False)
        return NetworkStream(self.buffer, _StreamChannel(self))

    def abort(self) -> None:
        self.proto.reset(self, _Codes.INTERNAL_ERROR)
