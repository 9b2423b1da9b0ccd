#!/usr/bin/env python
"""How long each preset's full run takes on this machine: measured parts, then the sum.

A preset's run is too long to time whole on a laptop, but it is made of three parts that
repeat, each of which is timed here on the preset's own benchmark, for every strategy:

* building a task's training set (rotating or permuting 60,000 images), written into the
  array that held the previous task's, as the runner does (``stream.training_split(t,
  buffers)``; only the first task of a run allocates it);
* one training epoch of that task (``train_task``, after a warm-up so that no JIT compile
  or first-call cost is counted);
* one test pass: building a task's test split (into its reused array) and ``evaluate`` on
  its 10,000 images, as :func:`nmnp.continual.runner.run_stream` does for every earlier task
  after each new one.

A run of T tasks with E epochs costs T (build + E epoch) + T (T + 1) / 2 test passes (E, the
epochs' steps over one epoch's, is fractional when ``max_steps`` cuts the last one short); the
script prints the parts (medians of ``--repeats``) and that sum for each preset and
strategy, next to the machine and thread count. The estimates quoted in
:mod:`nmnp.presets` come from this script (``results/preset-runtimes.txt``).

With ``--skip-unchanged`` a strategy whose earlier tasks keep their predictions needs only
T test passes; the other T (T - 1) / 2 entries cost only the check every entry gets (hashing
the task's learned arrays), plus a hash of the fixed weights once per row. Whether a strategy's
earlier tasks stay unchanged is measured, not assumed: the warm-up task's hash is compared
before and after the timed tasks trained. The script prints that total too.

Usage::

    python scripts/preset_runtimes.py --dataset fashion-mnist --data-dir DIR [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from nmnp.atomic import atomic_write_json
from nmnp.bench import timed
from nmnp.continual.streams import InputBuffers, make_stream
from nmnp.data.datasets import load_dataset
from nmnp.experiment import ExperimentConfig, make_learner
from nmnp.presets import PRESETS, resolve_config
from nmnp.strategies import STRATEGIES
from nmnp.system import describe_machine, set_threads
from nmnp.train import train_task


def measure_parts(config: ExperimentConfig, dataset, repeats: int) -> dict:
    """Seconds to build a task, train one epoch and run one test pass, for ``config``."""
    stream = make_stream(config.benchmark, dataset, repeats + 2, seed=config.seed,
                         step=config.step, interpolation=config.interpolation)
    # Tasks 1, 2, ...: task 0 of a rotated or permuted stream is the identity. The first
    # build allocates the array that every later one writes over, as in a run.
    buffers = InputBuffers()
    stream.training_split(repeats + 1, buffers)
    builds = []
    for i in range(1, repeats + 1):
        start = time.perf_counter()
        stream.training_split(i, buffers)
        builds.append(time.perf_counter() - start)
    task = stream[1]
    learner = make_learner(config)
    settings = config.train_settings()
    one_epoch = replace(settings, epochs=1, max_steps=None)
    warm = learner.add_task("warm-up")  # compiles or loads every kernel before timing
    train_task(learner, warm, task.x_train[:1024], task.y_train[:1024], one_epoch,
               classes=task.classes, progress=False)
    learner.freeze(warm)
    warm_digest = learner.prediction_digest(warm)
    epochs = []
    for _ in range(repeats):
        t = learner.add_task(task.name)
        report = train_task(learner, t, task.x_train, task.y_train, one_epoch,
                            classes=task.classes, progress=False)
        epochs.append(report.seconds)
        learner.freeze(t)

    def test_pass():
        # An earlier task's test split, rebuilt from the raw images into the run's reused
        # test array as in a real run, then evaluated.
        x_test, y_test = stream.test_split(repeats + 1, buffers)
        learner.evaluate(x_test, y_test, t, task.classes)

    return {"build_s": float(np.median(builds)), "epoch_s": float(np.median(epochs)),
            "test_pass_s": timed(test_pass, repeats)["median"],
            "train_samples_per_s": task.x_train.shape[0] / float(np.median(epochs)),
            # --skip-unchanged: the check of one entry, the per-row hash of the fixed
            # weights, and whether the warm-up task's predictions survived the later tasks
            "check_s": timed(lambda: learner.prediction_digest(t), repeats)["median"],
            "fixed_hash_s": timed(learner.fingerprint, repeats)["median"],
            "unchanged": learner.prediction_digest(warm) == warm_digest}


def epochs_trained(config: ExperimentConfig, n_samples: int) -> float:
    """The epochs' worth of optimiser steps each task trains: ``config.epochs``, or less when
    ``config.max_steps`` stops the last epoch short (1,000 / 469 = 2.13 for SupSup's cap)."""
    steps = config.train_settings().steps_per_epoch(n_samples)
    return sum(steps) / steps[0]


def estimate(parts: dict, tasks: int, epochs: float) -> dict:
    """Seconds of a T-task run from its parts, with and without ``--skip-unchanged`` (see
    the module docstring)."""
    passes = tasks * (tasks + 1) // 2
    training = tasks * (parts["build_s"] + epochs * parts["epoch_s"])
    testing = passes * parts["test_pass_s"]
    # Skipping, every entry is checked and every row hashes the fixed weights once; only the
    # new task is measured, unless earlier tasks change (then all are).
    measured = tasks if parts["unchanged"] else passes
    skipping = (tasks * parts["fixed_hash_s"] + passes * parts["check_s"]
                + measured * parts["test_pass_s"])
    return {"training_s": training, "testing_s": testing, "total_s": training + testing,
            "test_passes": passes, "testing_skipping_s": skipping,
            "total_skipping_s": training + skipping}


def _hours(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--repeats", type=_at_least_one, default=3)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    threads = set_threads(None)
    dataset = load_dataset(args.dataset, args.data_dir)
    print(f"machine: {json.dumps(describe_machine())}")
    print(f"dataset: {dataset.name}, {dataset.x_train.shape[0]:,} training and "
          f"{dataset.x_test.shape[0]:,} test images; {threads} threads; medians of {args.repeats}")
    out = {"machine": describe_machine(), "threads": threads, "dataset": dataset.name, "presets": {}}
    for name, preset in PRESETS.items():
        print(f"\n{name}: {preset.summary}")
        rows = {}
        for strategy in args.strategies.split(","):
            config = resolve_config({"strategy": strategy, "dataset": args.dataset}, name)
            parts = measure_parts(config, dataset, args.repeats)
            epochs = epochs_trained(config, dataset.x_train.shape[0])
            total = estimate(parts, config.tasks, epochs)
            rows[strategy] = {**parts, **total, "optimizer": config.optimizer, "lr": config.lr}
            print(f"  {strategy:9s} build {parts['build_s']:.2f} s, epoch {parts['epoch_s']:.2f} s "
                  f"({parts['train_samples_per_s']:,.0f} samples/s), test pass "
                  f"{parts['test_pass_s']:.2f} s -> training {_hours(total['training_s'])}, "
                  f"{total['test_passes']:,} test passes {_hours(total['testing_s'])}, "
                  f"total {_hours(total['total_s'])}; --skip-unchanged: testing "
                  f"{_hours(total['testing_skipping_s'])}, total {_hours(total['total_skipping_s'])}"
                  + ("" if parts["unchanged"] else " (earlier tasks change: all measured)"))
        out["presets"][name] = rows
    if args.json:
        atomic_write_json(args.json, out)


if __name__ == "__main__":
    main()
