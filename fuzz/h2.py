"""Fuzz target ``h2``: hostile HTTP/2 frame sequences (h2c, prior knowledge) against the pool and the client.

Theory of operation
-------------------
The fake peer (``H2Peer``) is a raw asyncio TCP server on 127.0.0.1 that speaks
just enough HTTP/2 to script its answers.  It reads the client's preface and
frames (the frame header by hand, request heads through an hpack decoder, so it
knows each request's stream id, method and path), writes the connection preface
the example drew (``Preface``: usually one SETTINGS frame with random values,
sometimes something that is not HTTP/2 at all), and answers every request
stream, in the order their HEADERS arrive and whatever connection they come on,
with the next drawn ``Reply``.  A reply is a list of ``Frame`` s whose stream
ids are relative to the request's (``own``; ``prev``/``next`` for the
neighbours, ``even`` for a server-initiated id, ``zero``, ``max``), serialized,
cut at drawn byte offsets and written piece by piece with a loop turn between
the pieces; then the peer keeps the connection, closes it, half-closes it or
resets it, as drawn.  When the replies run out it closes the connection.  The
control replies that the preface's options ask for (SETTINGS ACK, PING ACK,
WINDOW_UPDATE for request bodies) go out between replies, never inside one, so
they never cut a scripted frame in two.

Frames are built with hyperframe (bodies, padding, priority, flags) and header
blocks with hpack, encoded without touching the dynamic table so every block
stands on its own whichever connection it lands on.  Deliberately broken frames
(lying lengths, bad padding, zero or overflowing increments, unknown types,
CONTINUATION floods, bad hpack, truncation, garbage) are built from bytes.

A reply comes from one of four families: structured responses (interim heads,
a head, DATA, trailers: two in three are clean, the others carry one to three
*defects*, each opening the bad alternatives of one part), structured responses
mutated at the frame level (drop, duplicate, swap, retarget, flip flags, change
type or length) and byte level, arbitrary frames, and raw garbage.

The client side (shared with the ``h3`` target): one to four requests (GET,
sometimes HEAD, sometimes POST with a body of a few bytes or larger than the
flow-control window, as bytes or as an async iterator), run one after the other
or concurrently, each read in full (iteration or ``aread()``), closed after a
few chunks, closed at once, or cancelled after a few loop turns (also while
its connection is being opened, unless ``Settings.cancel_while_connecting`` is
off); through
``ConnectionPool(http1=False, http2=True)`` or
``AsyncClient(http1=False, http2=True)``.  Each request gets its own path, so
the peer's log says which reply answered it.

The rules checked for every example:

- only ``HTTPStreamError`` subclasses reach the caller (``Escaped``);
- a body read to its end without error has ``content_length`` bytes when that
  is known (``Mismatch``);
- when the preface and every reply are clean, a body read to its end is exactly
  the body that was sent, under the status that was sent (``Mismatch``);
- once every response is closed, ``pool.stats().in_use`` and ``.streams`` are 0
  and every pooled connection is idle (``Leak``);
- after ``aclose()`` the pool is empty and the peer sees every connection closed
  (``Leak``);
- the example ends within ``Settings.hang_after`` (``Hang``), and nothing is only
  logged (``Noise``, from the harness).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import hpack
from hpack import NeverIndexedHeaderTuple
from hyperframe import frame as hf
from hypothesis import strategies as st

import httpstream

from ._h1_wire import mix, weighted
from ._harness import (
    CampaignResult,
    Escaped,
    FuzzFailure,
    Hang,
    Leak,
    Mismatch,
    Settings,
    body_length,
    format_exception,
    run_campaign,
)
from ._peer import bytes_expr

__all__ = [
    "Case",
    "Frame",
    "H2Peer",
    "Plan",
    "Preface",
    "Record",
    "Reply",
    "cases",
    "check_length",
    "collect_garbage",
    "drive",
    "plans",
    "run",
    "run_case",
    "settle",
]

# -- frames ------------------------------------------------------------------------------
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0x0, 0x1, 0x2, 0x3, 0x4, 0x5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION, ALTSVC = 0x6, 0x7, 0x8, 0x9, 0xA
TYPE_NAMES = {
    DATA: "DATA",
    HEADERS: "HEADERS",
    PRIORITY: "PRIORITY",
    RST_STREAM: "RST_STREAM",
    SETTINGS: "SETTINGS",
    PUSH_PROMISE: "PUSH_PROMISE",
    PING: "PING",
    GOAWAY: "GOAWAY",
    WINDOW_UPDATE: "WINDOW_UPDATE",
    CONTINUATION: "CONTINUATION",
    ALTSVC: "ALTSVC",
}
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
FLAG_NAMES = {
    DATA: {0x1: "END_STREAM", 0x8: "PADDED"},
    HEADERS: {0x1: "END_STREAM", 0x4: "END_HEADERS", 0x8: "PADDED", 0x20: "PRIORITY"},
    SETTINGS: {0x1: "ACK"},
    PING: {0x1: "ACK"},
    PUSH_PROMISE: {0x4: "END_HEADERS", 0x8: "PADDED"},
    CONTINUATION: {0x4: "END_HEADERS"},
}
CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_STREAM_ID = 2**31 - 1

# Where a frame goes, relative to the stream of the request it answers.
TARGETS = ("own", "zero", "prev", "next", "even", "max")


def stream_id(target: str | int, own: int) -> int:
    """The stream id ``target`` names for a reply to stream ``own``.

    ``prev`` is the client's stream before ``own`` (an idle one, ``own + 4``, when
    there is none); ``next`` the one after (idle, or another request's);
    ``even`` an id only the server may open.
    """
    if isinstance(target, int):
        return target
    if target == "own":
        return own
    if target == "zero":
        return 0
    if target == "prev":
        return own - 2 if own > 2 else own + 4
    if target == "next":
        return own + 2
    if target == "even":
        return own + 1
    return MAX_STREAM_ID


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame the peer writes: its header fields, its body, and what it means."""

    type: int
    flags: int
    stream: str | int  # a name from TARGETS or an absolute id
    body: bytes = b""
    length: int | None = None  # the length field, when it lies about the body
    note: str = ""  # what the body carries, for the printed example

    def encode(self, own: int) -> bytes:
        length = len(self.body) if self.length is None else self.length
        sid = stream_id(self.stream, own) & 0xFFFFFFFF
        return struct.pack(">I", length)[1:] + bytes((self.type, self.flags)) + struct.pack(">I", sid) + self.body

    @property
    def size(self) -> int:
        return 9 + len(self.body)

    def __repr__(self) -> str:
        name = TYPE_NAMES.get(self.type, f"type {self.type:#x}")
        names = FLAG_NAMES.get(self.type, {})
        flags = "|".join(names.get(bit, f"{bit:#x}") for bit in (1, 2, 4, 8, 16, 32, 64, 128) if self.flags & bit)
        parts = [name + (f"[{flags}]" if flags else ""), repr(self.stream)]
        if self.note:
            parts.append(self.note)
        if not self.note or len(self.body) <= 24:
            parts.append(bytes_expr(self.body))
        if self.length is not None:
            parts.append(f"length={self.length}")
        return f"<{' '.join(parts)}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def from_hyperframe(frame: hf.Frame, stream: str | int, note: str = "") -> Frame:
    """Type, flags and body of a hyperframe frame; the stream id is resolved when written."""
    raw = frame.serialize()
    return Frame(raw[3], raw[4], stream, raw[9:], None, note)


def header_block(fields: Sequence[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
    """An hpack block that leaves the dynamic table alone (never-indexed literals, static matches)."""
    return hpack.Encoder().encode([NeverIndexedHeaderTuple(n, v) for n, v in fields], huffman=huffman)


def fields_note(fields: Sequence[tuple[bytes, bytes]]) -> str:
    shown = [f"{n.decode('latin-1')}: {bytes_expr(v)}" for n, v in fields[:6]]
    more = f" +{len(fields) - 6} more" if len(fields) > 6 else ""
    return "{" + ", ".join(shown) + more + "}"


def headers_frame(
    fields: Sequence[tuple[bytes, bytes]],
    *,
    end_stream: bool = False,
    end_headers: bool = True,
    stream: str | int = "own",
    pad: int | None = None,
    priority: bool = False,
    huffman: bool = True,
) -> Frame:
    flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
    if pad is not None:
        flags.append("PADDED")
    if priority:
        flags.append("PRIORITY")
    block = header_block(fields, huffman)
    frame = hf.HeadersFrame(1, data=block, flags=flags, pad_length=pad or 0, depends_on=0, stream_weight=15)
    return from_hyperframe(frame, stream, fields_note(fields))


def data_frame(data: bytes, *, end_stream: bool = False, stream: str | int = "own", pad: int | None = None) -> Frame:
    flags = (["END_STREAM"] if end_stream else []) + (["PADDED"] if pad is not None else [])
    return from_hyperframe(hf.DataFrame(1, data=data, flags=flags, pad_length=pad or 0), stream)


def settings_frame(settings: dict[int, int], stream: str | int = "zero") -> Frame:
    note = "{" + ", ".join(f"{SETTING_NAMES.get(k, hex(k))}={v}" for k, v in settings.items()) + "}"
    return from_hyperframe(hf.SettingsFrame(0, settings=settings), stream, note)


def window_update(increment: int, stream: str | int = "zero") -> Frame:
    return Frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment & 0xFFFFFFFF), None, f"+{increment}")


def raw_frame(kind: int, flags: int, sid: int, body: bytes) -> bytes:
    return struct.pack(">I", len(body))[1:] + bytes((kind, flags)) + struct.pack(">I", sid) + body


@dataclass(frozen=True, slots=True)
class SelfPriority(Frame):
    """A PRIORITY frame whose dependency is its own stream (known only when written)."""

    def encode(self, own: int) -> bytes:
        return raw_frame(PRIORITY, 0, own, struct.pack(">IB", own, 15))


@dataclass(frozen=True, slots=True)
class RawBytes(Frame):
    """Not a frame: bytes written as they are (garbage, an HTTP/1.1 answer)."""

    def encode(self, own: int) -> bytes:
        return self.body

    @property
    def size(self) -> int:
        return len(self.body)

    def __repr__(self) -> str:
        return f"<raw {bytes_expr(self.body)}>"


SETTING_NAMES = {
    1: "HEADER_TABLE_SIZE",
    2: "ENABLE_PUSH",
    3: "MAX_CONCURRENT_STREAMS",
    4: "INITIAL_WINDOW_SIZE",
    5: "MAX_FRAME_SIZE",
    6: "MAX_HEADER_LIST_SIZE",
    8: "ENABLE_CONNECT_PROTOCOL",
}


# -- what the peer writes ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one request stream: frames, cut at ``cuts``, then an end.

    ``truncate`` writes only that many bytes of the frames; ``flips`` XORs bytes
    of the wire.  ``expect`` is (status, body) for a clean response, None otherwise.
    """

    frames: tuple[Frame, ...]
    cuts: tuple[int, ...] = ()
    end: str = "keep"  # keep, close, eof (half-close), abort (reset)
    truncate: int | None = None
    flips: tuple[tuple[int, int], ...] = ()
    expect: tuple[int, bytes] | None = None

    def wire(self, own: int) -> bytes:
        data = b"".join(frame.encode(own) for frame in self.frames)
        if self.flips:
            mutable = bytearray(data)
            for position, mask in self.flips:
                if mutable:
                    mutable[position % len(mutable)] ^= mask
            data = bytes(mutable)
        return data if self.truncate is None else data[: self.truncate]

    def segments(self, own: int) -> list[bytes]:
        data = self.wire(own)
        bounds = [0, *sorted(c for c in set(self.cuts) if 0 < c < len(data)), len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    def __repr__(self) -> str:
        frames = ",\n    ".join(repr(frame) for frame in self.frames)
        extra = f", truncate={self.truncate}" if self.truncate is not None else ""
        extra += f", flips={self.flips}" if self.flips else ""
        if self.expect is not None:
            extra += f", expect=({self.expect[0]}, {bytes_expr(self.expect[1])})"
        return f"Reply([\n    {frames}], cuts={self.cuts}, end={self.end!r}{extra})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(frozen=True, slots=True)
class Preface:
    """What the peer writes first on every connection, and how it treats the client's frames.

    ack_settings / ack_ping: answer the client's SETTINGS / PING.  grant: credit for
    request bodies: ``echo`` returns what each DATA frame used, ``big`` gives 1 MiB
    per request up front, ``none`` nothing.
    """

    frames: tuple[Frame, ...]
    raw: bytes = b""  # written after the frames (garbage, an HTTP/1.1 answer)
    ack_settings: bool = True
    ack_ping: bool = True
    grant: str = "echo"
    clean: bool = True

    def wire(self) -> bytes:
        return b"".join(frame.encode(0) for frame in self.frames) + self.raw

    def __repr__(self) -> str:
        return (
            f"Preface({list(self.frames)!r}, raw={bytes_expr(self.raw)}, ack_settings={self.ack_settings}, "
            f"ack_ping={self.ack_ping}, grant={self.grant!r}, clean={self.clean})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


# -- strategies: the server's SETTINGS -----------------------------------------------------------
VALID_SETTING_VALUES: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((4096, 3), (0, 1), (2**32 - 1, 1)),
    2: ((0, 1),),
    3: ((100, 6), (1, 2), (2, 1), (0, 1), (2**32 - 1, 1)),
    4: ((65535, 3), (0, 1), (1, 1), (2**31 - 1, 2), (16384, 1)),
    5: ((16384, 3), (2**24 - 1, 1), (16385, 1)),
    6: ((2**32 - 1, 2), (0, 1), (100, 1)),
    8: ((0, 1), (1, 1)),
    0x4242: ((7, 1),),  # unknown settings must be ignored
}
INVALID_SETTING_VALUES: dict[int, tuple[int, ...]] = {
    2: (1, 2, 2**32 - 1),  # a server must not enable push
    4: (2**31, 2**32 - 1),
    5: (0, 16383, 2**24),
    8: (2,),
}


@st.composite
def settings_values(draw: st.DrawFn, valid: bool = True) -> dict[int, int]:
    keys = draw(st.lists(st.sampled_from(sorted(VALID_SETTING_VALUES)), max_size=4, unique=True))
    values = {key: draw(weighted(*VALID_SETTING_VALUES[key])) for key in keys}
    if not valid:
        key = draw(st.sampled_from(sorted(INVALID_SETTING_VALUES)))
        values[key] = draw(st.sampled_from(INVALID_SETTING_VALUES[key]))
    return values


@st.composite
def prefaces(draw: st.DrawFn) -> Preface:
    ack_settings = draw(weighted((True, 7), (False, 1)))
    ack_ping = draw(weighted((True, 7), (False, 1)))
    grant = draw(weighted(("echo", 5), ("big", 2), ("none", 1)))
    kind = draw(weighted(("settings", 12), ("invalid-settings", 2), ("other-first", 1), ("silent", 1), ("garbage", 1)))
    frames: list[Frame] = []
    raw = b""
    if kind == "settings":
        frames.append(settings_frame(draw(settings_values())))
        if draw(weighted((False, 4), (True, 1))):
            frames.append(window_update(draw(weighted((1 << 20, 2), (2**31 - 65536, 1))), "zero"))
        if draw(weighted((False, 4), (True, 1))):
            frames.append(from_hyperframe(hf.SettingsFrame(0, flags=["ACK"]), "zero"))
    elif kind == "invalid-settings":
        variant = draw(st.sampled_from(("value", "length", "stream", "ack-payload")))
        if variant == "value":
            frames.append(settings_frame(draw(settings_values(valid=False))))
        elif variant == "length":
            frames.append(Frame(SETTINGS, 0, "zero", b"\x00\x04\x00\x00\xff", None, "5-byte body"))
        elif variant == "stream":
            frames.append(settings_frame({3: 100}, stream=1))
        else:
            frames.append(Frame(SETTINGS, ACK, "zero", b"\x00\x03\x00\x00\x00\x01", None, "ACK with a body"))
    elif kind == "other-first":
        frames.append(
            draw(
                st.sampled_from(
                    (
                        Frame(PING, 0, "zero", b"\x00" * 8),
                        headers_frame([(b":status", b"200")], end_stream=True, stream=1),
                        data_frame(b"x", stream=1),
                        window_update(100, "zero"),
                    )
                )
            )
        )
    elif kind == "garbage":
        raw = draw(
            mix(
                (st.just(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"), 1),
                (st.just(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"), 1),
                (st.binary(min_size=1, max_size=40), 2),
            )
        )
    return Preface(tuple(frames), raw, ack_settings, ack_ping, grant, clean=kind in ("settings", "silent"))


# -- strategies: one response ------------------------------------------------------------------
DEFECT_WEIGHTS = {
    "end": 3,
    "control": 3,
    "status": 2,
    "field": 2,
    "content-length": 2,
    "continuation": 2,
    "data-stream": 2,
    "window": 2,
    "hpack": 1,
    "pseudo": 1,
    "many-fields": 1,
    "long-field": 1,
    "informational": 1,
    "padding": 1,
    "frame-size": 1,
    "trailers": 1,
}
DEFECTS = weighted(*DEFECT_WEIGHTS.items())

BAD_FIELDS = (
    (b"Content-Type", b"text/plain"),
    (b"X-Upper", b"1"),
    (b"connection", b"close"),
    (b"keep-alive", b"timeout=5"),
    (b"transfer-encoding", b"chunked"),
    (b"upgrade", b"h2c"),
    (b"proxy-connection", b"keep-alive"),
    (b"te", b"gzip"),
    (b"", b"empty-name"),
    (b"bad name", b"v"),
    (b"bad:name", b"v"),
    (b"x-crlf", b"a\r\nb"),
    (b"x-nul", b"a\x00b"),
    (b"x-space", b" padded "),
    (b"x-\xff", b"\xff"),
)
BAD_PSEUDO = ((b":path", b"/"), (b":method", b"GET"), (b":foo", b"bar"), (b":authority", b"x"), (b":scheme", b"http"))
BAD_STATUS = (b"", b"abc", b"20", b"2000", b"099", b"-20", b"200 ", b" 200", b"0x1f", b"\xff\xff\xff", b"1e3")
BAD_HPACK = (
    b"\xbe",  # index 62: the dynamic table is empty
    b"\x80",  # index 0
    b"\xff\xff\xff\xff\xff\x0f",  # an index far beyond any table
    b"\x3f\xe1\xff\x03",  # table size update above the client's limit
    b"\x7f",  # truncated integer
    b"\x00\x81\xff",  # a huffman literal with a bad padding
    b"\x40\x01a\x01b\x20",  # a table size update after a field
)
CLEAN_STATUS = weighted((200, 10), (404, 1), (500, 1), (201, 1), (299, 1), (204, 1), (304, 1))
ERROR_CODES = weighted((0, 2), (1, 1), (2, 1), (7, 2), (8, 2), (0xB, 1), (0xD, 1), (0xFFFFFFFF, 1), (0x1234, 1))


@st.composite
def clean_fields(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    pool = [
        (b"content-type", b"text/plain"),
        (b"server", b"fuzz"),
        (b"x-fuzz", b"1"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"cache-control", b"no-cache"),
        (b"date", b"Mon, 01 Jan 2026 00:00:00 GMT"),
        (b"x-empty", b""),
    ]
    return draw(st.lists(st.sampled_from(pool), max_size=4))


@st.composite
def bodies(draw: st.DrawFn, cap: int) -> bytes:
    size = draw(weighted((0, 2), (-1, 6), (1000, 1), (20000, 1)))
    if size < 0:
        return draw(st.binary(min_size=1, max_size=64))
    size = min(size, cap)
    return bytes((i * 7) & 0xFF for i in range(size)) if size else b""


def split(data: bytes, cuts: Sequence[int], largest: int) -> list[bytes]:
    """``data`` cut at ``cuts`` and into pieces of at most ``largest``."""
    bounds = sorted({0, len(data), *(c for c in cuts if 0 < c < len(data))})
    pieces: list[bytes] = []
    for a, b in itertools.pairwise(bounds):
        pieces.extend(data[i : min(i + largest, b)] for i in range(a, b, largest))
    return pieces


@st.composite
def control_frames(draw: st.DrawFn) -> Frame:
    """Frames that are not part of a response: hostile, odd or merely unexpected."""
    kind = draw(
        st.sampled_from(
            (
                "rst",
                "rst-bad",
                "goaway",
                "goaway-bad",
                "push",
                "wu-zero",
                "wu-overflow",
                "wu-bad",
                "settings",
                "settings-bad",
                "ping",
                "ping-bad",
                "priority-self",
                "priority-bad",
                "unknown",
                "altsvc",
                "max-streams-0",
            )
        )
    )
    if kind == "rst":
        code = draw(ERROR_CODES)
        return from_hyperframe(
            hf.RstStreamFrame(1, error_code=code), draw(weighted(("own", 4), ("next", 1))), f"code={code}"
        )
    if kind == "rst-bad":
        return draw(
            st.sampled_from(
                (
                    Frame(RST_STREAM, 0, "zero", b"\x00\x00\x00\x08"),
                    Frame(RST_STREAM, 0, "own", b"\x00\x00\x08"),
                    Frame(RST_STREAM, 0, "even", b"\x00\x00\x00\x08"),
                )
            )
        )
    if kind in ("goaway", "goaway-bad"):
        last = draw(st.sampled_from((0, 1, 3, MAX_STREAM_ID, draw(st.integers(0, MAX_STREAM_ID)))))
        code = draw(ERROR_CODES)
        debug = draw(weighted((b"", 3), (b"fuzz", 1)))
        frame = from_hyperframe(
            hf.GoAwayFrame(0, last_stream_id=last, error_code=code, additional_data=debug),
            "zero" if kind == "goaway" else "own",
            f"last={last} code={code}",
        )
        if kind == "goaway-bad" and draw(st.booleans()):
            frame = replace(frame, stream="zero", body=frame.body[:7], note="7-byte body")
        return frame
    if kind == "push":
        block = header_block([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/p")])
        return from_hyperframe(
            hf.PushPromiseFrame(1, promised_stream_id=2, data=block, flags=["END_HEADERS"]), "own", "promise 2: GET /p"
        )
    if kind == "wu-zero":
        return window_update(0, draw(st.sampled_from(("zero", "own"))))
    if kind == "wu-overflow":
        return window_update(MAX_STREAM_ID, draw(st.sampled_from(("zero", "own"))))
    if kind == "wu-bad":
        return draw(
            st.sampled_from(
                (
                    Frame(WINDOW_UPDATE, 0, "zero", b"\x00\x00\x01", None, "3-byte body"),
                    Frame(WINDOW_UPDATE, 0, "zero", b"\x80\x00\x00\x01", None, "reserved bit set"),
                    Frame(WINDOW_UPDATE, 0, "even", b"\x00\x00\x01\x00", None, "idle stream"),
                )
            )
        )
    if kind == "settings":
        return settings_frame(draw(settings_values()))
    if kind == "settings-bad":
        return draw(
            st.sampled_from(
                (
                    settings_frame(draw(settings_values(valid=False))),
                    Frame(SETTINGS, 0, "own", b"", None, "on a stream"),
                    Frame(SETTINGS, ACK, "zero", b"\x00\x01\x00\x00\x00\x00", None, "ACK with a body"),
                    Frame(SETTINGS, 0, "zero", b"\x00\x01\x00", None, "3-byte body"),
                )
            )
        )
    if kind == "ping":
        return Frame(PING, draw(st.sampled_from((0, ACK))), "zero", draw(st.binary(min_size=8, max_size=8)))
    if kind == "ping-bad":
        return draw(
            st.sampled_from(
                (
                    Frame(PING, 0, "zero", b"\x00" * 7, None, "7-byte body"),
                    Frame(PING, 0, "own", b"\x00" * 8, None, "on a stream"),
                    Frame(PING, 0, "zero", b"\x00" * 9, None, "9-byte body"),
                )
            )
        )
    if kind == "priority-self":
        return SelfPriority(PRIORITY, 0, "own", b"\x00" * 5, None, "depends on itself")
    if kind == "priority-bad":
        return Frame(PRIORITY, 0, "own", b"\x00\x00\x00", None, "3-byte body")
    if kind == "unknown":
        return Frame(
            draw(st.integers(0x0B, 0xFF)),
            draw(st.integers(0, 255)),
            draw(st.sampled_from(("own", "zero", "next"))),
            draw(st.binary(max_size=16)),
        )
    if kind == "altsvc":
        return from_hyperframe(hf.AltSvcFrame(0, origin=b"http://127.0.0.1", field=b'h2=":1"'), "zero")
    return settings_frame({3: 0})


@st.composite
def benign_frames(draw: st.DrawFn) -> Frame:
    """Valid frames that change nothing about the response they sit in."""
    return draw(
        st.sampled_from(
            (
                Frame(PING, 0, "zero", b"fuzzfuzz"),
                from_hyperframe(hf.PriorityFrame(1, depends_on=0, stream_weight=200), "own"),
                Frame(0xF0, 0x3, "own", b"unknown frame"),
                Frame(0x42, 0, "zero", b""),
                window_update(1000, "zero"),
                settings_frame({1: 4096}),
                settings_frame({0x4242: 1}),
            )
        )
    )


@st.composite
def head_block(draw: st.DrawFn, fields: list[tuple[bytes, bytes]], end_stream: bool, defects: set[str]) -> list[Frame]:
    """The HEADERS (+ CONTINUATION) frames carrying ``fields``: a unit nothing may be put into."""
    huffman = draw(st.booleans())
    block = header_block(fields, huffman)
    note = fields_note(fields)
    if "hpack" in defects:
        bad = draw(st.sampled_from((*BAD_HPACK, b"truncate", b"append")))
        if bad == b"truncate":
            block = block[:-1]
        elif bad == b"append":
            block = block + b"\xbe"
        else:
            block = draw(st.sampled_from((bad, block + bad, bad + block)))
        note += " (bad hpack)"
    flag_end = END_STREAM if end_stream else 0
    if "continuation" in defects:
        variant = draw(st.sampled_from(("flood", "interleave", "wrong-stream", "never-ends", "orphan")))
        if variant == "flood":
            count = draw(st.sampled_from((65, 100, 400)))
            frames = [Frame(HEADERS, flag_end, "own", block[:1], None, note + " split for a flood")]
            frames += [Frame(CONTINUATION, 0, "own", b"") for _ in range(count)]
            frames.append(Frame(CONTINUATION, END_HEADERS, "own", block[1:]))
            return frames
        first = Frame(HEADERS, flag_end, "own", block[: len(block) // 2], None, note)
        rest = block[len(block) // 2 :]
        if variant == "interleave":
            between = draw(st.sampled_from((Frame(PING, 0, "zero", b"\x00" * 8), data_frame(b"x"))))
            return [first, between, Frame(CONTINUATION, END_HEADERS, "own", rest)]
        if variant == "wrong-stream":
            return [first, Frame(CONTINUATION, END_HEADERS, draw(st.sampled_from(("zero", "next"))), rest)]
        if variant == "never-ends":
            return [first, Frame(CONTINUATION, 0, "own", rest), data_frame(b"x", end_stream=True)]
        return [Frame(CONTINUATION, END_HEADERS, "own", block, None, note), Frame(HEADERS, flag_end, "own", b"")]
    pieces = draw(weighted((1, 6), (2, 1), (3, 1)))
    if pieces == 1 or len(block) < pieces:
        pad = draw(weighted((None, 6), (0, 1), (17, 1)))
        priority = draw(weighted((False, 6), (True, 1)))
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        if pad is not None:
            flags.append("PADDED")
        if priority:
            flags.append("PRIORITY")
        frame = hf.HeadersFrame(1, data=block, flags=flags, pad_length=pad or 0, depends_on=0, stream_weight=15)
        return [from_hyperframe(frame, "own", note)]
    step = -(-len(block) // pieces)
    chunks = [block[i : i + step] for i in range(0, len(block), step)]
    frames = [Frame(HEADERS, flag_end, "own", chunks[0], None, note)]
    for index, chunk in enumerate(chunks[1:], start=2):
        frames.append(Frame(CONTINUATION, END_HEADERS if index == len(chunks) else 0, "own", chunk))
    return frames


@st.composite
def structured(draw: st.DrawFn, limits: httpstream.Limits) -> tuple[list[Frame], tuple[int, bytes] | None]:
    """A response, clean or with defects; returns its frames and, when clean, (status, body)."""
    defects: set[str] = set()
    if draw(weighted((False, 2), (True, 1))):
        defects = set(draw(st.lists(DEFECTS, min_size=1, max_size=3)))
    units: list[list[Frame]] = []  # frames that must stay together
    # interim responses
    interim_after_final = False
    if "informational" in defects:
        variant = draw(st.sampled_from(("too-many", "end-stream", "101", "after-final")))
        interim_after_final = variant == "after-final"
        if variant == "too-many":
            for _ in range(limits.max_informational_responses + 1):
                units.append([headers_frame([(b":status", b"103"), (b"link", b"</s>")])])
        elif variant == "end-stream":
            units.append([headers_frame([(b":status", b"100")], end_stream=True)])
        elif variant == "101":
            units.append([headers_frame([(b":status", b"101"), (b"upgrade", b"h2c")])])
    else:
        for _ in range(draw(weighted((0, 6), (1, 1), (2, 1)))):
            units.append([headers_frame([(b":status", draw(weighted((b"103", 1), (b"100", 1))))])])
    # the head
    status = draw(CLEAN_STATUS)
    no_body = status in (204, 304)
    body = b"" if no_body else draw(bodies(max(0, min(20000, limits.h2_stream_window // 2))))
    if "window" in defects and not no_body:
        window = min(limits.h2_stream_window, limits.h2_connection_window)
        if window <= 1 << 17:
            body = bytes(window + draw(st.integers(1, 2000)))
    fields = draw(clean_fields())
    if draw(st.booleans()) and not no_body:
        fields.append((b"content-length", str(len(body)).encode()))
    status_fields: list[tuple[bytes, bytes]] = [(b":status", str(status).encode())]
    if "status" in defects:
        variant = draw(st.sampled_from(("missing", "bad", "duplicate", "204-with-body")))
        if variant == "missing":
            status_fields = []
        elif variant == "bad":
            status_fields = [(b":status", draw(st.sampled_from(BAD_STATUS)))]
        elif variant == "duplicate":
            status_fields.append((b":status", b"404"))
        else:
            status_fields = [(b":status", draw(st.sampled_from((b"204", b"304"))))]
            no_body = False
            body = body or b"body of a 204"
    if "pseudo" in defects:
        variant = draw(st.sampled_from(("request", "after")))
        if variant == "request":
            status_fields.append(draw(st.sampled_from(BAD_PSEUDO)))
        else:
            fields, status_fields = fields + status_fields, []
    if "field" in defects:
        fields.insert(draw(st.integers(0, len(fields))), draw(st.sampled_from(BAD_FIELDS)))
    if "content-length" in defects:
        actual = len(body)
        value = draw(
            st.sampled_from(
                (
                    str(actual + 1).encode(),
                    str(max(actual - 1, 0)).encode() if actual else b"5",
                    b"-1",
                    b"abc",
                    b"+5",
                    b" 0",
                    str(2**64).encode(),
                    b"0x10",
                )
            )
        )
        fields = [f for f in fields if f[0] != b"content-length"] + [(b"content-length", value)]
        if draw(weighted((False, 3), (True, 1))):
            fields.append((b"content-length", str(actual).encode()))
    if "many-fields" in defects:
        count = limits.max_header_count + draw(st.sampled_from((-1, 0, 1, 5)))
        fields += [(f"x-f{i}".encode(), b"v") for i in range(max(count - len(fields), 0))]
    if "long-field" in defects:
        room = limits.max_header_bytes - 32 * (len(fields) + 2) - sum(len(n) + len(v) for n, v in fields) - 20
        size = max(1, room + draw(st.sampled_from((-1, 0, 1, 2, 100, 5000))))
        fields.append((b"x-long", b"a" * size))
    head_end = no_body or (not body and draw(weighted((True, 3), (False, 1))))
    trailers: list[tuple[bytes, bytes]] | None = None
    if not head_end and draw(weighted((False, 5), (True, 1))):
        trailers = [(b"x-trailer", b"done"), (b"grpc-status", b"0")]
    if "trailers" in defects and not head_end:
        trailers = [(b"x-trailer", b"done"), draw(st.sampled_from(((b":status", b"200"), (b"X-Upper", b"1"))))]
    if "end" in defects:
        head_end = head_end and draw(st.booleans())
    units.append(draw(head_block(status_fields + fields, head_end, defects)))
    if interim_after_final:
        units.append([headers_frame([(b":status", b"103")])])
    # the body
    if not head_end:
        max_frame = 16384
        cuts = draw(st.lists(st.integers(1, max(len(body) - 1, 1)), max_size=4))
        pieces = split(body, cuts, max_frame) or [b""]
        end_on_data = trailers is None
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            pad = draw(weighted((None, 8), (0, 1), (10, 1))) if len(piece) < max_frame - 300 else None
            units.append([data_frame(piece, end_stream=last and end_on_data, pad=pad)])
        if trailers is not None:
            units.append([headers_frame(trailers, end_stream=True)])
    if "end" in defects:
        variant = draw(st.sampled_from(("never", "data-after", "trailers-open", "second-head")))
        last_frame = units[-1][-1]
        if variant == "never" and last_frame.flags & END_STREAM and last_frame.type in (DATA, HEADERS):
            units[-1][-1] = replace(last_frame, flags=last_frame.flags & ~END_STREAM)
        elif variant == "data-after":
            units.append([data_frame(b"after the end", end_stream=draw(st.booleans()))])
        elif variant == "trailers-open":
            units.append([headers_frame([(b"x-trailer", b"1")], end_stream=False)])
        else:
            units.append([headers_frame([(b":status", b"200")], end_stream=True)])
    if "data-stream" in defects:
        target = draw(st.sampled_from(("zero", "prev", "next", "even", "max")))
        units.insert(draw(st.integers(0, len(units))), [data_frame(b"wrong stream", stream=target)])
    if "padding" in defects:
        variant = draw(st.sampled_from(("data", "headers", "empty")))
        if variant == "data":
            frame = Frame(DATA, PADDED, "own", bytes((40,)) + b"short", None, "pad length 40 > body")
        elif variant == "headers":
            frame = Frame(HEADERS, PADDED | END_HEADERS, "own", bytes((200,)) + b"\x88", None, "pad length 200 > body")
        else:
            frame = Frame(DATA, PADDED, "own", b"", None, "PADDED without a pad length")
        units.insert(draw(st.integers(0, len(units))), [frame])
    if "frame-size" in defects:
        size = limits.h2_max_frame_size + draw(st.sampled_from((1, 100)))
        units.insert(len(units) - 1 if len(units) > 1 else 0, [data_frame(bytes(size))])
    if "control" in defects:
        for _ in range(draw(st.integers(1, 3))):
            units.insert(draw(st.integers(0, len(units))), [draw(control_frames())])
    elif not defects and draw(weighted((False, 4), (True, 1))):
        for _ in range(draw(st.integers(1, 2))):
            units.insert(draw(st.integers(0, len(units))), [draw(benign_frames())])
    frames = [frame for unit in units for frame in unit]
    expect = None if defects else (status, b"" if status in (204, 304) else body)
    return frames, expect


@st.composite
def arbitrary_frames(draw: st.DrawFn) -> list[Frame]:
    frames = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(
            weighted(
                (DATA, 2),
                (HEADERS, 2),
                (RST_STREAM, 1),
                (SETTINGS, 1),
                (PUSH_PROMISE, 1),
                (PING, 1),
                (GOAWAY, 1),
                (WINDOW_UPDATE, 1),
                (CONTINUATION, 1),
                (PRIORITY, 1),
                (0x0B, 1),
                (0xFF, 1),
            )
        )
        body = draw(st.binary(max_size=24))
        length = draw(weighted((None, 6), (len(body) + 1, 1), (0, 1), (2**24 - 1, 1)))
        frames.append(Frame(kind, draw(st.integers(0, 255)), draw(st.sampled_from(TARGETS)), body, length))
    return frames


@st.composite
def mutated(draw: st.DrawFn, limits: httpstream.Limits) -> list[Frame]:
    frames, _ = draw(structured(limits))
    for _ in range(draw(st.integers(1, 3))):
        if not frames:
            break
        index = draw(st.integers(0, len(frames) - 1))
        frame = frames[index]
        how = draw(st.sampled_from(("drop", "duplicate", "swap", "retarget", "flags", "type", "length")))
        if how == "drop":
            del frames[index]
        elif how == "duplicate":
            frames.insert(index, frame)
        elif how == "swap" and index + 1 < len(frames):
            frames[index], frames[index + 1] = frames[index + 1], frame
        elif how == "retarget":
            frames[index] = replace(frame, stream=draw(st.sampled_from(TARGETS)))
        elif how == "flags":
            frames[index] = replace(frame, flags=frame.flags ^ draw(st.sampled_from((1, 4, 8, 32, 2, 128))))
        elif how == "type":
            frames[index] = replace(frame, type=draw(st.integers(0, 12)))
        elif how == "length":
            delta = draw(st.sampled_from((-1, 1, 7, 2**24 - 1 - len(frame.body))))
            frames[index] = replace(frame, length=max(0, len(frame.body) + delta))
    return frames


@st.composite
def replies(draw: st.DrawFn, limits: httpstream.Limits) -> Reply:
    family = draw(weighted(("structured", 12), ("mutated", 3), ("arbitrary", 2), ("garbage", 1)))
    expect = None
    flips: tuple[tuple[int, int], ...] = ()
    if family == "structured":
        frames, expect = draw(structured(limits))
    elif family == "mutated":
        frames = draw(mutated(limits))
        if draw(st.booleans()):
            flips = tuple(draw(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), min_size=1, max_size=3)))
    elif family == "arbitrary":
        frames = draw(arbitrary_frames())
    else:
        garbage = draw(
            mix(
                (st.binary(min_size=1, max_size=64), 3),
                (st.just(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 1),
                (st.just(b"\x00\x00\x00"), 1),  # a truncated frame header
            )
        )
        end = draw(weighted(("close", 2), ("keep", 1), ("abort", 1)))
        return Reply((RawBytes(-1, 0, "own", garbage),), (), end)
    size = sum(frame.size for frame in frames)
    split_how = draw(weighted(("cuts", 8), ("whole", 3), ("bytes", 1)))
    if split_how == "bytes" and size <= 300:
        cuts = tuple(range(1, size))
    elif split_how == "cuts":
        cuts = tuple(sorted(set(draw(st.lists(st.integers(1, max(size - 1, 1)), max_size=6)))))
    else:
        cuts = ()
    truncate = None
    if draw(weighted((False, 12), (True, 1))) and size > 1:
        truncate = draw(st.integers(1, size - 1))
        expect = None
    if flips:
        expect = None
    end = draw(weighted(("keep", 6), ("close", 2), ("abort", 1), ("eof", 1)))
    return Reply(tuple(frames), cuts, end, truncate, flips, expect)


# -- the client side (shared with the h3 target) ---------------------------------------------------
READS = ("iter", "aread", "early", "close", "cancel")


@dataclass(frozen=True, slots=True)
class Plan:
    """One request and how its response is read."""

    method: str  # GET, HEAD or POST
    read: str  # one of READS
    count: int = 0  # chunks read before closing ("early"); loop turns before cancelling ("cancel")
    upload: int = 0  # POST body size
    streamed: bool = False  # POST body as an async iterator
    delay: int = 0  # loop turns before starting (concurrent runs)

    def content(self) -> bytes | AsyncIterator[bytes] | None:
        if self.method != "POST":
            return None
        body = bytes(i & 0xFF for i in range(self.upload)) if self.upload <= 256 else b"u" * self.upload
        return _chunks(body) if self.streamed else body


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 16384):
        yield body[start : start + 16384]
        await asyncio.sleep(0)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    method = draw(weighted(("GET", 8), ("POST", 3), ("HEAD", 1)))
    upload = draw(weighted((16, 3), (70_000, 2), (0, 1), (300_000, 1))) if method == "POST" else 0
    return Plan(
        method,
        draw(weighted(("iter", 4), ("aread", 3), ("early", 2), ("close", 1), ("cancel", 1))),
        draw(st.integers(1, 6)),
        upload,
        method == "POST" and draw(weighted((False, 3), (True, 1))),
        draw(weighted((0, 4), (1, 1), (5, 1))),
    )


@dataclass(slots=True)
class Record:
    """What the caller saw of one request."""

    path: str
    status: int | None = None
    content_length: int | None = None
    body: bytearray = field(default_factory=bytearray)
    completed: bool = False
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def label(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.error is not None:
            return type(self.error).__name__
        return "complete" if self.completed else "closed-early"


async def read_body(response: httpstream.Response, plan: Plan, record: Record, *, raw_stream: bool) -> None:
    """Read the body as the plan says; the caller closes the response."""
    record.status = response.status_code
    record.content_length = body_length(response)
    if plan.read == "aread":
        record.body += await response.aread()
        record.completed = True
        return
    if plan.read == "close":
        return
    chunks = response.stream if raw_stream else response.aiter_bytes()
    seen = 0
    async for chunk in chunks:
        record.body += chunk
        seen += 1
        if plan.read == "early" and seen >= plan.count:
            break
    else:
        record.completed = True


async def pool_exchange(pool: httpstream.ConnectionPool, url: str, plan: Plan, record: Record) -> None:
    response = None
    try:
        response = await pool.handle_request(httpstream.Request(plan.method, url, content=plan.content()))
        await read_body(response, plan, record, raw_stream=True)
    finally:
        if response is not None:
            await response.aclose()


async def client_exchange(client: httpstream.AsyncClient, url: str, plan: Plan, record: Record) -> None:
    if plan.read in ("iter", "aread"):
        response = await client.request(plan.method, url, content=plan.content())
        record.status = response.status_code
        record.content_length = body_length(response)
        record.body += response.content
        record.completed = True
        return
    async with client.stream(plan.method, url, content=plan.content()) as response:
        await read_body(response, plan, record, raw_stream=False)


Exchange = Callable[[Plan, Record], Awaitable[None]]


async def _request(
    exchange: Exchange, index: int, plan: Plan, pool: httpstream.ConnectionPool, settings: Settings, record: Record
) -> Record:
    """Run one exchange; sort what comes out of it."""
    for _ in range(plan.delay):
        await asyncio.sleep(0)
    try:
        if plan.read == "cancel":
            task = asyncio.ensure_future(exchange(plan, record))
            for _ in range(plan.count):
                await asyncio.sleep(0)
            if not settings.cancel_while_connecting:
                # Told not to cancel while a connection is being opened (a retry may open
                # one late).  The pool has no event for it; poll, turn by turn.
                while pool.stats().connecting and not task.done():  # noqa: ASYNC110
                    await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the safety net, not ours
                record.cancelled = True
        else:
            await exchange(plan, record)
    except httpstream.HTTPStreamError as exc:
        record.error = exc
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        raise Escaped(
            f"request {index + 1} ({plan}): {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}"
        ) from exc
    return record


async def drive(
    requests: Sequence[Plan],
    concurrent: bool,
    exchange: Exchange,
    pool: httpstream.ConnectionPool,
    settings: Settings,
) -> list[Record]:
    """Run the requests, one after the other or all at once; a record per request."""
    records = [Record(path=f"/fuzz/{index}") for index in range(len(requests))]
    if not concurrent:
        for index, plan in enumerate(requests):
            await _request(exchange, index, plan, pool, settings, records[index])
            check_length(index, records[index])
        return records
    tasks = [
        asyncio.ensure_future(_request(exchange, index, plan, pool, settings, records[index]))
        for index, plan in enumerate(requests)
    ]
    try:
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    for index, record in enumerate(records):
        check_length(index, record)
    return records


def check_length(index: int, record: Record) -> None:
    known = record.completed and record.error is None and record.content_length is not None
    if known and len(record.body) != record.content_length:
        raise Mismatch(
            f"request {index + 1}: body read to its end has {len(record.body)} bytes, "
            f"but the response's content_length is {record.content_length} (status {record.status})"
        )


async def settle(pool: httpstream.ConnectionPool, when: str, timeout: float = 1.0) -> None:
    """Wait until no connection is in use and no stream is open, or fail with ``Leak``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    turns = 0
    while pool.stats().in_use or pool.stats().streams:
        if loop.time() >= deadline:
            raise Leak(
                f"{when}: the pool still has connections or streams in use: {pool.stats()} slots={pool._slots!r}"
            )
        turns += 1
        await asyncio.sleep(0 if turns < 50 else 0.002)
    not_idle = [slot for slot in pool._slots if slot.state != "idle"]
    if not_idle:
        raise Leak(f"{when}: connections not idle: {not_idle!r}")


async def close_and_check(closer: Callable[[], Awaitable[None]], pool: httpstream.ConnectionPool) -> None:
    """Close the client (or pool) within 2 s; it must leave nothing behind."""
    try:
        async with asyncio.timeout(2.0):
            await closer()
    except TimeoutError:
        raise Hang("closing the pool did not return within 2 s") from None
    except BaseException as exc:
        raise Escaped(f"closing the pool raised:\n{format_exception(exc)}") from exc
    if pool.stats().connections:
        raise Leak(f"pool.aclose() left connections behind: {pool._slots!r}")


def collect_garbage(settings: Settings) -> None:
    """A full collection, so that what this example left in reference cycles is reported on it.

    A connection and its protocol reference each other (callbacks), so what they
    hold (futures with an exception nobody retrieved, unclosed streams) is only
    freed by a full collection; the harness runs one every ``FULL_GC_EVERY``
    examples, which would pin such a report on an unrelated later example.
    """
    if settings.gc_each:
        gc.collect()


# -- the fake peer -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Served:
    connection: int  # accept order, from 0
    reply: int  # index into the loaded replies
    stream_id: int
    method: str
    path: str


class H2Peer:
    """An h2c server that answers request streams with the loaded ``Reply`` scripts, in order."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._preface = Preface((settings_frame({}),))
        self._replies: list[Reply] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.accepted = 0
        self.open_connections = 0
        self.log: list[Served] = []

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> H2Peer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        await self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def load(self, preface: Preface, replies: Sequence[Reply]) -> None:
        self._preface = preface
        self._replies = list(replies)
        self.log = []
        self.accepted = 0

    async def reset(self) -> None:
        """End every connection of the last example (they must not leak into the next)."""
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.open_connections = 0

    async def wait_all_closed(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        turns = 0
        while self.open_connections:
            if loop.time() >= deadline:
                return False
            turns += 1
            await asyncio.sleep(0 if turns < 50 else 0.002)
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        connection = self.accepted
        self.accepted += 1
        self.open_connections += 1
        preface = self._preface
        queue: asyncio.Queue[tuple[int, str, str] | bytes | None] = asyncio.Queue()
        reading = asyncio.ensure_future(self._read(reader, queue, preface))
        try:
            writer.write(preface.wire())
            await writer.drain()
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, bytes):
                    writer.write(item)
                    await writer.drain()
                    continue
                sid, method, path = item
                if len(self.log) >= len(self._replies):
                    break
                number = len(self.log)
                self.log.append(Served(connection, number, sid, method, path))
                reply = self._replies[number]
                for segment in reply.segments(sid):
                    writer.write(segment)
                    await writer.drain()
                    await asyncio.sleep(0)
                if reply.end == "abort":
                    writer.transport.abort()
                    break
                if reply.end == "close":
                    break
                if reply.end == "eof":
                    writer.write_eof()
                    await reading  # until the client closes its side
                    break
        except (OSError, asyncio.CancelledError):
            pass  # the client went away, or reset() ended the example
        finally:
            reading.cancel()
            with contextlib.suppress(BaseException):
                await reading
            self.open_connections -= 1
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._tasks.discard(task)
            self._writers.discard(writer)

    async def _read(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[int, str, str] | bytes | None], preface: Preface
    ) -> None:
        """Read the client's frames: queue its requests and the control replies the preface asks for."""
        decoder = hpack.Decoder()
        seen: set[int] = set()
        block = bytearray()
        block_stream = 0
        try:
            if await reader.readexactly(len(CLIENT_PREFACE)) != CLIENT_PREFACE:
                return
            while True:
                head = await reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags = head[3], head[4]
                sid = int.from_bytes(head[5:9], "big") & MAX_STREAM_ID
                body = await reader.readexactly(length)
                if kind == HEADERS:
                    payload = body
                    if flags & PADDED and payload:
                        payload = payload[1 : len(payload) - payload[0]]
                    if flags & PRIORITY_FLAG:
                        payload = payload[5:]
                    block, block_stream = bytearray(payload), sid
                elif kind == CONTINUATION and sid == block_stream:
                    block += body
                if kind in (HEADERS, CONTINUATION) and flags & END_HEADERS and sid == block_stream:
                    try:
                        fields = dict(decoder.decode(bytes(block), raw=True))
                    except Exception:
                        fields = {}
                    if sid not in seen:
                        seen.add(sid)
                        if preface.grant == "big":
                            queue.put_nowait(
                                raw_frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 1 << 20))
                                + raw_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20))
                            )
                        method = fields.get(b":method", b"?").decode("latin-1")
                        path = fields.get(b":path", b"?").decode("latin-1")
                        queue.put_nowait((sid, method, path))
                elif kind == SETTINGS and not flags & ACK and preface.ack_settings:
                    queue.put_nowait(raw_frame(SETTINGS, ACK, 0, b""))
                elif kind == PING and not flags & ACK and preface.ack_ping:
                    queue.put_nowait(raw_frame(PING, ACK, 0, body))
                elif kind == DATA and length and preface.grant == "echo":
                    increment = struct.pack(">I", length)
                    queue.put_nowait(
                        raw_frame(WINDOW_UPDATE, 0, sid, increment) + raw_frame(WINDOW_UPDATE, 0, 0, increment)
                    )
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            queue.put_nowait(None)


# -- one example -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Case:
    api: str  # "pool" or "client"
    limits: httpstream.Limits
    concurrent: bool
    requests: tuple[Plan, ...]
    preface: Preface
    replies: tuple[Reply, ...]

    @property
    def clean(self) -> bool:
        return self.preface.clean and all(reply.expect is not None for reply in self.replies)


@st.composite
def limits_strategy(draw: st.DrawFn) -> httpstream.Limits:
    """Often small limits and windows: the limit and flow-control paths are hit with small inputs."""
    return httpstream.Limits(
        max_header_bytes=draw(weighted((64 * 1024, 4), (4096, 1), (512, 1))),
        max_header_count=draw(weighted((256, 4), (8, 1))),
        max_informational_responses=draw(weighted((16, 4), (1, 1))),
        max_concurrent_streams=draw(weighted((100, 4), (1, 1), (2, 1))),
        h2_stream_window=draw(weighted((4 * 1024 * 1024, 3), (65535, 2), (1024, 1))),
        h2_connection_window=draw(weighted((16 * 1024 * 1024, 3), (65535, 1))),
        h2_max_frame_size=draw(weighted((64 * 1024, 3), (16384, 1))),
        max_connections=draw(weighted((100, 4), (1, 1))),
        keepalive_expiry=draw(weighted((5.0, 4), (0.0, 1))),
        h2_ping_after=draw(weighted((10.0, 6), (0.0, 1))),
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    limits = draw(limits_strategy())
    requests = tuple(draw(st.lists(plans(), min_size=1, max_size=4)))
    count = len(requests) + draw(weighted((0, 3), (1, 1)))
    answers = tuple(draw(st.lists(replies(limits), min_size=count, max_size=count)))
    return Case(
        draw(weighted(("pool", 5), ("client", 1))),
        limits,
        draw(weighted((True, 3), (False, 2))),
        requests,
        draw(prefaces()),
        answers,
    )


def _check_clean(case: Case, peer: H2Peer, records: Sequence[Record]) -> None:
    """A clean exchange: a body read to its end is exactly the body sent, under the status sent."""
    if not case.clean:
        return
    for index, record in enumerate(records):
        if not record.completed or record.error is not None:
            continue
        served = [entry for entry in peer.log if entry.path == record.path]
        if len(served) != 1 or served[0].method == "HEAD":
            continue
        expect = case.replies[served[0].reply].expect
        assert expect is not None
        status, body = expect
        if record.status != status or bytes(record.body) != body:
            raise Mismatch(
                f"request {index + 1} (reply {served[0].reply}, stream {served[0].stream_id}): the client "
                f"completed status {record.status} with {len(record.body)} bytes ({bytes_expr(bytes(record.body[:64]))}...); "
                f"the server sent status {status} with {len(body)} bytes ({bytes_expr(body[:64])}...)"
            )


async def run_case(peer: H2Peer, case: Case, settings: Settings) -> list[str]:
    """One example: drive the requests, check, close everything and check nothing leaked."""
    peer.load(case.preface, case.replies)
    timeout = httpstream.Timeout(
        connect=2.0, read=settings.read_timeout, write=settings.read_timeout, pool=settings.read_timeout
    )
    client: httpstream.AsyncClient | None = None
    if case.api == "client":
        client = httpstream.AsyncClient(http1=False, http2=True, limits=case.limits, timeout=timeout)
        transport = client.transport
        assert isinstance(transport, httpstream.ConnectionPool)
        pool = transport
    else:
        pool = httpstream.ConnectionPool(http1=False, http2=True, limits=case.limits, timeout=timeout)
    url = peer.url()

    async def exchange(plan: Plan, record: Record) -> None:
        if client is None:
            await pool_exchange(pool, url.rstrip("/") + record.path, plan, record)
        else:
            await client_exchange(client, url.rstrip("/") + record.path, plan, record)

    failure: FuzzFailure | None = None
    labels: list[str] = []
    try:
        try:
            async with asyncio.timeout(settings.hang_after) as scope:
                records = await drive(case.requests, case.concurrent, exchange, pool, settings)
                labels = [record.label for record in records]
                _check_clean(case, peer, records)
                await settle(pool, f"after every response was closed ({', '.join(labels)})")
        except TimeoutError:
            if not scope.expired():
                raise
            raise Hang(
                f"the example did not finish within {settings.hang_after:g} s; pool: {pool.stats()} "
                f"slots={pool._slots!r}; peer log: {peer.log}"
            ) from None
    except FuzzFailure as exc:
        failure = exc
    try:
        await close_and_check(client.aclose if client is not None else pool.aclose, pool)
        if not await peer.wait_all_closed(0.5):
            gc.collect()
            if not await peer.wait_all_closed(0.5):
                raise Leak(
                    f"after aclose() the peer still has {peer.open_connections} connection(s) open: "
                    "the client dropped a connection without closing its socket"
                )
    except FuzzFailure as exc:
        failure = failure or exc
    finally:
        await peer.reset()
        collect_garbage(settings)
    if failure is not None:
        raise failure
    return labels


def run(settings: Settings) -> CampaignResult:
    """The ``h2`` campaign: ``settings.examples`` cases on one loop and one fake peer."""

    async def start() -> H2Peer:
        return await H2Peer().start()

    async def example(peer: H2Peer, case: Case) -> list[str]:
        return await run_case(peer, case, settings)

    async def stop(peer: H2Peer) -> None:
        await peer.aclose()

    return run_campaign(target="h2", settings=settings, strategy=cases(), start=start, run_example=example, stop=stop)
