"""What an HTTP/1.1 server accepts as a request: the strict reading of heads and chunked bodies.

Theory of operation
-------------------
A server in front of other servers (the proxy, the tunnel edge) must read every
request exactly one way, the way the next hop will, or the two disagree about
where one request ends and the next begins (request smuggling).  So this module
is strict where RFC 9112 lets a recipient be lenient, and says so rule by rule.
Everything here is pure: bytes in, a parsed head (or chunk events) out, or a
``Refusal`` carrying the status to answer (400, or 431/414 for size, 505) and a
message that says what was wrong.

The head is checked here first, byte by byte, and then parsed by h11 (its
server-side ``Connection``, fed only the head): h11 is the parser, these checks
are what a proxy needs on top of it (h11 accepts repeated identical
Content-Length fields, Content-Length next to Transfer-Encoding, obs-fold and
bare LF line endings; each of those is refused here).

Line endings (RFC 9112 section 2.2): "a recipient MAY recognize a single LF as
a line terminator"; we do not.  Every line of a request head, chunk-size line
and trailer section must end in CRLF; a bare LF anywhere in them is a 400, and
so is a bare CR (which section 2.2 says to refuse or replace).  A request the
listener accepts therefore has one reading only, and what a role forwards is
re-serialized with CRLF by the client side anyway: both sides of a forwarded
request see the same message.

Transfer-Encoding: the only coding accepted is exactly ``chunked`` (any case),
as a single field with a single member.  RFC 9112 section 6.1 lets a server
answer an unknown coding with 501; a list such as ``gzip, chunked`` or a
repeated field is refused with 400 instead, since no role here decodes
transfer codings and a list is where proxies disagree.
"""

from __future__ import annotations

import re
from typing import Final

import h11

from ._types import ServerLimits

__all__ = ["ChunkedReader", "ParsedHead", "Refusal", "parse_request_head", "scan_partial_head"]

# RFC 9110 section 5.6.2: token.
_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# RFC 9112 section 3: request-line = method SP request-target SP HTTP-version.
# Exactly one SP between the parts; the target is visible ASCII (section 3.2).
_REQUEST_LINE: Final = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
# RFC 9112 section 5: field-line = field-name ":" OWS field-value OWS.
# No whitespace between the name and the colon (section 5.1: "MUST respond with 400").
_VCHAR: Final = rb"[\x21-\x7e\x80-\xff]"
_FIELD_LINE: Final = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:" + _VCHAR + rb"(?:[ \t]*" + _VCHAR + rb")*)?)[ \t]*")
# A bare CR (not before LF), a bare LF (not after CR), or a NUL.
_BAD_BYTE: Final = re.compile(rb"\r(?!\n)|(?<!\r)\n|\x00")
_DIGITS: Final = re.compile(rb"[0-9]{1,18}")
# RFC 9112 section 7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# chunk-ext-val = token / quoted-string.  Nothing else may follow the size.
_QUOTED: Final = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_EXT: Final = rb"[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?"
_CHUNK_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(?:" + _CHUNK_EXT + rb")*")
MAX_CHUNK_LINE: Final = 4096  # a chunk-size line with its extensions
# RFC 9110 section 6.5.1: fields a sender must not put in trailers; we refuse them rather than forward them.
_FORBIDDEN_TRAILERS: Final = frozenset(
    {b"content-length", b"transfer-encoding", b"host", b"content-type", b"trailer", b"te", b"connection"}
)


class Refusal(Exception):
    """A request we will not serve: the status to answer and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _describe(head: bytes, match: re.Match[bytes]) -> str:
    found = match.group()
    what = {b"\x00": "a NUL byte", b"\n": "a bare LF (line endings must be CRLF)"}.get(found, "a bare CR")
    return f"{what} at offset {match.start()} of the request head"


def scan_partial_head(buf: bytes | bytearray, limits: ServerLimits) -> None:
    """Refuse a head that is still incomplete but already bad or too large (so a client cannot stall us)."""
    line_end = buf.find(b"\r\n")
    if (line_end < 0 and len(buf) > limits.max_request_line) or line_end > limits.max_request_line:
        raise Refusal(414, f"request line longer than {limits.max_request_line} bytes")
    if len(buf) > limits.max_header_bytes:
        raise Refusal(431, f"request head larger than {limits.max_header_bytes} bytes")
    scan = buf[:-1] if buf.endswith(b"\r") else buf  # a final CR may yet be followed by its LF
    match = _BAD_BYTE.search(scan)
    if match is not None:
        raise Refusal(400, _describe(bytes(scan), match))


class ParsedHead:
    """A request head that passed every check: as received, plus the framing it declares."""

    __slots__ = ("method", "target", "version", "fields", "content_length", "chunked", "host", "keep_alive", "expect")

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        fields: list[tuple[bytes, bytes, bytes]],
        content_length: int | None,
        chunked: bool,
        host: bytes | None,
        keep_alive: bool,
        expect: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version  # "1.0" or "1.1"
        self.fields = fields  # (raw name, lower-cased name, value), order and case kept
        self.content_length = content_length
        self.chunked = chunked
        self.host = host
        self.keep_alive = keep_alive
        self.expect = expect  # Expect: 100-continue


def _field_error(line: bytes) -> str:
    colon = line.find(b":")
    if colon < 0:
        return f"header line without a colon: {line[:80]!r}"
    name = line[:colon]
    if name != name.rstrip(b" \t"):
        return f"whitespace between the header name and the colon: {line[:80]!r} (RFC 9112 section 5.1)"
    if not re.fullmatch(_TOKEN, name):
        return f"invalid header name {name[:80]!r}"
    return f"invalid character in the value of header {name[:80]!r}"


def parse_fields(lines: list[bytes], limits: ServerLimits, what: str) -> list[tuple[bytes, bytes, bytes]]:
    """Field lines (a head's or a trailer section's), each checked; (raw, lower, value) triples."""
    if len(lines) > limits.max_header_count:
        raise Refusal(431, f"{what} has {len(lines)} fields, more than the limit of {limits.max_header_count}")
    fields = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 section 5.2: obs-fold; a server MUST reject it (or replace it) outside message/http.
            raise Refusal(400, f"obsolete line folding (a {what} line starting with whitespace) is not accepted")
        match = _FIELD_LINE.fullmatch(line)
        if match is None:
            raise Refusal(400, _field_error(line))
        name, value = match.group(1), match.group(2)
        fields.append((name, name.lower(), value))
    return fields


def parse_request_head(head: bytes, limits: ServerLimits) -> ParsedHead:
    """A complete head (request line through the empty line, CRLF CRLF included), or a Refusal."""
    if len(head) > limits.max_header_bytes:
        raise Refusal(431, f"request head of {len(head)} bytes is larger than the limit of {limits.max_header_bytes}")
    bad = _BAD_BYTE.search(head)
    if bad is not None:
        raise Refusal(400, _describe(head, bad))
    lines = head[:-4].split(b"\r\n")
    request_line = lines[0]
    if len(request_line) > limits.max_request_line:
        raise Refusal(414, f"request line of {len(request_line)} bytes is longer than {limits.max_request_line}")
    match = _REQUEST_LINE.fullmatch(request_line)
    if match is None:
        raise Refusal(400, f"malformed request line {request_line[:100]!r}")
    major, minor = match.group(3), match.group(4)
    if major != b"1":
        raise Refusal(505, f"HTTP version {major.decode()}.{minor.decode()} is not supported here")
    if minor not in (b"0", b"1"):
        raise Refusal(505, f"HTTP version 1.{minor.decode()} is not supported here")
    fields = parse_fields(lines[1:], limits, "request head")
    # h11 parses what passed (and checks Host, among others); its errors are ours to word.
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=len(head) + 1)
    try:
        conn.receive_data(head)
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise Refusal(400, f"malformed request head: {exc}") from exc
    if type(event) is not h11.Request:
        raise Refusal(400, "malformed request head")
    version = "1.1" if minor == b"1" else "1.0"
    lengths = [value for _, lower, value in fields if lower == b"content-length"]
    codings = [value for _, lower, value in fields if lower == b"transfer-encoding"]
    hosts = [value for _, lower, value in fields if lower == b"host"]
    if len(hosts) > 1:
        raise Refusal(400, "more than one Host header (RFC 9112 section 3.2)")
    content_length: int | None = None
    chunked = False
    if codings:
        # RFC 9112 section 6.1: Transfer-Encoding is an HTTP/1.1 feature; in a 1.0
        # request the framing "MUST be treated as faulty".
        if version == "1.0":
            raise Refusal(400, "Transfer-Encoding in an HTTP/1.0 request")
        if lengths:
            # Section 6.3: with both, "ought to be handled as an error"; a proxy must not guess.
            raise Refusal(400, "both Content-Length and Transfer-Encoding (a request smuggling vector)")
        if len(codings) > 1 or codings[0].lower() != b"chunked":
            raise Refusal(400, f"Transfer-Encoding other than exactly 'chunked': {b', '.join(codings)[:100]!r}")
        chunked = True
    elif lengths:
        # Section 6.3 lets a recipient fold identical repeats into one; we refuse any repeat.
        if len(lengths) > 1:
            raise Refusal(400, "more than one Content-Length header")
        if not _DIGITS.fullmatch(lengths[0]):
            raise Refusal(400, f"invalid Content-Length {lengths[0][:40]!r}")
        content_length = int(lengths[0])
    connection = b",".join(value for _, lower, value in fields if lower == b"connection").lower()
    tokens = {token.strip() for token in connection.split(b",")}
    keep_alive = version == "1.1" and b"close" not in tokens
    expect = any(lower == b"expect" and value.lower() == b"100-continue" for _, lower, value in fields)
    return ParsedHead(
        event.method.decode("ascii"),
        event.target.decode("ascii"),
        version,
        fields,
        content_length,
        chunked,
        hosts[0] if hosts else None,
        keep_alive,
        expect and version == "1.1",
    )


class ChunkedReader:
    """Incremental, strict reader of a chunked request body (RFC 9112 section 7.1).

    ``read(buf)`` consumes from ``buf`` and returns the next piece of data
    (bytes), a list of trailer triples at the end of the body, or None when it
    needs more bytes; malformed framing raises ``Refusal``.
    """

    __slots__ = ("_limits", "_left", "_crlf", "_in_trailers")

    def __init__(self, limits: ServerLimits) -> None:
        self._limits = limits
        self._left = 0
        self._crlf = False
        self._in_trailers = False

    def read(self, buf: bytearray) -> bytes | list[tuple[bytes, bytes, bytes]] | None:
        if self._in_trailers:
            return self._trailers(buf)
        if self._crlf:
            if len(buf) < 2:
                return None
            if buf[:2] != b"\r\n":
                raise Refusal(400, f"chunk data not followed by CRLF ({bytes(buf[:2])!r})")
            del buf[:2]
            self._crlf = False
        if self._left == 0:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > MAX_CHUNK_LINE:
                    raise Refusal(400, f"chunk-size line longer than {MAX_CHUNK_LINE} bytes")
                return None
            if end > MAX_CHUNK_LINE:
                raise Refusal(400, f"chunk-size line longer than {MAX_CHUNK_LINE} bytes")
            if end == 0 or buf[end - 1] != 0x0D:
                raise Refusal(400, "chunk-size line ending in a bare LF (line endings must be CRLF)")
            line = bytes(buf[: end - 1])
            del buf[: end + 1]
            match = _CHUNK_LINE.fullmatch(line)
            if match is None:
                raise Refusal(400, f"invalid chunk-size line {line[:80]!r}")
            self._left = int(match.group(1), 16)
            if self._left == 0:
                self._in_trailers = True
                return self._trailers(buf)
        if not buf:
            return None
        data = bytes(buf[: self._left])
        del buf[: len(data)]
        self._left -= len(data)
        self._crlf = self._left == 0
        return data

    def _trailers(self, buf: bytearray) -> list[tuple[bytes, bytes, bytes]] | None:
        # RFC 9112 section 7.1.2: trailer-section = *( field-line CRLF ), then CRLF.
        limit = self._limits.max_header_bytes
        if buf[:2] == b"\r\n":
            del buf[:2]
            return []
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > limit:
                raise Refusal(431, f"trailer section larger than {limit} bytes")
            scan = buf[:-1] if buf.endswith(b"\r") else buf
            bad = _BAD_BYTE.search(scan)
            if bad is not None:
                raise Refusal(400, "a bare CR, bare LF or NUL in the trailer section")
            return None
        section = bytes(buf[: end + 4])
        del buf[: end + 4]
        if len(section) > limit:
            raise Refusal(431, f"trailer section of {len(section)} bytes is larger than {limit}")
        if _BAD_BYTE.search(section) is not None:
            raise Refusal(400, "a bare CR, bare LF or NUL in the trailer section")
        fields = parse_fields(section[:-4].split(b"\r\n"), self._limits, "trailer section")
        for _, lower, _ in fields:
            if lower in _FORBIDDEN_TRAILERS:
                raise Refusal(400, f"{lower.decode()} is not allowed in a trailer section (RFC 9110 section 6.5.1)")
        return fields
