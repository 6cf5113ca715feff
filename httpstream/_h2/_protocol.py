"""The asyncio Protocol of one HTTP/2 connection.

Theory of operation
-------------------
Push model, as aioquic wraps its core: ``data_received`` feeds h2, the events
are dispatched to per-stream state (head waiter, body buffer, trailers), and
everything h2 wants to send goes out in one ``transport.write``.  No reader lock,
no task per stream: streams never take turns reading the socket.

Flow control (RFC 9113 section 5.2): h2 only tells us what arrived.  WINDOW_UPDATE
is sent for bytes the *caller consumed*: each stream's body buffer reports what
it handed out (``on_consumed``) and we acknowledge exactly that to h2, which sends
the update once enough has accumulated.  A slow reader therefore holds at most its
stream window in memory and stalls only itself, since the connection window is
larger than any one stream's.  Bytes dropped by an early close are acknowledged
too, so the connection window never leaks credit; DATA that arrives for a stream
we already reset is credited by h2 itself.

Uploads send no more than the peer's windows allow: a sender waits on a future
that WINDOW_UPDATE (or a SETTINGS change) resolves, with the write timeout as a
``call_later`` deadline.

Errors are converted here, at the one place h2 is called: a protocol error from
the peer fails every open stream with a ``RemoteProtocolError`` carrying the
cause and closes the connection; RST_STREAM fails only its stream, with its error
code; GOAWAY stops new streams and fails those above its last stream id with
``StaleConnection`` (never processed, so the pool may retry them).

What this module takes from h2 beyond its public API (the connection subclass,
the header-list limit, how an oversized header block is recognised) is in
``_internals.py``; the checks on a response's fields are in ``_fields.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h2.config
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

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
from .._network import transport_extra
from .._streams import BodyBuffer, wake
from ._fields import code_name, malformed
from ._internals import ClientH2Connection, limit_header_list, oversized_header_block
from ._stream import H2Stream

__all__ = ["H2Protocol", "H2Stream"]

_ACK_BATCH = 64 * 1024
_MAX_CONTROL_FRAMES_PER_SECOND = 1000


class H2Protocol(asyncio.Protocol):
    """Bytes in, events out, for one HTTP/2 connection."""

    def __init__(
        self,
        *,
        limits: Limits,
        on_stream_closed: Callable[[H2Stream], None],
        on_state: Callable[[], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._limits = limits
        self._on_stream_closed = on_stream_closed
        self._on_state = on_state
        # Field checks are ours: outbound, a Request's fields are validated when it
        # is built (and names lowercased here); inbound, ``malformed`` checks the
        # response so a malformed one is a *stream* error (RFC 9113 section 8.1.1)
        # where h2 would fail the whole connection.
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = ClientH2Connection(config=config)
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.h2_stream_window,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: limits.h2_max_frame_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_bytes,
            },
        )
        # Settings given up front count as in force from the first frame, so h2
        # never "acknowledges" them into its own limits: set those here.
        self.h2.max_inbound_frame_size = limits.h2_max_frame_size
        limit_header_list(self.h2, limits.max_header_bytes)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2Stream] = {}
        self.lost = False
        # Resolved by connection_lost: the pool's aclose() waits on it (bounded)
        # so a TLS close_notify exchange finishes before the caller moves on.
        self.lost_future: asyncio.Future[None] = self._loop.create_future()
        self.goaway = False
        self.error: BaseException | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._window_waiters: list[asyncio.Future[None]] = []
        self._ping_waiters: dict[bytes, asyncio.Future[None]] = {}
        self._slot_waiters: list[asyncio.Future[None]] = []
        self._ping: asyncio.Future[None] | None = None
        self._ping_counter = 0
        self._control_window_start = 0.0
        self._control_frames = 0
        self._pending: dict[int, list[bytes]] = {}
        self._saw_settings = False
        self._settings_seen: asyncio.Future[None] = self._loop.create_future()  # the peer's first SETTINGS applied
        self._first_bytes = bytearray()

    # -- asyncio callbacks -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.initiate_connection()
        extra = self._limits.h2_connection_window - self.h2.inbound_flow_control_window
        if extra > 0:
            self.h2.increment_flow_control_window(extra)
        self.flush()

    def data_received(self, data: bytes) -> None:
        if not self._saw_settings:
            # RFC 9113 section 3.4: the server's preface is a SETTINGS frame.  Check
            # it ourselves: h2 would buffer an HTTP/1.1 answer as one huge frame.
            self._first_bytes += data
            if len(self._first_bytes) < 9:
                return
            if self._first_bytes[3] != 0x4 or self._first_bytes[5:9] != b"\x00\x00\x00\x00":
                self.connection_error(
                    RemoteProtocolError(
                        "the server did not answer with HTTP/2 (its first bytes were "
                        f"{bytes(self._first_bytes[:24])!r}); it may speak only HTTP/1.1"
                    )
                )
                return
            self._saw_settings = True
            data, self._first_bytes = bytes(self._first_bytes), bytearray()
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.flush()  # h2 queued a GOAWAY that says why
            if oversized_header_block(exc):
                # hpack refuses a header list above the size we announced; the
                # HPACK state is lost with it, so the whole connection goes.
                error = RemoteProtocolError(
                    f"HTTP/2 response head larger than the limit of {self._limits.max_header_bytes} bytes "
                    f"(Limits.max_header_bytes; raise it if this server is trusted): {exc}"
                )
            else:
                error = RemoteProtocolError(f"HTTP/2 protocol error from the server: {exc}")
            error.__cause__ = exc
            self.connection_error(error)
            return
        pending = self._pending
        for event in events:
            if type(event) is h2.events.DataReceived:
                self._data(event, pending)
                continue
            if pending:
                self._feed_pending()
            self._dispatch(event)
        if pending:
            self._feed_pending()
        self.flush()

    def _data(self, event: h2.events.DataReceived, pending: dict[int, list[bytes]]) -> None:
        """DATA is collected per stream and fed once per read (fewer, larger chunks)."""
        stream_id = event.stream_id or 0
        stream = self.streams.get(stream_id)
        data = event.data or b""
        padding = (event.flow_controlled_length or 0) - len(data)
        if padding > 0:
            self.h2.acknowledge_received_data(padding, stream_id)
        if stream is None or stream.buffer is None:
            if data:  # not ours any more: give the credit straight back
                self._ack(stream_id, len(data))
            return
        if data:
            pieces = pending.get(stream_id)
            if pieces is None:
                pending[stream_id] = [data]
            else:
                pieces.append(data)

    def _feed_pending(self) -> None:
        pending = self._pending
        for stream_id, pieces in pending.items():
            stream = self.streams.get(stream_id)
            if stream is not None and stream.buffer is not None:
                stream.buffer.feed(pieces[0] if len(pieces) == 1 else b"".join(pieces))
                expected = stream.expected_length
                if expected is not None and stream.buffer.bytes_fed > expected:
                    self._reset(stream, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                    self._fail(
                        stream,
                        RemoteProtocolError(
                            f"HTTP/2 response to HEAD (or a 204/304) on stream {stream_id} carried a body"
                            if stream.no_body
                            else f"HTTP/2 stream {stream_id} sent more body bytes than its Content-Length ({expected})"
                        ),
                    )
        pending.clear()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        wake(self._settings_seen)
        if not self.lost_future.done():
            self.lost_future.set_result(None)
        self._wake_senders()
        error = self.error  # a GOAWAY with an error code says why, if there was one
        if error is None:
            cause = f": {exc}" if exc is not None else ""
            error = (
                ReadError(f"HTTP/2 connection lost{cause}")
                if exc is not None
                else RemoteProtocolError("server closed the HTTP/2 connection")
            )
            self.error = error
        self._fail_all(error)
        for waiter in self._drain_waiters + self._window_waiters + list(self._ping_waiters.values()):
            if not waiter.done():
                waiter.set_exception(WriteError("HTTP/2 connection lost"))
        self._on_state()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- events ----------------------------------------------------------------------------
    def _dispatch(self, event: h2.events.Event) -> None:
        kind = type(event)
        if kind is h2.events.ResponseReceived:
            assert isinstance(event, h2.events.ResponseReceived)
            self._head(event.stream_id or 0, event.headers or [])
        elif kind is h2.events.StreamEnded:
            stream = self.streams.get(event.stream_id or 0)  # type: ignore[attr-defined]
            if stream is not None:
                buffer = stream.buffer
                expected = stream.expected_length
                if buffer is not None and expected is not None and buffer.bytes_fed != expected:
                    # RFC 9113 section 8.1.1: a body whose length differs from its
                    # Content-Length is malformed; never hand it over as complete.
                    self._reset(stream, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                    self._fail(
                        stream,
                        IncompleteBody(
                            f"HTTP/2 stream {stream.stream_id} ended after {buffer.bytes_fed} body bytes "
                            f"but its Content-Length is {expected}; the body is incomplete or too long",
                            received=buffer.bytes_fed,
                            expected=expected,
                        ),
                    )
                    return
                stream.ended = True
                self._wake_senders()  # an upload waiting for window stops at once
                if buffer is not None:
                    buffer.feed_eof()
                elif not stream.head_waiter.done():
                    stream.head_waiter.set_exception(
                        RemoteProtocolError("server ended the stream without a response head")
                    )
                self._maybe_done(stream)
        elif kind is h2.events.TrailersReceived:
            assert isinstance(event, h2.events.TrailersReceived)
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                problem = malformed(event.headers or [], trailers=True)
                if problem is not None:
                    self._reset(stream, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                    self._fail(stream, RemoteProtocolError(f"malformed HTTP/2 trailers: {problem}"))
                else:
                    stream.trailers.extend_raw(event.headers or [])
        elif kind is h2.events.InformationalResponseReceived:
            assert isinstance(event, h2.events.InformationalResponseReceived)
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream.informational += 1
                raw = event.headers or []
                if (b":status", b"100") in raw:
                    wake(stream.continue_waiter)
                if stream.informational > self._limits.max_informational_responses:
                    self._reset(stream, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                    self._fail(stream, RemoteProtocolError("too many informational (1xx) responses"))
                elif stream.on_informational is not None:
                    self._informational(stream, raw)
        elif kind is h2.events.StreamReset:
            assert isinstance(event, h2.events.StreamReset)
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                code = code_name(event.error_code)
                message = f"server reset HTTP/2 stream {stream.stream_id} with {code}"
                if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM and stream.buffer is None:
                    # RFC 9113 section 8.7: a refused stream was not processed.
                    self._fail(stream, StaleConnection(message + " (not processed)"))
                elif stream.ended and stream.buffer is not None and event.error_code == 0:
                    self._maybe_done(stream, force=True)  # NO_ERROR after a complete answer
                else:
                    self._fail(stream, RemoteProtocolError(message, error_code=int(event.error_code or 0)))
        elif kind is h2.events.PingReceived or kind is h2.events.RemoteSettingsChanged:
            # h2 queues an ACK for each; a peer that sends them without end (and
            # reads nothing back) would make that queue grow without bound.
            now = self._loop.time()
            if now - self._control_window_start > 1.0:
                self._control_window_start, self._control_frames = now, 0
            self._control_frames += 1
            if self._control_frames > _MAX_CONTROL_FRAMES_PER_SECOND:
                self.connection_error(
                    RemoteProtocolError(
                        f"more than {_MAX_CONTROL_FRAMES_PER_SECOND} PING/SETTINGS frames in one second (a flood)"
                    )
                )
                return
            if kind is h2.events.RemoteSettingsChanged:
                wake(self._settings_seen)
                self._wake_senders()
                self._on_state()
        elif kind is h2.events.WindowUpdated:
            self._wake_senders()
        elif kind is h2.events.ConnectionTerminated:
            assert isinstance(event, h2.events.ConnectionTerminated)
            self._goaway(event)
        elif kind is h2.events.PingAckReceived:
            assert isinstance(event, h2.events.PingAckReceived)
            waiter = self._ping_waiters.pop(bytes(event.ping_data or b""), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _head(self, stream_id: int, raw: list[tuple[bytes, bytes]]) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.head_waiter.done():
            return
        problem = malformed(raw, trailers=False)
        if problem is not None:
            self._reset(stream, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            self._fail(stream, RemoteProtocolError(f"malformed HTTP/2 response on stream {stream_id}: {problem}"))
            return
        status = 0
        fields: list[tuple[bytes, bytes, bytes]] = []
        lengths: set[bytes] = set()
        for name, value in raw:
            if name == b":status":
                status = int(value)
            elif not name.startswith(b":"):
                fields.append((name, name, value))
                if name == b"content-length":
                    lengths.update(v.strip() for v in value.split(b","))
        if lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                self._reset(stream, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                self._fail(
                    stream, RemoteProtocolError(f"invalid Content-Length in HTTP/2 response: {sorted(lengths)!r}")
                )
                return
            stream.expected_length = int(next(iter(lengths)))
        if stream.method == "HEAD" or status in (204, 304):
            # RFC 9110 sections 9.3.2, 15.3.5 and 15.4.5: no body, whatever a
            # Content-Length says (it may describe the resource).
            stream.no_body = True
            stream.expected_length = 0
        if len(fields) > self._limits.max_header_count:
            self._reset(stream, h2.errors.ErrorCodes.REFUSED_STREAM)
            self._fail(
                stream,
                RemoteProtocolError(
                    f"response has {len(fields)} header fields, more than the limit of "
                    f"{self._limits.max_header_count} (Limits.max_header_count)"
                ),
            )
            return
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

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.goaway = True
        last = event.last_stream_id or 0
        code = code_name(event.error_code)
        for stream in list(self.streams.values()):
            if stream.stream_id > last:
                self._fail(
                    stream,
                    StaleConnection(f"server sent GOAWAY ({code}) before processing HTTP/2 stream {stream.stream_id}"),
                )
        if event.error_code:
            self.error = RemoteProtocolError(
                f"server closed the HTTP/2 connection with GOAWAY ({code})", error_code=int(event.error_code)
            )
        self._on_state()
        if not self.streams:
            self.close()

    # -- streams --------------------------------------------------------------------------------
    def open_stream(self, method: str, read_timeout: float | None) -> H2Stream:
        stream_id = self.h2.get_next_available_stream_id()
        stream = H2Stream(stream_id, method, read_timeout)
        self.streams[stream_id] = stream
        return stream

    def send_headers(self, stream: H2Stream, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        try:
            self.h2.send_headers(stream.stream_id, headers, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            raise RemoteProtocolError(f"cannot open an HTTP/2 stream: {exc}") from exc
        if end_stream:
            stream.request_done = True
        self.flush()

    async def send_body(self, stream: H2Stream, data: bytes, write_timeout: float | None) -> None:
        """Send ``data`` as the peer's stream and connection windows allow.

        The write timeout for window runs from the moment this stream ran out of
        it: waiters are woken by anything that might free window (WINDOW_UPDATE,
        SETTINGS, any stream ending), and a timeout re-armed per wake-up would
        never fire while other streams keep ending.
        """
        view = memoryview(data)
        deadline: float | None = None
        while view:
            if stream.closed or stream.ended:
                return  # reset, failed, or the server already answered
            window = min(self.h2.local_flow_control_window(stream.stream_id), self.h2.max_outbound_frame_size)
            if window <= 0:
                if deadline is None and write_timeout is not None:
                    deadline = self._loop.time() + write_timeout
                await self._wait(
                    self._window_waiters, write_timeout, "the server granted no flow-control window", deadline
                )
                continue
            deadline = None
            piece = bytes(view[:window])
            view = view[window:]
            self.h2.send_data(stream.stream_id, piece)
            self.flush()
            if self._write_paused:
                await self._wait(self._drain_waiters, write_timeout, "the server accepted no request data")

    def end_request(self, stream: H2Stream, trailers: Headers | None = None) -> None:
        """End our side: END_STREAM, on a trailing HEADERS frame if there are trailers."""
        if stream.closed or stream.request_done:
            return
        if stream.ended:
            # The server answered in full before taking the whole body: stop
            # (RFC 9113 section 8.1 lets it; RST_STREAM(NO_ERROR) says we did).
            self._reset(stream, h2.errors.ErrorCodes.NO_ERROR)
            self._maybe_done(stream, force=True)
            return
        try:
            if trailers:
                self.h2.send_headers(stream.stream_id, [(n, v) for _, n, v in trailers.triples()], end_stream=True)
            else:
                self.h2.end_stream(stream.stream_id)
        except h2.exceptions.ProtocolError as exc:
            self._fail(stream, RemoteProtocolError(f"cannot end HTTP/2 stream {stream.stream_id}: {exc}"))
            return
        stream.request_done = True
        self.flush()
        self._maybe_done(stream)

    def send_now(self, stream: H2Stream, data: bytes) -> bool:
        """Send all of ``data`` at once if the flow-control windows allow; else send nothing."""
        if len(data) > self.h2.local_flow_control_window(stream.stream_id):
            return False
        frame = self.h2.max_outbound_frame_size
        for start in range(0, len(data), frame):
            self.h2.send_data(stream.stream_id, data[start : start + frame])
        self.flush()
        return True

    def stream_slot_free(self) -> bool:
        return self.h2.open_outbound_streams < self.h2.remote_settings.max_concurrent_streams

    async def extended_connect_allowed(self, timeout: float | None) -> bool:
        """RFC 8441 section 3: did the server send SETTINGS_ENABLE_CONNECT_PROTOCOL = 1?

        Waits (at most ``timeout``) for the server's first SETTINGS if they
        have not arrived yet: the preface may still be on its way.
        """
        if not self._settings_seen.done():
            timer = self._loop.call_later(timeout, wake, self._settings_seen) if timeout is not None else None
            try:
                await asyncio.shield(self._settings_seen)
            finally:
                if timer is not None:
                    timer.cancel()
        return bool(self.h2.remote_settings.enable_connect_protocol)

    def _informational(self, stream: H2Stream, raw: list[tuple[bytes, bytes]]) -> None:
        hook = stream.on_informational
        assert hook is not None
        status = next((int(v) for n, v in raw if n == b":status" and v.isdigit()), 0)
        try:
            hook(status, Headers.from_triples([(n, n, v) for n, v in raw if not n.startswith(b":")]))
        except Exception as exc:
            self._reset(stream, h2.errors.ErrorCodes.CANCEL)
            error = LocalProtocolError(f"the on_informational hook raised {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._fail(stream, error)

    def extra_info(self, name: str) -> object:
        return transport_extra(self.transport, name)

    async def wait_closed(self, timeout: float) -> None:
        """After ``close()``: wait (bounded) for the transport to end, then abort it."""
        if self.lost or self.transport is None:
            return
        await asyncio.wait([self.lost_future], timeout=timeout)
        if not self.lost:
            self.transport.abort()

    def arm_head_timer(self, stream: H2Stream) -> None:
        if stream.read_timeout is not None and not stream.head_waiter.done():
            stream.head_timer = self._loop.call_later(stream.read_timeout, self._head_expired, stream)

    def _head_expired(self, stream: H2Stream) -> None:
        if not stream.head_waiter.done():
            self._reset(stream, h2.errors.ErrorCodes.CANCEL)
            self._fail(stream, ReadTimeout(f"no response within {stream.read_timeout:g} s (read timeout)"))

    def cancel(self, stream: H2Stream, exc: BaseException) -> None:
        """The caller gave up on the stream (early close, cancellation): RST_STREAM(CANCEL)."""
        if stream.closed:
            return
        buffer = stream.buffer
        if buffer is not None:
            buffer.discard()  # acknowledges the unread bytes: the credit comes back
        if not (stream.ended and stream.request_done):
            self._reset(stream, h2.errors.ErrorCodes.CANCEL)
        self._fail(stream, exc)

    def release(self, stream: H2Stream) -> None:
        """The caller closed the body: drop what is unread, reset if not finished."""
        buffer = stream.buffer
        if stream.closed:
            if buffer is not None:
                buffer.discard()
            return
        if stream.ended and buffer is not None and buffer.at_eof:
            self.end_request(stream)  # an answer that came before the whole upload: stop it
            return
        self.cancel(stream, _closed_by_caller())

    def _consumed(self, stream: H2Stream, count: int) -> None:
        # Acknowledge in batches: per read when the reader keeps up (its buffer
        # is empty), else every _ACK_BATCH bytes.  h2 sends WINDOW_UPDATE itself
        # once enough is acknowledged.
        stream.unacked += count
        buffer = stream.buffer
        if stream.unacked >= _ACK_BATCH or buffer is None or buffer.size == 0:
            count, stream.unacked = stream.unacked, 0
            self._ack(stream.stream_id, count)

    def _ack(self, stream_id: int, count: int) -> None:
        if self.lost or count <= 0:
            return
        try:
            self.h2.acknowledge_received_data(count, stream_id)
        except h2.exceptions.ProtocolError:
            return
        self.flush()

    def _reset(self, stream: H2Stream, code: h2.errors.ErrorCodes) -> None:
        if self.lost:
            return
        try:
            self.h2.reset_stream(stream.stream_id, code)
        except h2.exceptions.ProtocolError:
            pass  # already closed on h2's side
        self.flush()

    def _fail(self, stream: H2Stream, exc: BaseException) -> None:
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

    def _maybe_done(self, stream: H2Stream, force: bool = False) -> None:
        if not stream.closed and (force or (stream.ended and stream.request_done)):
            self._forget(stream)

    def _forget(self, stream: H2Stream) -> None:
        if stream.unacked:
            count, stream.unacked = stream.unacked, 0
            self._ack(stream.stream_id, count)  # the connection window gets it back
        stream.closed = True
        self.streams.pop(stream.stream_id, None)
        self._wake_senders()
        self._on_stream_closed(stream)
        if self.goaway and not self.streams:
            self.close()

    def _fail_all(self, exc: BaseException) -> None:
        for stream in list(self.streams.values()):
            self._fail(stream, exc)

    def connection_error(self, exc: BaseException) -> None:
        """A connection-level error: every open stream fails with it; close."""
        if self.error is None:
            self.error = exc
        self._fail_all(exc)
        self.close()
        self._on_state()

    # -- I/O helpers ------------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _wake_senders(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        if self._slot_waiters:
            waiters += self._slot_waiters
            self._slot_waiters = []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for_stream_slot(self, timeout: float | None) -> None:
        """Wait until the server's SETTINGS_MAX_CONCURRENT_STREAMS allows one more stream.

        The pool may hand out slots before the server's SETTINGS arrive; if they
        then allow fewer streams, the extra requests wait here (never sent, so
        nothing is lost) instead of failing.
        """
        while self.h2.open_outbound_streams >= self.h2.remote_settings.max_concurrent_streams:
            if not self.is_usable:
                raise StaleConnection("HTTP/2 connection closing before a stream slot became free")
            waiter = self._loop.create_future()
            self._slot_waiters.append(waiter)
            timer = None
            if timeout is not None:
                timer = self._loop.call_later(timeout, _expire_pool, waiter, timeout)
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()

    async def _wait(
        self, queue: list[asyncio.Future[None]], timeout: float | None, what: str, deadline: float | None = None
    ) -> None:
        """Wait for a wake-up on ``queue``; WriteTimeout at ``deadline`` (default: ``timeout`` from now)."""
        if self.lost:
            raise WriteError("HTTP/2 connection lost while sending the request")
        waiter = self._loop.create_future()
        queue.append(waiter)
        timer = None
        if timeout is not None:
            when = self._loop.time() + timeout if deadline is None else deadline
            timer = self._loop.call_at(when, _expire_write, waiter, timeout, what)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()

    async def ping(self, timeout: float) -> bool:
        """Send PING and wait for its ACK: the liveness check before reusing an idle connection."""
        if self.lost or self.transport is None or self.transport.is_closing():
            return False
        # One check at a time per connection: concurrent callers share it.
        if self._ping is None or self._ping.done():
            self._ping_counter += 1
            payload = self._ping_counter.to_bytes(8, "big")
            waiter = self._loop.create_future()
            self._ping_waiters[payload] = waiter
            self._ping = waiter
            self.h2.ping(payload)
            self.flush()
            timer = self._loop.call_later(timeout, _expire_write, waiter, timeout, "no PING answer")

            def done(future: asyncio.Future[None]) -> None:
                if not future.cancelled():
                    future.exception()  # retrieved even when every waiter was cancelled
                timer.cancel()
                self._ping_waiters.pop(payload, None)

            waiter.add_done_callback(done)
        try:
            await asyncio.shield(self._ping)
        except (WriteTimeout, WriteError):
            return False
        return True

    @property
    def is_usable(self) -> bool:
        transport = self.transport
        return not (self.lost or self.goaway or self.error is not None or transport is None or transport.is_closing())

    @property
    def max_streams(self) -> int:
        return min(self.h2.remote_settings.max_concurrent_streams, self._limits.max_concurrent_streams)

    def close(self) -> None:
        """Graceful close: GOAWAY, then the transport."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not self.lost:
            try:
                self.h2.close_connection()
            except h2.exceptions.ProtocolError:
                pass
            self.flush()
        transport.close()


def _closed_by_caller() -> BaseException:
    from .._exceptions import StreamClosed

    return StreamClosed()


def _expire_pool(waiter: asyncio.Future[None], seconds: float) -> None:
    if not waiter.done():
        from .._exceptions import PoolTimeout

        waiter.set_exception(PoolTimeout(f"no HTTP/2 stream slot became free within {seconds:g} s (pool timeout)"))


def _expire_write(waiter: asyncio.Future[None], seconds: float, what: str) -> None:
    if not waiter.done():
        waiter.set_exception(WriteTimeout(f"{what} for {seconds:g} s (write timeout)"))
