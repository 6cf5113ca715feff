"""HTTP/3 fault injection: datagrams lost, delayed, reordered or swallowed between client and server.

Every QUIC datagram goes through ``UDPFaultProxy`` (tests/peers/udp_faults.py) on
loopback.  With loss in either direction, patterned loss, lost Initial packets,
and delay with jitter (which reorders), a 1 MiB download must still complete
with exactly the right bytes (QUIC retransmits); with a blackhole (nothing
passes after N datagrams, or from a chosen moment) every wait ends in an
httpstream timeout error within its deadline, never a hang: ConnectTimeout in
the handshake, ReadTimeout for a head or a body, WriteTimeout for an upload.

Servers: hypercorn's QUIC server (aioquic) for the downloads, whose body is a
known pattern; caddy (quic-go) for the blackholes, because a blackholed stream
is reset by the client once the reader gives up, and hypercorn's QUIC server
dies when a client resets a stream it is still sending (caddy copes).

After every fault: a complete body or an httpstream exception, the bytes handed
out a prefix of the true body, no open stream and no connection in an
impossible state in ``pool.stats()``, no task or descriptor left behind.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import httpstream

from .peers.caddy import SMALL, Caddy
from .peers.invariants import LeakCheck, check_outcome, check_pool, fetch
from .peers.servers import HypercornServer, pattern
from .peers.udp_faults import Loss, UDPFaultProxy

pytestmark = pytest.mark.usefixtures("no_leaks")

SIZE = 1024 * 1024


def h3_pool(cert_files: dict[str, str], timeout: httpstream.Timeout) -> httpstream.ConnectionPool:
    return httpstream.ConnectionPool(http3="only", verify=cert_files["ca"], timeout=timeout)


async def check_h3_pool(pool: httpstream.ConnectionPool) -> None:
    """``check_pool``, and no QUIC connection the pool holds has ended (``terminated``)."""
    await check_pool(pool)
    for conn in pool._slots:
        assert not getattr(conn.protocol, "terminated", False), f"{conn!r} ended but is still pooled"


LOSSY = {
    "5%-both-ways": {"up": Loss(loss=0.05), "down": Loss(loss=0.05)},
    "15%-server-to-client": {"down": Loss(loss=0.15)},
    "every-7th-ack-and-11th-data": {"up": Loss(every=7), "down": Loss(every=11)},
    "initial-packets-lost": {"up": Loss(first=2), "down": Loss(first=1)},
    "jitter-reorders-with-3%-loss": {"up": Loss(loss=0.03), "down": Loss(loss=0.03), "jitter": 0.004},
}


@pytest.mark.parametrize("name", list(LOSSY))
async def test_download_completes_through_loss(
    name: str, h3_server: HypercornServer, cert_files: dict[str, str]
) -> None:
    faults = LOSSY[name]
    async with (
        LeakCheck(),
        UDPFaultProxy(("127.0.0.1", h3_server.port), seed=7, **faults) as proxy,  # type: ignore[arg-type]
        h3_pool(cert_files, httpstream.Timeout.all(20)) as pool,
    ):
        outcome = await fetch(pool, proxy.url(f"/bytes/{SIZE}"), deadline=30)
        check_outcome(outcome, pattern(SIZE), complete=True, context=name)
        assert sum(proxy.dropped.values()) > 0, "the proxy lost nothing: the test proved nothing"
        assert outcome.elapsed < 25, f"{name}: 1 MiB took {outcome.elapsed:.1f} s"
        await check_h3_pool(pool)
        stats = pool.stats()
        assert (stats.connections, stats.idle) == (1, 1)  # the QUIC connection survived the loss


async def test_loss_against_a_second_quic_implementation(caddy: Caddy, cert_files: dict[str, str]) -> None:
    """caddy (quic-go) through 10% loss each way: a 1 MiB range of its (sparse, zero) file arrives whole."""
    async with (
        LeakCheck(),
        UDPFaultProxy(("127.0.0.1", caddy.port), up=Loss(loss=0.1), down=Loss(loss=0.1), seed=3) as proxy,
        h3_pool(cert_files, httpstream.Timeout.all(20)) as pool,
    ):
        request = httpstream.Request("GET", proxy.url("/big"), headers={"range": f"bytes=0-{SIZE - 1}"})
        async with asyncio.timeout(30):
            response = await pool.handle_request(request)
            try:
                assert response.status_code == 206
                body = bytearray()
                async for chunk in response.stream:
                    body += chunk
            finally:
                await response.stream.aclose()
        assert bytes(body) == bytes(SIZE)
        assert sum(proxy.dropped.values()) > 0
        await check_h3_pool(pool)


async def test_blackhole_before_handshake_is_a_connect_timeout(caddy: Caddy, cert_files: dict[str, str]) -> None:
    async with (
        LeakCheck(),
        UDPFaultProxy(("127.0.0.1", caddy.port), blackhole_after=0) as proxy,
        h3_pool(cert_files, httpstream.Timeout(connect=1.0, read=1.0)) as pool,
    ):
        outcome = await fetch(pool, proxy.url("/small"), deadline=10)
        check_outcome(outcome, SMALL, complete=False, errors=httpstream.ConnectTimeout)
        assert 0.9 < outcome.elapsed < 4, outcome.elapsed
        assert proxy.passed == {"up": 0, "down": 0} and proxy.dropped["up"] > 0
        await check_h3_pool(pool)
        assert pool.stats().connections == 0


async def test_blackhole_mid_body_is_a_read_timeout(caddy: Caddy, cert_files: dict[str, str]) -> None:
    """Nothing passes after 150 datagrams, well inside the body: the reader times out."""
    async with (
        LeakCheck(),
        UDPFaultProxy(("127.0.0.1", caddy.port), blackhole_after=150) as proxy,
        h3_pool(cert_files, httpstream.Timeout(connect=5.0, read=1.0)) as pool,
    ):
        outcome = await fetch(pool, proxy.url("/big"), deadline=10)
        check_outcome(outcome, bytes(len(outcome.body)), complete=False, errors=httpstream.ReadTimeout)
        assert outcome.status == 200 and 0 < len(outcome.body) < 256 * 1024 * 1024
        assert outcome.elapsed < 8, outcome.elapsed
        assert proxy.blackholed and proxy.dropped["up"] + proxy.dropped["down"] > 0
        await check_h3_pool(pool)


async def test_blackhole_after_a_request_then_heads_time_out(caddy: Caddy, cert_files: dict[str, str]) -> None:
    """The connection worked, then the path died: each waiting request ends in ReadTimeout, none hangs."""
    async with (
        LeakCheck(),
        UDPFaultProxy(("127.0.0.1", caddy.port)) as proxy,
        h3_pool(cert_files, httpstream.Timeout(connect=5.0, read=1.0, write=1.0, pool=1.0)) as pool,
    ):
        first = await fetch(pool, proxy.url("/small"), deadline=10)
        check_outcome(first, SMALL, complete=True)
        proxy.blackhole()
        start = time.monotonic()
        outcomes = await asyncio.gather(*(fetch(pool, proxy.url("/small"), deadline=10) for _ in range(3)))
        for outcome in outcomes:
            check_outcome(outcome, SMALL, complete=False, errors=httpstream.ReadTimeout)
            assert outcome.status is None
        assert time.monotonic() - start < 6
        await check_h3_pool(pool)


async def test_blackhole_during_upload_is_a_write_timeout(caddy: Caddy, cert_files: dict[str, str]) -> None:
    """The path dies while a 6 MiB body goes up: WriteTimeout once nothing is acknowledged for 2 s.

    Regression: the write timeout was re-armed on every transmit, and on a dead
    path QUIC's loss probes keep transmitting with a doubling backoff, so a 2 s
    write timeout fired only after about 6 s (10 s after about 25 s).
    """
    async with (
        LeakCheck(),
        UDPFaultProxy(("127.0.0.1", caddy.port)) as proxy,
        h3_pool(cert_files, httpstream.Timeout(connect=5.0, read=2.0, write=2.0, pool=2.0)) as pool,
    ):
        first = await fetch(pool, proxy.url("/small"), deadline=10)
        check_outcome(first, SMALL, complete=True)
        proxy.blackhole()
        request = httpstream.Request("PUT", proxy.url("/upload"), content=bytes(6 * 1024 * 1024))
        start = time.monotonic()
        with pytest.raises(httpstream.WriteTimeout):
            async with asyncio.timeout(20):
                await pool.handle_request(request)
        elapsed = time.monotonic() - start
        assert 1.9 < elapsed < 4, f"the write timeout is 2 s; the upload gave up after {elapsed:.1f} s"
        await check_h3_pool(pool)
