"""The invariants every fault test checks, whatever the protocol (H1, H2, H3).

After any fault a peer can inject:

1. the caller gets either the complete body or an httpstream exception: never
   a short body presented as complete, never an h11/h2/aioquic/ssl exception;
2. every byte handed out before the error is a prefix of the true body;
3. no await hangs past its timeout (``fetch`` runs under a hard deadline and
   records ``elapsed``, so a test can also bound it tighter);
4. afterwards the pool has no active stream, nothing connecting, queued or
   draining, and every connection it still holds is idle and alive;
5. no file descriptor and no task leaks (``LeakCheck``).

The API is four names:

    outcome = await fetch(pool, url, timeout=Timeout(read=0.2))
    check_outcome(outcome, true_body)          # 1-3; complete=True/False narrows it
    await check_pool(pool)                     # 4 (waits, bounded, for it to settle)
    async with LeakCheck(): ...                # 5

``fetch`` only uses the transport contract (``handle_request`` and the response
stream), so it works against ``ConnectionPool`` for any protocol.
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field
from typing import Protocol

import httpstream

from .servers import open_fds

__all__ = ["LeakCheck", "Outcome", "check_outcome", "check_pool", "fetch"]


class Transport(Protocol):
    async def handle_request(self, request: httpstream.Request) -> httpstream.Response: ...

    def stats(self) -> httpstream.PoolStats: ...


@dataclass
class Outcome:
    """What the caller saw: status (None before a head), body bytes handed out, the error."""

    status: int | None = None
    body: bytes = b""
    chunks: int = 0
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    error: BaseException | None = None
    hung: bool = False  # the hard deadline struck: some await did not end on its own
    elapsed: float = 0.0

    def __str__(self) -> str:
        error = f"{type(self.error).__name__}: {self.error}" if self.error is not None else "none"
        return f"status={self.status} body={len(self.body)} bytes in {self.chunks} chunks error={error}"


async def fetch(
    pool: Transport,
    url: str,
    *,
    method: str = "GET",
    timeout: httpstream.Timeout | None = None,
    deadline: float = 10.0,
) -> Outcome:
    """One request through ``pool``, its body read to the end; the outcome, never raises.

    ``deadline`` bounds the whole exchange from outside: if it strikes, some await
    hung past every timeout the client had, and ``Outcome.hung`` says so.
    """
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    start = loop.time()
    guard = asyncio.timeout(deadline)
    try:
        async with guard:
            response = await pool.handle_request(httpstream.Request(method, url, timeout=timeout))
            outcome.status = response.status_code
            try:
                async for chunk in response.stream:
                    outcome.body += chunk
                    outcome.chunks += 1
                outcome.trailers = list(response.trailers.raw)
            finally:
                await response.stream.aclose()
    except Exception as exc:  # everything is judged by check_outcome
        outcome.error = exc
        outcome.hung = guard.expired()
    outcome.elapsed = loop.time() - start
    return outcome


def check_outcome(
    outcome: Outcome,
    body: bytes,
    *,
    complete: bool | None = None,
    errors: type[BaseException] | tuple[type[BaseException], ...] = httpstream.HTTPStreamError,
    context: str = "",
) -> None:
    """Invariants 1-3 for one exchange whose true body is ``body``.

    ``complete`` True: the exchange must have succeeded; False: it must have
    failed (a fault that leaves the message short); None: either, as long as
    the invariants hold.  ``errors`` narrows which httpstream errors may occur.
    """
    where = f" [{context}]" if context else ""
    assert not outcome.hung, f"an await hung past every timeout ({outcome.elapsed:.1f} s){where}: {outcome}"
    error = outcome.error
    if error is None:
        assert complete is not False, f"a short message was presented as complete{where}: {outcome}"
        assert outcome.body == body, (
            f"body presented as complete is wrong{where}: {len(outcome.body)} bytes, expected {len(body)}"
        )
        return
    assert complete is not True, f"expected a complete body{where}: {outcome}"
    assert isinstance(error, httpstream.HTTPStreamError), (
        f"a non-httpstream exception reached the caller{where}: {type(error).__module__}.{type(error).__name__}: {error}"
    )
    assert isinstance(error, errors), f"unexpected error class{where}: {outcome}"
    assert body.startswith(outcome.body), f"bytes handed out are not a prefix of the true body{where}: {outcome}"


async def check_pool(pool: Transport, *, within: float = 2.0) -> None:
    """Invariant 4: nothing in use, every connection idle and alive.

    A connection whose peer just hung up leaves the pool on the next loop turn,
    and a drain ends within ``Limits.drain_timeout``: the check waits (bounded by
    ``within``) for such transitions before it judges.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        problems = _pool_problems(pool)
        if not problems or loop.time() >= end:
            break
        await asyncio.sleep(0.005)
    assert not problems, f"pool in a bad state: {'; '.join(problems)} ({pool!r})"


async def settled(client: httpstream.AsyncClient) -> httpstream.PoolStats:
    """The client's pool stats once background drains are over (bounded wait)."""
    pool = client.transport
    assert isinstance(pool, httpstream.ConnectionPool)
    for _ in range(100):
        if pool.stats().in_use == 0:
            break
        await asyncio.sleep(0.01)
    return pool.stats()


def _pool_problems(pool: Transport) -> list[str]:
    stats = pool.stats()
    problems = [
        f"{name}={value}"
        for name, value in (
            ("active", stats.active),
            ("connecting", stats.connecting),
            ("draining", stats.draining),
            ("queued", stats.queued),
            ("streams", stats.streams),
        )
        if value
    ]
    if stats.connections != stats.idle:
        problems.append(f"{stats.connections} connections but {stats.idle} idle")
    # Each connection the pool holds must agree with its own protocol: an idle
    # connection with an exchange in flight, or one whose transport is already
    # lost, would be handed to the next request.
    for conn in getattr(pool, "_slots", ()):
        protocol = getattr(conn, "protocol", None)
        if getattr(protocol, "lost", False):
            problems.append(f"{conn!r} is in the pool but its connection is lost")
        if getattr(protocol, "exchange", None) is not None:
            problems.append(f"{conn!r} is idle with an exchange in flight")
    return problems


class LeakCheck:
    """Invariant 5 around a block: no more descriptors or tasks after it than before.

    Closing is asynchronous (a transport releases its socket on a later loop
    turn, TLS after close_notify), so the exit waits up to ``within`` seconds
    for the counts to come back down before it judges.
    """

    def __init__(self, *, within: float = 2.0) -> None:
        self._within = within
        self._tasks: set[asyncio.Task[object]] = set()
        self._fds = 0

    def _other_tasks(self) -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    async def __aenter__(self) -> LeakCheck:
        await asyncio.sleep(0)
        gc.collect()
        self._tasks = self._other_tasks()
        self._fds = open_fds()
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self._within
        while True:
            gc.collect()
            tasks = self._other_tasks() - self._tasks
            fds = open_fds()
            if (not tasks and fds <= self._fds) or loop.time() >= end:
                break
            await asyncio.sleep(0.01)
        if exc[0] is not None:
            return  # the block's own failure says more than a leak it caused
        assert not tasks, f"tasks leaked: {tasks}"
        assert fds <= self._fds, f"file descriptors leaked: {fds} open, {self._fds} before"
