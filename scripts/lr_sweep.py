#!/usr/bin/env python
"""The learning-rate sweep behind each strategy's default recipe (:mod:`nmnp.strategies`).

One task of the rotated benchmark (task 0: unrotated), one epoch, batch 128, seed 0, on the
full Fashion-MNIST; the figure is the task's test accuracy. Each (strategy, optimiser, rate)
below is one run of :func:`nmnp.experiment.run_experiment`, all on one loaded dataset. The
table the docstring of :mod:`nmnp.strategies` quotes is this script's output
(``results/lr-sweep.txt``); the runs are deterministic for a given thread count, and agree
across thread counts within rounding.

Usage::

    python scripts/lr_sweep.py [--data-dir DIR] [--threads N] > results/lr-sweep.txt

About a minute on 2 cores.
"""

from __future__ import annotations

import argparse

import nmnp
from nmnp.data.datasets import load_dataset
from nmnp.experiment import ExperimentConfig, run_experiment
from nmnp.system import describe_machine

#: (strategy, optimiser, rates) in the order the docstring lists them.
SWEEP = (
    ("crwn", "rmsprop", (1e-2,)),
    ("crwn", "adam", (1e-2,)),
    ("separate", "rmsprop", (1e-2, 1e-3, 3e-4, 1e-4, 5e-5, 3e-5, 1e-5)),
    ("separate", "adam", (1e-3, 3e-4, 1e-4, 3e-5)),
    ("supsup", "rmsprop", (1e-2, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)),
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="folder of Fashion-MNIST's IDX files")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    args = p.parse_args(argv)
    dataset = load_dataset("fashion-mnist", args.data_dir)
    machine = describe_machine()
    print("learning-rate sweep: fashion-mnist, 1 task (unrotated), 1 epoch, batch 128, seed 0; "
          "test accuracy per rate")
    threads = None
    for strategy, optimizer, rates in SWEEP:
        cells = []
        for lr in rates:
            config = ExperimentConfig(dataset="fashion-mnist", data_dir=args.data_dir, tasks=1,
                                      epochs=1, strategy=strategy, optimizer=optimizer, lr=lr,
                                      threads=args.threads)
            report = run_experiment(config, dataset=dataset, progress=False)
            threads = report["threads"]
            cells.append(f"{lr:g} -> {report['acc_matrix'][0][0]:.3f}")
        print(f"  {strategy:<9} {optimizer:<8} " + ", ".join(cells), flush=True)
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {threads} thread(s); nmnp "
          f"{nmnp.__version__}, numpy {machine['numpy']}, numba {machine['numba']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
