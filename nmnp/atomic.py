"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never a mix.

The bytes go to a temporary file in the *same folder* (a rename is only atomic within one
file system), are flushed and fsync'ed, then ``os.replace`` swaps the name over; the folder is
fsync'ed too so the rename itself survives a power cut.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import ConfigError, OutputError


def as_path(path, what: str = "path", error: type = ConfigError, kind: str = "file") -> Path:
    """``path`` (a ``str``, ``bytes`` or :class:`os.PathLike`) as a :class:`~pathlib.Path`.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        Bytes are decoded as the file system does (:func:`os.fsdecode`).
    what : str
        Names the argument in the error, e.g. ``"checkpoint path"``.
    error : type
        The exception raised (a subclass of :class:`~nmnp.errors.NmnpError`).
    kind : str
        What the path names, for the message: ``"file"`` or ``"folder"``.

    Returns
    -------
    Path

    Raises
    ------
    ConfigError (or ``error``)
        If ``path`` is not a path at all (``None``, a number...), is empty (``Path("")``
        would silently mean the current folder) or holds a NUL character.
    """
    try:
        text = os.fsdecode(path)  # str, bytes and os.PathLike; TypeError for anything else
    except TypeError:
        raise error(f"{what} must be a str, bytes or os.PathLike, got {type(path).__name__}") from None
    if not text:
        raise error(f"{what} is empty: a {kind} name is needed")
    if "\0" in text:
        raise error(f"{what} {text!r} contains a NUL character")
    return Path(text)


def check_paths_given(paths: dict, kind: str = "file") -> None:
    """ConfigError for a command-line path option given an empty name.

    ``--json ""`` (a shell variable that was never set, say) must not be taken for "not
    given", which would skip the output without a word, nor for the current folder.

    Parameters
    ----------
    paths : dict
        Option name -> its value (``None``: not given).
    kind : str
        What the option names, for the message: ``"file"`` or ``"folder"``.
    """
    for option, path in paths.items():
        if path is not None and not os.fspath(path).strip():
            raise ConfigError(f"{option} needs a {kind} name")


def check_output_path(path) -> Path:
    """Fail early, before any work, if ``path``'s folder does not exist or is not writable
    (or ``path`` is empty or not a path: :func:`as_path`)."""
    path = as_path(path, "an output path")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"cannot write {path}: folder {folder} is not writable")
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a folder")
    return path


def check_report_path(path, option: str, what: str = "report") -> Path:
    """:func:`check_output_path` for a report or figure, which also refuses to replace an nmnp
    checkpoint: ``--json run.nmnp`` by a slip of the fingers would otherwise destroy a run's
    learned tasks (a checkpoint itself is never overwritten by a new run either).

    ``option`` names the option in the error, e.g. ``"--json"``; ``what`` the kind of output.
    """
    from .checkpoint import is_checkpoint  # checkpoint imports this module

    path = check_output_path(path)
    if is_checkpoint(path):  # no file yet (or unreadable) is not one: the write will say so
        raise ConfigError(
            f"{option} {path} is an nmnp checkpoint: refusing to replace it with a {what}; "
            "choose another path"
        )
    return path


def check_distinct_paths(paths: dict) -> None:
    """ConfigError if two of ``paths`` (option name -> path or None) name the same file.

    Checked before any work: a report written over the run's checkpoint, or a figure over the
    report it was drawn from, would destroy what the user most wants to keep. Paths are
    compared after resolving links and ``..``; files that exist also by identity (hard links).
    """
    seen: dict[str, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        for earlier, other in seen.items():
            if same_file(path, other):
                raise ConfigError(
                    f"{earlier} and {option} both name {path}: give each its own file "
                    "(the later write would replace the earlier)"
                )
        seen[option] = path


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name one file (which need not exist yet)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def atomic_write_bytes(path, data: bytes, *, _before_rename=None) -> Path:
    """Write ``data`` to ``path`` atomically.

    ``_before_rename`` is a test hook called after the temporary file is complete and before
    the rename, to simulate a crash at the worst moment.

    Raises
    ------
    ConfigError
        If the folder does not exist or is not writable, or ``path`` is a folder.
    OutputError
        If the write fails (disk full, permissions...); a previous file at ``path`` is left
        unchanged and no temporary file remains.
    """
    path = check_output_path(path)
    try:
        _write_then_rename(path, data, _before_rename)
    except OSError as err:
        raise OutputError(
            f"cannot write {path} ({err.strerror or err}); any previous file there is unchanged"
        ) from err
    _fsync_folder(path.parent)
    return path


def _write_then_rename(path: Path, data: bytes, before_rename) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        if before_rename is not None:
            before_rename(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _mode_for(path: Path) -> int:
    """Keep an existing file's permissions; a new file gets the usual 0666 & ~umask
    (mkstemp's private 0600 would surprise anyone sharing results)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:  # not possible on every platform; the data itself is already synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
