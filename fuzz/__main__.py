"""Command line: ``python -m fuzz TARGET --examples N [--seed S]``.

Prints one summary line (examples run, time, seed, outcome counts) and exits 0
when no example failed, 1 when one did (the shrunk failing example and its
traceback are printed first), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys

from . import TARGETS, run_target
from ._harness import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz",
        description="Long hypothesis runs against httpstream's parsers and state machines.",
        epilog="targets: " + "; ".join(f"{name}: {text}" for name, text in TARGETS.items()),
    )
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--examples", type=int, default=1000, help="examples to generate (default 1000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random, printed)")
    parser.add_argument(
        "--read-timeout", type=float, default=0.5, help="Timeout.read of the client under test (default 0.5 s)"
    )
    parser.add_argument(
        "--hang-after", type=float, default=10.0, help="safety net per example; expiry is a failure (default 10 s)"
    )
    parser.add_argument("--no-gc", action="store_true", help="skip gc.collect() after each example (faster)")
    parser.add_argument(
        "--no-cancel-while-connecting",
        action="store_true",
        help="never cancel a request while its connection is being opened",
    )
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    settings = Settings(
        examples=args.examples,
        seed=args.seed,
        read_timeout=args.read_timeout,
        hang_after=args.hang_after,
        gc_each=not args.no_gc,
        cancel_while_connecting=not args.no_cancel_while_connecting,
    )
    result = run_target(args.target, settings)
    if result.failure is not None:
        print(result.failure, file=sys.stderr)
    print(result.summary_line(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
