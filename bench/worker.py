"""Benchmark worker: runs ONE scenario with ONE client and prints one JSON line.

    python -m bench.worker CLIENT SCENARIO BASE_URL [--count N] [--tag TAG] [--ca CA.pem]
                           [--httpstream-path TREE]

BASE_URL is the nginx root, e.g. ``http://127.0.0.1:8080``; for the ``h2_*``
scenarios it is the TLS server, e.g. ``https://127.0.0.1:8443``, and ``--ca``
names the CA file that signed its certificate.  For ``h3_conc100`` and
``h3_big`` it is caddy's HTTP/3 site, for ``h3_fallback`` caddy's HTTP/1.1
site whose responses advertise a blackholed UDP port with Alt-Svc (see
bench/caddy.py), with ``--ca`` caddy's CA file.  For ``h1_duplex_echo`` it is
the hypercorn echo server's plain port, for ``h2_duplex_echo`` its TLS port
(bench/echo.py), with ``--ca`` its CA file.

Client ``httpstream-baseline`` needs ``--httpstream-path TREE``: the worker
puts TREE first on ``sys.path`` before anything imports httpstream (``bench``
itself still comes from this tree), and checks that ``httpstream.__file__``
lies inside TREE.  For both httpstream clients the JSON has
``httpstream_file``.  The last line of stdout is
always a JSON object with at least ``ok`` (bool); on failure it has ``error``
and, when the client library cannot be imported, ``unavailable``; a run that
stalled past its bound has ``timeout: true``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
import traceback
from typing import Any

from bench.clients import BASELINE, CLIENTS, TLS, Adapter, Duplex, is_httpstream, make_adapter, probe

SCENARIOS = (
    "seq_small",
    "conc10_small",
    "big_download",
    "early_close",
    "early_close_small",
    "h2_conc100",
    "h2_big",
    "h2_early_close",
    "h3_conc100",
    "h3_big",
    "h3_fallback",
    "h1_duplex_echo",
    "h2_duplex_echo",
)
# scenarios run against the TLS + HTTP/2 server (need --ca)
H2_SCENARIOS = ("h2_conc100", "h2_big", "h2_early_close")
# scenarios run against caddy (HTTP/3; need --ca)
H3_SCENARIOS = ("h3_conc100", "h3_big", "h3_fallback")
# scenarios run against the hypercorn echo server (h2_duplex_echo needs --ca)
DUPLEX_SCENARIOS = ("h1_duplex_echo", "h2_duplex_echo")
BIG_SIZE = 1 << 30
H3_BIG_SIZE = 256 * 1024 * 1024  # caddy's /big
SMALL_LEN = len(b"hello world\n")
MID_SIZE = 40 * 1024
CONCURRENCY = 10
H2_CONCURRENCY = 100
EARLY_CLOSE_FOLLOWUP = 100
DUPLEX_CHUNK = 65536
# duplex scenarios: --count is the number of 64 KiB chunks (4096 = 256 MiB)
DEFAULT_COUNTS = {
    "seq_small": 5000,
    "conc10_small": 10000,
    "h2_conc100": 20000,
    "h3_conc100": 5000,
    "h1_duplex_echo": 4096,
    "h2_duplex_echo": 4096,
}
INNER_TIMEOUT = 280.0  # seconds; the harness kills the process at 300 s
# h2_early_close: a client that stalls after the early close is given up on
# after this long (the harness kills the worker at 30 s)
H2_EARLY_CLOSE_TIMEOUT = 20.0
# h3_fallback: the three requests must be done within this (the harness kills
# the worker at 30 s)
H3_FALLBACK_TIMEOUT = 20.0
# duplex echo: a run in which no byte went up or came back for DUPLEX_STALL s
# has deadlocked (a client that sends the whole body before it reads the
# response); the whole echo must be done within DUPLEX_TIMEOUT (the harness
# kills the worker at 150 s)
DUPLEX_STALL = 10.0
DUPLEX_TIMEOUT = 120.0
DUPLEX_WARMUP_TIMEOUT = 15.0
CLOSE_TIMEOUT = 5.0  # closing the client at the end of a run


class ScenarioError(RuntimeError):
    pass


class NotFullDuplex(ScenarioError):
    """The echo completed, but the client read the response only after its
    whole upload (the server buffered the echo); ``partial`` holds the run."""

    def __init__(self, message: str, partial: dict[str, Any]) -> None:
        super().__init__(message)
        self.partial = partial


class ScenarioTimeout(ScenarioError):
    """The scenario stalled; ``partial`` holds what was measured before."""

    def __init__(self, message: str, partial: dict[str, Any]) -> None:
        super().__init__(message)
        self.partial = partial


def _ru_maxrss_mb() -> float:
    # Linux reports ru_maxrss in KiB.  Caveat: Linux carries it across fork +
    # exec, so in a worker started by the harness it is at least the harness's
    # own peak RSS at the time of the spawn; see _maxrss_mb.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _maxrss_mb() -> float:
    """Peak RSS of this process image: VmHWM from /proc/self/status (reset by
    exec), falling back to ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return _ru_maxrss_mb()


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
        "ru_maxrss_mb": _ru_maxrss_mb(),
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


# ---------------------------------------------------------------------------
# HTTP/2 over TLS.  All requests go to /h2/<tag>/..., which nginx logs with
# $connection and $server_protocol; "requests_sent" tells the harness how many
# log lines to wait for.
# ---------------------------------------------------------------------------
async def h2_conc100(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    return await _conc100(a, f"{base}/h2/{tag}/small", count)


async def _conc100(a: Adapter, url: str, count: int) -> dict[str, Any]:
    protocol = await a.probe_protocol(url)  # opens the connection (ALPN, or QUIC)
    # warm-up round (not timed): H2_CONCURRENCY requests at once; the pool is
    # sampled while they are in flight
    tasks = [asyncio.ensure_future(_expect_small(a, url)) for _ in range(H2_CONCURRENCY)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    pool_in_flight = a.pool_info()
    await asyncio.gather(*tasks)
    rounds = max(1, count // H2_CONCURRENCY)
    get = a.get
    perf = time.perf_counter
    slowest = 0.0
    cpu0, t0 = _cpu_s(), perf()
    for _ in range(rounds):
        t = perf()
        await asyncio.gather(*[get(url) for _ in range(H2_CONCURRENCY)])
        slowest = max(slowest, perf() - t)
    elapsed = perf() - t0
    cpu = _cpu_s() - cpu0
    total = rounds * H2_CONCURRENCY
    return {
        "value": total / elapsed,
        "unit": "req/s",
        "protocol": protocol,
        "requests": total,
        "rounds": rounds,
        "concurrency": H2_CONCURRENCY,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "cpu_us_per_req": cpu / total * 1e6,
        "max_round_ms": slowest * 1000.0,  # the slowest round of H2_CONCURRENCY requests
        "pool_in_flight": pool_in_flight,
        "pool_end": a.pool_info(),
        "requests_sent": 1 + H2_CONCURRENCY + total,
    }


async def h2_big(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    return await _big(a, f"{base}/h2/{tag}/small", f"{base}/h2/{tag}/big", BIG_SIZE)


async def _big(a: Adapter, small_url: str, big_url: str, size: int) -> dict[str, Any]:
    protocol = await a.probe_protocol(small_url)  # connection + imports warmed up
    rss_before = _rss_mb()
    maxrss_before = _maxrss_mb()
    cpu0, t0 = _cpu_s(), time.perf_counter()
    n = await a.download(big_url, 65536)
    elapsed = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    if n != size:
        raise ScenarioError(f"downloaded {n} bytes, expected {size}")
    return {
        "value": n / elapsed / 1e6,
        "unit": "MB/s",
        "protocol": protocol,
        "bytes": n,
        "chunk_size": 65536,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "rss_before_mb": rss_before,
        "maxrss_before_mb": maxrss_before,
        "peak_rss_mb": _maxrss_mb(),
        "ru_maxrss_mb": _ru_maxrss_mb(),
        "pool_end": a.pool_info(),
        "requests_sent": 2,
    }


async def h2_early_close(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    small_url = f"{base}/h2/{tag}/small"
    out: dict[str, Any] = {"unit": "connections", "requests_sent": 1}
    phase = "warm-up GET"
    t_start = time.perf_counter()
    try:
        async with asyncio.timeout(H2_EARLY_CLOSE_TIMEOUT):
            out["protocol"] = await a.probe_protocol(small_url)
            phase = "early-closed 1 GiB stream"
            t0 = time.perf_counter()
            out["requests_sent"] += 1
            got = await a.early_close(f"{base}/h2/{tag}/big", 65536)
            out["stream_close_ms"] = (time.perf_counter() - t0) * 1000.0
            if not 0 < got < BIG_SIZE:
                raise ScenarioError(f"early close read {got} bytes of {BIG_SIZE}")
            out["stream_bytes_read"] = got
            out["pool_after_close"] = a.pool_info()
            out["followups_done"] = 0
            t1 = time.perf_counter()
            for i in range(EARLY_CLOSE_FOLLOWUP):
                phase = f"follow-up GET {i + 1}/{EARLY_CLOSE_FOLLOWUP}"
                out["requests_sent"] += 1
                t = time.perf_counter()
                await _expect_small(a, small_url)
                if i == 0:
                    out["first_followup_ms"] = (time.perf_counter() - t) * 1000.0
                out["followups_done"] = i + 1
            out["followup_s"] = time.perf_counter() - t1
            out["followup_100_ms"] = out["followup_s"] * 1000.0
    except TimeoutError:
        # asyncio.timeout() or a client's own timeout exception deriving from it
        waited = time.perf_counter() - t_start
        raise ScenarioTimeout(f"timed out: {phase} did not complete ({waited:.1f} s into the run)", out) from None
    except Exception as exc:
        if "timeout" in type(exc).__name__.lower():  # httpx.ReadTimeout, niquests ReadTimeout, ...
            waited = time.perf_counter() - t_start
            raise ScenarioTimeout(
                f"timed out: {phase} raised {type(exc).__name__} ({waited:.1f} s into the run)", out
            ) from exc
        raise
    out["pool_end"] = a.pool_info()
    return out


# ---------------------------------------------------------------------------
# HTTP/3 against caddy.  Requests carry the tag as a query string (?t=TAG),
# which caddy's access log keeps; "requests_sent" tells the harness how many
# log lines to wait for.
# ---------------------------------------------------------------------------
async def h3_conc100(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    return await _conc100(a, f"{base}/small?t={tag}", count)


async def h3_big(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    return await _big(a, f"{base}/small?t={tag}", f"{base}/big?t={tag}", H3_BIG_SIZE)


async def h3_fallback(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    """Three sequential GETs of a TLS HTTP/1.1 site whose responses say
    ``Alt-Svc: h3=":<blackhole>"``.  The first runs over TCP and teaches the
    client the alternative; the second tries QUIC at the blackhole (no answer,
    no ICMP), gives up and falls back to TCP: its latency is the metric; the
    third shows whether the client remembers that the alternative is broken.

    Then the same three GETs with a second, fresh client in the same process
    ("warm": the QUIC modules a client imports on its first HTTP/3 attempt are
    loaded by now), so the fallback deadline can be told from the import cost."""
    url = f"{base}/small?t={tag}"
    out: dict[str, Any] = {"unit": "ms", "requests_sent": 0, "protocols": [], "protocols_warm": []}
    steps = [(a, "protocols", name) for name in ("first_ms", "fallback_ms", "third_ms")]
    steps += [(None, "protocols_warm", name) for name in ("first_warm_ms", "fallback_warm_ms", "third_warm_ms")]
    t_start = time.perf_counter()
    try:
        async with asyncio.timeout(H3_FALLBACK_TIMEOUT), contextlib.AsyncExitStack() as stack:
            client = a
            for adapter, protos, name in steps:
                if adapter is None and client is a:  # the second, fresh client
                    client = await stack.enter_async_context(make_adapter(a.name, a.tls))
                out["requests_sent"] += 1
                t = time.perf_counter()
                out[protos].append(await client.probe_protocol(url))
                out[name] = (time.perf_counter() - t) * 1000.0
    except TimeoutError:
        waited = time.perf_counter() - t_start
        raise ScenarioTimeout(
            f"timed out: request {out['requests_sent']} did not complete ({waited:.1f} s into the run)", out
        ) from None
    except Exception as exc:
        if "timeout" in type(exc).__name__.lower():
            waited = time.perf_counter() - t_start
            raise ScenarioTimeout(
                f"timed out: request {out['requests_sent']} raised {type(exc).__name__} ({waited:.1f} s into the run)",
                out,
            ) from exc
        raise
    out["value"] = out["fallback_ms"]
    out["protocol"] = out["protocols"][1]  # the protocol the fallback ended on
    out["pool_end"] = a.pool_info()
    return out


# ---------------------------------------------------------------------------
# Full-duplex echo against hypercorn (bench/echo.py): the request body goes up
# while the echoed response body comes down.
# ---------------------------------------------------------------------------
async def _duplex_echo(a: Adapter, url: str, chunks: int) -> dict[str, Any]:
    out: dict[str, Any] = {"unit": "MB/s", "chunk_size": DUPLEX_CHUNK, "chunks": chunks}
    # warm-up (not timed): one chunk up and back opens the connection and
    # runs the imports; it completes even for a client that sends the whole
    # body before reading the response
    warm = Duplex()
    try:
        out["protocol"] = await asyncio.wait_for(a.duplex_echo(url, 1, DUPLEX_CHUNK, warm), DUPLEX_WARMUP_TIMEOUT)
    except Exception as exc:
        if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
            raise ScenarioTimeout(f"timed out: the warm-up echo of one chunk ({type(exc).__name__})", out) from exc
        raise
    if warm.received != DUPLEX_CHUNK:
        raise ScenarioError(f"warm-up echo: got {warm.received} bytes back of {DUPLEX_CHUNK}")
    total = chunks * DUPLEX_CHUNK
    progress = Duplex()
    rss_before = _rss_mb()
    maxrss_before = _maxrss_mb()
    perf = time.perf_counter
    cpu0, t0 = _cpu_s(), perf()
    task = asyncio.ensure_future(a.duplex_echo(url, chunks, DUPLEX_CHUNK, progress))
    seen, seen_t = (0, 0), t0
    stalled = ""
    while not task.done():
        await asyncio.wait({task}, timeout=0.25)
        now = perf()
        if (progress.sent, progress.received) != seen:
            seen, seen_t = (progress.sent, progress.received), now
        elif now - seen_t > DUPLEX_STALL:
            stalled = f"no byte sent or received for {DUPLEX_STALL:.0f} s"
        if not task.done() and (stalled or now - t0 > DUPLEX_TIMEOUT):
            stalled = stalled or f"not done after {DUPLEX_TIMEOUT:.0f} s"
            break
    exc = None if stalled or task.cancelled() else task.exception()
    if exc is not None and "timeout" in type(exc).__name__.lower():
        # the client's own timeout (httpx.WriteTimeout, ...): a stall too
        stalled = f"the client raised {type(exc).__name__}: {str(exc)[:200]}"
    if stalled:
        task.cancel()
        await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
        out.update(
            sent_mib=progress.sent / 2**20,
            received_mib=progress.received / 2**20,
            sent_at_head_mib=None if progress.sent_at_head is None else progress.sent_at_head / 2**20,
        )
        raise ScenarioTimeout(
            f"timed out: {stalled} ({perf() - t0:.1f} s into the echo; "
            f"{progress.sent / 2**20:.1f} MiB handed to the client, {progress.received / 2**20:.1f} MiB back; "
            + ("response head not received" if progress.sent_at_head is None else "response head received")
            + ")",
            out,
        )
    out["protocol"] = task.result()
    elapsed = perf() - t0
    cpu = _cpu_s() - cpu0
    if progress.received != total or progress.sent != total:
        raise ScenarioError(f"echo: sent {progress.sent} bytes, got {progress.received} back, expected {total}")
    out.update(
        value=total / elapsed / 1e6,
        bytes=total,
        elapsed_s=elapsed,
        cpu_s=cpu,
        # how much of the upload had been handed over when the response head
        # and the first echoed byte arrived: far below the total = full duplex
        sent_at_head_mib=None if progress.sent_at_head is None else progress.sent_at_head / 2**20,
        sent_at_first_byte_mib=None if progress.sent_at_first_byte is None else progress.sent_at_first_byte / 2**20,
        rss_before_mb=rss_before,
        maxrss_before_mb=maxrss_before,
        peak_rss_mb=_maxrss_mb(),
        ru_maxrss_mb=_ru_maxrss_mb(),
        pool_end=a.pool_info(),
    )
    out["full_duplex"] = progress.sent_at_first_byte is not None and progress.sent_at_first_byte < total
    if not out["full_duplex"]:
        # hypercorn's HTTP/2 keeps buffering the echo while the client's
        # window is closed, so a client that reads only after its upload gets
        # through instead of stalling: not a full-duplex figure
        out["half_duplex_mb_s"] = out.pop("value")
        raise NotFullDuplex(
            f"not full duplex: the first echoed byte was read after the whole upload "
            f"({total / 2**20:.0f} MiB; the server buffered the echo); {out['half_duplex_mb_s']:.1f} MB/s that way",
            out,
        )
    return out


async def h1_duplex_echo(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    return await _duplex_echo(a, f"{base}/echo", count)


async def h2_duplex_echo(a: Adapter, base: str, count: int, tag: str) -> dict[str, Any]:
    return await _duplex_echo(a, f"{base}/echo", count)


RUNNERS = {
    "seq_small": seq_small,
    "conc10_small": conc10_small,
    "big_download": big_download,
    "early_close": early_close,
    "early_close_small": early_close_small,
    "h2_conc100": h2_conc100,
    "h2_big": h2_big,
    "h2_early_close": h2_early_close,
    "h3_conc100": h3_conc100,
    "h3_big": h3_big,
    "h3_fallback": h3_fallback,
    "h1_duplex_echo": h1_duplex_echo,
    "h2_duplex_echo": h2_duplex_echo,
}


async def _run(client: str, scenario: str, base: str, count: int, tag: str, ca: str | None) -> dict[str, Any]:
    tls = None
    if scenario in H2_SCENARIOS or scenario == "h2_duplex_echo":
        if not ca:
            raise ScenarioError(f"{scenario} needs --ca (the TLS server's CA file)")
        tls = TLS(ca, http2=True)  # aiohttp: HTTP/1.1 over TLS
    elif scenario in H3_SCENARIOS:
        if not ca:
            raise ScenarioError(f"{scenario} needs --ca (caddy's CA file)")
        # h3_fallback: TCP first, HTTP/3 from Alt-Svc; the others: QUIC straight away
        tls = TLS(ca, http2=False, http3="discover" if scenario == "h3_fallback" else "only")
    adapter = make_adapter(client, tls)
    await adapter.__aenter__()
    try:
        result = await asyncio.wait_for(RUNNERS[scenario](adapter, base, count, tag), INNER_TIMEOUT)
    except BaseException as exc:
        # a stalled client may not close cleanly either: bound the close
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await adapter.__aexit__(type(exc), exc, exc.__traceback__)
        except Exception:
            pass
        raise
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await adapter.__aexit__(None, None, None)
    except TimeoutError:
        result["close_timed_out"] = True
    return result


def _use_tree(tree: str | None) -> None:
    """Make ``import httpstream`` find TREE/httpstream (the baseline client)."""
    if not tree:
        raise ImportError(f"{BASELINE} needs --httpstream-path (the harness's --baseline)")
    root = os.path.realpath(tree)
    if not os.path.isfile(os.path.join(root, "httpstream", "__init__.py")):
        raise ImportError(f"{root} has no httpstream/__init__.py")
    if "httpstream" in sys.modules:
        raise ImportError("httpstream was imported before --httpstream-path took effect")
    sys.path.insert(0, root)
    import httpstream

    got = os.path.realpath(httpstream.__file__ or "")
    if not got.startswith(root + os.sep):
        raise ImportError(f"httpstream imported from {got}, not from {root}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.worker")
    p.add_argument("client", choices=CLIENTS)
    p.add_argument("scenario", choices=(*SCENARIOS, "probe"))
    p.add_argument("base_url")
    p.add_argument("--count", type=int, default=0, help="requests (small scenarios)")
    p.add_argument("--tag", default="t", help="URL tag for the early_close, h2_* and h3_* scenarios")
    p.add_argument("--ca", default=None, help="CA file of the TLS server (h2_*, h3_*, h2_duplex_echo)")
    p.add_argument(
        "--httpstream-path",
        default=None,
        help=f"source tree whose httpstream package the {BASELINE} client imports (put first on sys.path)",
    )
    args = p.parse_args(argv)
    base = args.base_url.rstrip("/")
    count = args.count or DEFAULT_COUNTS.get(args.scenario, 0)
    out: dict[str, Any] = {"client": args.client, "scenario": args.scenario}
    try:
        if args.client == BASELINE:
            _use_tree(args.httpstream_path)
        out["version"] = probe(args.client)
        if is_httpstream(args.client):
            out["httpstream_file"] = sys.modules["httpstream"].__file__
        if args.scenario != "probe":
            out.update(asyncio.run(_run(args.client, args.scenario, base, count, args.tag, args.ca)))
        out["ok"] = True
    except ScenarioTimeout as exc:
        out.update(exc.partial)
        out.update(ok=False, timeout=True, error=str(exc))
    except NotFullDuplex as exc:
        out.update(exc.partial)
        out.update(ok=False, half_duplex=True, error=str(exc))
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
