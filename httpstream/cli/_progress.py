"""The download progress display of ``httpstream -o FILE`` on a terminal.

rich draws it when installed (the ``cli`` extra); otherwise one plain line is
rewritten with a carriage return.  Either way the caller decides whether to
show anything at all (standard error is a terminal, no ``-s``): this module
only draws.

What is counted: bytes as they came off the wire (``num_bytes_downloaded``,
before any content decoding) against ``Content-Length``, which is the wire
length too, so a compressed body never shows a wrong percentage.  Without a
known length there is no percentage and no ETA: rich shows a pulsing bar, the
plain line shows bytes and rate only.

Redraws: at most every ``REFRESH`` seconds from ``update``, and from a timer
on the event loop (a ``call_later`` handle re-armed each tick) whether bytes
come or not, so a stalled download shows its falling rate, its growing ETA
and, without a length, rich's pulse; ``close`` draws the final state once
more.  rich's own refresh thread (``auto_refresh``) is not used: the CLI is
asyncio only, and a thread writing to the terminal would race the final
redraw.  Outside an event loop (a caller that is not async) there is no timer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, TextIO

__all__ = ["Progress", "format_bytes", "open_progress", "progress_line"]

REFRESH = 0.1  # seconds between redraws


class Progress(Protocol):
    def update(self, done: int) -> None:
        """``done``: bytes of the file so far (a resumed download starts above 0)."""

    def close(self) -> None:
        """Draw the final state and leave the cursor on a new line."""


def open_progress(name: str, total: int | None, start: int, stream: TextIO) -> Progress:
    """A progress display on ``stream`` (which the caller knows to be a terminal)."""
    try:
        return _RichProgress(name, total, start, stream)
    except ImportError:
        return _PlainProgress(name, total, start, stream)


class _Timed:
    """The redraw schedule: ``_draw`` from ``update`` and from a timer, each at most every REFRESH s."""

    def _start_timer(self) -> None:
        self._drawn = 0.0
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._arm()

    def _arm(self) -> None:
        if self._loop is not None and not self._closed:
            self._timer = self._loop.call_later(REFRESH, self._tick)

    def _tick(self) -> None:
        self._maybe_draw()
        self._arm()

    def _maybe_draw(self) -> None:
        now = time.monotonic()
        if now - self._drawn >= REFRESH:
            self._drawn = now
            self._draw(now)

    def _stop_timer(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _draw(self, now: float) -> None:
        raise NotImplementedError


def format_bytes(count: float) -> str:
    """Binary units (KiB, MiB), as curl shows them."""
    if count < 1024:
        return f"{count:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024:
            return f"{count:.1f} {unit}"
    return f"{count / 1024:.1f} TiB"


def progress_line(name: str, done: int, total: int | None, start: int, elapsed: float) -> str:
    """The plain progress line: bytes, percentage and ETA only when the total is known."""
    rate = (done - start) / elapsed if elapsed > 0 else 0.0
    speed = f"{format_bytes(rate)}/s"
    if total is None or total <= 0 or done > total:
        return f"{name}  {format_bytes(done)}  {speed}"
    percent = 100.0 * done / total
    if rate > 0:
        left = int((total - done) / rate)
        eta = f"ETA {left // 3600:d}:{left // 60 % 60:02d}:{left % 60:02d}"
    else:
        eta = "ETA -:--:--"
    return f"{name}  {format_bytes(done)} / {format_bytes(total)}  {percent:3.0f}%  {speed}  {eta}"


class _PlainProgress(_Timed):
    def __init__(self, name: str, total: int | None, start: int, stream: TextIO) -> None:
        self._name = name
        self._total = total
        self._start = start
        self._stream = stream
        self._began = time.monotonic()
        self._done = start
        self._width = 0
        self._start_timer()

    def update(self, done: int) -> None:
        self._done = done
        self._maybe_draw()

    def _draw(self, now: float) -> None:
        line = progress_line(self._name, self._done, self._total, self._start, now - self._began)
        self._stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self._stream.flush()

    def close(self) -> None:
        self._stop_timer()
        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()


class _RichProgress(_Timed):
    def __init__(self, name: str, total: int | None, start: int, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        self._progress = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(),  # decimal units, as TransferSpeedColumn's
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream, force_terminal=True),
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task(name, total=total, completed=start)
        self._progress.start()
        self._start_timer()

    def update(self, done: int) -> None:
        self._progress.update(self._task, completed=done)
        self._maybe_draw()

    def _draw(self, now: float) -> None:
        self._progress.refresh()

    def close(self) -> None:
        self._stop_timer()
        self._progress.refresh()
        self._progress.stop()
