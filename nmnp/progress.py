"""Progress of one task's training: a tqdm bar on a terminal, a line now and then in a log.

A bar redrawn with carriage returns is right on a terminal and wrong in a file: ``nmnp run
... > run.log`` would fill the log with half-lines, so tqdm hides its bar there. Hiding
everything leaves a long task silent, though; with the numpy backend or a large preset one
task can take minutes. So when standard error is not a terminal, :class:`ProgressLines`
prints one plain line at most every :data:`LOG_EVERY_SECONDS`, and nothing for a task that
is done sooner.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from tqdm import tqdm

#: Seconds between two progress lines written to a log (standard error not a terminal).
LOG_EVERY_SECONDS = 30.0


class ProgressLines:
    """The part of tqdm's interface that training uses, printed as occasional whole lines.

    Parameters
    ----------
    total : int
        Steps the task will take.
    description : str
        Names the task at the start of each line.
    every : float, optional
        Least seconds between two lines (default :data:`LOG_EVERY_SECONDS`); the first line
        comes ``every`` seconds after the start.
    stream : text file
        Where lines go (standard error when ``None``, like tqdm's bar).
    clock : callable
        Seconds, monotonic (``time.monotonic``; tests give their own).

    Examples
    --------
    >>> import io
    >>> out, now = io.StringIO(), iter([0.0, 45.0, 50.0])
    >>> lines = ProgressLines(200, "task 1 of 5, mnist", every=30, stream=out,
    ...                       clock=lambda: next(now))
    >>> lines.update(80)
    >>> lines.set_postfix(loss="0.4123")
    >>> lines.update(20)
    >>> print(out.getvalue(), end="")
    task 1 of 5, mnist: step 80/200 (40%), 45 s
    """

    def __init__(self, total: int, description: str, every: float | None = None,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.description = total, description
        self.every = LOG_EVERY_SECONDS if every is None else every
        self.stream, self.clock = stream, clock
        self.n, self.postfix = 0, ""
        self.start = clock()
        self.next_line = self.start + self.every

    def update(self, steps: int = 1) -> None:
        """Count ``steps`` more steps done; print a line if ``every`` seconds have passed."""
        self.n += steps
        now = self.clock()
        if now >= self.next_line:
            self.next_line = now + self.every
            self._print(now)

    def set_postfix(self, **values) -> None:
        """Values shown at the end of the next line (tqdm's ``set_postfix``), e.g. the loss."""
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        """Nothing to clear: every line printed is whole."""

    def _print(self, now: float) -> None:
        percent = 100 * self.n / self.total if self.total else 100.0
        parts = [f"step {self.n:,}/{self.total:,} ({percent:.0f}%)"]
        if self.postfix:
            parts.append(self.postfix)
        parts.append(f"{now - self.start:.0f} s")
        stream = self.stream if self.stream is not None else sys.stderr
        print(f"{self.description}: " + ", ".join(parts), file=stream, flush=True)


def _on_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def task_progress(total: int, description: str, progress: bool | None):
    """What :func:`nmnp.train.train_task` reports its steps to.

    Parameters
    ----------
    total : int
        Steps the task will take.
    description : str
        Names the task.
    progress : bool or None
        ``True``: a tqdm bar wherever standard error goes; ``False``: nothing; ``None``: a
        bar on a terminal, :class:`ProgressLines` otherwise (a log, a notebook, a pipe).

    Returns
    -------
    tqdm or ProgressLines
        Either has ``update(n)``, ``set_postfix(**values)`` and ``close()``.
    """
    if progress is None and not _on_terminal(sys.stderr):
        return ProgressLines(total, description)
    return tqdm(total=total, desc=description, disable=progress is not None and not progress,
                leave=False, unit="step")
