"""Fuzz target ``ndjson``: NDJSON bodies, cut anywhere, through ``Response.aiter_json``.

Theory of operation
-------------------
One example is a list of lines (JSON values of any shape, blank lines, lines
that are almost JSON or not at all: ``NaN``, deep nesting, 5000-digit numbers,
truncated values), the line ending after each, whether the body is gzip-encoded
on the wire, where the wire bytes are cut, and a ``max_line_length``.

The reference reads the whole body at once: its lines by ``reference_lines``
(``fuzz/_bodies.py``), blank lines skipped, each other line ``json.loads``-ed;
the first that fails, or the first line longer than the limit, is where a
``DecodingError`` must come.  The rules: ``aiter_json`` yields the reference's
values (compared by ``repr``, so NaN equals NaN), and raises ``DecodingError``
where the reference fails (naming the line number when it is a JSON error) and
nothing else; whatever escapes otherwise is ``Escaped``.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

import httpstream

from ._bodies import cut_points, pieces, reference_lines, response_over
from ._h1_wire import mix, weighted
from ._harness import CampaignResult, Escaped, Mismatch, Settings, format_exception, run_campaign

__all__ = ["Case", "cases", "check", "run"]


@dataclass(frozen=True, slots=True)
class Case:
    body: bytes  # the decoded body
    gzip: bool
    cuts: tuple[int, ...]  # in the wire bytes
    max_line_length: int

    @property
    def wire(self) -> bytes:
        return gzip.compress(self.body, mtime=0) if self.gzip else self.body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
json_lines = st.tuples(json_values, st.booleans()).map(lambda t: json.dumps(t[0], ensure_ascii=t[1]))
odd_lines = mix(
    (weighted(("NaN", 1), ("-Infinity", 1), ("[" * 2000 + "]" * 2000, 1), ("9" * 5000, 1), ('{"a":', 1)), 2),
    (weighted(("", 3), ("  ", 1), ("\t", 1), ("\u00a0", 1), ("\x1c", 1)), 3),
    (st.text(max_size=10).map(lambda t: t.replace("\r", " ").replace("\n", " ")), 2),
)
lines = mix((json_lines, 6), (odd_lines, 2))
eols = weighted(("\n", 6), ("\r\n", 2), ("\r", 1))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    items = draw(st.lists(st.tuples(lines, eols), max_size=8))
    text = "".join(line + eol for line, eol in items)
    if items and draw(weighted((False, 4), (True, 1))):
        text = text[: -len(items[-1][1])]  # no line end after the last line
    body = text.encode("utf-8", "surrogatepass")
    encoded = draw(weighted((False, 4), (True, 1)))
    wire_size = len(gzip.compress(body, mtime=0)) if encoded else len(body)
    return Case(
        body=body,
        gzip=encoded,
        cuts=draw(cut_points(wire_size)),
        max_line_length=draw(weighted((1024 * 1024, 6), (16, 1))),
    )


@dataclass(slots=True)
class Reading:
    values: list[str]  # repr of each value
    error_line: int | None = None  # the line a DecodingError is due at (0: a too-long line)


def reference(case: Case) -> Reading:
    complete, rest = reference_lines(case.body.decode("utf-8", "replace"))
    all_lines = complete + ([rest] if rest else [])
    reading = Reading([])
    if any(len(line) > case.max_line_length for line in all_lines):
        reading.error_line = 0
    for number, line in enumerate(all_lines, 1):
        if not line.strip(" \t\r\n"):  # JSON whitespace only, as aiter_json
            continue
        try:
            value: Any = json.loads(line)
        except (ValueError, RecursionError):
            if reading.error_line is None:
                reading.error_line = number
            return reading
        reading.values.append(repr(value))
    return reading


async def check(case: Case) -> list[str]:
    want = reference(case)
    headers = [("content-type", "application/x-ndjson")] + ([("content-encoding", "gzip")] if case.gzip else [])
    response = response_over(pieces(case.wire, case.cuts), headers)
    got: list[str] = []
    error: httpstream.DecodingError | None = None
    try:
        async for value in response.aiter_json(max_line_length=case.max_line_length):
            got.append(repr(value))
    except httpstream.DecodingError as exc:
        error = exc
    except Exception as exc:
        raise Escaped(
            f"Response.aiter_json: {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}"
        ) from exc
    finally:
        await response.aclose()
    if want.error_line is None:
        if error is not None:
            raise Mismatch(f"DecodingError ({error}) where the reference reads {len(want.values)} values")
        if got != want.values:
            raise Mismatch(f"values {got!r}, the reference reads {want.values!r}")
        return [f"{min(len(got), 3)}{'+' if len(got) > 3 else ''} values"]
    if error is None:
        raise Mismatch(f"no DecodingError, but the reference fails at line {want.error_line} (0: a line too long)")
    if got != want.values[: len(got)]:
        raise Mismatch(f"before its DecodingError it gave {got!r}, not a prefix of {want.values!r}")
    if want.error_line and f"line {want.error_line} " not in str(error) and "longer than" not in str(error):
        raise Mismatch(f"the DecodingError ({error}) does not name line {want.error_line}")
    return ["DecodingError"]


def run(settings: Settings) -> CampaignResult:
    async def start() -> None:
        return None

    async def example(env: None, case: Case) -> list[str]:
        return await check(case)

    async def stop(env: None) -> None:
        return None

    return run_campaign(
        target="ndjson", settings=settings, strategy=cases(), start=start, run_example=example, stop=stop
    )
