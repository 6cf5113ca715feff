"""Server-Sent Events: a ``text/event-stream`` body in, ``ServerSentEvent`` out.

The decoder (``SSEDecoder``, its theory of operation in its docstring) sits on
``_text``'s UTF-8 and line decoders and, like them, keeps only a partial line and
the event being built across chunk boundaries, each capped at ``MAX_EVENT_SIZE``.
``Response.aiter_sse`` and ``EventSource`` (``_eventsource``, the reconnecting
client) read events through it.
"""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from typing import Any

from ._exceptions import DecodingError
from ._text import LineDecoder, TextDecoder

__all__ = ["MAX_EVENT_SIZE", "SSEDecoder", "ServerSentEvent"]

MAX_EVENT_SIZE = 1024 * 1024  # characters of one Server-Sent Event (data and lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSentEvent:
    """One dispatched event of a ``text/event-stream`` body.

    ``id`` is the stream's last event ID when the event was dispatched (None if
    the stream never set one); ``retry`` is the reconnection time in
    milliseconds if this event's block carried a valid ``retry`` field.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self, **kwargs: Any) -> Any:
        """``data`` parsed as JSON."""
        try:
            return jsonlib.loads(self.data, **kwargs)
        except (ValueError, RecursionError) as exc:
            raise DecodingError(f"event data is not valid JSON: {exc}") from exc


class SSEDecoder:
    """Bytes of an event stream in, ``ServerSentEvent`` out, across chunk boundaries.

    Theory of operation: the WHATWG HTML standard, section 9.2.6 "Interpreting
    an event stream".  The stream is always UTF-8 and one leading BOM is dropped
    (``utf-8-sig`` does both); lines end in CRLF, LF or CR (``LineDecoder``).
    Per line: empty -> dispatch; ``:`` first -> comment; otherwise the field name
    is up to the first colon (the whole line when there is none, with an empty
    value) and one space after the colon is dropped.  ``data`` appends to the
    data buffer (joined with LF), ``event`` sets the type, ``id`` sets the last
    event ID buffer unless it contains NUL, ``retry`` sets the reconnection time
    when it is all ASCII digits; other fields are ignored.  Dispatch first makes
    the buffer the stream's last event ID (so an ``id`` alone, with no data,
    still moves it), then emits an event only when some ``data`` line came.  An
    event left incomplete when the stream ends is never dispatched, so there is
    no flush.

    ``last_event_id`` and ``retry`` are what a reconnecting client needs; pass
    ``last_event_id`` in to continue a stream on a new connection (browsers carry
    it over the same way).  One event's data (and any one line) is capped at
    ``max_event_size`` characters.
    """

    def __init__(self, *, max_event_size: int = MAX_EVENT_SIZE, last_event_id: str | None = None) -> None:
        self._text = TextDecoder("utf-8-sig")
        self._lines = LineDecoder(max_event_size)
        self._max = max_event_size
        self._data: list[str] = []
        self._size = 0
        self._type = ""
        self._id_buffer = last_event_id
        self._event_retry: int | None = None
        self.last_event_id = last_event_id
        self.retry: int | None = None

    def decode(self, data: bytes) -> list[ServerSentEvent]:
        try:
            lines = self._lines.decode(self._text.decode(data))
        except DecodingError as exc:
            raise self._too_large() from exc
        events: list[ServerSentEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def end(self) -> None:
        """The stream ended: an incomplete event is dropped (as the standard says),
        but an over-long line seen after the last complete events still raises."""
        try:
            self._lines.flush()
        except DecodingError as exc:
            raise self._too_large() from exc

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._size += len(value) + 1
            if self._size > self._max:
                raise self._too_large()
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = self._event_retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id_buffer
        event = None
        if self._data:
            event = ServerSentEvent(
                event=self._type or "message",
                data="\n".join(self._data),
                id=self._id_buffer,
                retry=self._event_retry,
            )
        self._data = []
        self._size = 0
        self._type = ""
        self._event_retry = None
        return event

    def _too_large(self) -> DecodingError:
        return DecodingError(
            f"server-sent event larger than the limit of {self._max} characters (raise max_event_size if expected)"
        )
