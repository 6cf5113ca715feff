"""The pool-facing half that HTTP/2 and HTTP/3 connections share.

A multiplexed connection carries many streams; the pool sees it through the
same few members whatever the protocol: ``state`` (idle / active / closed),
``reserve()`` / ``unreserve()`` (a request has picked it but not opened its
stream yet, so two requests never count on the same free slot),
``is_usable()``, ``is_open()``, ``close()`` and ``ping()``.  ``_h2`` and
``_h3`` are siblings and may not import each other, so this lives below them
(layer 2).  Each subclass builds its ``protocol`` and says when that protocol
is gone (``_protocol_gone``) and whether it can take one more stream
(``_can_open``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from ._urls import Origin

__all__ = ["MultiplexedConnection"]


class _StreamProtocol(Protocol):
    streams: dict[int, Any]

    @property
    def is_usable(self) -> bool: ...

    def close(self) -> None: ...

    async def ping(self, timeout: float) -> bool: ...


_P = TypeVar("_P", bound=_StreamProtocol)


class MultiplexedConnection(Generic[_P]):
    """Bookkeeping shared by ``HTTP2Connection`` and ``HTTP3Connection``."""

    multiplexed = True
    http_version = ""
    protocol: _P

    def __init__(self, origin: Origin, key: tuple[object, ...], on_change: Callable[[Any], None]) -> None:
        self.origin = origin
        self.key = key
        self.requests = 0
        self.reserved = 0
        self.idle_since = time.monotonic()
        self._on_change = on_change
        self._closed = False

    # -- what a subclass says about its protocol ---------------------------------------------
    def _protocol_gone(self) -> bool:
        raise NotImplementedError

    def _can_open(self) -> bool:
        raise NotImplementedError

    # -- the pool's view ---------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self._closed or self._protocol_gone():
            return "closed"
        if self.protocol.streams or self.reserved:
            return "active"
        return "idle"

    @property
    def is_idle(self) -> bool:
        return self.state == "idle"

    @property
    def is_closed(self) -> bool:
        return self.state == "closed"

    def is_usable(self) -> bool:
        return not self._closed and self.protocol.is_usable and self._can_open()

    def is_open(self) -> bool:
        """Alive and taking new streams (maybe not right now: all may be busy)."""
        return not self._closed and self.protocol.is_usable

    def reserve(self) -> None:
        self.reserved += 1

    def unreserve(self) -> None:
        self.reserved = max(0, self.reserved - 1)
        if self.state == "idle":
            self.idle_since = time.monotonic()
        self._on_change(self)

    def active_streams(self) -> int:
        return len(self.protocol.streams)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.protocol.close()

    async def ping(self, timeout: float) -> bool:
        return await self.protocol.ping(timeout)

    # -- callbacks from the protocol ---------------------------------------------------------------
    def _stream_closed(self, stream: object) -> None:
        if not self.protocol.streams and not self.reserved:
            self.idle_since = time.monotonic()
        self._on_change(self)

    def _state_changed(self) -> None:
        self._on_change(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.origin} {self.state} streams={len(self.protocol.streams)}>"
