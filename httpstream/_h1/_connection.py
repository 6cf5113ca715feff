"""One HTTP/1.1 connection as the pool sees it: handle_request and the release rules.

States (``state``), owned by the pool's bookkeeping:

    ACTIVE   a request is in flight (reserved for it by the pool)
    IDLE     free for the next request (keep-alive)
    DRAINING the caller closed a body early; the small remainder is being read
             off (event-driven: the protocol discards it as it arrives, with a
             deadline timer, so no task is needed) and the connection then goes
             back to IDLE
    DETACHED handed over as a raw network stream (101 to an Upgrade, 2xx to
             CONNECT): the caller owns it, the pool forgets it
    CLOSED   gone for good

Full duplex: ``handle_request`` returns at the response head.  A body that
cannot go out at once (a stream, bytes the transport did not take in one
write, a body held back for ``100 Continue``) is sent by an ``Upload`` in the
background, and the head timer (the read timeout) starts when it ends, as
it would for a request sent first.  An upload that fails before the head
fails the request with its error; after the head it fails the response
body.  When the answer is complete before the upload (an early 4xx, say;
RFC 9112 section 9.5), the upload stops and the connection closes, unless
the rest of a Content-Length body is no more than ``Limits.max_drain_bytes``:
then it is sent (within ``Limits.drain_timeout``) and the connection kept.

Release rules (DESIGN.md, lifecycle table, HTTP/1.1 column):
- body fully received (and the request fully sent): IDLE at once, even if
  the caller has not read the buffered tail yet;
- ``aclose()`` with a known remainder <= ``Limits.max_drain_bytes``: DRAINING,
  then IDLE; a larger or unknown (chunked, close-delimited) remainder, or an
  upload still running: CLOSED;
- the caller cancelled while waiting for the head: CLOSED (the connection's
  state is unknown);
- the stream dropped unclosed: ``ResponseStream.__del__`` warns and runs the same
  release as ``aclose()``;
- ``Expect: 100-continue`` answered with a final status before ``100 Continue``:
  the body is never sent, and the connection is CLOSED after that response.

``Expect: 100-continue`` (RFC 9110 section 10.1.1): the head goes out alone, then
the body follows ``100 Continue`` or, when no answer came within
``Timeout.expect`` seconds, follows anyway.

A ``CONNECT`` request with ``extensions["protocol"]`` (RFC 8441's extended
CONNECT, made for HTTP/2) becomes the classic Upgrade handshake here (RFC 9110
section 7.8): ``GET`` with ``Upgrade`` and ``Connection: Upgrade``, and for
``websocket`` a ``Sec-WebSocket-Key`` whose ``Sec-WebSocket-Accept`` is checked
(RFC 6455 section 4.1), so a caller need not know which protocol the pool
picked: either way a success carries ``extensions["network_stream"]``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING, Final

from .._config import Limits, Timeout
from .._exceptions import HTTPStreamError, LocalProtocolError, ReadError, RemoteProtocolError, StreamClosed
from .._headers import Headers
from .._interfaces import CLOSE_GRACE, ConnectionInfo
from .._models import Request, Response
from .._network import NetworkStream, TransportChannel
from .._streams import ResponseStream, Upload, upload_failure, wait_for_continue
from ._protocol import DIRECT, RAW, Exchange, H1Protocol, serialize_head

if TYPE_CHECKING:
    from .._net import Connected
    from .._urls import Origin

__all__ = ["HTTP11Connection"]

ACTIVE: Final = "active"
IDLE: Final = "idle"
DRAINING: Final = "draining"
DETACHED: Final = "detached"
CLOSED: Final = "closed"

# Bodies up to this size are written together with the head in one send.
_COALESCE = 64 * 1024
_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HTTP11Connection:
    """An HTTP/1.1 connection; one exchange at a time."""

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
        self._upload: Upload | None = None
        self._upload_headers = Headers()  # the head of the request whose body is going up
        self._holding = False  # its body is held back for 100 Continue
        self._finishing: asyncio.TimerHandle | None = None  # deadline of an upload outliving its answer
        self.protocol = H1Protocol(limits=limits, on_exchange_done=self._exchange_done, on_lost=self._lost)

    def start(self, connected: Connected) -> bool:
        """Take over the freshly opened transport; False if it is already gone."""
        connected.handoff.hand_to(self.protocol)
        return self.state != CLOSED and self.protocol.is_usable

    # -- the pool's view (the Connection interface) --------------------------------
    def is_available(self) -> bool:
        return self.state == IDLE and self.protocol.is_usable and not self._expired(time.monotonic())

    def is_full(self) -> bool:
        return False  # the pool opens another connection rather than wait for a busy one

    def is_idle(self) -> bool:
        return self.state == IDLE

    def is_closed(self) -> bool:
        return self.state in (CLOSED, DETACHED)

    def has_expired(self, now: float) -> bool:
        return self.state == IDLE and (not self.protocol.is_usable or self._expired(now))

    def _expired(self, now: float) -> bool:
        expiry = self._limits.keepalive_expiry
        return expiry is not None and now - self.idle_since >= expiry

    def reserve(self) -> None:
        self.state = ACTIVE

    def unreserve(self) -> None:
        if self.state != ACTIVE:
            return
        if self.requests == 0:
            self.close()  # fresh and never used: not worth a keep-alive slot
        else:
            self.state = IDLE
            self.idle_since = time.monotonic()
        self._on_change(self)

    async def check(self) -> bool:
        return True  # the stale check (is_available) looked already; nothing to ping

    def close(self) -> None:
        if self.state in (CLOSED, DETACHED):
            return
        self.state = CLOSED
        self._stop_upload()
        self.protocol.close()

    async def aclose(self) -> None:
        self.close()
        if self.state == DETACHED:
            return
        protocol = self.protocol
        if not protocol.lost:
            await asyncio.wait([protocol.lost_future], timeout=CLOSE_GRACE)
            if not protocol.lost:
                protocol.abort()

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            http_version="HTTP/1.1",
            state=CLOSED if self.state == DETACHED else self.state,
            streams=1 if self.state in (ACTIVE, DRAINING) else 0,
            requests=self.requests,
            idle_since=self.idle_since,
            socket_open=self.state != DETACHED and not self.protocol.lost,
        )

    def __repr__(self) -> str:
        return f"<HTTP11Connection {self.origin} {self.state} requests={self.requests}>"

    # -- one exchange ------------------------------------------------------------
    async def handle_request(self, request: Request, timeout: Timeout) -> Response:
        proto = self.protocol
        method = request.method
        headers = request.headers
        extensions = request.extensions
        websocket_key: bytes | None = None
        upgrade = headers.has(b"upgrade")
        protocol_name = extensions.get("protocol") if method == "CONNECT" else None
        if protocol_name is not None:
            method, headers, websocket_key = _as_upgrade(protocol_name, headers)
            upgrade = True
        hook = extensions.get("on_informational")
        ex = Exchange(
            method,
            reused=self.requests > 0,
            read_timeout=timeout.read,
            max_header_bytes=self._limits.max_header_bytes,
            upgrade=upgrade,
            on_informational=hook if callable(hook) else None,
        )
        self.requests += 1
        proto.start(ex)
        try:
            head = serialize_head(method, request.target, headers)
            self._send(request, headers, ex, head, timeout.write)
            head_info, buffer = await ex.head_waiter
        except BaseException as exc:
            self._stop_upload()
            waiter = ex.head_waiter
            proto.fail(ex, exc if isinstance(exc, HTTPStreamError) else ReadError("request cancelled"))
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # retrieved: no "never retrieved" warning
            raise
        raw = ex.mode == RAW
        response = Response(
            head_info.status_code,
            headers=head_info.headers,
            http_version=head_info.http_version,
            reason_phrase=head_info.reason,
            request=request,
            stream=None if raw else ResponseStream(buffer, lambda: self._release(ex)),
        )
        if raw:
            self._detach()
            if websocket_key is not None:
                _check_accept(websocket_key, head_info.headers, proto)
            response.extensions["network_stream"] = NetworkStream(buffer, TransportChannel(proto))
            return response
        response.trailers = ex.trailers  # filled in place when a chunked body ends
        if ex.upload is not None:
            response.extensions["upload"] = ex.upload
        return response

    def _send(self, request: Request, headers: Headers, ex: Exchange, head: bytes, write_timeout: float | None) -> None:
        """Write what can go at once; start an ``Upload`` for the rest."""
        proto = self.protocol
        content = request.content
        chunked = headers.has(b"transfer-encoding")
        if content is None or content == b"":
            proto.write(head + (_last_chunk(request.trailers) if chunked else b""))
            ex.request_sent = True
            proto.arm_head_timer(ex)
            return
        expect = request.expect_continue_timeout()
        if isinstance(content, bytes) and expect is None:
            data = _chunk(content) + _last_chunk(request.trailers) if chunked else content
            if len(data) <= _COALESCE:
                proto.write(head + data)
            else:
                proto.write(head)
                proto.write(data)
            if not proto.write_paused:
                ex.request_sent = True
                proto.arm_head_timer(ex)
                return
            written: int | None = len(content)  # in the transport's buffer: only the wait to drain is left
        else:
            proto.write(head)
            written = None

        async def send(upload: Upload) -> bool:
            return await self._upload_body(upload, request, ex, written, expect, chunked, write_timeout)

        self._holding = expect is not None  # the body waits for 100 Continue
        upload = Upload(send, lambda exc: self._upload_failed(ex, exc))
        ex.upload = self._upload = upload
        self._upload_headers = headers

    async def _upload_body(
        self,
        upload: Upload,
        request: Request,
        ex: Exchange,
        written: int | None,
        expect: float | None,
        chunked: bool,
        write_timeout: float | None,
    ) -> bool:
        """The background half of sending: what ``_send`` could not write at once.

        ``written``: the body's size when ``_send`` wrote all of it already.
        """
        proto = self.protocol
        if expect is not None and not await wait_for_continue(ex, expect):
            self._holding = False
            # The final answer came before 100 Continue: the body is never sent.
            # Our head announced it (Content-Length or chunked), so the message
            # stays incomplete and the server may read our next bytes as that
            # body: the connection is closed after the response (RFC 9112
            # section 9.3; ``request_sent`` stays False).
            ex.reusable = False
            self._upload_done(ex, sent=False)
            return False
        self._holding = False
        content = request.content
        if written is None and isinstance(content, bytes):
            proto.write(_chunk(content) + _last_chunk(request.trailers) if chunked else content)
            written = len(content)
        if written is not None:
            upload.bytes_sent = written
            await proto.drain(write_timeout)
        else:
            assert content is not None and not isinstance(content, bytes)
            await self._send_stream(upload, request, content, chunked, write_timeout)
        ex.request_sent = True
        self._upload_done(ex, sent=True)
        return True

    async def _send_stream(
        self,
        upload: Upload,
        request: Request,
        content: AsyncIterable[bytes],
        chunked: bool,
        write_timeout: float | None,
    ) -> None:
        proto = self.protocol
        declared = None if chunked else int(request.headers.get_raw(b"content-length")[0])
        sent = 0
        async for chunk in content:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise LocalProtocolError(f"request body iterator yielded {type(chunk).__name__}, not bytes")
            if not chunk:
                continue
            size = len(chunk)
            sent += size
            if chunked:
                proto.write(b"%x\r\n" % size + bytes(chunk) + b"\r\n")
            else:
                assert declared is not None
                if sent > declared:
                    raise LocalProtocolError(f"request body is longer than its Content-Length ({declared} bytes)")
                proto.write(bytes(chunk))
            upload.bytes_sent = sent
            await proto.drain(write_timeout)
        if chunked:
            proto.write(_last_chunk(request.trailers))
        elif declared is not None and sent != declared:
            raise LocalProtocolError(f"request body ended after {sent} bytes but its Content-Length is {declared}")
        await proto.drain(write_timeout)

    def _upload_done(self, ex: Exchange, *, sent: bool) -> None:
        """The upload ended (``sent``: all of it): start the head timer, or settle the connection."""
        self._upload = None
        if not ex.done:
            if sent:
                self.protocol.arm_head_timer(ex)
            return
        if self._finishing is not None:
            # The answer was complete already and the small rest was worth sending.
            self._finishing.cancel()
            self._finishing = None
            if self.state != ACTIVE:
                return
            if sent:
                self.state = IDLE
                self.idle_since = time.monotonic()
            else:
                self.state = CLOSED
                self.protocol.close()
            self._on_change(self)

    def _upload_failed(self, ex: Exchange, exc: BaseException) -> None:
        self._upload = None
        if not ex.head_waiter.done():
            self.protocol.fail(ex, exc)  # the request fails with the body's own error
        elif not ex.done:
            self.protocol.fail(ex, upload_failure(exc))
        else:
            self.close()  # the answer is complete; the connection is not
            self._on_change(self)

    def _stop_upload(self) -> None:
        upload, self._upload = self._upload, None
        if upload is not None:
            upload.stop()
        if self._finishing is not None:
            self._finishing.cancel()
            self._finishing = None

    # -- callbacks (synchronous) ----------------------------------------------------
    def _exchange_done(self, ex: Exchange, reusable: bool) -> None:
        """The response ended (``reusable``: its framing and the peer allow reuse)."""
        if self.state in (CLOSED, DETACHED):
            return
        upload = self._upload
        if reusable and upload is not None and not upload.done and not self._holding:
            # RFC 9112 section 9.5: the answer is complete before the request.
            rest = _rest(self._upload_headers, upload)
            if rest is not None and rest <= self._limits.max_drain_bytes and self.protocol.is_usable:
                self._finishing = asyncio.get_running_loop().call_later(
                    self._limits.drain_timeout, self._finish_expired
                )
                return  # stays ACTIVE until the rest is sent
            reusable = False
        if reusable and ex.request_sent:
            self.state = IDLE
            self.idle_since = time.monotonic()
        else:
            self.state = CLOSED
            self._stop_upload()
            self.protocol.close()
        self._on_change(self)

    def _finish_expired(self) -> None:
        self._finishing = None
        self.close()
        self._on_change(self)

    def _lost(self) -> None:
        if self.state not in (CLOSED, DETACHED):
            self.state = CLOSED
            self._stop_upload()
            self._on_change(self)

    def _detach(self) -> None:
        self.state = DETACHED
        self._upload = None
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


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n" if data else b""


def _last_chunk(trailers: Headers | None) -> bytes:
    """The last chunk and the trailer section (RFC 9112 section 7.1.2)."""
    if not trailers:
        return b"0\r\n\r\n"
    return b"0\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in trailers.raw) + b"\r\n"


def _rest(headers: Headers, upload: Upload) -> int | None:
    """Request body bytes still to send, when the framing says (Content-Length)."""
    if headers.has(b"transfer-encoding"):
        return None
    values = headers.get_raw(b"content-length")
    if not values or not values[0].isdigit():
        return None
    return max(0, int(values[0]) - upload.bytes_sent)


def _as_upgrade(protocol: object, headers: Headers) -> tuple[str, Headers, bytes | None]:
    """An extended CONNECT (RFC 8441) as the HTTP/1.1 Upgrade handshake it stands for."""
    if not isinstance(protocol, str) or not protocol or any(c in protocol for c in " \t\r\n,"):
        raise LocalProtocolError(f"invalid extended CONNECT protocol {protocol!r}")
    upgraded = headers.copy()
    upgraded.setdefault_raw(b"Upgrade", protocol.encode("ascii"))
    upgraded.setdefault_raw(b"Connection", b"Upgrade")
    key = None
    if protocol.lower() == "websocket":
        upgraded.setdefault_raw(b"Sec-WebSocket-Version", b"13")
        if not upgraded.has(b"sec-websocket-key"):
            key = base64.b64encode(os.urandom(16))
            upgraded.setdefault_raw(b"Sec-WebSocket-Key", key)
    return "GET", upgraded, key


def _check_accept(key: bytes, headers: Headers, protocol: H1Protocol) -> None:
    """RFC 6455 section 4.1: the 101 must prove the server read our key."""
    expected = base64.b64encode(hashlib.sha1(key + _WEBSOCKET_GUID).digest())
    got = headers.get_raw(b"sec-websocket-accept")
    if got != [expected]:
        protocol.abort()
        raise RemoteProtocolError(f"the WebSocket upgrade answer has Sec-WebSocket-Accept {got!r}, not {expected!r}")
