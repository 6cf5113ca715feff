"""``httpstream`` on the command line (``python -m httpstream`` too).

The first word picks a command from ``COMMANDS`` (``demo``, ``proxy``;
``tunnel`` says it is not built yet); anything else is a request,
``httpstream [METHOD] URL [ITEMS]``, handed to ``httpstream.cli``.  With no
words at all the usage goes to standard error (exit 2); ``--help`` prints the
request help, which names the commands too.

The demo's server side needs hypercorn and trustme (the ``test`` extra); they
are imported only when the demo runs, so the library itself never needs them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .cli import main as request_main

__all__ = ["main"]

USAGE = """\
usage: httpstream [OPTIONS] [METHOD] URL [ITEMS ...]
       httpstream COMMAND [OPTIONS]

  URL     send one request and stream the answer (`httpstream --help` for all options)

commands:
  demo    run the streaming client against a local server on 127.0.0.1 over
          HTTP/1.1, HTTP/2 and HTTP/3 (large download, SSE feed, NDJSON stream,
          early close with connection reuse or stream reset);
          options: [--size MIB] [--h3-size MIB] [--lines N] [--interval SECONDS]
  proxy   a streaming HTTP proxy, mitmdump's flags (`httpstream proxy --help`):
          [--mode regular|reverse:URL|upstream:URL] [--listen-host HOST] [-p PORT]
          [-s SCRIPT]... [--set NAME=VALUE]... [-q]
  tunnel  not built yet
"""


def _demo(argv: list[str]) -> int:
    try:
        from . import demo
    except ImportError as exc:
        print(
            f"httpstream demo: cannot import {exc.name or 'a dependency'}: the demo needs hypercorn and trustme.\n"
            "Install them with: pip install -e '.[test]'  (or run scripts/demo, which does it)",
            file=sys.stderr,
        )
        return 1
    return demo.run(argv)


def _proxy(argv: list[str]) -> int:
    from .proxy._cli import main as proxy_main

    return proxy_main(argv)


def _not_built(name: str) -> Callable[[list[str]], int]:
    def command(argv: list[str]) -> int:
        print(
            f"httpstream {name}: not built yet: the {name} role is planned (see DESIGN.md) "
            "but this version does not include it",
            file=sys.stderr,
        )
        return 2

    return command


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "demo": _demo,
    "proxy": _proxy,
    "tunnel": _not_built("tunnel"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(USAGE, end="", file=sys.stderr)
        return 2
    command = COMMANDS.get(args[0])
    if command is not None:
        return command(args[1:])
    return request_main(args)


if __name__ == "__main__":
    sys.exit(main())
