"""One HTTP/2 stream's state: the request/response exchange as ``H2Protocol`` tracks it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .._headers import Headers
from .._streams import BodyBuffer, Upload

__all__ = ["H2Stream"]


class H2Stream:
    """One request/response exchange on the connection."""

    __slots__ = (
        "stream_id",
        "method",
        "head_waiter",
        "head_timer",
        "buffer",
        "trailers",
        "ended",
        "request_done",
        "closed",
        "error",
        "informational",
        "read_timeout",
        "unacked",
        "expected_length",
        "continue_waiter",
        "no_body",
        "upload",
        "on_informational",
    )

    def __init__(self, stream_id: int, method: str, read_timeout: float | None) -> None:
        self.no_body = False  # HEAD, 204, 304: any DATA makes the response malformed
        self.unacked = 0  # consumed bytes not yet acknowledged to h2
        self.expected_length: int | None = None  # Content-Length of the response, to check the body against
        self.stream_id = stream_id
        self.method = method
        self.head_waiter: asyncio.Future[tuple[int, Headers]] = asyncio.get_running_loop().create_future()
        self.head_timer: asyncio.TimerHandle | None = None
        self.buffer: BodyBuffer | None = None
        self.trailers = Headers()
        self.ended = False  # the response body ended (END_STREAM)
        self.request_done = False  # our side ended (END_STREAM sent)
        self.closed = False  # forgotten: reset, failed or both sides ended
        self.error: BaseException | None = None
        self.informational = 0
        self.read_timeout = read_timeout
        # Set while the request waits for "100 Continue" (Expect: 100-continue).
        self.continue_waiter: asyncio.Future[None] | None = None
        self.upload: Upload | None = None  # the request body going up in the background
        self.on_informational: Callable[[int, Headers], None] | None = None
