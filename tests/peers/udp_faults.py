"""A UDP fault proxy on 127.0.0.1: QUIC between a client and a server, with datagrams lost on purpose.

Theory of operation
-------------------
The proxy owns one listening socket (the address the client dials) and, per
client address, one upstream socket connected to the server.  Both are plain
non-blocking sockets read with ``loop.add_reader``: a datagram read from one side
is judged by the fault policy and either dropped, sent on at once, or sent after
a delay (a ``call_later`` handle; different delays per datagram reorder them).

The policy, per direction ("up": client to server, "down": server to client):

- ``loss``: the fraction of datagrams dropped, drawn from a seeded ``Random`` so
  a failing run can be replayed;
- ``every``: drop every n-th datagram (a fixed pattern, e.g. every ACK-bearing
  tenth);
- ``first``: drop the first n datagrams (lost Initial packets: the handshake must
  retransmit);
- ``delay`` and ``jitter`` (seconds, both directions): each datagram waits
  ``delay + uniform(0, jitter)``;
- ``blackhole_after``: after that many datagrams (both directions together)
  nothing passes any more; ``blackhole()`` does the same at once.

Counters (``passed``, ``dropped``) let a test prove the fault really happened.
Nothing here knows QUIC: the proxy moves opaque datagrams.
"""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass, field

__all__ = ["Loss", "UDPFaultProxy"]

_MAX_DATAGRAM = 65536


@dataclass
class Loss:
    """How datagrams in one direction are dropped."""

    loss: float = 0.0
    every: int | None = None
    first: int = 0
    seen: int = field(default=0, init=False)

    def drops(self, rng: random.Random) -> bool:
        self.seen += 1
        if self.seen <= self.first:
            return True
        if self.every is not None and self.seen % self.every == 0:
            return True
        return self.loss > 0 and rng.random() < self.loss


class UDPFaultProxy:
    """Forward datagrams between clients and ``target``, losing, delaying or swallowing some."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        up: Loss | None = None,
        down: Loss | None = None,
        delay: float = 0.0,
        jitter: float = 0.0,
        blackhole_after: int | None = None,
        seed: int = 0,
    ) -> None:
        self.target = target
        self.up = up or Loss()
        self.down = down or Loss()
        self.delay = delay
        self.jitter = jitter
        self.blackhole_after = blackhole_after
        self.port = 0
        self.passed = {"up": 0, "down": 0}
        self.dropped = {"up": 0, "down": 0}
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._front: socket.socket | None = None
        self._upstream: dict[tuple[str, int], socket.socket] = {}  # client address -> socket to the target
        self._timers: set[asyncio.TimerHandle] = set()

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def blackhole(self) -> None:
        """From now on nothing passes, either way."""
        self.blackhole_after = self.passed["up"] + self.passed["down"]

    @property
    def blackholed(self) -> bool:
        return self.blackhole_after is not None and self.passed["up"] + self.passed["down"] >= self.blackhole_after

    # -- forwarding ---------------------------------------------------------------------------------
    def _judge(self, direction: str) -> bool:
        """Whether the next datagram going ``direction`` passes (and count it)."""
        policy = self.up if direction == "up" else self.down
        if self.blackholed or policy.drops(self._rng):
            self.dropped[direction] += 1
            return False
        self.passed[direction] += 1
        return True

    def _forward(self, sock: socket.socket, data: bytes, addr: tuple[str, int] | None) -> None:
        wait = self.delay + (self._rng.uniform(0, self.jitter) if self.jitter else 0.0)
        if wait <= 0:
            _send(sock, data, addr)
            return
        assert self._loop is not None

        def later() -> None:
            self._timers.discard(handle)
            if sock.fileno() >= 0:
                _send(sock, data, addr)

        handle = self._loop.call_later(wait, later)
        self._timers.add(handle)

    def _from_client(self) -> None:
        front = self._front
        assert front is not None and self._loop is not None
        while True:
            try:
                data, addr = front.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error from an earlier send to a client that went away
            upstream = self._upstream.get(addr)
            if upstream is None:
                upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                upstream.setblocking(False)
                upstream.connect(self.target)
                self._upstream[addr] = upstream
                self._loop.add_reader(upstream.fileno(), self._from_server, upstream, addr)
            if self._judge("up"):
                self._forward(upstream, data, None)

    def _from_server(self, upstream: socket.socket, client: tuple[str, int]) -> None:
        front = self._front
        assert front is not None
        while True:
            try:
                data = upstream.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # ICMP "port unreachable": the server side is gone; drop it
            if self._judge("down"):
                self._forward(front, data, client)

    # -- lifecycle ------------------------------------------------------------------------------------
    async def __aenter__(self) -> UDPFaultProxy:
        self._loop = asyncio.get_running_loop()
        front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        front.setblocking(False)
        front.bind(("127.0.0.1", 0))
        self._front = front
        self.port = front.getsockname()[1]
        self._loop.add_reader(front.fileno(), self._from_client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._loop is not None
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for upstream in self._upstream.values():
            self._loop.remove_reader(upstream.fileno())
            upstream.close()
        self._upstream.clear()
        if self._front is not None:
            self._loop.remove_reader(self._front.fileno())
            self._front.close()
            self._front = None


def _send(sock: socket.socket, data: bytes, addr: tuple[str, int] | None) -> None:
    try:
        if addr is None:
            sock.send(data)
        else:
            sock.sendto(data, addr)
    except OSError:
        pass  # a full buffer or an ICMP error: the datagram is lost, as on a real path
