"""What every fuzz target shares: settings, failures, the noise sink, the campaign loop.

Theory of operation
-------------------
``run_campaign`` opens one ``asyncio.Runner`` for the whole campaign, starts the
target's fake peer on it, and runs a hypothesis test whose body executes one
example with ``runner.run(...)``: one loop, many examples, no loop set-up cost
per example.

An example fails by raising a ``FuzzFailure`` subclass.  Each kind of failure
has its own class (``Escaped``, ``Hang``, ``Leak``, ``Mismatch``, ``Noise``) so
hypothesis keeps them apart as distinct bugs and shrinks each to its own minimal
example instead of sliding from one kind of failure to another.

Some failures never reach the code under test as an exception: an exception
raised inside an asyncio callback (``data_received``, a ``call_later`` timer) is
only handed to the loop's exception handler; a future whose exception nobody
retrieved, an exception in ``__del__`` and a ResourceWarning only get logged.
The ``Sink`` collects all of these while an example runs (loop exception
handler, ``sys.unraisablehook``, ``warnings`` in record mode) and the example
fails with ``Noise`` if anything arrived.  A garbage collection after each example
(of the young generations; a full one every ``FULL_GC_EVERY`` examples) makes
garbage-collection-time reports land on the example that caused them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import hypothesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

__all__ = [
    "CampaignResult",
    "Escaped",
    "FuzzFailure",
    "Hang",
    "Leak",
    "Mismatch",
    "Noise",
    "Settings",
    "Sink",
    "run_campaign",
]

Env = TypeVar("Env")
FULL_GC_EVERY = 50
Case = TypeVar("Case")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Knobs of one campaign (the CLI flags map onto these one to one).

    read_timeout: ``Timeout.read`` of the client under test.  Examples where the
      peer goes quiet mid-message cost about this much each, so it dominates the
      run time; 0.5 s is the default of the long campaign.
    hang_after: the safety net around one example; its expiry is a ``Hang``.
    cancel_while_connecting: let "cancel" plans cancel a request while its
      connection is still being opened.  On by default; turn it off when that
      path has a known bug that would drown every other finding (it had one:
      asyncio's happy eyeballs dropped the connected socket, fixed in dad55cb).
    """

    examples: int = 100
    seed: int | None = None
    read_timeout: float = 0.5
    hang_after: float = 10.0
    gc_each: bool = True
    print_blob: bool = True
    cancel_while_connecting: bool = True


class FuzzFailure(AssertionError):
    """An example broke a rule of the fuzz target."""


class Escaped(FuzzFailure):
    """An exception that is not an ``HTTPStreamError`` reached the caller."""


class Hang(FuzzFailure):
    """The example did not finish within ``Settings.hang_after``."""


class Leak(FuzzFailure):
    """A connection stayed in use, or open, after everything was closed."""


class Mismatch(FuzzFailure):
    """The body handed to the caller disagrees with its framing or the reference parser."""


class Noise(FuzzFailure):
    """Something was only logged: a callback exception, an unraisable exception, a warning."""


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()


class Sink:
    """Collects what the loop and the interpreter would otherwise only log."""

    def __init__(self) -> None:
        self.reports: list[str] = []
        self._warnings: list[warnings.WarningMessage] = []

    def reset(self) -> None:
        self.reports.clear()
        self._warnings.clear()

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        parts = [f"loop exception handler: {context.get('message', '')}"]
        for key, value in context.items():
            if key not in ("message", "exception"):
                parts.append(f"  {key}: {value!r}")
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            parts.append(format_exception(exc))
        self.reports.append("\n".join(parts))

    def unraisable(self, info: Any) -> None:
        text = f"unraisable exception: {info.err_msg or 'Exception ignored in'}: {info.object!r}"
        if info.exc_value is not None:
            text += "\n" + format_exception(info.exc_value)
        self.reports.append(text)

    def check(self) -> None:
        found = list(self.reports)
        for message in self._warnings:
            found.append(
                f"warning {message.category.__name__}: {message.message} ({message.filename}:{message.lineno})"
            )
        if found:
            raise Noise("\n\n".join(found))

    @contextlib.contextmanager
    def installed(self) -> Iterator[Sink]:
        previous_hook = sys.unraisablehook
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._warnings = caught
            sys.unraisablehook = self.unraisable
            try:
                yield self
            finally:
                sys.unraisablehook = previous_hook


@dataclass(slots=True)
class CampaignResult:
    target: str
    seed: int
    examples_requested: int
    examples_run: int = 0
    elapsed: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def summary_line(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        outcomes = ", ".join(f"{name} {count}" for name, count in self.outcomes.most_common())
        return (
            f"fuzz {self.target}: {verdict}: {self.examples_run} examples run "
            f"({self.examples_requested} asked) in {self.elapsed:.1f} s, seed {self.seed}"
            + (f"; request outcomes: {outcomes}" if outcomes else "")
        )


def run_campaign(
    *,
    target: str,
    settings: Settings,
    strategy: st.SearchStrategy[Case],
    start: Callable[[], Coroutine[Any, Any, Env]],
    run_example: Callable[[Env, Case], Coroutine[Any, Any, list[str]]],
    stop: Callable[[Env], Coroutine[Any, Any, None]],
) -> CampaignResult:
    """Run ``settings.examples`` hypothesis examples of ``run_example`` on one loop.

    ``run_example`` returns one outcome label per request (for the summary) or
    raises a ``FuzzFailure``.  The first failure, shrunk by hypothesis, ends the
    campaign and is kept, formatted, in ``CampaignResult.failure``.
    """
    seed = settings.seed if settings.seed is not None else random.randrange(2**32)
    result = CampaignResult(target=target, seed=seed, examples_requested=settings.examples)
    sink = Sink()
    began = time.perf_counter()
    with sink.installed(), asyncio.Runner() as runner:
        runner.get_loop().set_exception_handler(sink.loop_exception)
        env: Env = runner.run(start())
        try:

            @hypothesis.seed(seed)
            @hypothesis.settings(
                max_examples=settings.examples,
                deadline=None,
                database=None,
                print_blob=settings.print_blob,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=True,
            )
            @given(case=strategy)
            def example(case: Case) -> None:
                result.examples_run += 1
                sink.reset()
                try:
                    try:
                        outcomes: list[str] = runner.run(run_example(env, case))
                    finally:
                        if settings.gc_each:
                            # The young generations hold what this example made; a full
                            # collection costs ~20 ms with hypothesis' data alive, so it
                            # only runs every FULL_GC_EVERY examples.
                            gc.collect(1 if result.examples_run % FULL_GC_EVERY else 2)
                        runner.run(_settle_callbacks())
                    sink.check()
                except FuzzFailure as exc:
                    # Also here, not only in hypothesis' report: a flaky failure has no report.
                    exc.add_note(f"example: {case!r}")
                    raise
                result.outcomes.update(outcomes)

            example()
        except Exception as exc:  # a FuzzFailure, or a group of them, with hypothesis' notes
            result.failure = format_exception(exc)
        finally:
            sink.reset()
            runner.run(stop(env))
    result.elapsed = time.perf_counter() - began
    return result


async def _settle_callbacks() -> None:
    """Let callbacks scheduled by garbage collection (``call_soon``) run now."""
    for _ in range(3):
        await asyncio.sleep(0)
