"""Loopback peers that break HTTP/1.1 on purpose, over TCP and TLS.

In the spirit of asyncpg's adversity tests: the client under test talks to a real
socket on 127.0.0.1, and the peer misbehaves at a byte offset of our choosing.

``H1FaultServer`` serves *scripted* responses.  For each request it calls the
test's ``script`` with what it read (``ServerRequest``) and sends back the
``Reply``: raw bytes (any framing, valid or not) and, optionally, a ``Fault``
that strikes after ``Fault.at`` bytes of those bytes:

    "fin"     clean close: FIN (over TLS: close_notify, then FIN)
    "rst"     reset: SO_LINGER 0, then close, so the kernel sends RST
    "stall"   send nothing more, keep the connection open until the client
              leaves or the server is closed
    "abrupt"  FIN without TLS close_notify (a TLS truncation); "fin" over TCP

``Reply.trickle`` sends the bytes one per write, with a loop turn in between
(TCP_NODELAY), so the client sees them about one byte per ``data_received``.
A reply with no fault keeps the connection for the next request unless
``Reply.close`` asks for a FIN after it.

``FaultProxy`` relays TCP to an upstream server and applies the same
``Fault`` and trickle to the upstream-to-client direction, counting every byte
of the connection: TLS records and all when the upstream speaks TLS.

Both count what they saw (``accepted``, ``requests``) so a test can check reuse
from the server's side, and both close every connection they hold on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from .servers import FaultServer

__all__ = ["Action", "Fault", "FaultProxy", "H1FaultServer", "Reply", "ServerRequest", "chunked", "response"]

Action = Literal["fin", "rst", "stall", "abrupt"]

# Errors of a peer that went away mid-conversation: expected on a fault server.
_GONE = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)  # OSError covers ssl and socket errors


@dataclass(frozen=True, slots=True)
class Fault:
    """After ``at`` bytes of a reply, do ``action`` (see the module docstring)."""

    at: int
    action: Action = "fin"


@dataclass(frozen=True, slots=True)
class Reply:
    """The raw bytes to answer one request with, and what goes wrong, if anything."""

    data: bytes
    fault: Fault | None = None
    trickle: bool = False
    close: bool = False  # no fault: FIN after the reply instead of waiting for the next request


@dataclass(frozen=True, slots=True)
class ServerRequest:
    """One request as the fault server read it."""

    connection: int  # accept order of its TCP connection, from 0
    number: int  # its place on that connection, from 0
    method: str
    target: str
    head: bytes


Script = Callable[[ServerRequest], Reply]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def response(
    body: bytes = b"", *, status: bytes = b"200 OK", headers: bytes | None = None, length: int | None = None
) -> bytes:
    """A Content-Length response (``length`` overrides the true length: a lying one)."""
    length = len(body) if length is None else length
    fields = b"Content-Length: %d\r\n" % length if headers is None else headers
    return b"HTTP/1.1 " + status + b"\r\n" + fields + b"\r\n" + body


def chunked(
    pieces: list[bytes], *, extensions: list[bytes] | None = None, trailers: bytes = b"", headers: bytes = b""
) -> bytes:
    """A chunked response: one chunk per piece (``extensions[i]`` after its size), then trailers."""
    out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + headers + b"\r\n"]
    for i, piece in enumerate(pieces):
        ext = extensions[i] if extensions is not None else b""
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
    out.append(b"0\r\n" + trailers + b"\r\n")
    return b"".join(out)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _send(writer: asyncio.StreamWriter, data: bytes, trickle: bool) -> None:
    if trickle:
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0)  # one loop turn: the client reads this byte alone
    elif data:
        writer.write(data)
        await writer.drain()


async def _strike(writer: asyncio.StreamWriter, action: Action, client_gone: Callable[[], Awaitable[object]]) -> None:
    """Carry out a fault on a connection whose bytes up to the fault are written.

    ``client_gone`` waits until the client closes its side: a stall lasts that
    long (or until the listener closes).
    """
    transport = writer.transport
    sock = writer.get_extra_info("socket")
    if action == "stall":
        with contextlib.suppress(*_GONE):
            await client_gone()
        transport.abort()
    elif action == "rst":
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    elif action == "abrupt" and writer.get_extra_info("sslcontext") is not None:
        # A TLS truncation: the TCP stream ends, but no close_notify came first.
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        transport.abort()
    else:
        writer.close()
        with contextlib.suppress(*_GONE):
            await writer.wait_closed()


class _Listener(FaultServer):
    """A FaultServer that aborts its connections when their handler returns, and can push."""

    graceful_close = False
    gone = _GONE

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(handler, ssl_context=ssl_context)

    async def push(self, data: bytes) -> int:
        """Send ``data`` unasked on every open connection; returns how many got it."""
        writers = [w for w in self._writers if not w.transport.is_closing()]
        for writer in writers:
            writer.write(data)
        for writer in writers:
            with contextlib.suppress(*_GONE):
                await writer.drain()
        return len(writers)


class H1FaultServer(_Listener):
    """Answers each request with ``script(request)``: scripted bytes, then maybe a fault."""

    def __init__(self, script: Script, *, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(self._connection, ssl_context)
        self._script = script
        self.requests: list[ServerRequest] = []

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.accepted - 1  # counted by the listener as it accepted
        _nodelay(writer)
        number = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed between requests
            await _skip_body(reader, head)
            line = head.split(b"\r\n", 1)[0].split(b" ")
            request = ServerRequest(index, number, line[0].decode("latin-1"), line[1].decode("latin-1"), head)
            self.requests.append(request)
            number += 1
            reply = self._script(request)
            fault = reply.fault
            upto = len(reply.data) if fault is None else min(fault.at, len(reply.data))
            await _send(writer, reply.data[:upto], reply.trickle)
            if fault is not None:
                await _strike(writer, fault.action, reader.read)
                return
            if reply.close:
                await _strike(writer, "fin", reader.read)
                return


async def _skip_body(reader: asyncio.StreamReader, head: bytes) -> None:
    """Read off a Content-Length request body (the only kind these tests send)."""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and int(value):
            await reader.readexactly(int(value))


class FaultProxy(_Listener):
    """A TCP relay to ``upstream`` (host, port) that breaks the upstream-to-client direction.

    ``fault.at`` counts bytes of the whole connection (TLS handshake and records
    included when the upstream speaks TLS); the client-to-upstream direction is
    relayed as is.  ``fault`` and ``trickle`` may be changed between connections.
    """

    def __init__(self, upstream: tuple[str, int], *, fault: Fault | None = None, trickle: bool = False) -> None:
        super().__init__(self._connection, None)
        self._upstream = upstream
        self.fault = fault
        self.trickle = trickle

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fault, trickle = self.fault, self.trickle
        _nodelay(writer)
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        upward = asyncio.create_task(_pump(reader, up_writer))
        try:
            sent = 0
            while fault is None or sent < fault.at:
                want = 65536 if fault is None else min(65536, fault.at - sent)
                data = await up_reader.read(want)
                if not data:
                    break
                await _send(writer, data, trickle)
                sent += len(data)
            action = fault.action if fault is not None and sent >= fault.at else "fin"
            await _strike(writer, action, lambda: upward)
        finally:
            upward.cancel()
            with contextlib.suppress(*_GONE, asyncio.CancelledError):
                await upward
            up_writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(*_GONE):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
