"""Content codings (RFC 9110 section 8.4): gzip, deflate, br and zstd, incrementally.

Every decoder takes input chunk by chunk and keeps only its compressor state
across a chunk boundary, so decoding a body of any size holds memory bounded by
its limits.

``content_decoder(values)`` turns the Content-Encoding field values into one
``ContentDecoder`` that undoes them outermost first (the last listed coding was
applied last).  gzip (and ``x-gzip``), deflate (zlib-wrapped or raw), br (the
``brotli`` package, extra ``httpstream[brotli]``) and zstd (``zstandard``, extra
``httpstream[zstd]``) are known; ``identity`` is skipped.  A body whose codings
include one we do not know is handed over as it arrived, undecoded: undoing only
the codings we know would give the caller bytes that match neither the header nor
the content, while the untouched body still matches its Content-Encoding.  (httpx
skips unknown codings and decodes the rest; we prefer all or nothing.)  A known
coding whose package is missing is an error naming the extra to install, and
``accept_encoding()`` advertises only what can be decoded.

Decompression bombs: ``decode()`` returns a lazy iterator whose pieces are never
larger than ``max_output_chunk`` (1 MiB), however far one input chunk expands;
the next piece is computed only when the caller asks for it, and stacked codings
pass pieces through one at a time, so memory stays flat.  How each library is
bounded is told at its decoder.  At most ``MAX_CONTENT_CODINGS`` codings may be
stacked (urllib3 chose the same cap after GHSA-gm62-xv2j-4w53).  Corrupt data and
a compressed stream that stops short at the end of the body are ``DecodingError``.
"""

from __future__ import annotations

import functools
import importlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Protocol

from ._exceptions import DecodingError

__all__ = ["MAX_CONTENT_CODINGS", "MAX_OUTPUT_CHUNK", "ContentDecoder", "accept_encoding", "content_decoder"]

MAX_OUTPUT_CHUNK = 1024 * 1024  # decoded bytes handed out per piece
MAX_CONTENT_CODINGS = 5


@functools.cache
def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def accept_encoding() -> str:
    """The Accept-Encoding value for what this installation can decode."""
    codings = ["gzip", "deflate"]
    if _installed("brotli"):
        codings.append("br")
    if _installed("zstandard"):
        codings.append("zstd")
    return ", ".join(codings)


def _missing(coding: str, package: str, extra: str) -> DecodingError:
    return DecodingError(
        f"the body is {coding}-encoded (Content-Encoding: {coding}) but the {package!r} package "
        f"is not installed: pip install 'httpstream[{extra}]'"
    )


class _Codec(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]: ...

    def flush(self) -> Iterator[bytes]: ...


def _split(data: bytes, cap: int) -> Iterator[bytes]:
    """``data`` in pieces of at most ``cap`` bytes (for libraries whose limit is soft)."""
    if len(data) <= cap:
        yield data
        return
    view = memoryview(data)
    for start in range(0, len(data), cap):
        yield bytes(view[start : start + cap])


class _ZlibDecoder:
    """gzip and deflate through zlib, bounded by ``max_length`` / ``unconsumed_tail``.

    A call returns at most ``cap`` bytes and parks the input it did not reach in
    ``unconsumed_tail``; a call that returned a full ``cap`` may also have output
    still pending inside zlib with no input left, so calls go on until one
    returns less than ``cap`` with no tail.

    gzip bodies may hold several members back to back (RFC 1952 section 2.2);
    each is decoded in turn.  Anything else after the end of the stream is an
    error, as is a stream that has not reached its end when the body does.

    deflate: RFC 9110 section 8.4.1.2 means the zlib format (RFC 1950), but some
    servers send raw deflate (RFC 1951); the first two bytes tell which (a zlib
    header has compression method 8 and a check value divisible by 31), as
    browsers do it.
    """

    def __init__(self, coding: str, cap: int) -> None:
        self._coding = coding
        self._cap = cap
        self._gzip = coding == "gzip"
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS) if self._gzip else None
        self._head = b""  # deflate: the first byte, until the second tells the format
        self._fed = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return iter(())
        self._fed = True
        obj = self._obj
        if obj is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return iter(())
            self._head = b""
            zlib_wrapped = data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and (data[0] << 8 | data[1]) % 31 == 0
            obj = self._obj = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        return self._inflate(obj, data)

    def _inflate(self, obj: zlib._Decompress, data: bytes) -> Iterator[bytes]:
        cap = self._cap
        while True:
            try:
                out = obj.decompress(data, cap)
            except zlib.error as exc:
                raise DecodingError(f"invalid {self._coding} data in the body: {exc}") from exc
            if out:
                yield out
            if obj.eof:
                data = obj.unused_data
                if not data:
                    return
                if not self._gzip:
                    raise DecodingError(f"{len(data)} bytes after the end of the {self._coding} stream")
                obj = self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next gzip member
                continue
            data = obj.unconsumed_tail
            if not data and len(out) < cap:
                return

    def flush(self) -> Iterator[bytes]:
        if self._fed and (self._obj is None or not self._obj.eof):
            raise DecodingError(f"the {self._coding} stream in the body is truncated (it ended before its end marker)")
        return iter(())


class _BrotliDecoder:
    """br through ``brotli.Decompressor.process(data, output_buffer_limit=...)``.

    The limit is soft: the output buffer grows in doubling blocks and stops
    growing once it has reached the limit, so a call can return up to about
    twice the limit.  We ask for half the cap and cut any longer piece.  After a
    call that reached the limit, or while ``can_accept_more_data()`` is false,
    more output is pending and is pulled with empty input.
    """

    def __init__(self, cap: int) -> None:
        try:
            import brotli
        except ImportError as exc:
            raise _missing("br", "brotli", "brotli") from exc
        self._obj = brotli.Decompressor()
        self._errors = brotli.error
        self._cap = cap
        self._limit = max(cap // 2, 1)
        self._fed = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return iter(())
        self._fed = True
        if self._obj.is_finished():
            raise DecodingError(f"{len(data)} bytes after the end of the br stream")
        return self._process(data)

    def _process(self, data: bytes) -> Iterator[bytes]:
        obj, limit = self._obj, self._limit
        while True:
            try:
                out = obj.process(data, output_buffer_limit=limit)
            except self._errors as exc:
                raise DecodingError(f"invalid br data in the body: {exc}") from exc
            if out:
                yield from _split(out, self._cap)
            if len(out) < limit and obj.can_accept_more_data():
                return
            data = b""

    def flush(self) -> Iterator[bytes]:
        if self._fed and not self._obj.is_finished():
            raise DecodingError("the br stream in the body is truncated (it ended before its last meta-block)")
        return iter(())


# zstd frame layout (RFC 8878 section 3.1), walked by _ZstdDecoder.
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # 0x184D2A50 .. 0x184D2A5F
_ZSTD_BLOCK_MAX = 128 * 1024  # Block_Maximum_Size: no block decodes to more (section 3.1.1.2.3)
_ZSTD_WINDOW_MAX = 8 * 1024 * 1024  # RFC 9659 section 3: decoders need not accept more
_ZSTD_DICT_ID_SIZE = (0, 1, 2, 4)
_ZSTD_FCS_SIZE = (0, 2, 4, 8)
# walker states: fixed-size fields are collected, bodies only counted
_MAGIC, _DESCRIPTOR, _SKIP_SIZE, _BLOCK_HEADER = 0, 1, 2, 3  # collected
_HEADER_REST, _BLOCK_BODY, _CHECKSUM, _SKIP_BODY = 4, 5, 6, 7  # counted
_COLLECTED = (_MAGIC, _DESCRIPTOR, _SKIP_SIZE, _BLOCK_HEADER)


class _ZstdDecoder:
    """zstd (RFC 8878, RFC 9659) through ``zstandard``, bounded by walking the frames.

    zstandard's ``decompressobj().decompress()`` has no output limit: one call
    returns all its input decodes to.  But the format bounds the output of every
    block: a raw block gives its size, an RLE block the size in its header from
    one byte of input, a compressed block at most Block_Maximum_Size (128 KiB).
    So a small walker follows the frame structure (frame header, block headers,
    checksums, skippable frames) and cuts the input at block boundaries into
    pieces whose blocks together cannot decode to more than the cap; each piece
    is one ``decompress()`` call.  A block split over two pieces is counted in
    both, which only makes pieces smaller.  The walker also knows whether the body
    ended between frames, which zstandard does not tell when reading across
    frames: ending anywhere else is a truncated stream.  Windows above 8 MiB are
    refused (RFC 9659), so a frame cannot make the decoder allocate more.
    """

    def __init__(self, cap: int) -> None:
        try:
            import zstandard
        except ImportError as exc:
            raise _missing("zstd", "zstandard", "zstd") from exc
        decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_WINDOW_MAX)
        self._obj = decompressor.decompressobj(read_across_frames=True)
        self._errors = zstandard.ZstdError
        self._cap = cap
        self._state = _MAGIC
        self._need = 4  # bytes left in the current field or body
        self._field = bytearray()
        self._cost = 0  # decoded bytes the current block body can produce
        self._last_block = False
        self._checksum = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return iter(())
        return self._walk(data)

    def _walk(self, data: bytes) -> Iterator[bytes]:
        size = len(data)
        pos = start = 0
        budget = self._cap
        charged = False  # the current body's cost is counted in this piece
        while pos < size:
            take = min(self._need, size - pos)
            if self._state in _COLLECTED:
                self._field += data[pos : pos + take]
            elif self._cost and not charged:
                if self._cost > budget and pos > start:
                    yield from self._feed(data[start:pos])
                    start, budget = pos, self._cap
                budget -= self._cost
                charged = True
            pos += take
            self._need -= take
            while self._need == 0:
                self._advance()
                charged = False
        yield from self._feed(data if start == 0 else data[start:])

    def _feed(self, piece: bytes) -> Iterator[bytes]:
        try:
            out = self._obj.decompress(piece)
        except self._errors as exc:
            raise DecodingError(f"invalid zstd data in the body: {exc}") from exc
        if out:
            yield from _split(out, self._cap)

    def _advance(self) -> None:
        """The current field or body is complete: move to the next part of the stream."""
        state, field = self._state, bytes(self._field)
        self._field.clear()
        self._cost = 0
        if state == _MAGIC:
            magic = int.from_bytes(field, "little")
            if magic == _ZSTD_MAGIC:
                self._state, self._need = _DESCRIPTOR, 1
            elif magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
                self._state, self._need = _SKIP_SIZE, 4
            else:
                raise DecodingError(f"invalid zstd data in the body: no frame starts with {field.hex()}")
        elif state == _DESCRIPTOR:
            descriptor = field[0]
            single_segment = descriptor >> 5 & 1
            fcs_flag = descriptor >> 6
            self._checksum = bool(descriptor >> 2 & 1)
            rest = (
                (1 - single_segment)  # Window_Descriptor
                + _ZSTD_DICT_ID_SIZE[descriptor & 3]
                + (_ZSTD_FCS_SIZE[fcs_flag] if fcs_flag else single_segment)
            )
            self._state, self._need = (_HEADER_REST, rest) if rest else (_BLOCK_HEADER, 3)
        elif state == _HEADER_REST:
            self._state, self._need = _BLOCK_HEADER, 3
        elif state == _BLOCK_HEADER:
            header = int.from_bytes(field, "little")
            self._last_block = bool(header & 1)
            block_type = header >> 1 & 3
            block_size = header >> 3
            if block_type == 3 or block_size > _ZSTD_BLOCK_MAX:
                raise DecodingError("invalid zstd data in the body: bad block header")
            self._state = _BLOCK_BODY
            if block_type == 1:  # RLE: one byte, repeated block_size times
                self._need, self._cost = 1, block_size
            else:  # raw, or compressed
                self._need = block_size
                self._cost = block_size if block_type == 0 else _ZSTD_BLOCK_MAX
        elif state == _BLOCK_BODY:
            if not self._last_block:
                self._state, self._need = _BLOCK_HEADER, 3
            elif self._checksum:
                self._state, self._need = _CHECKSUM, 4
            else:
                self._state, self._need = _MAGIC, 4
        elif state == _SKIP_SIZE:
            self._state, self._need = _SKIP_BODY, int.from_bytes(field, "little")
        else:  # _CHECKSUM, _SKIP_BODY: the next frame
            self._state, self._need = _MAGIC, 4

    def flush(self) -> Iterator[bytes]:
        if self._state != _MAGIC or self._field:
            raise DecodingError("the zstd stream in the body is truncated (it ended inside a frame)")
        return iter(())


_CODECS: dict[str, Callable[[int], _Codec]] = {
    "gzip": lambda cap: _ZlibDecoder("gzip", cap),
    "x-gzip": lambda cap: _ZlibDecoder("gzip", cap),
    "deflate": lambda cap: _ZlibDecoder("deflate", cap),
    "br": _BrotliDecoder,
    "zstd": _ZstdDecoder,
}


def _pipe(codec: _Codec, pieces: Iterable[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from codec.decode(piece)


class ContentDecoder:
    """Undo a body's content codings, chunk by chunk; see the module docstring.

    ``decode(chunk)`` and, at the end of the body, ``flush()`` return lazy
    iterators of decoded pieces, each at most ``max_output_chunk`` bytes.
    """

    __slots__ = ("_codecs",)

    def __init__(self, codecs: list[_Codec]) -> None:
        self._codecs = codecs

    def decode(self, data: bytes) -> Iterator[bytes]:
        if len(self._codecs) == 1:
            return self._codecs[0].decode(data)
        pieces: Iterator[bytes] = iter((data,))
        for codec in self._codecs:
            pieces = _pipe(codec, pieces)
        return pieces

    def flush(self) -> Iterator[bytes]:
        """The rest of the output; ``DecodingError`` if a compressed stream stopped short."""
        pieces: Iterator[bytes] = iter(())
        for codec in self._codecs:
            # codec.flush() runs only once the pieces flushed from outer codings
            # have gone through codec.decode().
            pieces = chain(_pipe(codec, pieces), _deferred_flush(codec))
        return pieces


def _deferred_flush(codec: _Codec) -> Iterator[bytes]:
    yield from codec.flush()


def content_decoder(values: Iterable[str], *, max_output_chunk: int = MAX_OUTPUT_CHUNK) -> ContentDecoder | None:
    """A decoder for these Content-Encoding field values, or None when there is nothing to undo.

    None also when a coding is unknown: such a body is handed over as it arrived.
    """
    codings = [coding.strip().lower() for value in values for coding in value.split(",")]
    codings = [coding for coding in codings if coding and coding != "identity"]
    if not codings:
        return None
    if len(codings) > MAX_CONTENT_CODINGS:
        raise DecodingError(
            f"the body has {len(codings)} stacked content codings; at most {MAX_CONTENT_CODINGS} are decoded"
        )
    if not all(coding in _CODECS for coding in codings):
        return None
    return ContentDecoder([_CODECS[coding](max_output_chunk) for coding in reversed(codings)])
