"""Where the CLI's bytes go: the body sink, the text forms of heads and events, and the trace.

The body is bytes end to end: it is written to ``sys.stdout.buffer`` (or the
``-o`` file) exactly as the chosen iterator yields it, never through a text
layer.  A sink flushes after every write when its reader is live (a pipe, a
terminal, a socket): the point of a streaming client is that ``| head`` or a
person watching sees each chunk as it arrives.  To a regular file the OS
buffer is enough.  Writes block: the CLI runs one transfer, so a slow reader
holding up the event loop is exactly the backpressure wanted, and a reader
that goes away turns the next write into ``BrokenPipeError``.

``Trace`` is hooked into the client (request and response event hooks).  It
remembers the current hop's method, URL and protocol, so an error message can
say what failed, for which URL, over which protocol (once a request has gone
to the pool: before that there is no protocol to name); with ``-v`` it also
prints each hop's heads when the response head arrives (only then is the
protocol of the request line known) and whether the pool opened a new
connection for it (``ConnectionPool.connects`` moved) or reused one.

Heads go out as curl prints them: CRLF line ends for ``-i`` and ``-I``, and
no reason phrase on HTTP/2 and HTTP/3, which have none on the wire.
"""

from __future__ import annotations

import io
import json
import os
import stat
import time
from typing import Any, BinaryIO, TextIO

from .._models import Request, Response
from .._pool import ConnectionPool
from .._sse import ServerSentEvent
from ._errors import format_failure

__all__ = ["Sink", "Trace", "format_event", "format_head", "format_json", "head_lines", "is_live", "status_line"]


def is_live(stream: BinaryIO) -> bool:
    """True unless ``stream`` is a regular file (or has no descriptor to say so)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, io.UnsupportedOperation):
        return True
    return not stat.S_ISREG(mode)


class Sink:
    """A binary destination for the body, flushed per write when ``flush`` is set."""

    __slots__ = ("_stream", "_flush")

    def __init__(self, stream: BinaryIO, *, flush: bool) -> None:
        self._stream = stream
        self._flush = flush

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        if self._flush:
            self._stream.flush()


def status_line(response: Response) -> str:
    """``HTTP/1.1 200 OK``; ``HTTP/2 200`` and ``HTTP/3 200``: those protocols carry no reason phrase
    (RFC 9113 section 8.3.2, RFC 9114 section 4.3.2), so none is printed that the server never sent."""
    if response.http_version == "HTTP/1.1":
        return f"{response.http_version} {response.status_code} {response.reason_phrase}".rstrip()
    return f"{response.http_version} {response.status_code}"


def head_lines(response: Response) -> list[str]:
    return [status_line(response), *(f"{name}: {value}" for name, value in response.headers.multi_items())]


def format_head(response: Response) -> bytes:
    """The status line and headers as ``-I`` and ``-i`` print them: CRLF line ends, as curl (and the wire)."""
    return ("\r\n".join(head_lines(response)) + "\r\n\r\n").encode("utf-8", "replace")


def format_event(event: ServerSentEvent) -> bytes:
    """One Server-Sent Event in event-stream syntax, so the output can be parsed again."""
    lines = [f"event: {event.event}"]
    if event.id is not None:
        lines.append(f"id: {event.id}")
    if event.retry is not None:
        lines.append(f"retry: {event.retry}")
    lines += [f"data: {line}" for line in event.data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def format_json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def offered_protocols(protocol: str, scheme: str) -> str:
    """What the client will try for ``protocol`` (an ``Options.protocol``) before anything is negotiated."""
    if protocol == "http3-only":
        return "HTTP/3"
    if protocol == "http2-prior-knowledge":
        return "HTTP/2"
    if scheme != "https" or protocol == "http1.1":
        return "HTTP/1.1"
    if protocol == "http3":
        return "HTTP/3, else HTTP/2 or HTTP/1.1"
    return "HTTP/2 or HTTP/1.1 by ALPN"


class Trace:
    """The current hop, for error messages; with ``verbose``, heads and connection use on ``err``."""

    def __init__(self, *, protocol: str, verbose: bool, err: TextIO) -> None:
        self._protocol_option = protocol
        self._verbose = verbose
        self._err = err
        self._pool: ConnectionPool | None = None
        self._connects = 0
        self._request: Request | None = None
        self.method = ""
        self.url = ""
        self.protocol = ""

    def attach(self, pool: ConnectionPool | None, method: str, url: str) -> None:
        """Start tracing: the pool to watch, and the request as given (before it is built)."""
        self._pool = pool
        self.method = method
        self.url = url
        self.protocol = offered_protocols(self._protocol_option, url.partition(":")[0].lower())

    def context(self) -> str:
        """``GET URL over PROTOCOL`` once a request has gone to the transport, else empty: an error
        before that (an invalid URL) has no protocol to name, and its message names the URL."""
        return f"{self.method} {self.url} over {self.protocol}" if self._request is not None else ""

    def report(self, label: str, message: str, hint: str = "") -> None:
        """The one error line: what failed, in brackets the request and protocol, then what to do, if anything."""
        context = self.context()
        where = f" [{context}]" if context else ""
        after = f" ({hint})" if hint else ""
        self._err.write(f"httpstream: {format_failure(label, message)}{where}{after}\n")
        self._err.flush()

    def note(self, message: str) -> None:
        self._err.write(f"httpstream: {message}\n")
        self._err.flush()

    def _print(self, prefix: str, lines: list[str]) -> None:
        self._err.write("".join(f"{prefix} {line}\n" for line in lines))
        self._err.flush()

    def on_request(self, request: Request) -> None:
        self.method = request.method
        self.url = str(request.url)
        self.protocol = offered_protocols(self._protocol_option, request.url.scheme)
        self._connects = self._pool.connects if self._pool is not None else 0
        self._request = request

    def on_response(self, response: Response) -> None:
        self.protocol = response.http_version
        if not self._verbose:
            return
        # The request head is printed here, not when it is handed to the pool:
        # only now is the protocol known (ALPN, Alt-Svc, a fallback from HTTP/3),
        # and curl's request line carries it: "> GET /path HTTP/2".
        request = response.request if self._request is None else self._request
        lines = [f"{request.method} {request.url.target} {response.http_version}"]
        lines += [f"{name}: {value}" for name, value in request.headers.multi_items()]
        self._print(">", [*lines, ""])
        self._print("<", [*head_lines(response), ""])
        if self._pool is None:
            connection = "through a custom transport"
        elif self._pool.connects > self._connects:
            connection = "new connection"
        else:
            connection = "reused connection"
        lines = [f"protocol: {response.http_version}, {connection}"]
        origin = response.request.url.origin
        if (
            self._pool is not None
            and self._protocol_option == "http3"
            and response.http_version != "HTTP/3"
            and self._pool.alt_svc.is_broken(origin, time.monotonic())
        ):
            lines.append(f"HTTP/3 failed for {origin} (no QUIC handshake): fell back to TCP")
        self._print("*", lines)

    def finished(self, response: Response) -> None:
        """After the response is released: what was received and what the pool kept."""
        if not self._verbose:
            return
        lines = [f"body: {response.num_bytes_downloaded} bytes received"]
        if self._pool is not None:
            stats = self._pool.stats()
            lines.append(
                f"pool: {stats.connections} connection(s) open, {stats.idle} idle for reuse, "
                f"{self._pool.connects} opened in all"
            )
        self._print("*", lines)
