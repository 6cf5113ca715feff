"""A scripted fake peer: a raw asyncio TCP server on 127.0.0.1.

Theory of operation
-------------------
Before each example the target ``load``s a list of ``Reply`` scripts.  Whenever
the server has read one request (``read_request``, which the target supplies:
the HTTP/1.1 one reads up to the blank line that ends the head), it takes the
next unused reply, whatever connection the request came on, writes its bytes
piece by piece (cut where the reply says) with a turn of the event loop between them (so the client sees the
split points), writes the ``late`` bytes a few turns later, then ends as the
reply says: ``keep`` (stay open and wait for the next request), ``eof``
(half-close, then read until the client closes), ``close`` or ``abort``
(RST).  When the replies run out it closes.

``log`` records which reply went to which connection, so a target can tell
which bytes the client saw for which request.  ``open_connections`` counts the
server-side connections not yet closed by either side: after the client's pool
is closed it must fall to zero, else the client left a socket open.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["END_MODES", "Reply", "ScriptedPeer", "Served", "bytes_expr"]

END_MODES = ("keep", "close", "eof", "abort")


@dataclass(frozen=True, slots=True)
class Reply:
    """What the peer writes in answer to one request: ``wire`` cut at ``cuts``."""

    wire: bytes
    cuts: tuple[int, ...] = ()
    end: str = "keep"
    late: bytes = b""

    @property
    def segments(self) -> list[bytes]:
        bounds = [0, *sorted(c for c in set(self.cuts) if 0 < c < len(self.wire)), len(self.wire)]
        return [self.wire[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    @property
    def closes(self) -> bool:
        """The client sees the end of the byte stream after this reply."""
        return self.end != "keep"

    def __repr__(self) -> str:
        every = len(self.wire) > 2 and self.cuts == tuple(range(1, len(self.wire)))
        cuts = f"range(1, {len(self.wire)})" if every else repr(self.cuts)
        return f"Reply(wire={bytes_expr(self.wire)}, cuts={cuts}, end={self.end!r}, late={bytes_expr(self.late)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def bytes_expr(data: bytes) -> str:
    """A Python expression for ``data``, with long runs of one byte written ``b'x' * n``."""
    parts: list[str] = []
    start = 0
    for run in _RUN.finditer(data):
        if run.start() > start:
            parts.append(repr(data[start : run.start()]))
        parts.append(f"{data[run.start() : run.start() + 1]!r} * {len(run.group())}")
        start = run.end()
    if start < len(data) or not parts:
        parts.append(repr(data[start:]))
    return " + ".join(parts)


_RUN = re.compile(rb"(.)\1{31,}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Served:
    connection: int  # accept order, from 0
    reply: int  # index into the loaded replies
    first_on_connection: bool
    request: bytes  # what read_request returned (the HTTP/1.1 request head)


ReadRequest = Callable[[asyncio.StreamReader], Awaitable[bytes | None]]


class ScriptedPeer:
    """Answers requests with the loaded ``Reply`` scripts, in order."""

    def __init__(self, read_request: ReadRequest) -> None:
        self._read_request = read_request
        self._server: asyncio.Server | None = None
        self._replies: list[Reply] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.accepted = 0
        self.open_connections = 0
        self.log: list[Served] = []

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> ScriptedPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        await self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def load(self, replies: Sequence[Reply]) -> None:
        self._replies = list(replies)
        self.log = []
        self.accepted = 0

    async def reset(self) -> None:
        """End every connection of the last example (they must not leak into the next)."""
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.open_connections = 0

    async def wait_all_closed(self, timeout: float) -> bool:
        """True once every server-side connection has ended, False after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        turns = 0
        while self.open_connections:
            if loop.time() >= deadline:
                return False
            turns += 1
            await asyncio.sleep(0 if turns < 50 else 0.002)
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        connection = self.accepted
        self.accepted += 1
        self.open_connections += 1
        first = True
        try:
            while True:
                head = await self._read_request(reader)
                if head is None or len(self.log) >= len(self._replies):
                    break
                index = len(self.log)
                self.log.append(Served(connection, index, first, head))
                first = False
                reply = self._replies[index]
                for segment in reply.segments:
                    writer.write(segment)
                    await writer.drain()
                    await asyncio.sleep(0)
                if reply.late:
                    for _ in range(3):
                        await asyncio.sleep(0)
                    writer.write(reply.late)
                    await writer.drain()
                if reply.end == "abort":
                    writer.transport.abort()
                    break
                if reply.end == "close":
                    break
                if reply.end == "eof":
                    # Half-close; whatever the client still sends (a request it wrote before
                    # the FIN reached it) goes unanswered until it closes its side.
                    writer.write_eof()
                    while await reader.read(65536):
                        pass
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass  # the client went away, or reset() ended the example: both are normal here
        finally:
            self.open_connections -= 1
            writer.close()
            # Await the close so that its outcome (a reset, say) is retrieved here,
            # not reported as "exception never retrieved" when collected.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._tasks.discard(task)
            self._writers.discard(writer)
