"""A tuning job's progress for people: a rich progress bar (trials finished, the best loss and
the divergences so far, elapsed time) on a terminal or in a notebook, and one plain line per
change anywhere else (a log file, a pipe, a test). Messages go above the bar, on stderr, so
stdout keeps only the answer."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from acprop_tuner.cli.terminal import safe_lines

__all__ = ["JobProgress"]


def _best(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


class JobProgress:
    """``with JobProgress() as bar: bar.update(job)``; ``bar.note(text)`` prints a line."""

    def __init__(self, *, enabled: bool = True, stream: IO[str] | None = None) -> None:
        from rich.console import Console

        self.enabled = enabled
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.live = enabled and (self.console.is_terminal or self.console.is_jupyter)
        self._bar: Any = None
        self._task: Any = None
        self._last: tuple[Any, ...] | None = None
        self._started = time.monotonic()

    def __enter__(self) -> JobProgress:
        self._started = time.monotonic()
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("best loss {task.fields[best]}"),
                TextColumn("diverged {task.fields[diverged]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task("trials", total=None, best="-", diverged=0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def note(self, text: str) -> None:
        """A line for people (above the bar while it runs)."""
        if self.enabled:
            self.console.print(safe_lines(text), markup=False)

    def update(self, job: Any) -> None:
        """Show ``job`` (the client's typed ``Job``)."""
        p = job.progress
        state = (job.status, p.finished, p.running, p.diverged, job.best_value)
        if not self.enabled or state == self._last:
            return
        self._last = state
        if self._bar is not None:
            self._bar.update(
                self._task,
                total=p.n_trials,
                completed=p.finished,
                description=f"trials ({job.status})",
                best=_best(job.best_value),
                diverged=p.diverged,
            )
            return
        self.console.print(
            f"  {time.monotonic() - self._started:6.1f}s  {job.status:<9} finished "
            f"{p.finished:>3}/{p.n_trials}  running {p.running:>3}  diverged {p.diverged:>3}  "
            f"best loss {_best(job.best_value)}",
            markup=False,
        )
