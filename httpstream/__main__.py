"""``httpstream`` on the command line (``python -m httpstream`` too).

Today it has one command, ``demo``.  The curl-like ``httpstream URL`` and the
``proxy`` and ``tunnel`` roles come later; they join ``COMMANDS`` below, and
this module then hands over to ``httpstream.cli``.

The demo's server side needs hypercorn and trustme (the ``test`` extra); they
are imported only when the demo runs, so the library itself never needs them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["main"]

USAGE = """\
usage: httpstream COMMAND [OPTIONS]

commands:
  demo    run the streaming client against a local HTTPS server on 127.0.0.1
          (large download, line stream, early close and connection reuse);
          options: [--size MIB] [--lines N] [--interval SECONDS]

`httpstream URL`, `httpstream proxy` and `httpstream tunnel` are not available yet.
Run `httpstream demo --help` for the demo's options.
"""


def _demo(argv: list[str]) -> int:
    try:
        from . import _demo
    except ImportError as exc:
        print(
            f"httpstream demo: cannot import {exc.name or 'a dependency'}: the demo needs hypercorn and trustme.\n"
            "Install them with: pip install -e '.[test]'  (or run scripts/demo, which does it)",
            file=sys.stderr,
        )
        return 1
    return _demo.run(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {"demo": _demo}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    command = COMMANDS.get(args[0]) if args else None
    if command is None:
        if args:
            print(f"httpstream: unknown command {args[0]!r}", file=sys.stderr)
        print(USAGE, end="", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
