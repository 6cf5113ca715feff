"""Fuzz target ``lines``: the line splitter, fed text or body bytes cut anywhere.

Theory of operation
-------------------
One example is a text with every kind of line ending (LF, CRLF, CR, a CR and
LF that the cuts put in different pieces, none at the end), the charset its
body is encoded in (UTF-8, UTF-16 and UTF-32 with and without a BOM, Latin-1,
and labels of codecs that are no text encoding, such as ``rot13``, which must
fall back to UTF-8), sometimes bytes that are
not valid in that charset, the cuts, and a ``max_line_length`` (often tiny).
The reference is ``reference_lines`` (``fuzz/_bodies.py``), a character loop
over the whole text.  The rules:

- ``LineDecoder`` fed the text in pieces, then flushed, gives the reference's
  lines and then its unterminated rest, if not empty;
- ``Response.aiter_lines()`` over a body stream that yields the byte pieces
  (cut inside multi-byte characters too) gives the lines of the whole body
  decoded at once in its charset;
- both raise ``DecodingError`` exactly when a line (or the rest) is longer than
  ``max_line_length``, after handing out a prefix of the reference's lines;
  anything else that escapes is ``Escaped``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

import httpstream
from httpstream._text import LineDecoder

from ._bodies import cut_points, pieces, reference_lines, response_over
from ._h1_wire import mix, weighted
from ._harness import CampaignResult, Escaped, Mismatch, Settings, format_exception, run_campaign

__all__ = ["Case", "cases", "check", "run"]


@dataclass(frozen=True, slots=True)
class Case:
    text: str
    charset: str
    body: bytes  # text in charset, perhaps with bad bytes
    text_cuts: tuple[int, ...]
    body_cuts: tuple[int, ...]
    max_line_length: int


texts = mix(
    (st.text(alphabet=st.sampled_from("ab \r\n\r\n\u00e9\u20ac\U0001f600\x00\u2028"), max_size=40), 6),
    (st.text(max_size=30), 1),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    text = draw(texts)
    # (label, how the body is encoded): a BOM-less UTF-16/32 body, and labels that
    # name no text encoding (the body is then read as UTF-8).
    charset, encoding = draw(
        weighted(
            (("utf-8", "utf-8"), 6),
            (("utf-16", "utf-16"), 1),
            (("utf-16", "utf-16-le"), 1),
            (("utf-32", "utf-32-le"), 1),
            (("latin-1", "latin-1"), 1),
            (("rot13", "utf-8"), 1),
            (("hex", "utf-8"), 1),
            (("no-such-charset", "utf-8"), 1),
        )
    )
    body = text.encode(encoding, "replace")
    if body and draw(weighted((False, 4), (True, 1))):
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(weighted((b"\xff", 1), (b"\xe2\x82", 1), (b"\xd8", 1))) + body[at:]
    return Case(
        text=text,
        charset=charset,
        body=body,
        text_cuts=draw(cut_points(len(text))),
        body_cuts=draw(cut_points(len(body))),
        max_line_length=draw(weighted((1024 * 1024, 4), (8, 1), (2, 1), (0, 1))),
    )


@dataclass(slots=True)
class Got:
    lines: list[str]
    error: httpstream.DecodingError | None = None


def _split_text(case: Case) -> Got:
    decoder = LineDecoder(case.max_line_length)
    got = Got([])
    try:
        for piece in pieces(case.text, case.text_cuts):
            got.lines += decoder.decode(piece)
        got.lines += decoder.flush()
    except httpstream.DecodingError as exc:
        got.error = exc
    except Exception as exc:
        raise Escaped(f"LineDecoder: {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}") from exc
    return got


async def _aiter_lines(case: Case) -> Got:
    response = response_over(
        pieces(case.body, case.body_cuts), [("content-type", f"text/plain; charset={case.charset}")]
    )
    got = Got([])
    try:
        async for line in response.aiter_lines(max_line_length=case.max_line_length):
            got.lines.append(line)
    except httpstream.DecodingError as exc:
        got.error = exc
    except Exception as exc:
        raise Escaped(
            f"Response.aiter_lines: {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}"
        ) from exc
    finally:
        await response.aclose()
    return got


def _compare(what: str, got: Got, text: str, limit: int) -> str:
    lines, rest = reference_lines(text)
    want = lines + ([rest] if rest else [])
    too_long = any(len(line) > limit for line in want)
    if too_long:
        if got.error is None:
            raise Mismatch(f"{what}: no DecodingError, but a line is longer than {limit}: {want!r}")
        if got.lines != want[: len(got.lines)]:
            raise Mismatch(f"{what}: before its DecodingError it gave {got.lines!r}, not a prefix of {want!r}")
        return "DecodingError"
    if got.error is not None:
        raise Mismatch(f"{what}: DecodingError ({got.error}) where the reference reads {want!r}")
    if got.lines != want:
        raise Mismatch(f"{what}: lines {got.lines!r}, the reference reads {want!r}")
    return f"{min(len(want), 3)}{'+' if len(want) > 3 else ''} lines"


async def check(case: Case) -> list[str]:
    labels = [_compare("LineDecoder over the text pieces", _split_text(case), case.text, case.max_line_length)]
    readable = case.charset in ("utf-8", "utf-16", "utf-32", "latin-1")
    decoded = case.body.decode(case.charset if readable else "utf-8", "replace")
    labels.append(
        _compare("Response.aiter_lines over the body pieces", await _aiter_lines(case), decoded, case.max_line_length)
    )
    return labels


def run(settings: Settings) -> CampaignResult:
    async def start() -> None:
        return None

    async def example(env: None, case: Case) -> list[str]:
        return await check(case)

    async def stop(env: None) -> None:
        return None

    return run_campaign(
        target="lines", settings=settings, strategy=cases(), start=start, run_example=example, stop=stop
    )
