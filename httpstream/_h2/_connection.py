"""One HTTP/2 connection as the pool sees it: many streams, the HTTP/2 release rules.

States (``state``), as the pool counts them: ACTIVE while a stream is open or
reserved, IDLE with none, CLOSED once gone or after GOAWAY with no stream left.
``is_usable()`` says whether a new stream may start now: not closed, no GOAWAY,
fewer open (and reserved) streams than the peer's SETTINGS_MAX_CONCURRENT_STREAMS
and our own ``Limits.max_concurrent_streams``.

Release rules (DESIGN.md, HTTP/2 column):
- body read to the end: the stream ends and its slot is free;
- ``aclose()`` early, or the caller cancelled: RST_STREAM(CANCEL), the unread
  bytes' credit goes back to the connection window, the connection stays usable;
- a response dropped unclosed: ResourceWarning, then the same reset;
- ``Expect: 100-continue`` (RFC 9110 section 10.1.1): HEADERS go without
  END_STREAM and the body waits for ``100 Continue`` (or ``Timeout.expect``); a
  final answer that comes first is handed over and the body is never sent: our
  side ends with RST_STREAM(NO_ERROR) once that answer is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._config import Limits
from .._multiplexed import MultiplexedConnection
from ._protocol import H2Protocol

if TYPE_CHECKING:
    from .._net import Connected
    from .._urls import Origin

__all__ = ["HTTP2Connection"]


class HTTP2Connection(MultiplexedConnection[H2Protocol]):
    """An HTTP/2 connection multiplexing many requests (the request path is ``MultiplexedConnection``'s)."""

    http_version = "HTTP/2"

    def __init__(
        self,
        origin: Origin,
        key: tuple[object, ...],
        *,
        limits: Limits,
        on_change: Callable[[HTTP2Connection], None],
    ) -> None:
        super().__init__(origin, key, limits, on_change)
        self.protocol = H2Protocol(limits=limits, on_stream_closed=self._stream_closed, on_state=self._state_changed)

    def start(self, connected: Connected) -> bool:
        """Take over the freshly opened transport; False if it is already gone."""
        connected.handoff.hand_to(self.protocol)
        return not self.is_closed() and self.protocol.is_usable

    def _protocol_gone(self) -> bool:
        # A GOAWAY ends the connection once its last stream is done.
        return self.protocol.lost or (self.protocol.goaway and not self.protocol.streams)

    def _can_open(self) -> bool:
        return len(self.protocol.streams) + self.reserved < self.protocol.max_streams

    def _socket_open(self) -> bool:
        return not self.protocol.lost
