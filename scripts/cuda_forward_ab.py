#!/usr/bin/env python
"""Evaluation of 36 tasks on the GPU: the fused forward with its accumulators in registers
against the same kernel with run-time indices (local memory), in one process.

The cuda backend compiles the fused forward (``logit_partials``) for each (tasks per pass,
outputs) shape it meets, so that every index into a thread's accumulators is known at
compile time and they stay in registers. This script times ``task_predictions`` for 36
FlyNet tasks with that kernel and with the run-time-indexed variant the backend used for
several tasks per pass before, alternating the two in every repeat so that a change in the
machine's speed affects both, and checks that they predict the same classes.

Usage (needs a GPU)::

    python scripts/cuda_forward_ab.py [--repeats 9] [--batch-sizes 1024,10000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from nmnp import ModulatedNetwork, NetworkConfig
from nmnp.kernels import cuda_kernels as kernels, get_backend


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--batch-sizes", default="1024,10000")
    args = p.parse_args()
    warnings.filterwarnings("ignore", message=".*under-utilization")
    K = get_backend("cuda")
    fixed_shape = kernels.forward_kernel

    def run_time_indexed(n_out, nt, dtype):
        if nt == 1:  # one task was always compiled for its shape
            return fixed_shape(n_out, nt, dtype)
        width = kernels.tasks_per_pass(n_out) * n_out
        return kernels.logit_partials_kernel(width, np.dtype(dtype).name)

    net = ModulatedNetwork(NetworkConfig.flynet(), "cuda")
    for _ in range(36):
        net.add_task()
    gains = np.stack([c.gains for c in net.tasks])
    strengths = np.concatenate([c.strength for c in net.tasks])
    variants = {"run-time indices": run_time_indexed, "fixed shape": fixed_shape}
    try:
        for B in (int(b) for b in args.batch_sizes.split(",")):
            x = np.random.default_rng(0).normal(size=(B, 784)).astype(np.float32)
            seconds = {name: [] for name in variants}
            answers = {}
            for repeat in range(args.repeats + 1):  # the first round compiles: not timed
                for name, forward in variants.items():
                    kernels.forward_kernel = forward
                    start = time.perf_counter()
                    answers[name] = K.task_predictions(x, net.encoder_indices, gains, strengths,
                                                       net.readout)
                    if repeat:
                        seconds[name].append(time.perf_counter() - start)
            same = all((a == answers["fixed shape"]).all() for a in answers.values())
            rate = {name: B / np.median(s) for name, s in seconds.items()}
            print(f"36 tasks, batch {B}: run-time indices {rate['run-time indices']:,.0f}/s, "
                  f"fixed shape {rate['fixed shape']:,.0f}/s, "
                  f"{rate['fixed shape'] / rate['run-time indices']:.2f}x "
                  f"(medians of {args.repeats}, alternating); same predictions: {same}")
    finally:
        kernels.forward_kernel = fixed_shape


if __name__ == "__main__":
    main()
