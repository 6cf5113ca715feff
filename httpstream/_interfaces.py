"""The one interface between the pool and its connections.

The pool (layer 4) holds HTTP/1.1, HTTP/2 and HTTP/3 connections and speaks to
each through the members below only: it never looks at a connection's class
or its protocol object.  Every query is synchronous, so the pool's
bookkeeping stays free of ``await`` (STYLE.md, habit 5); ``handle_request``,
``check`` and ``aclose`` are the only coroutines.

A connection is, for the pool, in one of the states of ``ConnectionInfo.state``:
``"active"`` (owned by requests or reserved for one), ``"idle"`` (free),
``"draining"`` (HTTP/1.1 reading off an early-closed body) or ``"closed"``
(gone: the pool drops it).  A connection that changes state on its own (a
body read to the end, the peer closing) calls the ``on_change`` callback it
was built with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._config import Timeout
    from ._models import Request, Response
    from ._urls import Origin

__all__ = ["CLOSE_GRACE", "Connection", "ConnectionInfo"]

# How long aclose() waits for a connection's transport to finish closing (TLS
# close_notify, a last flush) before it aborts it: no socket outlives the pool.
CLOSE_GRACE = 0.25


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A snapshot of one connection, for the pool's counts and ``repr``."""

    http_version: str
    state: str
    streams: int  # exchanges in flight (HTTP/1.1: 0 or 1)
    requests: int  # requests handled so far
    idle_since: float  # time.monotonic() when it last became idle
    socket_open: bool  # the transport (or UDP endpoint) is still open


@runtime_checkable
class Connection(Protocol):
    """What every connection kind implements for the pool."""

    origin: Origin
    key: tuple[object, ...]
    http_version: str

    async def handle_request(self, request: Request, timeout: Timeout) -> Response:
        """Send one request (the pool reserved this connection for it); return at the head."""
        ...

    def is_available(self) -> bool:
        """May take one more request right now."""
        ...

    def is_full(self) -> bool:
        """Open and taking requests, but not one more right now (all streams busy)."""
        ...

    def is_idle(self) -> bool: ...

    def is_closed(self) -> bool: ...

    def has_expired(self, now: float) -> bool:
        """Idle and past ``Limits.keepalive_expiry``, or idle and found dead: discard it."""
        ...

    def reserve(self) -> None:
        """A request picked this connection and will call ``handle_request`` next."""
        ...

    def unreserve(self) -> None:
        """A reservation given back unused (the request was cancelled first)."""
        ...

    async def check(self) -> bool:
        """Before reuse: is it alive?  (HTTP/2 and HTTP/3 PING one that idled long.)"""
        ...

    def close(self) -> None:
        """Start closing, synchronously; ``aclose`` waits for the end."""
        ...

    async def aclose(self) -> None:
        """Close and wait (at most ``CLOSE_GRACE``) for the transport to end, then abort it."""
        ...

    def info(self) -> ConnectionInfo: ...
