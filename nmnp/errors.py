"""The library's own exception types.

Every error nmnp raises on purpose derives from :class:`NmnpError`, so callers (and the
command line) can tell a problem with *their input* from a bug in the library. Each subclass
also derives from the matching built-in (``ValueError``, ``OSError``...) so ordinary
``except ValueError`` code keeps working.
"""

from __future__ import annotations


class NmnpError(Exception):
    """Base class of every error nmnp raises deliberately."""


class ConfigError(NmnpError, ValueError):
    """An argument or configuration value is invalid (negative learning rate, k > n_in...)."""


class ShapeError(NmnpError, ValueError):
    """An array has the wrong shape, dtype or contains non-finite values."""


class DataError(NmnpError, ValueError):
    """A dataset file is missing, unreadable, truncated or malformed."""


class TaskError(NmnpError, KeyError):
    """An unknown task id, or an attempt to train a task that is frozen."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(NmnpError, ValueError):
    """A checkpoint is truncated, tampered with, of another version or configuration."""


class BackendError(NmnpError, RuntimeError):
    """A compute backend is unknown or unusable on this machine (e.g. no GPU for ``cuda``)."""


class OutputError(NmnpError, OSError):
    """A result file cannot be written (disk full, permissions...); a previous file of that
    name is left unchanged."""


class TrainingError(NmnpError, RuntimeError):
    """Training diverged (non-finite loss) or otherwise cannot continue."""


class DataWarning(UserWarning):
    """Data that load but are not what their name promises (a dataset folder holding 6,000
    training images under the name of a 60,000-image dataset): results will not compare with
    published figures. A warning, not an error, because a deliberate subset is legitimate."""
