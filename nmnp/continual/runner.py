"""Learn a stream of tasks one after another and keep the full accuracy matrix.

``R[i, j]`` is the test accuracy on task j right after training task i (defined for
``j <= i``; NaN above the diagonal). Every other continual-learning figure is derived from it
(:mod:`nmnp.continual.metrics`).

Filling row i evaluates all i + 1 tasks learned so far, so a stream of T tasks costs
T (T + 1) / 2 test passes: 31,375 for SupSup's 250 tasks, more time than the training. A
strategy that freezes what each task learned (crwn, separate, supsup) would give the same
accuracy every time, and ``skip_unchanged=True`` uses that: before re-evaluating task j, the
runner hashes everything task j's predictions read (the learned arrays, the fixed weights'
fingerprint, the backend); when the hash equals the one at its last evaluation, that accuracy
is copied instead of measured again. Fine-tuning's shared readout changes with every task,
so its tasks are always measured. It is off by default: every entry of R is then measured,
which is the experiment that shows forgetting to be zero rather than assuming it.

With one of nmnp's streams (:class:`~nmnp.continual.streams.TaskStream`), every task's
training inputs and every test split are written into the same two arrays
(:class:`~nmnp.continual.streams.InputBuffers`) instead of new ones; any other sequence of
tasks is read through ``stream[i]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import ConfigError, ShapeError, TaskError
from ..train import TaskTrainingReport, TrainSettings, train_task
from . import metrics
from .streams import InputBuffers, TaskStream


@dataclass
class ContinualResult:
    """The record of a continual run, grown one task at a time.

    Attributes
    ----------
    acc_matrix : (T, T) float64, NaN above the diagonal
    task_names : list of str
    train_seconds : list of float, one per task
    train_samples : list of int, training samples processed per task
    epoch_losses : list of lists, mean training loss per epoch per task
    reused_evaluations : int
        Entries of ``acc_matrix`` copied from an earlier row because the task's predictions
        could not have changed (``run_stream(..., skip_unchanged=True)``); 0 when every entry
        was measured.
    """

    acc_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    task_names: list = field(default_factory=list)
    train_seconds: list = field(default_factory=list)
    train_samples: list = field(default_factory=list)
    epoch_losses: list = field(default_factory=list)
    reused_evaluations: int = 0

    @property
    def n_tasks(self) -> int:
        """Tasks learned so far (rows of the accuracy matrix)."""
        return len(self.task_names)

    @property
    def samples_per_second(self) -> float:
        """Training samples per second over every task so far (NaN before any training time)."""
        seconds = sum(self.train_seconds)
        return sum(self.train_samples) / seconds if seconds > 0 else float("nan")

    def add_row(self, name: str, report: TaskTrainingReport, accuracies) -> None:
        """Record task T's training and its accuracies on tasks 0..T."""
        t = self.n_tasks
        grown = np.full((t + 1, t + 1), np.nan)
        grown[:t, :t] = self.acc_matrix
        grown[t, : t + 1] = accuracies
        self.acc_matrix = grown
        self.task_names.append(name)
        self.train_seconds.append(report.seconds)
        self.train_samples.append(report.samples)
        self.epoch_losses.append(list(report.epoch_losses))

    def to_dict(self) -> dict:
        """JSON-ready: the matrix as nested lists with only the defined entries (j <= i)."""
        return {
            "acc_matrix": [
                [float(v) for v in row[: i + 1]] for i, row in enumerate(self.acc_matrix)
            ],
            "task_names": list(self.task_names),
            "train_seconds": [float(s) for s in self.train_seconds],
            "train_samples": [int(n) for n in self.train_samples],
            "epoch_losses": [[float(v) for v in e] for e in self.epoch_losses],
            "reused_evaluations": int(self.reused_evaluations),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ContinualResult":
        """The result :meth:`to_dict` wrote (rows of the matrix padded with NaN above the
        diagonal), validated: a stored result that was edited or damaged is refused here,
        before a resumed run trains on top of it.

        Parameters
        ----------
        d : dict
            ``acc_matrix`` (row i holds i + 1 accuracies, fractions in [0, 1]),
            ``task_names`` (str), ``train_seconds`` (finite, >= 0) and ``train_samples``
            (integers >= 0), one per row; optionally ``epoch_losses`` (one list of finite
            numbers per row; default empty lists) and ``reused_evaluations`` (an integer
            from 0 to T (T - 1) / 2, the entries below the diagonal; default 0). Other keys
            (a run report's metrics) are ignored.

        Returns
        -------
        ContinualResult

        Raises
        ------
        ConfigError
            If ``d`` is not a dict, lacks a key, or holds a value of the wrong kind, shape,
            length or range; the message names the key.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"a run result must be a dict, got {type(d).__name__}")
        missing = [k for k in ("acc_matrix", "task_names", "train_seconds", "train_samples")
                   if k not in d]
        if missing:
            raise ConfigError(f"a run result needs {', '.join(missing)}; it has "
                              f"{', '.join(map(str, d)) or 'nothing'}")
        rows = _as_list(d["acc_matrix"], "acc_matrix")
        t = len(rows)
        matrix = np.full((t, t), np.nan)
        for i, row in enumerate(rows):
            row = _as_list(row, f"acc_matrix row {i}")
            if len(row) != i + 1:  # to_dict writes the entries on and below the diagonal
                raise ConfigError(f"acc_matrix row {i} must hold {i + 1} accuracies (tasks 0 to "
                                  f"{i}), got {len(row)}")
            matrix[i, : i + 1] = [_number(v, f"acc_matrix[{i}][{j}]") for j, v in enumerate(row)]
        if t:
            try:
                metrics.validate_accuracy_matrix(matrix)  # fractions in [0, 1]
            except ShapeError as err:
                raise ConfigError(f"acc_matrix: {err}") from None
        names = _as_list(d["task_names"], "task_names", t)
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise ConfigError(f"task_names[{i}] must be a str, got {name!r}")
        seconds = [_number(v, f"train_seconds[{i}]", minimum=0.0)
                   for i, v in enumerate(_as_list(d["train_seconds"], "train_seconds", t))]
        samples = [_count(v, f"train_samples[{i}]")
                   for i, v in enumerate(_as_list(d["train_samples"], "train_samples", t))]
        losses = [
            [_number(v, f"epoch_losses[{i}][{j}]") for j, v in enumerate(_as_list(e, f"epoch_losses[{i}]"))]
            for i, e in enumerate(_as_list(d.get("epoch_losses", [[]] * t), "epoch_losses", t))
        ]
        reused = _count(d.get("reused_evaluations", 0), "reused_evaluations")
        if reused > t * (t - 1) // 2:  # the diagonal is always measured
            raise ConfigError(f"reused_evaluations is {reused}, more than the {t * (t - 1) // 2} "
                              f"entries below the diagonal of a {t}-task accuracy matrix")
        return cls(matrix, list(names), seconds, samples, losses, reused)


def _as_list(value, name: str, length: int | None = None) -> list:
    """``value`` (a list or tuple) as a list, of ``length`` items if given; ConfigError
    naming ``name`` otherwise."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise ConfigError(f"{name} has {len(value)} entries for a {length}-task accuracy matrix")
    return list(value)


def _number(value, name: str, minimum: float | None = None) -> float:
    """``value`` as a finite float (at least ``minimum``); ConfigError naming ``name``."""
    number = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, (bool, np.bool_)) or not number or not math.isfinite(value) \
            or (minimum is not None and value < minimum):
        what = "a finite number" + ("" if minimum is None else f" >= {minimum:g}")
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    return float(value)


def _count(value, name: str) -> int:
    """``value`` as an int >= 0; ConfigError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def task_test_set(stream, task_index: int, classes_of: dict, buffers: InputBuffers | None = None):
    """(x_test, y_test, classes) of one task, without rebuilding its training set.

    ``classes_of`` remembers each trained task's competing classes; a task trained in an
    earlier process (a resumed run) is looked up in the stream once. ``buffers`` (an nmnp
    stream only): write ``x_test`` there, valid until the next test split written there.
    """
    if task_index not in classes_of:
        classes_of[task_index] = (
            stream.task_classes(task_index) if isinstance(stream, TaskStream)
            else stream[task_index].classes
        )  # fmt: skip
    if buffers is None:
        x_test, y_test = stream.test_split(task_index)
    else:
        x_test, y_test = stream.test_split(task_index, buffers)
    return x_test, y_test, classes_of[task_index]


def _training_data(stream, t: int, buffers: InputBuffers | None):
    """``(name, classes, x_train, y_train)`` of task ``t``: written into ``buffers`` by an
    nmnp stream, or read from ``stream[t]`` (any other sequence of tasks)."""
    if buffers is None:
        task = stream[t]
        return task.name, task.classes, task.x_train, task.y_train
    x_train, y_train = stream.training_split(t, buffers)
    return stream.task_name(t), stream.task_classes(t), x_train, y_train


def _check_continuation(learner, stream, result: ContinualResult) -> None:
    """Refuse to continue a result that does not belong to this learner and stream.

    A resumed run must hold exactly the tasks its result records, in the stream's order;
    anything else would silently mix two runs in one accuracy matrix.
    """
    done = result.n_tasks
    if done > len(stream):
        raise ConfigError(
            f"the result to continue records {done} tasks but the stream has only {len(stream)}"
        )
    held = getattr(learner, "n_tasks", None)
    if held is not None and held != done:
        raise ConfigError(
            f"the learner holds {held} task(s) but the result to continue records {done}; "
            "they must come from the same run"
        )
    if result.acc_matrix.shape != (done, done):
        raise ConfigError(
            f"the result to continue has a {result.acc_matrix.shape} accuracy matrix for {done} task(s)"
        )
    task_name = getattr(stream, "task_name", None)
    for j, name in enumerate(result.task_names):
        expected = task_name(j) if task_name is not None else stream[j].name
        if name != expected:
            raise ConfigError(
                f"task {j} of the result to continue is {name!r} but the stream's task {j} is "
                f"{expected!r}; the result belongs to another stream"
            )


def _discard_unfinished_task(learner, task_id: int) -> None:
    """Remove task ``task_id``, whose training or evaluation failed, so that the learner holds
    exactly the tasks the result records and ``run_stream(..., result=)`` can continue it.

    A learner without ``remove_last_task``, or whose ``remove_last_task`` refuses with a
    TaskError, keeps the task; continuing it is then refused by :func:`_check_continuation`
    (it holds one task more than the result).
    """
    remove = getattr(learner, "remove_last_task", None)
    if remove is None or getattr(learner, "n_tasks", None) != task_id + 1:
        return
    try:
        remove()
    except TaskError:
        # The learner refused (it cannot undo the task): keep it, and let the error that
        # stopped the task propagate rather than this one.
        pass


def _check_can_skip(learner) -> None:
    """ConfigError unless ``learner`` can say what its predictions read (``skip_unchanged``)."""
    from ..model import Classifier

    method = getattr(type(learner), "prediction_state", None)
    if method is None or method is Classifier.prediction_state or not hasattr(learner, "fingerprint"):
        raise ConfigError(
            f"skip_unchanged needs a learner that names the arrays its predictions read "
            f"(prediction_state and fingerprint); {type(learner).__name__} does not"
        )


def _check_arguments(stream, settings, result, progress, on_task_end, skip_unchanged) -> None:
    """ConfigError naming the first argument of :func:`run_stream` that is of the wrong kind,
    before anything is added to the learner (a task added and then refused would stay in it)."""
    if not isinstance(settings, TrainSettings):
        raise ConfigError(f"settings must be a TrainSettings, got {type(settings).__name__} "
                          f"(e.g. TrainSettings(epochs=3))")
    if not (hasattr(type(stream), "__len__") and hasattr(type(stream), "__getitem__")) \
            or isinstance(stream, (str, bytes)):
        raise ConfigError(f"stream must be a sequence of tasks (len(stream) and stream[i]), got "
                          f"{type(stream).__name__}")
    if result is not None and not isinstance(result, ContinualResult):
        raise ConfigError(f"result must be a ContinualResult or None, got {type(result).__name__} "
                          "(ContinualResult.from_dict reads a stored one)")
    if on_task_end is not None and not callable(on_task_end):
        raise ConfigError(f"on_task_end must be callable or None, got {type(on_task_end).__name__}")
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise ConfigError(f"progress must be True, False or None, got {progress!r}")
    if not isinstance(skip_unchanged, (bool, np.bool_)):
        raise ConfigError(f"skip_unchanged must be True or False, got {skip_unchanged!r}")


def run_stream(
    learner,
    stream,
    settings: TrainSettings = TrainSettings(),
    *,
    result: ContinualResult | None = None,
    progress: bool | None = None,
    on_task_end: Callable[[ContinualResult, object], None] | None = None,
    skip_unchanged: bool = False,
) -> ContinualResult:
    """Train every task of ``stream`` in order, evaluating all learned tasks after each.

    Parameters
    ----------
    learner : a model with ``add_task``, ``freeze``, ``evaluate`` and the protocol of
        :func:`nmnp.train.train_task`; optionally ``remove_last_task`` (see Notes)
    stream : a task stream (``len`` and ``stream[i]`` giving a task with ``x_train``,
        ``y_train``, ``name`` and ``classes``)
    settings : TrainSettings
    result : a partial result to continue (resume): tasks ``0..result.n_tasks-1`` must
        already be learned by ``learner`` (which must hold exactly those tasks) and their
        names must be the stream's; otherwise ConfigError, before any training. It is grown
        in place, so pass ``ContinualResult()`` to a fresh run to keep the record of the
        finished tasks if the run stops part-way.
    progress : as in :func:`nmnp.train.train_task` (``None``: bars on a terminal, a line
        every 30 s in a log)
    on_task_end : called as ``on_task_end(result, learner)`` after each task is recorded
        (printing, checkpointing)
    skip_unchanged : copy a task's accuracy from its last evaluation instead of measuring
        it again when nothing its predictions read has changed (see the module docstring);
        the copies are counted in ``result.reused_evaluations``. ConfigError, before any
        training, for a learner that does not define ``prediction_state``.

    Returns
    -------
    ContinualResult

    Notes
    -----
    When a task fails part-way (a TrainingError, Ctrl-C, an error while it is evaluated),
    the exception propagates after the task is taken out of the learner again with its
    ``remove_last_task`` (fine-tuning also gets back the shared readout it had before the
    task). The learner and ``result`` then agree on the finished tasks, and
    ``run_stream(learner, stream, settings, result=result)`` continues from the failed task.
    A failure in ``on_task_end`` comes after the task was recorded, so the task stays.

    Raises
    ------
    ConfigError
        For an argument of the wrong kind (``settings`` not a TrainSettings, a ``stream``
        without ``len`` and items, a ``result`` that is not a ContinualResult,
        ``on_task_end`` not callable, ``progress`` or ``skip_unchanged`` not a bool), a
        learner that already holds tasks without ``result``, or a ``result`` that does not
        belong to ``learner`` and ``stream``: every check is made before the learner or
        ``result`` changes.
    """
    _check_arguments(stream, settings, result, progress, on_task_end, skip_unchanged)
    skip_unchanged = bool(skip_unchanged)
    fresh = result is None
    result = result if result is not None else ContinualResult()
    if fresh and getattr(learner, "n_tasks", 0):
        raise ConfigError(
            f"the learner already holds {learner.n_tasks} task(s): run a stream on a fresh "
            "learner, or pass the ContinualResult of its earlier run as result= to continue it"
        )
    _check_continuation(learner, stream, result)
    if skip_unchanged:
        _check_can_skip(learner)
    missing = [name for name in ("add_task", "freeze", "evaluate")
               if not callable(getattr(learner, name, None))]
    if missing:
        raise ConfigError(f"the learner must have add_task, freeze and evaluate (see nmnp.train); "
                          f"{type(learner).__name__} lacks {', '.join(missing)}")
    last_evaluation: dict = {}  # task -> (what its predictions read, accuracy measured then)
    classes_of: dict = {}
    buffers = InputBuffers() if isinstance(stream, TaskStream) else None
    for t in range(result.n_tasks, len(stream)):
        name, classes, x_train, y_train = _training_data(stream, t, buffers)
        classes_of[t] = classes
        task_id = learner.add_task(name)
        try:
            report = train_task(
                learner,
                task_id,
                x_train,
                y_train,
                settings,
                classes=classes,
                progress=progress,
                description=f"task {t + 1} of {len(stream)}, {name}",
            )
            learner.freeze(task_id)
            accuracies, reused = [], 0
            fixed = (learner.fingerprint(), learner.backend) if skip_unchanged else None
            for j in range(t + 1):
                key = (fixed, learner.prediction_digest(j)) if skip_unchanged else None
                if j in last_evaluation and last_evaluation[j][0] == key:
                    accuracies.append(last_evaluation[j][1])
                    reused += 1
                    continue
                x_test, y_test, test_classes = task_test_set(stream, j, classes_of, buffers)
                accuracies.append(learner.evaluate(x_test, y_test, j, test_classes))
                if skip_unchanged:
                    last_evaluation[j] = (key, accuracies[-1])
        except BaseException:  # Ctrl-C included: the task is not in the result, so not kept
            _discard_unfinished_task(learner, task_id)
            raise
        result.add_row(name, report, accuracies)
        result.reused_evaluations += reused
        if on_task_end is not None:
            on_task_end(result, learner)
    return result
