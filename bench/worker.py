"""Benchmark worker: runs ONE scenario with ONE client and prints one JSON line.

    python -m bench.worker CLIENT SCENARIO BASE_URL [--count N] [--tag TAG]

BASE_URL is the nginx root, e.g. ``http://127.0.0.1:8080``.  The last line of
stdout is always a JSON object with at least ``ok`` (bool); on failure it has
``error`` and, when the client library cannot be imported, ``unavailable``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import traceback
from typing import Any

from bench.clients import CLIENTS, Adapter, make_adapter, probe

SCENARIOS = (
    "seq_small",
    "conc10_small",
    "big_download",
    "early_close",
    "early_close_small",
)
BIG_SIZE = 1 << 30
SMALL_LEN = len(b"hello world\n")
MID_SIZE = 40 * 1024
CONCURRENCY = 10
EARLY_CLOSE_FOLLOWUP = 100
DEFAULT_COUNTS = {"seq_small": 5000, "conc10_small": 10000}
INNER_TIMEOUT = 280.0  # seconds; the harness kills the process at 300 s


class ScenarioError(RuntimeError):
    pass


def _maxrss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return float("nan")


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _expect_small(a: Adapter, url: str) -> None:
    n = await a.get(url)
    if n != SMALL_LEN:
        raise ScenarioError(f"small body length {n} != {SMALL_LEN}")


async def seq_small(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    url = base + "/small"
    for _ in range(min(50, count)):  # warm-up; also opens the connection
        await _expect_small(a, url)
    get = a.get
    cpu0, t0 = _cpu_s(), time.perf_counter()
    for _ in range(count):
        await get(url)
    elapsed = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    return {
        "value": count / elapsed,
        "unit": "req/s",
        "requests": count,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "cpu_us_per_req": cpu / count * 1e6,
    }


async def conc10_small(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    url = base + "/small"
    # warm-up: CONCURRENCY parallel requests open the pool's connections
    await asyncio.gather(*(_expect_small(a, url) for _ in range(CONCURRENCY)))
    per_task = max(1, count // CONCURRENCY)
    get = a.get

    async def task() -> None:
        for _ in range(per_task):
            await get(url)

    cpu0, t0 = _cpu_s(), time.perf_counter()
    await asyncio.gather(*(task() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    total = per_task * CONCURRENCY
    return {
        "value": total / elapsed,
        "unit": "req/s",
        "requests": total,
        "concurrency": CONCURRENCY,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "cpu_us_per_req": cpu / total * 1e6,
    }


async def big_download(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    url = base + "/big"
    await _expect_small(a, base + "/small")  # connection + imports warmed up
    rss_before = _rss_mb()
    maxrss_before = _maxrss_mb()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    n = await a.download(url, 65536)
    elapsed = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    if n != BIG_SIZE:
        raise ScenarioError(f"downloaded {n} bytes, expected {BIG_SIZE}")
    return {
        "value": n / elapsed / 1e6,
        "unit": "MB/s",
        "bytes": n,
        "chunk_size": 65536,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "rss_before_mb": rss_before,
        "maxrss_before_mb": maxrss_before,
        "peak_rss_mb": _maxrss_mb(),
    }


async def _early(a: Adapter, base: str, tag: str, file: str, chunk: int, size: int) -> dict[str, Any]:
    stream_url = f"{base}/ec/{tag}/{file}"
    small_url = f"{base}/ec/{tag}/small"
    # warm-up outside /ec/ (not counted): lazy imports and the first connect
    # are kept out of stream_close_ms; the stream may reuse this connection.
    await _expect_small(a, base + "/small")
    t0 = time.perf_counter()
    got = await a.early_close(stream_url, chunk)
    close_s = time.perf_counter() - t0
    if not 0 < got < size:
        raise ScenarioError(f"early close read {got} bytes of {size}")
    t1 = time.perf_counter()
    for _ in range(EARLY_CLOSE_FOLLOWUP):
        await _expect_small(a, small_url)
    follow_s = time.perf_counter() - t1
    return {
        # "value" (connections) is filled in by the harness from nginx's log
        "unit": "connections",
        "stream_bytes_read": got,
        "stream_close_ms": close_s * 1000.0,
        "followup_requests": EARLY_CLOSE_FOLLOWUP,
        "followup_s": follow_s,
    }


async def early_close(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    return await _early(a, base, tag, "big", 65536, BIG_SIZE)


async def early_close_small(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    return await _early(a, base, tag, "mid40k", 8192, MID_SIZE)


RUNNERS = {
    "seq_small": seq_small,
    "conc10_small": conc10_small,
    "big_download": big_download,
    "early_close": early_close,
    "early_close_small": early_close_small,
}


async def _run(client: str, scenario: str, base: str, count: int, tag: str) -> dict[str, Any]:
    adapter = make_adapter(client)
    async with adapter:
        return await asyncio.wait_for(RUNNERS[scenario](adapter, base, count, tag), INNER_TIMEOUT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.worker")
    p.add_argument("client", choices=CLIENTS)
    p.add_argument("scenario", choices=(*SCENARIOS, "probe"))
    p.add_argument("base_url")
    p.add_argument("--count", type=int, default=0, help="requests (small scenarios)")
    p.add_argument("--tag", default="t", help="URL tag for the early_close scenarios")
    args = p.parse_args(argv)
    base = args.base_url.rstrip("/")
    count = args.count or DEFAULT_COUNTS.get(args.scenario, 0)
    out: dict[str, Any] = {"client": args.client, "scenario": args.scenario}
    try:
        out["version"] = probe(args.client)
        if args.scenario != "probe":
            out.update(asyncio.run(_run(args.client, args.scenario, base, count, args.tag)))
        out["ok"] = True
    except ImportError as exc:
        out.update(ok=False, unavailable=True, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # every failure is reported as JSON
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        out["traceback"] = traceback.format_exc(limit=8)[-3000:]
    sys.stdout.flush()
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
