"""What ``_h1`` takes from h11's private internals, in one place.

Theory of operation
-------------------
``H1Protocol`` does not run h11's connection state machine (see
``_protocol.py``): it runs h11's *readers* directly on a receive buffer of its
own, which is what makes the push model cheap.  Those readers are not public
API, so every use of them is here, and this module refuses at import an h11
outside the range they were verified against (h11>=0.16,<0.17; verified with
h11 0.16.0).  tests/test_units.py checks that each internal is still there.

Internals relied upon, and why:

``h11._receivebuffer.ReceiveBuffer``
    The byte buffer h11's readers consume from (``maybe_extract_next_line``,
    ``maybe_extract_at_most``); we feed it ourselves.  Re-exported as
    ``ReceiveBuffer``.
``h11._readers.maybe_read_from_SEND_RESPONSE_server``
    h11's response-head reader (status line, field lines, obs-fold, the
    Content-Length / Transfer-Encoding smuggling checks).  Wrapped as
    ``read_response_head``.
``h11._readers.ChunkedReader``
    Used only for the trailer section of a chunked body (a field section parsed
    as a head is); primed past the last-chunk line.  Wrapped as
    ``trailer_reader``.
``h11._headers.Headers._full_items``
    The (raw name, lower-cased name, value) triples h11 validated: the layout of
    our ``Headers``, taken without a copy per field.  Wrapped as
    ``header_triples``.
"""

from __future__ import annotations

from collections.abc import Callable

import h11
from h11._readers import ChunkedReader, maybe_read_from_SEND_RESPONSE_server
from h11._receivebuffer import ReceiveBuffer

from .._requires import require_version

__all__ = [
    "MINIMUM",
    "BELOW",
    "ReceiveBuffer",
    "TrailerReader",
    "header_triples",
    "read_response_head",
    "trailer_reader",
]

MINIMUM = "0.16"
BELOW = "0.17"
VERIFIED = require_version("h11", MINIMUM, BELOW)

#: h11's reader of a response head (or an informational one): an
#: ``h11.Response`` / ``h11.InformationalResponse``, or None until complete.
read_response_head: Callable[[ReceiveBuffer], h11.Response | h11.InformationalResponse | None] = (
    maybe_read_from_SEND_RESPONSE_server
)

#: Reads a trailer section from a ReceiveBuffer: ``h11.EndOfMessage`` with the fields, or None until complete.
TrailerReader = Callable[[ReceiveBuffer], h11.Data | h11.EndOfMessage | None]


def trailer_reader() -> TrailerReader:
    """A reader of a chunked body's trailer section (the last-chunk line already read)."""
    reader = ChunkedReader()
    primer = ReceiveBuffer()
    primer += b"0\r\n"
    reader(primer)  # reads the last-chunk line: now it expects the trailers
    return reader


def header_triples(event: h11.Response | h11.InformationalResponse) -> list[tuple[bytes, bytes, bytes]]:
    """The (raw name, lower-cased name, value) triples of a head h11 parsed, not copied."""
    triples: list[tuple[bytes, bytes, bytes]] = event.headers._full_items
    return triples
