"""ConnectionPool: the embeddable transport (``await pool.handle_request(request)``).

Theory of operation
-------------------
The pool keeps a list of connections.  Each one is CONNECTING (a placeholder
that reserves a slot while DNS/TCP/TLS run), ACTIVE (owned by a request), IDLE
(free for reuse), DRAINING (reading off an early-closed body) or, once CLOSED,
out of the list.  Every change of that list happens in a synchronous method
(``_assign``, ``_on_change``, ``_discard``, ``_wake``): no ``await`` inside, so
a cancelled task can never leave it half-updated.  The I/O that follows a
decision (connecting, closing) happens after the bookkeeping.  A connection
that left the list closed while its socket still flushes (a request cancelled
mid-upload, a peer that stopped reading) is remembered until ``aclose()``,
which aborts it after a short grace: no socket outlives the pool.

A request first looks for an IDLE connection of its key (origin + TLS settings)
that is still usable (the stale check: the peer has not closed it) and not
expired; else it reserves a new slot within ``max_connections`` and
``max_connections_per_host`` (closing an idle connection of another origin if
that is what it takes); else it queues.  Queued requests are served in order
whenever a connection is freed or closed, and give up with ``PoolTimeout``
after ``Timeout.pool`` (a ``call_later`` timer, not a task).  A request that
was handed a connection just as it was cancelled gives it straight back.

A request that fails on a reused HTTP/1.1 connection before any response byte
arrived (``StaleConnection``) is retried once on a fresh connection when its
method is idempotent and its body can be sent again; so is an HTTP/2 stream the
server refused or cut off with GOAWAY before processing it.

HTTP/2 connections are multiplexed: a request takes a stream slot on a usable
connection of its key before anything else.  While the first TLS handshake to an
origin is pending (ALPN not known yet), further requests to it wait for that
answer instead of each opening a connection; if ALPN picks HTTP/1.1 the origin
is remembered as such and its requests stop waiting.  An HTTP/2 connection idle
longer than ``Limits.h2_ping_after`` is checked with a PING before reuse.

Proxies (``_proxy`` has the rules): each request gets a ``_Route``.  An
``http://`` request through an HTTP(S) proxy is *forwarded*: it goes in
absolute-form over an HTTP/1.1 connection to the proxy, keyed by the proxy alone,
so one connection carries requests for any ``http://`` target; the request sent
is a copy carrying ``Proxy-Authorization``, so the caller's request never holds
it.  Anything else through a proxy is *tunnelled* (CONNECT or SOCKS5, opened by
``_net``) and keyed by target origin, TLS settings and proxy together, never
mixed with direct connections; ALPN then works as it does directly (HTTP/2
through a tunnel), and HTTP/3 is never used through a proxy.  An explicit
``proxy=`` applies to every request; otherwise, with ``trust_env``, the
environment read at construction decides per request URL.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from ._altsvc import AltSvcCache
from ._config import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    CertTypes,
    Limits,
    Timeout,
    TLSConfig,
    VerifyTypes,
    create_ssl_context,
)
from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    LocalProtocolError,
    PoolClosed,
    PoolTimeout,
    StaleConnection,
)
from ._h1 import HTTP11Connection
from ._h2 import HTTP2Connection
from ._interfaces import Connection
from ._models import Request, Response
from ._net import open_stream
from ._proxy import Proxy, ProxyEnv, ProxyTypes, proxies_from_env, proxy_for, to_proxy
from ._urls import URL, Origin

if TYPE_CHECKING:
    # Imported when HTTP/3 is first used: aioquic (and cryptography) cost about
    # 12 MB and 100 ms to import, which HTTP/1.1 and HTTP/2 users should not pay.
    from ._h3 import HTTP3Connection

__all__ = ["ConnectionPool", "PoolStats"]

Key = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Counts of the pool's connections by state, and of queued requests."""

    connections: int
    connecting: int
    active: int
    idle: int
    draining: int
    queued: int
    streams: int = 0  # open HTTP/2 streams, over all connections

    @property
    def in_use(self) -> int:
        """Connections that a request owns (connecting, active or draining)."""
        return self.connecting + self.active + self.draining


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a request's connection goes, and how it gets there.

    ``origin`` is what the connection serves: the target's origin, or the
    proxy's own for a forwarded request (one connection to a forward proxy
    carries requests for any ``http://`` target).  ``quic_target`` is the
    (host, port) of an HTTP/3 attempt; ``proxy`` the proxy, if any, and
    ``forward`` whether the request is forwarded to it (else tunnelled).
    """

    origin: Origin
    key: Key
    quic_target: tuple[str, int] | None = None
    proxy: Proxy | None = None
    forward: bool = False


class _Connecting:
    """A slot reserved for a connection whose DNS/TCP/TLS set-up is running.

    It answers the pool's queries as a connection that takes nothing would.
    """

    __slots__ = ("route", "origin", "key", "may_multiplex", "quic_target")
    state = "connecting"  # as ConnectionInfo.state would say, for reprs and diagnostics

    def __init__(self, route: _Route, may_multiplex: bool) -> None:
        self.route = route
        self.origin = route.origin
        self.key = route.key
        self.may_multiplex = may_multiplex  # ALPN may pick h2 (or it is QUIC): others wait for it
        self.quic_target = route.quic_target

    def is_idle(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<connecting {self.origin}>"


Slot = Union[Connection, _Connecting]


class _Waiter:
    __slots__ = ("route", "key", "future", "timer")

    def __init__(self, route: _Route, future: asyncio.Future[Slot]) -> None:
        self.route = route
        self.key = route.key
        self.future = future
        self.timer: asyncio.TimerHandle | None = None


class ConnectionPool:
    """A pool of HTTP connections, keyed by origin, route and TLS settings.

    ``proxy`` (a URL or a ``Proxy``) sends every request through that proxy;
    without it, ``trust_env`` reads ``http_proxy`` / ``https_proxy`` /
    ``all_proxy`` / ``no_proxy`` once, here, and they decide per request.
    """

    def __init__(
        self,
        *,
        limits: Limits = DEFAULT_LIMITS,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: VerifyTypes = True,
        cert: CertTypes = None,
        http1: bool = True,
        http2: bool = False,
        http3: bool | str = False,
        http2_prior_knowledge: bool = False,
        local_address: str | None = None,
        proxy: ProxyTypes = None,
        trust_env: bool = True,
    ) -> None:
        if not (http1 or http2):
            raise ValueError("enable at least one of http1 and http2")
        if http3 not in (True, False, "only"):
            raise ValueError('http3 takes True (Alt-Svc discovery), False, or "only" (HTTP/3 straight away)')
        self._http3 = http3
        self._altsvc = AltSvcCache(broken_for=limits.h3_broken_for)
        self._tickets: dict[Origin, object] = {}  # QUIC session tickets, to resume
        self._limits = limits
        self._timeout = timeout
        self._http1 = http1
        self._http2 = http2
        # h2c: HTTP/2 over cleartext without upgrade, for servers known to speak it.
        self._prior_knowledge = http2 and (http2_prior_knowledge or not http1)
        verify_value: bool | str | ssl.SSLContext
        verify_value = verify if isinstance(verify, (bool, str, ssl.SSLContext)) else str(verify)
        alpn = (("h2",) if http2 else ()) + (("http/1.1",) if http1 else ())
        self._tls = TLSConfig(verify=verify_value, cert=cert, alpn=alpn)
        self._h1_only: set[Key] = set()  # origins whose ALPN answer was http/1.1
        self._tls_key = self._tls.key()
        self._ssl_context: ssl.SSLContext | None = None
        self._local_address = local_address
        self._proxy = to_proxy(proxy)
        env = proxies_from_env() if trust_env and self._proxy is None else None
        self._env: ProxyEnv | None = env if env and (env["http"] or env["https"] or env["all"]) else None
        self._proxy_ssl_context: ssl.SSLContext | None = None
        self._slots: list[Slot] = []
        # Connections that left the pool closed but whose transport is still
        # flushing (a graceful close waits for the write buffer, which a peer
        # that stopped reading never empties): aclose() aborts them.
        self._lingering: set[Connection] = set()
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None
        self.connects = 0  # connections opened so far, all origins (public: how reuse is seen)

    # -- public ------------------------------------------------------------------
    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def timeout(self) -> Timeout:
        return self._timeout

    @property
    def alt_svc(self) -> AltSvcCache:
        """The HTTP/3 alternatives learnt from Alt-Svc (used when ``http3=True``); seed or save it here."""
        return self._altsvc

    def stats(self) -> PoolStats:
        counts = {"connecting": 0, "active": 0, "idle": 0, "draining": 0, "closed": 0}
        streams = 0
        for slot in self._slots:
            if isinstance(slot, _Connecting):
                counts["connecting"] += 1
                continue
            info = slot.info()
            counts[info.state] += 1
            if info.http_version != "HTTP/1.1":
                streams += info.streams
        queued = sum(1 for w in self._waiters if not w.future.done())
        return PoolStats(
            connections=len(self._slots),
            connecting=counts["connecting"],
            active=counts["active"],
            idle=counts["idle"],
            draining=counts["draining"],
            queued=queued,
            streams=streams,
        )

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<ConnectionPool connections={s.connections} active={s.active} idle={s.idle} "
            f"draining={s.draining} connecting={s.connecting} queued={s.queued}>"
        )

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection and fail queued requests with ``PoolClosed``."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if waiter.timer is not None:
                waiter.timer.cancel()
            if not waiter.future.done():
                waiter.future.set_exception(PoolClosed("the connection pool was closed"))
        slots, self._slots = self._slots, []
        closing, self._lingering = self._lingering, set()
        for slot in slots:
            if not isinstance(slot, _Connecting):
                slot.close()
                closing.add(slot)
        # A TLS transport closes only after the close_notify exchange; each
        # connection waits for it briefly (a caller that closes the loop next
        # must not find sockets still open), then aborts what a silent peer
        # holds up.
        if closing:
            await asyncio.gather(*(conn.aclose() for conn in closing))
        await asyncio.sleep(0)

    async def handle_request(self, request: Request) -> Response:
        """Send ``request``; return the response as soon as its head arrives."""
        if self._closed:
            raise PoolClosed("the connection pool was closed")
        url = request.url
        if url.scheme not in ("http", "https"):
            raise LocalProtocolError(f"unsupported URL scheme {url.scheme!r} in {url}")
        timeout = request.timeout or self._timeout  # the caller's Request is never changed
        origin = url.origin
        retried = False
        while True:
            route = self._route(url)
            slot = self._assign(route)
            if slot is None:
                slot = await self._wait_for_slot(route, timeout.pool)
            if isinstance(slot, _Connecting):
                try:
                    conn = await self._connect(slot, timeout)
                except (ConnectError, ConnectTimeout):
                    if slot.quic_target is None or self._http3 == "only":
                        raise
                    # RFC 7838 section 2.4: the alternative failed; use the origin
                    # over TCP and stop trying the alternative for a while.
                    self._altsvc.mark_broken(origin, time.monotonic())
                    continue
            else:
                conn = slot
                if not await self._alive(conn):
                    continue  # it was discarded: each pass drops one, so this ends
            sent = request
            if route.forward:
                assert route.proxy is not None
                sent = _forward_request(request, route.proxy)
            try:
                response = await conn.handle_request(sent, timeout)
            except StaleConnection:
                if retried or not (request.is_idempotent and request.is_replayable):
                    raise
                retried = True
                # The server dropped a kept-alive connection; the other idle ones
                # to it are likely just as dead, so the retry goes on a fresh one.
                # (A refused HTTP/2 or HTTP/3 stream says nothing of its connection.)
                for other in list(self._slots):
                    if (
                        other.key == route.key
                        and not isinstance(other, _Connecting)
                        and other.http_version == "HTTP/1.1"
                        and other.is_idle()
                    ):
                        self._discard(other)
                continue
            if sent is not request:
                response.request = request
            if route.proxy is not None:
                return response
            if self._http3 and origin.scheme == "https" and conn.http_version != "HTTP/3":
                alt_svc = response.headers.get_list("alt-svc")
                if alt_svc:
                    self._altsvc.update(origin, alt_svc, time.monotonic())
            return response

    def _route(self, url: URL) -> _Route:
        """How a request to ``url`` travels: its pool key, proxy and QUIC target."""
        origin = url.origin
        proxy = self._proxy
        if proxy is None and self._env is not None:
            proxy = proxy_for(url, self._env)
        if proxy is not None:
            if self._http3 == "only":
                raise LocalProtocolError(f"HTTP/3 cannot go through proxy {proxy} (http3='only' for {origin})")
            if origin.scheme == "http" and not proxy.is_socks:
                return _Route(proxy.origin, ("forward", proxy.key, self._tls_key), proxy=proxy, forward=True)
            return _Route(origin, (origin, self._tls_key, "via", proxy.key), proxy=proxy)
        if origin.scheme != "https":
            return _Route(origin, (origin,))
        if self._http3 == "only":
            target = (origin.host, origin.port)
            return _Route(origin, (origin, self._tls_key, "h3", *target), target)
        if self._http3:
            service = self._altsvc.lookup(origin, time.monotonic())
            if service is not None:
                host = service.host or origin.host
                return _Route(origin, (origin, self._tls_key, "h3", host, service.port), (host, service.port))
        return _Route(origin, (origin, self._tls_key))

    # -- bookkeeping (synchronous) -------------------------------------------------
    def _assign(self, route: _Route, ahead: int | None = None) -> Slot | None:
        """An idle usable connection of ``key``, a new CONNECTING slot, or None.

        ``ahead`` is how many queued requests for ``key`` come first (None: all
        of them, for a request not queued yet).  A connection that is DRAINING
        will be idle within ``Limits.drain_timeout`` (usually within one round
        trip), so as many requests as there are draining connections wait for
        them instead of opening new ones.
        """
        if self._closed:
            raise PoolClosed("the connection pool was closed")
        key = route.key
        now = time.monotonic()
        full = False
        for slot in self._slots:
            if slot.key != key or isinstance(slot, _Connecting):
                continue
            if slot.is_available():
                slot.reserve()
                return slot
            if slot.has_expired(now):
                self._discard(slot)
                return self._assign(route, ahead)
            if slot.is_full():
                full = True  # alive, all its streams busy
        if full:
            # RFC 9113 section 9.1: no second connection to an origin whose
            # connection is merely busy; wait for one of its streams to end.
            return None
        may_multiplex = route.quic_target is not None or self._may_multiplex(route)
        if may_multiplex and any(isinstance(s, _Connecting) and s.key == key and s.may_multiplex for s in self._slots):
            return None  # wait for the pending handshake's ALPN answer
        draining = sum(
            1 for s in self._slots if s.key == key and not isinstance(s, _Connecting) and s.info().state == "draining"
        )
        if draining:
            if ahead is None:
                ahead = sum(1 for w in self._waiters if w.key == key and not w.future.done())
            if draining > ahead:
                return None
        limits = self._limits
        per_host = limits.max_connections_per_host
        if per_host is not None and sum(1 for s in self._slots if s.key == key) >= per_host:
            return None
        total = limits.max_connections
        if total is not None and len(self._slots) >= total:
            victim = next((s for s in self._slots if not isinstance(s, _Connecting) and s.is_idle()), None)
            if victim is None:
                return None
            self._discard(victim)
        slot_new = _Connecting(route, may_multiplex)
        self._slots.append(slot_new)
        return slot_new

    def _may_multiplex(self, route: _Route) -> bool:
        if not self._http2 or route.key in self._h1_only or route.forward:
            return False
        return route.origin.scheme == "https" or self._prior_knowledge

    def _discard(self, conn: Connection) -> None:
        if conn in self._slots:
            self._slots.remove(conn)
        conn.close()
        self._linger(conn)

    def _linger(self, conn: Connection) -> None:
        """Remember a closed connection whose socket is still open, for aclose() to abort.

        A request cancelled in the middle of its body leaves unsent bytes in
        the transport, and a graceful close flushes them first: against a peer
        that stopped reading, forever.  The pool no longer lists the connection,
        but it must not outlive the pool.
        """
        if conn.info().socket_open:
            self._lingering = {c for c in self._lingering if c.info().socket_open}
            self._lingering.add(conn)

    def _remove_slot(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        self._wake()

    def _on_change(self, conn: Connection) -> None:
        """A connection changed state on its own (request done, peer closed...)."""
        if conn.is_closed():
            if conn in self._slots:
                self._slots.remove(conn)
            self._linger(conn)
        elif conn.is_idle():
            if self._closed or conn not in self._slots:
                conn.close()
                return
            limits = self._limits
            idle = [s for s in self._slots if not isinstance(s, _Connecting) and s.is_idle()]
            if limits.max_keepalive_connections is not None and len(idle) > limits.max_keepalive_connections:
                self._discard(min(idle, key=lambda s: s.info().idle_since))
            if self._sweeper is None and limits.keepalive_expiry is not None:
                loop = asyncio.get_running_loop()
                self._sweeper = loop.call_later(limits.keepalive_expiry, self._sweep)
        self._wake()

    def _sweep(self) -> None:
        """Close idle connections past ``keepalive_expiry``; one timer for the pool."""
        self._sweeper = None
        expiry = self._limits.keepalive_expiry
        if expiry is None or self._closed:
            return
        now = time.monotonic()
        idle = [s for s in self._slots if not isinstance(s, _Connecting) and s.is_idle()]
        for conn in idle:
            if conn.has_expired(now):
                self._discard(conn)
        remaining = [c.info().idle_since for c in idle if c.is_idle()]
        if remaining:
            delay = max(0.0, min(remaining) + expiry - now)
            self._sweeper = asyncio.get_running_loop().call_later(delay, self._sweep)

    def _wake(self) -> None:
        """Serve queued requests, in order, from what is free now."""
        if not self._waiters or self._closed:
            return
        ahead: dict[Key, int] = {}
        for waiter in list(self._waiters):
            if waiter.future.done():
                self._waiters.remove(waiter)
                continue
            slot = self._assign(waiter.route, ahead.get(waiter.key, 0))
            if slot is None:
                ahead[waiter.key] = ahead.get(waiter.key, 0) + 1
                continue
            self._waiters.remove(waiter)
            if waiter.timer is not None:
                waiter.timer.cancel()
            waiter.future.set_result(slot)

    def _give_back(self, slot: Slot) -> None:
        """A slot was assigned to a request that was cancelled before using it."""
        if isinstance(slot, _Connecting):
            self._remove_slot(slot)
        else:
            slot.unreserve()

    # -- waiting and connecting ------------------------------------------------------
    async def _wait_for_slot(self, route: _Route, timeout: float | None) -> Slot:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Slot] = loop.create_future()
        waiter = _Waiter(route, future)
        self._waiters.append(waiter)
        if timeout is not None:
            waiter.timer = loop.call_later(timeout, self._waiter_expired, waiter, timeout)
        try:
            return await future
        except BaseException:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._give_back(future.result())
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if waiter.timer is not None:
                waiter.timer.cancel()
            raise

    def _waiter_expired(self, waiter: _Waiter, timeout: float) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        if not waiter.future.done():
            waiter.future.set_exception(
                PoolTimeout(f"no connection to {waiter.route.origin} became free within {timeout:g} s (pool timeout)")
            )

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = create_ssl_context(self._tls)
        return self._ssl_context

    def _proxy_context(self, proxy: Proxy) -> ssl.SSLContext | None:
        """The SSLContext for TLS to an ``https://`` proxy itself (None for other proxies).

        It offers only HTTP/1.1 by ALPN: CONNECT and forwarding are HTTP/1.1
        exchanges.  A caller's own SSLContext (``verify=ctx``) is shared with
        the targets, so it is used as it is, not changed; a proxy that picks h2
        on it is refused in ``_net``.
        """
        if proxy.scheme != "https":
            return None
        if proxy.ssl_context is not None:
            return proxy.ssl_context
        if isinstance(self._tls.verify, ssl.SSLContext):
            return self._context()
        if self._proxy_ssl_context is None:
            self._proxy_ssl_context = create_ssl_context(TLSConfig(verify=self._tls.verify, alpn=("http/1.1",)))
        return self._proxy_ssl_context

    async def _connect(self, slot: _Connecting, timeout: Timeout) -> Connection:
        if slot.quic_target is not None:
            return await self._connect_quic(slot, timeout)
        origin = slot.origin
        route = slot.route
        proxy = route.proxy
        try:
            if route.forward:
                assert proxy is not None
                connected = await open_stream(
                    proxy.host,
                    proxy.port,
                    ssl_context=self._proxy_context(proxy),
                    timeout=timeout.connect,
                    local_address=self._local_address,
                    name=f"proxy {proxy}",
                )
            else:
                context = self._context() if origin.scheme == "https" else None
                connected = await open_stream(
                    origin.host,
                    origin.port,
                    ssl_context=context,
                    timeout=timeout.connect,
                    local_address=self._local_address,
                    via=proxy,
                    proxy_ssl_context=None if proxy is None else self._proxy_context(proxy),
                )
        except BaseException:
            self._remove_slot(slot)
            raise
        if self._closed or slot not in self._slots:
            connected.transport.abort()
            raise PoolClosed("the connection pool was closed while connecting")
        self.connects += 1
        if route.forward:
            use_h2 = False  # forwarding is HTTP/1.1 to the proxy, whatever the pool speaks
        elif origin.scheme == "https":
            use_h2 = connected.alpn == "h2"
            if connected.alpn is None and not self._http1:
                use_h2 = True  # the server ignored ALPN; we offered nothing else
        else:
            use_h2 = self._prior_knowledge
        conn: HTTP11Connection | HTTP2Connection
        if use_h2:
            conn = HTTP2Connection(origin, slot.key, limits=self._limits, on_change=self._on_change)
            conn.reserve()
        else:
            if not self._http1 and not route.forward:
                connected.transport.abort()
                self._remove_slot(slot)
                raise ConnectError(f"{origin} does not speak HTTP/2 (ALPN picked {connected.alpn!r})")
            if self._http2:
                self._h1_only.add(slot.key)
            conn = HTTP11Connection(origin, slot.key, limits=self._limits, on_change=self._on_change)
        self._slots[self._slots.index(slot)] = conn
        if not conn.start(connected):
            self._discard(conn)
            self._wake()
            raise ConnectError(f"{origin} closed the connection right after it was opened")
        self._wake()  # requests waiting for this handshake's ALPN answer
        return conn

    async def _connect_quic(self, slot: _Connecting, timeouts: Timeout) -> HTTP3Connection:
        from ._h3 import connect_h3
        from ._h3._connection import quic_configuration

        origin = slot.origin
        assert slot.quic_target is not None
        host, port = slot.quic_target
        timeout = timeouts.connect
        if self._http3 != "only":
            limit = self._limits.h3_handshake_timeout
            timeout = limit if timeout is None else min(timeout, limit)
        config = quic_configuration(
            server_name=origin.host, verify=self._tls.verify, cert=self._tls.cert, limits=self._limits
        )
        ticket = self._tickets.get(origin)
        if ticket is not None and getattr(ticket, "is_valid", False):
            config.session_ticket = ticket  # type: ignore[assignment]

        def keep_ticket(new_ticket: object) -> None:
            self._tickets[origin] = new_ticket

        try:
            conn = await connect_h3(
                origin,
                slot.key,
                host=host,
                port=port,
                config=config,
                limits=self._limits,
                timeout=timeout,
                on_change=self._on_change,
                on_ticket=keep_ticket,
            )
        except BaseException:
            self._remove_slot(slot)
            raise
        if self._closed or slot not in self._slots:
            conn.close()
            raise PoolClosed("the connection pool was closed while connecting")
        self.connects += 1
        self._slots[self._slots.index(slot)] = conn
        self._wake()
        return conn

    async def _alive(self, conn: Connection) -> bool:
        """Ask a connection picked for reuse whether it is alive; False (and discarded) if not."""
        try:
            alive = await conn.check()
        except BaseException:
            self._give_back(conn)
            raise
        if not alive:
            self._give_back(conn)
            self._discard(conn)
            self._wake()
        return alive


def _forward_request(request: Request, proxy: Proxy) -> Request:
    """The request as a forward proxy gets it: absolute-form target, proxy credentials.

    RFC 9112 section 3.2.2: a request to a proxy names the full URL.  It is a
    copy (body shared) so ``Proxy-Authorization`` and the proxy's own headers
    never appear in the caller's request, where redirects, hooks and logs would
    see them; the response is given the caller's request back.
    """
    sent = request.copy_for_send()
    url = request.url
    target = request.target
    if request.method == "CONNECT" and not target.startswith("/"):
        pass  # authority form goes to the proxy as it is
    elif "://" not in target:
        # RFC 9112 section 3.2.4: OPTIONS * through a proxy names the authority only.
        sent.target = f"{url.scheme}://{url.netloc}" + ("" if target == "*" else target)
    headers = sent.headers
    authorization = proxy.authorization
    if authorization is not None and not proxy.headers.has(b"proxy-authorization"):
        headers.setdefault_raw(b"Proxy-Authorization", authorization)
    headers.extend_raw(proxy.headers.raw)
    return sent
