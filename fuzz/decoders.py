"""Fuzz target ``decoders``: the content decoders (gzip, deflate, br, zstd, stacked).

Theory of operation
-------------------
One example is a list of content codings (known ones, ``identity``, unknown
ones, odd case and spacing, sometimes more than ``MAX_CONTENT_CODINGS``), an
original body (random, or highly repetitive so one small input chunk expands a
lot), what is done to the encoded body (nothing; cut short; bytes appended;
bytes flipped; replaced by random bytes), where it is cut into chunks, and the
output cap (``max_output_chunk``, often tiny).

The encoder here applies the codings in order with the standard libraries
(gzip, sometimes as several members; zlib or raw deflate; brotli; zstandard,
sometimes as several frames or with a skippable frame).  The rules:

- ``content_decoder()`` and every ``decode()``/``flush()`` piece give bytes or
  ``DecodingError``; anything else is ``Escaped``;
- no piece is longer than the cap (``Mismatch``): the decompression-bomb bound;
- an intact body, however it is cut, decodes to the original exactly;
- a body cut short, or with bytes appended, either raises ``DecodingError`` or
  decodes to a prefix of the original (cut at a member or frame boundary) or to
  something that starts with the original (appended bytes that happen to form a
  valid member);
- with an unknown coding, or only ``identity``, there is no decoder (None): the
  body is handed over as it came.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

import brotli
import zstandard
from hypothesis import strategies as st

import httpstream
from httpstream._codings import MAX_CONTENT_CODINGS, content_decoder

from ._bodies import cut_points, pieces
from ._h1_wire import mix, weighted
from ._harness import CampaignResult, Escaped, Mismatch, Settings, format_exception, run_campaign

__all__ = ["Case", "cases", "check", "run"]

KNOWN = ("gzip", "x-gzip", "deflate", "br", "zstd")


@dataclass(frozen=True, slots=True)
class Case:
    header: tuple[str, ...]  # Content-Encoding field values, as sent
    codings: tuple[str, ...]  # what the encoder applied, in order ("raw-deflate", "gzip-2"... are variants)
    original: bytes
    damage: str  # none, truncate, append, flip, random
    wire: bytes
    cuts: tuple[int, ...]
    cap: int


def encode(data: bytes, coding: str) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(data, mtime=0)
    if coding == "gzip-2":  # two members (RFC 1952 section 2.2)
        half = len(data) // 2
        return gzip.compress(data[:half], mtime=0) + gzip.compress(data[half:], mtime=0)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "raw-deflate":
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()
    if coding == "br":
        return bytes(brotli.compress(data))
    if coding == "zstd":
        return bytes(zstandard.ZstdCompressor().compress(data))
    if coding == "zstd-2":  # two frames, a skippable frame between them (RFC 8878 section 3.1.2)
        half = len(data) // 2
        skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
        compressor = zstandard.ZstdCompressor(write_checksum=True)
        return bytes(compressor.compress(data[:half])) + skippable + bytes(compressor.compress(data[half:]))
    assert coding == "identity"
    return data


LABEL = {"gzip-2": "gzip", "raw-deflate": "deflate", "zstd-2": "zstd"}
variants = weighted(
    ("gzip", 3),
    ("deflate", 2),
    ("br", 2),
    ("zstd", 2),
    ("x-gzip", 1),
    ("gzip-2", 1),
    ("raw-deflate", 1),
    ("zstd-2", 1),
    ("identity", 1),
)
originals = mix(
    (st.binary(max_size=200), 4),
    (st.tuples(st.binary(min_size=1, max_size=8), st.integers(1, 40_000)).map(lambda t: t[0] * t[1]), 2),
    (st.just(b""), 1),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    codings = tuple(draw(st.lists(variants, min_size=1, max_size=3)))
    original = draw(originals)
    wire = original
    for coding in codings:
        wire = encode(wire, coding)
    labels = [LABEL.get(c, c) for c in codings]
    header_kind = draw(weighted(("plain", 8), ("odd", 2), ("unknown", 1), ("many", 1)))
    if header_kind == "odd":  # case, spacing and several field lines
        labels = [f" {label.upper()} " for label in labels]
        header: tuple[str, ...] = tuple(labels)
    elif header_kind == "unknown":
        header = (", ".join([*labels, "compress"]),)
    elif header_kind == "many":
        header = (", ".join(["gzip"] * (MAX_CONTENT_CODINGS + 1)),)
    else:
        header = (", ".join(labels),)
    damage = draw(weighted(("none", 6), ("truncate", 2), ("append", 1), ("flip", 2), ("random", 1)))
    if damage == "truncate" and wire:
        wire = wire[: draw(st.integers(0, len(wire) - 1))]
    elif damage == "append":
        wire += draw(st.binary(min_size=1, max_size=16))
    elif damage == "flip" and wire:
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(wire) - 1))
            wire = wire[:at] + bytes([wire[at] ^ draw(st.integers(1, 255))]) + wire[at + 1 :]
    elif damage == "random":
        wire = draw(st.binary(max_size=300))
    cap = draw(weighted((1024 * 1024, 3), (64 * 1024, 1), (1000, 1), (7, 1), (1, 1)))
    return Case(header, codings, original, damage, wire, draw(cut_points(len(wire))), cap)


def _decode(case: Case) -> tuple[bytes | None, httpstream.DecodingError | None]:
    """The decoded body (None: no decoder), or the DecodingError; checks the cap on every piece."""
    out = bytearray()
    try:
        decoder = content_decoder(case.header, max_output_chunk=case.cap)
        if decoder is None:
            return None, None
        for chunk in pieces(case.wire, case.cuts):
            for piece in decoder.decode(chunk):
                _check_piece(case, piece)
                out += piece
        for piece in decoder.flush():
            _check_piece(case, piece)
            out += piece
    except httpstream.DecodingError as exc:
        return bytes(out), exc
    except Mismatch:
        raise
    except Exception as exc:
        raise Escaped(
            f"content decoding: {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}"
        ) from exc
    return bytes(out), None


def _check_piece(case: Case, piece: bytes) -> None:
    if not isinstance(piece, bytes) or len(piece) > case.cap:
        raise Mismatch(f"a decoded piece of {len(piece)} bytes is over the cap of {case.cap}")


def check(case: Case) -> list[str]:
    decoded, error = _decode(case)
    codings = [c.strip().lower() for value in case.header for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) > MAX_CONTENT_CODINGS:
        if error is None:
            raise Mismatch(f"{len(codings)} stacked codings accepted (the limit is {MAX_CONTENT_CODINGS})")
        return ["too-many-codings"]
    if not codings or any(c not in KNOWN for c in codings):
        if decoded is not None or error is not None:
            raise Mismatch(f"codings {codings!r}: a decoder was made, but the body must be handed over as it came")
        return ["passed-through"]
    assert decoded is not None
    if case.damage == "none":
        if error is not None:
            raise Mismatch(f"an intact {'+'.join(case.codings)} body raised DecodingError: {error}")
        if decoded != case.original:
            raise Mismatch(f"an intact body decoded to {len(decoded)} bytes, not the {len(case.original)} original")
        return ["decoded"]
    if error is not None:
        return ["DecodingError"]
    if case.damage == "truncate" and not case.original.startswith(decoded):
        raise Mismatch(f"a body cut short decoded without error to {decoded[:40]!r}..., not a prefix of the original")
    if case.damage == "append" and not decoded.startswith(case.original):
        raise Mismatch(f"a body with bytes appended decoded without error to {decoded[:40]!r}..., not the original")
    return [f"{case.damage}-accepted"]


def run(settings: Settings) -> CampaignResult:
    async def start() -> None:
        return None

    async def example(env: None, case: Case) -> list[str]:
        return check(case)

    async def stop(env: None) -> None:
        return None

    return run_campaign(
        target="decoders", settings=settings, strategy=cases(), start=start, run_example=example, stop=stop
    )
