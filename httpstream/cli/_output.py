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
say what failed, for which URL, over which protocol; with ``-v`` it also
prints each hop's headers and whether the pool opened a new connection for it
(``ConnectionPool.connects`` moved) or reused one.
"""

from __future__ import annotations

import io
import json
import os
import stat
from typing import Any, BinaryIO, TextIO

from .._models import Request, Response
from .._pool import ConnectionPool
from .._sse import ServerSentEvent

__all__ = ["Sink", "Trace", "format_event", "format_head", "format_json", "is_live"]


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


def format_head(response: Response) -> bytes:
    """The status line and headers, as ``-I`` and ``-i`` print them (LF line ends)."""
    lines = [f"{response.http_version} {response.status_code} {response.reason_phrase}".rstrip()]
    lines += [f"{name}: {value}" for name, value in response.headers.multi_items()]
    return ("\n".join(lines) + "\n\n").encode("utf-8", "replace")


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
        return "HTTP/3 if advertised, else HTTP/2 or HTTP/1.1"
    return "HTTP/2 or HTTP/1.1 by ALPN"


class Trace:
    """The current hop, for error messages; with ``verbose``, heads and connection use on ``err``."""

    def __init__(self, *, protocol: str, verbose: bool, err: TextIO) -> None:
        self._protocol_option = protocol
        self._verbose = verbose
        self._err = err
        self._pool: ConnectionPool | None = None
        self._connects = 0
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
        return f"{self.method} {self.url} over {self.protocol}" if self.method else ""

    def report(self, label: str, message: str, hint: str = "") -> None:
        """The one error line: what failed, in brackets the request and protocol, then a hint if any."""
        context = self.context()
        where = f" [{context}]" if context else ""
        after = f" ({hint})" if hint else ""
        self._err.write(f"httpstream: {label}: {message}{where}{after}\n")
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
        if self._verbose:
            lines = [f"{request.method} {request.url.target}"]
            lines += [f"{name}: {value}" for name, value in request.headers.multi_items()]
            self._print(">", [*lines, ""])

    def on_response(self, response: Response) -> None:
        self.protocol = response.http_version
        if not self._verbose:
            return
        head = format_head(response).decode("utf-8").split("\n")[:-1]
        self._print("<", head)
        if self._pool is None:
            connection = "through a custom transport"
        elif self._pool.connects > self._connects:
            connection = "new connection"
        else:
            connection = "reused connection"
        self._print("*", [f"protocol: {response.http_version}, {connection}"])

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
