"""Fuzz target ``sse``: Server-Sent Events bytes, split anywhere, against a WHATWG reference.

Theory of operation
-------------------
One example is an event stream (lines of ``data``, ``event``, ``id``,
``retry``, comments, unknown and misspelt fields, odd values with NUL, spaces
and colons, every line ending, blank lines; sometimes a BOM, invalid UTF-8 or
bytes that are no event stream at all), the places to cut it, a
``max_event_size`` (often tiny) and a ``last_event_id`` to start from.

``reference()`` below is a second, independent reading of the WHATWG HTML
standard, section 9.2.6 "Interpreting an event stream", written character by
character: decode as UTF-8 (one leading BOM dropped, bad bytes as U+FFFD, an
incomplete sequence at the very end not yet a character),
split lines on CRLF, LF and CR, then the field rules and the dispatch steps,
plus the size limit as ``SSEDecoder`` documents it (no line, and no event's
data, longer than ``max_event_size`` characters).

The rules: ``SSEDecoder`` fed the pieces, ``SSEDecoder`` fed everything at once
and ``Response.aiter_sse()`` over a body stream that yields the pieces all give
the reference's events, last event ID and retry; when the reference says the
limit is broken, all three raise ``DecodingError``, after handing out at most a
prefix of the reference's events.  Any other exception is ``Escaped``.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from hypothesis import strategies as st

import httpstream
from httpstream._sse import MAX_EVENT_SIZE, SSEDecoder

from ._bodies import cut_points, pieces, reference_lines, response_over
from ._h1_wire import mix, weighted
from ._harness import CampaignResult, Escaped, Mismatch, Settings, format_exception, run_campaign

__all__ = ["Case", "Outcome", "cases", "check", "reference", "run"]


@dataclass(frozen=True, slots=True)
class Case:
    data: bytes
    cuts: tuple[int, ...]
    max_event_size: int
    last_event_id: str | None


@dataclass(slots=True)
class Outcome:
    """What one reading of the stream gave."""

    events: list[httpstream.ServerSentEvent]
    last_event_id: str | None = None
    retry: int | None = None
    error: BaseException | None = None


# -- the reference ------------------------------------------------------------------------
def reference(data: bytes, max_size: int, last_event_id: str | None) -> Outcome:
    """WHATWG HTML 9.2.6 over the whole stream at once (see the module docstring)."""
    # An incomplete UTF-8 sequence at the very end is no character yet (the stream
    # could go on): final=False leaves it out.
    text = codecs.utf_8_decode(data, "replace", False)[0]
    if text[:1] == "\ufeff":
        text = text[1:]
    lines, current = reference_lines(text)
    out = Outcome([], last_event_id)
    too_long = httpstream.DecodingError("a line is longer than max_event_size")
    data_buffer: list[str] = []
    data_size = 0
    event_type = ""
    id_buffer = last_event_id
    event_retry: int | None = None
    for line in lines:  # the unterminated last line, if any, is never processed
        if len(line) > max_size:
            out.error = too_long  # the events before it were handed out
            return out
        if line == "":
            out.last_event_id = id_buffer
            if data_buffer:
                out.events.append(
                    httpstream.ServerSentEvent(
                        event=event_type or "message", data="\n".join(data_buffer), id=id_buffer, retry=event_retry
                    )
                )
            data_buffer, data_size, event_type, event_retry = [], 0, "", None
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            colon = line.index(":")
            name, value = line[:colon], line[colon + 1 :]
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            event_type = value
        elif name == "data":
            data_size += len(value) + 1
            if data_size > max_size:
                out.error = httpstream.DecodingError("an event's data is longer than max_event_size")
                return out
            data_buffer.append(value)
        elif name == "id":
            if "\x00" not in value:
                id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            out.retry = event_retry = int(value)
    if len(current) > max_size:
        out.error = too_long
    return out


# -- strategies ---------------------------------------------------------------------------
values = mix(
    (st.text(alphabet=st.sampled_from("ab1 :\u00e9"), max_size=8), 6),
    (st.text(alphabet=st.sampled_from("0123456789"), min_size=1, max_size=4), 2),
    (st.text(alphabet=st.sampled_from("a \x00:\ufeff\u2028\U0001f600"), max_size=6), 2),
    (st.text(max_size=8).map(lambda t: t.replace("\r", "").replace("\n", "")), 1),
)
field_names = weighted(
    ("data", 8), ("event", 2), ("id", 2), ("retry", 2), ("", 1), ("Data", 1), ("dat", 1), ("data ", 1), ("x", 1)
)
separators = weighted((": ", 6), (":", 3), ("", 1), (":  ", 1), ("::", 1))
eols = weighted(("\n", 4), ("\r\n", 2), ("\r", 2))
lines = mix(
    (st.tuples(field_names, separators, values).map("".join), 8),
    (values.map(lambda v: ":" + v), 1),  # a comment
    (st.just(""), 6),  # dispatch
)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    kind = draw(weighted(("lines", 8), ("binary", 1)))
    if kind == "binary":
        return draw(st.binary(max_size=64))
    text = "".join(line + draw(eols) for line in draw(st.lists(lines, max_size=20)))
    if draw(weighted((False, 6), (True, 1))):
        text = text[: draw(st.integers(0, len(text)))]  # the stream stops anywhere
    data = text.encode("utf-8")
    if draw(weighted((False, 5), (True, 1))):
        data = b"\xef\xbb\xbf" + data
    if data and draw(weighted((False, 5), (True, 1))):
        at = draw(st.integers(0, len(data)))
        data = (
            data[:at] + draw(weighted((b"\xff", 1), (b"\xe2\x82", 1), (b"\xc3", 1), (b"\xef\xbb\xbf", 1))) + data[at:]
        )
    return data


@st.composite
def cases(draw: st.DrawFn) -> Case:
    data = draw(streams())
    return Case(
        data=data,
        cuts=draw(cut_points(len(data))),
        max_event_size=draw(weighted((MAX_EVENT_SIZE, 4), (16, 1), (4, 1), (1, 1))),
        last_event_id=draw(weighted((None, 4), ("7", 1), ("", 1))),
    )


# -- the rules ------------------------------------------------------------------------------
def _decode(chunks: list[bytes], case: Case) -> Outcome:
    decoder = SSEDecoder(max_event_size=case.max_event_size, last_event_id=case.last_event_id)
    out = Outcome([])
    try:
        for chunk in chunks:
            out.events += decoder.decode(chunk)
        decoder.end()
    except httpstream.DecodingError as exc:
        out.error = exc
    except Exception as exc:
        raise Escaped(f"SSEDecoder: {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}") from exc
    out.last_event_id, out.retry = decoder.last_event_id, decoder.retry
    return out


async def _aiter_sse(chunks: list[bytes], case: Case) -> Outcome:
    response = response_over(chunks, [("content-type", "text/event-stream")])
    out = Outcome([])
    try:
        async for event in response.aiter_sse(max_event_size=case.max_event_size):
            out.events.append(event)
    except httpstream.DecodingError as exc:
        out.error = exc
    except Exception as exc:
        raise Escaped(
            f"Response.aiter_sse: {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}"
        ) from exc
    finally:
        await response.aclose()
    return out


def _compare(what: str, got: Outcome, want: Outcome, *, state: bool = True) -> None:
    if want.error is not None:
        if got.error is None:
            raise Mismatch(f"{what}: no DecodingError, but the reference says: {want.error}")
        if got.events != want.events[: len(got.events)]:
            raise Mismatch(f"{what}: before its DecodingError it gave {got.events!r}, not a prefix of {want.events!r}")
        return
    if got.error is not None:
        raise Mismatch(f"{what}: DecodingError ({got.error}) where the reference reads {want.events!r}")
    if got.events != want.events:
        raise Mismatch(f"{what}: events {got.events!r}, the reference reads {want.events!r}")
    if state and (got.last_event_id, got.retry) != (want.last_event_id, want.retry):
        raise Mismatch(
            f"{what}: last_event_id={got.last_event_id!r} retry={got.retry!r}, the reference has "
            f"last_event_id={want.last_event_id!r} retry={want.retry!r}"
        )


async def check(case: Case) -> list[str]:
    want = reference(case.data, case.max_event_size, case.last_event_id)
    chunks = pieces(case.data, case.cuts)
    _compare("SSEDecoder fed the pieces", _decode(chunks, case), want)
    _compare("SSEDecoder fed everything at once", _decode([case.data], case), want)
    if case.last_event_id is None:  # aiter_sse always starts without one
        _compare("Response.aiter_sse", await _aiter_sse(chunks, case), want, state=False)
    if want.error is not None:
        return ["DecodingError"]
    return [f"{min(len(want.events), 3)}{'+' if len(want.events) > 3 else ''} events"]


def run(settings: Settings) -> CampaignResult:
    async def start() -> None:
        return None

    async def example(env: None, case: Case) -> list[str]:
        return await check(case)

    async def stop(env: None) -> None:
        return None

    return run_campaign(target="sse", settings=settings, strategy=cases(), start=start, run_example=example, stop=stop)
