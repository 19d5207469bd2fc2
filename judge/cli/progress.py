"""Progress for long CLI runs: a rich bar on a terminal, plain status lines when stderr is a pipe or a file.

rich draws nothing until the end when stderr is not a terminal, so a batch run left going under ``nohup`` or
in a CI log would show ``0/999`` for hours. There, a line such as
``judging: 120/999 (12%), 0:40:01 elapsed, about 4:53:10 left`` is printed every ``every_s`` seconds and
once at the end; the time left comes from the rate over the last ``window_s`` seconds of lines (a single
minute of a slow judge holds a handful of pairs, too few for a steady estimate). Pairs a resumed run skips
(`RunProgress.skip`) count as done but not towards the rate, so a run resumed at 456/999 shows 456/999 and
the time left for the 543 still to judge.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["RunProgress", "status_line"]


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def status_line(description: str, done: int, total: int | None, elapsed_s: float,
                left_s: float | None = None, unit: str = "") -> str:
    """The plain progress line: ``judging: 120/999 (12%), 0:40:01 elapsed, about 4:53:10 left``."""
    count = f"{done}/{total} ({done / total:.0%})" if total else f"{done}"
    line = f"{description}: {count}{' ' + unit if unit else ''}, {_clock(elapsed_s)} elapsed"
    return line + (f", about {_clock(left_s)} left" if left_s is not None else "")


class RunProgress:
    """Progress of ``total`` steps (None: unknown) on ``console``; use as a context manager.

    Args:
        description: What is being done ("judging").
        total: Number of steps, or None when unknown (then no percentage or time left is shown).
        console: Where to draw (stderr in the CLI).
        unit: Named after the count in plain lines ("rules").
        transient: A step inside a command, not its result: the bar is removed when done and, off a terminal,
            no closing line is printed (the periodic lines of a long step still are).
        every_s: Seconds between plain lines when the console is not a terminal.
        window_s: Seconds of past lines the time left is estimated from (at least the previous line).
        clock: Monotonic seconds (tests pass a fake one).
    """

    def __init__(self, description: str, total: int | None, *, console: Console, unit: str = "",
                 transient: bool = False, every_s: float = 60.0, window_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.description, self.total, self.console, self.unit = description, total, console, unit
        self.every_s, self.window_s, self._clock = every_s, window_s, clock
        self.done = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._transient = transient
        self._start = self._last_t = 0.0
        self._marks: deque[tuple[float, int]] = deque()  # (time, done) at the start and at each line
        self._printed_done: int | None = None

    def __enter__(self) -> RunProgress:
        self._start = self._last_t = self._clock()
        self._marks.append((self._start, 0))
        if self.console.is_terminal:
            # the description is data (a batch's name may hold brackets or braces): neither markup nor a format
            columns: list[ProgressColumn] = [TextColumn("{task.description}", markup=False), BarColumn()]
            columns += [MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()] if self.total is not None \
                else [TextColumn("{task.completed} " + self.unit), TimeElapsedColumn()]
            self._bar = Progress(*columns, console=self.console, transient=self._transient)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif not self._transient and self._printed_done != self.done:
            self._print(self._clock(), final=True)

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps are done."""
        self.update(self.done + steps)

    def skip(self, steps: int = 1) -> None:
        """``steps`` more steps were already done before this run (resume): counted, but not in the rate."""
        self.done += steps
        self._marks = deque((t, done + steps) for t, done in self._marks)
        if self._bar is not None and self._task is not None:
            # rich estimates speed from its recent samples: start them afresh so the jump is not read as speed
            # (this restarts the bar's clock too; a resumed run skips its done pairs at the start)
            self._bar.reset(self._task, completed=self.done, total=self.total)

    def update(self, completed: int, total: int | None = None) -> None:
        """``completed`` steps are done (of ``total``, when it is now known or changed)."""
        self.done = completed
        if total is not None:
            self.total = total
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=completed, total=self.total)
            return
        now = self._clock()
        if now - self._last_t >= self.every_s:
            self._print(now)

    def _print(self, now: float, *, final: bool = False) -> None:
        while len(self._marks) > 1 and now - self._marks[1][0] >= self.window_s:
            self._marks.popleft()  # the oldest mark left is the newest one at least window_s old (or the first)
        since_t, since_done = self._marks[0]
        left = None
        rate = (self.done - since_done) / (now - since_t) if now > since_t else 0.0
        if not final and self.total is not None and rate > 0:
            left = max(self.total - self.done, 0) / rate
        self.console.print(status_line(self.description, self.done, self.total, now - self._start, left, self.unit),
                           highlight=False, soft_wrap=True, markup=False)
        self._marks.append((now, self.done))
        self._last_t, self._printed_done = now, self.done
