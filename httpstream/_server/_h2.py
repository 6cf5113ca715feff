"""The server side of one HTTP/2 connection, around h2.

Theory of operation
-------------------
Push model, as ``_h2/_protocol.py`` wraps h2 for the client: ``data_received``
feeds h2, the events are dispatched to per-stream state (an ``H2Exchange``),
and everything h2 wants to send goes out in one ``transport.write`` per batch.
Each request (``RequestReceived``) gets its own handler task and exchange; no
task reads the socket.

Flow control (RFC 9113 section 5.2) both ways, per stream (an ``H2Exchange``,
``_h2_exchange.py``).  In: a request body is pushed into a ``BodyBuffer``;
WINDOW_UPDATE is sent only for bytes the handler consumed (``on_consumed``), so a handler that stops reading one stream
stalls only that stream (the connection window is larger than a stream's).
Out: ``respond`` sends no more than the client's stream and connection windows
allow and waits (bounded by ``_SEND_STALL``) on WINDOW_UPDATE, and on the
transport's write buffer (``pause_writing`` above ``write_high_water``).

Errors from a peer are converted here, where h2 is called.  A connection error
(a broken frame, a flood, a CONTINUATION run past the limit) sends GOAWAY and
closes: every open request body fails with ``RemoteProtocolError`` and every
handler task is cancelled.  RFC 9113 section 8.1.1: a malformed request is a
*stream* error, so h2's inbound validation (which raises connection errors) is
off and ``_malformed`` checks each request itself; a malformed one is reset
with PROTOCOL_ERROR and never reaches the handler.  A client's RST_STREAM fails
that stream's body read (``IncompleteBody``) and stops ``respond``.

What this module takes from h2 beyond its public API is in the one section
"h2 internals" below, checked at import with ``require_version``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import h2.stream
import hyperframe.frame

from .._exceptions import (
    HTTPStreamError,
    LocalProtocolError,
    ReadError,
    RemoteProtocolError,
    WriteError,
    WriteTimeout,
)
from .._headers import Headers
from .._models import Request
from .._requires import require_version
from .._streams import BodyBuffer
from ._h2_exchange import H2Exchange, _head_size, _malformed, _RequestBody, _response_fields
from ._types import Handler, ServerLimits

__all__ = ["H2ServerProtocol", "H2Exchange"]

_ACK_BATCH = 64 * 1024
_GRACE = 10.0  # close_gracefully(): in-flight streams get this long to finish
_Codes = h2.errors.ErrorCodes


# -- h2 internals ------------------------------------------------------------------------
# Every reliance on h2's private internals is in this section (verified with h2
# 4.4.1, hpack 4.2.0, hyperframe 6.1.0); tests/test_server_h2.py exercises each.
#
# ``FrameBuffer._update_header_buffer`` / ``_headers_buffer``: h2 allows 64
#     CONTINUATION frames per header block (its CONTINUATION_BACKLOG, a fixed
#     constant); ``_CountingFrameBuffer`` applies ``max_continuation_frames``
#     (h2's own 64 still applies above it) as ENHANCE_YOUR_CALM.
# ``Settings.max_concurrent_streams`` (read by ``_receive_headers_frame``): h2
#     treats a stream past our MAX_CONCURRENT_STREAMS as a connection error;
#     RFC 9113 section 5.1.2 lets it be a stream error, so h2 is told "no
#     limit" and the protocol resets the extra stream with REFUSED_STREAM.
# ``_local_settings_acked`` and ``decoder.max_header_list_size``: the hpack cap
#     is set above the MAX_HEADER_LIST_SIZE we announce, so a header block
#     between the two is decoded (HPACK state kept) and answered with 431.
# ``_begin_new_stream`` / ``H2Stream._initialize_content_length`` / ``_track_content_length``:
#     a body that disagrees with its Content-Length is a stream error (RFC 9113
#     section 8.1.1); h2 raises it as a connection error, so its checks are
#     off and the protocol checks per stream.
# ``close_connection`` and ``state_machine.state``: a graceful GOAWAY must let
#     the streams below its last stream id finish; h2 moves to CLOSED on
#     sending one and would refuse their frames.
VERIFIED = require_version("h2", "4.4.1", "5")


class _ContinuationFlood(h2.exceptions.DenialOfServiceError):
    """A header block spread over more CONTINUATION frames than allowed."""


class _CountingFrameBuffer(h2.frame_buffer.FrameBuffer):
    def __init__(self, max_continuation_frames: int) -> None:
        super().__init__(server=True)
        self.max_continuation_frames = max_continuation_frames

    def _update_header_buffer(self, f: hyperframe.frame.Frame | None) -> hyperframe.frame.Frame | None:
        # _headers_buffer holds the HEADERS frame and the CONTINUATIONs so far.
        if self._headers_buffer and len(self._headers_buffer) > self.max_continuation_frames:
            raise _ContinuationFlood(
                f"more than {self.max_continuation_frames} CONTINUATION frames in one header block "
                "(ServerLimits.max_continuation_frames)"
            )
        return super()._update_header_buffer(f)


class _UnboundedStreamsSettings(h2.settings.Settings):
    @property  # type: ignore[misc]
    def max_concurrent_streams(self) -> int:
        return 2**31  # enforced by H2ServerProtocol with REFUSED_STREAM, not by h2


class _StreamWithoutLengthChecks(h2.stream.H2Stream):
    def _initialize_content_length(self, headers: Iterable[Any]) -> None:
        self._expected_content_length = None

    def _track_content_length(self, length: int, end_stream: bool) -> None:
        return None


class _ServerConnection(h2.connection.H2Connection):
    def __init__(self, config: h2.config.H2Configuration, limits: ServerLimits) -> None:
        super().__init__(config=config)
        self.incoming_buffer = _CountingFrameBuffer(limits.max_continuation_frames)
        self.header_list_cap = 2 * limits.max_header_bytes  # past it: GOAWAY; between: 431
        self.decoder.max_header_list_size = self.header_list_cap

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> h2.stream.H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = _StreamWithoutLengthChecks
        return stream

    def _local_settings_acked(self) -> Any:
        changes = super()._local_settings_acked()
        self.decoder.max_header_list_size = self.header_list_cap
        return changes

    def goaway_keep_open(self, last_stream_id: int) -> None:
        """GOAWAY(NO_ERROR) that still lets streams up to ``last_stream_id`` finish."""
        state = self.state_machine.state
        self.close_connection(last_stream_id=last_stream_id)
        self.state_machine.state = state


class H2ServerProtocol(asyncio.Protocol):
    """Bytes in, exchanges out, for one HTTP/2 server connection."""

    def __init__(
        self,
        handler: Handler,
        *,
        limits: ServerLimits,
        tls: bool,
        on_closed: Callable[[H2ServerProtocol], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self._limits = limits
        self.tls = tls
        self._on_closed = on_closed
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,  # _malformed: a stream error, not a connection error
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = _ServerConnection(config, limits)
        codes = h2.settings.SettingCodes
        self.h2.local_settings = _UnboundedStreamsSettings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                codes.INITIAL_WINDOW_SIZE: limits.stream_window,
                codes.MAX_HEADER_LIST_SIZE: limits.max_header_bytes,
                codes.ENABLE_CONNECT_PROTOCOL: 1,  # RFC 8441
            },
        )
        self.transport: asyncio.Transport | None = None
        self.client_addr: tuple[str, int] = ("", 0)
        self.server_addr: tuple[str, int] = ("", 0)
        self.streams: dict[int, H2Exchange] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.lost = False
        self.closing = False  # GOAWAY sent or received: no new streams
        self._goaway_sent = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._window_waiters: list[asyncio.Future[None]] = []
        self._control_window_start = 0.0
        self._control_frames = 0
        self._timer: asyncio.TimerHandle | None = None  # header, idle or grace deadline
        self._seen_request = False

    # -- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self._limits.write_high_water)
        self.client_addr = _address(transport.get_extra_info("peername"))
        self.server_addr = _address(transport.get_extra_info("sockname"))
        self.h2.initiate_connection()
        extra = self._limits.connection_window - self.h2.inbound_flow_control_window
        if extra > 0:
            self.h2.increment_flow_control_window(extra)
        self._flush()
        # Slowloris: the preface and the first request head within header_timeout.
        self._arm(self._limits.header_timeout, self._head_expired)

    def data_received(self, data: bytes) -> None:
        if self.lost or (self._goaway_sent and self.transport is not None and self.transport.is_closing()):
            return  # h2 is done with this connection; late bytes are dropped
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._flush()  # h2 queued a GOAWAY that says why
            if isinstance(exc, _ContinuationFlood):
                message = str(exc)
            elif isinstance(exc, h2.exceptions.DenialOfServiceError):
                message = f"header block over {self.h2.header_list_cap} bytes (2 x ServerLimits.max_header_bytes)"
            else:
                message = f"HTTP/2 protocol error from the client: {exc}"
            error = RemoteProtocolError(message)
            error.__cause__ = exc
            self._connection_error(error)
            return
        for event in events:
            self._dispatch(event)
            if self.lost or (self.transport is not None and self.transport.is_closing()):
                return
        self._flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        self._cancel_timer()
        error = ReadError(f"HTTP/2 connection lost: {exc}" if exc else "the client closed the HTTP/2 connection")
        for exchange in list(self.streams.values()):
            self._close_stream(exchange, error)
        for waiter in self._drain_waiters + self._window_waiters:
            if not waiter.done():
                waiter.set_exception(WriteError("HTTP/2 connection lost"))
        self._drain_waiters, self._window_waiters = [], []
        for task in list(self.tasks):
            task.cancel()
        self._on_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake(self._drain_waiters)

    # -- events ----------------------------------------------------------------------------------
    def _dispatch(self, event: h2.events.Event) -> None:
        kind = type(event)
        if kind is h2.events.DataReceived:
            assert isinstance(event, h2.events.DataReceived)
            self._data(event.stream_id or 0, event.data or b"", event.flow_controlled_length or 0)
        elif kind is h2.events.RequestReceived:
            assert isinstance(event, h2.events.RequestReceived)
            self._request(event.stream_id or 0, list(event.headers or []), event.stream_ended is not None)
        elif kind is h2.events.StreamEnded:
            exchange = self.streams.get(event.stream_id or 0)  # type: ignore[attr-defined]
            if exchange is not None:
                self._request_ended(exchange)
        elif kind is h2.events.TrailersReceived:
            assert isinstance(event, h2.events.TrailersReceived)
            exchange = self.streams.get(event.stream_id or 0)
            if exchange is not None:
                self._trailers(exchange, list(event.headers or []))
        elif kind is h2.events.StreamReset:
            assert isinstance(event, h2.events.StreamReset)
            if not self._count_control("RST_STREAM"):
                return
            exchange = self.streams.get(event.stream_id or 0)
            if exchange is not None:
                code = _code_name(event.error_code)
                self._close_stream(
                    exchange,
                    RemoteProtocolError(
                        f"the client reset HTTP/2 stream {exchange.stream_id} with {code}",
                        error_code=int(event.error_code or 0),
                    ),
                )
        elif kind is h2.events.WindowUpdated or kind is h2.events.RemoteSettingsChanged:
            if kind is h2.events.RemoteSettingsChanged and not self._count_control("SETTINGS"):
                return
            self._wake(self._window_waiters)
        elif kind is h2.events.PingReceived:
            self._count_control("PING")  # h2 queued the ACK; a flood makes that queue grow
        elif kind is h2.events.ConnectionTerminated:
            # The client said GOAWAY: answer what is in flight, then close.
            self.closing = True
            if not self.streams:
                self._close_transport()

    def _count_control(self, what: str) -> bool:
        """PING/SETTINGS/RST_STREAM per second; past the limit, GOAWAY(ENHANCE_YOUR_CALM)."""
        now = self._loop.time()
        if now - self._control_window_start > 1.0:
            self._control_window_start, self._control_frames = now, 0
        self._control_frames += 1
        limit = self._limits.max_control_frames_per_second
        if self._control_frames <= limit:
            return True
        error = RemoteProtocolError(
            f"more than {limit} PING/SETTINGS/RST_STREAM frames in one second from the client, a flood "
            "(ServerLimits.max_control_frames_per_second)"
        )
        self._goaway_now(_Codes.ENHANCE_YOUR_CALM, error)
        return False

    def _request(self, stream_id: int, fields: list[tuple[bytes, bytes]], ended: bool) -> None:
        self._seen_request = True
        if self.closing or len(self.streams) >= self._limits.max_concurrent_streams:
            # RFC 9113 section 5.1.2 (over our MAX_CONCURRENT_STREAMS) and 6.8 (after
            # GOAWAY): REFUSED_STREAM says the request was not processed.
            self._reset_id(stream_id, _Codes.REFUSED_STREAM)
            self._count_control("RST_STREAM")  # refusing costs us too: a rapid-reset flood is bounded
            return
        problem = _malformed(fields, trailers=False)
        if problem is not None:
            self._reset_id(stream_id, _Codes.PROTOCOL_ERROR)
            return
        regular = [(name, value) for name, value in fields if not name.startswith(b":")]
        limits = self._limits
        if len(regular) > limits.max_header_count or _head_size(fields) > limits.max_header_bytes:
            self._refuse_431(stream_id, ended, len(regular), _head_size(fields))
            return
        expected: int | None = None
        lengths = {v.strip() for name, value in regular if name == b"content-length" for v in value.split(b",")}
        if lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                self._reset_id(stream_id, _Codes.PROTOCOL_ERROR)  # section 8.1.1
                return
            expected = int(next(iter(lengths)))
        pseudo = {name: value for name, value in fields if name.startswith(b":")}
        buffer = BodyBuffer(high_water=1 << 62, low_water=0)  # bounded by the stream window instead
        body = None if ended else _RequestBody(buffer, expected)
        try:
            request = self._build_request(pseudo, regular, body)
        except (HTTPStreamError, ValueError, UnicodeDecodeError):
            self._reset_id(stream_id, _Codes.PROTOCOL_ERROR)
            return
        exchange = H2Exchange(self, stream_id, request, buffer)
        exchange.expected_length = expected
        buffer.on_consumed = lambda n: self._consumed(exchange, n)
        if body is not None:
            body.exchange = exchange
        self.streams[stream_id] = exchange
        self._cancel_timer()
        # END_STREAM on the HEADERS comes as its own StreamEnded event, next.
        task = self._loop.create_task(self._run(exchange))
        exchange.task = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _build_request(
        self, pseudo: dict[bytes, bytes], regular: list[tuple[bytes, bytes]], body: _RequestBody | None
    ) -> Request:
        method = pseudo[b":method"].decode("ascii")
        authority = pseudo.get(b":authority")
        if authority is None:
            hosts = [value for name, value in regular if name == b"host"]
            if len(hosts) != 1:
                raise ValueError("no :authority and no single Host")  # RFC 9113 section 8.3.1
            authority = hosts[0]
        host = authority.decode("ascii")
        scheme = pseudo.get(b":scheme", b"https" if self.tls else b"http").decode("ascii")
        extensions: dict[str, object] = {}
        if b":protocol" in pseudo:
            extensions["protocol"] = pseudo[b":protocol"].decode("ascii")
        if method == "CONNECT" and not extensions:
            url, target = f"{scheme}://{host}", host
        else:
            target = pseudo[b":path"].decode("ascii")
            url = f"{scheme}://{host}" + (target if target.startswith("/") else "/")
        headers = Headers.from_triples([(name, name, value) for name, value in regular])
        request = Request(method, url, target=target, content=body, extensions=extensions)
        # Request() adds Host and framing fields; the handler sees the fields as received.
        request.headers = headers
        request.trailers = Headers()
        return request

    def _refuse_431(self, stream_id: int, ended: bool, count: int, size: int) -> None:
        body = (
            f"request header section too large: {count} fields, {size} bytes; the limits are "
            f"{self._limits.max_header_count} fields and {self._limits.max_header_bytes} bytes\n"
        ).encode()
        try:
            fits = self.h2.local_flow_control_window(stream_id) >= len(body)
            head = [(b":status", b"431"), (b"content-type", b"text/plain; charset=utf-8")]
            if fits:
                self.h2.send_headers(stream_id, [*head, (b"content-length", str(len(body)).encode())])
                self.h2.send_data(stream_id, body, end_stream=True)
            else:
                self.h2.send_headers(stream_id, head, end_stream=True)
            if not ended:
                self.h2.reset_stream(stream_id, _Codes.NO_ERROR)  # RFC 9113 section 8.1
        except h2.exceptions.ProtocolError:
            self._reset_id(stream_id, _Codes.REFUSED_STREAM)

    def _data(self, stream_id: int, data: bytes, flow_controlled: int) -> None:
        padding = flow_controlled - len(data)
        if padding > 0:
            self._ack(stream_id, padding)
        exchange = self.streams.get(stream_id)
        if exchange is None or exchange.closed or exchange.body_dropped:
            self._ack(stream_id, len(data))  # not wanted: give the credit straight back
            return
        buffer = exchange.buffer
        buffer.feed(data)
        expected = exchange.expected_length
        if expected is not None and buffer.bytes_fed > expected:
            self.reset(exchange, _Codes.PROTOCOL_ERROR)
            exchange.error = RemoteProtocolError(
                f"HTTP/2 stream {stream_id} sent more body bytes than its Content-Length ({expected})"
            )
            buffer.feed_error(exchange.error)

    def _request_ended(self, exchange: H2Exchange) -> None:
        buffer = exchange.buffer
        expected = exchange.expected_length
        if expected is not None and buffer.bytes_fed != expected:
            # RFC 9113 section 8.1.1: a body whose length differs from its Content-Length is malformed.
            self.reset(exchange, _Codes.PROTOCOL_ERROR)
            buffer.feed_error(
                RemoteProtocolError(
                    f"HTTP/2 stream {exchange.stream_id} ended after {buffer.bytes_fed} body bytes "
                    f"but its Content-Length is {expected}"
                )
            )
            return
        exchange.request_ended = True
        buffer.feed_eof()
        self._maybe_done(exchange)

    def _trailers(self, exchange: H2Exchange, fields: list[tuple[bytes, bytes]]) -> None:
        problem = _malformed(fields, trailers=True)
        if problem is None and (
            len(fields) > self._limits.max_header_count or _head_size(fields) > self._limits.max_header_bytes
        ):
            problem = "trailer section over ServerLimits.max_header_count / max_header_bytes"
        if problem is not None:
            error = RemoteProtocolError(f"malformed HTTP/2 request trailers: {problem}")
            self.reset(exchange, _Codes.PROTOCOL_ERROR)
            exchange.buffer.feed_error(error)
            return
        trailers = exchange.request.trailers
        assert trailers is not None
        trailers.extend_raw(fields)

    async def _run(self, exchange: H2Exchange) -> None:
        try:
            await self._handler(exchange)
        except asyncio.CancelledError:
            if not self.lost:
                self.reset(exchange, _Codes.CANCEL)
            raise
        except Exception:
            if exchange.closed:
                return
            if not exchange.head_sent:
                await self._answer_500(exchange, b"the request handler failed\n")
            else:
                exchange.abort()
            return
        if not exchange.head_sent and not exchange.closed:
            await self._answer_500(exchange, b"the request handler did not answer\n")
        elif exchange.head_sent and not (exchange.response_ended or exchange.closed or exchange.upgraded):
            exchange.abort()  # returned mid-body: never a clean end

    async def _answer_500(self, exchange: H2Exchange, body: bytes) -> None:
        try:
            await exchange.respond(500, [(b"content-type", b"text/plain; charset=utf-8")], body)
        except HTTPStreamError:
            self.reset(exchange, _Codes.INTERNAL_ERROR)

    # -- sending ----------------------------------------------------------------------------------
    def send_headers(self, exchange: H2Exchange, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self._check_open(exchange)
        try:
            self.h2.send_headers(exchange.stream_id, fields, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            raise LocalProtocolError(f"cannot send HEADERS on HTTP/2 stream {exchange.stream_id}: {exc}") from exc
        self._flush()
        if end_stream:
            exchange.response_ended = True
            self._maybe_done(exchange)

    async def send_data(self, exchange: H2Exchange, data: bytes, timeout: float | None) -> None:
        """Send ``data`` as the client's stream and connection windows allow."""
        view = memoryview(data)
        while view:
            self._check_open(exchange)
            try:
                window = self.h2.local_flow_control_window(exchange.stream_id)
            except h2.exceptions.ProtocolError as exc:
                raise WriteError(f"HTTP/2 stream {exchange.stream_id} is closed") from exc
            window = min(window, self.h2.max_outbound_frame_size)
            if window <= 0:
                await self._wait(self._window_waiters, timeout, "the client granted no flow-control window", exchange)
                continue
            piece, view = bytes(view[:window]), view[window:]
            try:
                self.h2.send_data(exchange.stream_id, piece)
            except h2.exceptions.ProtocolError as exc:
                raise WriteError(f"cannot send DATA on HTTP/2 stream {exchange.stream_id}: {exc}") from exc
            self._flush()
            if self._write_paused:
                await self._wait(self._drain_waiters, timeout, "the client read nothing from the socket", exchange)

    def end_response(self, exchange: H2Exchange, trailers: Headers | None = None) -> None:
        """END_STREAM, on a trailing HEADERS frame when there are trailers."""
        if exchange.closed or exchange.response_ended or self.lost:
            return
        try:
            if trailers:
                self.h2.send_headers(exchange.stream_id, _response_fields(trailers), end_stream=True)
            else:
                self.h2.end_stream(exchange.stream_id)
        except h2.exceptions.ProtocolError as exc:
            raise LocalProtocolError(f"cannot end HTTP/2 stream {exchange.stream_id}: {exc}") from exc
        exchange.response_ended = True
        self._flush()
        self._maybe_done(exchange)

    def _check_open(self, exchange: H2Exchange) -> None:
        if exchange.closed:
            error = exchange.error
            if isinstance(error, HTTPStreamError):
                raise error
            raise WriteError(f"HTTP/2 stream {exchange.stream_id} is closed")
        if self.lost:
            raise WriteError("HTTP/2 connection lost")

    async def _wait(
        self, queue: list[asyncio.Future[None]], timeout: float | None, what: str, exchange: H2Exchange
    ) -> None:
        waiter = self._loop.create_future()
        queue.append(waiter)
        timer = None
        if timeout is not None:
            timer = self._loop.call_later(timeout, _expire, waiter, timeout, what)
        try:
            await waiter
        except WriteTimeout as exc:
            self.reset(exchange, _Codes.CANCEL)
            exchange.error = exc
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in queue:
                queue.remove(waiter)

    # -- stream bookkeeping -----------------------------------------------------------------------
    def reset(self, exchange: H2Exchange, code: _Codes) -> None:
        """RST_STREAM on ``exchange`` (if still open) and forget it."""
        if exchange.closed:
            return
        self._reset_id(exchange.stream_id, code)
        self._flush()
        self._close_stream(exchange, WriteError(f"HTTP/2 stream {exchange.stream_id} was reset ({code.name})"))

    def _reset_id(self, stream_id: int, code: _Codes) -> None:
        if self.lost:
            return
        try:
            self.h2.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass  # already closed on h2's side

    def _close_stream(self, exchange: H2Exchange, error: BaseException) -> None:
        if exchange.closed:
            return
        exchange.closed = True
        if exchange.error is None:
            exchange.error = error
        exchange.buffer.feed_error(exchange.error)
        self._forget(exchange)

    def _maybe_done(self, exchange: H2Exchange) -> None:
        if exchange.closed or not exchange.response_ended:
            return
        if not exchange.request_ended:
            if exchange.upgraded and not exchange.body_dropped:
                return  # a tunnel stays open until the client ends its side too
            # Answered in full before the whole request came: stop it (RFC 9113 section 8.1).
            self._reset_id(exchange.stream_id, _Codes.NO_ERROR)
            self._flush()
        exchange.closed = True
        self._forget(exchange)

    def _forget(self, exchange: H2Exchange) -> None:
        if exchange.unacked:
            count, exchange.unacked = exchange.unacked, 0
            self._ack(exchange.stream_id, count)
        self.streams.pop(exchange.stream_id, None)
        self._wake(self._window_waiters)
        if not self.streams:
            if self.closing:
                self._close_transport()
            elif not self.lost:
                self._arm(self._limits.keepalive_timeout, self._idle_expired)

    def _consumed(self, exchange: H2Exchange, count: int) -> None:
        # Per read when the handler keeps up (buffer empty), else every _ACK_BATCH
        # bytes; h2 sends WINDOW_UPDATE once enough is acknowledged.
        exchange.unacked += count
        if exchange.unacked >= _ACK_BATCH or exchange.buffer.size == 0:
            count, exchange.unacked = exchange.unacked, 0
            self._ack(exchange.stream_id, count)

    def _ack(self, stream_id: int, count: int) -> None:
        if self.lost or count <= 0:
            return
        try:
            self.h2.acknowledge_received_data(count, stream_id)
        except h2.exceptions.ProtocolError:
            try:
                self.h2.acknowledge_received_data(count, 0)  # stream gone: the connection window still counts
            except h2.exceptions.ProtocolError:
                return
        self._flush()

    # -- closing ------------------------------------------------------------------------------------
    def close_gracefully(self, grace: float = _GRACE) -> None:
        """GOAWAY(NO_ERROR): in-flight streams finish (within ``grace`` seconds), then close."""
        if self._goaway_sent or self.lost or self.transport is None:
            return
        self.closing = self._goaway_sent = True
        try:
            self.h2.goaway_keep_open(self.h2.highest_inbound_stream_id)
        except h2.exceptions.ProtocolError:
            pass
        self._flush()
        if not self.streams:
            self._close_transport()
        else:
            self._arm(grace, self.abort)

    def abort(self) -> None:
        """Close now: in-flight streams fail, handler tasks are cancelled."""
        self._cancel_timer()
        transport = self.transport
        if transport is not None and not self.lost:
            transport.abort()

    def _goaway_now(self, code: _Codes, error: BaseException) -> None:
        self._goaway_sent = True
        try:
            self.h2.close_connection(error_code=code)
        except h2.exceptions.ProtocolError:
            pass
        self._flush()
        self._connection_error(error)

    def _connection_error(self, error: BaseException) -> None:
        self.closing = True
        for exchange in list(self.streams.values()):
            self._close_stream(exchange, error)
        self._close_transport()

    def _close_transport(self) -> None:
        self._cancel_timer()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _head_expired(self) -> None:
        self._timer = None
        if not self._seen_request and not self.streams:
            self._goaway_now(
                _Codes.NO_ERROR,
                RemoteProtocolError(
                    f"no HTTP/2 request within {self._limits.header_timeout:g} s (ServerLimits.header_timeout)"
                ),
            )

    def _idle_expired(self) -> None:
        self._timer = None
        if not self.streams:
            self.close_gracefully()

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- I/O helpers ----------------------------------------------------------------------------------
    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    @staticmethod
    def _wake(queue: list[asyncio.Future[None]]) -> None:
        for waiter in queue[:]:
            if not waiter.done():
                waiter.set_result(None)
        queue.clear()


def _address(value: object) -> tuple[str, int]:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return ("", 0)


def _code_name(code: object) -> str:
    try:
        return _Codes(int(code)).name  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return f"error code {code}"


def _expire(waiter: asyncio.Future[None], seconds: float, what: str) -> None:
    if not waiter.done():
        waiter.set_exception(WriteTimeout(f"{what} for {seconds:g} s"))
