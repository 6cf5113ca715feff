"""The asyncio Protocol of one HTTP/1.1 connection.

Theory of operation
-------------------
Push model: ``data_received`` parses what arrived and hands it on at once; there
is no reader task.  One ``Exchange`` (request + response) is in flight at a time.
It moves through the modes

    HEAD ──> DIRECT (Content-Length or close-delimited body) ──> DONE
         └─> CHUNKED (ChunkedBody reads the framing) ─────────> DONE

h11 parses every response head and trailer section: its head reader (status
line and header fields, with obs-fold unfolding and the Content-Length /
Transfer-Encoding checks against smuggling) and its trailer reader run on a
ReceiveBuffer of ours.  The chunk framing itself (size lines, data, CRLFs) is
read by ``ChunkedBody`` below, because h11's chunk-size rule refuses the
whitespace RFC 9112 allows before a chunk extension.  We do not run h11's
connection state machine: it would cost more than the parsing (a request event
to build and check, state transitions on every event) and we decide framing
and keep-alive ourselves, as RFC 9112 says (sections 6.3 and 9.3): HTTP/1.1, no
``Connection: close``, a body whose end was known from its framing, no bytes
beyond it, the request fully sent.  These h11 readers are not public API: every
use of them is in ``_internals.py``, which checks h11's version at import.

Line endings (RFC 9112 section 2.2): a head or trailer line ending in a bare LF
is accepted, as that section allows a recipient to and as h11 does; the chunk
framing lines must end in CRLF (section 7.1 has no such allowance, and a
lenient chunk parser is a classic request-smuggling disagreement).  A bare CR
is refused everywhere.

A body framed by Content-Length (or by the close of the connection) bypasses
h11: the bytes that ``data_received`` gets are counted and passed to the body
buffer as they are, with no copy, which is what lets a 1 GiB download run at
socket speed.

Backpressure: the body buffer calls ``pause``/``resume`` at its water marks and we
pause/resume reading the socket; on the write side ``pause_writing`` /
``resume_writing`` gate ``drain()``.  Every wait has a ``call_later`` deadline.

Errors are converted here, where h11 is called: h11's ``ProtocolError`` becomes
our ``RemoteProtocolError``; a connection lost mid-message becomes
``RemoteProtocolError`` (clean close) or ``ReadError`` (reset) on whoever waits,
so a short body is never presented as complete.  Over TLS, a body delimited by
the close counts as complete only when close_notify came first (RFC 9112
section 9.8; see ``eof_received``).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from typing import Final

import h11

from .._config import Limits
from .._exceptions import (
    IncompleteBody,
    LocalProtocolError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    StaleConnection,
    WriteError,
    WriteTimeout,
)
from .._headers import Headers
from .._streams import BodyBuffer, Upload, wake
from ._internals import ReceiveBuffer, TrailerReader, header_triples, read_response_head, trailer_reader

__all__ = ["Exchange", "H1Protocol", "ResponseHead"]

HEAD: Final = 0
DIRECT: Final = 1
CHUNKED: Final = 2
DONE: Final = 3
RAW: Final = 4  # after 101 to an Upgrade or 2xx to CONNECT: bytes, not HTTP


class ResponseHead:
    __slots__ = ("status_code", "reason", "http_version", "headers", "content_length")

    def __init__(
        self, status_code: int, reason: str, http_version: str, headers: Headers, content_length: int | None
    ) -> None:
        self.status_code = status_code
        self.reason = reason
        self.http_version = http_version
        self.headers = headers
        self.content_length = content_length


class Exchange:
    """One request/response on the connection, as the protocol sees it."""

    __slots__ = (
        "method",
        "buf",
        "chunked",
        "mode",
        "head_waiter",
        "head_timer",
        "buffer",
        "remaining",
        "content_length",
        "received",
        "reusable",
        "request_sent",
        "upgrade",
        "on_informational",
        "upload",
        "reused",
        "draining",
        "drain_timer",
        "informational",
        "trailers",
        "read_timeout",
        "error",
        "continue_waiter",
    )

    def __init__(
        self,
        method: str,
        *,
        reused: bool,
        read_timeout: float | None,
        max_header_bytes: int,
        upgrade: bool = False,
        on_informational: Callable[[int, Headers], None] | None = None,
    ) -> None:
        self.upgrade = upgrade  # the request asked for an Upgrade: a 101 is its final answer
        self.on_informational = on_informational
        self.upload: Upload | None = None
        self.method = method
        self.buf = ReceiveBuffer()
        self.chunked: ChunkedBody | None = None
        self.mode = HEAD
        self.head_waiter: asyncio.Future[tuple[ResponseHead, BodyBuffer]] = asyncio.get_running_loop().create_future()
        self.head_timer: asyncio.TimerHandle | None = None
        self.buffer: BodyBuffer | None = None
        self.remaining: int | None = None
        self.content_length: int | None = None
        self.received = 0
        self.reusable = True
        self.request_sent = False
        self.reused = reused
        self.draining = False
        self.drain_timer: asyncio.TimerHandle | None = None
        self.informational = 0
        self.trailers = Headers()
        self.read_timeout = read_timeout
        self.error: BaseException | None = None
        # Set while the request waits for "100 Continue" (Expect: 100-continue);
        # resolved by the 100, by the final answer, by a failure or by the timer.
        self.continue_waiter: asyncio.Future[None] | None = None

    @property
    def done(self) -> bool:
        return self.mode == DONE


# RFC 9112 section 7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF, with
#   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
# BWS may precede the first ";" and "a recipient MUST parse for such bad
# whitespace" (RFC 9110 section 5.6.3).  Extensions carry nothing we use, so,
# as h11 does, anything after the ";" up to the CRLF is skipped.  16 hex digits
# cap a chunk at 2**64 - 1 bytes.
_CHUNK_HEADER: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r\n")


class ChunkedBody:
    """Incremental reader of a chunked body: data pieces, then the end with its trailers.

    Called with the connection's ReceiveBuffer whenever bytes arrive; returns
    the next piece of body data (bytes), the end of the message (an
    ``h11.EndOfMessage`` carrying the trailer fields), or None when more bytes
    are needed.  Malformed framing raises ``RemoteProtocolError``, and so does a
    chunk-size line or trailer section longer than ``max_bytes`` (the protocol
    caps them while they are incomplete; this caps them once complete, as a
    line that ends within one read could otherwise be of any length).
    """

    __slots__ = ("_max_bytes", "_left", "_crlf", "_trailers")

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._left = 0  # bytes of the current chunk still to come
        self._crlf = False  # the CRLF after a chunk's data is due
        self._trailers: TrailerReader | None = None

    def __call__(self, buf: ReceiveBuffer) -> bytes | h11.EndOfMessage | None:
        if self._trailers is not None:
            return self._trailer_section(buf)
        if self._crlf:
            if len(buf) < 2:
                return None
            end = bytes(buf.maybe_extract_at_most(2) or b"")
            if end != b"\r\n":
                raise RemoteProtocolError(f"malformed chunked body: chunk data not followed by CRLF ({end!r})")
            self._crlf = False
        if self._left == 0:
            line = buf.maybe_extract_next_line()
            if line is None:
                return None
            if len(line) > self._max_bytes:
                raise RemoteProtocolError(
                    f"chunk header line of {len(line)} bytes is longer than the limit of {self._max_bytes} bytes "
                    "(Limits.max_header_bytes)"
                )
            match = _CHUNK_HEADER.fullmatch(line)
            if match is None:
                raise RemoteProtocolError(f"malformed chunked body: illegal chunk header {bytes(line[:100])!r}")
            self._left = int(match[1], 16)
            if self._left == 0:
                # The last chunk: a trailer section follows (section 7.1.2), a
                # field section that h11's reader parses as it does a head.
                self._trailers = trailer_reader()
                return self._trailer_section(buf)
        data = buf.maybe_extract_at_most(self._left)
        if data is None:
            return None
        self._left -= len(data)
        self._crlf = self._left == 0
        return bytes(data)

    def _trailer_section(self, buf: ReceiveBuffer) -> h11.EndOfMessage | None:
        assert self._trailers is not None
        before = len(buf)
        event = self._trailers(buf)
        assert event is None or type(event) is h11.EndOfMessage
        if event is not None and before - len(buf) > self._max_bytes:
            raise RemoteProtocolError(
                f"trailer section of {before - len(buf)} bytes is larger than the limit of {self._max_bytes} bytes "
                "(Limits.max_header_bytes)"
            )
        return event


class H1Protocol(asyncio.Protocol):
    """Bytes in, events out, for one HTTP/1.1 connection."""

    def __init__(
        self,
        *,
        limits: Limits,
        on_exchange_done: Callable[[Exchange, bool], None],
        on_lost: Callable[[], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._limits = limits
        self._on_exchange_done = on_exchange_done
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.lost = False
        # Resolved by connection_lost: the pool's aclose() waits on it (bounded)
        # so a TLS close_notify exchange finishes before the caller moves on.
        self.lost_future: asyncio.Future[None] = self._loop.create_future()
        self.eof = False
        self._tls_truncated = False  # TLS ended by a bare FIN, no close_notify (see eof_received)
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio callbacks -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            # RFC 9112 section 9.3: a server never sends a response unasked.
            # Bytes on an idle connection mean it cannot be trusted any more.
            self.close()
            return
        ex.received += len(data)
        mode = ex.mode
        if mode == RAW:
            buffer = ex.buffer
            assert buffer is not None
            buffer.feed(data)
        elif mode == DIRECT:
            self._direct(ex, data)
        elif mode == HEAD:
            self._head(ex, data)
        elif mode == CHUNKED:
            self._chunked(ex, data)

    def eof_received(self) -> bool | None:
        self.eof = True
        self._tls_truncated = self._closed_without_close_notify()
        return None  # let the transport close; connection_lost settles the exchange

    def _closed_without_close_notify(self) -> bool:
        """Was this TLS connection cut by a bare TCP FIN, with no closure alert?

        RFC 9112 section 9.8: a body delimited by the close of the connection is
        complete only if a valid closure alert was received; otherwise anyone on
        the path can truncate it.  asyncio reports both ends the same way
        (``eof_received``, then ``connection_lost(None)``), so the TLS object is
        asked: after close_notify a read returns b"" (a clean end of the TLS
        stream); after a bare FIN it still wants bytes that will never come.
        asyncio has read every record before reporting the end, so the loop
        below finds no data; any it did find would be handed on, not lost.
        """
        transport = self.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:
            return False
        try:
            while data := ssl_object.read(65536):
                self.data_received(data)
        except ssl.SSLError:
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.lost_future.done():
            self.lost_future.set_result(None)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(WriteError(f"connection lost while sending the request: {exc or 'closed'}"))
        ex = self.exchange
        if ex is not None and ex.mode == RAW:
            buffer = ex.buffer
            assert buffer is not None
            if exc is None:
                buffer.feed_eof()
            else:
                buffer.feed_error(ReadError(f"connection lost: {exc}"))
        elif ex is not None and not ex.done:
            if ex.mode == DIRECT and ex.remaining is None and exc is None and not self._tls_truncated:
                self._complete(ex)  # a close-delimited body ends with the close
            else:
                self._fail(ex, self._lost_error(ex, exc))
        self._on_lost()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- used by the connection --------------------------------------------------
    def start(self, ex: Exchange) -> None:
        self.exchange = ex

    @property
    def write_paused(self) -> bool:
        """The transport's write buffer is above its high-water mark."""
        return self._write_paused

    def write(self, data: bytes) -> None:
        if self.lost or self.transport is None or self.transport.is_closing():
            raise WriteError("connection closed while sending the request")
        self.transport.write(data)

    async def drain(self, timeout: float | None) -> None:
        """Wait until the transport's write buffer is below its low-water mark."""
        if self.lost:
            raise WriteError("connection closed while sending the request")
        if not self._write_paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        timer = None
        if timeout is not None:
            timer = self._loop.call_later(timeout, _expire_write, waiter, timeout)
        try:
            await waiter
        finally:
            self._drain_waiter = None
            if timer is not None:
                timer.cancel()

    def arm_head_timer(self, ex: Exchange) -> None:
        if ex.read_timeout is not None and not ex.head_waiter.done():
            ex.head_timer = self._loop.call_later(ex.read_timeout, self._head_expired, ex)

    def begin_drain(self, ex: Exchange) -> None:
        """Read off the rest of an early-closed body, then hand the connection back."""
        ex.draining = True
        buffer = ex.buffer
        if buffer is not None:
            buffer.discard()
            buffer.detach()
        self._resume()
        ex.drain_timer = self._loop.call_later(self._limits.drain_timeout, self._drain_expired, ex)

    def close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.abort()

    @property
    def is_usable(self) -> bool:
        """False once the peer closed or the transport is going away (stale check)."""
        transport = self.transport
        return not (self.lost or self.eof or transport is None or transport.is_closing())

    # -- parsing ---------------------------------------------------------------------
    def _head(self, ex: Exchange, data: bytes) -> None:
        buf = ex.buf
        buf += data
        limits = self._limits
        try:
            while True:
                event = read_response_head(buf)
                if event is None:
                    if len(buf) > limits.max_header_bytes:
                        raise RemoteProtocolError(
                            f"response head is larger than the limit of {limits.max_header_bytes} bytes "
                            "(Limits.max_header_bytes)"
                        )
                    return
                if type(event) is h11.Response:
                    break
                if event.status_code == 101:
                    if ex.upgrade:
                        break  # the final answer: the connection now speaks the new protocol
                    raise RemoteProtocolError("unexpected 101 Switching Protocols: no upgrade was asked for")
                if event.status_code == 100:
                    wake(ex.continue_waiter)
                hook = ex.on_informational
                if hook is not None:
                    try:
                        hook(event.status_code, Headers.from_triples(header_triples(event)))
                    except Exception as exc:
                        error = LocalProtocolError(f"the on_informational hook raised {type(exc).__name__}: {exc}")
                        error.__cause__ = exc
                        raise error from exc
                ex.informational += 1
                if ex.informational > limits.max_informational_responses:
                    raise RemoteProtocolError(
                        f"more than {limits.max_informational_responses} informational (1xx) responses to one request"
                    )
        except h11.ProtocolError as exc:
            self._fail(ex, RemoteProtocolError(f"malformed response head: {exc}"))
            return
        except (RemoteProtocolError, LocalProtocolError) as exc:
            self._fail(ex, exc)
            return
        leftover = bytes(buf) if buf else b""
        # The check above caps a head that is still incomplete; cap a complete one too.
        head_size = ex.received - len(leftover)
        if head_size > limits.max_header_bytes:
            self._fail(
                ex,
                RemoteProtocolError(
                    f"response head of {head_size} bytes is larger than the limit of {limits.max_header_bytes} bytes "
                    "(Limits.max_header_bytes)"
                ),
            )
            return
        # (raw name, lower-cased name, value) triples, validated by h11: the very
        # layout of our Headers, taken over without a copy per field.
        fields = header_triples(event)
        if len(fields) > limits.max_header_count:
            self._fail(
                ex,
                RemoteProtocolError(
                    f"response has {len(fields)} header fields, more than the limit of {limits.max_header_count} "
                    "(Limits.max_header_count)"
                ),
            )
            return
        has_te = False
        length_value: bytes | None = None
        for _, name, value in fields:
            if name == b"content-length":
                length_value = value
            elif name == b"transfer-encoding":
                has_te = True
            elif name == b"connection" and b"close" in value.lower():
                ex.reusable = False
        headers = Headers.from_triples(fields)
        status = event.status_code
        # 101 to an Upgrade, 2xx to CONNECT (RFC 9110 sections 15.2.2 and
        # 9.3.6): the connection now carries another protocol, or a tunnel,
        # right after the head; what came with the head is the first of it.
        # The exchange stays current, so every later byte goes to its buffer
        # with a body's backpressure (pause_reading), but no read timeout.
        raw = status == 101 or (ex.method == "CONNECT" and 200 <= status < 300)
        if event.http_version != b"1.1" or raw:
            ex.reusable = False
        if status >= 400 and not ex.reusable and ex.upload is not None:
            # RFC 9112 section 9.5: an error answer from a server that is
            # closing the connection: "the client SHOULD immediately cease
            # transmitting the body".  Writing on would only earn a reset that
            # can take the answer's unread bytes with it.
            ex.upload.stop()
        no_body = ex.method == "HEAD" or status in (204, 304)
        content_length: int | None
        if raw:
            content_length = None
        elif no_body:
            content_length = 0
        elif has_te:
            content_length = None
            if length_value is not None:
                # RFC 9112 section 6.3: Transfer-Encoding wins, and the connection
                # must not be reused (the message may be a smuggling attempt).
                ex.reusable = False
        elif length_value is not None:
            content_length = int(length_value)
        else:
            content_length = None
            ex.reusable = False  # close-delimited
        ex.content_length = content_length
        buffer = BodyBuffer(
            high_water=self._limits.read_high_water,
            low_water=self._limits.read_low_water,
            read_timeout=None if raw else ex.read_timeout,
            pause=lambda: self._pause_for(ex),
            resume=lambda: self._resume_for(ex),
        )
        ex.buffer = buffer
        if ex.head_timer is not None:
            ex.head_timer.cancel()
            ex.head_timer = None
        head = ResponseHead(
            status, event.reason.decode("latin-1"), "HTTP/" + event.http_version.decode(), headers, content_length
        )
        if raw:
            ex.mode = RAW
            if leftover:
                buffer.feed(leftover)
        if not ex.head_waiter.done():
            ex.head_waiter.set_result((head, buffer))
        if raw:
            return
        if no_body:
            if leftover:
                ex.reusable = False
            self._complete(ex)
        elif has_te:
            ex.mode = CHUNKED
            ex.chunked = ChunkedBody(self._limits.max_header_bytes)
            self._chunked(ex, b"")
        else:
            ex.mode = DIRECT
            ex.remaining = content_length
            if content_length == 0:
                if leftover:
                    ex.reusable = False
                self._complete(ex)
            elif leftover:
                self._direct(ex, leftover)

    def _direct(self, ex: Exchange, data: bytes) -> None:
        remaining = ex.remaining
        if remaining is None:
            self._deliver(ex, data)
            return
        size = len(data)
        if size < remaining:
            ex.remaining = remaining - size
            self._deliver(ex, data)
            return
        if size > remaining:
            # Bytes beyond Content-Length: not part of this body and not a valid
            # next response either.  Keep the body, never reuse the connection.
            ex.reusable = False
            data = data[:remaining]
        ex.remaining = 0
        self._deliver(ex, data)
        self._complete(ex)

    def _chunked(self, ex: Exchange, data: bytes) -> None:
        buf = ex.buf
        reader = ex.chunked
        assert reader is not None
        if data:
            buf += data
        try:
            while True:
                event = reader(buf)
                if event is None:
                    # A chunk-size line or trailer section that never ends must
                    # not grow without bound (h11's connection would cap it too).
                    if len(buf) > self._limits.max_header_bytes:
                        raise RemoteProtocolError(
                            "chunk header or trailer section longer than the limit of "
                            f"{self._limits.max_header_bytes} bytes (Limits.max_header_bytes)"
                        )
                    return
                if isinstance(event, bytes):
                    self._deliver(ex, event)
                    continue
                if len(event.headers) > self._limits.max_header_count:
                    raise RemoteProtocolError(
                        f"trailer section has {len(event.headers)} fields, more than the limit of "
                        f"{self._limits.max_header_count} (Limits.max_header_count)"
                    )
                ex.trailers.extend_raw(event.headers.raw_items())
                if buf:
                    ex.reusable = False
                self._complete(ex)
                return
        except h11.ProtocolError as exc:
            self._fail(ex, RemoteProtocolError(f"malformed chunked body: {exc}"))
        except RemoteProtocolError as exc:
            self._fail(ex, exc)

    def _deliver(self, ex: Exchange, data: bytes) -> None:
        if ex.draining:
            return
        buffer = ex.buffer
        assert buffer is not None
        buffer.feed(data)

    # -- ends of an exchange ----------------------------------------------------------
    def _complete(self, ex: Exchange) -> None:
        ex.mode = DONE
        if ex.drain_timer is not None:
            ex.drain_timer.cancel()
            ex.drain_timer = None
        buffer = ex.buffer
        if buffer is not None:
            buffer.detach()
            buffer.feed_eof()
        if self.exchange is ex:
            self.exchange = None
        self._resume()
        # Whether the request went out in full is the connection's to add.
        reusable = ex.reusable and not self.lost and not self.eof
        self._on_exchange_done(ex, reusable)

    def _fail(self, ex: Exchange, exc: BaseException) -> None:
        if ex.mode == DONE:
            return
        ex.mode = DONE
        ex.error = exc
        for timer in (ex.head_timer, ex.drain_timer):
            if timer is not None:
                timer.cancel()
        if not ex.head_waiter.done():
            ex.head_waiter.set_exception(exc)
        elif ex.buffer is not None:
            ex.buffer.detach()
            ex.buffer.feed_error(exc)
        if self.exchange is ex:
            self.exchange = None
        transport = self.transport
        if transport is not None and (not ex.request_sent or transport.get_write_buffer_size()):
            # Unsent request bytes: a graceful close would wait to flush them
            # to a peer that may have stopped reading, holding the socket.
            transport.abort()
        else:
            self.close()
        self._on_exchange_done(ex, False)

    def fail(self, ex: Exchange, exc: BaseException) -> None:
        """End the exchange with ``exc`` (used for local errors and cancellation)."""
        self._fail(ex, exc)

    def _lost_error(self, ex: Exchange, exc: Exception | None) -> Exception:
        cause = f": {exc}" if exc is not None else ""
        if ex.mode == HEAD:
            if ex.received == 0:
                message = "server closed the connection without sending a response" + cause
                if ex.reused:
                    return StaleConnection(message + " (it was a reused keep-alive connection)")
                return ReadError(message) if exc is not None else RemoteProtocolError(message)
            return RemoteProtocolError("server closed the connection in the middle of the response head" + cause)
        got = ex.buffer.bytes_fed if ex.buffer is not None else 0
        expected = ex.content_length if ex.mode == DIRECT else None
        if exc is not None:
            # A reset mid-body: still a short body, so callers catching
            # IncompleteBody see it; the socket error stays as the cause.
            error = IncompleteBody(
                f"connection lost after {got} body bytes"
                + (f" of {expected} (Content-Length)" if expected is not None else "")
                + f"; the body is incomplete{cause}",
                received=got,
                expected=expected,
            )
            error.__cause__ = exc
            return error
        if ex.mode == DIRECT and expected is None:
            return IncompleteBody(
                f"the TLS connection ended after {got} body bytes without a closure alert (close_notify); "
                "a body delimited by the close is complete only after one (RFC 9112 section 9.8), "
                "so it may have been truncated",
                received=got,
                expected=None,
            )
        if ex.mode == DIRECT:
            return IncompleteBody(
                f"server closed the connection after {got} of {expected} body bytes "
                "(Content-Length); the body is incomplete",
                received=got,
                expected=expected,
            )
        return IncompleteBody(
            f"server closed the connection after {got} body bytes, before the end of the "
            "chunked body (the last chunk never came); the body is incomplete",
            received=got,
            expected=None,
        )

    def _head_expired(self, ex: Exchange) -> None:
        if not ex.head_waiter.done():
            self._fail(ex, ReadTimeout(f"no response within {ex.read_timeout:g} s (read timeout)"))

    def _drain_expired(self, ex: Exchange) -> None:
        ex.drain_timer = None
        if not ex.done:
            ex.reusable = False
            self._fail(ex, ReadTimeout("the rest of an early-closed body did not arrive in time"))

    # -- read flow control ------------------------------------------------------------
    def _pause_for(self, ex: Exchange) -> None:
        if self.exchange is ex and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_for(self, ex: Exchange) -> None:
        if self.exchange is ex:
            self._resume()

    def _resume(self) -> None:
        if self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()


def _expire_write(waiter: asyncio.Future[None], seconds: float) -> None:
    if not waiter.done():
        waiter.set_exception(WriteTimeout(f"the server accepted no request data for {seconds:g} s (write timeout)"))


def serialize_head(method: str, target: str, headers: Headers) -> bytes:
    """The request line and header block (RFC 9112 sections 3 and 5).

    Method, target and every header were validated when the Request was built
    (token method, no control characters in the target, no CR/LF/NUL in fields).
    """
    lines = [f"{method} {target} HTTP/1.1\r\n".encode("ascii")]
    for name, value in headers.raw:
        lines.append(name + b": " + value + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)
