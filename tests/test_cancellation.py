"""Cancellation at every await point of a request, and 10,000 random cancels.

Theory of operation
-------------------
"Every await point" is found, not guessed.  ``Checkpoints`` wraps a scenario's
coroutine and is what its task steps: each ``send``/``throw`` that comes back
with a yielded value is one suspension of the task (a checkpoint, in trio's
words), named by the httpstream function that waits, the scenario line that
led there and the count of earlier waits at that place.  A scenario is run once
to the end to list them, then once per suspension (the first two and the last
of a repeated wait, such as a body read's), cancelled there in two ways:

- ``at``: the task is cancelled while it waits there (the future it awaits is
  cancelled: the usual case, a timeout or a caller giving up);
- ``after``: the task is cancelled just as the thing it waited for completes,
  so the result is lost to the cancellation (a slot handed to a request at the
  moment it is cancelled: the case that orphans pool slots).

The exchange is full duplex: ``handle_request`` returns at the response head
while an ``Upload`` task (``_streams.Upload``) sends the rest of the request
body, so a request waits in two tasks.  While a run goes, a task factory on
the loop (``stepping_uploads``) wraps every upload the caller starts in a
``Checkpoints`` of its own, whose suspensions join the caller's list as
``upload:<waiting function>`` (``upload:body iterator`` when the upload waits
inside the caller's own body iterator).  Reaching the target there cancels the
caller's task, both ways: ``at`` while the upload waits there, ``after`` just as
what it waits for completes.  The upload is the library's to stop; the caller
only gives up.

Which function was waiting is taken from the profile hook's view of the frames
that unwound for the suspension (the innermost ``httpstream`` coroutine whose
yield is the task's); each scenario asserts that its interesting waits (connect,
TLS, ALPN wait, pool wait, head, body, and in the upload task the write drain,
flow control and the HTTP/3 send wait) were among the checkpoints cancelled, so
the test cannot silently stop covering them.  The duplex scenarios read an echo
of the upload while it still goes up, and are cancelled at the waits of both.

After every run the invariants of the issue are checked: the task ends
cancelled within a bound (no hang, no swallowed cancellation, no library error
instead), every body byte handed out is a prefix of the real body, the pool
settles to no connection in use, no queued request, no open stream, only idle
connections and no upload still running (``_streams._RUNNING``), the same pool
still serves a complete request, and once the client is closed no task and no
file descriptor is left behind.

The random loops then throw 10,000 streams (HTTP/1.1 and HTTP/2 on one pool)
and 2,000 more (HTTP/3) at random endings: read to the end, closed after the
first chunk, cancelled at a random suspension, or cut by a random timeout; the
pool must end with nothing in use and every body byte handed out a prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import h11
import pytest

import httpstream
from httpstream import _streams

from .peers.caddy import SMALL, Caddy
from .peers.servers import App, FaultServer, Receive, Scope, Send, open_fds, pattern

pytestmark = pytest.mark.usefixtures("no_leaks")

PACKAGE = str(Path(httpstream.__file__).parent)
RUN_BOUND = 10.0  # seconds a single run may take before it counts as a hang
SETTLE = 2.0  # seconds the pool gets to finish drains and resets after a cancel
_GENERATOR_FLAGS = (
    inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR
)


Site = tuple[str, int, int]  # (waiting httpstream function, line of the caller's await, occurrence)

UPLOAD = "upload:"  # the prefix of the sites of a request body's upload task
UPLOAD_BODY = "upload:body iterator"  # the upload waits inside the caller's own body iterator
_UPLOAD_RUN = _streams.Upload._run.__code__


class Checkpoints(Coroutine[Any, Any, Any]):
    """Steps ``inner`` for its task, naming each suspension; cancels the task at ``target``.

    A suspension is named by the waiting function, the line of the caller's
    own await, and how many times the run had waited there before:
    ``("BodyBuffer._wait", 312, 3)`` is the fourth body wait of the read on
    line 312.  Targets are named, not numbered, so a run that happens to wait
    once more for a body chunk still gets cancelled in the pool wait it was
    meant for (an int picks the n-th suspension, whatever it is).  ``late``
    picks the ``after`` flavour: the cancellation is
    requested by a done-callback of the awaited future, which runs before the
    task's own wake-up, so the task gets CancelledError instead of the result.

    With a ``parent``, this steps an ``Upload`` task of the parent's caller
    (see ``stepping_uploads``): its suspensions go into the parent's list, as
    ``upload:<waiting function>`` with the line of the await that called it
    (every upload starts on the same line of ``Upload._run``), and reaching the
    target there cancels the *caller's* task, the one whose request it is.
    """

    def __init__(
        self,
        inner: Coroutine[Any, Any, Any],
        target: Site | int | None = None,
        *,
        late: bool = False,
        parent: Checkpoints | None = None,
    ) -> None:
        self._inner = inner
        self.__name__ = f"Checkpoints({getattr(inner, '__qualname__', '?')})"  # what a task's repr shows
        self._target = target if parent is None else None
        self._late = late
        self._parent = parent
        self.reached = False  # the target was met (the cancellation may still be pending: ``late``)
        self.cancelled = False  # ... and the caller's task was cancelled there
        self.task: asyncio.Task[Any] | None = None  # the caller's task (set at its first step)
        self.sites: list[Site] = []  # every suspension, in order (the caller's and its uploads')
        self._seen: dict[tuple[str, int], int] = {}
        self._unwound: list[tuple[CodeType, int, object]] = []

    def send(self, value: Any) -> Any:
        return self._step(self._inner.send, value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and tb is None:
            return self._step(self._inner.throw, typ)
        return self._step(self._inner.throw, typ, val, tb)

    def close(self) -> None:
        self._inner.close()

    def __await__(self) -> Generator[Any, None, Any]:
        raise TypeError("Checkpoints is stepped by a task, not awaited")

    def _profile(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            self._unwound.clear()
        elif event == "return":
            self._unwound.append((frame.f_code, frame.f_lineno, arg))

    def _step(self, method: Callable[..., Any], *args: Any) -> Any:
        root = self._parent or self
        if root.task is None:
            root.task = asyncio.current_task()
        self._unwound.clear()
        previous = sys.getprofile()
        sys.setprofile(self._profile)
        try:
            yielded = method(*args)
        finally:
            sys.setprofile(previous)
        caller = root.task
        assert caller is not None
        if self._parent is not None and caller.done():
            return yielded  # the caller is gone: nothing left to cancel, not a checkpoint of the run
        where = self._where(yielded)
        site = (*where, root._seen.get(where, 0))
        root._seen[where] = site[2] + 1
        root.sites.append(site)
        if (site == root._target or len(root.sites) == root._target) and not root.reached:
            root.reached = True
            if root._late and isinstance(yielded, asyncio.Future):
                yielded.add_done_callback(lambda _: root._cancel())
            else:
                root._cancel()
        return yielded

    def _cancel(self) -> None:
        task = self.task
        if task is not None and task.cancel():
            self.cancelled = True

    def _where(self, yielded: object) -> tuple[str, int]:
        """The innermost httpstream coroutine that suspended with the task, and the caller's line.

        The frames of one suspension unwind last, innermost first, each
        returning the value the task gets; a coroutine that merely finished
        before them returned something else, or was followed by a call.
        """
        chain: list[tuple[CodeType, int]] = []  # outermost first
        for code, line, value in reversed(self._unwound):
            if value is not yielded or not code.co_flags & _GENERATOR_FLAGS:
                break
            chain.append((code, line))
        if not chain:
            return ("?", 0) if self._parent is None else (UPLOAD + "?", 0)
        ours = [i for i, (code, _) in enumerate(chain) if code.co_filename.startswith(PACKAGE)]
        if self._parent is None:
            caller_line = chain[0][1]
            return (chain[ours[-1] if ours else -1][0].co_qualname, caller_line)
        if not ours:
            return (UPLOAD + chain[-1][0].co_qualname, chain[-1][1])
        inner = ours[-1]
        if any(code.co_flags & inspect.CO_ASYNC_GENERATOR for code, _ in chain[inner + 1 :]):
            return (UPLOAD_BODY, chain[inner][1])  # the upload waits for the next chunk of the body
        return (UPLOAD + chain[inner][0].co_qualname, chain[max(inner - 1, 0)][1])

    @property
    def before_cancel(self) -> list[Site]:
        """The suspensions of the normal flow: up to the cancellation, or all of them."""
        if not self.cancelled or self._target not in self.sites:
            return self.sites
        return self.sites[: self.sites.index(self._target) + 1]


@contextlib.contextmanager
def stepping_uploads(steps: Checkpoints) -> Iterator[None]:
    """While active, every ``Upload`` task that ``steps``' task starts is stepped as part of ``steps``.

    A task factory on the running loop (the previous one is restored after)
    wraps the coroutine of a task whose coroutine is ``Upload._run`` and which
    is created from the caller's task (a sibling's uploads are left alone).
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        if getattr(coro, "cr_code", None) is _UPLOAD_RUN and asyncio.current_task() is steps.task is not None:
            coro = Checkpoints(coro, parent=steps)
        if previous is not None:
            return previous(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        yield
    finally:
        loop.set_task_factory(previous)


def targets(sites: list[Site]) -> list[Site]:
    """The suspensions worth a run each: the first two and the last at every await.

    A body read may wait twenty times at the same await in the same state;
    cancelling at each of them would cost runs and find nothing the first, the
    second (a wait after one chunk was handed out) and the last do not.
    """
    last: dict[tuple[str, int], int] = {}
    for name, line, occurrence in sites:
        last[(name, line)] = occurrence
    return [site for site in sites if site[2] < 2 or site[2] == last[(site[0], site[1])]]


# -- the peers --------------------------------------------------------------------------------------


class PacedApp(App):
    """The test app plus ``/paced/N[?gap=MS]``: N pattern bytes in 16 KiB pieces, MS (2) ms apart.

    A body that takes a few milliseconds to arrive is what makes an early close
    leave a remainder on the wire (so HTTP/1.1 really drains and HTTP/2 really
    resets) and what lets a body read wait more than once.
    """

    async def h_paced(self, scope: Scope, receive: Receive, send: Send, args: list[str], q: dict[str, str]) -> None:
        size = int(args[0])
        gap = int(q.get("gap", "2")) / 1000
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % size)]})
        sent = 0
        while sent < size:
            piece = min(16384, size - sent)
            await send({"type": "http.response.body", "body": pattern(piece, sent), "more_body": sent + piece < size})
            sent += piece
            await asyncio.sleep(gap)
        if size == 0:
            await send({"type": "http.response.body", "body": b""})


PACED_SERVERS = r"""
import json, sys
from hypercorn.config import Config
from tests.peers.duplex import DuplexApp
from tests.peers.servers import HypercornServer
from tests.test_cancellation import PacedApp

# hypercorn ends a connection after 1,000 requests with GOAWAY, after which h2
# (as the server) refuses the client's RST_STREAM for streams still open and
# drops the connection: a server limit, not what these tests are about.
Config.keep_alive_max_requests = 10**9

cert, key = sys.argv[1:3]
servers = {
    "http": HypercornServer(PacedApp()),
    "https": HypercornServer(PacedApp(), certfile=cert, keyfile=key),
    "h2": HypercornServer(PacedApp(), certfile=cert, keyfile=key, alpn=("h2", "http/1.1")),
    "duplex": HypercornServer(DuplexApp()),
    "duplex_h2": HypercornServer(DuplexApp(), certfile=cert, keyfile=key, alpn=("h2", "http/1.1")),
    # HTTP/3 on the same port number over UDP (hypercorn's QUIC is aioquic).
    "h3": HypercornServer(PacedApp(), certfile=cert, keyfile=key, alpn=("h2", "http/1.1"), quic=True),
}
for server in servers.values():
    server.start()
print(json.dumps({name: server.url("") for name, server in servers.items()}), flush=True)
sys.stdin.read()  # until our stdin closes: the test is over (or its process died)
for server in servers.values():
    server.stop()
"""


@pytest.fixture(scope="module")
def paced(cert_files: dict[str, str]) -> Iterator[dict[str, str]]:
    """Base URLs of hypercorn serving PacedApp: plain, TLS (HTTP/1.1), TLS with h2 and QUIC (``h3``);
    and ``duplex``/``duplex_h2``: DuplexApp (``/echo``, tests/peers/duplex.py), plain and TLS with h2.

    The servers run in a process of their own: every socket in this process is
    then the client's, so the descriptor count after a run says exactly whether
    the client closed its own (an in-process server holds its side of a reset
    connection for a while, which reads as a leak).
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", PACED_SERVERS, cert_files["cert"], cert_files["key"]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # hypercorn logs writes to connections the client reset
        cwd=Path(__file__).parent.parent,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        urls: dict[str, str] = json.loads(proc.stdout.readline())
        yield {name: url.rstrip("/") for name, url in urls.items()}
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.terminate()  # nothing to shut down gracefully: the servers hold no state we need
        proc.wait(10)
        proc.stdout.close()


async def slow_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP/1.1 upload sink that reads 64 KiB per millisecond.

    Loopback sockets take megabytes before a write blocks; a body larger than
    that, read this slowly, is what makes the client wait for its write buffer
    to drain.  Answers like ``/upload``: the count and whether the bytes were
    the pattern.
    """
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            received = 0
            ok = True
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    await asyncio.sleep(0.001)
                elif isinstance(event, h11.Data):
                    ok = ok and bytes(event.data) == pattern(len(event.data), received)
                    received += len(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
            body = json.dumps({"received": received, "pattern_ok": ok}).encode()
            head = h11.Response(status_code=200, headers=[("content-length", str(len(body)))])
            writer.write(conn.send(head) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            conn.start_next_cycle()
    except h11.ProtocolError:
        return  # the client gave up mid-request: that is the test


# -- what a run hands out, and the checks on it -----------------------------------------------------


@dataclass
class Body:
    """Bytes handed to the caller for one response, against the real body."""

    expected: Callable[[int], bytes]
    size: int
    got: bytearray = field(default_factory=bytearray)
    complete: bool = False

    def check(self) -> None:
        assert bytes(self.got) == self.expected(len(self.got)), "bytes handed out are not a prefix of the body"
        if self.complete:
            assert len(self.got) == self.size, f"body ended after {len(self.got)} of {self.size} bytes"


def zeros(size: int) -> bytes:
    return bytes(size)


def small(size: int) -> bytes:
    return SMALL[:size]


class Record:
    def __init__(self) -> None:
        self.bodies: list[Body] = []

    def body(self, size: int, expected: Callable[[int], bytes] = pattern) -> Body:
        body = Body(expected, size)
        self.bodies.append(body)
        return body

    def whole(self, data: bytes, size: int, expected: Callable[[int], bytes] = pattern) -> None:
        body = self.body(size, expected)
        body.got += data
        body.complete = True


async def read_all(response: httpstream.Response, body: Body) -> None:
    async with contextlib.aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            body.got += chunk
    body.complete = True


async def read_some(response: httpstream.Response, body: Body, count: int) -> None:
    async with contextlib.aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            body.got += chunk
            count -= 1
            if count == 0:
                return
    body.complete = True


def pool_of(client: httpstream.AsyncClient) -> httpstream.ConnectionPool:
    pool = client.transport
    assert isinstance(pool, httpstream.ConnectionPool)
    return pool


def settled(pool: httpstream.ConnectionPool) -> bool:
    stats = pool.stats()
    return (stats.in_use, stats.queued, stats.streams, stats.connections) == (0, 0, 0, stats.idle)


def uploads_running(before: frozenset[asyncio.Task[None]] = frozenset()) -> set[asyncio.Task[None]]:
    """``Upload`` tasks still sending a request body (``_streams._RUNNING``), other than ``before``."""
    return {task for task in _streams._RUNNING if not task.done()} - before


async def settle(
    pool: httpstream.ConnectionPool, bound: float = SETTLE, uploads_before: frozenset[asyncio.Task[None]] = frozenset()
) -> None:
    """Wait (bounded) for drains, resets and uploads to finish, then check the pool is at rest."""
    deadline = time.monotonic() + bound
    for _ in range(int(bound / 0.005)):
        if (settled(pool) and not uploads_running(uploads_before)) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.005)
    assert settled(pool), f"pool not at rest: {pool.stats()}"
    assert not uploads_running(uploads_before), f"uploads still running: {uploads_running(uploads_before)}"


def other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def no_leftovers(tasks_before: set[asyncio.Task[Any]], fds_before: int) -> None:
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        if not other_tasks() - tasks_before and open_fds() <= fds_before:
            return
        await asyncio.sleep(0.005)
    assert not other_tasks() - tasks_before, f"tasks left behind: {other_tasks() - tasks_before}"
    assert open_fds() <= fds_before, f"file descriptors left behind: {open_fds()} > {fds_before}"


# -- scenarios ------------------------------------------------------------------------------------------

Run = Callable[[httpstream.AsyncClient, Record], Coroutine[Any, Any, None]]


@dataclass
class Scenario:
    """A caller's requests, the client it uses and the waits it must get cancelled in."""

    run: Run
    options: dict[str, Any]
    check_url: str
    check: Callable[[httpstream.Response], bool]
    must_cover: set[str]
    sibling: Run | None = None  # another request on the same client, at the same time: it must not suffer
    sibling_first: bool = True  # the sibling's request opens the connection (else the scenario's does)
    check_body: bytes | None = None  # the follow-up is a POST of this body (else a GET)


def stream_then_get(base: str, size: int = 300_000) -> Run:
    async def run(client: httpstream.AsyncClient, record: Record) -> None:
        async with client.stream("GET", f"{base}/paced/{size}") as r:
            await read_all(r, record.body(size))
        r = await client.get(f"{base}/bytes/5000")
        record.whole(r.content, 5000)

    return run


def early_close_then_get(base: str, size: int) -> Run:
    """Close after one chunk (a drain for a small remainder, a close or reset for a large one), then reuse."""

    async def run(client: httpstream.AsyncClient, record: Record) -> None:
        async with client.stream("GET", f"{base}/paced/{size}?gap=10") as r:
            await read_some(r, record.body(size), 1)
        r = await client.get(f"{base}/bytes/5000")
        record.whole(r.content, 5000)

    return run


def pool_wait(base: str, size: int) -> Run:
    """With max_connections=1: a second request waits for the busy connection, released meanwhile."""

    async def run(client: httpstream.AsyncClient, record: Record) -> None:
        async with client.stream("GET", f"{base}/paced/{size}?gap=10") as first:
            stream = first.stream
            assert isinstance(stream, httpstream.ResponseStream)
            record.body(size).got += await anext(aiter(stream))  # the stream stays open (aiter_raw would close it)
            asyncio.get_running_loop().call_soon(stream.close)
            r = await client.get(f"{base}/bytes/5000")
            record.whole(r.content, 5000)

    return run


def uploads(base: str, size: int, streamed: int) -> Run:
    """A bytes body, then a streamed one (an async iterator of 64 KiB pieces)."""

    async def run(client: httpstream.AsyncClient, record: Record) -> None:
        r = await client.post(f"{base}/upload", content=pattern(size))
        assert r.json() == {"received": size, "pattern_ok": True}

        async def pieces() -> AsyncIterator[bytes]:
            for offset in range(0, streamed, 65536):
                yield pattern(min(65536, streamed - offset), offset)

        r = await client.post(f"{base}/upload", content=pieces())
        assert r.json() == {"received": streamed, "pattern_ok": True}

    return run


def duplex_echo(base: str, chunks: int = 40, size: int = 16384, lead: int = 4) -> Run:
    """A streamed upload to ``/echo``, read back while it is still going up.

    The body iterator stays at most ``lead`` chunks ahead of the echo the
    caller has read, so the two tasks really overlap: the caller waits for
    echoed bytes while the upload waits for the caller (or for the transport).
    """

    async def run(client: httpstream.AsyncClient, record: Record) -> None:
        total = chunks * size
        body = record.body(total)
        progress = asyncio.Event()
        produced = 0

        async def pieces() -> AsyncIterator[bytes]:
            nonlocal produced
            for offset in range(0, total, size):
                while offset - len(body.got) >= lead * size:
                    progress.clear()
                    await progress.wait()
                produced = offset + size
                yield pattern(size, offset)

        async with client.stream("POST", f"{base}/echo", content=pieces()) as r:
            assert r.status_code == 200
            upload = r.extensions["upload"]
            assert isinstance(upload, _streams.Upload)
            async with contextlib.aclosing(r.aiter_raw()) as echoed:
                async for chunk in echoed:
                    if not body.got:
                        assert produced < total, "the first echoed byte came after the whole upload"
                    body.got += chunk
                    progress.set()
            body.complete = True
        assert await upload.wait() is True

    return run


def h2_mix(base: str) -> Run:
    async def run(client: httpstream.AsyncClient, record: Record) -> None:
        async with client.stream("GET", f"{base}/paced/200000") as r:
            assert r.http_version == "HTTP/2"
            await read_all(r, record.body(200_000))
        async with client.stream("GET", f"{base}/paced/1000000") as r:
            await read_some(r, record.body(1_000_000), 2)  # then RST_STREAM(CANCEL)
        r = await client.get(f"{base}/bytes/5000")
        record.whole(r.content, 5000)

    return run


async def sibling_get(base: str, client: httpstream.AsyncClient, record: Record) -> None:
    r = await client.get(f"{base}/bytes/20000")
    record.whole(r.content, 20000)


def h3_mix(base: str) -> Run:
    async def run(client: httpstream.AsyncClient, record: Record) -> None:
        r = await client.get(f"{base}/small")
        assert r.http_version == "HTTP/3"
        record.whole(r.content, len(SMALL), small)
        async with client.stream("GET", f"{base}/big") as r:
            await read_some(r, record.body(256 * 1024 * 1024, zeros), 3)  # then STOP_SENDING + RESET_STREAM
        r = await client.get(f"{base}/small")
        record.whole(r.content, len(SMALL), small)

    return run


def is_pattern(size: int) -> Callable[[httpstream.Response], bool]:
    return lambda r: r.content == pattern(size)


# -- the driver -----------------------------------------------------------------------------------------


@dataclass
class Coverage:
    runs: int = 0
    cancelled: set[Site] = field(default_factory=set)

    @property
    def sites(self) -> set[str]:
        return {name for name, _, _ in self.cancelled}


async def run_once(scenario: Scenario, target: Site | None, late: bool) -> Checkpoints:
    """One run of ``scenario``, cancelled at ``target``; checks every invariant."""
    tasks_before = other_tasks()
    fds_before = open_fds()
    uploads_before = frozenset(uploads_running())
    record = Record()
    sibling_record = Record()
    client = httpstream.AsyncClient(**scenario.options)
    task: asyncio.Task[Any] | None = None
    sibling: asyncio.Task[None] | None = None
    try:
        loop = asyncio.get_running_loop()
        # Tasks first run in the order they were created: the first one's request
        # opens the connection, the other waits for that handshake (the ALPN wait).
        if scenario.sibling is not None and scenario.sibling_first:
            sibling = loop.create_task(scenario.sibling(client, sibling_record))
        steps = Checkpoints(scenario.run(client, record), target, late=late)
        with stepping_uploads(steps):
            task = loop.create_task(steps)
            if scenario.sibling is not None and not scenario.sibling_first:
                sibling = loop.create_task(scenario.sibling(client, sibling_record))
            done, _ = await asyncio.wait([task], timeout=RUN_BOUND)
        where = f"cancelled {'after' if late else 'at'} {target}"
        assert task in done, f"{where}: hung; last suspended in {steps.sites[-1:]}"
        if steps.cancelled:
            if not task.cancelled():
                error = task.exception()
                raise AssertionError(f"{where}: the task ended with {error!r}, not CancelledError") from error
        else:
            task.result()  # a run that never reached its target must succeed
        if sibling is not None:
            await asyncio.wait_for(sibling, RUN_BOUND)
            assert all(body.complete for body in sibling_record.bodies), f"{where}: a concurrent request suffered"
        for body in record.bodies + sibling_record.bodies:
            body.check()
        pool = pool_of(client)
        await settle(pool, uploads_before=uploads_before)
        if scenario.check_body is None:
            follow_up = await asyncio.wait_for(client.get(scenario.check_url), RUN_BOUND)
        else:
            follow_up = await asyncio.wait_for(client.post(scenario.check_url, content=scenario.check_body), RUN_BOUND)
        assert scenario.check(follow_up), f"{where}: the pool served a wrong follow-up response"
        await settle(pool, uploads_before=uploads_before)
    finally:
        for leftover in (task, sibling):
            if leftover is not None and not leftover.done():
                leftover.cancel()  # the run failed: do not leave it running into the next
        await client.aclose()
    await no_leftovers(tasks_before, fds_before)
    return steps


async def cancel_everywhere(scenario: Scenario, *, limit: int = 300) -> Coverage:
    """Cancel ``scenario`` at each of its awaits, both ways; returns what was covered.

    The targets are the suspensions of an uncancelled run, plus any that a
    later run met on its way to its own target (timing decides how often a
    body read waits, say): each is tried once per flavour.  Timing also decides
    whether some waits happen at all (a drain that finished before the next
    request): a wait the scenario must cover gets a few more uncancelled runs to
    show up in.
    """
    coverage = Coverage()
    tried: dict[bool, set[Site]] = {False: set(), True: set()}

    async def sweep(found: list[Site]) -> None:
        for late in (False, True):
            todo = targets(found)
            while todo:
                target = todo.pop(0)
                if target in tried[late]:
                    continue
                tried[late].add(target)
                steps = await run_once(scenario, target, late)
                coverage.runs += 1
                assert coverage.runs < limit, "the scenario keeps finding new suspensions"
                if steps.cancelled:
                    coverage.cancelled.add(target)
                # Waits this run met that the uncancelled runs did not (their first
                # two occurrences: a later occurrence of a repeated wait is timing,
                # and two tasks interleaving would find a new "last" every run).
                todo.extend(site for site in steps.before_cancel if site[2] < 2 and site not in tried[late])

    for _ in range(5):
        full = await run_once(scenario, None, False)
        assert full.sites, "the scenario never waited"
        await sweep(full.sites)
        if scenario.must_cover <= coverage.sites:
            break
    missing = scenario.must_cover - coverage.sites
    assert not missing, f"never cancelled in {missing}; cancelled in {sorted(coverage.sites)}"
    return coverage


def client_options(cert_files: dict[str, str], **options: Any) -> dict[str, Any]:
    return {"verify": cert_files["ca"], "timeout": httpstream.Timeout.all(10), **options}


BODY = "BodyBuffer._wait"
HEAD_H1 = "HTTP11Connection.handle_request"
HEAD_MUX = "MultiplexedConnection.handle_request"  # HTTP/2 and HTTP/3 share the request path


async def test_h1_plain_every_checkpoint(paced: dict[str, str], cert_files: dict[str, str]) -> None:
    base = paced["http"]
    scenario = Scenario(
        stream_then_get(base),
        client_options(cert_files),
        f"{base}/bytes/7000",
        is_pattern(7000),
        {"happy_eyeballs", HEAD_H1, BODY},
    )
    coverage = await cancel_everywhere(scenario)
    assert len(coverage.cancelled) >= 5


async def test_h1_tls_every_checkpoint(paced: dict[str, str], cert_files: dict[str, str]) -> None:
    base = paced["https"]
    scenario = Scenario(
        stream_then_get(base),
        client_options(cert_files),
        f"{base}/bytes/7000",
        is_pattern(7000),
        {"happy_eyeballs", "_start_tls", HEAD_H1, BODY},
    )
    await cancel_everywhere(scenario)


async def test_h1_early_close_drain_every_checkpoint(paced: dict[str, str], cert_files: dict[str, str]) -> None:
    """A small remainder drains while the next request waits for the connection."""
    base = paced["http"]
    scenario = Scenario(
        early_close_then_get(base, 60_000),
        client_options(cert_files),
        f"{base}/bytes/7000",
        is_pattern(7000),
        {"happy_eyeballs", HEAD_H1, "ConnectionPool._wait_for_slot"},
    )
    await cancel_everywhere(scenario)


@pytest.mark.parametrize("size", [60_000, 400_000], ids=["drained", "closed"])
async def test_h1_pool_wait_every_checkpoint(paced: dict[str, str], cert_files: dict[str, str], size: int) -> None:
    """max_connections=1 and the connection busy: the second request waits in the pool."""
    base = paced["http"]
    scenario = Scenario(
        pool_wait(base, size),
        client_options(cert_files, limits=httpstream.Limits(max_connections=1)),
        f"{base}/bytes/7000",
        is_pattern(7000),
        {"ConnectionPool._wait_for_slot", HEAD_H1},
    )
    await cancel_everywhere(scenario)


async def test_h1_upload_every_checkpoint(cert_files: dict[str, str]) -> None:
    """Request bodies the server reads slowly: cancelled while waiting for the write drain.

    Plain TCP: asyncio's TLS transport takes a single large write without ever
    pausing its protocol, so only this shows the drain of a ``bytes`` body.
    """
    async with FaultServer(slow_sink) as server:
        base = server.url("").rstrip("/")
        scenario = Scenario(
            uploads(base, 5_000_000, 5_000_000),
            client_options(cert_files),
            f"{base}/upload",
            lambda r: r.json() == {"received": 0, "pattern_ok": True},
            {UPLOAD + "H1Protocol.drain", HEAD_H1},
        )
        await cancel_everywhere(scenario)


@pytest.mark.parametrize("sibling_first", [True, False], ids=["waits-for-alpn", "connects-for-another"])
async def test_h2_every_checkpoint(paced: dict[str, str], cert_files: dict[str, str], sibling_first: bool) -> None:
    """Full read, reset after an early close, reuse; beside a concurrent request.

    Either the scenario's first request waits for the sibling's TLS handshake
    (ALPN) and is cancelled there, or it is the one connecting while the sibling
    waits for its answer: cancelled in the connect or the handshake, it must
    leave the sibling to connect on its own, not waiting forever.
    """
    base = paced["h2"]
    must_cover = {HEAD_MUX, BODY}
    must_cover |= {"ConnectionPool._wait_for_slot"} if sibling_first else {"happy_eyeballs", "_start_tls"}
    scenario = Scenario(
        h2_mix(base),
        client_options(cert_files, http2=True),
        f"{base}/bytes/7000",
        is_pattern(7000),
        must_cover,
        sibling=lambda client, record: sibling_get(base, client, record),
        sibling_first=sibling_first,
    )
    await cancel_everywhere(scenario)


async def test_h2_upload_every_checkpoint(paced: dict[str, str], cert_files: dict[str, str]) -> None:
    """Uploads wait for HTTP/2 flow-control credit: cancelled there too."""
    base = paced["h2"]
    scenario = Scenario(
        uploads(base, 300_000, 200_000),
        client_options(cert_files, http2=True),
        f"{base}/bytes/7000",
        is_pattern(7000),
        {"happy_eyeballs", "_start_tls", UPLOAD + "H2Protocol._wait", HEAD_MUX},
    )
    await cancel_everywhere(scenario)


async def test_h3_upload_every_checkpoint(paced: dict[str, str], cert_files: dict[str, str]) -> None:
    """Uploads over HTTP/3 (hypercorn's QUIC) wait while too much of the stream is unacknowledged.

    hypercorn, not caddy: caddy has no upload sink.  In the servers' own
    process, because hypercorn's HTTP/3 answers a stream the client reset with
    a 500 it cannot send, and raises the error when it shuts down.
    """
    base = paced["h3"]
    scenario = Scenario(
        uploads(base, 1_500_000, 1_500_000),
        client_options(cert_files, http3="only"),
        f"{base}/bytes/7000",
        lambda r: r.content == pattern(7000) and r.http_version == "HTTP/3",
        {"connect_h3", UPLOAD + "H3Protocol._wait_send", HEAD_MUX},
    )
    await cancel_everywhere(scenario)


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/2"])
async def test_duplex_every_checkpoint(paced: dict[str, str], cert_files: dict[str, str], version: str) -> None:
    """A streamed upload echoed back while it goes up: cancelled at every wait of the caller and the upload."""
    base = paced["duplex"] if version == "HTTP/1.1" else paced["duplex_h2"]
    must_cover = {"happy_eyeballs", BODY, UPLOAD_BODY}
    must_cover |= {HEAD_H1} if version == "HTTP/1.1" else {"_start_tls", HEAD_MUX}
    scenario = Scenario(
        duplex_echo(base),
        client_options(cert_files, http2=version == "HTTP/2"),
        f"{base}/echo",
        lambda r: r.content == b"ping" and r.http_version == version,
        must_cover,
        check_body=b"ping",
    )
    coverage = await cancel_everywhere(scenario)
    assert any(name.startswith(UPLOAD) for name, _, _ in coverage.cancelled)


async def test_h3_every_checkpoint(caddy: Caddy, cert_files: dict[str, str]) -> None:
    """HTTP/3 against caddy (quic-go): handshake, head, body, reset after an early close."""
    base = caddy.url("").rstrip("/")
    scenario = Scenario(
        h3_mix(base),
        client_options(cert_files, http3="only"),
        f"{base}/small",
        lambda r: r.content == SMALL and r.http_version == "HTTP/3",
        {"connect_h3", HEAD_MUX, BODY},
    )
    await cancel_everywhere(scenario)


# -- 10,000 random cancels ------------------------------------------------------------------------------

RANDOM_STREAMS = 10_000
WORKERS = 48


@dataclass
class Tally:
    full: int = 0
    early: int = 0
    cancelled: int = 0
    timed_out: int = 0
    errors: list[BaseException] = field(default_factory=list)


Pick = Callable[[random.Random, str], tuple[str, Body]]


def pick_paced(base: str) -> Pick:
    """Small bodies from hypercorn, sent at once or paced; early closes get a remainder to drop."""

    def pick(rng: random.Random, kind: str) -> tuple[str, Body]:
        size = rng.choice((0, 100, 5000, 20000, 70000, 200_000)) if kind != "early" else rng.choice((70_000, 300_000))
        url = f"{base}/bytes/{size}" if rng.random() < 0.7 else f"{base}/paced/{size}?gap=1"
        return url, Body(pattern, size)

    return pick


def pick_caddy(base: str) -> Pick:
    """caddy's /small, or its 256 MiB /big for the streams that end early anyway."""

    def pick(rng: random.Random, kind: str) -> tuple[str, Body]:
        if kind == "full" or (kind != "early" and rng.random() < 0.5):
            return f"{base}/small", Body(small, len(SMALL))
        return f"{base}/big", Body(zeros, 256 * 1024 * 1024)

    return pick


async def random_stream(client: httpstream.AsyncClient, pick: Pick, rng: random.Random, tally: Tally) -> None:
    """One stream, read to the end, closed early, cancelled at a random suspension, or timed out."""
    kind = rng.choice(("full", "early", "cancel", "cancel", "timeout"))
    url, body = pick(rng, kind)

    async def read() -> None:
        async with client.stream("GET", url) as r:
            if kind == "early":
                stream = r.stream
                assert isinstance(stream, httpstream.ResponseStream)
                body.got += await anext(aiter(stream))
                return
            await read_all(r, body)

    if kind == "cancel":
        task = asyncio.get_running_loop().create_task(Checkpoints(read(), rng.randint(1, 6)))
        try:
            await asyncio.wait_for(asyncio.shield(task), RUN_BOUND)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this worker itself was cancelled
            tally.cancelled += 1
    elif kind == "timeout":
        try:
            async with asyncio.timeout(rng.uniform(0, 0.01)):
                await read()
        except TimeoutError:
            tally.timed_out += 1
    else:
        await read()
        tally.early += kind == "early"
    if body.complete:
        tally.full += 1
    body.check()


@pytest.mark.timeout(150)
async def test_ten_thousand_random_cancels_and_early_closes(paced: dict[str, str], cert_files: dict[str, str]) -> None:
    """Mixed HTTP/1.1 and HTTP/2 streams on one pool, each read fully, closed early or
    cancelled at a random point: at the end the pool holds nothing in use."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    tally = Tally()
    remaining = RANDOM_STREAMS
    start = time.monotonic()
    h1, h2 = pick_paced(paced["http"]), pick_paced(paced["h2"])
    async with httpstream.AsyncClient(**client_options(cert_files, http2=True)) as client:
        pool = pool_of(client)

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                pick = h2 if rng.random() < 0.6 else h1
                try:
                    await random_stream(client, pick, rng, tally)
                except httpstream.HTTPStreamError as exc:
                    tally.errors.append(exc)

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(WORKERS))), 140)
        elapsed = time.monotonic() - start
        await settle(pool)
        stats = pool.stats()
        assert stats.connections == stats.idle >= 2, stats  # an HTTP/1.1 and an HTTP/2 connection at least
        r = await client.get(f"{paced['h2']}/bytes/7000")
        assert (r.http_version, r.content) == ("HTTP/2", pattern(7000))
        await settle(pool)
    context = f"seed {seed}, {elapsed:.1f} s, {tally}"
    assert not tally.errors, context
    assert tally.full > 2000 and tally.early > 1000 and tally.cancelled > 1000 and tally.timed_out > 100, context


async def test_random_cancels_over_http3(caddy: Caddy, cert_files: dict[str, str]) -> None:
    """The same over HTTP/3 (caddy, quic-go): STOP_SENDING + RESET_STREAM at random points."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    tally = Tally()
    remaining = 2000
    pick = pick_caddy(caddy.url("").rstrip("/"))
    async with httpstream.AsyncClient(**client_options(cert_files, http3="only")) as client:
        pool = pool_of(client)

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                try:
                    await random_stream(client, pick, rng, tally)
                except httpstream.HTTPStreamError as exc:
                    tally.errors.append(exc)

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(WORKERS))), 50)
        await settle(pool)
        r = await client.get(caddy.url("/small"))
        assert (r.http_version, r.content) == ("HTTP/3", SMALL)
        await settle(pool)
        assert pool.stats().connections == 1  # every stream shared the one QUIC connection
    context = f"seed {seed}, {tally}"
    assert not tally.errors, context
    assert tally.full > 300 and tally.early > 200 and tally.cancelled > 200 and tally.timed_out > 50, context


# -- regressions ------------------------------------------------------------------------------------------


def sockets_to(port: int) -> int:
    """This process's TCP sockets whose peer is ``port`` on loopback (TIME_WAIT ones hold no descriptor)."""
    count = 0
    with open("/proc/self/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                count += 1
    return count


async def test_cancelled_upload_to_a_stalled_server_leaves_no_socket_after_aclose() -> None:
    """A request cancelled mid-upload leaves unsent bytes; the pool forgets the closed
    connection, whose graceful close then waits forever for a peer that stopped
    reading.  pool.aclose() must still abort it (the socket outlived the pool before)."""
    release = asyncio.Event()

    async def stalled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()  # never reads the body

    async with FaultServer(stalled) as server:
        client = httpstream.AsyncClient()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.post(server.url(), content=bytes(16_000_000))  # more than the socket buffers take
        assert pool_of(client).stats().connections == 0
        assert sockets_to(server.port) == 1  # still flushing into a full window
        await client.aclose()
        assert sockets_to(server.port) == 0
        release.set()
