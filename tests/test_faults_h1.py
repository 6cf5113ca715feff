"""HTTP/1.1 against peers that fail on purpose: truncation at every byte offset,
resets, stalls, trickles, lying framing, malformed chunks and oversized heads.

Every exchange is judged by tests/peers/invariants.py: a complete body or an
httpstream exception, bytes handed out a prefix of the true body, no await past
its timeout, a sane pool afterwards, no leaked descriptor or task.

What we accept, per RFC 9112:
- chunk extensions (with the whitespace section 7.1.1 allows before ";") and
  trailer fields are legal and accepted; trailers reach ``Response.trailers``;
- a bare LF ending a head or trailer line is accepted (section 2.2 lets a
  recipient); chunk-size lines and the CRLF after chunk data must be CRLF
  (section 7.1 has no such allowance); a bare CR is refused everywhere;
- malformed or conflicting Content-Length, malformed chunk framing, and a body
  shorter than its Content-Length end in ``RemoteProtocolError`` (or its
  ``IncompleteBody``); bytes beyond a message's end are never read as the
  next response: the connection is not reused;
- a close-delimited body over TLS is complete only after close_notify (section
  9.8); over plain TCP the close is the only end there is.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest

import httpstream

from .peers.faults import Action, Fault, FaultProxy, H1FaultServer, Reply, ServerRequest, chunked, response
from .peers.invariants import LeakCheck, check_outcome, check_pool, fetch
from .peers.servers import pattern

TIMEOUT = httpstream.Timeout.all(5.0)
ERRORS = (httpstream.RemoteProtocolError, httpstream.ReadError)  # what a cut may raise

BODY = pattern(2048)
# A chunked rendering of BODY whose cut points fall inside every element of the
# framing: one-byte and odd-sized chunks, extensions (one with the whitespace
# RFC 9112 allows before ";"), and a trailer section.
PIECES = [BODY[:1], BODY[1:8], BODY[8:24], BODY[24:279], BODY[279:535], BODY[535:1800], BODY[1800:]]
EXTENSIONS = [b"", b";a", b";name=value", b' ;q="x;y"', b"", b"\t; a = b ;c", b""]
TRAILERS = b"X-Checksum: abc\r\nX-Other: 1\r\n"
CHUNKED_BODY = chunked(PIECES, extensions=EXTENSIONS, trailers=TRAILERS)


@pytest.fixture(autouse=True)
async def leaks() -> AsyncIterator[None]:
    """Invariant 5 around every test."""
    async with LeakCheck():
        yield


@pytest.fixture(scope="module")
def server_tls(cert_files: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_files["cert"], cert_files["key"])
    context.set_alpn_protocols(["http/1.1"])
    return context


def new_pool(cert_files: dict[str, str] | None = None, **limits: int) -> httpstream.ConnectionPool:
    return httpstream.ConnectionPool(
        timeout=TIMEOUT,
        verify=cert_files["ca"] if cert_files else True,
        limits=httpstream.Limits().replace(**limits),
    )


def head_length(data: bytes) -> int:
    return data.index(b"\r\n\r\n") + 4


async def cut_everywhere(
    data: bytes,
    body: bytes,
    actions: tuple[Action, ...],
    ssl_context: ssl.SSLContext | None,
    pool_tls: dict[str, str] | None,
) -> dict[str, int]:
    """Serve ``data`` cut after each of its bytes (and after the last), with each action.

    One server and one pool for the lot; the offset in the path tells the
    script where to cut.  Returns how often each "action:ErrorClass" was seen.
    """
    seen: dict[str, int] = {}

    def script(request: ServerRequest) -> Reply:
        _, action, at = request.target.split("/")
        return Reply(data, Fault(int(at), action))  # type: ignore[arg-type]

    async with H1FaultServer(script, ssl_context=ssl_context) as srv, new_pool(pool_tls) as pool:
        for action in actions:
            for at in range(len(data) + 1):
                outcome = await fetch(pool, srv.url(f"/{action}/{at}"))
                whole = at == len(data)
                # A reset after the last byte may overtake nothing: either is fine then.
                check_outcome(
                    outcome,
                    body,
                    complete=None if whole and action == "rst" else whole,
                    errors=ERRORS,
                    context=f"{action} after {at} of {len(data)} bytes",
                )
                if isinstance(outcome.error, httpstream.IncompleteBody):
                    assert outcome.error.received == len(outcome.body), outcome
                await check_pool(pool)
                name = f"{action}:{type(outcome.error).__name__}"
                seen[name] = seen.get(name, 0) + 1
    return seen


# -- truncation at every byte offset --------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"x", BODY], ids=["empty", "1-byte", "2KiB"])
async def test_content_length_cut_at_every_offset(body: bytes) -> None:
    data = response(body, headers=b"Content-Length: %d\r\nX-Pad: a b c\r\n" % len(body))
    seen = await cut_everywhere(data, body, ("fin", "rst"), None, None)
    assert seen["fin:NoneType"] == 1  # only the whole response is complete
    if body:
        assert seen["fin:IncompleteBody"] == len(body)  # every clean cut inside the body


async def test_content_length_fin_reports_exact_counts() -> None:
    """A clean close inside the body: IncompleteBody says how far it got and what was promised."""
    data = response(BODY)
    start = head_length(data)

    def script(request: ServerRequest) -> Reply:
        return Reply(data, Fault(int(request.target.strip("/")), "fin"))

    async with H1FaultServer(script) as srv, new_pool() as pool:
        for at in range(start, len(data), 97):
            outcome = await fetch(pool, srv.url(f"/{at}"))
            assert isinstance(outcome.error, httpstream.IncompleteBody), outcome
            assert (outcome.error.received, outcome.error.expected) == (at - start, len(BODY))
            assert outcome.body == BODY[: at - start]


@pytest.mark.parametrize("body", [b"", b"x", BODY], ids=["empty", "1-byte", "2KiB"])
async def test_chunked_cut_at_every_offset(body: bytes) -> None:
    data = CHUNKED_BODY if body is BODY else chunked([body] if body else [], trailers=TRAILERS)
    seen = await cut_everywhere(data, body, ("fin", "rst"), None, None)
    assert seen["fin:NoneType"] == 1


async def test_chunked_trailers_arrive_with_the_last_byte() -> None:
    async with H1FaultServer(lambda r: Reply(CHUNKED_BODY)) as srv, new_pool() as pool:
        outcome = await fetch(pool, srv.url())
        check_outcome(outcome, BODY, complete=True)
        assert outcome.trailers == [(b"X-Checksum", b"abc"), (b"X-Other", b"1")]
        await check_pool(pool)


@pytest.mark.parametrize("framing", ["content-length", "chunked", "close-delimited"])
async def test_tls_cut_at_every_offset(framing: str, server_tls: ssl.SSLContext, cert_files: dict[str, str]) -> None:
    """Over TLS: close_notify + FIN, RST, and a bare FIN without close_notify (a TLS truncation)."""
    body = pattern(100)
    if framing == "content-length":
        data = response(body)
    elif framing == "chunked":
        data = chunked([body[:1], body[1:60], body[60:]], extensions=[b"", b" ;x=1", b""], trailers=b"T: 1\r\n")
    else:
        data = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
    if framing != "close-delimited":
        seen = await cut_everywhere(data, body, ("fin", "rst", "abrupt"), server_tls, cert_files)
        assert seen["fin:IncompleteBody"] >= len(body) and seen["abrupt:IncompleteBody"] >= len(body), seen
        return
    # Close-delimited: with close_notify the close *is* the end, so each cut is
    # a complete (shorter) message; without it nothing is complete (RFC 9112 9.8).
    start = head_length(data)

    def script(request: ServerRequest) -> Reply:
        _, action, at = request.target.split("/")
        return Reply(data, Fault(int(at), action))  # type: ignore[arg-type]

    async with H1FaultServer(script, ssl_context=server_tls) as srv, new_pool(cert_files) as pool:
        for at in range(len(data) + 1):
            clean = await fetch(pool, srv.url(f"/fin/{at}"))
            truncated = await fetch(pool, srv.url(f"/abrupt/{at}"))
            if at >= start:
                check_outcome(clean, body[: at - start], complete=True, context=f"close_notify at {at}")
            else:
                check_outcome(clean, body, complete=False, errors=ERRORS, context=f"close_notify at {at}")
            check_outcome(truncated, body, complete=False, errors=ERRORS, context=f"bare FIN at {at}")
            if at >= start:
                assert isinstance(truncated.error, httpstream.IncompleteBody)
                assert "close_notify" in str(truncated.error)
            await check_pool(pool)


async def test_close_delimited_over_tcp_ends_with_the_close() -> None:
    data = b"HTTP/1.1 200 OK\r\n\r\n" + BODY
    async with H1FaultServer(lambda r: Reply(data, Fault(len(data), "fin"))) as srv, new_pool() as pool:
        check_outcome(await fetch(pool, srv.url()), BODY, complete=True)
        await check_pool(pool)
        assert pool.stats().connections == 0  # never kept: its end was the close


# -- stalls, trickles -----------------------------------------------------------------------


async def test_stall_at_every_offset_times_out() -> None:
    """Every offset of a head+body, both framings: ReadTimeout within the read timeout, never a hang."""
    small = pattern(40)
    responses = {
        "cl": response(small),
        "chunked": chunked([small[:1], small[1:]], extensions=[b";e", b""], trailers=b"T: 1\r\n"),
    }
    read = 0.25
    timeout = httpstream.Timeout(connect=5, read=read, write=5, pool=5)

    def script(request: ServerRequest) -> Reply:
        _, framing, at = request.target.split("/")
        return Reply(responses[framing], Fault(int(at), "stall"))

    async with H1FaultServer(script) as srv, new_pool() as pool:
        jobs = [(framing, at) for framing, data in responses.items() for at in range(len(data))]
        for start in range(0, len(jobs), 60):  # 60 at a time: all within one timeout
            batch = jobs[start : start + 60]
            outcomes = await asyncio.gather(
                *(fetch(pool, srv.url(f"/{framing}/{at}"), timeout=timeout, deadline=10) for framing, at in batch)
            )
            for (framing, at), outcome in zip(batch, outcomes, strict=True):
                context = f"{framing} stalled after {at} bytes"
                check_outcome(outcome, small, complete=False, errors=httpstream.ReadTimeout, context=context)
                assert outcome.elapsed < read + 5, f"{context}: took {outcome.elapsed:.1f} s"
            await check_pool(pool, within=3.0)


async def test_stall_over_tls(server_tls: ssl.SSLContext, cert_files: dict[str, str]) -> None:
    data = response(BODY)
    timeout = httpstream.Timeout(connect=5, read=0.25, write=5, pool=5)
    offsets = [0, 10, head_length(data), head_length(data) + 1000]

    def script(request: ServerRequest) -> Reply:
        return Reply(data, Fault(int(request.target.strip("/")), "stall"))

    async with H1FaultServer(script, ssl_context=server_tls) as srv, new_pool(cert_files) as pool:
        outcomes = await asyncio.gather(*(fetch(pool, srv.url(f"/{at}"), timeout=timeout) for at in offsets))
        for outcome in outcomes:
            check_outcome(outcome, BODY, complete=False, errors=httpstream.ReadTimeout)
            assert outcome.elapsed < 5.25
        await check_pool(pool, within=3.0)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_trickled_one_byte_at_a_time(tls: bool, server_tls: ssl.SSLContext, cert_files: dict[str, str]) -> None:
    body = pattern(400)
    replies = {
        "cl": response(body),
        "chunked": chunked([body[:3], body[3:]], extensions=[b" ;a=1", b""], trailers=b"T: 1\r\n"),
        "bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 400\nX: y\n\n" + body,
    }

    def script(request: ServerRequest) -> Reply:
        name, _, cut = request.target.strip("/").partition("/")
        data = replies[name]
        return Reply(data, Fault(int(cut), "fin") if cut else None, trickle=True)

    async with (
        H1FaultServer(script, ssl_context=server_tls if tls else None) as srv,
        new_pool(cert_files if tls else None) as pool,
    ):
        for name, data in replies.items():
            outcome = await fetch(pool, srv.url(f"/{name}"))
            check_outcome(outcome, body, complete=True, context=name)
            if not tls:  # TLS records may carry several bytes' worth; TCP shows the trickle
                assert outcome.chunks > len(body) // 4, f"{name}: not trickled ({outcome})"
            for cut in range(1, len(data), 53):
                check_outcome(await fetch(pool, srv.url(f"/{name}/{cut}")), body, complete=False, errors=ERRORS)
            await check_pool(pool)


# -- lying and malformed framing ------------------------------------------------------------


async def test_content_length_longer_than_body_then_close() -> None:
    data = response(b"x" * 50, length=100)
    async with H1FaultServer(lambda r: Reply(data, close=True)) as srv, new_pool() as pool:
        outcome = await fetch(pool, srv.url())
        check_outcome(outcome, b"x" * 100, complete=False, errors=httpstream.IncompleteBody)
        assert isinstance(outcome.error, httpstream.IncompleteBody)
        assert (outcome.error.received, outcome.error.expected) == (50, 100)
        await check_pool(pool)


async def test_content_length_longer_than_body_then_silence() -> None:
    data = response(b"x" * 50, length=100)
    timeout = httpstream.Timeout(connect=5, read=0.25, write=5, pool=5)
    async with H1FaultServer(lambda r: Reply(data)) as srv, new_pool() as pool:
        outcome = await fetch(pool, srv.url(), timeout=timeout)
        check_outcome(outcome, b"x" * 100, complete=False, errors=httpstream.ReadTimeout)
        assert outcome.elapsed < 5.25
        await check_pool(pool, within=3.0)


SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"


@pytest.mark.parametrize(
    "first",
    [
        response(b"hello") + b"EXTRA",
        response(b"hello") + SMUGGLED,
        chunked([b"hello"]) + SMUGGLED,
        b"HTTP/1.1 204 No Content\r\n\r\n" + SMUGGLED,
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n" + SMUGGLED,
    ],
    ids=["cl-extra", "cl-smuggled", "chunked-smuggled", "204-smuggled", "304-smuggled"],
)
async def test_bytes_beyond_the_message_are_never_the_next_response(first: bytes) -> None:
    """Content-Length shorter than what was sent: the body ends where the length says,
    and the connection, holding bytes no request asked for, is not reused."""
    expected = b"" if b" 204 " in first or b" 304 " in first else b"hello"

    def script(request: ServerRequest) -> Reply:
        return Reply(first if request.connection == 0 else response(b"second"))

    async with H1FaultServer(script) as srv, new_pool() as pool:
        check_outcome(await fetch(pool, srv.url()), expected, complete=True)
        await check_pool(pool)
        check_outcome(await fetch(pool, srv.url()), b"second", complete=True)
        assert srv.accepted == 2
        assert [r.number for r in srv.requests] == [0, 0]


async def test_bytes_arriving_on_an_idle_connection_close_it() -> None:
    """The extra bytes come later, once the connection is idle: it is dropped, not reused."""
    async with H1FaultServer(lambda r: Reply(response(b"hello"))) as srv, new_pool() as pool:
        check_outcome(await fetch(pool, srv.url()), b"hello", complete=True)
        assert pool.stats().idle == 1
        assert await srv.push(SMUGGLED) == 1  # a response nobody asked for
        for _ in range(200):
            if pool.stats().connections == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.stats().connections == 0, "an idle connection that received bytes was kept"
        check_outcome(await fetch(pool, srv.url()), b"hello", complete=True)
        assert srv.accepted == 2


@pytest.mark.parametrize(
    "fields",
    [
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: 5, 6\r\n",
        b"Content-Length: -5\r\n",
        b"Content-Length: 0x5\r\n",
        b"Content-Length: five\r\n",
        b"Content-Length: 5 5\r\n",
        b"Content-Length: +5\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ],
)
async def test_malformed_framing_headers_are_refused(fields: bytes) -> None:
    data = b"HTTP/1.1 200 OK\r\n" + fields + b"\r\nhello"
    async with H1FaultServer(lambda r: Reply(data)) as srv, new_pool() as pool:
        outcome = await fetch(pool, srv.url())
        check_outcome(outcome, b"hello", complete=False, errors=httpstream.RemoteProtocolError)
        assert outcome.status is None  # refused at the head: no response at all
        await check_pool(pool)
        assert pool.stats().connections == 0


async def test_repeated_equal_content_length_is_one_length() -> None:
    """RFC 9110 section 8.6: a list of identical values may be taken as that one value."""
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello"
    async with H1FaultServer(lambda r: Reply(data)) as srv, new_pool() as pool:
        for _ in range(2):
            check_outcome(await fetch(pool, srv.url()), b"hello", complete=True)
        assert srv.accepted == 1


async def test_content_length_with_transfer_encoding_is_chunked_and_not_reused() -> None:
    """RFC 9112 section 6.3: chunked wins, and the connection is closed after (a smuggling sign)."""
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    async with H1FaultServer(lambda r: Reply(data)) as srv, new_pool() as pool:
        for _ in range(2):
            check_outcome(await fetch(pool, srv.url()), b"hello", complete=True)
            await check_pool(pool)
        assert srv.accepted == 2


@pytest.mark.parametrize(
    "framing",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"12345678901234567\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX\r\n0\r\n\r\n",
        b"5\r\nhel\r\n0\r\n\r\n",  # data "hel\r\n", then "0\r" where CRLF is due
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r\n0\n\r\n",
        b"5\rhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
    ],
)
async def test_malformed_chunk_framing_is_refused(framing: bytes) -> None:
    """Refused as soon as it is seen: the server keeps the connection open, so
    an error by timeout would not count (ReadTimeout is not allowed here)."""
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framing
    # The framing delivers what it frames: "hello", or for the short chunk "hel\r\n".
    framed = b"hel\r\n" if framing.startswith(b"5\r\nhel\r\n") else b"hello"
    async with H1FaultServer(lambda r: Reply(data)) as srv, new_pool() as pool:
        outcome = await fetch(pool, srv.url())
        check_outcome(outcome, framed, complete=False, errors=httpstream.RemoteProtocolError)
        assert "chunk" in str(outcome.error) or "trailer" in str(outcome.error) or "header" in str(outcome.error)
        await check_pool(pool)
        assert pool.stats().connections == 0


@pytest.mark.parametrize(
    "extension",
    [b";a", b";a=b", b';a="q;\\"x"', b" ;a", b"\t;a", b" ; a = b ; c", b";a=b;c=d", b"   "],
)
async def test_chunk_extensions_are_accepted(extension: bytes) -> None:
    data = chunked([b"hello", b" world"], extensions=[extension, extension])
    async with H1FaultServer(lambda r: Reply(data)) as srv, new_pool() as pool:
        for _ in range(2):
            check_outcome(await fetch(pool, srv.url()), b"hello world", complete=True)
        assert srv.accepted == 1  # the exchange ended cleanly: the connection was reused


@pytest.mark.parametrize(
    ("trailers", "expected"),
    [
        (b"X-A: 1\r\n", [(b"X-A", b"1")]),
        (b"X-A: 1\r\nX-A: 2\r\nX-B:  spaced  \r\n", [(b"X-A", b"1"), (b"X-A", b"2"), (b"X-B", b"spaced")]),
        (b"X-A: 1\n", [(b"X-A", b"1")]),  # bare LF, as in a head
    ],
)
async def test_trailers_are_accepted(trailers: bytes, expected: list[tuple[bytes, bytes]]) -> None:
    data = chunked([b"hello"], trailers=trailers)
    async with H1FaultServer(lambda r: Reply(data)) as srv, new_pool() as pool:
        outcome = await fetch(pool, srv.url())
        check_outcome(outcome, b"hello", complete=True)
        assert outcome.trailers == expected
        check_outcome(await fetch(pool, srv.url()), b"hello", complete=True)
        assert srv.accepted == 1


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 5\nX-A: 1\n\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\nX-A: 1\r\n\nhello",
        b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["all-lf", "mixed", "chunked"],
)
async def test_bare_lf_in_the_head_is_accepted(data: bytes) -> None:
    async with H1FaultServer(lambda r: Reply(data)) as srv, new_pool() as pool:
        for _ in range(2):
            check_outcome(await fetch(pool, srv.url()), b"hello", complete=True)
        assert srv.accepted == 1


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\rContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\rX-A: 1\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 5\r\n\r\nhello",
    ],
)
async def test_bare_cr_in_the_head_is_refused(data: bytes) -> None:
    async with H1FaultServer(lambda r: Reply(data)) as srv, new_pool() as pool:
        outcome = await fetch(pool, srv.url())
        check_outcome(outcome, b"hello", complete=False, errors=httpstream.RemoteProtocolError)
        await check_pool(pool)


# -- oversized heads ------------------------------------------------------------------------


def big_head(lines: int, line: bytes, *, end: bool = True) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + line * lines + (b"\r\nhello" if end else b"")


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize(
    ("data", "limit"),
    [
        (big_head(1, b"X-Big: " + b"a" * 100 * 1024 + b"\r\n"), "Limits.max_header_bytes"),
        (big_head(1600, b"X-Field: " + b"a" * 55 + b"\r\n"), "Limits.max_header_bytes"),  # 100 KiB in lines
        (big_head(1600, b"X-Field: " + b"a" * 55 + b"\r\n", end=False), "Limits.max_header_bytes"),  # never ends
        (big_head(10_000, b"a:b\r\n"), "Limits.max_header_count"),  # 10,000 lines in 50 KB
    ],
    ids=["one-100KiB-field", "100KiB-of-fields", "100KiB-unended", "10000-lines"],
)
async def test_oversized_heads_name_the_limit(
    data: bytes, limit: str, tls: bool, server_tls: ssl.SSLContext, cert_files: dict[str, str]
) -> None:
    """The error names the Limits knob, and comes at once, not by timeout (the
    server keeps the connection open after its bytes)."""
    async with H1FaultServer(lambda r: Reply(data), ssl_context=server_tls if tls else None) as srv:
        async with new_pool(cert_files if tls else None) as pool:
            outcome = await fetch(pool, srv.url())
            check_outcome(outcome, b"hello", complete=False, errors=httpstream.RemoteProtocolError)
            assert limit in str(outcome.error), outcome
            assert outcome.elapsed < 4, outcome  # well before the 5 s read timeout
            await check_pool(pool)


async def test_raised_limits_accept_the_same_heads() -> None:
    """The same 10,000 fields and 100 KiB are fine under raised limits (and parse fast)."""
    heads = [big_head(10_000, b"a:b\r\n"), big_head(1, b"X-Big: " + b"a" * 100 * 1024 + b"\r\n")]

    def script(request: ServerRequest) -> Reply:
        return Reply(heads[int(request.target.strip("/"))])

    async with H1FaultServer(script) as srv, new_pool(max_header_bytes=256 * 1024, max_header_count=20_000) as pool:
        for index in range(len(heads)):
            outcome = await fetch(pool, srv.url(f"/{index}"))
            check_outcome(outcome, b"hello", complete=True)
            assert outcome.elapsed < 4, outcome


@pytest.mark.parametrize(
    ("framing", "limit"),
    [
        (b"5;" + b"e" * 100 * 1024 + b"\r\nhello\r\n0\r\n\r\n", "Limits.max_header_bytes"),
        (b"5\r\nhello\r\n0\r\n" + b"t:1\r\n" * 10_000 + b"\r\n", "Limits.max_header_count"),
        (b"5\r\nhello\r\n0\r\n" + b"T: " + b"v" * 100 * 1024 + b"\r\n\r\n", "Limits.max_header_bytes"),
    ],
    ids=["100KiB-extension", "10000-trailers", "100KiB-trailer"],
)
async def test_oversized_chunk_lines_and_trailers_name_the_limit(framing: bytes, limit: str) -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framing
    async with H1FaultServer(lambda r: Reply(data)) as srv, new_pool() as pool:
        outcome = await fetch(pool, srv.url())
        check_outcome(outcome, b"hello", complete=False, errors=httpstream.RemoteProtocolError)
        assert limit in str(outcome.error), outcome
        await check_pool(pool)


# -- through a fault proxy ------------------------------------------------------------------


def upstream_script(request: ServerRequest) -> Reply:
    """A well-behaved upstream: pattern bytes, Content-Length or chunked in 100-byte chunks.

    /big is 40,000 bytes: over TLS that is three records, so cuts land before,
    inside and between them (a record is decrypted only once it is whole).
    """
    body = pattern(3000)
    if request.target == "/big":
        return Reply(response(pattern(40_000)))
    if request.target == "/chunked":
        return Reply(chunked([body[i : i + 100] for i in range(0, 3000, 100)], trailers=b"T: 1\r\n"))
    return Reply(response(body))


async def test_proxy_trickles_and_cuts_a_stream() -> None:
    """Faults applied to a relayed byte stream: trickled, then cut at offsets along the way."""
    body = pattern(3000)
    async with H1FaultServer(upstream_script) as upstream, FaultProxy(("127.0.0.1", upstream.port)) as proxy:
        for path in ("/length", "/chunked"):
            proxy.fault, proxy.trickle = None, True
            async with new_pool() as pool:
                outcome = await fetch(pool, proxy.url(path))
                check_outcome(outcome, body, complete=True, context=path)
                assert outcome.chunks > 100, outcome
            proxy.trickle = False
            cuts = {True: 0, False: 0}
            for at in range(0, 3300, 131):
                proxy.fault = Fault(at, "rst" if at % 2 else "fin")
                async with new_pool() as pool:  # a new connection, so the new fault applies
                    outcome = await fetch(pool, proxy.url(path))
                    check_outcome(outcome, body, errors=ERRORS, context=f"{path} cut at {at}")
                    await check_pool(pool)
                cuts[outcome.error is None] += 1
            assert cuts[False] >= 20, cuts  # the cuts did cut


async def test_proxy_cuts_a_tls_stream_anywhere(server_tls: ssl.SSLContext, cert_files: dict[str, str]) -> None:
    """Cuts in the TCP stream under TLS: in the handshake (ConnectError), mid-record
    (a TLS error, converted), between records.  Nothing but httpstream errors."""
    body = pattern(40_000)
    async with (
        H1FaultServer(upstream_script, ssl_context=server_tls) as upstream,
        FaultProxy(("127.0.0.1", upstream.port)) as proxy,
    ):
        url = f"https://127.0.0.1:{proxy.port}/big"
        kinds: set[str] = set()
        for at in [*range(0, 2000, 89), *range(2000, 43_000, 997)]:  # the handshake closely, then records
            proxy.fault = Fault(at, ("fin", "rst", "abrupt")[at % 3])
            async with new_pool(cert_files) as pool:  # a new connection, so the new fault applies
                outcome = await fetch(pool, url)
                check_outcome(outcome, body, errors=(*ERRORS, httpstream.ConnectError), context=f"cut at {at}")
                await check_pool(pool)
            kinds.add(type(outcome.error).__name__)
        assert {"ConnectError", "IncompleteBody", "NoneType"} <= kinds, kinds
