"""What the command-line programs print: to a reader that may go away, and nmnp's warnings.

``nmnp run ... | head`` must not lose the run.

When the program reading standard output exits (``head``, a closed terminal pager), the next
write raises BrokenPipeError. A command whose results also go to files (``run``, ``compare``,
the demo) has no reason to stop then: :func:`printer` gives it a ``say`` that falls silent and
lets the work finish, so the report, figure and checkpoint are still written. A command that
only prints can stop at once with :func:`reader_gone`.

:func:`one_line_warnings` prints nmnp's own warnings the way the programs print errors.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Callable

from .errors import DataWarning

#: Exit status after the reader went away: 128 + SIGPIPE, as a shell reports a process
#: killed by a broken pipe.
BROKEN_PIPE_STATUS = 141


def silence_stdout() -> None:
    """Send whatever is still written to standard output to the null device.

    Python flushes ``sys.stdout`` again at exit, which would raise a second BrokenPipeError
    (printed as "Exception ignored ..."); pointing the file descriptor at ``os.devnull`` is
    the remedy the Python documentation gives (the ``signal`` module's notes on SIGPIPE).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def printer(quiet: bool = False) -> Callable[..., None]:
    """A ``print`` with ``flush=True`` that does nothing if ``quiet``, and falls silent for good,
    without raising, once the reader of standard output has gone away."""
    gone = quiet

    def say(*parts) -> None:
        nonlocal gone
        if gone:
            return
        try:
            print(*parts, flush=True)
        except BrokenPipeError:
            gone = True
            silence_stdout()

    return say


def reader_gone() -> int:
    """Stop after a BrokenPipeError: silence standard output and return the exit status."""
    silence_stdout()
    return BROKEN_PIPE_STATUS


@contextlib.contextmanager
def one_line_warnings(program: str):
    """Within the block, nmnp's own warnings (:class:`~nmnp.errors.DataWarning`) print as one
    line, ``<program>: warning: ...``, on standard error, instead of Python's two lines with a
    file name and a source line; any other warning prints as usual."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print(f"{program}: warning: {message}", file=sys.stderr, flush=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original
