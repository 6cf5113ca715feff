"""ConnectionPool: the embeddable transport (``await pool.handle_request(request)``).

Theory of operation
-------------------
The pool keeps a list of connections.  Each one is CONNECTING (a placeholder
that reserves a slot while DNS/TCP/TLS run), ACTIVE (owned by a request), IDLE
(free for reuse), DRAINING (reading off an early-closed body) or, once CLOSED,
out of the list.  Every change of that list happens in a synchronous method
(``_assign``, ``_on_change``, ``_discard``, ``_wake``): no ``await`` inside, so
a cancelled task can never leave it half-updated.  The I/O that follows a
decision (connecting, closing) happens after the bookkeeping.

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
method is idempotent and its body can be sent again.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Union

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
    LocalProtocolError,
    PoolClosed,
    PoolTimeout,
    StaleConnection,
)
from ._h1 import HTTP11Connection
from ._models import Request, Response
from ._net import open_stream
from ._urls import Origin

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

    @property
    def in_use(self) -> int:
        """Connections that a request owns (connecting, active or draining)."""
        return self.connecting + self.active + self.draining


class _Connecting:
    """A slot reserved for a connection whose DNS/TCP/TLS set-up is running."""

    __slots__ = ("origin", "key")
    state = "connecting"

    def __init__(self, origin: Origin, key: Key) -> None:
        self.origin = origin
        self.key = key

    def __repr__(self) -> str:
        return f"<connecting {self.origin}>"


Slot = Union[HTTP11Connection, _Connecting]


class _Waiter:
    __slots__ = ("origin", "key", "future", "timer")

    def __init__(self, origin: Origin, key: Key, future: asyncio.Future[Slot]) -> None:
        self.origin = origin
        self.key = key
        self.future = future
        self.timer: asyncio.TimerHandle | None = None


class ConnectionPool:
    """A pool of HTTP connections, keyed by origin and TLS settings."""

    def __init__(
        self,
        *,
        limits: Limits = DEFAULT_LIMITS,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: VerifyTypes = True,
        cert: CertTypes = None,
        http1: bool = True,
        http2: bool = False,
        http3: bool = False,
        local_address: str | None = None,
    ) -> None:
        if not http1:
            raise ValueError("http1=False needs HTTP/2, which is not part of this build yet")
        if http2 or http3:
            raise ValueError("HTTP/2 and HTTP/3 are not part of this build yet")
        self._limits = limits
        self._timeout = timeout
        verify_value: bool | str | ssl.SSLContext
        verify_value = verify if isinstance(verify, (bool, str, ssl.SSLContext)) else str(verify)
        self._tls = TLSConfig(verify=verify_value, cert=cert, alpn=("http/1.1",))
        self._tls_key = self._tls.key()
        self._ssl_context: ssl.SSLContext | None = None
        self._local_address = local_address
        self._slots: list[Slot] = []
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None
        self.connects = 0  # connections opened so far (for tests and the demo)

    # -- public ------------------------------------------------------------------
    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def timeout(self) -> Timeout:
        return self._timeout

    def stats(self) -> PoolStats:
        counts = {"connecting": 0, "active": 0, "idle": 0, "draining": 0}
        for slot in self._slots:
            counts[slot.state] = counts.get(slot.state, 0) + 1
        queued = sum(1 for w in self._waiters if not w.future.done())
        return PoolStats(
            connections=len(self._slots),
            connecting=counts["connecting"],
            active=counts["active"],
            idle=counts["idle"],
            draining=counts["draining"],
            queued=queued,
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
        for slot in slots:
            if isinstance(slot, HTTP11Connection):
                slot.close()
        # Let the transports run their close callbacks before the loop moves on.
        await asyncio.sleep(0)

    async def handle_request(self, request: Request) -> Response:
        """Send ``request``; return the response as soon as its head arrives."""
        if self._closed:
            raise PoolClosed("the connection pool was closed")
        url = request.url
        if url.scheme not in ("http", "https"):
            raise LocalProtocolError(f"unsupported URL scheme {url.scheme!r} in {url}")
        if request.timeout is None:
            request.timeout = self._timeout
        origin = url.origin
        key: Key = (origin, self._tls_key) if origin.scheme == "https" else (origin,)
        retried = False
        while True:
            slot = self._assign(origin, key)
            if slot is None:
                slot = await self._wait_for_slot(origin, key, request.timeout.pool)
            conn = await self._connect(slot, request) if isinstance(slot, _Connecting) else slot
            try:
                return await conn.handle_request(request)
            except StaleConnection:
                if retried or not (request.is_idempotent and request.is_replayable):
                    raise
                retried = True

    # -- bookkeeping (synchronous) -------------------------------------------------
    def _assign(self, origin: Origin, key: Key, ahead: int | None = None) -> Slot | None:
        """An idle usable connection of ``key``, a new CONNECTING slot, or None.

        ``ahead`` is how many queued requests for ``key`` come first (None: all
        of them, for a request not queued yet).  A connection that is DRAINING
        will be idle within ``Limits.drain_timeout`` (usually within one round
        trip), so as many requests as there are draining connections wait for
        them instead of opening new ones.
        """
        if self._closed:
            raise PoolClosed("the connection pool was closed")
        now = time.monotonic()
        expiry = self._limits.keepalive_expiry
        for slot in self._slots:
            if slot.key == key and slot.state == "idle":
                assert isinstance(slot, HTTP11Connection)
                if not slot.is_usable() or (expiry is not None and now - slot.idle_since >= expiry):
                    self._discard(slot)
                    return self._assign(origin, key, ahead)
                slot.reserve()
                return slot
        draining = sum(1 for s in self._slots if s.key == key and s.state == "draining")
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
            victim = next((s for s in self._slots if s.state == "idle"), None)
            if victim is None:
                return None
            assert isinstance(victim, HTTP11Connection)
            self._discard(victim)
        slot_new = _Connecting(origin, key)
        self._slots.append(slot_new)
        return slot_new

    def _discard(self, conn: HTTP11Connection) -> None:
        if conn in self._slots:
            self._slots.remove(conn)
        conn.close()

    def _remove_slot(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        self._wake()

    def _on_change(self, conn: HTTP11Connection) -> None:
        """A connection changed state on its own (request done, peer closed...)."""
        if conn.state == "closed":
            if conn in self._slots:
                self._slots.remove(conn)
        elif conn.state == "idle":
            if self._closed or conn not in self._slots:
                conn.close()
                return
            limits = self._limits
            idle = [s for s in self._slots if s.state == "idle"]
            if limits.max_keepalive_connections is not None and len(idle) > limits.max_keepalive_connections:
                assert all(isinstance(s, HTTP11Connection) for s in idle)
                oldest = min(idle, key=lambda s: s.idle_since)  # type: ignore[union-attr]
                assert isinstance(oldest, HTTP11Connection)
                self._discard(oldest)
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
        idle = [s for s in self._slots if isinstance(s, HTTP11Connection) and s.state == "idle"]
        for conn in idle:
            if now - conn.idle_since >= expiry:
                self._discard(conn)
        remaining = [c.idle_since for c in idle if c.state == "idle"]
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
            slot = self._assign(waiter.origin, waiter.key, ahead.get(waiter.key, 0))
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
        elif slot.state == "active" and slot.requests == 0:
            self._discard(slot)
            self._wake()
        elif slot.state == "active":
            slot.state = "idle"
            self._on_change(slot)

    # -- waiting and connecting ------------------------------------------------------
    async def _wait_for_slot(self, origin: Origin, key: Key, timeout: float | None) -> Slot:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Slot] = loop.create_future()
        waiter = _Waiter(origin, key, future)
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
                PoolTimeout(f"no connection to {waiter.origin} became free within {timeout:g} s (pool timeout)")
            )

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = create_ssl_context(self._tls)
        return self._ssl_context

    async def _connect(self, slot: _Connecting, request: Request) -> HTTP11Connection:
        origin = slot.origin
        assert request.timeout is not None
        try:
            context = self._context() if origin.scheme == "https" else None
            connected = await open_stream(
                origin.host,
                origin.port,
                ssl_context=context,
                timeout=request.timeout.connect,
                local_address=self._local_address,
            )
        except BaseException:
            self._remove_slot(slot)
            raise
        if self._closed or slot not in self._slots:
            connected.transport.abort()
            raise PoolClosed("the connection pool was closed while connecting")
        self.connects += 1
        conn = HTTP11Connection(origin, slot.key, limits=self._limits, on_change=self._on_change)
        self._slots[self._slots.index(slot)] = conn
        connected.handoff.hand_to(conn.protocol)
        if conn.state == "closed" or not conn.protocol.is_usable:
            self._discard(conn)
            self._wake()
            raise ConnectError(f"{origin} closed the connection right after it was opened")
        return conn
