"""One HTTP/3 (QUIC) connection as the pool sees it, and how one is opened.

The pool treats it like an HTTP/2 connection: many streams, ACTIVE with any
stream open or reserved, IDLE with none, CLOSED once the QUIC connection ended
(CONNECTION_CLOSE from either side, idle timeout, a fatal error).

Release rules (DESIGN.md, HTTP/3 column): full read ends the stream and frees its
slot; ``aclose()`` early or cancellation sends STOP_SENDING + RESET_STREAM with
H3_REQUEST_CANCELLED and keeps the connection; a dropped response is reset the
same way with a ResourceWarning.  ``Expect: 100-continue`` works as in HTTP/2:
the body waits for ``100 Continue`` (or ``Timeout.expect``); after a final answer
that came first it is never sent, and our side stops with RESET_STREAM(H3_NO_ERROR).

``connect_h3`` resolves the host, opens a connected UDP endpoint (so an ICMP
"port unreachable" fails the attempt at once instead of waiting out the
deadline), and runs the handshake within ``timeout``.  TLS verification follows
the same ``verify=`` setting as TCP.  Session tickets are handed to the caller
(the pool keeps them per origin) and offered on the next connection to resume;
requests are never sent as 0-RTT early data, so no request can be replayed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from aioquic.quic.configuration import QuicConfiguration
from aioquic.tls import SessionTicket

from .._config import CertTypes, Limits
from .._exceptions import ConnectError, ConnectTimeout
from .._multiplexed import MultiplexedConnection
from ._protocol import H3Protocol, _CreditedQuic

if TYPE_CHECKING:
    from .._urls import Origin

__all__ = ["HTTP3Connection", "connect_h3"]

_UDP_BUFFER = 4 * 1024 * 1024


class HTTP3Connection(MultiplexedConnection[H3Protocol]):
    """An HTTP/3 connection multiplexing many requests over QUIC (the request path is ``MultiplexedConnection``'s)."""

    http_version = "HTTP/3"
    scheme_override = "https"

    def __init__(
        self,
        origin: Origin,
        key: tuple[object, ...],
        quic: _CreditedQuic,
        *,
        limits: Limits,
        on_change: Callable[[HTTP3Connection], None],
    ) -> None:
        super().__init__(origin, key, limits, on_change)
        self.protocol = H3Protocol(
            quic, limits=limits, on_stream_closed=self._stream_closed, on_state=self._state_changed
        )

    def _protocol_gone(self) -> bool:
        return self.protocol.terminated

    def _can_open(self) -> bool:
        return self.protocol.can_open(self.reserved)

    def _socket_open(self) -> bool:
        return self.protocol.sock is not None


def quic_configuration(
    *, server_name: str, verify: bool | str | ssl.SSLContext, cert: CertTypes, limits: Limits
) -> QuicConfiguration:
    """QUIC's TLS settings from the same ``verify=`` / ``cert=`` the TCP side uses."""
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=["h3"],
        server_name=server_name,
        max_stream_data=limits.h3_stream_window,
        max_data=limits.h2_connection_window,
        idle_timeout=60.0,
    )
    if verify is False:
        config.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        config.load_verify_locations(cafile=verify)
    else:
        # True, or an SSLContext (whose CA set cannot be carried over to QUIC's
        # TLS stack): the system's default trust store.
        paths = ssl.get_default_verify_paths()
        if paths.cafile:
            config.load_verify_locations(cafile=paths.cafile)
        elif paths.capath:
            config.load_verify_locations(capath=paths.capath)
        if isinstance(verify, ssl.SSLContext) and verify.verify_mode == ssl.CERT_NONE:
            config.verify_mode = ssl.CERT_NONE
    if cert is not None:
        if isinstance(cert, str):
            config.load_cert_chain(cert)
        else:
            config.load_cert_chain(cert[0], cert[1], *(cert[2:]))
    return config


async def connect_h3(
    origin: Origin,
    key: tuple[object, ...],
    *,
    host: str,
    port: int,
    config: QuicConfiguration,
    limits: Limits,
    timeout: float | None,
    on_change: Callable[[HTTP3Connection], None],
    on_ticket: Callable[[SessionTicket], None],
) -> HTTP3Connection:
    """Open a QUIC connection to ``host:port`` and complete its handshake."""
    loop = asyncio.get_running_loop()
    what = f"{host}:{port} (UDP)"
    sock: socket.socket | None = None
    conn: HTTP3Connection | None = None
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            family, _, _, _, addr = infos[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            # Datagrams that find the receive buffer full are lost, and QUIC reads
            # loss as congestion: give bursts room (the kernel may cap it).
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, _UDP_BUFFER)
                except OSError:
                    pass
            sock.connect(addr)  # one peer: ICMP errors reach us, others' datagrams do not
            quic = _CreditedQuic(
                configuration=config, session_ticket_handler=on_ticket, stream_window=limits.h3_stream_window
            )
            conn = HTTP3Connection(origin, key, quic, limits=limits, on_change=on_change)
            conn.protocol._peer = addr
            conn.protocol.attach(sock)
            sock = None  # the protocol owns it now
            quic.connect(addr, now=loop.time())
            conn.protocol.transmit()
            alpn = await conn.protocol.handshake
    except BaseException as exc:
        if sock is not None:
            sock.close()
        if conn is not None:
            conn.protocol._terminate(ConnectError("QUIC connection attempt abandoned"))
        if isinstance(exc, TimeoutError):
            raise ConnectTimeout(f"QUIC handshake with {what} took longer than {timeout:g} s") from None
        if isinstance(exc, ConnectError):
            raise ConnectError(f"QUIC connection to {what} failed: {exc}") from exc
        if isinstance(exc, socket.gaierror):
            raise ConnectError(f"cannot resolve {host!r}: {exc.strerror}") from exc
        if isinstance(exc, OSError):
            raise ConnectError(f"cannot open a QUIC connection to {what}: {exc.strerror or exc}") from exc
        raise
    assert conn is not None
    if alpn != "h3":
        conn.close()
        raise ConnectError(f"{what} did not agree to HTTP/3 (ALPN {alpn!r})")
    conn.reserve()
    return conn
