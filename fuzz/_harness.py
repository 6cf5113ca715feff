"""What every fuzz target shares: settings, failures, the noise sink, the campaign loop.

Theory of operation
-------------------
``run_campaign`` opens one ``asyncio.Runner`` for the whole campaign, starts the
target's fake peer on it, and runs a hypothesis test whose body executes one
example with ``runner.run(...)``: one loop, many examples, no loop set-up cost
per example.  ``run_machine_campaign`` does the same for a hypothesis
``RuleBasedStateMachine`` (the ``pool`` target): each rule runs its coroutine
with ``runner.run(...)``; tasks a rule leaves pending (a request waiting for its
head, say) go on running whenever a later rule turns the loop.

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

Campaigns by time (``Settings.minutes``): hypothesis stops after a number of
examples, not after a time, so a timed campaign is a series of *batches*, each a
complete hypothesis run with its own seed (the campaign seed plus the batch
number), sized from the rate of the batch before to last at most
``BATCH_SECONDS`` and to end about when the time is up.
A failure names its batch's seed and size, which replay it deterministically.

Failing examples are also kept in hypothesis' example database when
``Settings.database`` names a directory (the command line uses
``.hypothesis/fuzz``), one sub-directory per target; every later run of that
target replays them first, before generating anything new.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import hypothesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

if TYPE_CHECKING:
    import httpstream

__all__ = [
    "CampaignResult",
    "Escaped",
    "FuzzFailure",
    "Hang",
    "Leak",
    "Mismatch",
    "Noise",
    "Session",
    "Settings",
    "Sink",
    "body_length",
    "format_exception",
    "run_campaign",
    "run_machine_campaign",
]

Env = TypeVar("Env")
T = TypeVar("T")
FULL_GC_EVERY = 50
Case = TypeVar("Case")
# Batch sizes of a timed campaign: the first batch measures the rate; no batch is so
# large that one slow stretch overshoots the time by much.
FIRST_BATCH = 50
MAX_BATCH = 20_000
BATCH_SECONDS = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Knobs of one campaign (the CLI flags map onto these one to one).

    examples: examples to run (ignored when ``minutes`` is set).
    minutes: run batches of examples until this much time has passed.
    read_timeout: ``Timeout.read`` of the client under test.  Examples where the
      peer goes quiet mid-message cost about this much each, so it dominates the
      run time; 0.5 s is the default of the long campaign.
    hang_after: the safety net around one example; its expiry is a ``Hang``.
    cancel_while_connecting: let "cancel" plans cancel a request while its
      connection is still being opened.  On by default; turn it off when that
      path has a known bug that would drown every other finding (it had one:
      asyncio's happy eyeballs dropped the connected socket, fixed in dad55cb).
    database: directory of hypothesis' example database (a sub-directory per
      target), or None for none: failing examples saved there are replayed first.
    """

    examples: int = 100
    minutes: float | None = None
    seed: int | None = None
    read_timeout: float = 0.5
    hang_after: float = 10.0
    gc_each: bool = True
    print_blob: bool = True
    cancel_while_connecting: bool = True
    database: str | None = None


class FuzzFailure(AssertionError):
    """An example broke a rule of the fuzz target."""


class Escaped(FuzzFailure):
    """An exception that is not an ``HTTPStreamError`` reached the caller."""


class Hang(FuzzFailure):
    """The example did not finish within ``Settings.hang_after``."""


class Leak(FuzzFailure):
    """A connection stayed in use, or open, after everything was closed."""


class Mismatch(FuzzFailure):
    """The result disagrees with its framing, a reference implementation or a property."""


class Noise(FuzzFailure):
    """Something was only logged: a callback exception, an unraisable exception, a warning."""


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()


def body_length(response: httpstream.Response) -> int | None:
    """The body bytes a response promises: its ``content_length``, except that a
    HEAD, 1xx, 204 or 304 answer has no body whatever Content-Length announces
    (RFC 9110 section 6.4.1; ``content_length`` is the announced value)."""
    status = response.status_code
    if status in (204, 304) or status < 200 or response.request.method == "HEAD":
        return 0
    return response.content_length


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
    minutes: float | None = None
    examples_run: int = 0
    batches: int = 0
    elapsed: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def summary_line(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        outcomes = ", ".join(f"{name} {count}" for name, count in self.outcomes.most_common())
        asked = f"{self.minutes:g} min asked" if self.minutes is not None else f"{self.examples_requested} asked"
        return (
            f"fuzz {self.target}: {verdict}: {self.examples_run} examples run "
            f"({asked}, {self.batches} batch{'es' if self.batches != 1 else ''}) in {self.elapsed:.1f} s, "
            f"seed {self.seed}" + (f"; outcomes: {outcomes}" if outcomes else "")
        )


class Session:
    """One campaign's loop, sink and result, and the bracket around each example."""

    def __init__(self, target: str, settings: Settings, runner: asyncio.Runner, sink: Sink) -> None:
        self.target = target
        self.settings = settings
        self.runner = runner
        self.sink = sink
        seed = settings.seed if settings.seed is not None else random.randrange(2**32)
        self.result = CampaignResult(
            target=target, seed=seed, examples_requested=settings.examples, minutes=settings.minutes
        )

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the campaign's loop (pending tasks run too meanwhile)."""
        return self.runner.run(coro)

    def begin(self) -> None:
        """An example starts: count it, and forget what earlier ones logged."""
        self.result.examples_run += 1
        self.sink.reset()

    def end(self) -> None:
        """An example ended: collect its garbage, run what that scheduled, then fail on noise."""
        if self.settings.gc_each:
            # The young generations hold what this example made; a full collection
            # costs ~20 ms with hypothesis' data alive, so it only runs every
            # FULL_GC_EVERY examples.
            gc.collect(1 if self.result.examples_run % FULL_GC_EVERY else 2)
        self.runner.run(_settle_callbacks())
        self.sink.check()

    def hypothesis_settings(self, examples: int, **extra: Any) -> hypothesis.settings:
        database = None
        if self.settings.database is not None:
            database = DirectoryBasedExampleDatabase(os.path.join(self.settings.database, self.target))
        return hypothesis.settings(
            max_examples=examples,
            deadline=None,
            database=database,
            print_blob=self.settings.print_blob,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=True,
            **extra,
        )

    def batches(self, run_batch: Callable[[int, int], None]) -> None:
        """Call ``run_batch(seed, examples)`` once, or, for a timed campaign, until the time is up.

        The first failure ends the campaign; its text says how to replay it.
        """
        settings = self.settings
        began = time.perf_counter()
        seed, size = self.result.seed, settings.examples
        deadline = None
        if settings.minutes is not None:
            deadline = began + settings.minutes * 60
            size = FIRST_BATCH
        while True:
            self.result.batches += 1
            examples_before, batch_began = self.result.examples_run, time.perf_counter()
            try:
                run_batch(seed, size)
            except Exception as exc:  # a FuzzFailure, or a group of them, with hypothesis' notes
                self.result.failure = (
                    format_exception(exc) + f"\n\nreplay: python -m fuzz {self.target} --seed {seed} --examples {size}"
                )
                return
            now = time.perf_counter()
            if deadline is None or now >= deadline:
                return
            # The rate of the last batch (early examples are simpler and faster), and
            # batches of at most BATCH_SECONDS, so a misjudged rate costs little.
            rate = (self.result.examples_run - examples_before) / max(now - batch_began, 1e-3)
            size = max(1, min(MAX_BATCH, int(rate * min(deadline - now, BATCH_SECONDS))))
            seed = (seed + 1) % 2**32


@contextlib.contextmanager
def _session(target: str, settings: Settings) -> Iterator[Session]:
    sink = Sink()
    began = time.perf_counter()
    with sink.installed(), asyncio.Runner() as runner:
        runner.get_loop().set_exception_handler(sink.loop_exception)
        session = Session(target, settings, runner, sink)
        try:
            yield session
        finally:
            sink.reset()
            session.result.elapsed = time.perf_counter() - began


def run_campaign(
    *,
    target: str,
    settings: Settings,
    strategy: st.SearchStrategy[Case],
    start: Callable[[], Coroutine[Any, Any, Env]],
    run_example: Callable[[Env, Case], Coroutine[Any, Any, list[str]]],
    stop: Callable[[Env], Coroutine[Any, Any, None]],
) -> CampaignResult:
    """Run hypothesis examples of ``run_example`` on one loop (see ``Session.batches``).

    ``run_example`` returns one outcome label per request (for the summary) or
    raises a ``FuzzFailure``.  The first failure, shrunk by hypothesis, ends the
    campaign and is kept, formatted, in ``CampaignResult.failure``.
    """
    with _session(target, settings) as session:
        env: Env = session.run(start())
        try:

            def run_batch(seed: int, examples: int) -> None:
                # settings() goes on top of seed(): seed() alone would turn the database off.
                @session.hypothesis_settings(examples)
                @hypothesis.seed(seed)
                @given(case=strategy)
                def example(case: Case) -> None:
                    session.begin()
                    try:
                        try:
                            outcomes: list[str] = session.run(run_example(env, case))
                        finally:
                            session.end()
                    except FuzzFailure as exc:
                        # Also here, not only in hypothesis' report: a flaky failure has no report.
                        exc.add_note(f"example: {case!r}")
                        raise
                    session.result.outcomes.update(outcomes)

                example()

            session.batches(run_batch)
        finally:
            session.run(stop(env))
    return session.result


def run_machine_campaign(
    *,
    target: str,
    settings: Settings,
    start: Callable[[], Coroutine[Any, Any, Env]],
    machine: Callable[[Session, Env], RuleBasedStateMachine],
    stop: Callable[[Env], Coroutine[Any, Any, None]],
    steps: int = 50,
) -> CampaignResult:
    """Run a hypothesis ``RuleBasedStateMachine`` as a campaign (see ``Session.batches``).

    ``machine(session, env)`` builds one example's machine; it calls
    ``session.begin()`` when built and ``session.end()`` from its teardown,
    counts its own outcomes in ``session.result.outcomes`` and runs its
    coroutines with ``session.run()``.  ``start``/``stop`` bracket the campaign
    (a fake peer, say) as in ``run_campaign``.
    """
    with _session(target, settings) as session:
        env: Env = session.run(start())
        try:

            def run_batch(seed: int, examples: int) -> None:
                def factory() -> RuleBasedStateMachine:
                    return machine(session, env)

                hypothesis.seed(seed)(factory)
                # Any callable that returns a machine will do (hypothesis' documentation says so).
                run_state_machine_as_test(
                    cast("type[RuleBasedStateMachine]", factory),
                    settings=session.hypothesis_settings(examples, stateful_step_count=steps),
                )

            session.batches(run_batch)
        finally:
            session.run(stop(env))
    return session.result


async def _settle_callbacks() -> None:
    """Let callbacks scheduled by garbage collection (``call_soon``) run now."""
    for _ in range(3):
        await asyncio.sleep(0)
