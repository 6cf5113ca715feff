"""Fuzz target ``h3``: hostile HTTP/3 frames on request streams against the pool and the client.

Theory of operation
-------------------
The fake peer (``H3Peer``) is an asyncio ``DatagramProtocol`` on a UDP socket on
127.0.0.1, in the campaign's one event loop.  It runs one aioquic
``QuicConnection`` (server side, sans-IO) per client address, with a trustme
certificate made once per campaign (the client gets the CA file as
``verify=``).  aioquic's own ``H3Connection`` does the control side of each
connection (SETTINGS, the QPACK streams) and decodes the client's request heads,
so the peer knows each request's stream id, method and path.  Everything the
peer sends *on a request stream* is hand-built: varint frame headers written
here, header blocks from a ``pylsqpack.Encoder`` with no dynamic table (so every
block stands on its own), and deliberately broken bytes.

Every request stream, in the order the heads arrive, is answered with the next
drawn ``Reply``: optional extra bytes on the server's control, QPACK encoder or
a fresh unidirectional stream; the frames, cut at drawn byte offsets and handed
to QUIC piece by piece with a transmit and a loop turn between pieces; then an
end: FIN, nothing (the stream stays open), RESET_STREAM, STOP_SENDING (then
FIN; or before the frames, while the request body may still be on its way),
or CONNECTION_CLOSE, with a drawn error code.  When the replies run out
the peer closes the connection.  Depending on the example the peer obeys the
client's STOP_SENDING (aioquic resets the stream) or ignores it and keeps
sending, as a hostile server would.

A reply comes from one of four families: structured responses (interim heads,
a head, DATA, trailers, unknown frames; two in three clean, the others with one
to three *defects*: bad or missing :status, bad fields, content-length
mismatches, header sections over ``Limits.max_header_bytes`` once decoded, bad
QPACK, DATA before HEADERS, frame types not allowed on a request stream,
non-minimal, malformed and truncated varints, truncated frames, too many interim
responses); a *huge* HEADERS frame, declared far larger than
``max_header_bytes`` and streamed until the client stops it; arbitrary frames;
raw garbage.

The client side is the ``h2`` target's (``fuzz/h2.py``), through
``ConnectionPool(http3="only", verify=CA)`` or ``AsyncClient(http3="only",
verify=CA)``.  The rules: those of the ``h2`` target (only ``HTTPStreamError``
escapes; content-length; clean bodies exact; nothing in use once responses are
closed; nothing open after ``aclose()``; no hang; nothing only logged), plus:

- a request answered with a huge HEADERS frame fails with ``RemoteProtocolError``
  (when the stream window lets more than ``max_header_bytes`` through; with a
  smaller window flow control stops the server first, and the read timeout
  ends the request), and the client resets the stream (the peer sees
  STOP_SENDING);
- the bytes the client buffers for one request stream (aioquic's HTTP/3 frame
  buffer plus its QUIC reassembly buffer) never exceed ``max_header_bytes +
  h3_stream_window`` (and a little slack), however much a server that ignores
  STOP_SENDING keeps sending;
- no response reaches the caller after more interim (1xx) responses than
  ``Limits.max_informational_responses``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pylsqpack
import trustme
from aioquic.buffer import Buffer
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, StopSendingReceived, StreamReset
from aioquic.quic.packet import QuicPacketType, pull_quic_header
from hypothesis import strategies as st

import httpstream
from httpstream._h3 import HTTP3Connection

from ._h1_wire import mix, weighted
from ._harness import CampaignResult, FuzzFailure, Hang, Leak, Mismatch, Settings, run_campaign
from ._peer import bytes_expr
from .h2 import (
    Plan,
    Record,
    client_exchange,
    close_and_check,
    collect_garbage,
    drive,
    plans,
    pool_exchange,
    settle,
)

__all__ = ["Case", "Extra", "H3Frame", "H3Peer", "Reply", "cases", "run", "run_case", "varint"]

# -- frames ----------------------------------------------------------------------------------
DATA, HEADERS, CANCEL_PUSH, SETTINGS, PUSH_PROMISE, GOAWAY, MAX_PUSH_ID = 0x0, 0x1, 0x3, 0x4, 0x5, 0x7, 0xD
TYPE_NAMES = {
    DATA: "DATA",
    HEADERS: "HEADERS",
    0x2: "PRIORITY(h2)",
    CANCEL_PUSH: "CANCEL_PUSH",
    SETTINGS: "SETTINGS",
    PUSH_PROMISE: "PUSH_PROMISE",
    0x6: "PING(h2)",
    GOAWAY: "GOAWAY",
    0x8: "WINDOW_UPDATE(h2)",
    0x9: "CONTINUATION(h2)",
    MAX_PUSH_ID: "MAX_PUSH_ID",
}
GREASE = (0x21, 0x21 + 0x1F, 0x21 + 0x1F * 1000)  # reserved types: must be ignored
H3_ERRORS = weighted(
    (0x100, 2),  # H3_NO_ERROR
    (0x101, 1),  # H3_GENERAL_PROTOCOL_ERROR
    (0x102, 1),  # H3_INTERNAL_ERROR
    (0x105, 1),  # H3_FRAME_UNEXPECTED
    (0x107, 1),  # H3_EXCESSIVE_LOAD
    (0x10B, 2),  # H3_REQUEST_REJECTED
    (0x10C, 2),  # H3_REQUEST_CANCELLED
    (0x10E, 1),  # H3_MESSAGE_ERROR
    (0x0, 1),
    (0x21, 1),  # a reserved code
    (2**62 - 1, 1),
)
H3_EXCESSIVE_LOAD = 0x107


def varint(value: int, size: int | None = None) -> bytes:
    """QUIC's variable-length integer; ``size`` (1, 2, 4, 8) forces a longer, non-minimal form."""
    if size is None:
        size = 1 if value < 0x40 else 2 if value < 0x4000 else 4 if value < 0x40000000 else 8
    prefix = {1: 0x00, 2: 0x40, 4: 0x80, 8: 0xC0}[size]
    data = bytearray(value.to_bytes(size, "big"))
    data[0] |= prefix
    return bytes(data)


@dataclass(frozen=True, slots=True)
class H3Frame:
    """One frame on a request stream (or, with ``raw``, bytes written as they are)."""

    type: int
    payload: bytes = b""
    length: int | None = None  # the length field, when it lies about the payload
    note: str = ""
    raw: bool = False
    wide: bool = False  # non-minimal varints for the type and the length

    def encode(self) -> bytes:
        if self.raw:
            return self.payload
        length = len(self.payload) if self.length is None else self.length
        size = 8 if self.wide else None
        return varint(self.type, size) + varint(length, size) + self.payload

    @property
    def size(self) -> int:
        return len(self.encode())

    def __repr__(self) -> str:
        if self.raw:
            return f"<raw {bytes_expr(self.payload)}{' ' + self.note if self.note else ''}>"
        parts = [TYPE_NAMES.get(self.type, f"type {self.type:#x}")]
        if self.note:
            parts.append(self.note)
        if not self.note or len(self.payload) <= 24:
            parts.append(bytes_expr(self.payload))
        if self.length is not None:
            parts.append(f"length={self.length}")
        if self.wide:
            parts.append("wide varints")
        return f"<{' '.join(parts)}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def qpack_block(fields: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A QPACK field section that needs no dynamic table (static references and literals)."""
    encoder = pylsqpack.Encoder()
    encoder.apply_settings(max_table_capacity=0, blocked_streams=0)
    _, block = encoder.encode(0, list(fields))
    return bytes(block)


def fields_note(fields: Sequence[tuple[bytes, bytes]]) -> str:
    shown = [f"{n.decode('latin-1')}: {bytes_expr(v)}" for n, v in fields[:6]]
    more = f" +{len(fields) - 6} more" if len(fields) > 6 else ""
    return "{" + ", ".join(shown) + more + "}"


def headers(fields: Sequence[tuple[bytes, bytes]], **kwargs: Any) -> H3Frame:
    return H3Frame(HEADERS, qpack_block(fields), note=fields_note(fields), **kwargs)


def data(payload: bytes, **kwargs: Any) -> H3Frame:
    return H3Frame(DATA, payload, **kwargs)


@dataclass(frozen=True, slots=True)
class Extra:
    """Bytes the peer writes outside the request stream, before a reply's frames.

    where: ``control`` (its control stream), ``encoder`` (its QPACK encoder stream)
    or ``uni`` (a new unidirectional stream; the bytes start with its type).
    """

    where: str
    data: bytes
    note: str = ""

    def __repr__(self) -> str:
        return f"<{self.where}: {self.note or bytes_expr(self.data)}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one request stream.

    end: ``fin``, ``open`` (never ended), ``reset`` (RESET_STREAM), ``stop``
    (STOP_SENDING, then FIN), ``stop-first`` (STOP_SENDING before the frames,
    while an upload may still run; FIN after them) or ``close``
    (CONNECTION_CLOSE), with ``code``.
    ``huge``: the declared size of the huge HEADERS frame this reply streams (0:
    not such a reply).  ``interim``: interim heads before the final one.
    ``expect``: (status, body) for a clean response, None otherwise.
    """

    frames: tuple[H3Frame, ...]
    cuts: tuple[int, ...] = ()
    end: str = "fin"
    code: int = 0x100
    extras: tuple[Extra, ...] = ()
    huge: int = 0
    interim: int = 0
    expect: tuple[int, bytes] | None = None

    def wire(self) -> bytes:
        return b"".join(frame.encode() for frame in self.frames)

    def segments(self) -> list[bytes]:
        data = self.wire()
        bounds = [0, *sorted(c for c in set(self.cuts) if 0 < c < len(data)), len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    def __repr__(self) -> str:
        frames = ",\n    ".join(repr(frame) for frame in self.frames)
        extra = f", extras={list(self.extras)!r}" if self.extras else ""
        extra += f", huge={self.huge}" if self.huge else ""
        extra += f", interim={self.interim}" if self.interim else ""
        if self.expect is not None:
            extra += f", expect=({self.expect[0]}, {bytes_expr(self.expect[1])})"
        return f"Reply([\n    {frames}], cuts={self.cuts}, end={self.end!r}, code={self.code:#x}{extra})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


# -- strategies: one response -------------------------------------------------------------------
DEFECT_WEIGHTS = {
    "end": 3,
    "frame-type": 3,
    "status": 2,
    "field": 2,
    "content-length": 2,
    "order": 2,
    "truncated": 2,
    "qpack": 2,
    "decoded-size": 2,
    "varint": 1,
    "pseudo": 1,
    "many-fields": 1,
    "long-field": 1,
    "informational": 2,
    "trailers": 1,
    "extras": 2,
}
DEFECTS = weighted(*DEFECT_WEIGHTS.items())
BAD_FIELDS = (
    (b"Content-Type", b"text/plain"),
    (b"connection", b"close"),
    (b"transfer-encoding", b"chunked"),
    (b"keep-alive", b"1"),
    (b"upgrade", b"h3"),
    (b"te", b"gzip"),
    (b"bad name", b"v"),
    (b"x-crlf", b"a\r\nb"),
    (b"x-nul", b"a\x00b"),
    (b"x-space", b" padded "),
)
BAD_PSEUDO = ((b":path", b"/"), (b":method", b"GET"), (b":foo", b"bar"), (b":authority", b"x"))
BAD_STATUS = (b"", b"abc", b"20", b"2000", b"099", b"-20", b" 200", b"1e3", b"\xff")
BAD_QPACK = (
    b"\x00\x00\x80",  # a dynamic reference with no dynamic table
    b"\x02\x00\x80",  # required insert count 1: the stream blocks on the encoder stream
    b"\x00\x00\xff\xff\xff\xff\x0f",  # a static index far out of range
    b"\x00",  # a truncated prefix
    b"\x00\x00\x5f",  # a truncated literal
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an overlong integer
)
CLEAN_STATUS = weighted((200, 10), (404, 1), (500, 1), (201, 1), (204, 1), (304, 1))
FORBIDDEN_TYPES = (0x2, CANCEL_PUSH, SETTINGS, 0x6, GOAWAY, 0x8, 0x9, MAX_PUSH_ID)


@st.composite
def clean_fields(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    pool = [
        (b"content-type", b"text/plain"),
        (b"server", b"fuzz"),
        (b"x-fuzz", b"1"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"accept-ranges", b"bytes"),
        (b"x-empty", b""),
    ]
    return draw(st.lists(st.sampled_from(pool), max_size=4))


@st.composite
def bodies(draw: st.DrawFn, cap: int) -> bytes:
    size = draw(weighted((0, 2), (-1, 6), (1000, 1), (30000, 1)))
    if size < 0:
        return draw(st.binary(min_size=1, max_size=64))
    return bytes((i * 7) & 0xFF for i in range(min(size, cap)))


@st.composite
def extras(draw: st.DrawFn, valid: bool) -> Extra:
    """Bytes outside the request stream: harmless ones, or (``valid=False``) connection errors."""
    if valid:
        return draw(
            st.sampled_from(
                (
                    Extra("control", varint(0x21) + varint(3) + b"abc", "a reserved frame"),
                    Extra("uni", varint(0x21) + b"ignore me", "a reserved stream type"),
                    Extra("uni", varint(0x54) + b"\x00", "an unknown stream type"),
                )
            )
        )
    return draw(
        st.sampled_from(
            (
                Extra("control", varint(DATA) + varint(1) + b"x", "DATA on the control stream"),
                Extra("control", varint(HEADERS) + varint(1) + b"x", "HEADERS on the control stream"),
                Extra("control", varint(SETTINGS) + varint(0), "a second SETTINGS"),
                Extra("control", varint(MAX_PUSH_ID) + varint(1) + varint(1), "MAX_PUSH_ID from a server"),
                Extra("control", varint(GOAWAY) + varint(1) + varint(0), "GOAWAY to stream 0"),
                Extra("control", varint(GOAWAY) + varint(1) + varint(2), "GOAWAY with a bad id"),
                Extra("control", varint(0x2) + varint(0), "an HTTP/2 frame type"),
                Extra("encoder", b"\xff\xff\xff\xff", "garbage"),
                Extra("encoder", b"\x3f\xe1\x1f", "capacity above the client's limit"),
                Extra("encoder", b"\xc0\x00", "an insert with no capacity"),
                Extra("uni", varint(0x0) + varint(SETTINGS) + varint(0), "a second control stream"),
                Extra("uni", varint(0x2), "a second encoder stream"),
                Extra("uni", varint(0x1) + varint(0), "a push stream nobody asked for"),
            )
        )
    )


@st.composite
def structured(
    draw: st.DrawFn, limits: httpstream.Limits
) -> tuple[list[H3Frame], tuple[Extra, ...], int, tuple[int, bytes] | None]:
    """A response, clean or with defects: frames, extras, interim count, (status, body) when clean."""
    defects: set[str] = set()
    if draw(weighted((False, 2), (True, 1))):
        defects = set(draw(st.lists(DEFECTS, min_size=1, max_size=3)))
    frames: list[H3Frame] = []
    interim = 0
    if "informational" in defects:
        variant = draw(st.sampled_from(("too-many", "101", "then-end")))
        if variant == "too-many":
            interim = limits.max_informational_responses + draw(st.integers(1, 3))
            frames += [headers([(b":status", b"103"), (b"link", b"</s>")]) for _ in range(interim)]
        elif variant == "101":
            frames.append(headers([(b":status", b"101")]))
        else:  # the stream ends after an interim response
            return [headers([(b":status", b"103")])], (), 1, None
    else:
        interim = draw(weighted((0, 6), (1, 1), (2, 1)))
        frames += [headers([(b":status", draw(weighted((b"103", 1), (b"100", 1))))]) for _ in range(interim)]
    status = draw(CLEAN_STATUS)
    no_body = status in (204, 304)
    body = b"" if no_body else draw(bodies(max(0, min(30000, limits.h3_stream_window // 2))))
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
        if draw(st.booleans()):
            status_fields.append(draw(st.sampled_from(BAD_PSEUDO)))
        else:
            fields, status_fields = fields + status_fields, []
    if "field" in defects:
        fields.insert(draw(st.integers(0, len(fields))), draw(st.sampled_from(BAD_FIELDS)))
    if "content-length" in defects:
        actual = len(body)
        value = draw(st.sampled_from((str(actual + 1).encode(), str(max(actual - 1, 0)).encode(), b"-1", b"abc")))
        fields = [f for f in fields if f[0] != b"content-length"] + [(b"content-length", value)]
    if "many-fields" in defects:
        count = limits.max_header_count + draw(st.sampled_from((-1, 0, 1, 5)))
        fields += [(f"x-f{i}".encode(), b"v") for i in range(max(count - len(fields), 0))]
    if "long-field" in defects:
        room = limits.max_header_bytes - 32 * (len(fields) + 2) - sum(len(n) + len(v) for n, v in fields) - 20
        fields.append((b"x-long", b"a" * max(1, room + draw(st.sampled_from((-1, 0, 1, 100, 5000))))))
    if "decoded-size" in defects:
        # One byte each on the wire (a static table entry), 50 bytes each once decoded.
        count = max(limits.max_header_bytes // draw(st.sampled_from((10, 40))), limits.max_header_count + 1)
        fields += [(b"accept-ranges", b"bytes")] * count
    head = headers(status_fields + fields)
    if "qpack" in defects:
        bad = draw(st.sampled_from((*BAD_QPACK, b"truncate")))
        payload = head.payload[:-1] if bad == b"truncate" else bad
        head = H3Frame(HEADERS, payload, note=head.note + " (bad qpack)")
    frames.append(head)
    pieces: list[bytes] = []
    if body:
        cuts = draw(st.lists(st.integers(1, max(len(body) - 1, 1)), max_size=4))
        bounds = sorted({0, len(body), *(c for c in cuts if 0 < c < len(body))})
        pieces = [body[a:b] for a, b in itertools.pairwise(bounds)]
    for piece in pieces:
        frames.append(data(piece))
    if draw(weighted((False, 6), (True, 1))):
        frames.insert(draw(st.integers(len(frames) - len(pieces), len(frames))), data(b""))
    if "trailers" in defects:
        frames.append(headers([(b"x-trailer", b"1"), draw(st.sampled_from(((b":status", b"200"), (b"X-Up", b"1"))))]))
    elif draw(weighted((False, 5), (True, 1))):
        frames.append(headers([(b"x-trailer", b"done")]))
    if not defects and draw(weighted((False, 3), (True, 1))):
        for _ in range(draw(st.integers(1, 2))):
            grease = H3Frame(draw(st.sampled_from(GREASE)), draw(st.binary(max_size=8)), note="reserved type")
            frames.insert(draw(st.integers(0, len(frames))), grease)
    if "order" in defects:
        variant = draw(st.sampled_from(("data-first", "headers-after-trailers", "data-after-trailers")))
        if variant == "data-first":
            frames.insert(0, data(b"before the head"))
        elif variant == "headers-after-trailers":
            frames += [headers([(b"x-t", b"1")]), headers([(b"x-t", b"2")])]
        else:
            frames += [headers([(b"x-t", b"1")]), data(b"after the trailers")]
    if "frame-type" in defects:
        for _ in range(draw(st.integers(1, 2))):
            kind = draw(st.sampled_from((*FORBIDDEN_TYPES, PUSH_PROMISE, PUSH_PROMISE)))
            if kind == PUSH_PROMISE:
                push = draw(st.sampled_from((0, 8, 9, 2**40)))
                block = qpack_block(
                    [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", b"/p")]
                )
                frame = H3Frame(PUSH_PROMISE, varint(push) + block, note=f"push id {push}")
            else:
                frame = H3Frame(kind, draw(st.binary(max_size=6)))
            frames.insert(draw(st.integers(0, len(frames))), frame)
    if "varint" in defects:
        index = draw(st.integers(0, len(frames) - 1))
        if not frames[index].raw:  # raw bytes have no type or length to widen
            frames[index] = H3Frame(frames[index].type, frames[index].payload, note=frames[index].note, wide=True)
        if draw(st.booleans()):
            frames.append(
                H3Frame(
                    -1,
                    draw(st.sampled_from((b"\x40", b"\x80\x00", b"\xc0\x00\x00", b"\x00\x80"))),
                    note="a truncated varint",
                    raw=True,
                )
            )
    if "truncated" in defects:
        index = draw(st.integers(0, len(frames) - 1))
        frame = frames[index]
        if not frame.raw:  # raw bytes have no length field to lie with
            frames[index] = H3Frame(
                frame.type, frame.payload, len(frame.payload) + draw(st.sampled_from((1, 100, 2**20))), frame.note
            )
            del frames[index + 1 :]
    end_extras: tuple[Extra, ...] = ()
    if "extras" in defects:
        end_extras = tuple(draw(st.lists(extras(valid=False), min_size=1, max_size=2)))
    elif not defects and draw(weighted((False, 5), (True, 1))):
        end_extras = (draw(extras(valid=True)),)
    expect = None if defects else (status, b"" if status in (204, 304) else body)
    return frames, end_extras, interim, expect


@st.composite
def huge_reply(draw: st.DrawFn, limits: httpstream.Limits) -> Reply:
    """A HEADERS frame declared far larger than the limit, sent until the client stops it (and beyond)."""
    sent = 2 * (limits.max_header_bytes + limits.h3_stream_window) + 4096
    declared = draw(st.sampled_from((sent, sent * 4, 2**40)))
    frames = [H3Frame(g, b"x", note="reserved type") for g in draw(st.lists(st.sampled_from(GREASE), max_size=1))]
    frames.append(H3Frame(HEADERS, bytes(sent), declared, f"{sent} of {declared} bytes"))
    pieces = draw(st.integers(1, 4))
    size = sum(frame.size for frame in frames)
    cuts = tuple(size * i // pieces for i in range(1, pieces))
    end = draw(weighted(("open", 3), ("fin", 1)))
    return Reply(tuple(frames), cuts, end, 0x100, (), declared)


@st.composite
def arbitrary_frames(draw: st.DrawFn) -> list[H3Frame]:
    frames = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(
            weighted(
                (DATA, 3), (HEADERS, 3), (PUSH_PROMISE, 1), (SETTINGS, 1), (GOAWAY, 1), (0x21, 1), (0x9, 1), (2**30, 1)
            )
        )
        payload = draw(st.binary(max_size=24))
        length = draw(weighted((None, 6), (len(payload) + 1, 1), (0, 1), (2**62 - 1, 1)))
        frames.append(H3Frame(kind, payload, length))
    return frames


@st.composite
def replies(draw: st.DrawFn, limits: httpstream.Limits) -> Reply:
    family = draw(weighted(("structured", 12), ("huge", 2), ("arbitrary", 2), ("garbage", 1)))
    end_extras: tuple[Extra, ...] = ()
    interim = 0
    expect = None
    if family == "huge":
        return draw(huge_reply(limits))
    if family == "structured":
        frames, end_extras, interim, expect = draw(structured(limits))
    elif family == "arbitrary":
        frames = draw(arbitrary_frames())
    else:
        garbage = draw(mix((st.binary(min_size=1, max_size=64), 3), (st.just(b"HTTP/1.1 200 OK\r\n\r\n"), 1)))
        frames = [H3Frame(-1, garbage, raw=True)]
    size = sum(frame.size for frame in frames)
    split_how = draw(weighted(("cuts", 8), ("whole", 3), ("bytes", 1)))
    if split_how == "bytes" and size <= 200:
        cuts = tuple(range(1, size))
    elif split_how == "cuts":
        cuts = tuple(sorted(set(draw(st.lists(st.integers(1, max(size - 1, 1)), max_size=6)))))
    else:
        cuts = ()
    end = draw(weighted(("fin", 12), ("open", 1), ("reset", 1), ("stop", 1), ("stop-first", 1), ("close", 1)))
    code = draw(H3_ERRORS) if end in ("reset", "stop", "stop-first", "close") else 0x100
    if end in ("open", "reset", "close"):
        expect = None
    return Reply(tuple(frames), cuts, end, code, end_extras, 0, interim, expect)


# -- the fake peer ---------------------------------------------------------------------------
@dataclass(slots=True)
class Served:
    connection: int  # order of the client's connections, from 0
    reply: int  # index into the loaded replies
    stream_id: int
    method: str
    path: str
    stopped: int | None = None  # the code of the client's STOP_SENDING on this stream
    reset: int | None = None  # the code of the client's RESET_STREAM


class _ServerQuic(QuicConnection):
    """aioquic's connection, except that it can ignore STOP_SENDING (a hostile server keeps sending)."""

    obey_stop_sending = True

    def _handle_stop_sending_frame(self, context: Any, frame_type: int, buf: Buffer) -> None:
        if self.obey_stop_sending:
            super()._handle_stop_sending_frame(context, frame_type, buf)
            return
        stream_id = buf.pull_uint_var()
        error_code = buf.pull_uint_var()
        self._assert_stream_can_send(frame_type, stream_id)
        self._events.append(StopSendingReceived(error_code=error_code, stream_id=stream_id))


class _ServerConnection:
    """One client's QUIC connection, server side."""

    def __init__(self, peer: H3Peer, index: int, addr: Any, quic: _ServerQuic) -> None:
        self.peer = peer
        self.index = index
        self.addr = addr
        self.quic = quic
        self.h3: H3Connection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.served: dict[int, Served] = {}
        self.terminated = False

    def receive(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.quic.receive_datagram(data, self.addr, now=loop.time())
        self.process()

    def process(self) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                self.h3 = H3Connection(self.quic)
                continue
            if isinstance(event, ConnectionTerminated):
                self.terminated = True
                continue
            if isinstance(event, StopSendingReceived):
                served = self.served.get(event.stream_id)
                if served is not None and served.stopped is None:
                    served.stopped = event.error_code
            elif isinstance(event, StreamReset):
                served = self.served.get(event.stream_id)
                if served is not None and served.reset is None:
                    served.reset = event.error_code
            if self.h3 is None:
                continue
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, HeadersReceived) and h3_event.stream_id not in self.served:
                    fields = dict(h3_event.headers)
                    self.peer.request(
                        self,
                        h3_event.stream_id,
                        fields.get(b":method", b"?").decode("latin-1"),
                        fields.get(b":path", b"?").decode("latin-1"),
                    )
        self.transmit()

    def transmit(self) -> None:
        if self.peer.transport is None or self.terminated:
            return
        loop = asyncio.get_running_loop()
        for data, addr in self.quic.datagrams_to_send(now=loop.time()):
            self.peer.transport.sendto(data, addr)
        when = self.quic.get_timer()
        if self.timer is not None and (when is None or self.timer.when() != when):
            self.timer.cancel()
            self.timer = None
        if when is not None and self.timer is None:
            self.timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.quic.handle_timer(now=asyncio.get_running_loop().time())
        self.process()

    @property
    def open(self) -> bool:
        """Neither side has closed the connection."""
        return not self.terminated and self.quic._close_event is None

    def forget(self) -> None:
        self.terminated = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class H3Peer(asyncio.DatagramProtocol):
    """A QUIC server that answers request streams with the loaded ``Reply`` scripts, in order."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self._replies: list[Reply] = []
        self._obey_stop_sending = True
        self._connections: dict[Any, _ServerConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._certs = tempfile.mkdtemp(prefix="fuzz-h3-")
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = os.path.join(self._certs, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        self._config = QuicConfiguration(is_client=False, alpn_protocols=["h3"], idle_timeout=60.0)
        with tempfile.NamedTemporaryFile("wb", dir=self._certs, suffix=".pem", delete=False) as chain:
            for blob in cert.cert_chain_pems:
                chain.write(blob.bytes())
            cert.private_key_pem.write_to_path(os.path.join(self._certs, "key.pem"))
        self._config.load_cert_chain(chain.name, os.path.join(self._certs, "key.pem"))
        self.accepted = 0
        self.log: list[Served] = []

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    async def start(self) -> H3Peer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def aclose(self) -> None:
        await self.reset()
        if self.transport is not None:
            self.transport.close()
        shutil.rmtree(self._certs, ignore_errors=True)

    def load(self, replies: Sequence[Reply], obey_stop_sending: bool) -> None:
        self._replies = list(replies)
        self._obey_stop_sending = obey_stop_sending
        self.log = []
        self.accepted = 0

    async def reset(self) -> None:
        """Forget every connection of the last example (it must not leak into the next)."""
        for conn in self._connections.values():
            conn.forget()
        self._connections.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def connection(self, index: int) -> _ServerConnection | None:
        return next((conn for conn in self._connections.values() if conn.index == index), None)

    @property
    def busy(self) -> bool:
        """A reply is still being written."""
        return bool(self._tasks)

    # -- asyncio callbacks --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # CPython's is no DatagramTransport subclass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        conn = self._connections.get(addr)
        if conn is None:
            try:
                header = pull_quic_header(Buffer(data=data), host_cid_length=self._config.connection_id_length)
            except ValueError:
                return
            if header.packet_type != QuicPacketType.INITIAL or len(data) < 1200:
                return  # a late packet of an example that is over
            quic = _ServerQuic(configuration=self._config, original_destination_connection_id=header.destination_cid)
            quic.obey_stop_sending = self._obey_stop_sending
            conn = _ServerConnection(self, self.accepted, addr, quic)
            self.accepted += 1
            self._connections[addr] = conn
        if not conn.terminated:
            conn.receive(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP "port unreachable" from a client socket that is gone

    # -- answering --------------------------------------------------------------------------
    def request(self, conn: _ServerConnection, stream_id: int, method: str, path: str) -> None:
        if len(self.log) >= len(self._replies):
            conn.quic.close(error_code=0x100, reason_phrase="no more replies")
            return
        served = Served(conn.index, len(self.log), stream_id, method, path)
        self.log.append(served)
        conn.served[stream_id] = served
        task = asyncio.ensure_future(self._answer(conn, served, self._replies[served.reply]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, conn: _ServerConnection, served: Served, reply: Reply) -> None:
        quic = conn.quic
        sid = served.stream_id
        try:
            h3 = conn.h3
            for extra in reply.extras:
                if h3 is None:
                    break
                if extra.where == "control":
                    assert h3._local_control_stream_id is not None
                    quic.send_stream_data(h3._local_control_stream_id, extra.data)
                elif extra.where == "encoder":
                    assert h3._local_encoder_stream_id is not None
                    quic.send_stream_data(h3._local_encoder_stream_id, extra.data)
                else:
                    quic.send_stream_data(quic.get_next_available_stream_id(is_unidirectional=True), extra.data)
            if reply.end == "stop-first":  # mid-upload, before the response
                with contextlib.suppress(ValueError):
                    quic.stop_stream(sid, reply.code)
                conn.transmit()
            for segment in reply.segments():
                if conn.terminated:
                    return
                quic.send_stream_data(sid, segment)
                conn.transmit()
                await asyncio.sleep(0)
            if conn.terminated:
                return
            if reply.end in ("fin", "stop-first"):
                quic.send_stream_data(sid, b"", end_stream=True)
            elif reply.end == "reset":
                quic.reset_stream(sid, reply.code)
            elif reply.end == "stop":
                with contextlib.suppress(ValueError):
                    quic.stop_stream(sid, reply.code)
                quic.send_stream_data(sid, b"", end_stream=True)
            elif reply.end == "close":
                quic.close(error_code=reply.code, reason_phrase="fuzz")
            conn.transmit()
        except (ValueError, RuntimeError, AssertionError):
            # The stream was reset (STOP_SENDING obeyed) or discarded; the connection closed.
            conn.transmit()


# -- one example ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Case:
    api: str  # "pool" or "client"
    limits: httpstream.Limits
    concurrent: bool
    requests: tuple[Plan, ...]
    replies: tuple[Reply, ...]
    obey_stop_sending: bool = True

    @property
    def clean(self) -> bool:
        return all(reply.expect is not None for reply in self.replies)


@st.composite
def limits_strategy(draw: st.DrawFn) -> httpstream.Limits:
    """Small limits and windows, mostly: the huge replies stay cheap and the limit paths are hit."""
    return httpstream.Limits(
        max_header_bytes=draw(weighted((16 * 1024, 2), (4096, 3), (1024, 1), (64 * 1024, 1))),
        max_header_count=draw(weighted((256, 4), (8, 1))),
        max_informational_responses=draw(weighted((16, 2), (1, 1), (2, 1))),
        max_concurrent_streams=draw(weighted((100, 4), (1, 1))),
        h3_stream_window=draw(weighted((65536, 3), (16384, 1), (8192, 1), (1024 * 1024, 1))),
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
        answers,
        draw(weighted((True, 2), (False, 1))),
    )


@dataclass(slots=True)
class Seen:
    """The client's HTTP/3 connections met during an example (the pool forgets closed ones).

    ``received[path]`` is what each request stream had received (its QUIC receive
    offset) when the request with that path ended, keyed by the client socket's
    address (which is how the peer tells connections apart) and stream id.
    """

    connections: list[HTTP3Connection] = field(default_factory=list)
    addresses: list[Any] = field(default_factory=list)
    received: dict[str, dict[tuple[Any, int], int]] = field(default_factory=dict)

    def update(self, pool: httpstream.ConnectionPool) -> None:
        for slot in pool._slots:
            if isinstance(slot, HTTP3Connection) and all(slot is not c for c in self.connections):
                sock = slot.protocol.sock
                self.connections.append(slot)
                self.addresses.append(sock.getsockname() if sock is not None else None)

    def snapshot(self, path: str) -> None:
        offsets: dict[tuple[Any, int], int] = {}
        for conn, address in zip(self.connections, self.addresses, strict=True):
            for sid, quic_stream in conn.protocol.quic._streams.items():
                offsets[(address, sid)] = quic_stream.receiver.highest_offset
        self.received[path] = offsets

    def buffered(self) -> dict[tuple[int, int], int]:
        """Bytes the client holds per request stream: aioquic's HTTP/3 frame buffer + QUIC reassembly."""
        held: dict[tuple[int, int], int] = {}
        for index, conn in enumerate(self.connections):
            proto = conn.protocol
            for sid, h3_stream in proto.h3._stream.items():
                if sid % 4 == 0:
                    held[(index, sid)] = held.get((index, sid), 0) + len(h3_stream.buffer)
            for sid, quic_stream in proto.quic._streams.items():
                if sid % 4 == 0:
                    held[(index, sid)] = held.get((index, sid), 0) + len(quic_stream.receiver._buffer)
        return held


async def _quiesce(peer: H3Peer, seen: Seen, limit: float = 0.5) -> None:
    """Let a peer that keeps sending run until the client's buffers stop changing (or ``limit`` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    last: dict[tuple[int, int], int] | None = None
    still = 0
    while loop.time() < deadline and still < 5:
        await asyncio.sleep(0.005)
        now = seen.buffered()
        still = still + 1 if now == last and not peer.busy else 0
        last = now


def _check_buffers(case: Case, seen: Seen) -> None:
    bound = case.limits.max_header_bytes + case.limits.h3_stream_window + 4096
    for (index, sid), held in seen.buffered().items():
        if held > bound:
            raise Mismatch(
                f"the client holds {held} bytes for request stream {sid} of connection {index}, more than "
                f"max_header_bytes + h3_stream_window ({case.limits.max_header_bytes} + "
                f"{case.limits.h3_stream_window}): a server that keeps sending grows the client's memory"
            )


def _check_answers(case: Case, peer: H3Peer, seen: Seen, records: Sequence[Record]) -> None:
    """Huge heads fail with RemoteProtocolError and are reset; interim limit; clean bodies exact."""
    limits = case.limits
    for index, record in enumerate(records):
        served = [entry for entry in peer.log if entry.path == record.path]
        if len(served) != 1:
            continue
        entry = served[0]
        reply = case.replies[entry.reply]
        where = f"request {index + 1} (reply {entry.reply}, stream {entry.stream_id})"
        if reply.huge and not record.cancelled and limits.max_header_bytes + 1024 < limits.h3_stream_window:
            server_conn = peer.connection(entry.connection)
            if not isinstance(record.error, httpstream.RemoteProtocolError):
                # Unless the client had not yet seen more than the limit when the request ended
                # (a read timeout that beat a slow sender), it must have failed the head.
                address = server_conn.addr if server_conn is not None else None
                got = seen.received.get(record.path, {}).get((address, entry.stream_id))
                if got is None or got > limits.max_header_bytes + 64:
                    raise Mismatch(
                        f"{where}: answered with a {reply.huge}-byte HEADERS frame (limit {limits.max_header_bytes}); "
                        f"the client had received {got} bytes of it when the caller got {record.label} "
                        f"({record.error!r}), not a RemoteProtocolError"
                    )
            elif (
                "limit" in str(record.error)
                and server_conn is not None
                and server_conn.open
                and entry.stopped is None
                and entry.reset is None
            ):
                raise Mismatch(f"{where}: the head was over the limit but the client never reset the stream")
        if reply.interim > limits.max_informational_responses and record.status is not None:
            raise Mismatch(
                f"{where}: a {record.status} response reached the caller after {reply.interim} interim responses, "
                f"more than max_informational_responses={limits.max_informational_responses}"
            )
        if (
            case.clean
            and record.completed
            and record.error is None
            and entry.method != "HEAD"
            and reply.expect is not None
        ):
            status, body = reply.expect
            if record.status != status or bytes(record.body) != body:
                raise Mismatch(
                    f"{where}: the client completed status {record.status} with {len(record.body)} bytes "
                    f"({bytes_expr(bytes(record.body[:64]))}...); the server sent status {status} with "
                    f"{len(body)} bytes ({bytes_expr(body[:64])}...)"
                )


async def run_case(peer: H3Peer, case: Case, settings: Settings) -> list[str]:
    """One example: drive the requests, check, close everything and check nothing leaked."""
    peer.load(case.replies, case.obey_stop_sending)
    timeout = httpstream.Timeout(
        connect=2.0, read=settings.read_timeout, write=settings.read_timeout, pool=settings.read_timeout
    )
    client: httpstream.AsyncClient | None = None
    if case.api == "client":
        client = httpstream.AsyncClient(http3="only", verify=peer.ca_file, limits=case.limits, timeout=timeout)
        transport = client.transport
        assert isinstance(transport, httpstream.ConnectionPool)
        pool = transport
    else:
        pool = httpstream.ConnectionPool(http3="only", verify=peer.ca_file, limits=case.limits, timeout=timeout)
    seen = Seen()
    base = peer.url().rstrip("/")

    async def exchange(plan: Plan, record: Record) -> None:
        try:
            if client is None:
                await pool_exchange(pool, base + record.path, plan, record)
            else:
                await client_exchange(client, base + record.path, plan, record)
        finally:
            seen.update(pool)
            seen.snapshot(record.path)

    failure: FuzzFailure | None = None
    labels: list[str] = []
    try:
        try:
            async with asyncio.timeout(settings.hang_after) as scope:
                records = await drive(case.requests, case.concurrent, exchange, pool, settings)
                labels = [record.label for record in records]
                seen.update(pool)
                if any(reply.huge for reply in case.replies):
                    await _quiesce(peer, seen)
                _check_buffers(case, seen)
                _check_answers(case, peer, seen, records)
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
        still_open = [conn for conn in seen.connections if conn.protocol.sock is not None]
        if still_open:
            raise Leak(f"after aclose() the client still has a UDP socket open for {still_open!r}")
    except FuzzFailure as exc:
        failure = failure or exc
    finally:
        await peer.reset()
        collect_garbage(settings)
    if failure is not None:
        raise failure
    return labels


def run(settings: Settings) -> CampaignResult:
    """The ``h3`` campaign: ``settings.examples`` cases on one loop and one fake QUIC server."""

    async def start() -> H3Peer:
        return await H3Peer().start()

    async def example(peer: H3Peer, case: Case) -> list[str]:
        return await run_case(peer, case, settings)

    async def stop(peer: H3Peer) -> None:
        await peer.aclose()

    return run_campaign(target="h3", settings=settings, strategy=cases(), start=start, run_example=example, stop=stop)
