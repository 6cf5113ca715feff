"""Incremental body decoders: text and lines (content codings come with the client layer).

Every decoder takes input chunk by chunk and keeps only what it must carry over a
chunk boundary (an incomplete UTF-8 sequence, a partial line), so decoding a body
of any size holds memory bounded by the longest line, which is itself capped.
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
                return codecs.lookup(charset).name
            except LookupError:
                return None
    return None


class TextDecoder:
    """Bytes to str across chunk boundaries; undecodable bytes become U+FFFD."""

    def __init__(self, encoding: str = "utf-8") -> None:
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")

    def decode(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", True)


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

    def decode(self, text: str) -> list[str]:
        if not text:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        parts = _LINE_SPLIT.split(text)
        # A trailing "\r" ended a line; a "\n" opening the next chunk belongs to it.
        self._skip_lf = text[-1] == "\r"
        tail = parts.pop()
        lines: list[str] = []
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
        return lines

    def flush(self) -> list[str]:
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
