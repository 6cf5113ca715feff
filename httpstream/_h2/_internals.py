"""What ``_h2`` takes from h2's private internals, in one place.

Theory of operation
-------------------
``H2Protocol`` drives h2's public API (``receive_data``, ``send_headers``,
``data_to_send``...) on a ``ClientH2Connection``: h2's connection with three
rule changes made by overriding private methods.  Every such override, and
every other reliance on how h2 works inside, is here; this module refuses at
import an h2 outside the range it was verified against (h2>=4.4.1,<5; verified
with h2 4.4.1, hpack 4.2.0, hyperframe 6.1.0).  tests/test_units.py checks that
each internal is still there.

Internals relied upon, and why:

``H2Connection._begin_new_stream`` and ``H2Stream._initialize_content_length`` / ``_track_content_length``
    RFC 9113 section 8.1.1: a body that disagrees with its Content-Length is a
    *stream* error, but h2 raises a connection error, which would fail every
    stream in flight.  Each new stream is re-classed to
    ``_StreamWithoutLengthChecks`` (the two checks made no-ops, and h2's
    ``_expected_content_length`` cleared) and ``H2Protocol`` checks per stream.
``H2Connection._receive_goaway_frame`` and ``state_machine.state``
    RFC 9113 section 6.8: after GOAWAY(NO_ERROR) the server still completes the
    streams up to its last stream id; h2 moves the connection to CLOSED and
    would refuse their frames, so the CLIENT_OPEN state is restored.
``H2Connection.incoming_buffer`` (a ``h2.frame_buffer.FrameBuffer``), ``_frame_dispatch_table``, ``_receive_data_frame``
    h2 formats every received frame for its trace log (``repr`` hex-encodes a
    DATA payload) even with logging off: a quarter of a large download.  The
    frame buffer re-classes DATA frames to ``_QuietDataFrame`` (a cheap repr),
    dispatched as DATA is.
``H2Connection.decoder`` (hpack's ``Decoder.max_header_list_size``)
    A SETTINGS_MAX_HEADER_LIST_SIZE given up front is in force from the first
    frame; h2 applies it to its decoder only on the ACK.  ``limit_header_list``.
``DenialOfServiceError`` raised ``from`` hpack's ``OversizedHeaderListError``
    How h2 reports a header block above that limit (``h2.connection._decode_headers``);
    ``oversized_header_block`` recognises it by class and cause, not by message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.stream
import hpack
import hyperframe.frame

from .._requires import require_version

__all__ = ["MINIMUM", "BELOW", "ClientH2Connection", "limit_header_list", "oversized_header_block"]

MINIMUM = "4.4.1"
BELOW = "5"
VERIFIED = require_version("h2", MINIMUM, BELOW)


class _QuietDataFrame(hyperframe.frame.DataFrame):
    """A DATA frame whose repr costs nothing.

    h2 formats every received frame for its trace log (``repr(frame)``, which
    hex-encodes the payload) before calling the no-op logger: a quarter of the
    time of a large download.  DATA frames are re-classed to this subclass as
    they leave the frame buffer, and dispatched exactly as DATA frames are.
    """

    def __repr__(self) -> str:
        return "DataFrame"


class _FrameBuffer(h2.frame_buffer.FrameBuffer):
    def __next__(self) -> hyperframe.frame.Frame:
        frame = super().__next__()
        if frame.__class__ is hyperframe.frame.DataFrame:
            frame.__class__ = _QuietDataFrame
        return frame


class _StreamWithoutLengthChecks(h2.stream.H2Stream):
    """h2's stream minus its Content-Length checks, which ``H2Protocol`` makes per stream.

    RFC 9113 section 8.1.1: a malformed response (a body longer or shorter than
    its Content-Length, DATA on a response to HEAD, a Content-Length that is not
    a number) is a *stream* error.  h2 raises these as connection errors, which
    would fail every other stream in flight on the connection and close it for
    one bad response.  ``H2Protocol`` checks them itself (``_head``,
    ``_feed_pending``, ``StreamEnded``) and resets only the stream at fault.
    """

    def _initialize_content_length(self, headers: Iterable[Any]) -> None:
        self._expected_content_length = None

    def _track_content_length(self, length: int, end_stream: bool) -> None:
        return None


class ClientH2Connection(h2.connection.H2Connection):
    """h2's connection, with two rule changes for a client (and a cheaper DATA frame).

    RFC 9113 section 6.8: after GOAWAY the server still completes the streams up
    to its last stream id.  h2 moves its whole connection to CLOSED on GOAWAY and
    then refuses the HEADERS and DATA of exactly those streams, so the connection
    is kept open here; no new stream is opened on it (``H2Protocol.goaway``).

    Content-Length is checked per stream, not by h2 (``_StreamWithoutLengthChecks``).
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self.incoming_buffer = _FrameBuffer(server=False)
        self._frame_dispatch_table[_QuietDataFrame] = self._receive_data_frame

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> h2.stream.H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = _StreamWithoutLengthChecks
        return stream

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        state = self.state_machine.state
        frames, events = super()._receive_goaway_frame(frame)
        if state is h2.connection.ConnectionState.CLIENT_OPEN and frame.error_code == 0:
            self.state_machine.state = state
        return frames, events


def limit_header_list(conn: h2.connection.H2Connection, size: int) -> None:
    """Make hpack refuse a decoded header list above ``size`` bytes from the first frame on."""
    conn.decoder.max_header_list_size = size


def oversized_header_block(exc: BaseException) -> bool:
    """Whether ``exc`` (from ``receive_data``) is h2 refusing a header list above our limit.

    h2 raises ``DenialOfServiceError`` from hpack's ``OversizedHeaderListError``.
    """
    return isinstance(exc, h2.exceptions.DenialOfServiceError) and isinstance(
        exc.__cause__, hpack.OversizedHeaderListError
    )
