"""HTTP/2 fault injection: a cut after every byte of an answer, and GOAWAY / RST_STREAM at random points.

Two peers, both h2's server side on loopback (tests/peers/h2_servers.py):

- ``H2CutServer`` builds the whole answer to a request at once (server preface
  and SETTINGS, SETTINGS ACK, HEADERS, DATA frames with and without padding and
  Content-Length, trailers) and ends the connection after byte k of it.  One
  test walks k over every offset of the answer: below the full length the caller
  must get an httpstream error (never a short body presented as complete) and
  the bytes it was handed must be a prefix of the true body; at the full length
  the body must be complete.
- ``H2FaultServer`` answers several concurrent streams with their DATA
  interleaved in a seeded random order and, at a random point, sends GOAWAY
  (with or without an error code), RST_STREAM (CANCEL, INTERNAL_ERROR or
  REFUSED_STREAM) or drops the connection.  Streams at or below GOAWAY's last
  stream id complete or fail with httpstream errors; a GET above it (never
  processed) is retried on a new connection and completes; a POST whose body
  cannot be sent again is not retried.

Two regressions found here sit beside them: a malformed body (longer or shorter
than its Content-Length, DATA on a HEAD answer) fails only its own stream, and
an upload starved of window times out on time while other streams come and go.

After every fault the same invariants hold: a complete body or an httpstream
exception, the bytes handed out a prefix of the true body, no await past its
deadline, no open stream and no connection in an impossible state in
``pool.stats()``, and no task or file descriptor left behind.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import h2.connection
import h2.errors
import pytest

import httpstream

from .peers.h2_servers import H2CutServer, H2FaultServer, H2ServerConnection, ServerStream
from .peers.invariants import LeakCheck, Outcome, check_outcome, check_pool, fetch
from .peers.servers import pattern

pytestmark = pytest.mark.usefixtures("no_leaks")

DEADLINE = 5.0  # no single exchange may take longer than this, fault or not


async def exchange(pool: httpstream.ConnectionPool, request: httpstream.Request) -> Outcome:
    """``invariants.fetch`` for a request built by the test (a body that cannot be replayed...)."""
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    start = loop.time()
    guard = asyncio.timeout(DEADLINE)
    try:
        async with guard:
            response = await pool.handle_request(request)
            outcome.status = response.status_code
            try:
                async for chunk in response.stream:
                    outcome.body += chunk
                    outcome.chunks += 1
            finally:
                await response.stream.aclose()
    except Exception as exc:  # judged by check_outcome
        outcome.error = exc
        outcome.hung = guard.expired()
    outcome.elapsed = loop.time() - start
    return outcome


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


def h2c_pool(**kwargs: object) -> httpstream.ConnectionPool:
    return httpstream.ConnectionPool(
        http1=False,
        http2=True,
        timeout=httpstream.Timeout.all(DEADLINE),
        **kwargs,  # type: ignore[arg-type]
    )


# -- 1. a cut after every byte --------------------------------------------------------------------------

BODY = pattern(2048)


def frames_with_length(conn: h2.connection.H2Connection, stream_id: int) -> None:
    """Content-Length and the body in several DATA frames of uneven sizes."""
    conn.send_headers(stream_id, [(b":status", b"200"), (b"content-length", b"2048")])
    for start, end in ((0, 1), (1, 500), (500, 1500), (1500, 2048)):
        conn.send_data(stream_id, BODY[start:end], end_stream=end == 2048)


def padded_no_length(conn: h2.connection.H2Connection, stream_id: int) -> None:
    """No Content-Length; padded DATA frames; the end is an empty DATA frame with END_STREAM."""
    conn.send_headers(stream_id, [(b":status", b"200"), (b"content-type", b"application/octet-stream")])
    for start, end, pad in ((0, 700, 0), (700, 701, 255), (701, 2048, 17)):
        conn.send_data(stream_id, BODY[start:end], pad_length=pad)
    conn.send_data(stream_id, b"", end_stream=True, pad_length=3)


def with_trailers(conn: h2.connection.H2Connection, stream_id: int) -> None:
    """The whole body arrives first; only the trailers' END_STREAM completes it."""
    conn.send_headers(stream_id, [(b":status", b"200"), (b"content-length", b"2048")])
    conn.send_data(stream_id, BODY[:1024])
    conn.send_data(stream_id, BODY[1024:], pad_length=8)
    conn.send_headers(stream_id, [(b"x-checksum", b"ok")], end_stream=True)


def in_headers_only(conn: h2.connection.H2Connection, stream_id: int) -> None:
    """An empty body: HEADERS with END_STREAM is the whole answer."""
    conn.send_headers(stream_id, [(b":status", b"204")], end_stream=True)


SCRIPTS = {
    "content-length": (frames_with_length, BODY),
    "padded-no-length": (padded_no_length, BODY),
    "trailers": (with_trailers, BODY),
    "headers-only": (in_headers_only, b""),
}


async def walk_offsets(
    server: H2CutServer, pool: httpstream.ConnectionPool, body: bytes, offsets: Callable[[int], list[int]]
) -> int:
    """One exchange per offset k, the invariants checked after each.  Returns the answer's length."""
    async with LeakCheck():
        full = await fetch(pool, server.url(1 << 30), deadline=DEADLINE)
        check_outcome(full, body, complete=True, context="the whole answer")
        (total,) = server.lengths
        await until(lambda: not pool._slots)
        for k in offsets(total):
            outcome = await fetch(pool, server.url(k), deadline=DEADLINE)
            check_outcome(
                outcome,
                body,
                complete=k >= total,
                errors=httpstream.TransportError,
                context=f"cut after byte {k} of {total}",
            )
            if k >= total:
                assert outcome.trailers == full.trailers
            # The peer ended the connection: the pool must notice and drop it
            # (else the next offset would be sent on a dead connection).
            await until(lambda: not pool._slots)
            await check_pool(pool)
    assert server.lengths == {total}, "the answer was not the same bytes every time"
    assert server.errors == []
    return total


@pytest.mark.parametrize("name", list(SCRIPTS))
async def test_h2c_cut_after_every_byte(name: str) -> None:
    script, body = SCRIPTS[name]
    async with H2CutServer(script) as server, h2c_pool() as pool:
        total = await walk_offsets(server, pool, body, lambda total: list(range(total + 1)))
    assert total > len(body)


async def test_trailers_arrive_whole() -> None:
    """The control for the "trailers" script: complete, trailers included, only at the very end."""
    async with H2CutServer(with_trailers) as server, h2c_pool() as pool:
        outcome = await fetch(pool, server.url(1 << 30), deadline=DEADLINE)
        check_outcome(outcome, BODY, complete=True)
        assert outcome.trailers == [(b"x-checksum", b"ok")]


@pytest.fixture
def tls_contexts(cert_files: dict[str, str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_files["cert"], cert_files["key"])
    server.set_alpn_protocols(["h2"])
    client = ssl.create_default_context(cafile=cert_files["ca"])
    client.set_alpn_protocols(["h2"])
    return server, client


async def test_tls_cut_after_sampled_bytes(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """Over TLS the cut ends with close_notify, an end that looks clean: still never complete.

    A TLS handshake per offset costs too much for every k: the first and last
    bytes, the first frame header's edges and a seeded sample of the rest.
    """
    server_context, client_context = tls_contexts
    script, body = SCRIPTS["padded-no-length"]
    rng = random.Random(2024)

    def offsets(total: int) -> list[int]:
        chosen = {0, 1, 8, 9, 10, total - 1, total, *rng.sample(range(total), 60)}
        return sorted(chosen)

    async with H2CutServer(script, ssl_context=server_context) as server, h2c_pool(verify=client_context) as pool:
        await walk_offsets(server, pool, body, offsets)


# -- a malformed body is a stream error, not a connection error ------------------------------------------

MALFORMED = {
    # name: (method, response fields, DATA sent), each against its own Content-Length or method
    "body-shorter-than-content-length": ("GET", [(b"content-length", b"100")], b"s" * 50),
    "body-longer-than-content-length": ("GET", [(b"content-length", b"10")], b"l" * 20),
    "body-on-a-head-response": ("HEAD", [(b"content-length", b"5")], b"hello"),
    "content-length-not-a-number": ("GET", [(b"content-length", b"ten")], b"0123456789"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_body_fails_only_its_stream(name: str) -> None:
    """RFC 9113 section 8.1.1: a malformed response is a *stream* error (PROTOCOL_ERROR).

    Regression: h2's own Content-Length tracking raised a connection error, so
    one bad response failed every other stream in flight on the connection and
    closed it.  The neighbour here is mid-body when the bad stream arrives.
    """
    method, fields, data = MALFORMED[name]
    neighbour = pattern(30_000)
    bad_sent = asyncio.Event()

    async def handle(conn: H2ServerConnection, stream: ServerStream) -> None:
        if stream.path == "/neighbour":
            conn.send_headers(stream.stream_id, 200, [(b"content-length", str(len(neighbour)).encode())])
            await conn.send_data(stream.stream_id, neighbour[:10_000])
            await bad_sent.wait()
            await conn.send_data(stream.stream_id, neighbour[10_000:], end=True)
        elif stream.path == "/bad":
            conn.send_headers(stream.stream_id, 200, fields)
            await conn.send_data(stream.stream_id, data, end=True)
            bad_sent.set()
        else:
            await conn.respond(stream.stream_id, b"after")

    async with H2FaultServer(handle) as server, h2c_pool() as pool:
        first = asyncio.create_task(fetch(pool, server.url("/neighbour"), deadline=DEADLINE))
        await server.until(lambda: len(server.requests) == 1)
        bad = await fetch(pool, server.url("/bad"), method=method, deadline=DEADLINE)
        check_outcome(bad, data, complete=False, errors=httpstream.RemoteProtocolError, context=name)
        check_outcome(await first, neighbour, complete=True, context=f"{name}: the other stream")
        after = await fetch(pool, server.url("/after"), deadline=DEADLINE)
        check_outcome(after, b"after", complete=True)
        assert server.accepted == 1, "the connection was torn down for one stream's error"
        assert server.goaways_received == 0
        await check_pool(pool)
        assert server.errors == []


async def test_write_timeout_is_not_stretched_by_other_streams() -> None:
    """An upload the server grants no window times out on time while other streams come and go.

    Regression: the wait for window was re-armed on every wake-up, and any
    stream ending on the connection wakes the senders; with a request ending
    more often than the write timeout, the stalled upload never timed out.
    """

    async def handle(conn: H2ServerConnection, stream: ServerStream) -> None:
        if stream.path != "/upload":
            await conn.respond(stream.stream_id, b"ok")

    # ack_data=False: the client's request body gets no WINDOW_UPDATE, ever.
    async with H2FaultServer(handle, on_headers=True, ack_data=False) as server, h2c_pool() as pool:
        timeout = httpstream.Timeout(connect=5, read=5, write=1.0, pool=5)
        upload = httpstream.Request("POST", server.url("/upload"), content=bytes(200_000), timeout=timeout)
        stop = asyncio.Event()

        async def chatter() -> None:
            while not stop.is_set():
                check_outcome(await fetch(pool, server.url("/small"), deadline=DEADLINE), b"ok", complete=True)
                await asyncio.sleep(0.1)

        other = asyncio.create_task(chatter())
        start = time.monotonic()
        try:
            outcome = await exchange(pool, upload)
        finally:
            stop.set()
            await other
        check_outcome(outcome, b"", complete=False, errors=httpstream.WriteTimeout)
        assert outcome.elapsed < 2.5, f"the write timeout is 1 s; the upload gave up after {outcome.elapsed:.1f} s"
        assert time.monotonic() - start > 0.9
        await check_pool(pool)


# -- 2. GOAWAY and RST_STREAM at random points ----------------------------------------------------------

FAULTS = ("goaway", "goaway-error", "rst", "drop")
METHODS = ("GET", "GET", "PUT", "POST")  # GET and PUT (bytes) may be retried; POST never is


def body_of(index: int, size: int) -> bytes:
    return pattern(size, offset=index * 97)  # each stream its own bytes: a mix-up shows


async def iterate(data: bytes) -> AsyncIterator[bytes]:
    """A request body that cannot be sent twice."""
    yield data


@dataclass
class Plan:
    """One seeded scenario: the streams, the order their frames go out, and the fault."""

    seed: int
    methods: list[str]
    sizes: list[int]
    fault: str
    rng: random.Random
    # Filled in by the server as the script runs:
    stream_of: dict[int, int] = field(default_factory=dict)  # request index -> stream id on connection 1
    finished: set[int] = field(default_factory=set)  # request indexes whose END_STREAM went out before the fault
    started: set[int] = field(default_factory=set)  # request indexes whose HEADERS went out before the fault
    last_stream_id: int | None = None
    reset_index: int | None = None
    reset_code: int | None = None
    ran = False

    @classmethod
    def make(cls, seed: int) -> Plan:
        rng = random.Random(seed)
        count = rng.randint(2, 6)
        return cls(
            seed=seed,
            methods=[rng.choice(METHODS) for _ in range(count)],
            sizes=[rng.choice((0, 1, rng.randint(2, 20_000), rng.randint(20_000, 70_000))) for _ in range(count)],
            fault=FAULTS[seed % len(FAULTS)],
            rng=rng,
        )

    def retriable(self, index: int) -> bool:
        return self.methods[index] in ("GET", "PUT")

    def expect_complete(self, index: int) -> bool:
        """Whether request ``index`` must end with its whole body, given what the server did."""
        if index in self.finished:
            return True
        stream_id = self.stream_of[index]
        if self.fault == "goaway":
            assert self.last_stream_id is not None
            return stream_id <= self.last_stream_id or self.retriable(index)
        if self.fault == "goaway-error":
            assert self.last_stream_id is not None
            return stream_id > self.last_stream_id and self.retriable(index)
        if self.fault == "rst":
            if index != self.reset_index:
                return True
            refused = self.reset_code == h2.errors.ErrorCodes.REFUSED_STREAM
            return refused and self.retriable(index)
        return False  # drop: whatever had not ended is lost

    def must_retry(self, index: int) -> bool:
        """The request is (re)sent a second time by the pool: never processed the first time."""
        if index in self.finished or not self.retriable(index):
            return False
        stream_id = self.stream_of[index]
        if self.fault in ("goaway", "goaway-error"):
            assert self.last_stream_id is not None
            return stream_id > self.last_stream_id
        return (
            self.fault == "rst" and index == self.reset_index and self.reset_code == h2.errors.ErrorCodes.REFUSED_STREAM
        )


class Scripted:
    """The server side of a ``Plan``: connection 1 runs the script, later ones answer plainly."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.arrived: list[ServerStream] = []
        self.headed: set[int] = set()  # request indexes whose response HEADERS went out

    async def handle(self, conn: H2ServerConnection, stream: ServerStream) -> None:
        index = int(stream.path.rsplit("/", 1)[-1])
        plan = self.plan
        if conn.index != 1 or plan.ran:
            await conn.respond(stream.stream_id, body_of(index, plan.sizes[index]))
            return
        self.arrived.append(stream)
        if len(self.arrived) < len(plan.sizes):
            return  # the last request to arrive runs the script for all of them
        plan.ran = True
        await self.run(conn)

    async def run(self, conn: H2ServerConnection) -> None:
        plan, rng = self.plan, self.plan.rng
        queues: dict[int, list[tuple[bytes, bool]]] = {}
        for stream in self.arrived:
            index = int(stream.path.rsplit("/", 1)[-1])
            plan.stream_of[index] = stream.stream_id
            body = body_of(index, plan.sizes[index])
            pieces: list[tuple[bytes, bool]] = []
            start = 0
            while start < len(body):
                end = min(len(body), start + rng.randint(1, 9000))
                pieces.append((body[start:end], end == len(body)))
                start = end
            queues[index] = pieces
        steps: list[int] = []  # request indexes, in the order their next frame goes out
        remaining = {index: 1 + len(pieces) for index, pieces in queues.items()}
        while remaining:
            index = rng.choice(sorted(remaining))
            steps.append(index)
            remaining[index] -= 1
            if not remaining[index]:
                del remaining[index]
        fault_at = rng.randint(0, len(steps))
        if plan.fault in ("goaway", "goaway-error"):
            # Chosen first: the server processes (sends anything on) no stream above it.
            last = plan.last_stream_id = rng.choice([0, *sorted(plan.stream_of.values())])
            before = [i for i in steps[:fault_at] if plan.stream_of[i] <= last]
            after = [i for i in steps[fault_at:] if plan.stream_of[i] <= last]
            for index in before:
                await self.step(conn, index, queues)
            code = 0 if plan.fault == "goaway" else h2.errors.ErrorCodes.INTERNAL_ERROR
            conn.goaway(last, code)
            if code:
                conn.close()
                return
            for index in after:
                await self.step(conn, index, queues, before_fault=False)
            await conn.server.until(lambda: conn.lost or all(i > last for i in conn.open))
            conn.close()
            return
        for index in steps[:fault_at]:
            await self.step(conn, index, queues)
        if plan.fault == "rst":
            open_ = sorted(i for i in plan.stream_of if i not in plan.finished)
            if open_:
                plan.reset_index = rng.choice(open_)
                codes = [h2.errors.ErrorCodes.CANCEL, h2.errors.ErrorCodes.INTERNAL_ERROR]
                if plan.reset_index not in plan.started:
                    codes.append(h2.errors.ErrorCodes.REFUSED_STREAM)
                plan.reset_code = rng.choice(codes)
                conn.reset(plan.stream_of[plan.reset_index], plan.reset_code)
            for index in steps[fault_at:]:
                if index != plan.reset_index:
                    await self.step(conn, index, queues, before_fault=False)
        else:
            conn.close()

    async def step(
        self,
        conn: H2ServerConnection,
        index: int,
        queues: dict[int, list[tuple[bytes, bool]]],
        before_fault: bool = True,
    ) -> None:
        plan = self.plan
        stream_id = plan.stream_of[index]
        pieces = queues[index]
        if index not in self.headed:
            self.headed.add(index)
            if before_fault:
                plan.started.add(index)
            length = plan.sizes[index]
            headers = [(b"content-length", str(length).encode())] if index % 2 else []
            conn.send_headers(stream_id, 200, headers, end=not pieces)
            if not pieces and before_fault:
                plan.finished.add(index)
            return
        data, end = pieces.pop(0)
        await conn.send_data(stream_id, data, end=end)
        if end and before_fault:
            plan.finished.add(index)


@pytest.mark.parametrize("seed", range(48))
async def test_goaway_and_reset_at_random_points(seed: int) -> None:
    plan = Plan.make(seed)
    scripted = Scripted(plan)

    def request(index: int) -> httpstream.Request:
        url = server.url(f"/r/{index}")
        method = plan.methods[index]
        if method == "POST":
            return httpstream.Request(method, url, content=iterate(b"x" * 100))
        return httpstream.Request(method, url, content=b"y" * 100 if method == "PUT" else None)

    # Leaks: the no_leaks fixture counts tasks and descriptors around each seed.
    async with H2FaultServer(scripted.handle) as server, h2c_pool() as pool:
        outcomes = await asyncio.gather(*(exchange(pool, request(i)) for i in range(len(plan.sizes))))
        assert plan.ran, "the requests did not all arrive on one connection"
        for index, outcome in enumerate(outcomes):
            where = (
                f"seed {seed}, {plan.fault}, request {index} ({plan.methods[index]}, stream {plan.stream_of[index]})"
            )
            unprocessed = plan.last_stream_id is not None and plan.stream_of[index] > plan.last_stream_id
            check_outcome(
                outcome,
                body_of(index, plan.sizes[index]),
                complete=plan.expect_complete(index),
                # Never processed and not replayable: the caller is told exactly that.
                errors=httpstream.StaleConnection if unprocessed else httpstream.TransportError,
                context=where,
            )
            sent = sum(1 for _, _, _, path in server.requests if path == f"/r/{index}")
            assert sent == (2 if plan.must_retry(index) else 1), f"{where}: sent {sent} times"
        await check_pool(pool)
        assert server.errors == []
