"""Long fuzz runs: hypothesis drives httpstream against misbehaving fake peers.

Theory of operation
-------------------
A *target* is a module ``fuzz/<name>.py`` with a function
``run(settings: Settings) -> CampaignResult``.  The command line
(``python -m fuzz <name> --examples N [--seed S]``, or ``--minutes M``) and
the tests (``tests/test_fuzz_smoke.py``, ``tests/test_fuzz_targets_smoke.py``)
call that same function in-process.  fuzz/README.md tells how to run long
campaigns and replay failures.

Every target shares the machinery of ``fuzz/_harness.py``: one event loop for
the whole campaign (an ``asyncio.Runner``), a hypothesis test whose body runs one
example on that loop, and a *sink* that turns anything the loop or the
interpreter would otherwise only log (exceptions in callbacks, "exception never
retrieved", unraisable exceptions, warnings such as ResourceWarning) into a
failure of the example that produced it.  The rule every target checks is
DESIGN.md's: any bytes from a peer give events or our own exception
(``HTTPStreamError``), nothing else; the pool ends with nothing in use; nothing
hangs (every example runs under a safety-net deadline whose expiry is a
failure).

Targets: ``h1`` (HTTP/1.1 responses, ``fuzz/h1.py``), ``h2`` (HTTP/2 frame
sequences from a fake h2c server, ``fuzz/h2.py``), ``h3`` (HTTP/3 frames on
request streams from a fake QUIC server, ``fuzz/h3.py``); the parsers ``urls``,
``headers``, ``sse``, ``lines``, ``ndjson`` and ``decoders`` (each against
properties and a small reference written in the target); and ``pool``, a
hypothesis state machine of requests, reads, closes, cancellations and lost
connections against a real ``ConnectionPool`` (``fuzz/pool.py``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._harness import CampaignResult, Settings

__all__ = ["TARGETS", "run_target"]

# name -> one-line description; the module is fuzz.<name>.
TARGETS: dict[str, str] = {
    "h1": "arbitrary and mutated HTTP/1.1 responses, randomly split, against the pool and the client",
    "h2": "valid, invalid and mutated HTTP/2 frame sequences from a fake h2c server, against the pool and the client",
    "h3": "valid and hostile HTTP/3 frames on request streams from a fake QUIC server, against the pool and the client",
    "urls": "any str as URL, reference, query params and IDNA host: a URL or InvalidURL; normal forms round-trip",
    "headers": "Headers built and changed with arbitrary names and values (CR/LF/NUL...), against a model",
    "sse": "event-stream bytes split anywhere: SSEDecoder equals itself fed whole and a WHATWG reference",
    "lines": "text and bytes split anywhere: LineDecoder and Response.aiter_lines equal a reference split",
    "ndjson": "NDJSON bodies split anywhere through Response.aiter_json: the values per line, or DecodingError",
    "decoders": "gzip/deflate/br/zstd: valid data split anywhere round-trips, garbage gives DecodingError, pieces <= cap",
    "pool": "state machine: acquire, read, close, cancel, server kills, pool.aclose against a real ConnectionPool",
}


def run_target(name: str, settings: Settings) -> CampaignResult:
    """Run the campaign of target ``name`` (a key of ``TARGETS``)."""
    if name not in TARGETS:
        raise ValueError(f"unknown fuzz target {name!r}; known: {', '.join(sorted(TARGETS))}")
    module = importlib.import_module(f"{__name__}.{name}")
    result: CampaignResult = module.run(settings)
    return result
