"""Shared by the body-parser targets: split points, and a Response whose body arrives in pieces.

``pieces(data, cuts)`` cuts bytes (or text) at the given offsets.
``reference_lines(text)`` is the line splitter the line targets compare with.
``response_over(pieces, headers)`` builds a ``Response`` whose body stream is a
real ``ResponseStream`` over a ``BodyBuffer`` fed those pieces, so
``aiter_bytes``/``aiter_lines``/``aiter_json``/``aiter_sse`` run exactly as they
do on a connection's body, chunk boundaries included.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TypeVar

from hypothesis import strategies as st

import httpstream
from httpstream._streams import BodyBuffer, ResponseStream

from ._h1_wire import weighted

__all__ = ["cut_points", "pieces", "reference_lines", "response_over"]

S = TypeVar("S", str, bytes)


def pieces(data: S, cuts: Sequence[int]) -> list[S]:
    """``data`` cut at ``cuts`` (offsets; out-of-range ones are dropped; "every" cuts everywhere)."""
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@st.composite
def cut_points(draw: st.DrawFn, size: int) -> tuple[int, ...]:
    """Where to cut ``size`` units: nowhere, a few places, or everywhere."""
    how = draw(weighted(("some", 6), ("none", 1), ("every", 2)))
    if how == "none" or size < 2:
        return ()
    if how == "every":
        return tuple(range(1, size))
    return tuple(sorted(set(draw(st.lists(st.integers(1, size - 1), max_size=10)))))


def response_over(chunks: Sequence[bytes], headers: list[tuple[str, str]] | None = None) -> httpstream.Response:
    """A response whose body stream yields ``chunks`` one by one (call in a running loop)."""
    buffer = BodyBuffer()
    for chunk in chunks:
        buffer.feed(chunk)
    buffer.feed_eof()
    stream = ResponseStream(buffer, lambda: None)
    request = httpstream.Request("GET", "http://fuzz.invalid/")
    return httpstream.Response(200, headers=headers, request=request, stream=stream)


def reference_lines(text: str) -> tuple[list[str], str]:
    """Complete lines (ended by CRLF, LF or CR) and the unterminated rest, read char by char."""
    lines: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char in "\r\n":
            lines.append("".join(current))
            current = []
            if char == "\r" and text[index + 1 : index + 2] == "\n":
                index += 1
        else:
            current.append(char)
        index += 1
    return lines, "".join(current)
