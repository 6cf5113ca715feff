"""Hypothesis strategies for HTTP/1.1 response bytes, and a reference parser.

Theory of operation
-------------------
``responses(limits)`` draws the bytes one server writes for one request, from
four families:

- structured responses: optional 1xx responses, a status line, header fields
  and a body (Content-Length, chunked or close-delimited).  Two in three are
  clean; the others carry one to three *defects*, each of which lets one part
  take the classic trouble-makers: a body cut short; wrong, negative, huge, duplicate and
  conflicting Content-Length; odd Transfer-Encoding; malformed chunk sizes,
  extensions, last chunks and trailers; bare LF and bare CR line ends; obs-fold
  lines; lines without a colon; header lines and counts around the client's
  limits; too many or bad 1xx responses; trailing bytes (a second response,
  junk);
- structured responses with byte-level mutations (flip, delete, insert, repeat);
- fully arbitrary bytes;
- arbitrary bytes behind ``HTTP/1.1 `` (gets past the first check at once).

``reference(method, data, eof, max_header_bytes)`` parses what the client should
have seen with a fresh h11 client connection fed everything at once, the most
lenient way to feed it: whatever body the client hands out must be a prefix of
the reference body, and a body the client reports complete must be exactly it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TypeVar

import h11
from hypothesis import strategies as st

__all__ = ["Ref", "mix", "reference", "responses", "weighted"]

T = TypeVar("T")

EOLS = (b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"")


def weighted(*items: tuple[T, int]) -> st.SearchStrategy[T]:
    """``sampled_from`` with repeats as weights; shrinks towards the first item."""
    pool: list[T] = []
    for value, weight in items:
        pool.extend([value] * weight)
    return st.sampled_from(pool)


def mix(*items: tuple[st.SearchStrategy[T], int]) -> st.SearchStrategy[T]:
    """``one_of`` with weights; shrinks towards the first strategy.

    (``one_of`` drops repeated strategies, so repeats cannot serve as weights there.)
    """
    strategies = [strategy for strategy, _ in items]
    index = weighted(*((i, weight) for i, (_, weight) in enumerate(items)))
    return index.flatmap(lambda i: strategies[i])


# -- defects ---------------------------------------------------------------------------
# A structured response is clean unless a defect is drawn for one of its parts; each
# defect only opens the bad alternatives of that one part.  Clean responses come
# first (they shrink best), and a failing example names the defects that matter.
DEFECT_WEIGHTS = {  # body framing matters most: it decides what the caller is handed
    "truncated": 4,
    "content-length": 4,
    "chunk-size": 3,
    "chunk-end": 3,
    "transfer-encoding": 2,
    "tail": 2,
    "trailer": 1,
    "chunk-extension": 1,
    "field": 1,
    "fold": 1,
    "eol": 1,
    "informational": 1,
    "long-field": 1,
    "many-fields": 1,
    "status": 1,
    "reason": 1,
    "version": 1,
}
DEFECTS = tuple(DEFECT_WEIGHTS)
defect_sets = mix(
    (st.just(frozenset[str]()), 2),
    (st.sets(weighted(*DEFECT_WEIGHTS.items()), min_size=1, max_size=3).map(frozenset), 1),
)


class Parts:
    """Draws the parts of one response, bad only where a defect says so."""

    def __init__(self, draw: st.DrawFn, defects: frozenset[str]) -> None:
        self.draw = draw
        self.defects = defects

    def pick(self, defect: str, good: st.SearchStrategy[T], bad: st.SearchStrategy[T]) -> T:
        if defect in self.defects:
            return self.draw(st.one_of(bad, good) if defect in ("eol", "field") else bad)
        return self.draw(good)

    def eol(self) -> bytes:
        return self.pick("eol", st.just(b"\r\n"), st.sampled_from(EOLS))


# -- status line --------------------------------------------------------------------
good_versions = weighted((b"HTTP/1.1", 4), (b"HTTP/1.0", 1))
bad_versions = st.sampled_from(
    [b"HTTP/1.2", b"HTTP/2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/11", b"HTTP/1", b"HTTP /1.1", b"ICY"]
)
good_codes = weighted(
    (b"200", 10),
    (b"204", 2),
    (b"304", 2),
    (b"206", 1),
    (b"301", 1),
    (b"302", 1),
    (b"303", 1),
    (b"307", 1),
    (b"404", 1),
    (b"500", 1),
    (b"599", 1),
)
bad_codes = st.one_of(
    st.integers(0, 1000).map(lambda n: b"%d" % n),
    st.sampled_from(
        [
            b"101",
            b"100",
            b"199",
            b"2000",
            b"20",
            b"",
            b"abc",
            b"-200",
            b"+200",
            b" 200",
            b"2\x0000",
            b"\xd9\xa2\xd9\xa0",
        ]
    ),
)
good_reasons = weighted((b" OK", 6), (b"", 2), (b" ", 1), (b" Not Found", 1), (b" \x80\xff", 1))
bad_reasons = st.one_of(st.binary(max_size=24).map(lambda b: b" " + b), st.sampled_from([b" a\tb", b"\x00", b" a\rb"]))
status_separators = weighted((b" ", 10), (b"  ", 1), (b"\t", 1), (b"", 1))


def status_line(parts: Parts) -> bytes:
    version = parts.pick("version", good_versions, bad_versions)
    separator = parts.pick("version", st.just(b" "), status_separators)
    code = parts.pick("status", good_codes, bad_codes)
    return version + separator + code + parts.pick("reason", good_reasons, bad_reasons) + parts.eol()


# -- header fields ---------------------------------------------------------------------
good_names = weighted(
    (b"Content-Type", 4),
    (b"X-Fuzz", 3),
    (b"Set-Cookie", 1),
    (b"Keep-Alive", 1),
    (b"Content-Encoding", 1),
    (b"Location", 1),
    (b"Trailer", 1),
    (b"Upgrade", 1),
    (b"x-a.b_c~!", 1),
)
bad_names = st.one_of(
    st.sampled_from([b"Bad Name", b"", b"X\x00", b"X-\xff", b"X:Y", b"(x)"]),
    st.binary(max_size=24),
)
good_values = weighted(
    (b"text/plain", 4),
    (b"", 2),
    (b"gzip", 1),
    (b"/next", 1),
    (b"http://127.0.0.1:1/elsewhere", 1),
    (b"//[::1", 1),
    (b"a\tb", 1),
    (b"\x80\xff", 1),
    (b" padded ", 1),
)
bad_values = st.one_of(st.sampled_from([b"a\x00b", b"a\rb", b"\x7f"]), st.binary(max_size=24))
good_separators = weighted((b": ", 10), (b":", 2), (b":  ", 1), (b": \t", 1))
bad_separators = st.sampled_from([b" :", b"", b"\t:", b"::"])
connection_values = weighted((b"close", 3), (b"keep-alive", 3), (b"Close", 1), (b"upgrade, close", 1), (b"closed", 1))


def field_line(parts: Parts) -> bytes:
    if "field" in parts.defects and parts.draw(st.booleans()):
        kind = parts.draw(st.sampled_from(["nocolon", "space-first", "wild"]))
        if kind == "nocolon":
            return parts.draw(st.binary(max_size=24).filter(lambda b: b":" not in b)) + parts.eol()
        if kind == "space-first":
            return b" " + parts.draw(good_names) + b": " + parts.draw(good_values) + parts.eol()
        return (
            parts.draw(st.one_of(good_names, bad_names))
            + parts.draw(st.one_of(good_separators, bad_separators))
            + parts.draw(st.one_of(good_values, bad_values))
            + parts.eol()
        )
    return parts.draw(good_names) + parts.draw(good_separators) + parts.draw(good_values) + parts.eol()


def folded_line(parts: Parts) -> bytes:
    """RFC 9112 section 5.2: obs-fold, which a client may reject or unfold."""
    return (
        parts.draw(good_names)
        + b": "
        + parts.draw(good_values)
        + parts.eol()
        + parts.draw(st.sampled_from([b" ", b"\t", b"  "]))
        + parts.draw(good_values)
        + parts.eol()
    )


def long_line(parts: Parts, limit: int) -> bytes:
    size = parts.draw(st.one_of(st.integers(max(limit - 64, 1), limit + 64), st.integers(1, 4096)))
    return b"X-Long: " + b"v" * size + parts.eol()


def content_length_values(body_len: int) -> st.SearchStrategy[bytes]:
    exact = b"%d" % body_len
    return st.one_of(
        st.integers(-3, 3).filter(lambda d: d != 0).map(lambda d: b"%d" % max(body_len + d, 0)),
        st.just(b"0"),
        st.integers(0, 2**70).map(lambda n: b"%d" % n),
        st.sampled_from(
            [
                b"-1",
                b"-0",
                b"+5",
                b" 5",
                b"1e3",
                b"0x10",
                b"1_0",
                b"",
                b"abc",
                b"99999999999999999999",
                b"999999999999999999999",
                b"18446744073709551616",
                b"0000000000000000000000005",
                exact + b", " + b"%d" % (body_len + 1),
                exact + b",",
                b"," + exact,
                exact + b" " + exact,
                b"\xd9\xa5",
            ]
        ),
    )


bad_transfer_encodings = st.sampled_from(
    [b"Chunked", b"CHUNKED", b"gzip, chunked", b"chunked, gzip", b"chunked, chunked", b"identity", b"xchunked", b""]
)


def framing_lines(parts: Parts, body_len: int) -> tuple[list[bytes], str]:
    """Content-Length / Transfer-Encoding / Connection lines, and the body framing."""
    lines: list[bytes] = []
    framing = parts.draw(weighted(("length", 6), ("chunked", 3), ("close", 1)))
    if framing == "chunked":
        value = parts.pick("transfer-encoding", st.just(b"chunked"), bad_transfer_encodings)
        lines.append(b"Transfer-Encoding: " + value + parts.eol())
        if "transfer-encoding" in parts.defects and parts.draw(st.booleans()):
            lines.append(b"Transfer-Encoding: chunked" + parts.eol())
        if "content-length" in parts.defects:
            lines.append(b"Content-Length: " + parts.draw(content_length_values(body_len)) + parts.eol())
    elif framing == "length":
        exact = b"%d" % body_len
        name = parts.draw(weighted((b"Content-Length", 8), (b"content-length", 1), (b"CONTENT-LENGTH", 1)))
        value = parts.pick(
            "content-length", weighted((exact, 8), (exact + b", " + exact, 1)), content_length_values(body_len)
        )
        lines.append(name + b": " + value + parts.eol())
        if parts.draw(weighted((False, 8), (True, 1))):
            again = parts.pick("content-length", st.just(exact), content_length_values(body_len))
            lines.append(b"Content-Length: " + again + parts.eol())
    if parts.draw(weighted((False, 3), (True, 1))):
        lines.append(b"Connection: " + parts.draw(connection_values) + parts.eol())
    return lines, framing


# -- bodies ------------------------------------------------------------------------------
def _filled(size: int, fill: bytes) -> bytes:
    return (fill * (size // len(fill) + 1))[:size]


# Big enough to cross the drain cap (64 KiB) and the water marks (1 MiB) of the default limits.
big_bodies = st.builds(_filled, st.integers(60_000, 1_300_000), st.sampled_from([b"b", b"\x00", b"\r\n0\r\n"]))
# Rare: hypothesis keeps what every example drew (for shrinking), so big bodies cost
# memory for the whole campaign; tiny water marks (see fuzz/h1.py) cover backpressure.
bodies = mix((st.binary(max_size=64), 8), (st.binary(max_size=600), 4), (big_bodies, 1))
bad_chunk_sizes = [b"", b"-1", b"0x5", b" 5", b"5 ", b"5\t", b"g", b"f" * 17, b"f" * 40, b"+1"]
good_extensions = weighted((b"", 10), (b";a=b", 1), (b";a", 1), (b';a="q;\\"x"', 1))
bad_extensions = st.sampled_from([b"; a = b", b";", b";" + b"x" * 300, b";a=\x00", b"\x00"])
good_trailers = weighted((b"X-Trailer: t", 4), (b"Server-Timing: a;dur=1", 1))
bad_trailers = st.sampled_from([b"Content-Length: 5", b"Transfer-Encoding: chunked", b"no colon", b" folded", b": x"])


def chunk_size(parts: Parts, size: int) -> bytes:
    exact = b"%x" % size
    good = weighted((exact, 10), (exact.upper(), 1), (b"000" + exact, 1))
    bad = st.one_of(
        st.integers(-2, 2).filter(lambda d: d != 0).map(lambda d: b"%x" % max(size + d, 0)),
        st.sampled_from(bad_chunk_sizes),
    )
    return parts.pick("chunk-size", good, bad)


def chunked_body(parts: Parts, body: bytes) -> bytes:
    cuts = sorted({0, len(body), *parts.draw(st.lists(st.integers(0, len(body)), max_size=4))})
    out = b""
    for a, b in itertools.pairwise(cuts):
        if b > a:
            ext = parts.pick("chunk-extension", good_extensions, bad_extensions)
            out += chunk_size(parts, b - a) + ext + parts.eol() + body[a:b] + parts.eol()
    ending = parts.pick("chunk-end", st.just("last"), st.sampled_from(["none", "no-crlf", "extra-crlf"]))
    if ending == "none":
        return out
    last = parts.pick("chunk-size", st.just(b"0"), st.sampled_from([b"00", b"0 ", b"", b"-0"]))
    out += last + parts.pick("chunk-extension", good_extensions, bad_extensions) + parts.eol()
    if ending == "no-crlf":
        return out
    for _ in range(parts.draw(weighted((0, 6), (1, 2), (2, 1)))):
        out += parts.pick("trailer", good_trailers, bad_trailers) + parts.eol()
    out += parts.eol()
    return out + (b"\r\n" if ending == "extra-crlf" else b"")


# -- whole responses -----------------------------------------------------------------------
def informational(parts: Parts, max_count: int) -> bytes:
    good_count = weighted((0, 12), (1, 3), (2, 1))
    count = parts.pick("informational", good_count, st.sampled_from([max_count, max_count + 1, 1]))
    out = b""
    for _ in range(count):
        good_code = weighted((b"100", 4), (b"103", 2), (b"102", 1))
        code = parts.pick("informational", good_code, weighted((b"101", 1), (b"199", 1), (b"100", 2)))
        out += b"HTTP/1.1 " + code + b" Info" + parts.eol()
        if parts.draw(st.booleans()):
            out += b"Link: </a>" + parts.eol()
        out += parts.eol()
    return out


@st.composite
def structured(draw: st.DrawFn, max_header_bytes: int, max_header_count: int, max_informational: int) -> bytes:
    parts = Parts(draw, draw(defect_sets))
    out = informational(parts, max_informational) + status_line(parts)
    body = draw(bodies)
    framing, how = framing_lines(parts, len(body))
    lines = framing + [field_line(parts) for _ in range(draw(st.integers(0, 3)))]
    if "fold" in parts.defects:
        lines.append(folded_line(parts))
    if "long-field" in parts.defects:
        lines.append(long_line(parts, max_header_bytes))
    if "many-fields" in parts.defects:
        count = draw(st.integers(max_header_count - 2, max_header_count + 2))
        lines += [b"X-N: %d\r\n" % i for i in range(count)]
    out += b"".join(draw(st.permutations(lines))) + parts.eol()
    payload = chunked_body(parts, body) if how == "chunked" else body
    if "truncated" in parts.defects and payload:
        # The body stops short of what its framing promised (the peer died mid-body).
        payload = payload[: len(payload) - draw(st.integers(1, len(payload)))]
    out += payload
    if "tail" in parts.defects:
        out += draw(
            st.one_of(
                st.sampled_from([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", b"\r\n", b"0\r\n\r\n"]),
                st.binary(min_size=1, max_size=32),
            )
        )
    return out


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "repeat"]))
        # From the front or from the back: both the head and the body get hit.
        pos = draw(st.integers(0, len(data)))
        if draw(st.booleans()):
            pos = len(data) - pos
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "insert":
            data[pos:pos] = draw(st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from(EOLS[-3:])))
        elif op == "repeat":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 32))]
    return bytes(data)


def responses(max_header_bytes: int, max_header_count: int, max_informational: int) -> st.SearchStrategy[bytes]:
    """The bytes of one response, from the four families of the module docstring."""
    shaped = structured(max_header_bytes, max_header_count, max_informational)
    # Structured first: it is what generation falls back to when it keeps things
    # simple, and what shrinking heads for.
    return mix(
        (shaped, 8),
        (mutated(shaped), 2),
        (st.binary(max_size=512), 1),
        (st.binary(max_size=256).map(lambda b: b"HTTP/1.1 " + b), 1),
    )


# -- the reference parser -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ref:
    """What a fresh h11 client makes of the bytes after one request."""

    status: int | None  # the final status, None if no final head was parsed
    data: bytes  # the body bytes h11 handed out (also when it stopped with an error)
    complete: bool  # EndOfMessage reached
    error: str | None  # h11's RemoteProtocolError, if any
    keep_alive: bool = False  # complete, and h11 would let the connection carry another request
    leftover: bytes = b""  # bytes after the end of the message

    @property
    def reusable(self) -> bool:
        return self.keep_alive and not self.leftover


def reference(method: str, data: bytes, eof: bool, max_header_bytes: int) -> Ref:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "127.0.0.1")]))
    conn.send(h11.EndOfMessage())
    status: int | None = None
    body = bytearray()
    try:
        conn.receive_data(data)
        if eof:
            conn.receive_data(b"")
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return Ref(status, bytes(body), False, None)
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                # DONE, not MUST_CLOSE: the message allows another one after it (an
                # end of stream that follows is the next message's business).
                leftover = conn.trailing_data[0]
                keep_alive = conn.their_state is h11.DONE
                return Ref(status, bytes(body), True, None, keep_alive, bytes(leftover))
            elif isinstance(event, h11.ConnectionClosed):
                return Ref(status, bytes(body), False, "connection closed")
    except h11.RemoteProtocolError as exc:
        return Ref(status, bytes(body), False, str(exc))
