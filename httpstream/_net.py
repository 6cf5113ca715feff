"""Opening connections: DNS, happy eyeballs, TCP, TLS with SNI, ALPN.

``open_stream`` returns a connected transport and what ALPN picked, with a
``Handoff`` protocol in place that keeps any bytes the server sent right after
the handshake (an HTTP/2 server's SETTINGS, say) until the real protocol, chosen
by ALPN, takes over with ``Handoff.hand_to(protocol)``.

Through a proxy (``via=``), the same function first connects to the proxy (TLS
to it for an ``https://`` proxy), opens the tunnel (HTTP CONNECT or SOCKS5, the
byte-level handshakes being in ``_proxy``) with ``Handoff.receive`` reading the
answers, and then starts TLS with the target over the tunnel: TLS-in-TLS for an
HTTPS proxy, on asyncio's own ``start_tls``.  All of it runs inside the one
connect deadline, and the TCP transport is aborted on any failure or
cancellation, so a socket is never left behind.

Errors come back as ``ConnectError`` / ``ConnectTimeout`` with a message that
says what failed: DNS, refused, unreachable, or which TLS check (self-signed,
expired, wrong host) refused the certificate; a proxy that refuses or breaks
the tunnel gives ``ProxyError``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from ._exceptions import ConnectError, ConnectTimeout, ProxyError
from ._proxy import Proxy, Socks5Handshake, connect_failure, connect_request, parse_connect_reply

__all__ = ["Handoff", "Connected", "open_stream"]

HAPPY_EYEBALLS_DELAY = 0.25


class Handoff(asyncio.Protocol):
    """Holds a fresh connection's early bytes until the real protocol is chosen."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer: list[bytes] = []
        self.eof = False
        self.lost: tuple[Exception | None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer.append(data)
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (exc,)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> bytes:
        """What arrived since the last call, waiting for something; b"" once the peer is gone.

        For the tunnel handshakes only, before ``hand_to``; the caller's
        deadline bounds the wait.
        """
        while not self.buffer and not self.eof and self.lost is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = b"".join(self.buffer)
        self.buffer = []
        return data

    def hand_to(self, protocol: asyncio.Protocol) -> None:
        """Give the transport to ``protocol``, replaying what arrived meanwhile."""
        transport = self.transport
        assert transport is not None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        for data in self.buffer:
            protocol.data_received(data)
        self.buffer = []
        if self.eof:
            protocol.eof_received()
        if self.lost is not None:
            protocol.connection_lost(self.lost[0])


@dataclass(slots=True)
class Connected:
    transport: asyncio.Transport
    handoff: Handoff
    alpn: str | None
    peer: tuple[str, int] | None


async def happy_eyeballs(host: str, port: int, local_address: str | None = None) -> socket.socket:
    """A connected TCP socket: RFC 8305 happy eyeballs over the host's addresses.

    Addresses are tried in the resolver's order with the families interleaved;
    a new attempt starts every ``HAPPY_EYEBALLS_DELAY`` seconds (or as soon as
    one fails) and the first to connect wins.  Every socket is ours until it is
    returned, so a cancellation at any point closes all of them (asyncio's own
    staggered race can drop a connected socket when cancelled at the wrong time).
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    if not infos:
        raise OSError(f"no address for {host!r}")
    by_family: dict[int, list[tuple[int, Any]]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append((info[0], info[4]))
    order: list[tuple[int, Any]] = []
    queues = list(by_family.values())
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    sockets: list[socket.socket] = []
    attempts: dict[asyncio.Task[None], socket.socket] = {}
    errors: list[OSError] = []
    winner: socket.socket | None = None

    async def attempt(sock: socket.socket, address: Any) -> None:
        await loop.sock_connect(sock, address)

    try:
        pending_order = list(order)
        while winner is None and (pending_order or attempts):
            if pending_order:
                family_id, address = pending_order.pop(0)
                try:
                    sock = socket.socket(family_id, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                    sockets.append(sock)
                    sock.setblocking(False)
                    if local_address:
                        sock.bind((local_address, 0))
                except OSError as setup_error:
                    errors.append(setup_error)
                    continue
                attempts[asyncio.ensure_future(attempt(sock, address))] = sock
            done, _ = await asyncio.wait(
                attempts,
                timeout=HAPPY_EYEBALLS_DELAY if pending_order else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                sock = attempts.pop(task)
                failure = task.exception()
                if failure is None and winner is None:
                    winner = sock
                elif isinstance(failure, OSError):
                    errors.append(failure)
    finally:
        for task in attempts:
            task.cancel()
        if attempts:
            # Wait for the losers to wind down (their sockets are closed below);
            # a cancellation of this task still propagates from here.
            await asyncio.wait(attempts)
        for task in attempts:
            if not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" warning
        for sock in sockets:
            if sock is not winner:
                sock.close()
    if winner is None:
        if len(errors) == 1 or len({str(e) for e in errors}) == 1:
            raise errors[0]
        raise OSError(f"every address failed: {'; '.join(str(e) for e in errors)}")
    return winner


async def open_stream(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None = None,
    timeout: float | None,
    local_address: str | None = None,
    via: Proxy | None = None,
    proxy_ssl_context: ssl.SSLContext | None = None,
    name: str | None = None,
) -> Connected:
    """Connect over TCP (and TLS when ``ssl_context`` is given) to ``host:port``.

    With ``via``, through that proxy's tunnel (CONNECT for an HTTP(S) proxy,
    SOCKS5 otherwise); ``proxy_ssl_context`` is for TLS to an ``https://`` proxy.
    ``name`` is how errors call the peer (a forward proxy, say).
    """
    loop = asyncio.get_running_loop()
    target = name or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    what = target if via is None else f"proxy {via}"  # the peer of the current step, for errors
    raw: asyncio.BaseTransport | None = None
    handshaking = False  # a TLS handshake is under way: a reset then is the peer refusing it
    try:
        async with asyncio.timeout(timeout):
            peer_host, peer_port = (host, port) if via is None else (via.host, via.port)
            if via is not None and via.scheme == "socks5":
                host = await _resolve(host, port)  # socks5: local DNS, the proxy gets an address
            sock = await happy_eyeballs(peer_host, peer_port, local_address)
            try:
                raw, handoff = await loop.create_connection(Handoff, sock=sock)
            except BaseException:
                sock.close()
                raise
            transport = raw
            if via is not None:
                if via.scheme == "https":
                    if proxy_ssl_context is None:
                        raise ProxyError(f"no TLS settings for proxy {via}")
                    handshaking = True
                    transport = await _start_tls(loop, transport, handoff, proxy_ssl_context, via.host)
                    handshaking = False
                    proxy_alpn = transport.get_extra_info("ssl_object").selected_alpn_protocol()
                    if proxy_alpn not in (None, "http/1.1"):
                        raise ProxyError(f"proxy {via} picked {proxy_alpn!r} by ALPN; tunnels need HTTP/1.1")
                if via.is_socks:
                    await _socks5_tunnel(transport, handoff, host, port, via)
                else:
                    await _connect_tunnel(transport, handoff, host, port, via)
                what = target
                if ssl_context is not None and handoff.buffer:
                    raise ProxyError(f"proxy {via} sent data into the tunnel to {target} before TLS started")
            if ssl_context is not None:
                # TLS is started on a TCP transport we hold, so a failed or
                # cancelled handshake can never leave the socket behind.
                handshaking = True
                transport = await _start_tls(loop, transport, handoff, ssl_context, server_hostname or host)
    except BaseException as exc:
        if isinstance(raw, asyncio.Transport):
            raw.abort()
        if isinstance(exc, (ProxyError, ConnectError)):
            raise
        if isinstance(exc, TimeoutError):
            through = "" if via is None else f" through proxy {via}"
            raise ConnectTimeout(f"connecting to {target}{through} took longer than {timeout:g} s") from None
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = exc.verify_message or exc.reason or str(exc)
            raise ConnectError(f"TLS certificate of {what} refused: {reason}") from exc
        if isinstance(exc, ssl.SSLError):
            reason = exc.reason or str(exc)
            hint = _TLS_HINTS.get(reason)
            detail = f"{reason} ({hint})" if hint else reason
            raise ConnectError(f"TLS handshake with {what} failed: {detail}") from exc
        if isinstance(exc, socket.gaierror):
            name = host if via is None else via.host
            raise ConnectError(f"cannot resolve {name!r}: {exc.strerror}") from exc
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc) or type(exc).__name__
            if handshaking:
                # OpenSSL got no alert: the server dropped the connection instead
                # (what servers do when they share no TLS version or want a client
                # certificate), so say it happened in the handshake.
                detail = f" ({exc.strerror})" if exc.strerror else ""
                raise ConnectError(
                    f"TLS handshake with {what} failed: the server closed the connection{detail}; "
                    "it may not support TLS 1.2 or later, or may want a client certificate (cert=...)"
                ) from exc
            raise ConnectError(f"cannot connect to {what}: {reason}") from exc
        raise
    assert isinstance(transport, asyncio.Transport)
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        # asyncio sets this already; say it here so nobody has to check.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    alpn = None
    if ssl_context is not None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            alpn = ssl_object.selected_alpn_protocol()
    peer = transport.get_extra_info("peername")
    return Connected(transport, handoff, alpn, peer[:2] if peer else None)


# OpenSSL's reason codes for the handshake failures people meet most, and what
# they mean in practice; the code itself stays in the message for searching.
_TLS_HINTS = {
    "WRONG_VERSION_NUMBER": "the server did not answer in TLS; if it speaks plain HTTP, use an http:// URL",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common; httpstream's own contexts require TLS 1.2 or later",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common; httpstream's own contexts require TLS 1.2 or later",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server refused the handshake: no cipher suite in common, "
    "or it wants a client certificate (cert=...)",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server wants a client certificate (cert=...)",
    "UNEXPECTED_EOF_WHILE_READING": "the server closed the connection during the handshake",
}


async def _start_tls(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    handoff: Handoff,
    context: ssl.SSLContext,
    server_hostname: str,
) -> asyncio.Transport:
    tls = await loop.start_tls(transport, handoff, context, server_hostname=server_hostname)
    assert isinstance(tls, asyncio.Transport)
    handoff.transport = tls
    return tls


async def _resolve(host: str, port: int) -> str:
    """``host`` as an address, resolved here (for ``socks5://``, which sends addresses)."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise ConnectError(f"cannot resolve {host!r} (socks5:// resolves here): {exc.strerror}") from exc
    if not infos:
        raise ConnectError(f"cannot resolve {host!r} (socks5:// resolves here): no address")
    return str(infos[0][4][0])


async def _connect_tunnel(transport: asyncio.Transport, handoff: Handoff, host: str, port: int, via: Proxy) -> None:
    """HTTP CONNECT (RFC 9110 section 9.3.6): a 2xx answer opens the tunnel."""
    transport.write(connect_request(host, port, via))
    data = b""
    while True:
        chunk = await handoff.receive()
        if not chunk:
            raise ProxyError(f"proxy {via} closed the connection before answering CONNECT")
        data += chunk
        reply = parse_connect_reply(data, via)
        if reply is not None:
            break
    if not reply.ok:
        raise connect_failure(reply, via, host, port)
    if reply.end < len(data):
        handoff.buffer.insert(0, data[reply.end :])


async def _socks5_tunnel(transport: asyncio.Transport, handoff: Handoff, host: str, port: int, via: Proxy) -> None:
    """SOCKS5 CONNECT (RFC 1928, RFC 1929 for username/password)."""
    handshake = Socks5Handshake(host, port, via)
    transport.write(handshake.start())
    while not handshake.done:
        chunk = await handoff.receive()
        if not chunk:
            raise ProxyError(f"SOCKS5 proxy {via} closed the connection during the handshake")
        reply = handshake.receive(chunk)
        if reply:
            transport.write(reply)
    if handshake.leftover:
        handoff.buffer.insert(0, handshake.leftover)
