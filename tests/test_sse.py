"""Server-Sent Events (WHATWG "event stream interpretation"), NDJSON, and EventSource."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import httpstream
from httpstream._eventsource import EventSource
from httpstream._sse import ServerSentEvent, SSEDecoder

from .peers.decoding_servers import DecodingApp, start_server
from .peers.servers import FaultServer, HypercornServer, read_request


@pytest.fixture(scope="module")
def _sse_server() -> Iterator[HypercornServer]:
    server = start_server()
    yield server
    server.stop()


@pytest.fixture
def sse_server(_sse_server: HypercornServer) -> HypercornServer:
    _sse_server.app.reset()
    return _sse_server


def app_of(server: HypercornServer) -> DecodingApp:
    assert isinstance(server.app, DecodingApp)
    return server.app


def E(data: str, event: str = "message", id: str | None = None, retry: int | None = None) -> ServerSentEvent:  # noqa: N802
    return ServerSentEvent(event=event, data=data, id=id, retry=retry)


# The examples of the HTML standard, section 9.2.6, and the rules around them.
SPEC_CASES: list[tuple[str, bytes, list[ServerSentEvent]]] = [
    ("stock ticker", b"data: YHOO\ndata: +2\ndata: 10\n\n", [E("YHOO\n+2\n10")]),
    (
        "first/second/third event",
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
        [E("first event", id="1"), E("second event", id=""), E(" third event", id="")],
    ),
    ("empty data lines", b"data\n\ndata\ndata\n\ndata:", [E(""), E("\n")]),
    ("data:test and data: test", b"data:test\n\ndata: test\n\n", [E("test"), E("test")]),
    (
        "event types",
        b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n",
        [E("73857293", "add"), E("2153", "remove"), E("113411", "add")],
    ),
    ("comments only", b": one\n:two\n\n: three\n\n", []),
    ("CR only", b"data: a\rdata: b\r\rid: 7\rdata: c\r\r", [E("a\nb"), E("c", id="7")]),
    ("CRLF", b"data: a\r\ndata: b\r\n\r\nevent: x\r\ndata: c\r\n\r\n", [E("a\nb"), E("c", "x")]),
    ("mixed endings", b"data: a\r\ndata: b\rdata: c\n\r\n", [E("a\nb\nc")]),
    ("BOM stripped once", b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\ndata: c\n\n", [E("a"), E("c")]),
    ("last event id persists", b"id: 5\ndata: a\n\ndata: b\n\nid:\ndata: c\n\n", [E("a", id="5"), E("b", id="5"), E("c", id="")]),
    ("id with NUL ignored", b"id: 1\n\nid: 2\x003\ndata: a\n\n", [E("a", id="1")]),
    ("retry", b"retry: 100\ndata: a\n\nretry: 1a\ndata: b\n\nretry:  5\ndata: c\n\n", [E("a", retry=100), E("b"), E("c")]),
    ("unknown fields and no colon", b"foo: bar\ndata\nevent\n\n", [E("")]),
    ("only one space stripped", b"data:   x  \n\n", [E("  x  ")]),
    ("colon in value", b"data: a: b:c\n\n", [E("a: b:c")]),
    ("incomplete event at the end is dropped", b"data: a\n\ndata: b\n", [E("a")]),
    ("unterminated last line is dropped", b"data: a\n\ndata: b", [E("a")]),
    ("utf-8 split anywhere", "data: caf\u00e9 \u2603 \U0001f600\n\n".encode(), [E("caf\u00e9 \u2603 \U0001f600")]),
]


def run(chunks: list[bytes], **kwargs: int) -> list[ServerSentEvent]:
    decoder = SSEDecoder(**kwargs)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.decode(chunk))
    return events


@pytest.mark.parametrize(("name", "stream", "expected"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_spec_examples_split_at_every_byte(name: str, stream: bytes, expected: list[ServerSentEvent]) -> None:
    assert run([stream]) == expected
    assert run([bytes([b]) for b in stream]) == expected
    for cut in range(len(stream) + 1):
        assert run([stream[:cut], stream[cut:]]) == expected, cut
    for a in range(0, len(stream), 3):
        for b in range(a, len(stream), 5):
            assert run([stream[:a], stream[a:b], stream[b:]]) == expected, (a, b)


def test_decoder_state_for_reconnects() -> None:
    decoder = SSEDecoder()
    decoder.decode(b"retry: 250\n\n")
    assert decoder.retry == 250
    decoder.decode(b"id: 9\n")
    assert decoder.last_event_id is None  # the buffer moves to the stream only on dispatch
    assert decoder.decode(b"\n") == []  # an id-only block dispatches no event ...
    assert decoder.last_event_id == "9"  # ... but it is the stream's last event id now
    resumed = SSEDecoder(last_event_id="9")
    assert resumed.decode(b"data: x\n\n") == [E("x", id="9")]


def test_event_size_is_capped() -> None:
    with pytest.raises(httpstream.DecodingError, match="server-sent event larger than the limit of 100"):
        run([b"data: " + b"x" * 60 + b"\n", b"data: " + b"y" * 60 + b"\n"], max_event_size=100)
    with pytest.raises(httpstream.DecodingError, match="server-sent event larger"):
        run([b"data: " + b"x" * 50] * 3, max_event_size=100)  # one line, never ended
    assert run([b"data: " + b"x" * 90 + b"\n\n"] * 3, max_event_size=100) == [E("x" * 90)] * 3


def test_event_json() -> None:
    assert E('{"a": [1, 2]}').json() == {"a": [1, 2]}
    with pytest.raises(httpstream.DecodingError, match="not valid JSON"):
        E("{nope").json()
    with pytest.raises(httpstream.DecodingError, match="not valid JSON"):
        E("[" * 100_000).json()


@pytest.mark.parametrize("gzip", [False, True])
async def test_each_event_arrives_before_the_next_is_sent(sse_server: HypercornServer, gzip: bool) -> None:
    app = app_of(sse_server)
    app.gates = [threading.Event() for _ in range(4)]
    seen: list[ServerSentEvent] = []
    async with httpstream.AsyncClient() as client:
        async with client.stream("GET", sse_server.url("/sse-slow" + ("?gzip=1" if gzip else ""))) as r:
            async for event in r.aiter_sse():
                i = len(seen)
                assert event == E(f"event {i}", "tick", id=str(i))
                assert app.sent == i + 1  # the server is holding event i + 1 back until we answer
                seen.append(event)
                app.gates[i].set()
    assert len(seen) == 4


# -- NDJSON -----------------------------------------------------------------------------------


async def test_ndjson_split_across_chunks(sse_server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        async with client.stream("GET", sse_server.url("/ndjson")) as r:
            values = [v async for v in r.aiter_json()]
    assert values == [{"n": 1}, {"n": 2, "s": "caf\u00e9"}, [3, 3.5], "four", None]


async def test_ndjson_bad_line_names_its_number(sse_server: HypercornServer) -> None:
    values = []
    async with httpstream.AsyncClient() as client:
        async with client.stream("GET", sse_server.url("/ndjson?bad=4")) as r:
            with pytest.raises(httpstream.DecodingError, match="line 4 of the NDJSON body is not valid JSON"):
                async for value in r.aiter_json():
                    values.append(value)
            assert r.is_closed
        assert client.transport.stats().in_use == 0
    assert values == [{"n": 1}, {"n": 2, "s": "caf\u00e9"}]


async def test_ndjson_json_kwargs() -> None:
    from decimal import Decimal

    r = httpstream.Response(200, content=b'{"x": 1.5}\n\n{"x": 2}')
    assert [v async for v in r.aiter_json(parse_float=Decimal)] == [{"x": Decimal("1.5")}, {"x": 2}]


# -- EventSource ------------------------------------------------------------------------------


async def test_eventsource_resumes_with_last_event_id_until_204(sse_server: HypercornServer) -> None:
    app = app_of(sse_server)
    async with httpstream.AsyncClient() as client:
        async with EventSource(client, sse_server.url("/es")) as source:
            events = [event async for event in source]
            assert source.retry == 50
            assert source.reconnect_delay == 0.05
            assert source.reconnects == 2
            assert source.last_event_id == "3"
        assert client.transport.stats().in_use == 0
    assert events == [E("one", id="1", retry=50), E("two", id="2"), E("three", "last", id="3")]
    assert [req.get("last-event-id") for req in app.es_requests] == [None, "2", "3"]
    for req in app.es_requests:
        assert req["accept"] == "text/event-stream"
        assert req["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        ("/es-status/500", httpstream.HTTPStatusError, "answered '500 Internal Server Error'; not reconnecting"),
        ("/es-status/404", httpstream.HTTPStatusError, "answered '404 Not Found'"),
        ("/es-status/200?type=text/html", httpstream.DecodingError, "Content-Type 'text/html'"),
    ],
)
async def test_eventsource_fails_the_connection(
    sse_server: HypercornServer, path: str, error: type[Exception], match: str
) -> None:
    async with httpstream.AsyncClient() as client:
        async with EventSource(client, sse_server.url(path)) as source:
            with pytest.raises(error, match=match):
                async for _ in source:
                    pass
        assert client.transport.stats().active == 0  # released (a small remainder may still drain)
    assert len(app_of(sse_server).es_requests) == 1  # no reconnect


async def test_eventsource_gives_up_after_max_reconnects(sse_server: HypercornServer) -> None:
    async with httpstream.AsyncClient() as client:
        async with EventSource(client, sse_server.url("/es-empty"), max_reconnects=3) as source:
            with pytest.raises(httpstream.RemoteProtocolError, match=r"giving up after 3 reconnects in a row without a new event \(max_reconnects=3\)"):
                async for _ in source:
                    pass
            assert source.retry == 1
    assert len(app_of(sse_server).es_requests) == 4


async def test_eventsource_break_closes_the_stream(sse_server: HypercornServer, no_leaks: None) -> None:
    app = app_of(sse_server)
    async with httpstream.AsyncClient() as client:
        async with EventSource(client, sse_server.url("/es-hold")) as source:
            async for event in source:
                assert event == E("hello")
                break
        assert client.transport.stats().in_use == 0
        assert await asyncio.to_thread(app.disconnected.wait, 10)


async def test_eventsource_reconnects_after_a_transport_error() -> None:
    """A connection cut mid-event is retried with Last-Event-ID; the cut event is never seen."""
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request(reader)
        requests.append(head)
        if len(requests) == 1:
            first, partial = b"retry: 10\nid: a\ndata: first\n\n", b"data: partial"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"%x\r\n%s\r\n%x\r\n%s" % (len(first), first, len(partial), partial)
            )
            await writer.drain()
            writer.transport.abort()
        elif len(requests) == 2:
            body = b"data: second\n\n"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        else:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async with FaultServer(handler) as srv:
        async with httpstream.AsyncClient() as client:
            async with EventSource(client, srv.url("/"), max_reconnects=2) as source:
                events = [event async for event in source]
    assert events == [E("first", id="a", retry=10), E("second", id="a")]
    assert b"last-event-id: a" in requests[1].lower()
    assert len(requests) == 3


async def test_eventsource_needs_async_with() -> None:
    async with httpstream.AsyncClient() as client:
        source = EventSource(client, "http://127.0.0.1:1/")
        with pytest.raises(RuntimeError, match="async with"):
            source.__aiter__()
