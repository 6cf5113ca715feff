"""The client side of the demo: the protocols it runs, the four steps, and every check.

``Demo.run(flavour)`` runs the steps over one protocol with one ``AsyncClient``;
each step prints what it saw, records a row of the final table, and checks its
claims against the server's own record (``DemoApp``) where it can.  A failed
check is collected in ``Demo.failures``; ``_run`` turns any into exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import httpstream

from ._progress import MB, make_bar
from ._server import DemoServer, ndjson_line, sse_event

__all__ = ["CHUNK", "FLAVOURS", "MiB", "Demo", "Flavour", "Row", "Sizes"]

MiB = 1024 * 1024
CHUNK = 65536

# Early-close sizes: the small remainder stays under Limits.max_drain_bytes (64 KiB
# by default), so HTTP/1.1 drains it and reuses the connection; the large one is far
# over.  The server pauses after SMALL_READ bytes so that, when the client closes,
# the rest is still on its way (on loopback it would otherwise already be buffered).
# The client must close within the pause, and over HTTP/1.1 the rest must then
# arrive within Limits.drain_timeout: there the pause is half the drain timeout,
# a margin both ways on a loaded machine.  HTTP/2 and HTTP/3 drain nothing, so
# they get a longer pause (the server's HTTP/2 side ends it when the reset arrives).
SMALL_BODY = 48 * 1024
SMALL_READ = 16 * 1024
MULTIPLEXED_PAUSE = 0.5
# Never sent in full: the server stops when the client goes, so the size costs nothing.
LARGE_BODY = 1024 * MiB
OUTCOME_TIMEOUT = 5.0  # how long the demo waits for the server to finish a tagged response


@dataclass(frozen=True, slots=True, kw_only=True)
class Flavour:
    """One protocol the demo runs its steps over."""

    label: str  # the http_version both ends must report
    http2: bool = False  # the AsyncClient(http2=, http3=) switches
    http3: bool | str = False
    transport: str  # how the client reaches the server, for the header lines
    # DESIGN.md's lifecycle table: HTTP/1.1 drains a small remainder and closes the
    # connection for a large one; HTTP/2 and HTTP/3 reset the stream either way.
    multiplexed: bool
    release_rule: str


FLAVOURS: tuple[Flavour, ...] = (
    Flavour(
        label="HTTP/1.1",
        transport="TCP + TLS, ALPN http/1.1",
        multiplexed=False,
        release_rule=(
            "HTTP/1.1 release rule: a known remainder <= max_drain_bytes ({max_drain} bytes) is\n"
            "drained in the background and the connection reused; a larger one closes the connection"
        ),
    ),
    Flavour(
        label="HTTP/2",
        http2=True,  # ALPN offers h2 and http/1.1; the server picks h2
        transport="TCP + TLS, ALPN h2",
        multiplexed=True,
        release_rule=(
            "HTTP/2 release rule: an early close sends RST_STREAM(CANCEL) and returns the unread\n"
            "bytes' flow-control credit; the connection stays open for the next requests"
        ),
    ),
    Flavour(
        label="HTTP/3",
        http3="only",  # straight to QUIC on the same port number, no Alt-Svc round trip
        transport="QUIC (UDP) + TLS 1.3, ALPN h3",
        multiplexed=True,
        release_rule=(
            "HTTP/3 release rule: an early close sends STOP_SENDING + RESET_STREAM\n"
            "(H3_REQUEST_CANCELLED); the QUIC connection stays open for the next requests"
        ),
    ),
)


@dataclass(slots=True)
class Row:
    """One line of the final table."""

    step: str
    protocol: str
    nbytes: int
    seconds: float
    result: str
    client_connects: int
    server_connections: int
    throughput: bool = False  # MB/s means something only for the bulk transfer

    @property
    def mb_per_s(self) -> str:
        if not self.throughput or self.seconds <= 0:
            return "-"
        return f"{self.nbytes / self.seconds / MB:.1f}"


@dataclass(slots=True)
class Sizes:
    """What the steps move: the download per protocol, and the paced streams."""

    download: dict[str, int] = field(default_factory=dict)  # by Flavour.label
    records: int = 8
    interval: float = 0.1


def _fmt_stats(stats: httpstream.PoolStats) -> str:
    return (
        f"connections={stats.connections} active={stats.active} idle={stats.idle} "
        f"draining={stats.draining} streams={stats.streams}"
    )


class Demo:
    """The client side: runs the steps, prints, and records what failed."""

    def __init__(self, server: DemoServer, out: TextIO, sizes: Sizes) -> None:
        self.server = server
        self.out = out
        self.sizes = sizes
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.protocols: set[str] = set()
        self._tags = 0

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)
            self.say(f"      UNEXPECTED: {what}")

    def _saw(self, response: httpstream.Response, flavour: Flavour) -> None:
        """Every response of a flavour must have been spoken in that flavour's protocol."""
        self.protocols.add(response.http_version)
        self.check(
            response.http_version == flavour.label,
            f"asked for {flavour.label}, the response came over {response.http_version}",
        )

    async def run(self, flavour: Flavour) -> None:
        async with httpstream.AsyncClient(
            base_url=self.server.url,
            verify=self.server.ca_path,
            timeout=httpstream.Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0),
            http2=flavour.http2,
            http3=flavour.http3,
        ) as client:
            pool = client.transport
            assert isinstance(pool, httpstream.ConnectionPool)
            await self.download(client, pool, flavour)
            await self.sse(client, pool, flavour)
            await self.ndjson(client, pool, flavour)
            await self.early_close(client, pool, flavour)

    def _counts(self, pool: httpstream.ConnectionPool) -> tuple[int, int]:
        return pool.connects, self.server.app.connections

    def _new(self, pool: httpstream.ConnectionPool, before: tuple[int, int]) -> tuple[int, int]:
        client_now, server_now = self._counts(pool)
        return client_now - before[0], server_now - before[1]

    def _row(
        self,
        step: str,
        flavour: Flavour,
        nbytes: int,
        seconds: float,
        result: str,
        pool: httpstream.ConnectionPool,
        before: tuple[int, int],
        *,
        throughput: bool = False,
    ) -> None:
        new_client, new_server = self._new(pool, before)
        self.rows.append(Row(step, flavour.label, nbytes, seconds, result, new_client, new_server, throughput))

    # -- 1: large download ---------------------------------------------------------
    async def download(self, client: httpstream.AsyncClient, pool: httpstream.ConnectionPool, flavour: Flavour) -> None:
        size = self.sizes.download[flavour.label]
        self.say(f"[1/4] large download: GET /bytes?size={size} ({size / MiB:g} MiB made on the fly),")
        self.say(f"      read with aiter_bytes({CHUNK}); the bar is fed by on_download_progress")
        before = self._counts(pool)
        received = 0
        reported: list[tuple[int, int | None]] = [(0, None)]  # the progress callback's last call
        start = time.perf_counter()
        bar = make_bar(self.out, flavour.label, size, start)

        def progress(done: int, total: int | None) -> None:
            reported[0] = (done, total)
            bar.update(done, total)

        try:
            async with client.stream("GET", f"/bytes?size={size}", on_download_progress=progress) as response:
                head = time.perf_counter() - start
                async for chunk in response.aiter_bytes(CHUNK):
                    received += len(chunk)
        finally:
            bar.close(*reported[0])
        elapsed = time.perf_counter() - start
        self._saw(response, flavour)
        self.say(
            f"      head after {head * 1000:.1f} ms (connection set-up + request): {response.status_code}, "
            f"{response.http_version}, content_length={response.content_length}"
        )
        rss = _peak_rss_mb()
        rss_note = f"; peak RSS of the whole process {rss:.0f} MB" if rss is not None else ""
        self.say(
            f"      done: {received} bytes in {elapsed:.2f} s = {received / elapsed / MB:.1f} MB/s"
            f" (received == Content-Length: {received == size}){rss_note}"
        )
        if flavour.http3 and rss_note:
            self.say("      (the peak includes hypercorn's send queue: its HTTP/3 has no backpressure and queues")
            self.say("      the body ahead of the client, here in the same process)")
        self.check(received == size, f"download received {received} bytes, expected {size}")
        self.check(response.content_length == size, f"content_length {response.content_length} != {size}")
        self.check(reported[0] == (size, size), f"the last progress callback said {reported[0]}, expected {size}")
        self._row("large download", flavour, received, elapsed, "complete", pool, before, throughput=True)

    # -- 2 and 3: paced streams ---------------------------------------------------------
    async def sse(self, client: httpstream.AsyncClient, pool: httpstream.ConnectionPool, flavour: Flavour) -> None:
        count, interval = self.sizes.records, self.sizes.interval
        path = f"/sse?count={count}&interval={interval:g}"
        self.say()
        self.say(f"[2/4] Server-Sent Events: GET {path}, read with aiter_sse()")
        self.say(f"      (one event every {interval * 1000:.0f} ms, text/event-stream, no Content-Length)")
        before = self._counts(pool)
        arrivals: list[float] = []
        ids: list[str | None] = []
        nbytes = 0
        start = time.perf_counter()
        async with client.stream("GET", path) as response:
            self._saw(response, flavour)
            async for event in response.aiter_sse():
                arrivals.append(time.perf_counter() - start)
                ids.append(event.id)
                nbytes += len(sse_event(len(ids) - 1))
                self.say(f"      +{arrivals[-1]:.3f} s  id={event.id} event={event.event} data={event.data}")
                self.check(
                    event.event == "tick" and json.loads(event.data) == {"seq": len(ids) - 1},
                    f"event {len(ids) - 1} was {event!r}",
                )
        self.check(ids == [str(i) for i in range(count)], f"event ids {ids}, expected 0..{count - 1} in order")
        result = self._paced_verdict("event", arrivals, count, interval)
        self._row("SSE feed", flavour, nbytes, time.perf_counter() - start, result, pool, before)

    async def ndjson(self, client: httpstream.AsyncClient, pool: httpstream.ConnectionPool, flavour: Flavour) -> None:
        count, interval = self.sizes.records, self.sizes.interval
        path = f"/ndjson?count={count}&interval={interval:g}"
        self.say()
        self.say(f"[3/4] NDJSON stream: GET {path}, read with aiter_json()")
        self.say(f"      (one object every {interval * 1000:.0f} ms, application/x-ndjson, no Content-Length)")
        before = self._counts(pool)
        arrivals: list[float] = []
        nbytes = 0
        start = time.perf_counter()
        async with client.stream("GET", path) as response:
            self._saw(response, flavour)
            async for obj in response.aiter_json():
                seq = len(arrivals)
                arrivals.append(time.perf_counter() - start)
                nbytes += len(ndjson_line(seq))
                self.say(f"      +{arrivals[-1]:.3f} s  {obj!r}")
                self.check(obj == json.loads(ndjson_line(seq)), f"object {seq} was {obj!r}")
        result = self._paced_verdict("object", arrivals, count, interval)
        self._row("NDJSON stream", flavour, nbytes, time.perf_counter() - start, result, pool, before)

    def _paced_verdict(self, noun: str, arrivals: list[float], count: int, interval: float) -> str:
        self.check(len(arrivals) == count, f"got {len(arrivals)} {noun}s, expected {count}")
        if not arrivals:
            return "none"
        # The server sends the last record only after (count-1)*interval: a first
        # record seen before then was streamed, not buffered until the end.
        streamed = count < 2 or arrivals[0] < (count - 1) * interval
        self.say(
            f"      {len(arrivals)} {noun}s; the first after {arrivals[0]:.3f} s, the last after "
            f"{arrivals[-1]:.3f} s: {f'each {noun} arrived as it was sent' if streamed else 'BUFFERED'}"
        )
        self.check(streamed, f"the first {noun} arrived only after the server had sent the last one")
        return f"{len(arrivals)} {noun}s, streamed" if streamed else f"{len(arrivals)} {noun}s, buffered"

    # -- 4: early close --------------------------------------------------------------
    async def early_close(
        self, client: httpstream.AsyncClient, pool: httpstream.ConnectionPool, flavour: Flavour
    ) -> None:
        limits = pool.limits
        self.say()
        self.say("[4/4] early close: leave a body unread, then send more requests")
        self.say("      (the pool lines are client.transport.stats(); the server reports how each body ended)")
        for line in flavour.release_rule.format(max_drain=limits.max_drain_bytes).splitlines():
            self.say(f"      {line}")

        # a) small remainder: HTTP/1.1 reads it off in the background and keeps the connection.
        before = self._counts(pool)
        pause = MULTIPLEXED_PAUSE if flavour.multiplexed else limits.drain_timeout / 2
        query = f"size={SMALL_BODY}&pause_at={SMALL_READ}&pause={pause:g}"
        self.say(f"  a) GET /bytes?{query}: read {SMALL_READ} bytes, then close")
        start = time.perf_counter()
        nbytes, ending = await self._read_then_close(client, pool, flavour, query, SMALL_READ)
        await self._settle(pool, limits.drain_timeout + 1.0)
        self.say(f"      pool once settled:      {_fmt_stats(pool.stats())}")
        for _ in range(3):
            reply = await client.get("/hello")
            self._saw(reply, flavour)
            nbytes += len(reply.content)
        self.say(f"      pool after 3 more GETs: {_fmt_stats(pool.stats())}")
        new_client, new_server = self._new(pool, before)
        if flavour.multiplexed:
            ok = ending == "aborted" and new_server == 0
            verdict = "stream RESET, connection kept" if ok else "unexpected"
            expected_ending = "aborted"
        else:
            ok = ending == "complete" and new_server == 0
            verdict = "drained, connection REUSED" if ok else "unexpected"
            expected_ending = "complete"
        self.say(
            f"      server: body {ending}; accepted {new_server} new connection(s), client opened {new_client}"
            f" -> {verdict}"
        )
        self.check(ending == expected_ending, f"small remainder: the server says {ending}, expected {expected_ending}")
        self.check(new_server == 0, f"small remainder: server accepted {new_server} new connections, expected 0")
        self._row("early close, small rest", flavour, nbytes, time.perf_counter() - start, verdict, pool, before)

        # b) large remainder: HTTP/1.1 closes the connection (draining would cost more).
        before = self._counts(pool)
        query = f"size={LARGE_BODY}"
        self.say(f"  b) GET /bytes?{query}: read {CHUNK} bytes, then close")
        start = time.perf_counter()
        nbytes, ending = await self._read_then_close(client, pool, flavour, query, CHUNK)
        reply = await client.get("/hello")
        self._saw(reply, flavour)
        nbytes += len(reply.content)
        self.say(f"      pool after 1 more GET:  {_fmt_stats(pool.stats())}")
        new_client, new_server = self._new(pool, before)
        expected = 0 if flavour.multiplexed else 1
        if new_server == expected and ending == "aborted":
            verdict = "stream RESET, connection kept" if flavour.multiplexed else "connection CLOSED, new one opened"
        else:
            verdict = "unexpected"
        self.say(
            f"      server: body {ending}; accepted {new_server} new connection(s), client opened {new_client}"
            f" -> {verdict}"
        )
        self.check(ending == "aborted", f"large remainder: the server says {ending}, expected aborted")
        self.check(
            new_server == expected,
            f"large remainder: server accepted {new_server} new connections, expected {expected}",
        )
        self._row("early close, large rest", flavour, nbytes, time.perf_counter() - start, verdict, pool, before)

    async def _read_then_close(
        self,
        client: httpstream.AsyncClient,
        pool: httpstream.ConnectionPool,
        flavour: Flavour,
        query: str,
        read: int,
    ) -> tuple[int, str]:
        """Read ``read`` bytes of a tagged /bytes body, close it; return (bytes, server's verdict)."""
        self._tags += 1
        tag = f"{flavour.label}-{self._tags}"
        outcome = self.server.app.outcome(tag)
        got = 0
        async with client.stream("GET", f"/bytes?{query}&tag={tag}") as response:
            self._saw(response, flavour)
            async for chunk in response.aiter_bytes(read):
                got += len(chunk)
                break
            self.say(f"      pool while reading:     {_fmt_stats(pool.stats())}")
        # Leaving the block closed the response: the release rule ran.
        stats = pool.stats()
        self.say(f"      pool after aclose():    {_fmt_stats(stats)}")
        if flavour.multiplexed:
            self.check(stats.streams == 0, f"{stats.streams} stream(s) still open after aclose()")
        await asyncio.wait({outcome}, timeout=OUTCOME_TIMEOUT)
        return got, outcome.result() if outcome.done() else "still sending"

    @staticmethod
    async def _settle(pool: httpstream.ConnectionPool, deadline: float) -> None:
        """Wait (bounded) until no connection is draining any more."""
        stop = time.monotonic() + deadline
        # The pool has no "drained" event to wait on; a short bounded poll will do here.
        while pool.stats().draining and time.monotonic() < stop:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    # -- the final table -------------------------------------------------------------
    def table(self, total: float) -> None:
        self.say()
        self.say("Summary (protocol = response.http_version, checked against the server's ASGI scope)")
        header = ("step", "protocol", "bytes read", "time", "MB/s", "result", "new conns (client/server)")
        rows = [
            (
                r.step,
                r.protocol,
                f"{r.nbytes:,}",
                f"{r.seconds:.2f} s",
                r.mb_per_s,
                r.result,
                f"{r.client_connects}/{r.server_connections}",
            )
            for r in self.rows
        ]
        rows.append(
            (
                "total",
                f"{len(self.protocols)} protocol(s)",
                f"{sum(r.nbytes for r in self.rows):,}",
                f"{total:.2f} s",
                "-",
                f"{len(self.failures)} failed check(s)",
                f"{sum(r.client_connects for r in self.rows)}/{sum(r.server_connections for r in self.rows)}",
            )
        )
        widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
        right = {2, 3, 4, 6}

        def fmt(line: tuple[str, ...]) -> str:
            cells = [
                c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ]
            return "  " + "  ".join(cells).rstrip()

        self.say(fmt(header))
        self.say("  " + "  ".join("-" * w for w in widths))
        for line in rows:
            self.say(fmt(line))


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere
