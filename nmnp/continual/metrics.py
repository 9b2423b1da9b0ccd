"""Continual-learning metrics, all derived from the accuracy matrix.

A run over T tasks keeps one matrix and nothing else:

.. math::

    R \\in [0, 1]^{T \\times T}, \\qquad
    R_{ij} = \\text{test accuracy on task } j \\text{ after training tasks } 0, \\dots, i

Row i is "the model after task i"; column j is "the history of task j". Entries above the
diagonal (tasks not trained yet) are undefined and may be NaN; no metric here reads them.
Rows and columns are easy to swap and the last task is easy to include or leave out by one;
the tests of this module use matrices on which each such mistake changes the answer.

The other helpers format the cost side of a results table: what a task costs to store
(:func:`storage_report`) and how fast training ran (:func:`throughput`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from nmnp.errors import ConfigError, ShapeError

__all__ = [
    "accuracy_after_each_task",
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "storage_report",
    "summarize",
    "throughput",
    "validate_accuracy_matrix",
]


def validate_accuracy_matrix(R) -> np.ndarray:
    """Check an accuracy matrix and return it as a new float64 array.

    Parameters
    ----------
    R : (T, T) array_like
        ``R[i, j]`` is the accuracy on task ``j`` after training task ``i``, as a fraction.
        On and below the diagonal every entry must be finite and in [0, 1]; above it an entry
        may be NaN (not measured) or a value in [0, 1] (e.g. accuracy before training).

    Returns
    -------
    R : (T, T) float64 ndarray
        A copy: changing it does not change the caller's array.

    Raises
    ------
    ShapeError
        If ``R`` is not numeric, not a square 2-D array with T >= 1, holds a non-finite
        entry on or below the diagonal, an infinite entry anywhere, or a finite entry outside
        [0, 1] (percentages instead of fractions, for instance).
    """
    try:
        A = np.array(R, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"R must be a numeric (T, T) accuracy matrix, got {R!r:.80}.") from exc
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ShapeError(f"R must be a square (T, T) matrix with T >= 1, got shape {A.shape}.")
    lower = np.tril(np.ones(A.shape, dtype=bool))  # on or below the diagonal
    bad = lower & ~np.isfinite(A)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ShapeError(
            f"R[{i}, {j}] is {A[i, j]}, but entries on or below the diagonal must be finite."
        )
    if np.isinf(A).any():
        i, j = np.argwhere(np.isinf(A))[0]
        raise ShapeError(f"R[{i}, {j}] is {A[i, j]}; an undefined entry must be NaN, not inf.")
    out_of_range = np.isfinite(A) & ((A < 0) | (A > 1))
    if out_of_range.any():
        i, j = np.argwhere(out_of_range)[0]
        raise ShapeError(
            f"R[{i}, {j}] is {A[i, j]}, outside [0, 1]; accuracies must be fractions."
        )
    return A


def average_accuracy(R) -> float:
    """Mean accuracy over all tasks after the last task has been trained.

    Parameters
    ----------
    R : (T, T) array_like
        Accuracy matrix (see :func:`validate_accuracy_matrix`).

    Returns
    -------
    float

    Notes
    -----
    .. math::

        \\mathrm{ACC} = \\frac{1}{T} \\sum_{j=0}^{T-1} R_{T-1,\\, j}
    """
    A = validate_accuracy_matrix(R)
    return float(A[-1].mean())


def backward_transfer(R) -> float:
    """How much training later tasks changed earlier ones (negative means forgetting).

    Parameters
    ----------
    R : (T, T) array_like
        Accuracy matrix (see :func:`validate_accuracy_matrix`).

    Returns
    -------
    float
        0.0 when T == 1: with one task nothing was trained after it.

    Notes
    -----
    Lopez-Paz and Ranzato (2017); the last task is left out since nothing followed it:

    .. math::

        \\mathrm{BWT} = \\frac{1}{T-1} \\sum_{j=0}^{T-2} \\big(R_{T-1,\\, j} - R_{j j}\\big)
    """
    A = validate_accuracy_matrix(R)
    T = A.shape[0]
    if T == 1:
        return 0.0
    j = np.arange(T - 1)
    return float(np.mean(A[T - 1, j] - A[j, j]))


def forgetting(R) -> float:
    """Average drop from each earlier task's best accuracy to its final accuracy.

    This is the *max-based* definition of Chaudhry et al. (2018, "Riemannian Walk"): a task
    is compared with the best it ever was while later tasks were trained, not with its accuracy
    right after it was learned. The "first minus last" variant is not used here (it equals
    ``-backward_transfer(R)``).

    Parameters
    ----------
    R : (T, T) array_like
        Accuracy matrix (see :func:`validate_accuracy_matrix`).

    Returns
    -------
    float
        0.0 when T == 1: with one task nothing was trained after it. It is negative if every
        task ended above its earlier best, and always ``>= -backward_transfer(R)``.

    Notes
    -----
    The maximum runs over the rows from the task's own (``i = j``) to the one before last,
    and the last task is left out:

    .. math::

        F = \\frac{1}{T-1} \\sum_{j=0}^{T-2}
            \\Big( \\max_{j \\le i \\le T-2} R_{i j} \\; - \\; R_{T-1,\\, j} \\Big)
    """
    A = validate_accuracy_matrix(R)
    T = A.shape[0]
    if T == 1:
        return 0.0
    drops = [A[j : T - 1, j].max() - A[T - 1, j] for j in range(T - 1)]
    return float(np.mean(drops))


def accuracy_after_each_task(R) -> np.ndarray:
    """Mean accuracy over the tasks seen so far, after each task.

    Parameters
    ----------
    R : (T, T) array_like
        Accuracy matrix (see :func:`validate_accuracy_matrix`).

    Returns
    -------
    acc : (T,) float64 ndarray
        ``acc[T-1]`` equals :func:`average_accuracy`.

    Notes
    -----
    .. math::

        \\mathrm{acc}_i = \\frac{1}{i+1} \\sum_{j=0}^{i} R_{i j}
    """
    A = validate_accuracy_matrix(R)
    return np.array([A[i, : i + 1].mean() for i in range(A.shape[0])])


def summarize(R) -> dict:
    """All the metrics of one run, as plain Python numbers ready for ``json.dump``.

    Parameters
    ----------
    R : (T, T) array_like
        Accuracy matrix (see :func:`validate_accuracy_matrix`).

    Returns
    -------
    dict
        ``n_tasks`` (int), ``average_accuracy``, ``backward_transfer``, ``forgetting``
        (floats), ``accuracy_after_each_task`` and ``final_accuracy_per_task`` (the last row),
        lists of T floats.
    """
    A = validate_accuracy_matrix(R)
    return {
        "n_tasks": int(A.shape[0]),
        "average_accuracy": average_accuracy(A),
        "backward_transfer": backward_transfer(A),
        "forgetting": forgetting(A),
        "accuracy_after_each_task": [float(a) for a in accuracy_after_each_task(A)],
        "final_accuracy_per_task": [float(a) for a in A[-1]],
    }


def _count(name, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}.")
    return int(value)


def storage_report(
    learnable_params_per_task: int,
    bytes_per_task: int,
    fixed_params: int,
    fixed_bytes_to_regenerate: int,
    n_tasks: int | None = None,
) -> dict:
    """What a model costs to store, for a results table.

    Parameters
    ----------
    learnable_params_per_task : int
        Numbers learned for each task (7840 + 1 for the reference FlyNet).
    bytes_per_task : int
        Bytes needed to store one task's learned numbers.
    fixed_params : int
        Numbers in the shared fixed random weights (encoder indices and readout).
    fixed_bytes_to_regenerate : int
        Bytes needed to rebuild the fixed weights exactly (a seed and the shapes), which is
        what a checkpoint has to hold instead of the weights themselves.
    n_tasks : int, optional
        If given, totals for that many tasks are added.

    Returns
    -------
    dict
        The four inputs, and with ``n_tasks``: ``n_tasks``, ``total_learnable_params``
        (``n_tasks * learnable_params_per_task``) and ``total_bytes``
        (``n_tasks * bytes_per_task + fixed_bytes_to_regenerate``). All ints.

    Raises
    ------
    ConfigError
        If an argument is not an integer >= 0.
    """
    report = {
        "learnable_params_per_task": _count("learnable_params_per_task", learnable_params_per_task),
        "bytes_per_task": _count("bytes_per_task", bytes_per_task),
        "fixed_params": _count("fixed_params", fixed_params),
        "fixed_bytes_to_regenerate": _count("fixed_bytes_to_regenerate", fixed_bytes_to_regenerate),
    }
    if n_tasks is not None:
        n = _count("n_tasks", n_tasks)
        report["n_tasks"] = n
        report["total_learnable_params"] = n * report["learnable_params_per_task"]
        report["total_bytes"] = n * report["bytes_per_task"] + report["fixed_bytes_to_regenerate"]
    return report


def throughput(n_samples, seconds) -> float:
    """Samples processed per second.

    Parameters
    ----------
    n_samples : int
        Samples processed, >= 0.
    seconds : float
        Elapsed wall-clock time, finite and > 0.

    Returns
    -------
    float

    Raises
    ------
    ConfigError
        If ``n_samples`` is not an integer >= 0 or ``seconds`` is not finite and > 0 (a timer
        too coarse for a very short run can report 0).
    """
    n = _count("n_samples", n_samples)
    if (isinstance(seconds, (bool, np.bool_)) or not isinstance(seconds, numbers.Real)
            or not (math.isfinite(seconds) and seconds > 0)):
        raise ConfigError(f"seconds must be a finite number > 0, got {seconds!r}.")
    return n / float(seconds)
