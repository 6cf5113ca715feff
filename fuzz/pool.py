"""Fuzz target ``pool``: a hypothesis state machine over a real ``ConnectionPool``.

Theory of operation
-------------------
``PoolMachine`` drives one ``ConnectionPool`` (limits drawn per example, often
tiny) against ``FakeServer``, a raw HTTP/1.1 server on 127.0.0.1 whose answer
the request path chooses: a Content-Length body, a chunked body, a
close-delimited body, half a body and then silence, or no answer at all.  The
rules interleave, in any order hypothesis likes:

- ``send``: a request starts (a task running ``pool.handle_request``), and
  its head is waited for, and its body read, or not;
- ``wait_head``: wait for one request's head (or its error);
- ``cancel_request``: cancel a request that is still waiting (for a
  connection, a slot, or its head);
- ``read``: read some chunks of an open body; ``read_all``: read it to the end;
- ``close``: close a body early; ``cancel_read``: cancel a task that is reading it;
- ``server_kills``: the server resets or closes one or all of its connections;
- ``wait``: time passes (drains end, keep-alive expires, read timeouts fire);
- ``close_pool``: ``pool.aclose()``, after which requests must fail with our errors.

Every rule's coroutine runs with ``session.run`` under a deadline of
``Settings.hang_after`` (its expiry is a ``Hang``); only ``HTTPStreamError``
may come out of the pool (else ``Escaped``); a body read to its end has
``content_length`` bytes (``Mismatch``).  After every step the invariants:
``pool.stats()`` has no negative count and its counts add up; no more
connections than ``max_connections``; a connection is connecting or active only
for a request that is still live (its task running, or its body open), so
``connecting + active`` never exceeds the live requests, and ``queued`` never
exceeds the waiting ones; once closed, the pool holds nothing (``Leak``).  At
teardown everything is closed, and then: nothing in use, no connection left in
the pool or open at the server, no task left running, no file descriptor more
than when the example began (``Leak``), and nothing only logged (``Noise``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import httpstream

from ._h1_wire import weighted
from ._harness import (
    CampaignResult,
    Escaped,
    Hang,
    Leak,
    Mismatch,
    Session,
    Settings,
    body_length,
    format_exception,
    run_machine_campaign,
)

__all__ = ["FakeServer", "PoolMachine", "run"]

T = TypeVar("T")
KINDS = ("len", "chunked", "close", "partial", "nohead")
SIZES = (0, 5, 3000, 100_000)  # 3000 drains (max_drain_bytes 4096), 100_000 does not


class FakeServer:
    """HTTP/1.1 on 127.0.0.1; ``GET /<kind>/<size>`` chooses the answer (see the module docstring)."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.open_connections = 0

    async def start(self) -> FakeServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, kind: str, size: int) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{size}"

    def kill(self, which: int | None, abort: bool) -> int:
        """Reset (``abort``) or close connection ``which`` (an index, modulo), or all of them."""
        writers = list(self._writers)
        if not writers:
            return 0
        chosen = writers if which is None else [writers[which % len(writers)]]
        for writer in chosen:
            if abort:
                writer.transport.abort()
            else:
                writer.close()
        return len(chosen)

    async def wait_all_closed(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.open_connections and loop.time() < deadline:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.002)
        return not self.open_connections

    async def reset(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        self.open_connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                _, kind, size_text = head.split(b" ", 2)[1].decode().split("/")
                size = int(size_text)
                body = b"x" * size
                if kind == "nohead":
                    await reader.read()  # until the client goes away
                    return
                if kind == "len":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + body)
                elif kind == "chunked":
                    chunk = b"%x\r\n%s\r\n" % (size, body) if size else b""
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + b"0\r\n\r\n")
                elif kind == "close":
                    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
                    await writer.drain()
                    return
                else:  # partial: half the body, then silence
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + body[: size // 2])
                    await writer.drain()
                    await reader.read()
                    return
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass  # the client went away, or a kill or reset ended it: all normal here
        finally:
            self.open_connections -= 1
            with contextlib.suppress(ValueError):
                self._writers.remove(writer)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._tasks.discard(task)


@dataclass(slots=True)
class Exchange:
    """One request of the machine and what became of it."""

    task: asyncio.Task[httpstream.Response]
    response: httpstream.Response | None = None
    received: int = 0
    label: str | None = None  # final outcome, once the exchange is over
    reader: asyncio.Task[None] | None = field(default=None)

    @property
    def waiting(self) -> bool:
        return self.label is None and self.response is None

    @property
    def open(self) -> bool:
        return self.label is None and self.response is not None

    def live(self) -> bool:
        """The request still owns (or may still get) a connection."""
        if not self.task.done():
            return True
        if self.task.cancelled() or self.task.exception() is not None:
            return False
        return not self.task.result().stream.is_closed  # type: ignore[union-attr]


limits_strategy = st.builds(
    httpstream.Limits,
    max_connections=weighted((2, 2), (1, 1), (4, 1)),
    max_keepalive_connections=weighted((2, 2), (0, 1), (1, 1)),
    keepalive_expiry=weighted((5.0, 3), (0.02, 1), (None, 1)),
    max_drain_bytes=st.just(4096),
    drain_timeout=weighted((0.2, 3), (0.02, 1)),
    read_high_water=weighted((1024 * 1024, 3), (4096, 1)),
    read_low_water=st.just(1024),
)
indices = st.integers(0, 7)


class PoolMachine(RuleBasedStateMachine):
    """See the module docstring."""

    def __init__(self, session: Session, server: FakeServer) -> None:
        super().__init__()
        self.session = session
        self.server = server
        self.settings = session.settings
        session.begin()
        self.loop = session.runner.get_loop()
        self.fds = _open_fds()
        self.pool: httpstream.ConnectionPool | None = None
        self.limits = httpstream.Limits()
        self.exchanges: list[Exchange] = []
        self.closed = False

    # -- helpers ------------------------------------------------------------------------
    def _run(self, what: str, coro: Coroutine[Any, Any, T]) -> T:
        async def bounded() -> T:
            try:
                async with asyncio.timeout(self.settings.hang_after):
                    return await coro
            except TimeoutError:
                raise Hang(f"{what} did not finish within {self.settings.hang_after:g} s; {self._state()}") from None

        return self.session.run(bounded())

    def _state(self) -> str:
        assert self.pool is not None
        return f"pool {self.pool.stats()} slots={self.pool._slots!r}; server connections {self.server.open_connections}"

    def _pick(self, index: int, *, waiting: bool = False, open_: bool = False) -> Exchange | None:
        chosen = [e for e in self.exchanges if (waiting and e.waiting) or (open_ and e.open)]
        return chosen[index % len(chosen)] if chosen else None

    def _finish(self, exchange: Exchange, label: str) -> None:
        exchange.label = label
        self.session.result.outcomes[label] += 1

    def _error(self, what: str, exchange: Exchange, exc: BaseException) -> None:
        if isinstance(exc, httpstream.HTTPStreamError):
            self._finish(exchange, type(exc).__name__)
            return
        raise Escaped(f"{what}: {type(exc).__name__} is not an HTTPStreamError:\n{format_exception(exc)}") from exc

    def _collect(self, exchange: Exchange) -> None:
        """Take in a finished request task: a response, or how it failed."""
        task = exchange.task
        if task.cancelled():
            self._finish(exchange, "cancelled")
            return
        exc = task.exception()
        if exc is not None:
            self._error("handle_request", exchange, exc)
        else:
            exchange.response = task.result()

    async def _read(self, exchange: Exchange, chunks: int | None) -> None:
        response = exchange.response
        assert response is not None
        stream = response.stream
        try:
            count = 0
            while chunks is None or count < chunks:
                try:
                    chunk = await stream.__anext__()
                except StopAsyncIteration:
                    length = body_length(response)
                    if length is not None and exchange.received != length:
                        raise Mismatch(
                            f"a body read to its end has {exchange.received} bytes, content_length is {length}"
                        ) from None
                    self._finish(exchange, "complete")
                    return
                exchange.received += len(chunk)
                count += 1
        except httpstream.HTTPStreamError as exc:
            self._error("reading the body", exchange, exc)

    # -- rules --------------------------------------------------------------------------
    # Preconditions look only at what the rules did, never at how the network
    # answered (that varies between runs, and hypothesis must be able to replay a
    # sequence of rules): a rule that finds no exchange in the state it needs does
    # nothing.
    @initialize(limits=limits_strategy)
    def open_pool(self, limits: httpstream.Limits) -> None:
        self.limits = limits
        timeout = httpstream.Timeout(
            connect=1.0, read=self.settings.read_timeout, write=1.0, pool=2 * self.settings.read_timeout
        )
        self.pool = httpstream.ConnectionPool(limits=limits, timeout=timeout, trust_env=False)

    @precondition(lambda self: len(self.exchanges) < 12)
    @rule(
        kind=weighted(("len", 6), ("chunked", 2), ("close", 2), ("partial", 1), ("nohead", 1)),
        size=st.sampled_from(SIZES),
        turns=st.integers(0, 4),
        then=weighted(("head", 3), ("read", 2), ("turns", 2)),
    )
    def send(self, kind: str, size: int, turns: int, then: str) -> None:
        """Start a request; then wait for its head (and read its body), or only turn the loop."""
        assert self.pool is not None
        request = httpstream.Request("GET", self.server.url(kind, size))
        task = self.loop.create_task(self.pool.handle_request(request))
        exchange = Exchange(task)
        self.exchanges.append(exchange)
        if then == "turns":
            self._run("send", _turns(turns))
            return
        self._run("waiting for a head", asyncio.wait({task}))
        self._collect(exchange)
        if then == "read" and exchange.open:
            self._run("reading to the end", self._read(exchange, None))

    @rule(index=indices)
    def wait_head(self, index: int) -> None:
        exchange = self._pick(index, waiting=True)
        if exchange is None:
            return
        self._run("waiting for a head", asyncio.wait({exchange.task}))
        self._collect(exchange)

    @rule(index=indices)
    def cancel_request(self, index: int) -> None:
        exchange = self._pick(index, waiting=True)
        if exchange is None:
            return
        exchange.task.cancel()
        self._run("a cancelled request", asyncio.wait({exchange.task}))
        self._collect(exchange)  # it may have finished before the cancel landed

    @rule(index=indices, chunks=st.integers(1, 3))
    def read(self, index: int, chunks: int) -> None:
        exchange = self._pick(index, open_=True)
        if exchange is None:
            return
        self._run("reading", self._read(exchange, chunks))

    @rule(index=indices)
    def read_all(self, index: int) -> None:
        exchange = self._pick(index, open_=True)
        if exchange is None:
            return
        self._run("reading to the end", self._read(exchange, None))

    @rule(index=indices)
    def close(self, index: int) -> None:
        exchange = self._pick(index, open_=True)
        if exchange is None or exchange.response is None:
            return
        self._run("closing a body", exchange.response.aclose())
        self._finish(exchange, "closed-early")

    @rule(index=indices, turns=st.integers(1, 6))
    def cancel_read(self, index: int, turns: int) -> None:
        exchange = self._pick(index, open_=True)
        if exchange is None or exchange.response is None:
            return
        reader = self.loop.create_task(self._read(exchange, None))
        self._run("a read to cancel", _turns(turns))
        reader.cancel()
        self._run("a cancelled read", asyncio.wait({reader}))
        if not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]
        if exchange.label is None:
            # DESIGN.md: a task cancelled while reading releases the stream as aclose() does.
            if not exchange.response.stream.is_closed:
                raise Leak(f"a read cancelled after {turns} loop turns left its body open; {self._state()}")
            self._finish(exchange, "read-cancelled")

    @rule(which=st.one_of(st.none(), indices), abort=st.booleans(), turns=st.integers(0, 4))
    def server_kills(self, which: int | None, abort: bool, turns: int) -> None:
        self.server.kill(which, abort)
        self._run("after a kill", _turns(turns))

    @rule(milliseconds=weighted((1, 3), (30, 2), (250, 1)))
    def wait(self, milliseconds: int) -> None:
        self._run("waiting", asyncio.sleep(milliseconds / 1000))

    # Late in an example only: every request after it just fails with PoolClosed.
    @precondition(lambda self: not self.closed and len(self.exchanges) >= 5)
    @rule()
    def close_pool(self) -> None:
        assert self.pool is not None
        self._run("pool.aclose()", self.pool.aclose())
        self.closed = True

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def stats_add_up(self) -> None:
        if self.pool is None:
            return
        stats = self.pool.stats()
        counts = (stats.connections, stats.connecting, stats.active, stats.idle, stats.draining, stats.queued)
        if min(counts) < 0:
            raise Mismatch(f"a negative count: {stats}")
        if stats.connections != stats.connecting + stats.active + stats.idle + stats.draining:
            raise Mismatch(f"the states do not add up to the connections: {stats}; {self._state()}")
        if self.limits.max_connections is not None and stats.connections > self.limits.max_connections:
            raise Mismatch(f"more than max_connections={self.limits.max_connections}: {stats}")
        live = sum(e.live() for e in self.exchanges)
        waiting = sum(not e.task.done() for e in self.exchanges)
        if stats.connecting + stats.active > live:
            raise Leak(f"{stats.connecting + stats.active} connections owned, {live} live requests; {self._state()}")
        if stats.queued > waiting:
            raise Leak(f"{stats.queued} queued, {waiting} requests waiting; {self._state()}")
        if self.closed and stats.connections:
            raise Leak(f"the closed pool still holds connections; {self._state()}")

    # -- teardown ------------------------------------------------------------------------------
    def teardown(self) -> None:
        try:
            if self.pool is not None:
                self._run("teardown", self._close_everything())
            self.session.run(self.server.reset())
        finally:
            self.session.end()

    async def _close_everything(self) -> None:
        assert self.pool is not None
        for exchange in self.exchanges:
            if exchange.label is None:
                self._finish(exchange, "waiting-at-teardown" if exchange.waiting else "open-at-teardown")
            exchange.task.cancel()
        tasks = [e.task for e in self.exchanges]
        if tasks:
            await asyncio.wait(tasks)
        for exchange in self.exchanges:
            if not exchange.task.cancelled() and exchange.task.exception() is None:
                await exchange.task.result().aclose()
        exchanges, self.exchanges = self.exchanges, []
        del exchanges
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.drain_timeout + 1.0
        while self.pool.stats().in_use:
            if loop.time() >= deadline:
                raise Leak(f"every request is closed, yet connections are in use: {self._state()}")
            await asyncio.sleep(0.002)
        await self.pool.aclose()
        if self.pool.stats().connections:
            raise Leak(f"pool.aclose() left connections behind: {self._state()}")
        if not await self.server.wait_all_closed(0.5):
            gc.collect()
            if not await self.server.wait_all_closed(0.5):
                raise Leak(
                    f"after pool.aclose() the server still has {self.server.open_connections} connection(s) open"
                )
        me = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not me and t not in self.server._tasks]
        for _ in range(50):
            if not others:
                break
            await asyncio.sleep(0.002)
            others = [t for t in asyncio.all_tasks() if t is not me and t not in self.server._tasks]
        if others:
            raise Leak(f"tasks still running after everything was closed: {others!r}")
        gc.collect()
        await asyncio.sleep(0)
        fds = _open_fds()
        if fds > self.fds:
            raise Leak(f"{fds - self.fds} more file descriptor(s) open than when the example began")


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def run(settings: Settings) -> CampaignResult:
    """The ``pool`` campaign: one fake server for the whole campaign, a machine per example."""

    async def start() -> FakeServer:
        return await FakeServer().start()

    async def stop(server: FakeServer) -> None:
        await server.aclose()

    return run_machine_campaign(target="pool", settings=settings, start=start, machine=PoolMachine, stop=stop, steps=25)
