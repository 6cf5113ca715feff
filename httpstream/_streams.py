"""The one body buffer, and the public stream objects around it.

Theory of operation
-------------------
A protocol (``_h1``, ``_h2``, ``_h3``) pushes body bytes into a ``BodyBuffer`` as
they arrive (``feed``), then ``feed_eof`` or ``feed_error``.  The caller pulls
them out with ``await buffer.read()``.  Between the two sits a high/low water
pair: when the unread bytes pass ``high_water`` the buffer calls ``pause`` (HTTP/1.1
stops reading the socket) and when a read brings them to ``low_water`` or below it
calls ``resume``.  ``on_consumed(n)`` is told of every byte handed to the caller
(HTTP/2 and HTTP/3 turn it into flow-control credit).  A read that has to wait
arms one ``call_later`` timer for the read timeout, cancelled on progress.

The caller never holds the ``BodyBuffer`` itself but a ``ResponseStream`` around
it.  Only the caller references the ``ResponseStream``, so when the caller drops
it unclosed it is garbage collected, and its ``__del__`` warns (ResourceWarning)
and releases the protocol stream the way the lifecycle table says (the protocol
still references the buffer, so the buffer cannot be the thing that notices).
"""

from __future__ import annotations

import asyncio
import warnings
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from ._exceptions import (
    HTTPStreamError,
    IncompleteBody,
    LocalProtocolError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    StreamClosed,
    StreamConsumed,
)

__all__ = [
    "BodyBuffer",
    "Upload",
    "ByteStream",
    "ResponseStream",
    "aiter_chunks",
    "send_request_body",
    "upload_failure",
    "wait_for_continue",
    "wake",
]


def _noop() -> None:
    return None


class BodyBuffer:
    """Bytes pushed by a protocol, pulled by the caller, with water marks."""

    __slots__ = (
        "_loop",
        "_chunks",
        "size",
        "high_water",
        "low_water",
        "_paused",
        "_pause",
        "_resume",
        "on_consumed",
        "eof",
        "_error",
        "_waiter",
        "read_timeout",
        "bytes_fed",
    )

    def __init__(
        self,
        *,
        high_water: int = 1024 * 1024,
        low_water: int = 256 * 1024,
        read_timeout: float | None = None,
        pause: Callable[[], None] = _noop,
        resume: Callable[[], None] = _noop,
        on_consumed: Callable[[int], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._chunks: deque[bytes] = deque()
        self.size = 0
        self.high_water = high_water
        self.low_water = low_water
        self._paused = False
        self._pause = pause
        self._resume = resume
        self.on_consumed = on_consumed
        self.eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.read_timeout = read_timeout
        self.bytes_fed = 0

    # -- producer side (the protocol) ---------------------------------------
    def feed(self, data: bytes) -> None:
        if not data or self.eof or self._error is not None:
            return
        self._chunks.append(data)
        self.size += len(data)
        self.bytes_fed += len(data)
        if self.size > self.high_water and not self._paused:
            self._paused = True
            self._pause()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed_eof(self) -> None:
        self.eof = True
        self._wake()

    def feed_error(self, exc: BaseException) -> None:
        if self.eof or self._error is not None:
            return
        if isinstance(exc, (RemoteProtocolError, ReadError)) and not isinstance(exc, IncompleteBody):
            # The body stopped short (reset, connection lost): say so, with the
            # count of bytes that did arrive; the protocol's error is the cause.
            short = IncompleteBody(
                f"{exc}; the body is incomplete after {self.bytes_fed} bytes",
                received=self.bytes_fed,
                expected=None,
                error_code=getattr(exc, "error_code", None),
            )
            short.__cause__ = exc
            exc = short
        self._error = exc
        self._wake()

    def detach(self) -> None:
        """The protocol is done with this buffer: no more pause/resume calls."""
        self._pause = _noop
        self._resume = _noop
        self._paused = False

    def discard(self) -> int:
        """Drop what is buffered (the caller closed early); returns the count."""
        dropped = self.size
        self._chunks.clear()
        self.size = 0
        if dropped and self.on_consumed is not None:
            self.on_consumed(dropped)
        return dropped

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- consumer side (the caller) -------------------------------------------
    @property
    def failed(self) -> bool:
        """True once a read error (timeout, reset, truncation) was fed in."""
        return self._error is not None

    @property
    def at_eof(self) -> bool:
        """True when every byte was fed and handed out."""
        return self.eof and not self._chunks

    async def read(self) -> bytes:
        """The next chunk as it arrived, or b"" at the end of the body."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.eof:
                return b""
            await self._wait()
        data = self._chunks.popleft()
        self._consumed(len(data))
        return data

    def read_nowait(self) -> bytes | None:
        """A chunk if one is buffered, b"" at the end, None if a read must wait."""
        if self._chunks:
            data = self._chunks.popleft()
            self._consumed(len(data))
            return data
        if self._error is not None:
            raise self._error
        return b"" if self.eof else None

    def _consumed(self, count: int) -> None:
        self.size -= count
        if self._paused and self.size <= self.low_water:
            self._paused = False
            self._resume()
        if self.on_consumed is not None:
            self.on_consumed(count)

    async def read_within(self, timeout: float | None) -> bytes:
        """``read()`` with its own timeout; a timeout here does not fail the buffer.

        For raw network streams (Upgrade, CONNECT), where an idle peer is normal
        and the caller decides what a timeout means.
        """
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.eof:
                return b""
            await self._wait(timeout, sticky=False)
        data = self._chunks.popleft()
        self._consumed(len(data))
        return data

    async def _wait(self, timeout: float | None = -1.0, sticky: bool = True) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = None
        seconds = self.read_timeout if timeout == -1.0 else timeout
        if seconds is not None:
            timer = self._loop.call_later(seconds, _expire, waiter, seconds)
        try:
            await waiter
        except ReadTimeout as exc:
            if sticky and self._error is None:
                self._error = exc  # the body failed: its release must not wait for the rest
            raise
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _expire(waiter: asyncio.Future[None], seconds: float) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout(f"no data received for {seconds:g} s (read timeout)"))


class ResponseStream(AsyncIterator[bytes]):
    """The raw (undecoded) body of a response: iterate it, then ``aclose()``.

    ``release(completed)`` is the protocol's release rule; it runs exactly once,
    from ``aclose()``, from the end of iteration or (with a ResourceWarning) from
    garbage collection of a stream nobody closed.
    """

    __slots__ = ("_buffer", "_release", "_closed", "_started", "opened_at", "__weakref__")

    def __init__(self, buffer: BodyBuffer, release: Callable[[], None]) -> None:
        self._buffer = buffer
        self._release: Callable[[], None] | None = release
        self._closed = False
        self._started = False
        # Where the caller opened this response (set by a client with
        # debug_leaks on); the ResourceWarning of a leaked stream names it.
        self.opened_at: str | None = None

    @property
    def buffer(self) -> BodyBuffer:
        return self._buffer

    @property
    def is_closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> ResponseStream:
        if self._closed:
            raise StreamClosed()
        if self._started:
            raise StreamConsumed()
        self._started = True
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        buffer = self._buffer
        data = buffer.read_nowait()
        if data is None:
            try:
                data = await buffer.read()
            except BaseException:
                self._do_release()
                raise
        if data:
            return data
        self._do_release()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._do_release()

    def close(self) -> None:
        """Synchronous release, for callers outside a coroutine."""
        self._do_release()

    def _do_release(self) -> None:
        if self._closed:
            return
        self._closed = True
        release, self._release = self._release, None
        if release is not None:
            release()

    def __del__(self) -> None:
        if self._closed or self._release is None:
            return
        release = self._release
        self._closed = True
        self._release = None
        # Garbage collection can run in the middle of pool bookkeeping; run the
        # release from the event loop instead of from here.
        loop = self._buffer._loop
        if not loop.is_closed():
            loop.call_soon_threadsafe(release)
        where = f"; it was opened at:\n{self.opened_at}" if self.opened_at else ""
        warnings.warn(
            "a response body was never closed; use 'async with client.stream(...)' "
            f"or call 'await response.aclose()'{where}",
            ResourceWarning,
            source=self,
            stacklevel=2,
        )


class ByteStream(AsyncIterator[bytes]):
    """A finished body held in memory (buffered responses, tests, adapters)."""

    __slots__ = ("_data", "_done")

    def __init__(self, data: bytes = b"") -> None:
        self._data = data
        self._done = False

    def __aiter__(self) -> ByteStream:
        return self

    async def __anext__(self) -> bytes:
        if self._done or not self._data:
            self._done = True
            raise StopAsyncIteration
        self._done = True
        return self._data

    async def aclose(self) -> None:
        self._done = True


async def aiter_chunks(stream: AsyncIterable[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    """Re-cut a byte stream into pieces of exactly ``chunk_size`` (the last may be short).

    Whole-sized pieces of an incoming chunk are sliced out directly; only the
    pieces that straddle two incoming chunks go through a small carry buffer.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    pending = bytearray()
    async for data in stream:
        size = len(data)
        offset = 0
        if pending:
            offset = chunk_size - len(pending)
            pending += memoryview(data)[:offset]
            if len(pending) < chunk_size:
                continue
            yield bytes(pending)
            pending.clear()
        if offset == 0 and size == chunk_size:
            yield data
            continue
        while size - offset >= chunk_size:
            yield data[offset : offset + chunk_size]
            offset += chunk_size
        if offset < size:
            pending += memoryview(data)[offset:]
    if pending:
        yield bytes(pending)


# -- the request side: Expect: 100-continue, shared by the three protocols ---------------------
class AwaitsContinue(Protocol):
    """An HTTP/1.1 exchange or an HTTP/2 / HTTP/3 stream: its head waiter and the
    waiter its protocol wakes (``wake(message.continue_waiter)``) on ``100 Continue``."""

    head_waiter: asyncio.Future[Any]
    continue_waiter: asyncio.Future[None] | None


def wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


async def wait_for_continue(message: AwaitsContinue, timeout: float) -> bool:
    """After a head with ``Expect: 100-continue``: may the body be sent now?

    RFC 9110 section 10.1.1: the client waits for ``100 Continue`` but not
    forever; after ``timeout`` seconds it sends the body anyway (the server may
    not know the expectation).  True on 100 or the deadline; False when the
    final answer (or a failure) came first: the body must not follow.
    """
    head_waiter = message.head_waiter
    if head_waiter.done():
        return False
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    message.continue_waiter = waiter
    timer = loop.call_later(timeout, wake, waiter)

    def answered(_: object) -> None:
        wake(waiter)  # the final answer, or a failure, came first

    head_waiter.add_done_callback(answered)
    try:
        await waiter
    finally:
        message.continue_waiter = None
        timer.cancel()
        head_waiter.remove_done_callback(answered)
    return not head_waiter.done()


# -- the request side: the body pump of the multiplexed protocols (HTTP/2, HTTP/3) ---------------
class _Multiplexed(Protocol):
    closed: bool
    ended: bool


_S = TypeVar("_S", bound=_Multiplexed, contravariant=True)


class BodySink(Protocol[_S]):
    async def send_body(self, stream: _S, data: bytes, timeout: float | None) -> None: ...

    def end_request(self, stream: _S, trailers: Any = None) -> None: ...


async def send_request_body(
    sink: BodySink[_S],
    stream: _S,
    content: bytes | AsyncIterable[bytes],
    write_timeout: float | None,
    upload: Upload,
    trailers: Any = None,
) -> bool:
    """Send a request body on one HTTP/2 or HTTP/3 stream, then end our side.

    Bytes go in one ``send_body`` (the protocol splits by flow control
    itself).  An iterator is sent chunk by chunk with backpressure, and stops
    early when the stream closed or the whole answer came already (the server
    does not want the rest; ``end_request`` then resets our side with
    NO_ERROR).  Trailers, if any, are read at the end: a streamed body may have
    filled them in meanwhile.  True when the whole body went out.
    """
    if isinstance(content, bytes):
        await sink.send_body(stream, content, write_timeout)
        upload.bytes_sent = len(content)
    else:
        async for chunk in content:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise LocalProtocolError(f"request body iterator yielded {type(chunk).__name__}, not bytes")
            if stream.closed or stream.ended:
                break
            if chunk:
                await sink.send_body(stream, bytes(chunk), write_timeout)
                upload.bytes_sent += len(chunk)
    complete = not (stream.closed or stream.ended)
    sink.end_request(stream, trailers)
    return complete


# -- the request side: full duplex -------------------------------------------------------------
# Running uploads, so a task is never collected while it runs (the loop keeps only weak references).
_RUNNING: set[asyncio.Task[None]] = set()


class Upload:
    """A request body going up in the background while the response comes down.

    Every protocol starts one when a body cannot be sent at once (a stream, a
    body larger than what the transport takes now, or one held back for
    ``100 Continue``), so ``handle_request`` returns at the response head while
    the upload goes on under the same flow control (RFC 9110 section 6.4: the
    exchange is full duplex).  ``send`` is the protocol's pump; when it raises,
    ``on_error`` decides what the failure does to the exchange (before the head
    the request fails with it; after the head it surfaces through the response
    stream).  The protocol calls ``stop()`` when the exchange ended first (an
    early final answer, an early close, a reset).

    Callers see it as ``response.extensions["upload"]``: ``await upload.wait()``
    returns True once the whole body was sent, False when it was stopped
    because the exchange ended first, and raises the body's own error (the
    iterator's exception, a write timeout) when sending failed.
    """

    __slots__ = ("_task", "_result", "bytes_sent")

    def __init__(
        self, send: Callable[[Upload], Coroutine[Any, Any, bool]], on_error: Callable[[BaseException], None]
    ) -> None:
        loop = asyncio.get_running_loop()
        self.bytes_sent = 0
        self._result: asyncio.Future[bool] = loop.create_future()
        self._result.add_done_callback(_retrieve)
        task = loop.create_task(self._run(send, on_error))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        self._task: asyncio.Task[None] | None = task

    async def _run(
        self, send: Callable[[Upload], Coroutine[Any, Any, bool]], on_error: Callable[[BaseException], None]
    ) -> None:
        try:
            sent = await send(self)
        except asyncio.CancelledError:
            _settle(self._result, False)
        except BaseException as exc:  # the body's own error, a write failure...
            _settle(self._result, exc)
            on_error(exc)
        else:
            _settle(self._result, sent)
        finally:
            self._task = None

    @property
    def done(self) -> bool:
        return self._result.done()

    def stop(self) -> None:
        """The exchange ended before the body did: stop sending (idempotent)."""
        task = self._task
        if task is not None and task is not asyncio.current_task():
            self._task = None
            task.cancel()
            _settle(self._result, False)

    async def wait(self) -> bool:
        """True when the whole body was sent, False when stopped early; raises the upload's error."""
        return await asyncio.shield(self._result)

    def __repr__(self) -> str:
        state = "running" if not self._result.done() else "done"
        return f"<Upload {state} sent={self.bytes_sent}>"


def _settle(future: asyncio.Future[bool], outcome: bool | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _retrieve(future: asyncio.Future[bool]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "never retrieved" log when nobody waits


def upload_failure(exc: BaseException) -> BaseException:
    """What the response stream raises when its upload failed after the head."""
    if isinstance(exc, HTTPStreamError):
        return exc
    error = LocalProtocolError(f"the request body failed while the response was arriving: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
