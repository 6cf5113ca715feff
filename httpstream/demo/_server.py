"""The demo's server side: an ASGI app, served by hypercorn over TLS and QUIC on 127.0.0.1.

The app makes its bodies on the fly and records what the checks need to ask it:
the connections it accepted, the HTTP versions it spoke, and how each tagged
body ended.  See the package docstring for why any failing ``send`` counts as
"the client went away".
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import socket
import warnings
from collections.abc import Callable
from urllib.parse import parse_qs

import trustme
from hypercorn.asyncio import serve
from hypercorn.asyncio.udp_server import UDPServer
from hypercorn.config import Config
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["SERVER_ALPN", "DemoApp", "DemoServer", "ndjson_line", "sse_event"]

_BLOCK = bytes(range(256)) * (256 * 4)  # 256 KiB the server sends over and over
SERVER_ALPN = ["h2", "http/1.1"]  # what the TCP side offers; the client picks (QUIC always says h3)


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
            await self._paced(send, b"text/event-stream", count, interval, sse_event)
        elif scope["path"] == "/ndjson":
            await self._paced(send, b"application/x-ndjson", count, interval, ndjson_line)
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
        hypercorn's HTTP/3 (see the package docstring).
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


def sse_event(seq: int) -> bytes:
    return f'id: {seq}\nevent: tick\ndata: {{"seq": {seq}}}\n\n'.encode()


def ndjson_line(seq: int) -> bytes:
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
