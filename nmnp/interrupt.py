"""Stopping a command cleanly: Ctrl-C and a scheduler's SIGTERM end with one line, not a
traceback, and with the exit status shells expect (128 + the signal's number).

SIGTERM is turned into :class:`Terminated`, a ``KeyboardInterrupt``, so it unwinds the stack
like Ctrl-C does: a checkpoint or result file half-way through its atomic write is discarded,
and the previous one stays in place (see :mod:`nmnp.atomic`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` instead of killing the process.

    Signal handlers can only be set from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def report_interrupt(program: str, err: KeyboardInterrupt) -> int:
    """Print ``<program>: interrupted`` (or ``terminated``), then the hint ``err`` carries if
    any, on one line of standard error; return 130 after Ctrl-C, 143 after SIGTERM."""
    terminated = isinstance(err, Terminated)
    hint = f"; {err.args[0]}" if err.args else ""
    print(f"{program}: {'terminated' if terminated else 'interrupted'}{hint}", file=sys.stderr)
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
