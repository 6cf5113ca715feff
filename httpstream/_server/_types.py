"""What the server side hands a handler, and its limits (shared by ``_h1`` and ``_h2`` here).

A role (the proxy, the tunnel edge) gives ``Server`` one handler; each request
arrives as a ``ServerExchange``: the request (our ``Request``: method, an
absolute URL built from the scheme the connection speaks and the request's
authority, the target exactly as it came, headers, a body that streams with
backpressure and its trailers), and the means to answer it: ``informational``
(1xx), ``respond`` (head, then a body that streams with backpressure),
``upgrade`` (101 to an Upgrade, 2xx to CONNECT: the connection or stream
becomes a ``NetworkStream``), ``abort`` (give up: a body already started is
never ended cleanly).

A handler that returns without answering gets a 500 sent for it; one that
raises before the head gets a 500, after the head an abort.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .._headers import Headers, HeaderTypes
from .._models import Request
from .._network import NetworkStream

__all__ = ["Handler", "ServerExchange", "ServerLimits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    """What a client may send; past a limit the request is refused with a clear status."""

    max_header_bytes: int = 64 * 1024  # a request head (HTTP/1.1) or header block (HTTP/2): 431
    max_header_count: int = 100  # fields in one head: 431
    max_request_line: int = 8 * 1024  # HTTP/1.1 request line: 414
    max_concurrent_streams: int = 100  # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS we announce
    stream_window: int = 1024 * 1024  # HTTP/2 per-stream receive window; HTTP/1.1 body buffer high water
    connection_window: int = 16 * 1024 * 1024  # HTTP/2 connection receive window
    max_control_frames_per_second: int = 1000  # HTTP/2 PING/SETTINGS (and RST_STREAM) floods
    max_continuation_frames: int = 64  # HTTP/2 CONTINUATION frames for one header block
    header_timeout: float = 30.0  # the whole request head must arrive within this (slowloris)
    keepalive_timeout: float = 75.0  # idle time allowed between requests on one connection
    write_high_water: int = 256 * 1024  # response bytes queued in the transport before ``respond`` waits


class ServerExchange(Protocol):
    """One request on a server connection (HTTP/1.1 or HTTP/2), and how to answer it."""

    request: Request
    http_version: str  # "HTTP/1.1" or "HTTP/2"
    client_addr: tuple[str, int]
    server_addr: tuple[str, int]
    tls: bool

    async def informational(self, status: int, headers: HeaderTypes = None) -> None:
        """Send a 1xx answer (100 Continue, 103 Early Hints) before the final one."""
        ...

    async def respond(
        self,
        status: int,
        headers: HeaderTypes = None,
        body: bytes | AsyncIterable[bytes] | None = None,
        *,
        trailers: Headers | None = None,
    ) -> None:
        """Send the final head, then the body (streamed with backpressure); returns when it is all written."""
        ...

    async def upgrade(self, status: int, headers: HeaderTypes = None) -> NetworkStream:
        """Answer 101 (to an Upgrade) or 2xx (to CONNECT) and take the raw stream."""
        ...

    def abort(self) -> None:
        """Give up on the exchange: HTTP/1.1 closes the connection, HTTP/2 resets the stream."""
        ...


Handler = Callable[[ServerExchange], Awaitable[None]]
