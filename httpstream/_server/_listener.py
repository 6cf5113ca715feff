"""The listener: a TCP (or TLS) server that gives each connection its protocol.

Theory of operation
-------------------
``Server`` runs ``loop.create_server`` with a small dispatching protocol per
connection.  Over TLS the handshake is over by ``connection_made``, so ALPN
decides at once: ``h2`` goes to ``H2ServerProtocol``, anything else (or no
ALPN) to ``H1ServerProtocol``.  In cleartext with ``http2`` on, the first bytes
decide: the HTTP/2 connection preface (``PRI * HTTP/2.0``..., RFC 9113 section
3.4, "prior knowledge") goes to HTTP/2 (h2c), anything else to HTTP/1.1, as
soon as the bytes differ from the preface.  The chosen protocol replaces the
dispatcher on the transport (``set_protocol``) and is handed the bytes read so
far.  HTTP/2 comes from ``_h2`` when that module is there; without it HTTP/2 is
not offered (ALPN announces http/1.1 only).

Every handler call runs through one wrapper that records its task, so closing
the server can cancel and await every handler of either protocol.

Closing (``aclose`` / leaving ``async with``): stop listening; ask every
connection to close gracefully (HTTP/1.1: at once when idle, after the exchange
in flight otherwise, its answer saying ``Connection: close``; HTTP/2: GOAWAY);
wait up to ``shutdown_grace`` seconds for them to go; abort the rest; cancel
and await the handler tasks; wait (bounded) for every transport's
``connection_lost``, so no task and no descriptor outlives ``aclose``.
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
from collections.abc import Callable
from typing import Final, Protocol

from ._h1 import H1ServerProtocol
from ._types import Handler, ServerExchange, ServerLimits

__all__ = ["Server"]

DEFAULT_LIMITS: Final = ServerLimits()
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Connection(Protocol):
    """What the listener needs of a connection's protocol, whichever HTTP version it speaks."""

    def close_gracefully(self) -> None: ...


ProtocolFactory = Callable[..., asyncio.Protocol]


def _h2_protocol() -> ProtocolFactory | None:
    """``H2ServerProtocol`` if the HTTP/2 side is there, else None (HTTP/2 is then not offered)."""
    try:
        module = importlib.import_module(__package__ + "._h2")
    except ImportError:
        return None
    factory: ProtocolFactory | None = getattr(module, "H2ServerProtocol", None)
    return factory


class _Dispatch(asyncio.Protocol):
    """The first protocol of every connection: picks HTTP/1.1 or HTTP/2, then steps aside."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        server = self._server
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            alpn = ssl_object.selected_alpn_protocol()
            self._switch(alpn == "h2" and server.h2_factory is not None)
        elif server.h2_factory is None:
            self._switch(False)
        else:
            server.track(self, transport)
            self._timer = asyncio.get_running_loop().call_later(server.limits.header_timeout, transport.close)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        size = min(len(self._buf), len(PREFACE))
        if self._buf[:size] != PREFACE[:size]:
            self._switch(False)
        elif len(self._buf) >= len(PREFACE):
            self._switch(True)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._server.forget(self)

    def close_gracefully(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _switch(self, http2: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        assert transport is not None
        server = self._server
        tls = transport.get_extra_info("ssl_object") is not None
        factory: ProtocolFactory = H1ServerProtocol
        if http2 and server.h2_factory is not None:
            factory = server.h2_factory
        protocol = factory(server.run_handler, limits=server.limits, tls=tls, on_closed=server.forget)
        server.forget(self)
        server.track(protocol, transport)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data, self._buf = self._buf, b""
        if data and not transport.is_closing():
            protocol.data_received(data)


class Server:
    """An HTTP/1.1 and HTTP/2 server for one handler: ``async with Server(handler) as server: server.port``."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        http2: bool = True,
        limits: ServerLimits = DEFAULT_LIMITS,
        shutdown_grace: float = 1.0,
    ) -> None:
        self._handler = handler
        self.host = host
        self._port = port
        self._ssl = ssl_context
        self.limits = limits
        self.shutdown_grace = shutdown_grace
        self.h2_factory = _h2_protocol() if http2 else None
        if ssl_context is not None:
            # ALPN (RFC 7301): what we offer is what we can speak; this sets it on the given context.
            ssl_context.set_alpn_protocols(["h2", "http/1.1"] if self.h2_factory is not None else ["http/1.1"])
        self._server: asyncio.Server | None = None
        self._connections: dict[object, asyncio.Transport] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._idle: asyncio.Future[None] | None = None
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Dispatch(self),
            self.host,
            self._port,
            ssl=self._ssl,
            ssl_handshake_timeout=self.limits.header_timeout if self._ssl is not None else None,
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        server = self._server
        if server is not None:
            server.close()
        for connection in list(self._connections):
            close = getattr(connection, "close_gracefully", None)
            if close is not None:
                close()
        await self._wait_idle(self.shutdown_grace)
        for transport in list(self._connections.values()):
            transport.abort()
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.shutdown_grace)
        await self._wait_idle(self.shutdown_grace)
        if server is not None:
            await server.wait_closed()
        await asyncio.sleep(0)  # let the last connection_lost callbacks close their sockets
        del loop

    async def _wait_idle(self, seconds: float) -> None:
        if not self._connections:
            return
        loop = asyncio.get_running_loop()
        idle = loop.create_future()
        self._idle = idle
        timer = loop.call_later(seconds, _settle, idle)
        try:
            await idle
        finally:
            timer.cancel()
            self._idle = None

    # -- what the connections use ------------------------------------------------------------
    async def run_handler(self, exchange: ServerExchange) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._handler(exchange)
        finally:
            if task is not None:
                self._tasks.discard(task)

    def track(self, connection: object, transport: asyncio.Transport) -> None:
        if self._closed:
            transport.abort()  # accepted while we were closing
            return
        self._connections[connection] = transport

    def forget(self, connection: object) -> None:
        self._connections.pop(connection, None)
        if not self._connections and self._idle is not None:
            _settle(self._idle)

    # -- what the caller reads ----------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def tls(self) -> bool:
        return self._ssl is not None

    @property
    def http2(self) -> bool:
        """True when HTTP/2 is offered (ALPN over TLS, prior knowledge in cleartext)."""
        return self.h2_factory is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self._port}"

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def __repr__(self) -> str:
        return f"<Server {self.url} connections={len(self._connections)} handlers={len(self._tasks)}>"


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
