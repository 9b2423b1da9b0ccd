"""Figures: the accuracy matrix as a heatmap and every task's accuracy as tasks are added."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .atomic import as_path, atomic_write_bytes, check_report_path
from .continual.metrics import validate_accuracy_matrix
from .errors import ConfigError

#: Figure formats, chosen by the file's extension; a path without one is written as PNG.
FIGURE_FORMATS = ("png", "pdf", "svg")


def figure_format(path) -> str:
    """The format ``path``'s extension asks for (``"png"`` without one); ConfigError for an
    extension that is not in :data:`FIGURE_FORMATS`, rather than PNG bytes under a wrong name."""
    suffix = as_path(path, "a figure's path").suffix.lower().lstrip(".")
    if not suffix:
        return "png"
    if suffix not in FIGURE_FORMATS:
        raise ConfigError(f"cannot write a figure as .{suffix} ({path}): use "
                          f"{', '.join('.' + f for f in FIGURE_FORMATS)}")
    return suffix


def check_figure_path(path, option: str) -> Path:
    """Before any work: the folder is writable, the file is no checkpoint
    (:func:`nmnp.atomic.check_report_path`) and its extension names a known format."""
    figure_format(path)
    return check_report_path(path, option, "figure")


def new_figure(**kwargs):
    """A matplotlib Figure that is not registered with pyplot.

    Saving it needs no display and never switches the process's plotting backend, so the
    same functions work in scripts, on headless servers and inside notebooks.
    """
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def draw_accuracy_matrix(ax, acc_matrix, title="accuracy matrix"):
    """Heatmap of R[i, j] (row: after training task i; column: evaluated on task j).

    ``acc_matrix`` is checked by :func:`nmnp.continual.metrics.validate_accuracy_matrix`
    (ShapeError for anything but a square matrix of fractions)."""
    R = validate_accuracy_matrix(acc_matrix)
    T = R.shape[0]
    image = ax.imshow(np.ma.masked_invalid(R), vmin=0, vmax=1, cmap="viridis")
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training task i")
    ax.set_title(title)
    ticks = np.arange(T) if T <= 12 else np.linspace(0, T - 1, 7).astype(int)
    ax.set_xticks(ticks, [str(t + 1) for t in ticks])
    ax.set_yticks(ticks, [str(t + 1) for t in ticks])
    if T <= 8:
        for i in range(T):
            for j in range(i + 1):
                ax.text(j, i, f"{R[i, j]:.3f}", ha="center", va="center",
                        color="white" if R[i, j] < 0.6 else "black", fontsize=8)
    return image


def draw_task_curves(ax, acc_matrix):
    """Each task's accuracy after every later task: flat lines mean no forgetting.

    ``acc_matrix`` is checked as in :func:`draw_accuracy_matrix`."""
    R = validate_accuracy_matrix(acc_matrix)
    T = R.shape[0]
    steps = np.arange(1, T + 1)
    for j in range(T):
        ax.plot(steps[j:], R[j:, j], marker="o", ms=3, label=f"task {j + 1}" if T <= 10 else None)
    ax.plot(steps, [np.nanmean(R[i, : i + 1]) for i in range(T)], "k--", lw=2, label="average")
    ax.set_xticks(steps if T <= 12 else np.linspace(1, T, 7).astype(int))
    low, high = np.nanmin(R), np.nanmax(R)
    ax.set_ylim(max(0.0, low - 0.1), min(1.0, high + 0.05))  # flat lines stay visibly flat
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy of each task as tasks are added")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def save_figure(fig, path) -> str:
    """Render a figure in the format of ``path``'s extension (:func:`figure_format`) and
    write it atomically; returns the path. ConfigError, before rendering, for a path
    :func:`check_figure_path` refuses (an nmnp checkpoint among them)."""
    check_figure_path(path, "path")
    kind = figure_format(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=kind, dpi=110, bbox_inches="tight")
    return str(atomic_write_bytes(path, buffer.getvalue()))


def plot_continual_run(acc_matrix, path, title="") -> str:
    """Accuracy-matrix heatmap beside per-task accuracy curves, saved at ``path``.

    Parameters
    ----------
    acc_matrix : (T, T) array_like
        ``R[i, j]``, the accuracy on task j after training task i (see
        :func:`nmnp.continual.metrics.validate_accuracy_matrix`; NaN above the diagonal).
    path : str or PathLike
        PNG, PDF or SVG by its extension (PNG without one); checked as the command line
        checks ``--plot`` (:func:`check_figure_path`), before anything is drawn.
    title : str

    Returns
    -------
    str, the path written.

    Raises
    ------
    ShapeError
        If ``acc_matrix`` is not a square (T, T) matrix (T >= 1) of fractions in [0, 1].
    ConfigError
        If ``path`` is not a path, its folder does not exist or is not writable, it names
        an nmnp checkpoint, or its extension is not a figure format.
    """
    R = validate_accuracy_matrix(acc_matrix)
    check_figure_path(path, "path")
    fig = new_figure(figsize=(11, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    image = draw_accuracy_matrix(left, R)
    fig.colorbar(image, ax=left, fraction=0.046, label="test accuracy")
    draw_task_curves(right, R)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_scaling(scaling, path, flops_per_sample=None, title="") -> str:
    """The bench's scaling tables as three panels, saved at ``path`` (PNG, PDF or SVG by its
    extension).

    Parameters
    ----------
    scaling : dict
        ``report["scaling"]`` of ``python -m nmnp.bench --scaling``: lists ``units``,
        ``batch`` and ``tasks`` of measurements with ``samples_per_second`` (and, for tasks,
        ``seconds``) as median/min/max.
    path : str or Path
    flops_per_sample : callable, optional
        ``T -> flops`` of evaluating T tasks on one sample; when given, the tasks panel also
        draws the time that grows in proportion to the flops from the one-task point.
    title : str

    Returns
    -------
    str, the path written. Points are medians; bars span the fastest and slowest repeat.
    """
    fig = new_figure(figsize=(13, 4), layout="constrained")
    units_ax, batch_ax, tasks_ax = fig.subplots(1, 3)

    def rates(rows, key):
        x = np.array([r[key] for r in rows], dtype=float)
        med, lo, hi = (np.array([r["samples_per_second"][q] for r in rows]) for q in ("median", "min", "max"))
        return x, med, np.vstack([med - lo, hi - med])

    for ax, key, rows, label in (
        (units_ax, "units", scaling["units"], "encoder units (batch 128)"),
        (batch_ax, "batch_size", scaling["batch"], "batch size (FlyNet)"),
    ):
        x, med, err = rates(rows, key)
        ax.errorbar(x, med, yerr=err, marker="o", ms=4, capsize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(x, [f"{int(v):,}" for v in x], rotation=45)
        ax.minorticks_off()
        ax.set_xlabel(label)
        ax.set_ylabel("training samples/s")
        ax.grid(alpha=0.3)
    units_ax.set_title("training speed against encoder width")
    batch_ax.set_title("training speed against batch size")

    T = np.array([r["tasks"] for r in scaling["tasks"]], dtype=float)
    ms = {q: np.array([r["seconds"][q] for r in scaling["tasks"]]) * 1e3 for q in ("median", "min", "max")}
    tasks_ax.errorbar(T, ms["median"], yerr=np.vstack([ms["median"] - ms["min"], ms["max"] - ms["median"]]),
                      marker="o", ms=4, capsize=3, label="measured")
    if flops_per_sample is not None:
        ratio = np.array([flops_per_sample(int(t)) for t in T]) / flops_per_sample(int(T[0]))
        tasks_ax.plot(T, ms["median"][0] * ratio, "k--", lw=1, label="in proportion to flops")
        tasks_ax.legend(fontsize=8)
    tasks_ax.set_xscale("log")
    tasks_ax.set_yscale("log")
    tasks_ax.set_xticks(T, [str(int(t)) for t in T])
    tasks_ax.minorticks_off()
    tasks_ax.set_xlabel("stored tasks evaluated (batch 1024)")
    tasks_ax.set_ylabel("ms per batch")
    tasks_ax.set_title("evaluating T tasks with one encoder pass")
    tasks_ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
