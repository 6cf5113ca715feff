"""A short run of the fuzz targets (fuzz/), in-process, so that the harness keeps working.

The long runs are ``python -m fuzz h1 --examples 5000``; this one only checks
that a fixed-seed campaign of a few seconds passes and really reaches both
sides (bodies read to the end and peers caught misbehaving).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings

import pytest

import httpstream
from fuzz import run_target
from fuzz._harness import Settings

# The read timeout is what examples with a silent peer cost; 0.1 s keeps the run short.
SMOKE = Settings(examples=150, seed=20260101, read_timeout=0.1, hang_after=10.0)


@pytest.mark.timeout(60)
def test_h1_fuzz_smoke() -> None:
    result = run_target("h1", SMOKE)
    assert result.ok, f"{result.summary_line()}\n{result.failure}"
    assert result.examples_run >= SMOKE.examples
    assert result.outcomes["complete"] > 0
    assert result.outcomes["RemoteProtocolError"] > 0


@pytest.mark.timeout(30)
def test_cancel_while_connecting_leaves_no_socket_open() -> None:
    """A request cancelled at any loop turn of its connect leaves no socket behind.

    The h1 fuzz target found this one: asyncio's own happy eyeballs
    (``create_connection(happy_eyeballs_delay=...)``, CPython 3.11) dropped the
    connected socket unclosed when cancelled in its last steps (4 to 10 loop
    turns in, on loopback); the server then kept a connection nobody owned.
    """

    async def main() -> int:
        open_connections = 0

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal open_connections
            open_connections += 1
            try:
                await reader.read()
            finally:
                open_connections -= 1
                writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        left_open = 0
        for turns in range(30):  # cancel after 0, 1, 2... loop turns: one of them hits the window
            pool = httpstream.ConnectionPool()
            request = httpstream.Request("GET", f"http://127.0.0.1:{port}/")
            task = asyncio.ensure_future(pool.handle_request(request))
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # the peer never answers
                await task
            await pool.aclose()
            for _ in range(20):
                await asyncio.sleep(0.001)
            left_open = max(left_open, open_connections)
            gc.collect()  # a dropped socket is closed (and reported) here
            for _ in range(5):
                await asyncio.sleep(0.001)
        server.close()
        await server.wait_closed()
        return left_open

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        left_open = asyncio.run(main())
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert left_open == 0, f"a cancelled request left a connection open on the server side; {unclosed}"
    assert not unclosed
