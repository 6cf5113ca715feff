"""Flat memory while streaming a large body, measured in a client subprocess.

2 GiB through HTTP/1.1 and through HTTP/2 (h2c to hypercorn: a few seconds on
loopback, so no external server is needed), read fast and read slowly at first,
with the client's peak RSS growth under 50 MB; and one HTTP/2 stream left
unread while others on the same connection run to completion, its buffer
bounded by the stream window.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from .peers.servers import FaultServer, HypercornServer, read_request

# Peak RSS since a point in time: Linux resets the high-water mark (VmHWM) to the
# current RSS when 5 is written to clear_refs, so what imports cost before the
# start is not mistaken for headroom (ru_maxrss keeps that earlier peak).
PEAK = r"""
import re

def _status(key):
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\s+(\d+)", f.read()).group(1))

def start_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")

def peak():
    return _status("VmHWM")
"""

CLIENT = PEAK + r"""
import asyncio, json, sys
import httpstream

async def main(url, slow, h2):
    base = start_peak()
    total = 0
    options = {"http1": False, "http2": True} if h2 else {}
    async with httpstream.AsyncClient(**options) as client:
        async with client.stream("GET", url) as r:
            async for chunk in r.aiter_bytes(65536):
                total += len(chunk)
                if slow and total < 64 * 65536:
                    await asyncio.sleep(0.005)  # a slow start: the server must wait
            version = r.http_version
        stats = client.transport.stats()
    top = peak()
    print(json.dumps({"total": total, "growth_kb": top - base, "peak_kb": top, "in_use": stats.in_use,
                      "streams": stats.streams, "version": version}))

asyncio.run(main(sys.argv[1], sys.argv[2] == "slow", sys.argv[3] == "h2"))
"""

SIZE = 2 * 1024 * 1024 * 1024


async def run_client(script: str, *args: str) -> dict[str, object]:
    """Run ``script`` in a fresh interpreter (bounded), return the JSON it prints."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, *args, stdout=asyncio.subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 100)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    result: dict[str, object] = json.loads(out)
    return result


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["fast", "slow"])
async def test_two_gib_download_holds_flat_memory(mode: str) -> None:
    """2 GiB over HTTP/1.1 from a raw server: memory bounded by the read high-water mark."""
    block = b"\xab" * (1024 * 1024)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
        for _ in range(SIZE // len(block)):
            writer.write(block)
            await writer.drain()
        await writer.drain()

    async with FaultServer(handler) as srv:
        result = await run_client(CLIENT, srv.url(), mode, "h1")
    assert result["total"] == SIZE
    assert result["in_use"] == 0
    assert isinstance(result["growth_kb"], int)
    print(f"memory figure: {result}")  # shown with pytest -s, for the closing notes
    assert result["growth_kb"] < 50 * 1024, f"peak RSS grew by {result['growth_kb']} KiB"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["fast", "slow"])
async def test_h2_two_gib_download_holds_flat_memory(mode: str, server: HypercornServer) -> None:
    """2 GiB over HTTP/2 (h2c to hypercorn): memory bounded by the stream window."""
    size = SIZE
    result = await run_client(CLIENT, server.url(f"/bytes/{size}"), mode, "h2")
    assert result["version"] == "HTTP/2"
    assert result["total"] == size
    assert (result["in_use"], result["streams"]) == (0, 0)
    assert isinstance(result["growth_kb"], int)
    print(f"memory figure: {result}")  # shown with pytest -s, for the closing notes
    assert result["growth_kb"] < 50 * 1024, f"peak RSS grew by {result['growth_kb']} KiB"


STALLED = PEAK + r"""
import asyncio, json, sys
import httpstream

BIG = 1024 * 1024 * 1024
OTHER = 8 * 1024 * 1024

async def main(base):
    base_rss = start_peak()
    limits = httpstream.Limits(h2_stream_window=1024 * 1024)
    window = limits.h2_stream_window
    options = {"http1": False, "http2": True, "limits": limits, "timeout": httpstream.Timeout.all(20)}
    async with httpstream.AsyncClient(**options) as client:
        pool = client.transport
        async with client.stream("GET", f"{base}/bytes/{BIG}") as stalled:
            stream = stalled.stream
            chunks = aiter(stream)
            first = len(await anext(chunks))  # then nothing: the server must stop at the window

            async def other(i):
                got = 0
                async with client.stream("GET", f"{base}/bytes/{OTHER}?i={i}") as r:
                    async for chunk in r.aiter_raw():
                        got += len(chunk)
                return got

            others = []
            for batch in range(5):  # 40 streams, 320 MiB, 8 at a time, beside the stalled one
                others += await asyncio.gather(*(other(batch * 8 + i) for i in range(8)))
            held = stream.buffer.size
            connections = pool.stats().connections
            more = 0
            while more < 64 * 1024 * 1024:  # the stalled stream still flows when read
                more += len(await anext(chunks))
        stats = pool.stats()
    top = peak()
    print(json.dumps({"others": others, "held": held, "window": window, "connections": connections,
                      "first": first, "more": more, "growth_kb": top - base_rss,
                      "in_use": stats.in_use, "streams": stats.streams}))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.timeout(120)
async def test_h2_stalled_reader_is_bounded_while_others_proceed(server: HypercornServer) -> None:
    """One HTTP/2 stream never read while 40 others on the same connection complete.

    The stalled stream holds at most its window (1 MiB here; HTTP/2 credit is
    given only for bytes the caller consumed), the connection window leaves room
    for the others, and the client's memory stays within the windows.
    """
    result = await run_client(STALLED, server.url("").rstrip("/"))
    assert result["others"] == [8 * 1024 * 1024] * 40
    assert result["connections"] == 1  # the others shared the stalled stream's connection
    window = result["window"]
    assert isinstance(window, int) and isinstance(result["held"], int) and isinstance(result["first"], int)
    assert 0 < result["held"] + result["first"] <= window, result
    assert result["more"] >= 64 * 1024 * 1024
    assert (result["in_use"], result["streams"]) == (0, 0)
    assert isinstance(result["growth_kb"], int)
    # The stalled window, plus at most a window for each of the 8 running streams.
    assert result["growth_kb"] < 16 * 1024, f"peak RSS grew by {result['growth_kb']} KiB"
