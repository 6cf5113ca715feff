"""Fuzz target ``h1``: hostile HTTP/1.1 responses against the pool and the client.

Theory of operation
-------------------
One example (a ``Case``) is: a set of ``Limits`` (often tiny, so the limits and
the backpressure paths are hit with small inputs), one to three requests, each
with a way to read its response (iterate the stream, ``aread()``, close after a
few chunks, close at once, or cancel the task after a few loop turns, also
while its connection is being opened unless ``Settings.cancel_while_connecting``
is off), and the
``Reply`` scripts the fake peer (``fuzz/_peer.py``) answers them with: response
bytes from ``fuzz/_h1_wire.py`` cut at drawn points, an end (keep the connection,
half-close, close, reset) and sometimes late bytes written a few loop turns
after the response, which land on an idle connection or on the next exchange.

Most cases go straight through ``ConnectionPool.handle_request``; some go
through ``AsyncClient`` (``get``/``stream``, redirects followed or not) with a
transport guard that refuses to leave the fake peer, so only loopback traffic
ever happens whatever a fuzzed ``Location`` says.

The rules checked for every request, then for the whole example:

- only ``HTTPStreamError`` subclasses reach the caller (``Escaped``); a
  ``CancelledError`` only where the harness cancelled;
- a body read to its end without error has the response's ``content_length``
  bytes, when that is known (``Mismatch``);
- the bytes handed out are a prefix of the body that h11, fed the connection's
  bytes at once, sees; a body reported complete is exactly that body, under the
  same final status (``Mismatch``; checked for pool cases where the peer's log
  says which bytes the request got);
- a connection carries another request only after a complete keep-alive
  response that did not come with bytes beyond its end (``Mismatch``);
- after the response is closed, ``pool.stats().in_use`` falls to 0 (at once, or
  once a drain ends, within ``drain_timeout``) (``Leak``);
- at the end every pooled connection is idle; after ``pool.aclose()`` the pool
  is empty and the peer sees every connection closed (``Leak``);
- the whole example ends within ``Settings.hang_after`` (``Hang``), and nothing
  is only logged (``Noise``, from the harness).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hypothesis import strategies as st

import httpstream

from ._h1_wire import Ref, mix, reference, responses, weighted
from ._harness import (
    CampaignResult,
    Escaped,
    FuzzFailure,
    Hang,
    Leak,
    Mismatch,
    Settings,
    body_length,
    format_exception,
    run_campaign,
)
from ._peer import Reply, ScriptedPeer, Served

__all__ = ["Case", "Plan", "cases", "run", "run_case"]

READS = ("iter", "aread", "early", "close", "cancel")


# -- what one example is ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Plan:
    """One request and how its response is read."""

    method: str  # GET, sometimes HEAD
    read: str  # one of READS
    count: int = 0  # chunks read before closing ("early"); loop turns before cancelling ("cancel")


@dataclass(frozen=True, slots=True)
class Case:
    api: str  # "pool" or "client"
    limits: httpstream.Limits
    requests: tuple[Plan, ...]
    replies: tuple[Reply, ...]
    follow_redirects: bool = False


@st.composite
def limits_strategy(draw: st.DrawFn) -> httpstream.Limits:
    """Often tiny limits: the limit and backpressure paths are hit with small inputs."""
    high_water, low_water = draw(weighted(((1024 * 1024, 256 * 1024), 4), ((64, 16), 2), ((1, 0), 1)))
    return httpstream.Limits(
        max_header_bytes=draw(weighted((64 * 1024, 4), (512, 1), (4096, 1))),
        max_header_count=draw(weighted((256, 4), (8, 1))),
        max_informational_responses=draw(weighted((16, 4), (1, 1))),
        read_high_water=high_water,
        read_low_water=low_water,
        max_drain_bytes=draw(weighted((64 * 1024, 4), (0, 1), (16, 1))),
        drain_timeout=draw(weighted((0.3, 4), (0.05, 1))),
        max_connections=draw(weighted((100, 4), (1, 1))),
        keepalive_expiry=draw(weighted((5.0, 4), (0.0, 1), (None, 1))),
    )


plans = st.builds(
    Plan,
    weighted(("GET", 8), ("HEAD", 1)),
    weighted(("iter", 4), ("aread", 3), ("early", 2), ("close", 1), ("cancel", 1)),
    st.integers(1, 6),
)

late_bytes = mix(
    (st.just(b""), 8),
    (weighted((b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1), (b"\r\n", 1)), 1),
    (st.binary(min_size=1, max_size=16), 1),
)


@st.composite
def replies(draw: st.DrawFn, wire: st.SearchStrategy[bytes]) -> Reply:
    data = draw(wire)
    split = draw(weighted(("cuts", 8), ("whole", 2), ("bytes", 1)))
    if split == "bytes" and len(data) <= 400:
        cuts = tuple(range(1, len(data)))
    elif split == "cuts":
        cuts = tuple(sorted(set(draw(st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=8)))))
    else:
        cuts = ()
    end = draw(weighted(("close", 4), ("keep", 4), ("abort", 1), ("eof", 1)))
    return Reply(data, cuts, end, draw(late_bytes))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    limits = draw(limits_strategy())
    wire = responses(limits.max_header_bytes, limits.max_header_count, limits.max_informational_responses)
    requests = tuple(draw(st.lists(plans, min_size=1, max_size=3)))
    count = len(requests) + draw(weighted((0, 3), (1, 1)))
    answers = tuple(draw(st.lists(replies(wire), min_size=count, max_size=count)))
    api = draw(weighted(("pool", 6), ("client", 1)))
    follow = api == "client" and draw(st.booleans())
    return Case(api, limits, requests, answers, follow)


# -- running one example -------------------------------------------------------------------
@dataclass(slots=True)
class Record:
    """What the caller saw of one request."""

    status: int | None = None
    content_length: int | None = None
    body: bytearray = field(default_factory=bytearray)
    completed: bool = False
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def label(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.error is not None:
            return type(self.error).__name__
        return "complete" if self.completed else "closed-early"


class LoopbackOnly:
    """The transport given to AsyncClient: the pool, but only towards the fake peer."""

    def __init__(self, pool: httpstream.ConnectionPool, port: int) -> None:
        self.pool = pool
        self._origin = ("http", "127.0.0.1", port)

    async def handle_request(self, request: httpstream.Request) -> httpstream.Response:
        if tuple(request.url.origin) != self._origin:
            raise httpstream.ConnectError(f"fuzz harness: not leaving the fake peer for {request.url}")
        return await self.pool.handle_request(request)

    async def aclose(self) -> None:
        await self.pool.aclose()


async def _read(response: httpstream.Response, plan: Plan, record: Record, *, raw_stream: bool) -> None:
    """Read the body as the plan says; the caller closes the response."""
    record.status = response.status_code
    record.content_length = body_length(response)
    if plan.read == "aread":
        record.body += await response.aread()
        record.completed = True
        return
    if plan.read == "close":
        return
    chunks = response.stream if raw_stream else response.aiter_bytes()
    seen = 0
    async for chunk in chunks:
        record.body += chunk
        seen += 1
        if plan.read == "early" and seen >= plan.count:
            break
    else:
        record.completed = True


async def _pool_exchange(pool: httpstream.ConnectionPool, url: str, plan: Plan, record: Record) -> None:
    response = None
    try:
        response = await pool.handle_request(httpstream.Request(plan.method, url))
        await _read(response, plan, record, raw_stream=True)
    finally:
        if response is not None:
            await response.aclose()


async def _client_exchange(client: httpstream.AsyncClient, url: str, plan: Plan, record: Record) -> None:
    if plan.read in ("iter", "aread"):
        response = await client.request(plan.method, url)
        record.status = response.status_code
        record.content_length = body_length(response)
        record.body += response.content
        record.completed = True
        return
    async with client.stream(plan.method, url) as response:
        await _read(response, plan, record, raw_stream=False)


async def _request(
    exchange: Callable[[Record], Awaitable[None]],
    index: int,
    plan: Plan,
    pool: httpstream.ConnectionPool,
    settings: Settings,
) -> Record:
    """Run one exchange; sort what comes out of it."""
    record = Record()
    try:
        if plan.read == "cancel":
            task = asyncio.ensure_future(exchange(record))
            for _ in range(plan.count):
                await asyncio.sleep(0)
            if not settings.cancel_while_connecting:
                # Never cancel while a connection is being opened (a retry or a redirect
                # may open one late).  The pool has no event for it; poll, turn by turn.
                while pool.stats().connecting and not task.done():  # noqa: ASYNC110
                    await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the safety net, not ours
                record.cancelled = True
        else:
            await exchange(record)
    except httpstream.HTTPStreamError as exc:
        record.error = exc
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        raise Escaped(
            f"request {index + 1} ({plan}): {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}"
        ) from exc
    return record


def _check_length(index: int, record: Record) -> None:
    known = record.completed and record.error is None and record.content_length is not None
    if known and len(record.body) != record.content_length:
        raise Mismatch(
            f"request {index + 1}: body read to its end has {len(record.body)} bytes, "
            f"but the response's content_length is {record.content_length} (status {record.status})"
        )


async def _settle(pool: httpstream.ConnectionPool, limits: httpstream.Limits, when: str) -> None:
    """Wait until no connection is in use (a drain may still be running), or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.drain_timeout + 1.0
    turns = 0
    while pool.stats().in_use:
        if loop.time() >= deadline:
            raise Leak(f"{when}: the pool still has connections in use: {pool.stats()} slots={pool._slots!r}")
        turns += 1
        await asyncio.sleep(0 if turns < 50 else 0.002)


# -- the reference: what the bytes on one connection say --------------------------------
# The peer writes, on one connection, the replies it served there one after the
# other (each one's wire bytes, then its late bytes).  HTTP/1.1 reads that byte
# stream in order: response n starts where response n-1 ended, whichever reply
# the bytes came from (late bytes that arrive after the next request went out
# are, rightly, the start of the next response).  So the reference parses the
# whole stream of the connection, message after message, with h11.

# A write this small reaches the client in one piece (the kernel does not split
# it), so bytes after the end of a response within it came together with that end.
UNSPLIT = 16 * 1024


@dataclass(frozen=True, slots=True)
class Message:
    served: Served
    ref: Ref
    start: int  # offset of the message in the connection's byte stream


def _method(served: Served) -> str:
    return served.request.split(b" ", 1)[0].decode("ascii", "replace")


def _messages(case: Case, entries: list[Served]) -> tuple[list[Message], bytes, list[int]]:
    """Parse the byte stream of one connection: one message per served request, in order.

    Returns the messages (stopping after the first incomplete one), the stream and
    the offsets where one write of the peer ends and the next begins.
    """
    data = b""
    bounds = [0]
    for served in entries:
        reply = case.replies[served.reply]
        bounds += [len(data) + cut for cut in reply.cuts]
        data += reply.wire
        bounds.append(len(data))
        data += reply.late
        bounds.append(len(data))
    eof = case.replies[entries[-1].reply].closes
    messages: list[Message] = []
    start = 0
    for served in entries:
        ref = reference(_method(served), data[start:], eof, case.limits.max_header_bytes)
        messages.append(Message(served, ref, start))
        if not ref.complete:
            break
        start = len(data) - len(ref.leftover)
    return messages, data, sorted(set(bounds))


def _check_reuse(case: Case, peer: ScriptedPeer) -> None:
    """RFC 9112 section 9.3: a connection carries a next request only when the response allows it.

    The peer answers a request only on a connection it has not ended, so every log
    entry after the first on a connection is a reuse by the client.  The response
    before it must be complete and keep-alive, and must not have come with bytes
    beyond its end in the same piece (those the client had in hand: it must not
    reuse the connection then).
    """
    for connection in sorted({served.connection for served in peer.log}):
        entries = [served for served in peer.log if served.connection == connection]
        messages, data, bounds = _messages(case, entries)
        for before, served in zip(messages, entries[1:], strict=False):
            ref = before.ref
            where = (
                f"the client sent another request on connection {connection} (answered with reply "
                f"{served.reply}) after reply {before.served.reply}"
            )
            if not (ref.complete and ref.keep_alive):
                raise Mismatch(
                    f"{where}, but h11 sees no complete keep-alive response there (complete={ref.complete}, "
                    f"keep-alive={ref.keep_alive}, status={ref.status}, error={ref.error})"
                )
            end = len(data) - len(ref.leftover)
            if ref.leftover and end not in bounds:
                piece_end = next(b for b in bounds if b > end)
                if piece_end <= UNSPLIT:
                    raise Mismatch(
                        f"{where}, but {piece_end - end} bytes beyond the end of that response came in the "
                        f"same write as its end (stream offset {end}): the client had them and still reused"
                    )


_BWS_CHUNK_EXT = re.compile(r"illegal chunk header: bytearray\(b'[0-9A-Fa-f]+[ \\t]+;")


def _check_reference(case: Case, peer: ScriptedPeer, index: int, plan: Plan, record: Record) -> None:
    """Compare what the caller got with h11's reading of the connection's bytes."""
    if record.status is None or len(peer.log) != index + 1:
        return  # no head, or a retry made the mapping from requests to replies ambiguous
    served = peer.log[index]
    entries = [e for e in peer.log if e.connection == served.connection]
    messages, _, _ = _messages(case, entries)
    if len(messages) < len(entries):
        return  # an earlier response on this connection was incomplete: _check_reuse reports it
    ref = messages[-1].ref
    where = f"request {index + 1} ({plan}), reply {served.reply}"
    if ref.error is not None and _BWS_CHUNK_EXT.search(ref.error):
        # h11 refuses whitespace before a chunk extension's ";", which RFC 9112
        # section 7.1.1 allows (BWS) and httpstream accepts: h11 cannot judge this
        # body, so only the head is compared.
        if ref.status is not None and ref.status != record.status:
            raise Mismatch(f"{where}: the client returned status {record.status}, h11 sees {ref.status}")
        return
    if ref.status is None:
        raise Mismatch(f"{where}: the client returned a {record.status} head but h11 sees none ({ref.error})")
    if ref.status != record.status:
        raise Mismatch(f"{where}: the client returned status {record.status}, h11 sees {ref.status}")
    body = bytes(record.body)
    if not ref.data.startswith(body):
        raise Mismatch(
            f"{where}: the client handed out {len(body)} bytes that are not a prefix of the body h11 sees "
            f"({len(ref.data)} bytes, complete={ref.complete}, error={ref.error})"
        )
    if record.completed and record.error is None and not (ref.complete and ref.data == body):
        raise Mismatch(
            f"{where}: the client reported a complete {len(body)}-byte body; h11 sees "
            f"complete={ref.complete} with {len(ref.data)} bytes (error={ref.error})"
        )


async def _drive(
    peer: ScriptedPeer, pool: httpstream.ConnectionPool, case: Case, settings: Settings, timeout: httpstream.Timeout
) -> list[str]:
    url = peer.url("/fuzz")
    labels: list[str] = []
    client = None
    if case.api == "client":
        client = httpstream.AsyncClient(
            transport=LoopbackOnly(pool, peer.port),
            timeout=timeout,
            follow_redirects=case.follow_redirects,
            max_redirects=2,
        )
    for index, plan in enumerate(case.requests):
        if client is None:
            exchange = functools.partial(_pool_exchange, pool, url, plan)
        else:
            exchange = functools.partial(_client_exchange, client, url, plan)
        record = await _request(exchange, index, plan, pool, settings)
        labels.append(record.label)
        _check_length(index, record)
        await _settle(pool, case.limits, f"after request {index + 1} ({plan}) ended with {record.label}")
        if client is None and not record.cancelled:
            _check_reference(case, peer, index, plan, record)
    _check_reuse(case, peer)
    not_idle = [slot for slot in pool._slots if slot.state != "idle"]
    if not_idle:
        raise Leak(f"after all requests, connections not idle: {not_idle!r}")
    return labels


async def run_case(peer: ScriptedPeer, case: Case, settings: Settings) -> list[str]:
    """One example: drive the requests, then close everything and check nothing leaked."""
    peer.load(case.replies)
    timeout = httpstream.Timeout(connect=2.0, read=settings.read_timeout, write=2.0, pool=2.0)
    pool = httpstream.ConnectionPool(limits=case.limits, timeout=timeout)
    failure: FuzzFailure | None = None
    labels: list[str] = []
    try:
        try:
            async with asyncio.timeout(settings.hang_after) as scope:
                labels = await _drive(peer, pool, case, settings, timeout)
        except TimeoutError:
            if not scope.expired():
                raise
            raise Hang(
                f"the example did not finish within {settings.hang_after:g} s; pool: {pool.stats()} "
                f"slots={pool._slots!r}; peer log: {peer.log}"
            ) from None
    except FuzzFailure as exc:
        failure = exc
    try:
        try:
            async with asyncio.timeout(2.0):
                await pool.aclose()
        except TimeoutError:
            raise Hang("pool.aclose() did not return within 2 s") from None
        except BaseException as exc:
            raise Escaped(f"pool.aclose() raised:\n{format_exception(exc)}") from exc
        if pool.stats().connections:
            raise Leak(f"pool.aclose() left connections behind: {pool._slots!r}")
        if not await peer.wait_all_closed(0.5):
            # A socket dropped without being closed is closed by the garbage collector
            # (and reported as a ResourceWarning, a Noise): collect it now so that the
            # same bug gives the same failure every time.  What is still open is a Leak.
            gc.collect()
            if not await peer.wait_all_closed(0.5):
                raise Leak(
                    f"after pool.aclose() the peer still has {peer.open_connections} connection(s) open: "
                    "the client dropped a connection without closing its socket"
                )
    except FuzzFailure as exc:
        failure = failure or exc
    finally:
        await peer.reset()
    if failure is not None:
        raise failure
    return labels


async def _read_request_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None


def run(settings: Settings) -> CampaignResult:
    """The ``h1`` campaign: ``settings.examples`` cases on one loop and one fake peer."""

    async def start() -> ScriptedPeer:
        return await ScriptedPeer(_read_request_head).start()

    async def example(peer: ScriptedPeer, case: Case) -> list[str]:
        return await run_case(peer, case, settings)

    async def stop(peer: ScriptedPeer) -> None:
        await peer.aclose()

    return run_campaign(target="h1", settings=settings, strategy=cases(), start=start, run_example=example, stop=stop)
