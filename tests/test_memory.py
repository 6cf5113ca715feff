"""Flat memory while streaming a large body, measured in a client subprocess."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from .servers import FaultServer, HypercornServer, read_request

CLIENT = r"""
import asyncio, json, resource, sys
import httpstream

async def main(url, slow, h2):
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"total": total, "growth_kb": peak - base, "peak_kb": peak, "in_use": stats.in_use,
                      "streams": stats.streams, "version": version}))

asyncio.run(main(sys.argv[1], sys.argv[2] == "slow", sys.argv[3] == "h2"))
"""

SIZE = 1024 * 1024 * 1024


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["fast", "slow"])
async def test_one_gib_download_holds_flat_memory(mode: str) -> None:
    block = b"\xab" * (1024 * 1024)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
        for _ in range(SIZE // len(block)):
            writer.write(block)
            await writer.drain()
        await writer.drain()

    async with FaultServer(handler) as srv:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, srv.url(), mode, "h1", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode == 0
    result = json.loads(out)
    assert result["total"] == SIZE
    assert result["in_use"] == 0
    assert result["growth_kb"] < 50 * 1024, f"peak RSS grew by {result['growth_kb']} KiB"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["fast", "slow"])
async def test_h2_download_holds_flat_memory(mode: str, server: HypercornServer) -> None:
    """512 MiB over HTTP/2 (h2c to hypercorn): memory bounded by the stream window."""
    size = 512 * 1024 * 1024
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, server.url(f"/bytes/{size}"), mode, "h2", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode == 0
    result = json.loads(out)
    assert result["version"] == "HTTP/2"
    assert result["total"] == size
    assert (result["in_use"], result["streams"]) == (0, 0)
    assert result["growth_kb"] < 50 * 1024, f"peak RSS grew by {result['growth_kb']} KiB"
