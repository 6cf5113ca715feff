"""EventSource: a Server-Sent Events stream that reconnects, as the browser's EventSource does.

    async with httpstream.AsyncClient() as client:
        async with EventSource(client, "https://example.org/events") as source:
            async for event in source:
                print(event.event, event.data, event.id)

Theory of operation (WHATWG HTML standard, section 9.2 "Server-sent events")
-----------------------------------------------------------------------------
Each connection is one ``client.stream()`` request with ``Accept:
text/event-stream`` and ``Cache-Control: no-store`` (and ``Last-Event-ID`` once
the stream has given an id).  Its answer is checked the way the standard "fails
the connection": any status outside 2xx raises ``HTTPStatusError`` and a 2xx
whose Content-Type is not ``text/event-stream`` raises ``DecodingError``, with no
reconnect; a 204 ends the iteration for good (the server's way to say "stop").
Events are decoded by ``SSEDecoder``; the last event ID and the server's
``retry`` carry over from one connection to the next.

When the body ends, or the connection fails with a ``TransportError`` (refused,
reset, timed out, cut mid-body; not ``LocalProtocolError`` or ``PoolClosed``,
which a new attempt cannot cure), the source waits the reconnection time and
connects again.  The reconnection time is 3 s unless the server sent ``retry``
(so only a server can make reconnects quicker), and never more than
``max_retry_delay``.  ``max_reconnects`` bounds the reconnects in a row that
bring no new event; past it the last transport error, or a
``RemoteProtocolError`` if the server just kept closing, is raised.

The stream is consumed inside ``async with``: leaving the block, also by
``break`` or an exception, closes the current response at once.  Request bodies
(``content=``, ``json=``) must be bytes, as they are sent again on each reconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    DecodingError,
    HTTPStatusError,
    LocalProtocolError,
    PoolClosed,
    RemoteProtocolError,
    TransportError,
)
from ._headers import Headers, HeaderTypes
from ._sse import MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder
from ._urls import URL

if TYPE_CHECKING:
    from ._client import AsyncClient
    from ._models import Response

__all__ = ["EventSource"]

DEFAULT_RETRY_MS = 3000  # the HTML standard leaves it to the user agent; browsers use about 3 s


class EventSource:
    """A reconnecting Server-Sent Events stream over ``client.stream()``; see the module docstring.

    ``last_event_id`` resumes a stream (sent as ``Last-Event-ID`` on the first
    request); ``request_kwargs`` go to ``client.stream()`` (``params``,
    ``content``, ``json``, ``timeout``, ``follow_redirects``, which defaults to
    True here as in browsers).  After iteration, ``last_event_id`` and ``retry``
    hold the stream's state and ``reconnects`` counts the reconnections made.
    """

    def __init__(
        self,
        client: AsyncClient,
        url: str | URL,
        *,
        method: str = "GET",
        headers: HeaderTypes = None,
        last_event_id: str | None = None,
        max_reconnects: int = 10,
        max_retry_delay: float = 60.0,
        max_event_size: int = MAX_EVENT_SIZE,
        **request_kwargs: Any,
    ) -> None:
        self._client = client
        self._url = url
        self._method = method
        self._headers = Headers(headers)
        self._headers["Accept"] = "text/event-stream"
        self._headers["Cache-Control"] = "no-store"
        self._max_reconnects = max_reconnects
        self._max_retry_delay = max_retry_delay
        self._max_event_size = max_event_size
        request_kwargs.setdefault("follow_redirects", True)
        self._kwargs = request_kwargs
        self.last_event_id = last_event_id
        self.retry: int | None = None  # milliseconds, as the server last set it
        self.reconnects = 0
        self._events: AsyncGenerator[ServerSentEvent, None] | None = None

    async def __aenter__(self) -> EventSource:
        self._events = self._run()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: the response being read, if any, is closed."""
        if self._events is not None:
            await self._events.aclose()

    def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        if self._events is None:
            raise RuntimeError("use 'async with EventSource(client, url) as source: async for event in source'")
        return self._events

    @property
    def reconnect_delay(self) -> float:
        """Seconds to wait before the next reconnect."""
        retry = DEFAULT_RETRY_MS if self.retry is None else self.retry
        return min(retry / 1000, self._max_retry_delay)

    async def _run(self) -> AsyncGenerator[ServerSentEvent, None]:
        in_a_row = 0  # reconnects since the last event
        while True:
            error: TransportError | None = None
            headers = self._headers.copy()
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
            try:
                async with self._client.stream(self._method, self._url, headers=headers, **self._kwargs) as response:
                    if not self._accept(response):
                        return
                    decoder = SSEDecoder(max_event_size=self._max_event_size, last_event_id=self.last_event_id)
                    async for chunk in response.aiter_bytes():
                        for event in decoder.decode(chunk):
                            in_a_row = 0
                            self.last_event_id = event.id
                            yield event
                        # an id or retry without data dispatches no event but still counts
                        self.last_event_id = decoder.last_event_id
                        if decoder.retry is not None:
                            self.retry = decoder.retry
                    decoder.end()
            except (LocalProtocolError, PoolClosed):
                raise  # sending again cannot help
            except TransportError as exc:
                error = exc
            if in_a_row >= self._max_reconnects:
                if error is not None:
                    raise error
                raise RemoteProtocolError(
                    f"the event stream at {self._url} ended again; giving up after {in_a_row} reconnects "
                    f"in a row without a new event (max_reconnects={self._max_reconnects})"
                )
            in_a_row += 1
            self.reconnects += 1
            await asyncio.sleep(self.reconnect_delay)

    def _accept(self, response: Response) -> bool:
        """Whether to read this answer: False for 204; raises where the standard fails the connection."""
        status = response.status_code
        if status == 204:
            return False
        if not 200 <= status < 300:
            raise HTTPStatusError(
                f"event stream {self._url} answered '{status} {response.reason_phrase}'; not reconnecting",
                request=response.request,
                response=response,
            )
        media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "text/event-stream":
            raise DecodingError(
                f"event stream {self._url} answered with Content-Type {media_type or '(none)'!r}, "
                "not 'text/event-stream'; not reconnecting"
            )
        return True
