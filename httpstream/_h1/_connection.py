"""One HTTP/1.1 connection as the pool sees it: handle_request and the release rules.

States (``state``), owned by the pool's bookkeeping:

    ACTIVE   a request is in flight (reserved for it by the pool)
    IDLE     free for the next request (keep-alive)
    DRAINING the caller closed a body early; the small remainder is being read
             off (event-driven: the protocol discards it as it arrives, with a
             deadline timer, so no task is needed) and the connection then goes
             back to IDLE
    CLOSED   gone for good

Release rules (DESIGN.md, lifecycle table, HTTP/1.1 column):
- body fully received: IDLE at once, even if the caller has not read the buffered
  tail yet;
- ``aclose()`` with a known remainder <= ``Limits.max_drain_bytes``: DRAINING,
  then IDLE; a larger or unknown (chunked, close-delimited) remainder: CLOSED;
- the caller cancelled while waiting for the head, or while sending the body:
  CLOSED (the connection's state is unknown);
- the stream dropped unclosed: ``ResponseStream.__del__`` warns and runs the same
  release as ``aclose()``;
- ``Expect: 100-continue`` answered with a final status before ``100 Continue``:
  the body is never sent, and the connection is CLOSED after that response.

``Expect: 100-continue`` (RFC 9110 section 10.1.1): the head goes out alone, then
the body follows ``100 Continue`` or, when no answer came within
``Timeout.expect`` seconds, follows anyway.  Requests without the header take the
usual path, with no extra wait and no extra write.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING, Final

from .._config import Limits
from .._exceptions import HTTPStreamError, LocalProtocolError, ReadError, StreamClosed
from .._models import Request, Response
from .._streams import ResponseStream, wait_for_continue
from ._protocol import DIRECT, Exchange, H1Protocol, serialize_head

if TYPE_CHECKING:
    from .._urls import Origin

__all__ = ["HTTP11Connection"]

ACTIVE: Final = "active"
IDLE: Final = "idle"
DRAINING: Final = "draining"
CLOSED: Final = "closed"

# Bodies up to this size are written together with the head in one send.
_COALESCE = 64 * 1024
# A request target (RFC 9112 section 3.2): visible ASCII, no spaces or controls.
_TARGET = re.compile(r"[\x21-\x7e]+")



class HTTP11Connection:
    """An HTTP/1.1 connection; one exchange at a time."""

    multiplexed = False
    http_version = "HTTP/1.1"

    def __init__(
        self,
        origin: Origin,
        key: tuple[object, ...],
        *,
        limits: Limits,
        on_change: Callable[[HTTP11Connection], None],
    ) -> None:
        self.origin = origin
        self.key = key
        self.state: str = ACTIVE
        self.requests = 0
        self.idle_since = time.monotonic()
        self._limits = limits
        self._on_change = on_change
        self.protocol = H1Protocol(limits=limits, on_exchange_done=self._exchange_done, on_lost=self._lost)

    # -- the pool's view ---------------------------------------------------------
    @property
    def is_idle(self) -> bool:
        return self.state == IDLE

    @property
    def is_closed(self) -> bool:
        return self.state == CLOSED

    def is_usable(self) -> bool:
        """Idle and still open: the stale check done before reuse."""
        return self.state == IDLE and self.protocol.is_usable

    def reserve(self) -> None:
        self.state = ACTIVE

    def active_streams(self) -> int:
        return 1 if self.state in (ACTIVE, DRAINING) else 0

    def close(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self.protocol.close()

    def __repr__(self) -> str:
        return f"<HTTP11Connection {self.origin} {self.state} requests={self.requests}>"

    # -- one exchange ------------------------------------------------------------
    async def handle_request(self, request: Request) -> Response:
        timeout = request.timeout
        read_timeout = timeout.read if timeout is not None else None
        write_timeout = timeout.write if timeout is not None else None
        proto = self.protocol
        ex = Exchange(
            request.method,
            reused=self.requests > 0,
            read_timeout=read_timeout,
            max_header_bytes=self._limits.max_header_bytes,
        )
        self.requests += 1
        proto.start(ex)
        try:
            target = request.extensions.get("target")  # absolute-form, set by the pool for a forward proxy
            if target is not None and not (isinstance(target, str) and _TARGET.fullmatch(target)):
                raise LocalProtocolError(f"invalid request target {target!r}: visible ASCII without spaces only")
            head = serialize_head(request.method, target or request.url.target, request.headers)
            content = request.content
            if content is None:
                proto.write(head)
                ex.request_sent = True
            else:
                expect = None if content == b"" else request.expect_continue_timeout()
                if expect is None:
                    await self._send_body(request, content, ex, head, write_timeout)
                else:
                    proto.write(head)
                    if await wait_for_continue(ex, expect):
                        await self._send_body(request, content, ex, b"", write_timeout)
                    else:
                        # The final answer came before 100 Continue: the body is
                        # never sent.  Our head announced it (Content-Length or
                        # chunked), so the request message stays incomplete and
                        # the server may still read our next bytes as that body:
                        # the connection is closed once the response is over
                        # (RFC 9112 section 9.3; ``request_sent`` stays False).
                        ex.reusable = False
            proto.arm_head_timer(ex)
            head_info, buffer = await ex.head_waiter
        except BaseException as exc:
            waiter = ex.head_waiter
            if (
                isinstance(exc, HTTPStreamError)
                and waiter.done()
                and not waiter.cancelled()
                and waiter.exception() is None
            ):
                # The server answered before taking the whole body (413, say):
                # hand back its answer; the connection is not reused.
                ex.reusable = False
                head_info, buffer = waiter.result()
            else:
                reason = exc if isinstance(exc, HTTPStreamError) else ReadError("request cancelled")
                proto.fail(ex, reason)
                if waiter.done() and not waiter.cancelled():
                    waiter.exception()  # retrieved: no "never retrieved" warning
                raise
        stream = ResponseStream(buffer, lambda: self._release(ex))
        response = Response(
            head_info.status_code,
            headers=head_info.headers,
            http_version=head_info.http_version,
            reason_phrase=head_info.reason,
            request=request,
            stream=stream,
        )
        response.trailers = ex.trailers  # filled in place when a chunked body ends
        return response

    async def _send_body(
        self,
        request: Request,
        content: bytes | AsyncIterable[bytes],
        ex: Exchange,
        head: bytes,
        write_timeout: float | None,
    ) -> None:
        """Write ``head`` (empty when already sent) and the body."""
        proto = self.protocol
        if isinstance(content, bytes):
            if len(content) <= _COALESCE:
                proto.write(head + content)
            else:
                if head:
                    proto.write(head)
                proto.write(content)
            ex.request_sent = True
            await proto.drain(write_timeout)
        else:
            if head:
                proto.write(head)
            await self._send_stream(request, ex, write_timeout)

    async def _send_stream(self, request: Request, ex: Exchange, write_timeout: float | None) -> None:
        proto = self.protocol
        content = request.content
        assert content is not None and not isinstance(content, bytes)
        chunked = request.headers.has(b"transfer-encoding")
        declared = None if chunked else int(request.headers.get_raw(b"content-length")[0])
        sent = 0
        async for chunk in content:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise LocalProtocolError(f"request body iterator yielded {type(chunk).__name__}, not bytes")
            if not chunk:
                continue
            if ex.head_waiter.done():
                break  # the server already answered; stop uploading
            sent += len(chunk)
            if chunked:
                proto.write(b"%x\r\n" % len(chunk) + bytes(chunk) + b"\r\n")
            else:
                assert declared is not None
                if sent > declared:
                    raise LocalProtocolError(
                        f"request body is longer than its Content-Length ({declared} bytes)"
                    )
                proto.write(bytes(chunk))
            await proto.drain(write_timeout)
        if ex.head_waiter.done():
            ex.reusable = False
            return
        if chunked:
            proto.write(b"0\r\n\r\n")
        elif declared is not None and sent != declared:
            raise LocalProtocolError(
                f"request body ended after {sent} bytes but its Content-Length is {declared}"
            )
        ex.request_sent = True
        await proto.drain(write_timeout)

    # -- callbacks (synchronous) ----------------------------------------------------
    def _exchange_done(self, ex: Exchange, reusable: bool) -> None:
        if self.state == CLOSED:
            return
        if reusable:
            self.state = IDLE
            self.idle_since = time.monotonic()
        else:
            self.state = CLOSED
            self.protocol.close()
        self._on_change(self)

    def _lost(self) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self._on_change(self)

    def _release(self, ex: Exchange) -> None:
        """The caller closed the body (or dropped it): the release rule."""
        if ex.done:
            return
        remaining = ex.remaining if ex.mode == DIRECT else None
        if (
            remaining is not None
            and remaining <= self._limits.max_drain_bytes
            and ex.reusable
            and ex.request_sent
            and self.state == ACTIVE
            and self.protocol.is_usable
            # A body that failed (a read timeout on a stalled server) is not
            # worth draining: the rest is unlikely to come within the deadline.
            and not (ex.buffer is not None and ex.buffer.failed)
        ):
            self.state = DRAINING
            self.protocol.begin_drain(ex)
            self._on_change(self)
            return
        self.protocol.fail(ex, StreamClosed())
