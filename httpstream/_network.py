"""Raw network streams: what an Upgrade (101) or a CONNECT (2xx) hands back.

Theory of operation
-------------------
After ``101 Switching Protocols`` to a request that carried ``Upgrade``, or a
2xx answer to ``CONNECT``, the bytes that follow are no longer HTTP: the
protocol stops parsing and the caller gets the connection (HTTP/1.1) or the
stream (HTTP/2 and HTTP/3 CONNECT, RFC 8441 extended CONNECT included) as a
``NetworkStream`` in ``response.extensions["network_stream"]``, httpcore's
name, so tools written for httpcore/httpx (httpx-ws, for one) find it.

Incoming bytes go into a ``BodyBuffer`` exactly as a response body does, so
backpressure is the body's: HTTP/1.1 stops reading the socket above the high
water mark, HTTP/2 and HTTP/3 grant flow-control credit only for bytes read.
Outgoing bytes go through the protocol's ``RawChannel``, which waits for the
transport (or the peer's window) with the write timeout.  ``read`` and
``write`` take httpcore's ``timeout`` (seconds, None for no limit); a read
timeout leaves the stream usable.  An HTTP/1.1 stream is detached from the
pool: the pool no longer lists the connection and never closes it, so the
caller must ``aclose()`` it (a stream dropped open warns, as a body does).
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Protocol

from ._exceptions import StreamClosed
from ._streams import BodyBuffer

__all__ = ["NetworkStream", "RawChannel", "TransportChannel", "transport_extra"]


class RawChannel(Protocol):
    """The protocol side of a network stream: send bytes, end it, describe it."""

    async def send(self, data: bytes, timeout: float | None) -> None: ...

    def close(self) -> None: ...

    def extra_info(self, name: str) -> object: ...


class NetworkStream:
    """A raw, bidirectional byte stream over a connection or an HTTP/2 / HTTP/3 stream."""

    __slots__ = ("_buffer", "_channel", "_pending", "_closed", "__weakref__")

    def __init__(self, buffer: BodyBuffer, channel: RawChannel) -> None:
        self._buffer = buffer
        self._channel = channel
        self._pending = b""  # bytes of a chunk beyond what the last read asked for
        self._closed = False

    async def read(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes`` bytes as they arrive; b"" once the peer ended its side."""
        if self._closed:
            raise StreamClosed("the network stream was closed")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        data = self._pending
        if not data:
            data = await self._buffer.read_within(timeout)
        if len(data) > max_bytes:
            self._pending = data[max_bytes:]
            return data[:max_bytes]
        self._pending = b""
        return data

    async def write(self, data: bytes, timeout: float | None = None) -> None:
        """Send ``data``; waits (at most ``timeout``) while the peer is not taking bytes."""
        if self._closed:
            raise StreamClosed("the network stream was closed")
        if data:
            await self._channel.send(bytes(data), timeout)

    async def aclose(self) -> None:
        """End our side and release the connection or stream (idempotent)."""
        if not self._closed:
            self._closed = True
            self._channel.close()
        await asyncio.sleep(0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()

    @property
    def is_closed(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str) -> object:
        """httpcore's names: ``"ssl_object"``, ``"client_addr"``, ``"server_addr"``, ``"socket"``."""
        return self._channel.extra_info(name)

    def __repr__(self) -> str:
        return f"<NetworkStream {'closed' if self._closed else 'open'}>"

    def __del__(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = self._buffer._loop
        if not loop.is_closed():
            loop.call_soon_threadsafe(self._channel.close)
        warnings.warn(
            "a network stream (Upgrade/CONNECT) was never closed; call 'await stream.aclose()'",
            ResourceWarning,
            source=self,
            stacklevel=2,
        )


class _Writable(Protocol):
    """An HTTP/1.1 protocol (client or server side) whose connection became raw bytes."""

    @property
    def transport(self) -> asyncio.BaseTransport | None: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self, timeout: float | None) -> None: ...

    def close(self) -> None: ...


class TransportChannel:
    """A whole connection as a network stream's channel: HTTP/1.1 after a 101 or a CONNECT 2xx.

    The same on both sides of the wire; ``server_side`` says which end we are,
    so ``client_addr`` / ``server_addr`` name the right sockets.
    """

    __slots__ = ("_protocol", "_server_side")

    def __init__(self, protocol: _Writable, *, server_side: bool = False) -> None:
        self._protocol = protocol
        self._server_side = server_side

    async def send(self, data: bytes, timeout: float | None) -> None:
        self._protocol.write(data)
        await self._protocol.drain(timeout)

    def close(self) -> None:
        self._protocol.close()

    def extra_info(self, name: str) -> object:
        return transport_extra(self._protocol.transport, name, server_side=self._server_side)


def transport_extra(transport: asyncio.BaseTransport | None, name: str, *, server_side: bool = False) -> object:
    """httpcore's extra-info names over an asyncio transport's (``server_side``: the client is the peer)."""
    if transport is None:
        return None
    if name == "client_addr":
        return transport.get_extra_info("peername" if server_side else "sockname")
    if name == "server_addr":
        return transport.get_extra_info("sockname" if server_side else "peername")
    if name == "socket":
        return transport.get_extra_info("socket")
    return transport.get_extra_info(name)
