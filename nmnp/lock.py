"""One writer per checkpoint: a lock that stops two runs from saving over each other.

Two ``nmnp run --resume run.nmnp`` started by mistake in two terminals would both continue the
same run and take turns replacing the file; two fresh runs given the same ``--checkpoint``
would both pass the "file already exists" check if neither had finished a task yet. Each
write is atomic, so the file is never torn, but whichever run saved last silently wins.

:func:`exclusive` holds an operating-system lock on a small side file, ``<path>.lock``, for as
long as a run writes ``path``. The lock is the kernel's (``flock`` on POSIX, ``msvcrt.locking``
on Windows), so it is released when the process ends, however it ends: a run killed with
SIGKILL leaves at most a stale, unlocked ``.lock`` file, which the next run simply takes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


def lock_path(path) -> Path:
    """The side file locked while ``path`` is being written: ``<path>.lock``."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _try_lock(fd: int) -> bool:
    """Take the lock on open file ``fd`` without waiting; False if another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _still_named(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a releasing holder may have
    deleted it between our open and our lock, leaving us a lock on a file nobody else sees)."""
    try:
        named, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def exclusive(path, what: str = "checkpoint"):
    """Hold the lock on ``path`` (a file about to be written) for the ``with`` block.

    Parameters
    ----------
    path : str or Path
        The file to protect; its folder must exist. The lock lives in ``<path>.lock``, which
        is deleted on release.
    what : str
        What ``path`` is, for the error message.

    Raises
    ------
    ConfigError
        If another process holds the lock (it is writing ``path`` now): nothing is waited
        for, so a second run stops at once instead of queueing behind the first.
    """
    side = lock_path(path)
    while True:
        fd = os.open(side, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise ConfigError(
                f"{what} {path} is in use by another nmnp process (it holds {side}); wait for "
                "that run to finish, or stop it, before starting another on the same file"
            )
        if _still_named(fd, side):
            break
        os.close(fd)  # we locked a file its holder had just deleted: take the new one
    try:
        yield side
    finally:
        # Delete while still holding the lock, so that no one can lock the old file after us
        # (a process that opened it just before is caught by `_still_named` and retries).
        with contextlib.suppress(OSError):
            os.unlink(side)
        os.close(fd)  # closing releases the lock
