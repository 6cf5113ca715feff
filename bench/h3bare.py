"""A minimal HTTP/3 client on aioquic alone: the floor of the ``h3_*`` scenarios.

It is aioquic's own asyncio glue as its examples use it: ``aioquic.asyncio.connect``
with a ``QuicConnectionProtocol`` subclass that feeds QUIC events to an
``H3Connection``, and a default ``QuicConfiguration`` (only the ALPN ``h3`` and
the CA file are set).  One connection is opened per client and every request is
multiplexed on it.  No redirects, no header validation, no flow-control rules of
its own (aioquic raises the receive windows as data arrives), no timeouts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset


class BareH3Error(RuntimeError):
    pass


class _Stream:
    """The response of one request: its head, then its body as a queue of bytes."""

    __slots__ = ("head", "chunks", "size", "ended", "error", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[int] = loop.create_future()
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        if not self.head.done():
            self.head.set_exception(exc)
            self.head.exception()  # retrieved here: nobody may be waiting
        self._wake()

    async def read_all(self) -> bytes:
        while not self.ended:
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None
        body = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        return body

    async def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (fewer only at the end of the body; b"" at the end)."""
        while self.size < n and not self.ended:
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None
        if not self.chunks:
            return b""
        chunks = self.chunks
        first = chunks[0]
        if len(first) == n:
            chunks.popleft()
            self.size -= n
            return first
        parts: list[bytes] = []
        want = n
        while want and chunks:
            c = chunks.popleft()
            if len(c) > want:
                chunks.appendleft(c[want:])
                c = c[:want]
            parts.append(c)
            want -= len(c)
        out = b"".join(parts)
        self.size -= len(out)
        return out


class BareH3Protocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams: dict[int, _Stream] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            exc = BareH3Error(f"connection terminated: {event.error_code} {event.reason_phrase}")
            for st in self.streams.values():
                st.fail(exc)
            self.streams.clear()
            return
        if isinstance(event, StreamReset):
            st = self.streams.pop(event.stream_id, None)
            if st is not None:
                st.fail(BareH3Error(f"stream reset: {event.error_code}"))
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        st = self.streams.get(getattr(event, "stream_id", -1))
        if st is None:
            return
        if isinstance(event, HeadersReceived):
            if not st.head.done():
                status = next((int(v) for k, v in event.headers if k == b":status"), 0)
                st.head.set_result(status)
        elif isinstance(event, DataReceived) and event.data:
            st.chunks.append(event.data)
            st.size += len(event.data)
        if getattr(event, "stream_ended", False):
            st.ended = True
            self.streams.pop(event.stream_id, None)
        st._wake()

    async def request(self, authority: bytes, path: bytes) -> tuple[int, _Stream]:
        stream_id = self._quic.get_next_available_stream_id()
        st = self.streams[stream_id] = _Stream(self._loop)
        self.h3.send_headers(
            stream_id,
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority), (b":path", path)],
            end_stream=True,
        )
        self.transmit()
        return await st.head, st


def configuration(ca_path: str) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(ca_path)
    return config


__all__ = ["BareH3Error", "BareH3Protocol", "configuration", "connect"]
