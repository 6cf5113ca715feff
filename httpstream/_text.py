"""Text out of body bytes: the charset, incremental decoding, and line splitting.

Both decoders take input chunk by chunk and keep only what must carry over a
chunk boundary (an incomplete multi-byte sequence, the first bytes while a BOM
is awaited, a partial line), so decoding a body of any size holds memory bounded
by its limits.  ``Response.aiter_text``/``aiter_lines``/``aiter_json`` (NDJSON)
and the SSE decoder (``_sse``) are built on them.
"""

from __future__ import annotations

import codecs
import re

from ._exceptions import DecodingError

__all__ = ["LineDecoder", "TextDecoder", "charset_from_content_type"]

_LINE_SPLIT = re.compile(r"\r\n|\r|\n")


def charset_from_content_type(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type value, if it names a known codec."""
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').strip("'")
            try:
                info = codecs.lookup(charset)
            except LookupError:
                return None
            # Only a text encoding decodes bytes to str: "rot13", "hex", "base64",
            # "zlib"... are codecs too, but their decoders fail on, or are not
            # made for, a body.
            return info.name if getattr(info, "_is_text_encoding", True) else None
    return None


# BOM-sniffing codecs whose incremental decoders refuse a stream without a BOM
# (Python's whole-string decoders do not): the byte order comes from the BOM, and
# without one it is little-endian, as the WHATWG Encoding standard reads the
# "utf-16" label and as bytes.decode() does on common machines.
_BOM_CODECS: dict[str, tuple[tuple[bytes, str], ...]] = {
    "utf-16": ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")),
    "utf-32": ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be")),
}


class TextDecoder:
    """Bytes to str across chunk boundaries; undecodable bytes become U+FFFD.

    A codec that fails in spite of ``errors="replace"`` (``idna``, say, named by
    a charset parameter) raises ``DecodingError``.
    """

    def __init__(self, encoding: str = "utf-8") -> None:
        self._encoding = encoding
        self._boms: tuple[tuple[bytes, str], ...] = _BOM_CODECS.get(codecs.lookup(encoding).name, ())
        self._head = b""  # the first bytes, while a BOM-sniffing codec waits for its BOM
        # (For a BOM-sniffing codec this one only stands in until _sniff picks the real one.)
        self._decoder = codecs.getincrementaldecoder(encoding if not self._boms else "utf-8")(errors="replace")

    def decode(self, data: bytes) -> str:
        if self._boms:
            data = self._sniff(data, final=False)
        try:
            return self._decoder.decode(data)
        except UnicodeError as exc:
            raise DecodingError(f"the body cannot be decoded as {self._encoding}: {exc}") from exc

    def flush(self) -> str:
        data = self._sniff(b"", final=True) if self._boms else b""
        try:
            return self._decoder.decode(data, True)
        except UnicodeError as exc:
            raise DecodingError(f"the body cannot be decoded as {self._encoding}: {exc}") from exc

    def _sniff(self, data: bytes, *, final: bool) -> bytes:
        """Hold the first bytes until they show a BOM or cannot; then pick the byte order."""
        head = self._head + data
        width = len(self._boms[0][0])
        if len(head) < width and not final:
            self._head = head
            return b""
        codec, skip = self._boms[0][1], 0  # no BOM: little-endian
        for bom, name in self._boms:
            if head.startswith(bom):
                codec, skip = name, len(bom)
                break
        self._decoder = codecs.getincrementaldecoder(codec)(errors="replace")
        self._boms = ()
        self._head = b""
        return head[skip:]


class LineDecoder:
    """Split text into lines on ``\\n``, ``\\r\\n`` and ``\\r``, across chunk boundaries.

    A partial line is kept as a list of pieces (joined once, when its end arrives),
    so a long line costs linear, not quadratic, work.  A line longer than
    ``max_line_length`` characters raises ``DecodingError`` instead of growing
    without bound.
    """

    def __init__(self, max_line_length: int = 1024 * 1024) -> None:
        self._max = max_line_length
        self._pieces: list[str] = []
        self._pending = 0
        self._skip_lf = False
        self._error: DecodingError | None = None

    def decode(self, text: str) -> list[str]:
        """The lines completed by ``text``.

        A line over the limit raises, but only after the lines before it were
        returned: they come back now and the error with the next call.
        """
        if self._error is not None:
            raise self._error
        lines: list[str] = []
        try:
            self._split(text, lines)
        except DecodingError as exc:
            if not lines:
                raise
            self._error = exc
        return lines

    def _split(self, text: str, lines: list[str]) -> None:
        if not text:
            return
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return
        parts = _LINE_SPLIT.split(text)
        # A trailing "\r" ended a line; a "\n" opening the next chunk belongs to it.
        self._skip_lf = text[-1] == "\r"
        tail = parts.pop()
        if parts:
            first = parts[0]
            if self._pieces:
                self._check(self._pending + len(first))
                self._pieces.append(first)
                first = "".join(self._pieces)
                self._pieces = []
                self._pending = 0
            else:
                self._check(len(first))
            lines.append(first)
            for line in parts[1:]:
                self._check(len(line))
                lines.append(line)
        if tail:
            self._check(self._pending + len(tail))
            self._pieces.append(tail)
            self._pending += len(tail)

    def flush(self) -> list[str]:
        if self._error is not None:
            raise self._error
        if not self._pieces:
            return []
        line = "".join(self._pieces)
        self._pieces = []
        self._pending = 0
        return [line]

    def _check(self, length: int) -> None:
        if length > self._max:
            raise DecodingError(
                f"line longer than the limit of {self._max} characters "
                "(raise max_line_length if this is expected)"
            )
