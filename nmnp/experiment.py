"""One continual-learning experiment, start to finish: data -> stream -> learner -> report.

The command line, the demo and the comparison tables all go through :func:`run_experiment`,
so they measure the same thing the same way.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np

from . import __version__
from .config import NetworkConfig
from .continual import metrics
from .continual.runner import ContinualResult, run_stream
from .continual.streams import make_stream
from .data.datasets import load_dataset
from .errors import ConfigError
from .model import ModulatedNetwork
from .system import describe_machine, set_threads
from .train import TrainSettings

BENCHMARKS = ("rotated", "permuted", "split")
INTERPOLATIONS = ("nearest", "bilinear")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run; stored in its JSON and its checkpoints."""

    benchmark: str = "rotated"
    dataset: str = "fashion-mnist-subset"
    data_dir: str | None = None
    tasks: int = 5
    step: float = 10.0
    interpolation: str = "nearest"
    epochs: int = 1
    lr: float = 0.01
    batch_size: int = 128
    optimizer: str = "rmsprop"
    seed: int = 0
    backend: str = "cpu"
    threads: int | None = None
    units: int = 7840
    k: int = 7
    strategy: str = "crwn"

    def __post_init__(self):
        if self.benchmark not in BENCHMARKS:
            raise ConfigError(f"unknown benchmark {self.benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"unknown interpolation {self.interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}"
            )
        if not isinstance(self.tasks, int) or self.tasks < 1:
            raise ConfigError(f"tasks must be at least 1, got {self.tasks!r}")
        if not math.isfinite(self.step):
            raise ConfigError(f"step must be a finite number of degrees, got {self.step!r}")
        self.train_settings()  # validates epochs, lr, batch size, seed

    def train_settings(self) -> TrainSettings:
        return TrainSettings(self.epochs, self.batch_size, self.lr, self.optimizer, self.seed)

    def network_config(self, n_inputs: int = 784, n_outputs: int = 10) -> NetworkConfig:
        return NetworkConfig(n_inputs, self.units, self.k, n_outputs, self.seed, "float32")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def make_learner(config: ExperimentConfig):
    """The learner a strategy name stands for, on the fixed network of ``config``."""
    if config.strategy == "crwn":
        return ModulatedNetwork(config.network_config(), config.backend)
    raise ConfigError(f"unknown strategy {config.strategy!r}; available: crwn")


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


def run_experiment(
    config: ExperimentConfig,
    *,
    dataset=None,
    learner=None,
    result: ContinualResult | None = None,
    progress: bool | None = None,
    on_task_end: Callable | None = None,
) -> dict:
    """Run ``config`` and return its report (see :func:`report`).

    ``learner`` and ``result`` continue a resumed run; ``on_task_end(result, learner)`` is
    called after each task (printing, checkpointing).
    """
    threads = set_threads(config.threads)
    stream = build_stream(config, dataset)
    learner = learner if learner is not None else make_learner(config)
    start = time.perf_counter()
    result = run_stream(
        learner, stream, config.train_settings(), result=result,
        progress=progress, on_task_end=on_task_end,
    )
    out = report(config, learner, result, stream, threads)
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
