"""One HTTP/2 connection as the pool sees it: many streams, the HTTP/2 release rules.

States (``state``), as the pool counts them: ACTIVE while a stream is open or
reserved, IDLE with none, CLOSED once gone or after GOAWAY with no stream left.
``is_usable()`` says whether a new stream may start now: not closed, no GOAWAY,
fewer open (and reserved) streams than the peer's SETTINGS_MAX_CONCURRENT_STREAMS
and our own ``Limits.max_concurrent_streams``.

Release rules (DESIGN.md, HTTP/2 column):
- body read to the end: the stream ends and its slot is free;
- ``aclose()`` early, or the caller cancelled: RST_STREAM(CANCEL), the unread
  bytes' credit goes back to the connection window, the connection stays usable;
- a response dropped unclosed: ResourceWarning, then the same reset;
- ``Expect: 100-continue`` (RFC 9110 section 10.1.1): HEADERS go without
  END_STREAM and the body waits for ``100 Continue`` (or ``Timeout.expect``); a
  final answer that comes first is handed over and the body is never sent: our
  side ends with RST_STREAM(NO_ERROR) once that answer is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._config import Limits
from .._exceptions import HTTPStreamError, ReadError
from .._headers import multiplexed_request_fields
from .._models import Request, Response
from .._multiplexed import MultiplexedConnection
from .._streams import ResponseStream, send_request_body, wait_for_continue
from ._protocol import H2Protocol

if TYPE_CHECKING:
    from .._urls import Origin

__all__ = ["HTTP2Connection"]


class HTTP2Connection(MultiplexedConnection[H2Protocol]):
    """An HTTP/2 connection multiplexing many requests."""

    http_version = "HTTP/2"

    def __init__(
        self,
        origin: Origin,
        key: tuple[object, ...],
        *,
        limits: Limits,
        on_change: Callable[[HTTP2Connection], None],
    ) -> None:
        super().__init__(origin, key, on_change)
        self._limits = limits
        self.protocol = H2Protocol(limits=limits, on_stream_closed=self._stream_closed, on_state=self._state_changed)

    def _protocol_gone(self) -> bool:
        # A GOAWAY ends the connection once its last stream is done.
        return self.protocol.lost or (self.protocol.goaway and not self.protocol.streams)

    def _can_open(self) -> bool:
        return len(self.protocol.streams) + self.reserved < self.protocol.max_streams

    # -- one request ---------------------------------------------------------------------------
    async def handle_request(self, request: Request) -> Response:
        self.reserved = max(0, self.reserved - 1)
        self.requests += 1
        proto = self.protocol
        if not proto.is_usable:
            error = proto.error or ReadError("the HTTP/2 connection is closing")
            from .._exceptions import StaleConnection

            self._on_change(self)
            raise StaleConnection(f"HTTP/2 connection unusable before the request was sent: {error}")
        timeout = request.timeout
        read_timeout = timeout.read if timeout is not None else None
        write_timeout = timeout.write if timeout is not None else None
        url = request.url
        host = request.headers.get_raw(b"host")
        authority = host[0] if host else url.netloc.encode("ascii")
        headers = multiplexed_request_fields(request.method, url.scheme, authority, url.target, request.headers)
        content = request.content
        if proto.h2.open_outbound_streams >= proto.h2.remote_settings.max_concurrent_streams:
            await proto.wait_for_stream_slot(timeout.pool if timeout is not None else None)
        stream = proto.open_stream(request.method, read_timeout)
        try:
            no_body = content is None or content == b""
            proto.send_headers(stream, headers, end_stream=no_body)
            expect = None if no_body else request.expect_continue_timeout()
            if expect is None or await wait_for_continue(stream, expect):
                if content is not None:
                    await send_request_body(proto, stream, content, write_timeout)
            elif stream.ended:
                # The whole final answer came before 100 Continue: the body is
                # not sent; our side ends with RST_STREAM(NO_ERROR).  An answer
                # still arriving is ended the same way when the caller releases
                # it (END_STREAM now would announce an empty body).
                proto.end_request(stream)
            proto.arm_head_timer(stream)
            status, fields = await stream.head_waiter
        except BaseException as exc:
            waiter = stream.head_waiter
            if (
                isinstance(exc, HTTPStreamError)
                and waiter.done()
                and not waiter.cancelled()
                and waiter.exception() is None
            ):
                status, fields = waiter.result()  # answered before the body was all sent
                proto.end_request(stream)
            else:
                reason = exc if isinstance(exc, HTTPStreamError) else ReadError("request cancelled")
                proto.cancel(stream, reason)
                if waiter.done() and not waiter.cancelled():
                    waiter.exception()
                raise
        buffer = stream.buffer
        assert buffer is not None
        response = Response(
            status,
            headers=fields,
            http_version="HTTP/2",
            request=request,
            stream=ResponseStream(buffer, lambda: proto.release(stream)),
        )
        response.trailers = stream.trailers
        return response

    # -- callbacks (synchronous) ------------------------------------------------------------------
