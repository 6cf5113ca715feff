"""The asyncio DatagramProtocol of one QUIC connection carrying HTTP/3.

Theory of operation
-------------------
aioquic is sans-IO; this wraps it the way aioquic's own asyncio glue does, and
as STYLE.md asks: datagram in -> ``QuicConnection.receive_datagram(now=)`` ->
dispatch QUIC events through ``H3Connection.handle_event`` to per-stream state ->
send every pending datagram once -> re-arm the one timer at ``get_timer()``.

Flow control (bounding a slow reader): aioquic raises a stream's receive limit
(MAX_STREAM_DATA) as soon as data *arrives*, doubling it, so a stream nobody reads
could buffer without bound.  ``CreditedQuic`` replaces that one rule for our
request streams: the limit is what the caller has consumed plus
``Limits.h3_stream_window``, so at most one window is ever buffered per stream.
Uploads wait while more than ``_UPLOAD_BUFFER`` bytes sit unacknowledged in
aioquic's send buffer.  Both rules reach into aioquic internals: every such use
is in ``_internals.py``, which checks aioquic's version at import.

Limits aioquic does not enforce: bytes received on a request stream before its
HEADERS frame has been decoded are capped (aioquic would buffer one HEADERS frame
of any size), and so is the decoded header section; a stream over either limit is
reset with H3_EXCESSIVE_LOAD and fails with a clear error.

Cancellation (early close, a cancelled task, a dropped response) sends
STOP_SENDING and RESET_STREAM with H3_REQUEST_CANCELLED; the connection stays.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from aioquic.h3.connection import ErrorCode, H3Connection
from aioquic.h3.connection import Setting as H3Setting
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.h3.exceptions import H3Error
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    PingAcknowledged,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)

from .._config import Limits
from .._exceptions import (
    ConnectError,
    LocalProtocolError,
    ReadTimeout,
    RemoteProtocolError,
    StaleConnection,
    StreamClosed,
    WriteError,
    WriteTimeout,
)
from .._headers import Headers
from .._streams import BodyBuffer, Upload, wake
from ._internals import (
    CreditedQuic,
    live_stream_ids,
    receive_limit,
    remote_max_streams_bidi,
    unacked_send_bytes,
)

__all__ = ["H3Protocol", "H3Stream"]

_UPLOAD_BUFFER = 1024 * 1024
_BATCH = 64  # datagrams read per wake-up before processing (bounded, so others run)
_CreditedQuic = CreditedQuic  # the name _connection.py imports


class H3Stream:
    """One request/response exchange on the QUIC connection."""

    __slots__ = (
        "stream_id",
        "head_waiter",
        "head_timer",
        "buffer",
        "trailers",
        "ended",
        "request_done",
        "closed",
        "error",
        "head_bytes",
        "read_timeout",
        "method",
        "no_body",
        "informational",
        "continue_waiter",
        "upload",
        "on_informational",
    )

    def __init__(self, stream_id: int, read_timeout: float | None, method: str = "GET") -> None:
        self.method = method
        self.no_body = False  # HEAD, 204, 304: any DATA is a protocol error
        self.informational = 0
        self.stream_id = stream_id
        self.head_waiter: asyncio.Future[tuple[int, Headers]] = asyncio.get_running_loop().create_future()
        self.head_timer: asyncio.TimerHandle | None = None
        self.buffer: BodyBuffer | None = None
        self.trailers = Headers()
        self.ended = False
        self.request_done = False
        self.closed = False
        self.error: BaseException | None = None
        self.head_bytes = 0
        self.read_timeout = read_timeout
        # Set while the request waits for "100 Continue" (Expect: 100-continue).
        self.continue_waiter: asyncio.Future[None] | None = None
        self.upload: Upload | None = None  # the request body going up in the background
        self.on_informational: Callable[[int, Headers], None] | None = None


class H3Protocol:
    """Datagrams in, events out, for one QUIC connection.

    It owns a connected, non-blocking UDP socket and reads it itself: when the
    socket is readable, every datagram waiting is handed to aioquic, the
    resulting events are dispatched (a stream's DATA coalesced into one chunk per
    batch), and packets go out once for the whole batch.  asyncio's datagram
    transport would spend a loop iteration, an event dispatch and a send per
    received datagram, which is most of HTTP/3's cost in Python.
    """

    def __init__(
        self,
        quic: CreditedQuic,
        *,
        limits: Limits,
        on_stream_closed: Callable[[H3Stream], None],
        on_state: Callable[[], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.quic = quic
        self.h3 = H3Connection(quic)
        self._limits = limits
        self._on_stream_closed = on_stream_closed
        self._on_state = on_state
        self.sock: socket.socket | None = None
        self.streams: dict[int, H3Stream] = {}
        self._batch: dict[int, list[bytes]] = {}  # stream id -> DATA received in this batch
        self.handshake: asyncio.Future[str | None] = self._loop.create_future()
        self.terminated = False
        self.resumed = False  # the handshake resumed a session (from a kept ticket)
        self.error: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._send_waiters: list[asyncio.Future[None]] = []
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._peer: Any = None
        self._settings_waiter: asyncio.Future[None] | None = None

    # -- the socket ------------------------------------------------------------------------------
    def attach(self, sock: socket.socket) -> None:
        self.sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        quic = self.quic
        now = self._loop.time()
        addr = self._peer
        for _ in range(_BATCH):
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ICMP "port unreachable" on our connected socket: during the
                # handshake nothing listens there, so fail at once (the pool
                # falls back to TCP); later, QUIC's loss detection decides.
                if not self.handshake.done():
                    self._terminate(ConnectError(f"nothing answers on that UDP port ({exc})"))
                    return
                continue
            quic.receive_datagram(data, addr, now=now)
        self._process()

    def _close_socket(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    # -- the core loop --------------------------------------------------------------------------
    def _process(self) -> None:
        was_full = self.handshake.done() and not self.terminated and not self.can_open(0)
        while True:
            event = self.quic.next_event()
            if event is None:
                break
            self._quic_event(event)
        if self._settings_waiter is not None and (self.h3.received_settings is not None or self.terminated):
            wake(self._settings_waiter)
        if was_full and not self.terminated and self.can_open(0):
            # The server granted more streams (MAX_STREAMS): queued requests may go.
            self._on_state()
        if self._batch:
            batch, self._batch = self._batch, {}
            for stream_id, pieces in batch.items():
                stream = self.streams.get(stream_id)
                if stream is not None and stream.buffer is not None:
                    stream.buffer.feed(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            for stream_id in batch:
                stream = self.streams.get(stream_id)
                if stream is not None and stream.ended and stream.buffer is not None:
                    self._end_body(stream)
        self.transmit()

    def transmit(self) -> None:
        sock = self.sock
        if sock is not None:
            for data, _addr in self.quic.datagrams_to_send(now=self._loop.time()):
                try:
                    sock.send(data)  # a connected socket: one peer
                except (BlockingIOError, InterruptedError):
                    break  # the kernel's buffer is full: QUIC recovers it as loss
                except OSError:
                    continue  # ICMP errors surface here too; loss detection decides
        when = self.quic.get_timer()
        if self._timer is not None and (when is None or self._timer.when() != when):
            self._timer.cancel()
            self._timer = None
        if when is not None and self._timer is None:
            self._timer = self._loop.call_at(when, self._on_timer)
        if self._send_waiters:
            waiters, self._send_waiters = self._send_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        self.quic.handle_timer(now=self._loop.time())
        self._process()

    def _quic_event(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.head_waiter.done():
                stream.head_bytes += len(event.data)
                if stream.head_bytes > self._limits.max_header_bytes:
                    self._abort(
                        stream,
                        RemoteProtocolError(
                            f"HTTP/3 response head larger than the limit of {self._limits.max_header_bytes} bytes "
                            "(Limits.max_header_bytes)"
                        ),
                        ErrorCode.H3_EXCESSIVE_LOAD,
                    )
                    return
        elif isinstance(event, HandshakeCompleted):
            self.resumed = bool(event.session_resumed)
            if not self.handshake.done():
                self.handshake.set_result(event.alpn_protocol)
            return
        elif isinstance(event, ConnectionTerminated):
            reason = event.reason_phrase or "no reason given"
            self._terminate(
                RemoteProtocolError(
                    f"QUIC connection closed (error code {event.error_code}: {reason})", error_code=event.error_code
                )
            )
            return
        elif isinstance(event, StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                if event.error_code == ErrorCode.H3_REQUEST_REJECTED and stream.buffer is None:
                    self._fail(stream, StaleConnection(f"server rejected HTTP/3 stream {stream.stream_id}"))
                else:
                    self._fail(
                        stream,
                        RemoteProtocolError(
                            f"server reset HTTP/3 stream {stream.stream_id} with {_code(event.error_code)}",
                            error_code=event.error_code,
                        ),
                    )
            return
        elif isinstance(event, StopSendingReceived):
            # RFC 9114 section 4.1: the server needs no more request body
            # (H3_NO_ERROR after a complete answer); its answer decides the
            # rest.  The upload stops and our side ends with RESET_STREAM.
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.request_done:
                if stream.upload is not None:
                    stream.upload.stop()
                try:
                    self.quic.reset_stream(event.stream_id, event.error_code)
                except (ValueError, AssertionError):
                    pass  # already finished on that side
                stream.request_done = True
                if stream.ended and stream.buffer is not None and stream.buffer.eof:
                    self._forget(stream)
            return
        elif isinstance(event, PingAcknowledged):
            waiter = self._pings.pop(event.uid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        try:
            h3_events = self.h3.handle_event(event)
        except H3Error as exc:
            self.connection_error(RemoteProtocolError(f"HTTP/3 protocol error from the server: {exc}"))
            return
        for h3_event in h3_events:
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None:
                return
            if not stream.head_waiter.done():
                self._head(stream, event.headers)
            else:
                stream.trailers.extend_raw((n, v) for n, v in event.headers if not n.startswith(b":"))
            if event.stream_ended:
                self._ended(stream)
        elif isinstance(event, DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None:
                return
            if stream.buffer is None:
                self._abort(
                    stream, RemoteProtocolError("HTTP/3 DATA before the response head"), ErrorCode.H3_FRAME_UNEXPECTED
                )
                return
            if event.data and stream.no_body:
                self._abort(
                    stream,
                    RemoteProtocolError("HTTP/3 response to HEAD (or a 204/304) carried a body"),
                    ErrorCode.H3_MESSAGE_ERROR,
                )
                return
            if event.data:
                self._batch.setdefault(event.stream_id, []).append(event.data)
            if event.stream_ended:
                stream.ended = True
                if event.stream_id not in self._batch:
                    self._end_body(stream)

    def _head(self, stream: H3Stream, raw: list[tuple[bytes, bytes]]) -> None:
        status = 0
        size = 0
        fields: list[tuple[bytes, bytes, bytes]] = []
        for name, value in raw:
            size += len(name) + len(value) + 32  # RFC 9114 section 4.2.2 accounting
            if name == b":status":
                status = int(value) if value.isdigit() else 0
            elif not name.startswith(b":"):
                fields.append((name, name, value))
        limits = self._limits
        if size > limits.max_header_bytes or len(fields) > limits.max_header_count:
            self._abort(
                stream,
                RemoteProtocolError(
                    f"HTTP/3 header section too large ({len(fields)} fields, {size} bytes; limits "
                    f"Limits.max_header_count={limits.max_header_count}, "
                    f"Limits.max_header_bytes={limits.max_header_bytes})"
                ),
                ErrorCode.H3_EXCESSIVE_LOAD,
            )
            return
        if status < 100:
            self._abort(
                stream, RemoteProtocolError("HTTP/3 response without a valid :status"), ErrorCode.H3_MESSAGE_ERROR
            )
            return
        if status < 200:
            stream.head_bytes = 0
            stream.informational += 1
            if status == 100:
                wake(stream.continue_waiter)
            hook = stream.on_informational
            if hook is not None and stream.informational <= limits.max_informational_responses:
                try:
                    hook(status, Headers.from_triples(fields))
                except Exception as exc:
                    error = LocalProtocolError(f"the on_informational hook raised {type(exc).__name__}: {exc}")
                    error.__cause__ = exc
                    self._abort(stream, error, ErrorCode.H3_REQUEST_CANCELLED)
                    return
            if stream.informational > limits.max_informational_responses:
                self._abort(
                    stream,
                    RemoteProtocolError(
                        f"more than {limits.max_informational_responses} informational (1xx) responses to one request"
                    ),
                    ErrorCode.H3_EXCESSIVE_LOAD,
                )
            return  # informational: the final head follows
        stream.no_body = stream.method == "HEAD" or status in (204, 304)
        if stream.head_timer is not None:
            stream.head_timer.cancel()
            stream.head_timer = None
        stream.buffer = BodyBuffer(
            high_water=1 << 62,  # bounded by the stream's flow-control window instead
            low_water=0,
            read_timeout=stream.read_timeout,
            on_consumed=lambda n: self._consumed(stream, n),
        )
        stream.head_waiter.set_result((status, Headers.from_triples(fields)))

    def _ended(self, stream: H3Stream) -> None:
        stream.ended = True
        if stream.buffer is not None:
            if stream.stream_id not in self._batch:
                self._end_body(stream)
        else:
            self._fail(stream, RemoteProtocolError("server ended the HTTP/3 stream without a response head"))

    def _end_body(self, stream: H3Stream) -> None:
        assert stream.buffer is not None
        stream.buffer.feed_eof()
        if stream.request_done:
            self._forget(stream)

    # -- streams ------------------------------------------------------------------------------------
    def open_stream(self, method: str, read_timeout: float | None) -> H3Stream:
        stream_id = self.quic.get_next_available_stream_id()
        stream = H3Stream(stream_id, read_timeout, method)
        self.streams[stream_id] = stream
        consumed = self.quic.consumed
        if len(consumed) > 2 * len(self.streams) + 16:
            live = live_stream_ids(self.quic)
            for key in [k for k in consumed if k not in live and k not in self.streams]:
                del consumed[key]
        consumed[stream_id] = 0
        return stream

    def send_headers(self, stream: H3Stream, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self.h3.send_headers(stream.stream_id, headers, end_stream=end_stream)
        if end_stream:
            stream.request_done = True
        self.transmit()

    async def send_body(self, stream: H3Stream, data: bytes, write_timeout: float | None) -> None:
        """Hand ``data`` to QUIC; wait while too much of the stream is unacknowledged.

        The write timeout runs from the last *progress* (the peer acknowledged
        some of the stream), not from the last wake-up: every transmit wakes the
        waiter, and on a dead path loss-probe timers keep transmitting, so a
        timeout re-armed per wake-up would stretch with their backoff.
        """
        if stream.closed or stream.ended:
            return
        self.h3.send_data(stream.stream_id, data, end_stream=False)
        self.transmit()
        unacked = self._unacked(stream)
        deadline = None if write_timeout is None else self._loop.time() + write_timeout
        while unacked > _UPLOAD_BUFFER:
            if stream.closed or stream.ended or self.terminated:
                return
            await self._wait_send(deadline, write_timeout)
            now_unacked = self._unacked(stream)
            if now_unacked < unacked and write_timeout is not None:
                deadline = self._loop.time() + write_timeout
            unacked = now_unacked

    def end_request(self, stream: H3Stream, trailers: Headers | None = None) -> None:
        """End our side: FIN, after a trailing HEADERS frame if there are trailers."""
        if stream.closed or stream.request_done:
            return
        if stream.ended:
            # A complete answer before the whole body: stop with H3_NO_ERROR.
            self._abort(stream, None, ErrorCode.H3_NO_ERROR)
            return
        if trailers:
            self.h3.send_headers(stream.stream_id, [(n, v) for _, n, v in trailers.triples()], end_stream=True)
        else:
            self.h3.send_data(stream.stream_id, b"", end_stream=True)
        stream.request_done = True
        if stream.ended and stream.buffer is not None and stream.buffer.eof:
            self._forget(stream)
        self.transmit()

    def send_now(self, stream: H3Stream, data: bytes) -> bool:
        """Hand a small body to QUIC at once (it buffers it); a large one goes through ``send_body``."""
        if len(data) > _UPLOAD_BUFFER:
            return False
        self.h3.send_data(stream.stream_id, data, end_stream=False)
        return True

    def stream_slot_free(self) -> bool:
        return True  # can_open() counted the peer's MAX_STREAMS when the pool reserved the slot

    async def wait_for_stream_slot(self, timeout: float | None) -> None:
        return None

    async def extended_connect_allowed(self, timeout: float | None) -> bool:
        """RFC 9220: did the server's SETTINGS enable extended CONNECT?  Waits for them (bounded)."""
        if self.h3.received_settings is None and not self.terminated:
            waiter = self._loop.create_future()
            self._settings_waiter = waiter
            timer = self._loop.call_later(timeout, wake, waiter) if timeout is not None else None
            try:
                await waiter
            finally:
                self._settings_waiter = None
                if timer is not None:
                    timer.cancel()
        settings = self.h3.received_settings or {}
        return settings.get(H3Setting.ENABLE_CONNECT_PROTOCOL) == 1

    def extra_info(self, name: str) -> object:
        sock = self.sock
        if name == "socket":
            return sock
        if name == "server_addr":
            return self._peer
        if name == "client_addr":
            return sock.getsockname() if sock is not None else None
        return None

    async def wait_closed(self, timeout: float) -> None:
        return None  # close() ends the QUIC connection and its endpoint at once

    def _unacked(self, stream: H3Stream) -> int:
        return unacked_send_bytes(self.quic, stream.stream_id)

    async def _wait_send(self, deadline: float | None, timeout: float | None) -> None:
        """Wait for the next transmit (or the stream's end); WriteTimeout at ``deadline``."""
        waiter = self._loop.create_future()
        self._send_waiters.append(waiter)
        timer = None
        if deadline is not None:
            timer = self._loop.call_at(
                deadline,
                _expire,
                waiter,
                WriteTimeout(f"the server acknowledged no request data for {timeout:g} s (write timeout)"),
            )
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()

    def arm_head_timer(self, stream: H3Stream) -> None:
        if stream.read_timeout is not None and not stream.head_waiter.done():
            stream.head_timer = self._loop.call_later(stream.read_timeout, self._head_expired, stream)

    def _head_expired(self, stream: H3Stream) -> None:
        if not stream.head_waiter.done():
            self._abort(
                stream,
                ReadTimeout(f"no response within {stream.read_timeout:g} s (read timeout)"),
                ErrorCode.H3_REQUEST_CANCELLED,
            )

    def cancel(self, stream: H3Stream, exc: BaseException) -> None:
        """The caller gave up: STOP_SENDING + RESET_STREAM (H3_REQUEST_CANCELLED)."""
        if stream.closed:
            return
        if stream.buffer is not None:
            stream.buffer.discard()
        self._abort(stream, exc, ErrorCode.H3_REQUEST_CANCELLED)

    def release(self, stream: H3Stream) -> None:
        buffer = stream.buffer
        if stream.closed:
            if buffer is not None:
                buffer.discard()
            return
        if stream.ended and buffer is not None and buffer.at_eof:
            self.end_request(stream)  # an answer that came before the whole upload: stop it
            return
        self.cancel(stream, StreamClosed())

    def _abort(self, stream: H3Stream, exc: BaseException | None, code: int) -> None:
        if not self.terminated:
            try:
                if not stream.ended:
                    self.quic.stop_stream(stream.stream_id, code)
                if not stream.request_done:
                    self.quic.reset_stream(stream.stream_id, code)
            except (ValueError, AssertionError):
                pass  # already finished on that side
            self.transmit()
        if exc is None:
            self._forget(stream)
        else:
            self._fail(stream, exc)

    def _consumed(self, stream: H3Stream, count: int) -> None:
        consumed = self.quic.consumed
        total = consumed.get(stream.stream_id)
        if total is None or self.terminated:
            return
        total += count
        consumed[stream.stream_id] = total
        limit = receive_limit(self.quic, stream.stream_id)
        window = self._limits.h3_stream_window
        # Send only when the credit is due (half a window), not on every read.
        if limit is not None and total + window - limit >= window // 2:
            self.transmit()

    def _fail(self, stream: H3Stream, exc: BaseException) -> None:
        if stream.closed:
            return
        stream.error = exc
        if stream.head_timer is not None:
            stream.head_timer.cancel()
            stream.head_timer = None
        if not stream.head_waiter.done():
            stream.head_waiter.set_exception(exc)
        elif stream.buffer is not None:
            stream.buffer.feed_error(exc)
        self._forget(stream)

    def _forget(self, stream: H3Stream) -> None:
        if stream.closed:
            return
        stream.closed = True
        self.streams.pop(stream.stream_id, None)
        # The stream's credit stays frozen (its entry in ``consumed`` is kept):
        # a server that goes on sending to a stream we gave up on gets no more
        # window.  Entries go once aioquic has discarded the stream.
        for waiter in self._send_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._on_stream_closed(stream)

    def _terminate(self, exc: BaseException) -> None:
        if self.terminated:
            return
        self.terminated = True
        if self.error is None:
            self.error = exc
        if not self.handshake.done():
            self.handshake.set_exception(ConnectError(f"QUIC handshake failed: {exc}"))
        for stream in list(self.streams.values()):
            self._fail(stream, exc)
        for waiter in self._send_waiters + list(self._pings.values()):
            if not waiter.done():
                waiter.set_exception(WriteError(f"QUIC connection closed: {exc}"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close_socket()
        self._on_state()

    def connection_error(self, exc: BaseException) -> None:
        if not self.terminated:
            self.quic.close(error_code=ErrorCode.H3_GENERAL_PROTOCOL_ERROR, reason_phrase=str(exc)[:100])
            self.transmit()
        self._terminate(exc)

    def close(self) -> None:
        """Graceful close: CONNECTION_CLOSE (H3_NO_ERROR), then the endpoint."""
        if self.terminated:
            return
        self.quic.close(error_code=ErrorCode.H3_NO_ERROR)
        self.transmit()
        self._terminate(RemoteProtocolError("the HTTP/3 connection was closed"))

    async def ping(self, timeout: float) -> bool:
        if self.terminated:
            return False
        uid = id(object())
        waiter = self._loop.create_future()
        self._pings[uid] = waiter
        self.quic.send_ping(uid)
        self.transmit()
        timer = self._loop.call_later(timeout, _expire, waiter, WriteTimeout("no PING answer"))
        try:
            await waiter
        except (WriteTimeout, WriteError):
            return False
        finally:
            timer.cancel()
            self._pings.pop(uid, None)
        return True

    @property
    def is_usable(self) -> bool:
        return (
            not self.terminated
            and self.handshake.done()
            and not self.handshake.cancelled()
            and self.handshake.exception() is None
        )

    def can_open(self, reserved: int) -> bool:
        """Room for one more request stream: our cap, and the peer's MAX_STREAMS."""
        if len(self.streams) + reserved >= self._limits.max_concurrent_streams:
            return False
        next_index = self.quic.get_next_available_stream_id() // 4 + reserved
        return next_index < remote_max_streams_bidi(self.quic)


def _code(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error code {code:#x}"


def _expire(waiter: asyncio.Future[Any], exc: BaseException) -> None:
    if not waiter.done():
        waiter.set_exception(exc)
