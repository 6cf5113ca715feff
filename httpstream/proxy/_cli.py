"""``httpstream proxy``: mitmdump's flags, on ``ProxyServer``.

``main(argv)`` parses ``[--mode MODE] [--listen-host HOST] [-p/--listen-port PORT]
[-s SCRIPT]... [--set NAME=VALUE]... [-q] [--print-ca]``; a usage error (unknown flag,
unknown ``--set`` name, bad value) is one line on standard error naming the
offender, exit 2.  Ready, it prints ``listening on http://HOST:PORT (mode MODE)``
and serves until SIGINT/SIGTERM, then closes (in-flight exchanges get the
server's bounded grace time) and exits 0.  ``--print-ca`` prints the CA
certificate's path and PEM (confdir from ``--set confdir=...``) and exits 0.
A confdir whose CA cannot be set up is a one-line error, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import NoReturn

from ._addons import AddonError, load_script
from ._certs import CertStore, CertStoreError
from ._options import OptionError, Options
from ._proxyserver import ProxyServer

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise OptionError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="httpstream proxy",
        description="A streaming HTTP proxy (mitmdump's flags and --set names).",
        allow_abbrev=False,
    )
    parser.add_argument("--mode", default="regular", help="regular | reverse:URL | upstream:URL")
    parser.add_argument("--listen-host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("-p", "--listen-port", type=int, default=8080, help="port (default 8080; 0 picks one)")
    parser.add_argument("-s", "--scripts", action="append", default=[], metavar="SCRIPT", help="addon script")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="settings",
        metavar="NAME=VALUE",
        help="an option: stream_large_bodies, body_size_limit, store_streamed_bodies, keep_host_header, "
        "ssl_insecure, ssl_verify_upstream_trusted_ca, proxyauth, block_global, http2, confdir, "
        "ignore_hosts, allow_hosts, via, connect_timeout, read_timeout, stored_body_limit",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no output but errors")
    parser.add_argument("--print-ca", action="store_true", help="print the CA certificate (path, PEM) and exit")
    return parser


def main(argv: list[str]) -> int:
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else 0
        options = Options.from_settings(
            args.settings, mode=args.mode, listen_host=args.listen_host, listen_port=args.listen_port
        )
        if args.print_ca:
            try:
                print(CertStore(options.confdir).print_ca(), end="")
            except CertStoreError as exc:
                print(f"httpstream proxy: {exc}", file=sys.stderr)
                return 1
            return 0
        addons: list[object] = []
        for script in args.scripts:
            addons.extend(load_script(script))
        proxy = ProxyServer(options, addons=addons)
    except (OptionError, AddonError) as exc:
        print(f"httpstream proxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(message)s")
    try:
        asyncio.run(_serve(proxy, quiet=args.quiet))
    except CertStoreError as exc:
        print(f"httpstream proxy: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"httpstream proxy: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(proxy: ProxyServer, *, quiet: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with proxy:
        if not quiet:
            print(f"listening on {proxy.url} (mode {proxy.options.mode})", flush=True)
        await stop.wait()
