"""``httpstream [METHOD] URL [ITEMS]``: the curl-like command line (layer 7).

``main`` parses (``_args``), runs one transfer in ``asyncio.run`` (``_run``)
and turns whatever went wrong into one line on standard error and an exit
status (``_errors``): no Python traceback unless ``--debug``.  Heads, events
and the body's sinks live in ``_output``; the download progress display in
``_progress``.

rich is optional (the ``cli`` extra) and imported only by ``_progress`` when a
progress bar is actually drawn; the library outside this package never
imports it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback

from .._exceptions import HTTPStreamError
from . import _errors
from ._args import build_parser, parse_args
from ._output import Trace
from ._run import run

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``httpstream [OPTIONS] [METHOD] URL [ITEMS]``; return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(args)
    except SystemExit as exc:  # argparse: --help, --version, or a bad option (message printed)
        return exc.code if isinstance(exc.code, int) else _errors.USAGE
    except _errors.CommandLineError as exc:
        see = " (see httpstream --help)" if exc.see_help else ""
        print(f"httpstream: {exc}{see}", file=sys.stderr)
        return exc.code
    trace = Trace(protocol=opts.protocol, verbose=opts.verbose, err=sys.stderr)
    try:
        return asyncio.run(run(opts, trace))
    except BrokenPipeError:
        _silence_stdout()
        return _errors.BROKEN_PIPE
    except KeyboardInterrupt:
        print("httpstream: interrupted", file=sys.stderr)
        return _errors.INTERRUPTED
    except HTTPStreamError as exc:
        if opts.debug:
            traceback.print_exc(file=sys.stderr)
        failure = _errors.classify(exc)
        trace.report(failure.label, _errors.message_for(exc, failure), failure.hint)
        return failure.code


def _silence_stdout() -> None:
    """Point standard output at /dev/null so the interpreter's final flush cannot fail again.

    The reader is gone; what is still buffered can never be delivered, and
    Python would otherwise print "Exception ignored ... BrokenPipeError" at
    exit (the recipe of the Python docs, "Note on SIGPIPE").
    """
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
