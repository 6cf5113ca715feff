"""``httpstream demo [options]``: the command line, the server's lifetime, and the run over every protocol."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from typing import TextIO

import httpstream

from ._checks import FLAVOURS, Demo, MiB, Sizes
from ._server import SERVER_ALPN, DemoServer

__all__ = ["build_parser", "run"]


async def _main(args: argparse.Namespace, out: TextIO) -> int:
    started = time.perf_counter()
    sizes = Sizes(records=args.lines, interval=args.interval)
    for flavour in FLAVOURS:
        sizes.download[flavour.label] = (args.h3_size if flavour.http3 else args.size) * MiB
    with tempfile.TemporaryDirectory(prefix="httpstream-demo-") as tmpdir:
        server = DemoServer(tmpdir)
        server.start()
        demo = Demo(server, out, sizes)
        demo.say(f"httpstream {httpstream.__version__} demo")
        demo.say(f"server: hypercorn on 127.0.0.1:{server.port}, certificate from a throw-away trustme CA:")
        demo.say(f"        TCP with TLS (ALPN offered: {', '.join(SERVER_ALPN)}) and UDP with QUIC (h3)")
        demo.say("client: httpstream.AsyncClient(verify=<CA file>), once per protocol:")
        for flavour in FLAVOURS:
            switch = f"http3={flavour.http3!r}" if flavour.http3 else f"http2={flavour.http2}"
            demo.say(
                f"        {flavour.label:8}  {switch:13}  {flavour.transport};"
                f" download {sizes.download[flavour.label] / MiB:g} MiB"
            )
        demo.say("        (HTTP/3 downloads less by default: aioquic is pure Python, and here it runs")
        demo.say("        both ends in one process; --size and --h3-size change the sizes)")
        try:
            for flavour in FLAVOURS:
                demo.say()
                demo.say(f"=== {flavour.label} ===")
                client_task = asyncio.create_task(demo.run(flavour))
                done, _ = await asyncio.wait({client_task, server.task}, return_when=asyncio.FIRST_COMPLETED)
                if client_task not in done:  # the server stopped under us
                    client_task.cancel()
                    await asyncio.wait({client_task})
                    exc = server.task.exception() if not server.task.cancelled() else None
                    raise RuntimeError(f"the demo server stopped unexpectedly: {exc!r}")
                client_task.result()
        finally:
            await server.stop()
        seen = ", ".join(sorted(demo.protocols))
        served = ", ".join(f"HTTP/{v}" for v in sorted(server.app.http_versions))
        demo.say()
        demo.say(f"negotiated protocols: {seen} (response.http_version); the server's ASGI scope says {served}")
        demo.check(seen == served, f"client and server disagree on the protocols: {seen} vs {served}")
        demo.table(time.perf_counter() - started)
        demo.say()
        if demo.failures:
            demo.say(f"demo FAILED: {len(demo.failures)} check(s) did not hold:")
            for failure in demo.failures:
                demo.say(f"  - {failure}")
            return 1
        demo.say(f"demo finished OK in {time.perf_counter() - started:.1f} s")
        return 0


def build_parser(prog: str = "httpstream demo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Run the streaming client against a local HTTPS server on 127.0.0.1 over HTTP/1.1, "
            "HTTP/2 and HTTP/3, and show what it does. Needs no network beyond loopback."
        ),
    )
    parser.add_argument(
        "--size",
        type=_positive_int,
        default=256,
        metavar="MIB",
        help="size of the large download over HTTP/1.1 and HTTP/2, in MiB (default: 256)",
    )
    parser.add_argument(
        "--h3-size",
        type=_positive_int,
        default=64,
        metavar="MIB",
        help="size of the large download over HTTP/3, in MiB (default: 64)",
    )
    parser.add_argument(
        "--lines",
        type=_positive_int,
        default=8,
        metavar="N",
        help="events in the SSE feed and objects in the NDJSON stream (default: 8)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="pause between two events or objects (default: 0.1)",
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def run(argv: list[str], out: TextIO | None = None) -> int:
    """``httpstream demo [options]``: returns the exit status."""
    args = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    try:
        return asyncio.run(_main(args, stream))
    except httpstream.HTTPStreamError as exc:
        print(f"demo FAILED: {type(exc).__name__}: {exc}", file=stream)
        return 1
