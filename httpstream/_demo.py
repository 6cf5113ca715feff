"""``httpstream demo``: the streaming client against a local HTTPS server, in one process.

Theory of operation
-------------------
``run()`` makes a throw-away CA with trustme and starts hypercorn as a task in
the demo's own event loop, on sockets it has already bound to 127.0.0.1: a TCP
one (TLS, ALPN ``h2`` and ``http/1.1``) and a UDP one on the same port number
(QUIC, HTTP/3).  The port is known up front and the first connections queue
until hypercorn accepts them: no readiness polling.  Nothing leaves loopback.

The client then runs four steps for every protocol in ``FLAVOURS``
(``AsyncClient()`` for HTTP/1.1, ``http2=True`` and ``http3="only"``):

1. a large download read with ``aiter_bytes()``, its progress bar fed by
   ``on_download_progress`` (a rich bar on a terminal when rich is installed,
   plain lines otherwise), and its throughput;
2. a Server-Sent Events feed read with ``aiter_sse()``, event by event;
3. an NDJSON stream read with ``aiter_json()``, object by object;
4. early closes, with ``client.transport.stats()`` before and after: a small
   remainder (HTTP/1.1 drains it and reuses the connection) and a large one
   (HTTP/1.1 closes the connection); HTTP/2 and HTTP/3 reset the stream in both
   cases and keep the connection.

Every claim the demo prints is checked, against the peer where it can be: the
server counts the connections it accepted (distinct client addresses in the
ASGI scope, for TCP and QUIC alike), records which HTTP version it spoke and
whether each tagged response went out complete or was cut short.  A failed
check makes the demo exit 1, which is what tests/test_demo.py relies on.

HTTP/3 and early close: hypercorn (0.18, with aioquic 1.7) survives a client's
STOP_SENDING + RESET_STREAM (the connection carries on: 30 resets in a row
on one connection in a trial, and step 4 of every run), but it does not tell the ASGI app:
no ``http.disconnect`` arrives, and the app's next ``send`` raises aioquic's
``FrameUnexpected``.  The demo's app therefore treats any failing ``send`` as
"the client went away" and returns normally, so hypercorn closes the stream
cleanly instead of logging an application error.  Should a later hypercorn
drop the connection instead, the demo's own check (no new connection accepted)
fails loudly.  hypercorn's HTTP/3 also has no send backpressure: it queues a
body as fast as the app makes it, which is why the process's peak RSS rises
during the HTTP/3 download (the server's queue, not the client's buffer), and
why that download is smaller by default: aioquic is pure Python and paces its
sends, and with client and server in one process it moves 10-20 MB/s here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import json
import os
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO
from urllib.parse import parse_qs

import trustme
from hypercorn.asyncio import serve
from hypercorn.asyncio.udp_server import UDPServer
from hypercorn.config import Config
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

import httpstream

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["build_parser", "run"]

MiB = 1024 * 1024
MB = 1_000_000  # throughput is reported in MB/s (10^6 bytes per second), as bench/ does
CHUNK = 65536
_BLOCK = bytes(range(256)) * (256 * 4)  # 256 KiB the server sends over and over

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
SERVER_ALPN = ["h2", "http/1.1"]  # what the TCP side offers; the client picks (QUIC always says h3)


# -- the server ------------------------------------------------------------------------


class DemoApp:
    """The ASGI app: /bytes, /sse, /ndjson and /hello.

    ``/bytes?size=N&tag=T`` records, under ``T``, whether the whole body went out
    ("complete") or the client left first ("aborted"), so the demo can tell a
    drained remainder from a reset stream by what the server saw.
    """

    def __init__(self) -> None:
        self.clients: set[tuple[str, int]] = set()
        self.http_versions: set[str] = set()
        self._outcomes: dict[str, asyncio.Future[str]] = {}

    @property
    def connections(self) -> int:
        """Connections accepted so far (distinct client addresses, TCP or UDP)."""
        return len(self.clients)

    def outcome(self, tag: str) -> asyncio.Future[str]:
        """Resolves to "complete" or "aborted" once the response tagged ``tag`` ends."""
        future = self._outcomes.get(tag)
        if future is None:
            future = self._outcomes[tag] = asyncio.get_running_loop().create_future()
        return future

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
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("ascii")).items()}
        count = int(query.get("count", "8"))
        interval = float(query.get("interval", "0.1"))
        if scope["path"] == "/bytes":
            size = int(query.get("size", "0"))
            sent = await self._bytes(
                receive, send, size, int(query.get("pause_at", str(size))), float(query.get("pause", "0"))
            )
            if "tag" in query and not self.outcome(query["tag"]).done():
                self.outcome(query["tag"]).set_result("complete" if sent == size else "aborted")
        elif scope["path"] == "/sse":
            await self._paced(send, b"text/event-stream", count, interval, _sse_event)
        elif scope["path"] == "/ndjson":
            await self._paced(send, b"application/x-ndjson", count, interval, _ndjson_line)
        else:
            body = b"hello from the demo server\n"
            headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _bytes(
        self, receive: ASGIReceiveCallable, send: ASGISendCallable, size: int, pause_at: int, pause: float
    ) -> int:
        """Send ``size`` bytes with a Content-Length, made on the fly; return how many went out.

        With ``pause_at`` / ``pause`` the server stops for ``pause`` seconds once it
        has sent ``pause_at`` bytes.  It stops early when the client goes away:
        ``http.disconnect`` over HTTP/1.1 and HTTP/2, a failing ``send`` over
        hypercorn's HTTP/3 (see the module docstring).
        """
        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch())
        sent = 0
        try:
            headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            while sent < size:
                if sent == pause_at and pause > 0:
                    with contextlib.suppress(TimeoutError):  # the pause ends early if the client goes
                        async with asyncio.timeout(pause):
                            await disconnected.wait()
                if disconnected.is_set():
                    break
                limit = pause_at if sent < pause_at else size
                piece = min(len(_BLOCK), limit - sent)
                body = _BLOCK if piece == len(_BLOCK) else _BLOCK[:piece]
                await send({"type": "http.response.body", "body": body, "more_body": sent + piece < size})
                sent += piece
        except Exception:
            pass  # the client reset the stream under hypercorn's HTTP/3: it is gone, nothing to report
        finally:
            watcher.cancel()
            await asyncio.wait({watcher})  # let it finish; our own cancellation still propagates
        return sent

    async def _paced(
        self, send: ASGISendCallable, content_type: bytes, count: int, interval: float, render: Callable[[int], bytes]
    ) -> None:
        """``count`` records, ``interval`` seconds apart, with no Content-Length."""
        headers = [(b"content-type", content_type), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for seq in range(count):
            if seq:
                await asyncio.sleep(interval)
            await send({"type": "http.response.body", "body": render(seq), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _sse_event(seq: int) -> bytes:
    return f'id: {seq}\nevent: tick\ndata: {{"seq": {seq}}}\n\n'.encode()


def _ndjson_line(seq: int) -> bytes:
    return f'{{"seq": {seq}, "kind": "reading", "value": {seq * seq}}}\n'.encode()


class DemoServer:
    """hypercorn over TLS (TCP) and QUIC (UDP) on 127.0.0.1, as a task in the running loop."""

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
        tcp, udp = _bind_pair()
        self.port = tcp.getsockname()[1]
        config = Config()
        # hypercorn owns the sockets from here on.
        config.bind = [f"fd://{tcp.detach()}"]
        config.quic_bind = [f"fd://{udp.detach()}"]
        config.certfile = self._cert_path
        config.keyfile = self._key_path
        config.alpn_protocols = list(SERVER_ALPN)
        config.keep_alive_timeout = 30
        # At shutdown hypercorn waits this long for its QUIC task, which sits
        # waiting for a datagram that never comes once the clients are gone.
        config.graceful_timeout = 0.2
        config.accesslog = None
        config.errorlog = None  # hypercorn logs its shutdown races as tracebacks; the demo checks its claims
        config.loglevel = "CRITICAL"
        self._task = asyncio.create_task(serve(self.app, config, shutdown_trigger=self._stop.wait))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        # hypercorn (0.18) never closes the transport of its QUIC socket: close
        # ours here, or the garbage collector finds it open later and warns.
        loop = asyncio.get_running_loop()
        for obj in gc.get_objects():
            if isinstance(obj, UDPServer) and obj.loop is loop and obj.transport is not None:
                obj.transport.close()
        await asyncio.sleep(0)  # the transport closes its socket on the next loop turn
        # hypercorn leaves the server side of some finished connections to the
        # garbage collector; collect them now, quietly, rather than warn later.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def _bind_pair(attempts: int = 20) -> tuple[socket.socket, socket.socket]:
    """A listening TCP socket and a UDP socket on the same 127.0.0.1 port number.

    The same number is what ``http3="only"`` dials (and what hypercorn's Alt-Svc
    would announce).  The kernel picks a free TCP port; the same UDP port is
    almost always free too, and another pick is tried when it is not.
    """
    for _ in range(attempts):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind(("127.0.0.1", 0))
            tcp.listen(128)
            udp.bind(("127.0.0.1", tcp.getsockname()[1]))
        except OSError as exc:
            tcp.close()
            udp.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return tcp, udp
    raise OSError(errno.EADDRINUSE, "no port number free for both TCP and UDP on 127.0.0.1")


# -- progress display -------------------------------------------------------------------


class PlainBar:
    """Progress as plain lines, one per quarter (for pipes, logs and tests)."""

    def __init__(self, out: TextIO, label: str, start: float) -> None:
        self.out = out
        self.label = label
        self.start = start
        self._next_quarter = 1

    def update(self, done: int, total: int | None) -> None:
        if total and self._next_quarter < 4 and done * 4 >= self._next_quarter * total:
            self._next_quarter += 1
            self._print(done, total)

    def close(self, done: int, total: int | None) -> None:
        self._print(done, total)

    def _print(self, done: int, total: int | None) -> None:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        percent = f"{100 * done / total:5.1f} %" if total else "    ? %"
        of = f" / {total / MB:.1f}" if total else ""
        print(f"      {percent}  {done / MB:8.1f}{of} MB  {done / elapsed / MB:7.1f} MB/s", file=self.out, flush=True)


class RichBar:
    """A rich progress bar, redrawn at most ten times a second from the callback.

    Auto-refresh is off (it would run a thread); the download's own progress
    callback does the redrawing.
    """

    def __init__(self, out: TextIO, label: str, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress: Progress = Progress(
            TextColumn("      {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=out),
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task: TaskID = self._progress.add_task(label, total=total)
        self._next_draw = 0.0
        self._progress.start()

    def update(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now >= self._next_draw:
            self._next_draw = now + 0.1
            self._progress.update(self._task, completed=done, total=total, refresh=True)

    def close(self, done: int, total: int | None) -> None:
        self._progress.update(self._task, completed=done, total=total, refresh=True)
        self._progress.stop()


def make_bar(out: TextIO, label: str, total: int | None, start: float) -> PlainBar | RichBar:
    """rich's bar on a terminal when rich is installed (the ``demo`` extra), plain lines otherwise."""
    if out.isatty():
        try:
            return RichBar(out, label, total)
        except ImportError:
            pass
    return PlainBar(out, label, start)


# -- the client steps -----------------------------------------------------------------


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
                nbytes += len(_sse_event(len(ids) - 1))
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
                nbytes += len(_ndjson_line(seq))
                self.say(f"      +{arrivals[-1]:.3f} s  {obj!r}")
                self.check(obj == json.loads(_ndjson_line(seq)), f"object {seq} was {obj!r}")
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


# -- entry points ------------------------------------------------------------------------


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    started = time.perf_counter()
    sizes = Sizes(records=args.lines, interval=args.interval)
    for flavour in FLAVOURS:
        sizes.download[flavour.label] = (args.h3_size if flavour.http3 else args.size) * MiB
    with tempfile.TemporaryDirectory(prefix="httpstream-demo-") as tmpdir:
        server = DemoServer(tmpdir)
        server.start()
        demo = Demo(server, out, sizes)
        demo.say(f"httpstream {httpstream.__version__} demo")
        demo.say(f"server: hypercorn on 127.0.0.1:{server.port}, certificate from a throw-away trustme CA:")
        demo.say(f"        TCP with TLS (ALPN offered: {', '.join(SERVER_ALPN)}) and UDP with QUIC (h3)")
        demo.say("client: httpstream.AsyncClient(verify=<CA file>), once per protocol:")
        for flavour in FLAVOURS:
            switch = f"http3={flavour.http3!r}" if flavour.http3 else f"http2={flavour.http2}"
            demo.say(
                f"        {flavour.label:8}  {switch:13}  {flavour.transport};"
                f" download {sizes.download[flavour.label] / MiB:g} MiB"
            )
        demo.say("        (HTTP/3 downloads less by default: aioquic is pure Python, and here it runs")
        demo.say("        both ends in one process; --size and --h3-size change the sizes)")
        try:
            for flavour in FLAVOURS:
                demo.say()
                demo.say(f"=== {flavour.label} ===")
                client_task = asyncio.create_task(demo.run(flavour))
                done, _ = await asyncio.wait({client_task, server.task}, return_when=asyncio.FIRST_COMPLETED)
                if client_task not in done:  # the server stopped under us
                    client_task.cancel()
                    await asyncio.wait({client_task})
                    exc = server.task.exception() if not server.task.cancelled() else None
                    raise RuntimeError(f"the demo server stopped unexpectedly: {exc!r}")
                client_task.result()
        finally:
            await server.stop()
        seen = ", ".join(sorted(demo.protocols))
        served = ", ".join(f"HTTP/{v}" for v in sorted(server.app.http_versions))
        demo.say()
        demo.say(f"negotiated protocols: {seen} (response.http_version); the server's ASGI scope says {served}")
        demo.check(seen == served, f"client and server disagree on the protocols: {seen} vs {served}")
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
        description=(
            "Run the streaming client against a local HTTPS server on 127.0.0.1 over HTTP/1.1, "
            "HTTP/2 and HTTP/3, and show what it does. Needs no network beyond loopback."
        ),
    )
    parser.add_argument(
        "--size",
        type=_positive_int,
        default=256,
        metavar="MIB",
        help="size of the large download over HTTP/1.1 and HTTP/2, in MiB (default: 256)",
    )
    parser.add_argument(
        "--h3-size",
        type=_positive_int,
        default=64,
        metavar="MIB",
        help="size of the large download over HTTP/3, in MiB (default: 64)",
    )
    parser.add_argument(
        "--lines",
        type=_positive_int,
        default=8,
        metavar="N",
        help="events in the SSE feed and objects in the NDJSON stream (default: 8)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="pause between two events or objects (default: 0.1)",
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
