"""Training one task: mini-batches, a fresh optimiser, progress, a timing.

:func:`train_task` works with any *learner* that offers the small protocol below, so the
paper's model and the comparison strategies share one loop:

* ``trainable_params(task_id) -> dict[str, ndarray]`` (raises if the task is frozen);
* ``check_inputs(x)``, ``check_labels(y, n)``, ``check_classes(classes)``;
* ``loss_and_grads_batch(x, y, task_id, classes) -> (loss, grads, n_correct)`` on
  already-validated arrays.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from .errors import ConfigError, ShapeError, TrainingError
from .initializers import SHUFFLE, rng_for
from .optim import make_optimizer, optimizer_class
from .progress import task_progress


@dataclass(frozen=True)
class TrainSettings:
    """How each task is trained.

    Parameters
    ----------
    epochs : int
        Passes over the task's training set (the authors' protocol: 3; their demo: 1).
    batch_size : int
        Samples per optimiser step (128 in the paper).
    lr : float
        Learning rate (0.01 with RMSprop in the paper).
    optimizer : {"rmsprop", "sgd", "adam"}
        A fresh optimiser is created for every task.
    seed : int
        Seed of the mini-batch shuffling (per task and epoch, so runs are reproducible and
        resumable); non-negative and below 2**63, as :class:`~nmnp.config.NetworkConfig`'s.
    encode_cache_mb : float
        Memory cap, in MiB, for keeping a task's encoded training set between epochs. The
        encoder is fixed, so its output for a training image is the same every epoch; with
        two or more epochs and a set that fits under the cap, it is computed once and reused.
        0 (the default) disables the cache: the bench's paired section (``python -m
        nmnp.bench``, line "cpu vs cached set") measured training from the cached set 1.3 to
        1.9x slower than the fused step that recomputes the encoder (the README quotes each
        run), because a cached sample is n_units values to gather where the fused kernel reads
        n_inputs.
    max_steps : int or None
        Stop after this many optimiser steps in all, whatever epoch they fall in (``None``:
        no cap). SupSup's protocol trains "3 epochs capped at 1,000 steps": with 469 steps
        per epoch that is two whole epochs and 62 steps of the third. An epoch cut short
        reports the mean loss and accuracy of the samples it saw.
    """

    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.01
    optimizer: str = "rmsprop"
    seed: int = 0
    encode_cache_mb: float = 0.0
    max_steps: int | None = None

    def __post_init__(self):
        # NumPy scalars are accepted (a value read from an array), booleans are not (True is
        # an int to Python, never a count); every field is stored as a plain Python number.
        def whole(name, value, minimum, what):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                    or value < minimum:
                raise ConfigError(f"{what}, got {value!r}")
            object.__setattr__(self, name, int(value))

        def real(name, value, ok, what):
            number = isinstance(value, (int, float, np.integer, np.floating))
            if isinstance(value, (bool, np.bool_)) or not number or not ok(float(value)):
                raise ConfigError(f"{what}, got {value!r}")
            object.__setattr__(self, name, float(value))

        whole("epochs", self.epochs, 1, "epochs must be a positive integer")
        whole("batch_size", self.batch_size, 1, "batch size must be a positive integer")
        real("lr", self.lr, lambda v: math.isfinite(v) and v > 0,
             "learning rate must be a positive finite number")
        whole("seed", self.seed, 0, "seed must be a non-negative integer")
        if self.seed >= 2**63:  # as NetworkConfig: the seed of a run seeds its network too
            raise ConfigError(f"seed must be a non-negative 63-bit integer (below 2**63), got {self.seed!r}")
        real("encode_cache_mb", self.encode_cache_mb, lambda v: v >= 0,
             "encode_cache_mb must be >= 0")
        if self.max_steps is not None:
            whole("max_steps", self.max_steps, 1, "max_steps must be a positive integer or None")
        optimizer_class(self.optimizer)  # an unknown name is refused here, not at the first task
        # stored lower-case, so "RMSprop" and "rmsprop" are one configuration (resume compares)
        object.__setattr__(self, "optimizer", self.optimizer.lower())

    def steps_per_epoch(self, n_samples: int) -> list[int]:
        """Optimiser steps in each epoch that runs, for a training set of ``n_samples``.

        Every epoch has ceil(n_samples / batch_size) steps, except that the total stops at
        ``max_steps``: the last epoch that runs may be cut short, and the epochs after it do
        not run at all. An empty set (0 samples) has no steps; ConfigError for a negative
        or non-integer ``n_samples``.

        Examples
        --------
        >>> TrainSettings(epochs=3, batch_size=128, max_steps=1000).steps_per_epoch(60_000)
        [469, 469, 62]
        """
        if isinstance(n_samples, (bool, np.bool_)) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 0:
            raise ConfigError(f"n_samples must be a non-negative integer, got {n_samples!r}")
        per_epoch = -(-int(n_samples) // self.batch_size)
        left = self.epochs * per_epoch
        if self.max_steps is not None:
            left = min(left, self.max_steps)
        plan = []
        while left > 0:
            plan.append(min(per_epoch, left))
            left -= plan[-1]
        return plan

    def to_dict(self) -> dict:
        """Every setting, JSON-ready (stored in reports)."""
        return asdict(self)


@dataclass
class TaskTrainingReport:
    """What training one task did."""

    task_id: int
    seconds: float
    samples: int
    steps: int
    epoch_losses: list = field(default_factory=list)
    epoch_accuracies: list = field(default_factory=list)
    encoded_cache_bytes: int = 0

    @property
    def samples_per_second(self) -> float:
        """Training samples per second (infinite when no time was measured)."""
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


def train_task(
    learner,
    task_id: int,
    x,
    y,
    settings: TrainSettings = TrainSettings(),
    *,
    classes=None,
    progress: bool | None = None,
    description: str | None = None,
) -> TaskTrainingReport:
    """Train one task's parameters on (x, y) with a fresh optimiser.

    Parameters
    ----------
    learner : a model following the protocol in this module's docstring
    task_id : int
    x : (N, n_inputs) training inputs
    y : (N,) integer labels
    settings : TrainSettings
    classes : optional class ids that compete (split benchmarks)
    progress : ``True`` shows a tqdm bar, ``False`` nothing; ``None`` a bar on a terminal
        and otherwise a plain line every 30 s (see :mod:`nmnp.progress`)
    description : names the task in the progress bar or lines

    Returns
    -------
    TaskTrainingReport
        Wall-clock seconds of the optimisation loop (validation excluded), samples
        processed, mean loss and training accuracy per epoch.

    Raises
    ------
    TrainingError
        If the loss or a gradient becomes NaN or infinite, or an optimiser update would
        overflow; the message names the task and step, and the parameters keep their last
        finite values.
    """
    if not isinstance(settings, TrainSettings):
        raise ConfigError(f"settings must be a TrainSettings, got {type(settings).__name__} "
                          f"(e.g. TrainSettings(epochs=3))")
    params = learner.trainable_params(task_id)  # raises TaskError if frozen/unknown
    x = learner.check_inputs(x)
    y = learner.check_labels(y, x.shape[0])
    classes = learner.check_classes(classes)
    n = x.shape[0]
    if n == 0:
        raise ConfigError(f"task {task_id} has no training samples")
    optimizer = make_optimizer(settings.optimizer, params, settings.lr)
    plan = settings.steps_per_epoch(n)
    report = TaskTrainingReport(task_id, 0.0, 0, 0)
    bar = task_progress(sum(plan), description or f"task {task_id}", progress)
    # Errors name the task id (as stored in the model) and, when given, its place in the stream.
    where = f"task id {task_id}" + (f" ({description})" if description else "")
    start = time.perf_counter()
    try:
        # CUDA fast path (issue 5): the paper's network on the cuda backend runs this whole
        # loop on the GPU with the task's data resident there (same shuffling, optimiser maths
        # and error checks; see nmnp.kernels.cuda_training). Every other learner: the loop below.
        if _trains_on_device(learner):
            learner.kernels.train_task_resident(
                learner, task_id, x, y, settings, classes=classes, optimizer=optimizer,
                report=report, bar=bar, where=where,
            )
            return report
        encoded = _encoded_training_set(learner, x, settings, len(plan))
        report.encoded_cache_bytes = 0 if encoded is None else encoded.nbytes
        for epoch, steps in enumerate(plan):
            order = rng_for(settings.seed, SHUFFLE, task_id, epoch).permutation(n)
            loss_sum, correct, seen = 0.0, 0, 0
            for step in range(steps):
                batch = order[step * settings.batch_size : (step + 1) * settings.batch_size]
                if encoded is None:
                    loss, grads, n_correct = learner.loss_and_grads_batch(
                        x[batch], y[batch], task_id, classes
                    )
                else:
                    loss, grads, n_correct = learner.loss_and_grads_encoded(
                        encoded[batch], y[batch], task_id, classes
                    )
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"{where}, epoch {epoch + 1}, step {step + 1}: the loss became "
                        f"{loss}; try a smaller learning rate (now {settings.lr})"
                    )
                try:
                    optimizer.step(grads)
                except (ShapeError, TrainingError) as err:
                    # a non-finite gradient, or an update that would overflow: refused before
                    # any write, and named with the task and step like a non-finite loss
                    raise TrainingError(
                        f"{where}, epoch {epoch + 1}, step {step + 1}: {err}"
                    ) from err
                loss_sum += loss * batch.size
                correct += n_correct
                seen += batch.size
                report.steps += 1
                report.samples += batch.size
                bar.update(1)
            report.epoch_losses.append(loss_sum / seen)
            report.epoch_accuracies.append(correct / seen)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
    finally:
        report.seconds = time.perf_counter() - start
        bar.close()
    return report


def _trains_on_device(learner) -> bool:
    """True for a ModulatedNetwork (with its own, unchanged loss) whose backend can run the
    whole training loop on the device (the cuda backend's ``train_task_resident``)."""
    from .model import ModulatedNetwork

    return (
        isinstance(learner, ModulatedNetwork)
        and type(learner).loss_and_grads_batch is ModulatedNetwork.loss_and_grads_batch
        and hasattr(learner.kernels, "train_task_resident")
    )


def _encoded_training_set(learner, x, settings: TrainSettings, epochs: int):
    """The task's encoder output, computed once, if caching pays (``epochs``, the number that
    will run, is 2 or more) and fits under the cap."""
    if epochs < 2 or settings.encode_cache_mb <= 0 or not hasattr(learner, "encode_dataset"):
        return None
    if learner.encoded_nbytes(x.shape[0]) > settings.encode_cache_mb * 2**20:
        return None
    return learner.encode_dataset(x)
