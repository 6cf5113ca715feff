"""The download's progress display: rich's bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["MB", "PlainBar", "RichBar", "make_bar"]

MB = 1_000_000  # throughput is reported in MB/s (10^6 bytes per second), as bench/ does


class PlainBar:
    """Progress as plain lines, one per quarter (for pipes, logs and tests)."""

    def __init__(self, out: TextIO, label: str, start: float) -> None:
        self.out = out
        self.label = label
        self.start = start
        self._next_quarter = 1

    def update(self, done: int, total: int | None) -> None:
        if total and self._next_quarter < 4 and done * 4 >= self._next_quarter * total:
            self._next_quarter += 1
            self._print(done, total)

    def close(self, done: int, total: int | None) -> None:
        self._print(done, total)

    def _print(self, done: int, total: int | None) -> None:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        percent = f"{100 * done / total:5.1f} %" if total else "    ? %"
        of = f" / {total / MB:.1f}" if total else ""
        print(f"      {percent}  {done / MB:8.1f}{of} MB  {done / elapsed / MB:7.1f} MB/s", file=self.out, flush=True)


class RichBar:
    """A rich progress bar, redrawn at most ten times a second from the callback.

    Auto-refresh is off (it would run a thread); the download's own progress
    callback does the redrawing.
    """

    def __init__(self, out: TextIO, label: str, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress: Progress = Progress(
            TextColumn("      {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=out),
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task: TaskID = self._progress.add_task(label, total=total)
        self._next_draw = 0.0
        self._progress.start()

    def update(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now >= self._next_draw:
            self._next_draw = now + 0.1
            self._progress.update(self._task, completed=done, total=total, refresh=True)

    def close(self, done: int, total: int | None) -> None:
        self._progress.update(self._task, completed=done, total=total, refresh=True)
        self._progress.stop()


def make_bar(out: TextIO, label: str, total: int | None, start: float) -> PlainBar | RichBar:
    """rich's bar on a terminal when rich is installed (the ``demo`` extra), plain lines otherwise."""
    if out.isatty():
        try:
            return RichBar(out, label, total)
        except ImportError:
            pass
    return PlainBar(out, label, start)
