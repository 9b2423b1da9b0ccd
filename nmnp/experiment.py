"""One continual-learning experiment, start to finish: data -> stream -> learner -> report.

The command line, the demo and the comparison tables all go through :func:`run_experiment`,
so they measure the same thing the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable, Mapping

import numpy as np

from . import __version__
from .config import NetworkConfig
from .continual import metrics
from .continual.runner import ContinualResult, run_stream
from .continual.streams import make_stream
from .data.datasets import load_dataset
from .errors import CheckpointError, ConfigError, NmnpError
from .strategies import check_strategy, default_lr, default_optimizer, make_strategy
from .system import describe_machine, set_threads
from .train import TrainSettings

BENCHMARKS = ("rotated", "permuted", "split")
INTERPOLATIONS = ("nearest", "bilinear")


#: The integer fields of :class:`ExperimentConfig` and the least value each may take
#: (``None``: checked elsewhere, by :class:`~nmnp.train.TrainSettings` or
#: :class:`~nmnp.config.NetworkConfig`, with their own messages).
_INTEGER_FIELDS = {"tasks": 1, "epochs": None, "max_steps": None, "batch_size": None, "seed": None,
                   "threads": 1, "units": None, "k": None}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run; stored in its JSON and its checkpoints.

    ``optimizer`` and ``lr`` left as ``None`` take the strategy's own recipe
    (:func:`nmnp.strategies.default_optimizer`, then :func:`nmnp.strategies.default_lr` for
    that optimiser), so ``ExperimentConfig(strategy="separate")`` trains its dense readout
    with Adam 3e-4, not with crwn's RMSprop 0.01 (under which that readout's loss blows up).
    A preset's published recipe is applied by :func:`nmnp.presets.resolve_config`.
    ``max_steps`` caps each task's optimiser steps over all its epochs (``None``: no cap; see
    :class:`nmnp.train.TrainSettings`). ``skip_unchanged`` copies a learned task's accuracy
    instead of measuring it again when nothing its predictions read has changed (see
    :mod:`nmnp.continual.runner`); it changes how long a run takes, not its results.
    """

    benchmark: str = "rotated"
    dataset: str = "fashion-mnist-subset"
    data_dir: str | None = None
    tasks: int = 5
    step: float = 10.0
    interpolation: str = "nearest"
    epochs: int = 1
    max_steps: int | None = None
    lr: float | None = None
    batch_size: int = 128
    optimizer: str | None = None
    seed: int = 0
    backend: str = "cpu"
    threads: int | None = None
    units: int = 7840
    k: int = 7
    strategy: str = "crwn"
    skip_unchanged: bool = False

    def __post_init__(self):
        check_strategy(self.strategy)  # a list (unhashable) included
        # Frozen dataclass: the recipe is filled in once, here, so the stored config (JSON,
        # checkpoints) always names the optimiser and rate that were actually used.
        if self.optimizer is None:
            object.__setattr__(self, "optimizer", default_optimizer(self.strategy))
        elif isinstance(self.optimizer, str):  # "RMSprop" and "rmsprop" are one configuration
            object.__setattr__(self, "optimizer", self.optimizer.lower())
        if self.lr is None:
            object.__setattr__(self, "lr", default_lr(self.strategy, self.optimizer))
        if self.benchmark not in BENCHMARKS:
            raise ConfigError(f"unknown benchmark {self.benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"unknown interpolation {self.interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}"
            )
        # Counts may be NumPy integers (read from an array) but not booleans (True is an int
        # to Python, never a count); each is stored as a plain int, so to_dict stays JSON.
        for name, minimum in _INTEGER_FIELDS.items():
            value = getattr(self, name)
            if value is None and name in ("max_steps", "threads"):
                continue
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            if minimum is not None and value < minimum:
                raise ConfigError(f"{name} must be at least {minimum}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.data_dir is not None:  # "" would silently mean the current folder
            from .atomic import as_path

            as_path(self.data_dir, "data_dir", kind="folder")
            object.__setattr__(self, "data_dir", os.fsdecode(self.data_dir))  # JSON-ready text
        if (isinstance(self.step, (bool, np.bool_)) or not isinstance(self.step, (int, float, np.number))
                or not math.isfinite(self.step)):
            raise ConfigError(f"step must be a finite number of degrees, got {self.step!r}")
        object.__setattr__(self, "step", float(self.step))
        if not isinstance(self.skip_unchanged, bool):
            raise ConfigError(f"skip_unchanged must be True or False, got {self.skip_unchanged!r}")
        # validates epochs, max_steps, lr, batch size, seed; lr is kept as the plain float used
        object.__setattr__(self, "lr", self.train_settings().lr)
        self.network_config()  # validates units and k (n_units, inputs_per_unit) and the size

    def train_settings(self) -> TrainSettings:
        """The :class:`~nmnp.train.TrainSettings` every task of the run is trained with."""
        return TrainSettings(self.epochs, self.batch_size, self.lr, self.optimizer, self.seed,
                             max_steps=self.max_steps)

    def network_config(self, n_inputs: int = 784, n_outputs: int = 10) -> NetworkConfig:
        """The :class:`~nmnp.config.NetworkConfig` of the run's network (float32), for a
        dataset of ``n_inputs`` pixels and ``n_outputs`` classes."""
        return NetworkConfig(n_inputs, self.units, self.k, n_outputs, self.seed, "float32")

    def to_dict(self) -> dict:
        """Every field, JSON-ready (stored in reports and checkpoints); see :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        """The configuration :meth:`to_dict` wrote; keys it does not know are ignored, missing
        ones take their defaults, and values are validated as in the constructor."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"an experiment configuration must be a dict, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def epochs_text(config: ExperimentConfig) -> str:
    """``"3 epoch(s)"``, or ``"3 epoch(s), at most 1,000 steps"`` under a step cap."""
    steps = config.max_steps
    cap = "" if steps is None else f", at most {steps:,} step{'' if steps == 1 else 's'}"
    return f"{config.epochs} epoch(s){cap}"


def make_learner(config: ExperimentConfig):
    """The learner ``config.strategy`` names, on the fixed network of ``config``.

    ``"crwn"`` (the paper's model, a :class:`~nmnp.model.ModulatedNetwork`), ``"finetune"``,
    ``"separate"`` or ``"supsup"``; see :mod:`nmnp.strategies`. Every strategy is built from
    the same network configuration, so all share one fixed encoder. ConfigError for an
    unknown name.
    """
    return make_strategy(config.strategy, config.network_config(), config.backend)


def build_stream(config: ExperimentConfig, dataset=None):
    """The task stream of ``config`` (loads the dataset unless one is given)."""
    dataset = dataset if dataset is not None else load_dataset(config.dataset, config.data_dir)
    return make_stream(
        config.benchmark, dataset, config.tasks, seed=config.seed,
        step=config.step, interpolation=config.interpolation,
    )


def report(config: ExperimentConfig, learner, result: ContinualResult, stream, threads: int) -> dict:
    """The JSON-ready summary of a (possibly partial) run."""
    summary = metrics.summarize(result.acc_matrix)
    return {
        "nmnp_version": __version__,
        "config": config.to_dict(),
        "network": learner.config.to_dict(),
        "stream": stream.describe(),
        "scenario": stream.scenario,
        **result.to_dict(),
        "average_accuracy": summary["average_accuracy"],
        "backward_transfer": summary["backward_transfer"],
        "forgetting": summary["forgetting"],
        "accuracy_after_each_task": summary["accuracy_after_each_task"],
        "samples_per_second": result.samples_per_second,
        "params_per_task": learner.params_per_task,
        "bytes_per_task": learner.bytes_per_task,
        "fixed_params": learner.fixed_params,
        "fixed_bytes_to_regenerate": learner.fixed_bytes_to_regenerate,
        "backend": learner.backend,
        "threads": threads,
        "machine": describe_machine(),
    }


#: Fields of :class:`ExperimentConfig` a resumed run may change: where the data files are,
#: how many threads compute (which changes float32 rounding, not what is computed: the run is
#: then reproducible within the tolerance of tests/test_determinism.py, not bit for bit), and
#: whether unchanged tasks are re-evaluated (which changes only the time taken).
RESUMABLE_CHANGES = ("data_dir", "threads", "skip_unchanged")


def stored_run_config(path) -> ExperimentConfig:
    """The configuration of the run a checkpoint written by :func:`run_experiment` holds.

    Verifies the file (checksum, version) without regenerating the network.

    Raises
    ------
    CheckpointError
        If the file is not a valid checkpoint, holds no run (e.g. one from ``model.save``),
        or holds a run whose configuration or result is invalid (edited, or damaged before
        its checksum was written).
    """
    from . import checkpoint

    extra = checkpoint.read_extra(path)
    if not extra or not isinstance(extra.get("experiment"), dict) or not isinstance(extra.get("result"), dict):
        raise CheckpointError(
            f"checkpoint {path} holds a learner but no run to resume (it was not written by "
            "`nmnp run --checkpoint`)"
        )
    try:
        config = ExperimentConfig.from_dict(extra["experiment"])
    except (NmnpError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} holds an invalid run configuration ({err})") from None
    _stored_result(extra, path)  # a damaged result is named now, before any network or data
    return config


def _stored_result(extra: dict, path) -> ContinualResult:
    """The run result a checkpoint's ``extra`` holds, validated
    (:meth:`~nmnp.continual.runner.ContinualResult.from_dict`); CheckpointError otherwise."""
    try:
        return ContinualResult.from_dict(extra["result"])
    except (NmnpError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} holds an invalid run result ({err})") from None


def config_differences(a: ExperimentConfig, b: ExperimentConfig, ignore=RESUMABLE_CHANGES) -> list[str]:
    """The fields where ``a`` and ``b`` differ, as ``"name a_value vs b_value"`` strings."""
    da, db = a.to_dict(), b.to_dict()
    return [f"{k} {da[k]!r} vs {db[k]!r}" for k in da if k not in ignore and da[k] != db[k]]


def _resume_state(config: ExperimentConfig, path):
    """(learner, result, threads it ran on) of the run stored at ``path``, which must be
    ``config``'s run."""
    from . import checkpoint

    stored = stored_run_config(path)
    diffs = config_differences(config, stored)
    if diffs:
        raise ConfigError(
            f"cannot resume {path} with a different configuration: {'; '.join(diffs)} "
            "(given vs stored)"
        )
    learner = make_learner(config)  # the same class a fresh run would use
    ck = checkpoint.read(path, into=learner)
    result = _stored_result(ck.extra, path)
    if result.n_tasks != ck.model.n_tasks:
        raise CheckpointError(
            f"checkpoint {path} holds {ck.model.n_tasks} task(s) but results for {result.n_tasks}"
        )
    unfrozen = [i for i, ctx in enumerate(ck.model.tasks) if not ctx.frozen]
    if unfrozen:
        raise CheckpointError(f"checkpoint {path} holds unfinished task(s) {unfrozen}, not a run between tasks")
    return ck.model, result, ck.extra.get("threads")


def run_experiment(
    config: ExperimentConfig,
    *,
    dataset=None,
    learner=None,
    result: ContinualResult | None = None,
    progress: bool | None = None,
    on_task_end: Callable | None = None,
    on_report: Callable | None = None,
    checkpoint=None,
    resume=None,
) -> dict:
    """Run ``config`` and return its report (see :func:`report`).

    Parameters
    ----------
    config : ExperimentConfig
    dataset : Dataset, optional
        Use this instead of loading ``config.dataset``.
    learner, result : optional
        Continue a run held in memory (tasks ``0..result.n_tasks-1`` already learned).
    progress : as in :func:`nmnp.train.train_task` (``None``: bars on a terminal, a line
        every 30 s in a log)
    on_task_end : called as ``on_task_end(result, learner)`` after each task (printing).
    on_report : called as ``on_report(report)`` after each task but the last, with the report
        of the tasks done so far (as returned, plus ``unfinished_tasks`` > 0), so that a caller
        can save it: an interrupted run then keeps the rows it finished.
    checkpoint : path, optional
        Save the network and the run (configuration, accuracy matrix) there, atomically,
        after every task. Refused if the file exists, unless it is the one being resumed:
        an earlier run's tasks are never overwritten by accident. Locked for the whole run
        (:func:`nmnp.lock.exclusive`), so a second run or resume on it is refused at once.
    resume : path, optional
        Continue the run a checkpoint holds from its last completed task, saving after every
        task to ``checkpoint`` if given, else back to ``resume``. ``config`` must be
        the stored configuration (only :data:`RESUMABLE_CHANGES` may differ; see
        :func:`stored_run_config`). With the same seed, backend and thread count the final
        accuracy matrix is bit-identical to an uninterrupted run's: shuffling and initial
        contexts are drawn per (seed, task), not from a running generator.

    Raises
    ------
    ConfigError
        Bad configuration (or ``config`` not an ExperimentConfig), a ``checkpoint`` or
        ``resume`` that is not a path, an output folder that does not exist, an existing
        checkpoint file, a checkpoint another process is writing, or a resume with another
        configuration; all before any training.
    CheckpointError
        A resume file that is damaged or belongs to another network.
    TrainingError
        The loss or a gradient became non-finite, or an update would overflow; the last
        checkpoint (after the previous task) is intact.
    """
    from .atomic import as_path, check_output_path
    from .lock import exclusive

    if not isinstance(config, ExperimentConfig):
        raise ConfigError(f"config must be an ExperimentConfig, got {type(config).__name__}"
                          + (" (ExperimentConfig.from_dict builds one from a dict)"
                             if isinstance(config, Mapping) else ""))
    for name, hook in (("on_task_end", on_task_end), ("on_report", on_report)):
        if hook is not None and not callable(hook):
            raise ConfigError(f"{name} must be callable or None, got {type(hook).__name__}")
    # a number or "" is named here, not by pathlib; bytes paths are decoded
    resume = None if resume is None else as_path(resume, "resume")
    checkpoint = None if checkpoint is None else as_path(checkpoint, "checkpoint")
    if checkpoint is None and resume is not None:
        checkpoint = resume  # a resumed run keeps saving where it was saved
    if checkpoint is None:
        guard = contextlib.nullcontext()
    else:
        check_output_path(checkpoint)
        # Held until the run ends, so that a second run (or resume) on the same file stops
        # at once instead of taking turns with this one at replacing it.
        guard = exclusive(checkpoint)
    with guard:
        return _run_locked(config, dataset=dataset, learner=learner, result=result,
                           progress=progress, on_task_end=on_task_end, on_report=on_report,
                           checkpoint=checkpoint, resume=resume)


def _run_locked(config, *, dataset, learner, result, progress, on_task_end, on_report,
                checkpoint, resume):
    """:func:`run_experiment`'s work, once the checkpoint (if any) is locked to this process."""
    from . import checkpoint as ckpt
    from .atomic import same_file

    if checkpoint is not None:
        if os.path.exists(checkpoint) and not (resume is not None and same_file(checkpoint, resume)):
            raise ConfigError(
                f"checkpoint {checkpoint} already exists; resume that run or choose another path "
                "(an earlier run's tasks are never overwritten)"
            )
    if resume is not None:
        if learner is not None or result is not None:
            raise ConfigError("give either resume or learner and result, not both")
        learner, result, threads_before = _resume_state(config, resume)
    threads = set_threads(config.threads)
    stream = build_stream(config, dataset)
    learner = learner if learner is not None else make_learner(config)
    resumed_tasks = result.n_tasks if result is not None else 0

    def annotated(out: dict) -> dict:
        out["unfinished_tasks"] = config.tasks - len(out["acc_matrix"])
        if resume is not None:
            out["resumed_from"] = {
                "checkpoint": os.fspath(resume), "tasks_done": resumed_tasks,
                "threads": threads_before,
            }
        return out

    def after_task(res, lrn):
        if checkpoint is not None:
            ckpt.save(lrn, checkpoint, extra={
                "experiment": config.to_dict(), "result": res.to_dict(), "threads": threads,
            })
        if on_task_end is not None:
            on_task_end(res, lrn)
        if on_report is not None and res.n_tasks < config.tasks:
            on_report(annotated(report(config, lrn, res, stream, threads)))

    start = time.perf_counter()
    result = run_stream(
        learner, stream, config.train_settings(), result=result,
        progress=progress, on_task_end=after_task, skip_unchanged=config.skip_unchanged,
    )
    out = annotated(report(config, learner, result, stream, threads))
    out["wall_seconds"] = time.perf_counter() - start
    return out


def format_row(result: ContinualResult) -> str:
    """One line of the growing accuracy matrix: the newest row."""
    i = result.n_tasks - 1
    row = " ".join(f"{v:.3f}" for v in result.acc_matrix[i, : i + 1])
    return f"after task {i + 1:>2} ({result.task_names[i]}, {result.train_seconds[i]:.1f} s): {row}"


def zero_forgetting(acc_matrix) -> bool:
    """True when every task's accuracy is identical in every row after it was learned."""
    R = np.asarray(acc_matrix)
    return all(np.all(R[j:, j] == R[j, j]) for j in range(R.shape[0]))
