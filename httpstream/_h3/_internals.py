"""What ``_h3`` takes from aioquic's private internals, in one place.

Theory of operation
-------------------
``H3Protocol`` drives aioquic's public API (``receive_datagram``,
``next_event``, ``datagrams_to_send``, ``H3Connection``...).  Two of our rules
need more: the receive window of a request stream follows what the caller
*consumed* (aioquic raises it as data arrives, so a stream nobody reads could
buffer without bound), and an upload waits while too much of it is
unacknowledged.  Every reliance on aioquic's inside is here; this module
refuses at import an aioquic outside the range it was verified against
(aioquic>=1.2,<2; verified with aioquic 1.7.2).  tests/test_units.py checks
that each internal is still there.

Internals relied upon, and why:

``QuicConnection._write_stream_limits`` (override in ``CreditedQuic``)
    The one place aioquic decides a stream's MAX_STREAM_DATA.  For our request
    streams the limit becomes consumed + ``Limits.h3_stream_window``, raised in
    steps of half a window; other streams keep aioquic's rule.  The override
    writes the frame as aioquic does: ``QuicPacketBuilder.start_frame`` with
    ``MAX_STREAM_DATA_FRAME_CAPACITY`` and the delivery handler
    ``_on_max_stream_data_delivery`` (which resends the frame if lost), and
    ``QuicStream.max_stream_data_local`` / ``max_stream_data_local_sent``.
``QuicConnection._streams``
    aioquic's live streams: ``live_stream_ids`` (to drop the credit entries of
    streams aioquic has discarded), ``receive_limit`` (a stream's
    ``max_stream_data_local``, to transmit only when credit is due) and
    ``unacked_send_bytes`` (``QuicStream.sender._buffer``: bytes handed to QUIC
    and not yet acknowledged, the upload's backpressure).
``QuicConnection._remote_max_streams_bidi``
    The peer's MAX_STREAMS for bidirectional streams: ``remote_max_streams_bidi``,
    so a request waits for a stream slot instead of aioquic raising.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.stream import QuicStream

from .._requires import require_version

__all__ = [
    "MINIMUM",
    "BELOW",
    "CreditedQuic",
    "live_stream_ids",
    "receive_limit",
    "remote_max_streams_bidi",
    "unacked_send_bytes",
]

MINIMUM = "1.2"
BELOW = "2"
VERIFIED = require_version("aioquic", MINIMUM, BELOW)


class CreditedQuic(QuicConnection):
    """QuicConnection whose request streams get credit for consumed bytes only.

    ``consumed`` maps the id of each of our request streams to the bytes the
    caller has consumed from it; a stream not in it keeps aioquic's rule.
    """

    def __init__(self, *args: Any, stream_window: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consumed: dict[int, int] = {}
        self._stream_window = stream_window

    def _write_stream_limits(self, builder: QuicPacketBuilder, space: Any, stream: QuicStream) -> None:
        stream_id = stream.stream_id
        consumed = self.consumed.get(stream_id) if stream_id is not None else None
        if consumed is None or stream_id is None:
            super()._write_stream_limits(builder, space, stream)
            return
        target = consumed + self._stream_window
        # Raise the limit in steps of half a window, as WINDOW_UPDATE does in HTTP/2.
        if stream.max_stream_data_local and target - stream.max_stream_data_local >= self._stream_window // 2:
            stream.max_stream_data_local = target
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local


def live_stream_ids(quic: QuicConnection) -> Container[int]:
    """The ids of the streams aioquic still holds (a live view, not a copy)."""
    return quic._streams


def unacked_send_bytes(quic: QuicConnection, stream_id: int) -> int:
    """Bytes of the stream handed to QUIC and not yet acknowledged by the peer (0 once it is gone)."""
    stream = quic._streams.get(stream_id)
    return len(stream.sender._buffer) if stream is not None else 0


def receive_limit(quic: QuicConnection, stream_id: int) -> int | None:
    """The stream's current receive limit (the MAX_STREAM_DATA we grant), or None once it is gone."""
    stream = quic._streams.get(stream_id)
    return stream.max_stream_data_local if stream is not None else None


def remote_max_streams_bidi(quic: QuicConnection) -> int:
    """How many bidirectional streams the peer allows us to open in all (its MAX_STREAMS)."""
    limit: int = quic._remote_max_streams_bidi
    return limit
