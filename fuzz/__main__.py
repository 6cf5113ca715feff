"""Command line: ``python -m fuzz TARGET [--examples N | --minutes M] [--seed S]``, ``python -m fuzz --list``.

Prints one summary line (examples run, time, seed, outcome counts) and exits 0
when no example failed, 1 when one did (the shrunk failing example, its
traceback and the command that replays it are printed first), 2 on bad
arguments.  Failing examples are kept in hypothesis' example database
(``.hypothesis/fuzz/<target>/`` unless ``--database`` says otherwise) and
replayed first by every later run of the same target.
"""

from __future__ import annotations

import argparse
import sys

from . import TARGETS, run_target
from ._harness import Settings

DEFAULT_DATABASE = ".hypothesis/fuzz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz",
        description="Long hypothesis runs against httpstream's parsers and state machines.",
        epilog="targets: " + "; ".join(f"{name}: {text}" for name, text in TARGETS.items()),
    )
    parser.add_argument("target", nargs="?", choices=sorted(TARGETS))
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--examples", type=int, default=1000, help="examples to generate (default 1000)")
    amount.add_argument(
        "--minutes", type=float, default=None, help="run until this many minutes have passed (long campaigns)"
    )
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
    parser.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help=f"hypothesis example database directory, one sub-directory per target (default {DEFAULT_DATABASE})",
    )
    parser.add_argument("--no-database", action="store_true", help="keep no failing examples, replay none")
    args = parser.parse_args(argv)
    if args.list:
        width = max(map(len, TARGETS))
        for name, text in TARGETS.items():
            print(f"{name:<{width}}  {text}")
        return 0
    if args.target is None:
        parser.error("a target is required (see --list)")
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    if args.minutes is not None and args.minutes <= 0:
        parser.error("--minutes must be positive")
    settings = Settings(
        examples=args.examples,
        minutes=args.minutes,
        seed=args.seed,
        read_timeout=args.read_timeout,
        hang_after=args.hang_after,
        gc_each=not args.no_gc,
        cancel_while_connecting=not args.no_cancel_while_connecting,
        database=None if args.no_database else args.database,
    )
    result = run_target(args.target, settings)
    if result.failure is not None:
        print(result.failure, file=sys.stderr)
    print(result.summary_line(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
