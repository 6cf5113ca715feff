"""What HTTP/2 and HTTP/3 connections share: the pool-facing half and the request path.

A multiplexed connection carries many streams.  The pool sees it through the
``Connection`` interface (``_interfaces``) whatever the protocol; the one
request path (``handle_request``) is written here once, over the few stream
operations both protocols provide (``StreamProtocol``), so the two cannot drift
apart.  ``_h2`` and ``_h3`` are siblings and may not import each other, so
this lives below them (layer 2).

One request, theory of operation:

1. open a stream (HTTP/2 waits first if the peer's SETTINGS_MAX_CONCURRENT_STREAMS
   leaves no room; extended CONNECT waits for the peer's SETTINGS to know
   whether it is allowed, RFC 8441 section 3);
2. send HEADERS, with END_STREAM when there is no body;
3. send a small bytes body at once (it fits the flow-control window); anything
   else (a stream, a large body, a body held back for ``100 Continue``) goes
   up in an ``Upload`` in the background: full duplex, and the head timer
   starts when the upload ends, as it would for a request sent first;
4. return at the response head.  A CONNECT answered with 2xx hands back the
   stream as ``extensions["network_stream"]``; anything else a body stream.

When the answer ends before the upload (RFC 9113 section 8.1 allows a complete
response before the whole request), the upload stops and our side ends with
RST_STREAM(NO_ERROR) (HTTP/3: RESET_STREAM(H3_NO_ERROR)); a STOP_SENDING from
an HTTP/3 server stops it too.  When the stream ends for any reason, its
upload is stopped: no task outlives its stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable
from typing import Any, Generic, Protocol, TypeVar

from ._config import Limits, Timeout
from ._exceptions import HTTPStreamError, LocalProtocolError, ReadError, StaleConnection, StreamClosed
from ._headers import Headers, multiplexed_request_fields
from ._interfaces import CLOSE_GRACE, ConnectionInfo
from ._models import Request, Response
from ._network import NetworkStream
from ._streams import (
    BodyBuffer,
    ResponseStream,
    Upload,
    send_request_body,
    upload_failure,
    wait_for_continue,
)
from ._urls import Origin

__all__ = ["MultiplexedConnection", "StreamProtocol"]


class _Stream(Protocol):
    head_waiter: asyncio.Future[tuple[int, Headers]]
    continue_waiter: asyncio.Future[None] | None
    buffer: BodyBuffer | None
    trailers: Headers
    ended: bool
    closed: bool
    upload: Upload | None
    on_informational: Callable[[int, Headers], None] | None


_T = TypeVar("_T", bound=_Stream)


class StreamProtocol(Protocol[_T]):
    """The stream operations an HTTP/2 or HTTP/3 protocol provides."""

    streams: dict[int, Any]
    error: BaseException | None

    @property
    def is_usable(self) -> bool: ...

    def stream_slot_free(self) -> bool: ...

    async def wait_for_stream_slot(self, timeout: float | None) -> None: ...

    async def extended_connect_allowed(self, timeout: float | None) -> bool: ...

    def open_stream(self, method: str, read_timeout: float | None) -> _T: ...

    def send_headers(self, stream: _T, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None: ...

    def send_now(self, stream: _T, data: bytes) -> bool: ...

    async def send_body(self, stream: _T, data: bytes, timeout: float | None) -> None: ...

    def end_request(self, stream: _T, trailers: Headers | None = None) -> None: ...

    def arm_head_timer(self, stream: _T) -> None: ...

    def cancel(self, stream: _T, exc: BaseException) -> None: ...

    def release(self, stream: _T) -> None: ...

    def close(self) -> None: ...

    async def ping(self, timeout: float) -> bool: ...

    async def wait_closed(self, timeout: float) -> None: ...

    def extra_info(self, name: str) -> object: ...


_P = TypeVar("_P", bound=StreamProtocol[Any])


class MultiplexedConnection(Generic[_P]):
    """The ``Connection`` interface and the request path of ``HTTP2Connection`` and ``HTTP3Connection``."""

    http_version = ""
    scheme_override: str | None = None  # HTTP/3 is https only
    protocol: _P

    def __init__(
        self, origin: Origin, key: tuple[object, ...], limits: Limits, on_change: Callable[[Any], None]
    ) -> None:
        self.origin = origin
        self.key = key
        self.requests = 0
        self.reserved = 0
        self.idle_since = time.monotonic()
        self._limits = limits
        self._on_change = on_change
        self._closed = False

    # -- what a subclass says about its protocol ---------------------------------------------
    def _protocol_gone(self) -> bool:
        raise NotImplementedError

    def _can_open(self) -> bool:
        raise NotImplementedError

    def _socket_open(self) -> bool:
        raise NotImplementedError

    # -- the Connection interface ----------------------------------------------------------------
    @property
    def state(self) -> str:
        if self._closed or self._protocol_gone():
            return "closed"
        if self.protocol.streams or self.reserved:
            return "active"
        return "idle"

    def is_available(self) -> bool:
        return not self._closed and self.protocol.is_usable and self._can_open()

    def is_full(self) -> bool:
        return not self._closed and self.protocol.is_usable and not self._can_open()

    def is_idle(self) -> bool:
        return self.state == "idle"

    def is_closed(self) -> bool:
        return self.state == "closed"

    def has_expired(self, now: float) -> bool:
        expiry = self._limits.keepalive_expiry
        return expiry is not None and self.state == "idle" and now - self.idle_since >= expiry

    def reserve(self) -> None:
        self.reserved += 1

    def unreserve(self) -> None:
        self.reserved = max(0, self.reserved - 1)
        if self.state == "idle":
            self.idle_since = time.monotonic()
        self._on_change(self)

    async def check(self) -> bool:
        """PING a connection that idled longer than ``Limits.h2_ping_after`` before reusing it."""
        after = self._limits.h2_ping_after
        if after is None or self.requests == 0 or self.protocol.streams:
            return True
        if time.monotonic() - self.idle_since < after:
            return True
        return await self.protocol.ping(1.0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.protocol.close()

    async def aclose(self) -> None:
        self.close()
        await self.protocol.wait_closed(CLOSE_GRACE)

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            http_version=self.http_version,
            state=self.state,
            streams=len(self.protocol.streams),
            requests=self.requests,
            idle_since=self.idle_since,
            socket_open=self._socket_open(),
        )

    # -- one request ---------------------------------------------------------------------------
    async def handle_request(self, request: Request, timeout: Timeout) -> Response:
        self.reserved = max(0, self.reserved - 1)
        self.requests += 1
        proto = self.protocol
        if not proto.is_usable:
            self._on_change(self)
            error = proto.error or ReadError("the connection is closing")
            raise StaleConnection(f"{self.http_version} connection unusable before the request was sent: {error}")
        method = request.method
        extensions = request.extensions
        protocol_name = extensions.get("protocol") if method == "CONNECT" else None
        if protocol_name is not None and not await proto.extended_connect_allowed(timeout.connect):
            raise LocalProtocolError(
                f"the {self.http_version} server does not allow extended CONNECT (RFC 8441: no "
                f"SETTINGS_ENABLE_CONNECT_PROTOCOL), so {protocol_name!r} cannot be carried over it; "
                "use HTTP/1.1 for this request"
            )
        url = request.url
        host = request.headers.get_raw(b"host")
        authority = host[0] if host else url.netloc.encode("ascii")
        fields = multiplexed_request_fields(
            method,
            self.scheme_override or url.scheme,
            authority,
            request.target,
            request.headers,
            protocol=protocol_name if isinstance(protocol_name, str) else None,
        )
        if not proto.stream_slot_free():
            await proto.wait_for_stream_slot(timeout.pool)
        stream = proto.open_stream(method, timeout.read)
        hook = extensions.get("on_informational")
        stream.on_informational = hook if callable(hook) else None
        try:
            self._send(request, stream, fields, timeout.write)
            status, headers = await stream.head_waiter
        except BaseException as exc:
            upload = stream.upload
            if upload is not None:
                upload.stop()
            waiter = stream.head_waiter
            proto.cancel(stream, exc if isinstance(exc, HTTPStreamError) else ReadError("request cancelled"))
            if waiter.done() and not waiter.cancelled():
                waiter.exception()
            raise
        buffer = stream.buffer
        assert buffer is not None
        tunnel = method == "CONNECT" and 200 <= status < 300
        response = Response(
            status,
            headers=headers,
            http_version=self.http_version,
            request=request,
            stream=None if tunnel else ResponseStream(buffer, lambda: proto.release(stream)),
        )
        if tunnel:
            response.extensions["network_stream"] = NetworkStream(buffer, _StreamChannel(proto, stream))
        else:
            response.trailers = stream.trailers
        if stream.upload is not None:
            response.extensions["upload"] = stream.upload
        return response

    def _send(
        self, request: Request, stream: Any, fields: list[tuple[bytes, bytes]], write_timeout: float | None
    ) -> None:
        """HEADERS, and the body if it can go at once; an ``Upload`` for the rest."""
        proto = self.protocol
        content = request.content
        trailers = request.trailers
        if content is None or content == b"":
            if request.method == "CONNECT":
                proto.send_headers(stream, fields, False)  # the stream is the tunnel: never END_STREAM
            elif trailers:
                proto.send_headers(stream, fields, False)
                proto.end_request(stream, trailers)
            else:
                proto.send_headers(stream, fields, True)
            proto.arm_head_timer(stream)
            return
        proto.send_headers(stream, fields, False)
        expect = request.expect_continue_timeout()
        if isinstance(content, bytes) and expect is None and proto.send_now(stream, content):
            proto.end_request(stream, trailers)
            proto.arm_head_timer(stream)
            return

        async def send(upload: Upload) -> bool:
            return await self._upload(upload, request, stream, content, expect, write_timeout)

        stream.upload = Upload(send, lambda exc: self._upload_failed(stream, exc))

    async def _upload(
        self,
        upload: Upload,
        request: Request,
        stream: Any,
        content: bytes | AsyncIterable[bytes],
        expect: float | None,
        write_timeout: float | None,
    ) -> bool:
        proto = self.protocol
        if expect is not None and not await wait_for_continue(stream, expect):
            # The final answer came before 100 Continue: the body is not sent.
            # A complete answer ends our side now (RST_STREAM(NO_ERROR)); one
            # still arriving is ended the same way when the caller releases it
            # (END_STREAM now would announce an empty body).
            if stream.ended:
                proto.end_request(stream)
            return False
        complete = await send_request_body(proto, stream, content, write_timeout, upload, request.trailers)
        if not stream.head_waiter.done():
            proto.arm_head_timer(stream)
        return complete

    def _upload_failed(self, stream: Any, exc: BaseException) -> None:
        stream.upload = None
        if not stream.head_waiter.done():
            self.protocol.cancel(stream, exc)  # the request fails with the body's own error
        elif stream.ended:
            # The answer is complete: it stays so (a reset would drop its unread
            # bytes); only our side ends.
            self.protocol.end_request(stream)
        else:
            self.protocol.cancel(stream, upload_failure(exc))

    # -- callbacks from the protocol ---------------------------------------------------------------
    def _stream_closed(self, stream: Any) -> None:
        upload = stream.upload
        if upload is not None:
            upload.stop()  # no upload outlives its stream
        if not self.protocol.streams and not self.reserved:
            self.idle_since = time.monotonic()
        self._on_change(self)

    def _state_changed(self) -> None:
        self._on_change(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.origin} {self.state} streams={len(self.protocol.streams)}>"


class _StreamChannel:
    """The write side of a stream handed over by CONNECT (RFC 9113 section 8.5, RFC 8441)."""

    __slots__ = ("_protocol", "_stream")

    def __init__(self, protocol: StreamProtocol[Any], stream: Any) -> None:
        self._protocol = protocol
        self._stream = stream

    async def send(self, data: bytes, timeout: float | None) -> None:
        stream = self._stream
        if stream.closed:
            raise StreamClosed("the CONNECT stream was reset or closed")
        await self._protocol.send_body(stream, data, timeout)

    def close(self) -> None:
        stream = self._stream
        if stream.closed:
            return
        if stream.ended:
            self._protocol.end_request(stream)  # both sides done: END_STREAM
        else:
            self._protocol.cancel(stream, StreamClosed("the network stream was closed"))

    def extra_info(self, name: str) -> object:
        return self._protocol.extra_info(name)
