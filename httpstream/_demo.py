"""``httpstream demo``: the streaming client against a local HTTPS server, in one process.

Theory of operation
-------------------
``run()`` makes a throw-away CA with trustme, starts hypercorn on a socket it
has already bound to 127.0.0.1 (so the port is known up front and connections
queue in the backlog until hypercorn accepts them: no readiness polling), and
runs hypercorn as a task in the demo's own event loop with a shutdown trigger.
The client then runs the steps below against it, each for every protocol
flavour in ``FLAVOURS``, and prints plain text only (no rich: the library must
never import it).

The server counts the TCP connections it accepted (distinct client addresses
in the ASGI scope), so connection reuse is proved by the peer, not by trusting
the client's own counters.  Every claim the demo prints is also checked; a
failed check makes the demo exit 1, which is what tests/test_demo.py relies on.

Steps: a large download streamed with ``aiter_bytes(65536)`` (progress and
MB/s), a paced line stream read with ``aiter_lines()``, and two early closes:
a small remainder (drained, connection reused) and a large one (connection
closed).  Loopback only: the server binds 127.0.0.1 and the client talks to it
alone.

Extension points: HTTP/2 and HTTP/3 join as new ``Flavour`` entries once the
pool accepts ``http2=True`` / ``http3=True`` (the server already offers h2 by
ALPN; HTTP/3 needs ``config.quic_bind`` on a UDP socket, marked below).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import parse_qs

import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

import httpstream

__all__ = ["build_parser", "run"]

MiB = 1024 * 1024
MB = 1_000_000  # throughput is reported in MB/s (10^6 bytes per second), as bench/ does
CHUNK = 65536
_BLOCK = bytes(range(256)) * (256 * 4)  # 256 KiB the server sends over and over

# Early-close sizes: the small remainder stays under Limits.max_drain_bytes (64 KiB
# by default), so the connection is drained and reused; the large one is far over.
SMALL_BODY = 48 * 1024
SMALL_READ = 16 * 1024
# The large one is never sent in full: the server stops generating when the client
# closes, so it costs nothing, and it is far too big to be in any buffer yet.
LARGE_BODY = 1024 * MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class Flavour:
    """One protocol the demo runs its steps over."""

    label: str  # what the table shows
    http1: bool = True  # the AsyncClient(http1=, http2=, http3=) switches
    http2: bool = False
    http3: bool = False
    # What an early close of a large body does to the connection (DESIGN.md's
    # lifecycle table): HTTP/1.1 must close it; HTTP/2 and HTTP/3 reset only the
    # stream and keep the connection.
    release_rule: str = (
        "HTTP/1.1 release rule: a known remainder <= max_drain_bytes ({max_drain} bytes)\n"
        "is drained and the connection reused; a larger or unknown one closes the connection"
    )
    large_rest_closes_connection: bool = True


# HTTP/3 joins likewise with http3=True once the pool speaks it.
FLAVOURS: tuple[Flavour, ...] = (
    Flavour(label="HTTP/1.1"),
    Flavour(
        label="HTTP/2",
        http2=True,  # ALPN offers h2 and http/1.1; the server picks h2
        release_rule=(
            "HTTP/2 release rule: an early close sends RST_STREAM(CANCEL) and returns the unread\n"
            "bytes' flow-control credit; the connection stays open for the next requests"
        ),
        large_rest_closes_connection=False,
    ),
)
SERVER_ALPN = ["h2", "http/1.1"]  # what the server offers; the client picks


# -- the server ------------------------------------------------------------------------


class DemoApp:
    """The ASGI app: /bytes?size=N, /lines?count=N&interval=S, /hello."""

    def __init__(self) -> None:
        self.clients: set[tuple[str, int]] = set()
        self.http_versions: set[str] = set()
        self.requests = 0

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (distinct client addresses)."""
        return len(self.clients)

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["client"] is not None:
            self.clients.add((scope["client"][0], scope["client"][1]))
        self.http_versions.add(scope["http_version"])
        self.requests += 1
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("ascii")).items()}
        if scope["path"] == "/bytes":
            size = int(query.get("size", "0"))
            pause_at = int(query.get("pause_at", str(size)))
            await self._bytes(receive, send, size, pause_at, float(query.get("pause", "0")))
        elif scope["path"] == "/lines":
            await self._lines(send, int(query.get("count", "8")), float(query.get("interval", "0.1")))
        else:
            body = b"hello from the demo server\n"
            headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _bytes(
        self, receive: ASGIReceiveCallable, send: ASGISendCallable, size: int, pause_at: int, pause: float
    ) -> None:
        """``size`` bytes with a Content-Length, generated on the fly.

        With ``pause_at`` / ``pause`` the server stops for ``pause`` seconds once it
        has sent ``pause_at`` bytes, so a client that closes early has a remainder
        still on its way (otherwise, on loopback, the whole small body would
        already be in the client's buffer and there would be nothing to drain).
        """
        disconnected = asyncio.Event()

        async def watch() -> None:
            # Stop generating once the client went away (an early close of a
            # large body): no point producing the rest of it.
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch())
        try:
            headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            sent = 0
            while sent < size and not disconnected.is_set():
                if sent == pause_at and pause > 0:
                    await asyncio.sleep(pause)
                limit = pause_at if sent < pause_at else size
                piece = min(len(_BLOCK), limit - sent)
                body = _BLOCK if piece == len(_BLOCK) else _BLOCK[:piece]
                sent += piece
                await send({"type": "http.response.body", "body": body, "more_body": sent < size})
            if size == 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            await asyncio.wait({watcher})  # let it finish; our own cancellation still propagates

    async def _lines(self, send: ASGISendCallable, count: int, interval: float) -> None:
        """``count`` NDJSON-style lines, ``interval`` seconds apart (chunked: no length)."""
        headers = [(b"content-type", b"application/x-ndjson")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for seq in range(count):
            if seq:
                await asyncio.sleep(interval)
            line = f'{{"seq": {seq}, "event": "tick"}}\n'.encode()
            await send({"type": "http.response.body", "body": line, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class DemoServer:
    """hypercorn over TLS on 127.0.0.1, as a task in the running loop."""

    def __init__(self, tmpdir: str) -> None:
        self.app = DemoApp()
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = os.path.join(tmpdir, "ca.pem")
        self._cert_path = os.path.join(tmpdir, "server.pem")
        self._key_path = os.path.join(tmpdir, "server.key")
        ca.cert_pem.write_to_path(self.ca_path)
        cert.private_key_pem.write_to_path(self._key_path)
        with open(self._cert_path, "wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
        self.port = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def task(self) -> asyncio.Task[None]:
        assert self._task is not None
        return self._task

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            self.port = sock.getsockname()[1]
        except BaseException:
            sock.close()
            raise
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns the socket from here on
        # HTTP/3: add config.quic_bind with a UDP socket on 127.0.0.1 here.
        config.certfile = self._cert_path
        config.keyfile = self._key_path
        config.alpn_protocols = list(SERVER_ALPN)
        config.keep_alive_timeout = 30
        config.graceful_timeout = 2
        config.accesslog = None
        config.errorlog = None  # hypercorn logs its shutdown races as tracebacks; the demo checks its claims
        config.loglevel = "CRITICAL"
        self._task = asyncio.create_task(serve(self.app, config, shutdown_trigger=self._stop.wait))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        # hypercorn leaves the server side of some finished connections to the
        # garbage collector; collect them now, quietly, rather than warn later.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


# -- the client steps -----------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One line of the final table."""

    step: str
    protocol: str
    nbytes: int
    seconds: float
    client_connects: int
    server_connections: int
    throughput: bool = False  # MB/s means something only for the bulk transfer

    @property
    def mb_per_s(self) -> str:
        if not self.throughput or self.seconds <= 0:
            return "-"
        return f"{self.nbytes / self.seconds / MB:.1f}"


class Demo:
    """The client side: runs the steps, prints, and records what failed."""

    def __init__(self, server: DemoServer, out: TextIO, *, size: int, lines: int, interval: float) -> None:
        self.server = server
        self.out = out
        self.size = size
        self.lines = lines
        self.interval = interval
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.protocols: set[str] = set()

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)
            self.say(f"      UNEXPECTED: {what}")

    async def run(self, flavour: Flavour) -> None:
        async with httpstream.AsyncClient(
            base_url=self.server.url,
            verify=self.server.ca_path,
            timeout=httpstream.Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0),
            http1=flavour.http1,
            http2=flavour.http2,
            http3=flavour.http3,
        ) as client:
            pool = client.transport
            assert isinstance(pool, httpstream.ConnectionPool)
            await self.download(client, pool, flavour)
            await self.line_stream(client, pool, flavour)
            await self.early_close(client, pool, flavour)

    def _counts(self, pool: httpstream.ConnectionPool) -> tuple[int, int]:
        return pool.connects, self.server.app.connections

    def _row(
        self,
        step: str,
        protocol: str,
        nbytes: int,
        seconds: float,
        pool: httpstream.ConnectionPool,
        before: tuple[int, int],
        *,
        throughput: bool = False,
    ) -> None:
        new_client, new_server = self._new(pool, before)
        self.rows.append(Row(step, protocol, nbytes, seconds, new_client, new_server, throughput))

    async def download(self, client: httpstream.AsyncClient, pool: httpstream.ConnectionPool, flavour: Flavour) -> None:
        size = self.size
        self.say(f"[1/3] large download: GET /bytes?size={size} ({size / MiB:g} MiB made on the fly),")
        self.say(f"      streamed with aiter_bytes({CHUNK})")
        before = self._counts(pool)
        received = 0
        start = time.perf_counter()
        async with client.stream("GET", f"/bytes?size={size}") as response:
            head = time.perf_counter() - start
            self.protocols.add(response.http_version)
            self.say(
                f"      head after {head * 1000:.1f} ms (TCP + TLS + request): {response.status_code} "
                f"{response.reason_phrase}, "
                f"{response.http_version}, content_length={response.content_length}"
            )
            progress = Progress(self.out, size, start)
            async for chunk in response.aiter_bytes(CHUNK):
                received += len(chunk)
                progress.update(received)
            progress.finish(received)
        elapsed = time.perf_counter() - start
        rss = _peak_rss_mb()
        rss_note = f"; peak RSS of the whole process {rss:.0f} MB" if rss is not None else ""
        self.say(
            f"      done: {received} bytes in {elapsed:.2f} s = {received / elapsed / MB:.1f} MB/s"
            f" (received == Content-Length: {received == size}){rss_note}"
        )
        self.check(received == size, f"download received {received} bytes, expected {size}")
        self.check(response.content_length == size, f"content_length {response.content_length} != {size}")
        self._row("large download", flavour.label, received, elapsed, pool, before, throughput=True)

    async def line_stream(
        self, client: httpstream.AsyncClient, pool: httpstream.ConnectionPool, flavour: Flavour
    ) -> None:
        count, interval = self.lines, self.interval
        self.say()
        self.say(f"[2/3] line stream: GET /lines?count={count}&interval={interval:g}, read with aiter_lines()")
        self.say(f"      (the server sends one line every {interval * 1000:.0f} ms, chunked, no Content-Length)")
        before = self._counts(pool)
        arrivals: list[float] = []
        nbytes = 0
        start = time.perf_counter()
        async with client.stream("GET", f"/lines?count={count}&interval={interval}") as response:
            self.protocols.add(response.http_version)
            async for line in response.aiter_lines():
                arrivals.append(time.perf_counter() - start)
                nbytes += len(line) + 1
                self.say(f"      +{arrivals[-1]:.3f} s  {line}")
        elapsed = time.perf_counter() - start
        self.check(len(arrivals) == count, f"got {len(arrivals)} lines, expected {count}")
        if arrivals:
            # The server sends the last line only after (count-1)*interval: a first
            # line seen before then was streamed, not buffered until the end.
            last_sent = (count - 1) * interval
            streamed = count < 2 or arrivals[0] < last_sent
            self.say(
                f"      {len(arrivals)} lines; the first after {arrivals[0]:.3f} s, the last after "
                f"{arrivals[-1]:.3f} s: {'each line arrived as it was sent' if streamed else 'BUFFERED'}"
            )
            self.check(streamed, "the first line arrived only after the server had sent the last one")
        self._row("line stream", flavour.label, nbytes, elapsed, pool, before)

    async def early_close(
        self, client: httpstream.AsyncClient, pool: httpstream.ConnectionPool, flavour: Flavour
    ) -> None:
        limits = pool.limits
        self.say()
        self.say("[3/3] early close: leave a body unread, then send more requests")
        self.say("      (the pool lines are client.transport.stats())")
        for line in flavour.release_rule.format(max_drain=limits.max_drain_bytes).splitlines():
            self.say(f"      {line}")

        # a) small remainder: read off in the background, the connection stays.
        #    The server pauses after SMALL_READ bytes so the rest is still on its way.
        before = self._counts(pool)
        path = f"/bytes?size={SMALL_BODY}&pause_at={SMALL_READ}&pause=0.1"
        self.say(f"  a) GET {path}: read {SMALL_READ} bytes, then close")
        self.say(f"      pool before:            {pool.stats()}")
        start = time.perf_counter()
        nbytes = await self._read_then_close(client, path, SMALL_READ)
        self.say(f"      pool after aclose():    {pool.stats()}")
        await self._settle(pool, limits.drain_timeout + 1.0)
        self.say(f"      pool once drained:      {pool.stats()}")
        for _ in range(3):
            reply = await client.get("/hello")
            self.protocols.add(reply.http_version)
            nbytes += len(reply.content)
        self.say(f"      pool after 3 more GETs: {pool.stats()}")
        elapsed = time.perf_counter() - start
        new_client, new_server = self._new(pool, before)
        verdict = "connection REUSED" if new_server == 0 else "a new connection was needed"
        self.say(f"      server accepted {new_server} new connection(s), client opened {new_client} -> {verdict}")
        self.check(new_server == 0, f"small remainder: server accepted {new_server} new connections, expected 0")
        self._row("early close, small rest", flavour.label, nbytes, elapsed, pool, before)

        # b) large remainder: draining it would cost more than a new connection.
        before = self._counts(pool)
        path = f"/bytes?size={LARGE_BODY}"
        self.say(f"  b) GET {path}: read {CHUNK} bytes, then close")
        start = time.perf_counter()
        nbytes = await self._read_then_close(client, path, CHUNK)
        closed_after = time.perf_counter() - start
        self.say(f"      pool after aclose():    {pool.stats()}")
        self.say(f"      (request + first chunk + close took {closed_after * 1000:.1f} ms)")
        reply = await client.get("/hello")
        self.protocols.add(reply.http_version)
        nbytes += len(reply.content)
        self.say(f"      pool after 1 more GET:  {pool.stats()}")
        elapsed = time.perf_counter() - start
        new_client, new_server = self._new(pool, before)
        expected = 1 if flavour.large_rest_closes_connection else 0
        if new_server == expected:
            verdict = "connection CLOSED, a new one served the GET" if expected else "stream reset, connection kept"
        else:
            verdict = "unexpected"
        self.say(f"      server accepted {new_server} new connection(s), client opened {new_client} -> {verdict}")
        self.check(
            new_server == expected,
            f"large remainder: server accepted {new_server} new connections, expected {expected}",
        )
        self._row("early close, large rest", flavour.label, nbytes, elapsed, pool, before)

    def _new(self, pool: httpstream.ConnectionPool, before: tuple[int, int]) -> tuple[int, int]:
        client_now, server_now = self._counts(pool)
        return client_now - before[0], server_now - before[1]

    async def _read_then_close(self, client: httpstream.AsyncClient, path: str, read: int) -> int:
        got = 0
        async with client.stream("GET", path) as response:
            self.protocols.add(response.http_version)
            async for chunk in response.aiter_bytes(read):
                got += len(chunk)
                break
        # Leaving the block closed the response: the release rule ran.
        return got

    @staticmethod
    async def _settle(pool: httpstream.ConnectionPool, deadline: float) -> None:
        """Wait (bounded) until no connection is draining any more."""
        stop = time.monotonic() + deadline
        # The pool has no "drained" event to wait on; a short bounded poll will do here.
        while pool.stats().draining and time.monotonic() < stop:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def table(self, total: float) -> None:
        self.say()
        self.say("Summary")
        header = ("step", "protocol", "bytes read", "time", "MB/s", "connections opened (client/server)")
        rows = [
            (
                r.step,
                r.protocol,
                f"{r.nbytes:,}",
                f"{r.seconds:.2f} s",
                r.mb_per_s,
                f"{r.client_connects}/{r.server_connections}",
            )
            for r in self.rows
        ]
        rows.append(
            (
                "total",
                "/".join(sorted(self.protocols)) or "-",
                f"{sum(r.nbytes for r in self.rows):,}",
                f"{total:.2f} s",
                "-",
                f"{sum(r.client_connects for r in self.rows)}/{sum(r.server_connections for r in self.rows)}",
            )
        )
        widths = [max(len(str(line[i])) for line in [header, *rows]) for i in range(len(header))]
        right = {2, 3, 4, 5}

        def fmt(line: tuple[str, ...]) -> str:
            cells = [
                c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ]
            return "  " + "  ".join(cells).rstrip()

        self.say(fmt(header))
        self.say("  " + "  ".join("-" * w for w in widths))
        for line in rows:
            self.say(fmt(line))


class Progress:
    """A progress line: rewritten in place on a terminal, every 25 % otherwise."""

    def __init__(self, out: TextIO, total: int, start: float) -> None:
        self.out = out
        self.total = total
        self.start = start
        self.tty = out.isatty()
        self._width = 0  # of the last line written in place
        self._next_time = 0.0
        self._next_quarter = 1

    def _line(self, done: int) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        percent = 100 * done / self.total if self.total else 100.0
        return f"      {percent:5.1f} %  {done / MB:8.1f} / {self.total / MB:.1f} MB  {done / elapsed / MB:7.1f} MB/s"

    def _rewrite(self, done: int, end: str) -> None:
        line = self._line(done)
        print("\r" + line.ljust(self._width), end=end, file=self.out, flush=True)
        self._width = len(line)

    def update(self, done: int) -> None:
        if self.tty:
            now = time.perf_counter()
            if now >= self._next_time:
                self._next_time = now + 0.2
                self._rewrite(done, "")
        elif self.total and done * 4 >= self._next_quarter * self.total and self._next_quarter < 4:
            self._next_quarter += 1
            print(self._line(done), file=self.out, flush=True)

    def finish(self, done: int) -> None:
        if self.tty:
            self._rewrite(done, "\n")
        else:
            print(self._line(done), file=self.out, flush=True)


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


# -- entry points ------------------------------------------------------------------------


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="httpstream-demo-") as tmpdir:
        server = DemoServer(tmpdir)
        server.start()
        demo = Demo(server, out, size=args.size * MiB, lines=args.lines, interval=args.interval)
        demo.say(f"httpstream {httpstream.__version__} demo")
        demo.say(f"server: hypercorn on {server.url} (TLS, certificate from a throw-away trustme CA;")
        demo.say(f"        ALPN offered: {', '.join(SERVER_ALPN)}); client: httpstream.AsyncClient(verify=<CA file>)")
        demo.say()
        try:
            for flavour in FLAVOURS:
                if len(FLAVOURS) > 1:
                    demo.say(f"=== {flavour.label} ===")
                client_task = asyncio.create_task(demo.run(flavour))
                done, _ = await asyncio.wait({client_task, server.task}, return_when=asyncio.FIRST_COMPLETED)
                if client_task not in done:  # the server stopped under us
                    client_task.cancel()
                    exc = server.task.exception() if not server.task.cancelled() else None
                    raise RuntimeError(f"the demo server stopped unexpectedly: {exc!r}")
                client_task.result()
        finally:
            await server.stop()
        seen = ", ".join(sorted(demo.protocols))
        served = ", ".join(f"HTTP/{v}" for v in sorted(server.app.http_versions))
        demo.say()
        demo.say(f"negotiated protocol: {seen} (response.http_version); the server's ASGI scope says {served}")
        demo.check(seen == served, f"client and server disagree on the protocol: {seen} vs {served}")
        demo.table(time.perf_counter() - started)
        demo.say()
        if demo.failures:
            demo.say(f"demo FAILED: {len(demo.failures)} check(s) did not hold:")
            for failure in demo.failures:
                demo.say(f"  - {failure}")
            return 1
        demo.say(f"demo finished OK in {time.perf_counter() - started:.1f} s")
        return 0


def build_parser(prog: str = "httpstream demo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the streaming client against a local HTTPS server on 127.0.0.1 and show what it does.",
    )
    parser.add_argument(
        "--size",
        type=_positive_int,
        default=256,
        metavar="MIB",
        help="size of the large download in MiB (default: 256)",
    )
    parser.add_argument(
        "--lines", type=_positive_int, default=8, metavar="N", help="lines in the line stream (default: 8)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="pause between two lines of the line stream (default: 0.1)",
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def run(argv: list[str], out: TextIO | None = None) -> int:
    """``httpstream demo [options]``: returns the exit status."""
    args = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        return asyncio.run(_run(args, stream))
    except httpstream.HTTPStreamError as exc:
        print(f"demo FAILED: {type(exc).__name__}: {exc}", file=stream)
        return 1
