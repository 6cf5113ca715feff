"""The server side of one HTTP/1.1 connection: an asyncio Protocol, one handler task per request.

Theory of operation
-------------------
Push model, as on the client side: ``data_received`` appends to one receive
buffer and parses what it can; there is no reader task.  The connection reads

    HEAD ──> LENGTH (Content-Length body) ──> WAITING ──> HEAD (keep-alive)
         └─> CHUNKED (ChunkedReader) ──────┘        └──> RAW (after upgrade())

A complete head (checked by ``_h1_parse``, parsed by h11) becomes a
``Request`` whose body is a ``RequestBody`` over a ``BodyBuffer``, and a
handler task starts at once, before the body arrives.  Body bytes go into the
buffer as they come; above ``limits.stream_window`` unread bytes the buffer
pauses reading the socket and resumes below a quarter of it, so a handler that
does not read stalls the client's upload at a bound.  Once the body ended the
connection is WAITING: bytes that arrive are the next (pipelined) request,
kept unparsed until this exchange is over (reading pauses above
``max_header_bytes`` of them); a body longer than its Content-Length is thus
read as the next request, which must parse as one or be refused.

The response goes out through ``H1ServerExchange.respond``: the head, then the
body chunk by chunk (one outgoing chunk per item of an iterator; chunked when
no Content-Length is known), waiting on ``drain`` whenever the transport's
buffer passes ``limits.write_high_water`` (``pause_writing`` /
``resume_writing``).  A body that fails mid-way aborts the connection: a
chunked body never gets its last chunk, a sized one stays short.

When the handler returns, the exchange is over.  Keep-alive (RFC 9112 section
9.3) needs an HTTP/1.1 request without ``Connection: close``, a response that
did not say close, and the request body read to its end: a rest the handler
left unread is drained (discarded) if it is at most ``DRAIN_LIMIT`` bytes and
arrives within ``DRAIN_TIMEOUT`` seconds, else the connection closes (a known
larger rest, or an ``Expect: 100-continue`` body we never asked for, makes the
response say ``Connection: close`` up front).  ``100 Continue`` is sent when the
handler first reads the body.

Timers (``call_later``, never ``wait_for``): ``header_timeout`` from the first
byte of a head (and from the connection's start) to its end, answered with 408;
``keepalive_timeout`` while idle between requests, ended with a quiet close.

A refused request gets a short text answer with ``Connection: close``; we then
half-close and keep reading (discarding) for up to ``LINGER`` seconds, so the
answer is not lost to a reset while the client is still sending (RFC 9112
section 9.6).  A lost connection fails the request body's reader and cancels
the handler task: nobody is left to answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Final

from .._exceptions import HTTPStreamError, ReadError, RemoteProtocolError, WriteError, WriteTimeout
from .._headers import Headers
from .._models import Request
from .._streams import BodyBuffer
from .._urls import URL
from ._h1_exchange import H1ServerExchange, RequestBody, simple_response
from ._h1_parse import ChunkedReader, ParsedHead, Refusal, parse_request_head, scan_partial_head
from ._types import Handler, ServerLimits

__all__ = ["H1ServerExchange", "H1ServerProtocol", "RequestBody"]

logger = logging.getLogger("httpstream.server")

HEAD: Final = 0
LENGTH: Final = 1
CHUNKED: Final = 2
WAITING: Final = 3  # the request is complete; later bytes are the next request
RAW: Final = 4
DISCARD: Final = 5  # refused or closing: read and drop until the close

DRAIN_LIMIT: Final = 64 * 1024  # an unread request-body rest we read off for keep-alive
DRAIN_TIMEOUT: Final = 5.0
LINGER: Final = 1.0  # seconds we keep reading after a refusal before closing
LINGER_BYTES: Final = 1024 * 1024


# RFC 9110 section 7.2: Host = uri-host [ ":" port ]; no userinfo, no path, nothing else.
_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(?::[0-9]{0,5})?")


class H1ServerProtocol(asyncio.Protocol):
    """Bytes in, requests out, for one HTTP/1.1 server connection."""

    def __init__(
        self,
        handler: Handler,
        *,
        limits: ServerLimits,
        tls: bool,
        on_closed: Callable[[H1ServerProtocol], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self._limits = limits
        self._tls = tls
        self._on_closed = on_closed
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._state = HEAD
        self._processing = False
        self.lost = False
        self.closing = False  # the server is shutting down: no keep-alive
        self._eof = False
        self._exchange: H1ServerExchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._body: BodyBuffer | None = None  # the current request body (or RAW stream) buffer
        self._remaining = 0  # LENGTH: body bytes still to come
        self._chunks: ChunkedReader | None = None
        self._draining = False
        self._drain_budget = 0
        self._paused_for: set[str] = set()
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""
        self._linger_bytes = 0
        self._addrs: tuple[tuple[str, int], tuple[str, int]] = (("", 0), ("", 0))

    # -- asyncio callbacks -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self._limits.write_high_water)
        peer = transport.get_extra_info("peername") or ("", 0)
        sock = transport.get_extra_info("sockname") or ("", 0)
        self._addrs = ((str(peer[0]), int(peer[1])), (str(sock[0]), int(sock[1])))
        self._arm(self._limits.header_timeout, self._header_expired)

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == RAW:
            assert self._body is not None
            self._body.feed(data)
            return
        if state == DISCARD:
            self._linger_bytes += len(data)
            if self._linger_bytes > LINGER_BYTES:
                self.abort()
            return
        if state == LENGTH and not self._buf:
            # The hot path: body bytes go to the buffer as they came, no copy.
            remaining = self._remaining
            if len(data) <= remaining:
                self._remaining = remaining - len(data)
                self._deliver(data)
                if self._remaining == 0:
                    self._body_done()
                    self._process()
                return
            self._remaining = 0
            self._deliver(data[:remaining])
            self._buf += data[remaining:]
            self._body_done()
            self._process()
            return
        if state == HEAD and self._exchange is None and self._timer_kind != "header":
            self._arm(self._limits.header_timeout, self._header_expired)  # a new head starts
        self._buf += data
        self._process()

    def eof_received(self) -> bool | None:
        self._eof = True
        state = self._state
        if state == RAW:
            assert self._body is not None
            self._body.feed_eof()
            return None if self._tls else True  # cleartext: the handler may still write its side
        if state in (LENGTH, CHUNKED) and self._body is not None:
            self._body.feed_error(RemoteProtocolError("the client ended the connection in the middle of the body"))
        if self._exchange is not None and state != DISCARD and not self._tls:
            return True  # answer what was asked, then close (TLS cannot stay half-open in asyncio)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._cancel_timer()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(WriteError(f"the client connection was lost: {exc or 'closed'}"))
        body = self._body
        if body is not None:
            if self._state == RAW and exc is None:
                body.feed_eof()
            else:
                body.feed_error(ReadError(f"the client connection was lost: {exc or 'closed'}"))
        task = self._task
        if task is not None and not task.done() and self._state != RAW:
            task.cancel()
        self._on_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- what the exchange and the listener use ------------------------------------------
    @property
    def request_complete(self) -> bool:
        return self._state == WAITING

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def write(self, data: bytes) -> None:
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            raise WriteError("the client connection is closed")
        transport.write(data)

    async def drain(self, timeout: float | None) -> None:
        if self.lost:
            raise WriteError("the client connection is closed")
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

    def close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def abort(self) -> None:
        self._state = DISCARD
        transport = self.transport
        if transport is not None:
            transport.abort()

    def close_gracefully(self) -> None:
        """Server shutdown: close now if idle, else after the exchange in flight (its answer says close)."""
        self.closing = True
        if self._exchange is None and self._state in (HEAD, DISCARD):
            self.close()

    def unread_body_needs_close(self, ex: H1ServerExchange) -> bool:
        """At the response head: will the unread rest of the request body force a close?"""
        if self._state not in (LENGTH, CHUNKED):
            return False
        if ex.head.expect and not ex.continue_sent:
            return True  # the client waits for a 100 it will not get: the body may never come
        return self._state == LENGTH and self._remaining > DRAIN_LIMIT

    def to_raw(self) -> BodyBuffer:
        """After upgrade(): every byte from now on (and what came after the head) is the new protocol's."""
        self._state = RAW
        self._cancel_timer()
        window = self._limits.stream_window
        buffer = BodyBuffer(
            high_water=window,
            low_water=window // 4,
            pause=lambda: self._pause("raw"),
            resume=lambda: self._resume("raw"),
        )
        self._body = buffer
        self._resume("pipeline")
        if self._buf:
            buffer.feed(bytes(self._buf))
            self._buf.clear()
        if self._eof:
            buffer.feed_eof()
        return buffer

    # -- parsing ------------------------------------------------------------------------
    def _process(self) -> None:
        if self._processing:
            return  # the loop below picks up the new state
        self._processing = True
        try:
            while not self.lost:
                state = self._state
                buf = self._buf
                if state == HEAD:
                    if self._exchange is not None or not buf or not self._read_head():
                        return
                elif state == LENGTH:
                    if not buf:
                        return
                    take = min(self._remaining, len(buf))
                    data = bytes(buf[:take])
                    del buf[:take]
                    self._remaining -= take
                    self._deliver(data)
                    if self._remaining == 0:
                        self._body_done()
                elif state == CHUNKED:
                    if not self._read_chunked():
                        return
                elif state == WAITING:
                    if len(buf) > self._limits.max_header_bytes:
                        self._pause("pipeline")
                    return
                else:
                    return
        except Refusal as refusal:
            self._refuse(refusal.status, refusal.message)
        finally:
            self._processing = False

    def _read_head(self) -> bool:
        buf = self._buf
        # RFC 9112 section 2.2: a server SHOULD ignore at least one empty line before the request line.
        while buf[:2] == b"\r\n":
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            scan_partial_head(buf, self._limits)
            return False
        head = bytes(buf[: end + 4])
        del buf[: end + 4]
        parsed = parse_request_head(head, self._limits)
        self._cancel_timer()
        self._start(parsed)
        return True

    def _start(self, head: ParsedHead) -> None:
        request = self._build_request(head)
        client_addr, server_addr = self._addrs
        ex = H1ServerExchange(self, request, head, client_addr=client_addr, server_addr=server_addr, tls=self._tls)
        self._exchange = ex
        if self.closing:
            ex.keep_alive = False
        content = request.content
        if isinstance(content, RequestBody):
            content._on_first_read = ex.send_continue
        self._task = self._loop.create_task(self._run(ex))

    def _build_request(self, head: ParsedHead) -> Request:
        method = head.method
        target = head.target
        scheme = "https" if self._tls else "http"
        try:
            if not target.startswith("/") and "://" in target:
                url = URL(target)  # absolute form: the target's authority wins over Host (RFC 9112 3.2.2)
            elif method == "CONNECT":
                url = URL(f"{scheme}://{target}")  # authority form, kept as the target
            else:
                host = head.host
                if host is None:  # HTTP/1.0 without Host: the address we were reached at
                    addr = self._addrs[1]
                    host = (f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}").encode("ascii")
                if not _HOST.fullmatch(host):
                    raise Refusal(400, f"invalid Host header {host[:100]!r}")
                path = target if target.startswith("/") else "/"
                url = URL(f"{scheme}://{host.decode('ascii')}{path}")
            if not url.is_absolute:
                raise Refusal(400, f"invalid request target {target[:100]!r}")
            content: RequestBody | None = None
            if head.chunked or (head.content_length or 0) > 0:
                window = self._limits.stream_window
                buffer = BodyBuffer(
                    high_water=window,
                    low_water=window // 4,
                    pause=lambda: self._pause("body"),
                    resume=lambda: self._resume("body"),
                )
                self._body = buffer
                content = RequestBody(buffer, _noop, head.content_length)
            request = Request(method, url, target=target, content=content, trailers=Headers() if head.chunked else None)
        except HTTPStreamError as exc:  # InvalidURL, or a target of the wrong form for the method
            raise Refusal(400, str(exc)) from exc
        # Request() adds Host and framing fields and upper-cases the method; the
        # handler gets the request as it was received.
        request.headers = Headers.from_triples(head.fields)
        request.method = method
        if head.chunked:
            self._state = CHUNKED
            self._chunks = ChunkedReader(self._limits)
        elif content is not None:
            self._state = LENGTH
            self._remaining = head.content_length or 0
        else:
            self._state = WAITING
        return request

    def _read_chunked(self) -> bool:
        reader = self._chunks
        assert reader is not None
        event = reader.read(self._buf)
        if event is None:
            return False
        if isinstance(event, bytes):
            self._deliver(event)
            return True
        ex = self._exchange
        if ex is not None and ex.request.trailers is not None:
            ex.request.trailers.extend_raw((raw, value) for raw, _, value in event)
        self._body_done()
        return True

    def _deliver(self, data: bytes) -> None:
        if self._draining:
            self._drain_budget -= len(data)
            if self._drain_budget < 0:
                self.close()  # more than we read off for keep-alive
                self._state = DISCARD
            return
        body = self._body
        if body is not None:
            body.feed(data)

    def _body_done(self) -> None:
        self._state = WAITING
        body = self._body
        if body is not None:
            body.detach()
            body.feed_eof()
            self._body = None
        self._resume("body")
        if self._draining:
            self._draining = False
            self._cancel_timer()
            self._next_cycle()

    # -- the exchange's end ---------------------------------------------------------------
    async def _run(self, ex: H1ServerExchange) -> None:
        try:
            await self._handler(ex)
        except asyncio.CancelledError:
            ex.keep_alive = False
            if not self.lost:
                ex.abort()
            raise
        except Exception as exc:
            if not ex.head_sent and not ex.aborted and not self.lost:
                logger.error("the request handler failed before answering", exc_info=exc)
                self._answer_error(ex, 500, "internal server error: the request handler failed")
            elif not ex.finished and not ex.aborted:
                ex.abort()
        else:
            if not ex.head_sent and not ex.aborted and not self.lost:
                self._answer_error(ex, 500, "internal server error: the request handler did not answer")
            elif not ex.finished and not ex.aborted:
                ex.abort()
        finally:
            self._task = None
            stream = ex.network_stream
            if stream is not None:
                stream.close()  # the upgraded connection lives as long as its handler
        self._exchange_done(ex)

    def _answer_error(self, ex: H1ServerExchange, status: int, message: str) -> None:
        ex.head_sent = True
        ex.keep_alive = False
        try:
            self.write(simple_response(status, message))
        except WriteError:
            pass

    def _exchange_done(self, ex: H1ServerExchange) -> None:
        if self._exchange is ex:
            self._exchange = None
        if self.lost or ex.aborted or ex.network_stream is not None:
            return
        if not ex.keep_alive or self.closing or self._eof:
            self._finish_and_close()
            return
        if self._state == WAITING:
            self._next_cycle()
            return
        # The handler left part of the body unread: read it off (bounded) for keep-alive.
        self._draining = True
        self._drain_budget = DRAIN_LIMIT
        body = self._body
        if body is not None:
            self._drain_budget -= body.discard()
            body.detach()
        self._resume("body")
        self._arm(DRAIN_TIMEOUT, self._drain_expired)

    def _finish_and_close(self) -> None:
        if self._state in (LENGTH, CHUNKED):
            self._linger()  # the client may still be sending: do not reset the answer away
        else:
            self._state = DISCARD
            self.close()

    def _next_cycle(self) -> None:
        self._state = HEAD
        self._chunks = None
        self._resume("pipeline")
        if self.closing:
            self.close()
            return
        if self._buf:
            self._arm(self._limits.header_timeout, self._header_expired)
            self._loop.call_soon(self._process)  # the next (pipelined) request, after this turn
        else:
            self._arm(self._limits.keepalive_timeout, self._idle_expired)

    def _refuse(self, status: int, message: str) -> None:
        """A request we will not serve: a short answer if none started, then close (lingering)."""
        ex = self._exchange
        body = self._body
        if body is not None:
            body.feed_error(RemoteProtocolError(f"malformed request body: {message}"))
        if ex is not None and ex.head_sent:
            ex.aborted = True
            self.abort()  # the answer is under way: it must not end cleanly
            return
        if ex is not None:
            ex.head_sent = True
            ex.aborted = True
        logger.debug("refusing a request with %d: %s", status, message)
        try:
            self.write(simple_response(status, message))
        except WriteError:
            return
        self._linger()

    def _linger(self) -> None:
        self._state = DISCARD
        self._buf.clear()
        transport = self.transport
        self._resume_all()
        if transport is None or transport.is_closing():
            return
        if self._eof:
            self.close()
            return
        if transport.can_write_eof():
            transport.write_eof()
        self._arm(LINGER, self.close)

    # -- timers ---------------------------------------------------------------------------
    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(seconds, callback)
        self._timer_kind = "header" if callback == self._header_expired else "other"

    def _cancel_timer(self) -> None:
        self._timer_kind = ""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_expired(self) -> None:
        self._timer = None
        if self._state != HEAD or self._exchange is not None:
            return
        if self._buf:
            self._refuse(408, f"the request head did not arrive within {self._limits.header_timeout:g} s")
        else:
            self._state = DISCARD
            self.close()

    def _idle_expired(self) -> None:
        self._timer = None
        if self._state == HEAD and self._exchange is None and not self._buf:
            self._state = DISCARD
            self.close()

    def _drain_expired(self) -> None:
        self._timer = None
        if self._draining:
            self._state = DISCARD
            self.close()

    # -- read flow control -----------------------------------------------------------------
    def _pause(self, reason: str) -> None:
        transport = self.transport
        if not self._paused_for and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._paused_for.add(reason)

    def _resume(self, reason: str) -> None:
        if reason in self._paused_for:
            self._paused_for.discard(reason)
            if not self._paused_for:
                self._resume_reading()

    def _resume_all(self) -> None:
        if self._paused_for:
            self._paused_for.clear()
            self._resume_reading()

    def _resume_reading(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()


def _noop() -> None:
    return None


def _expire_write(waiter: asyncio.Future[None], seconds: float) -> None:
    if not waiter.done():
        waiter.set_exception(WriteTimeout(f"the client took no response bytes for {seconds:g} s (write timeout)"))
