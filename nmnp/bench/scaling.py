"""The scaling tables (``--scaling``): how the cpu backend's cost grows with the model's sizes."""

from __future__ import annotations

from ..config import NetworkConfig
from .lines import fmt_rate
from .runners import measure_inference, measure_training

UNITS = (784, 1960, 3920, 7840, 15680, 31360)
BATCH_SIZES = (1, 8, 32, 128, 512, 1024, 4096)
TASK_COUNTS = (1, 4, 16, 36, 64, 256)


def run_scaling(args, threads: int, say, unit_counts=UNITS, batch_sizes=BATCH_SIZES,
                task_counts=TASK_COUNTS) -> dict:
    """Training samples/s against encoder width (batch 128) and batch size (FlyNet), and the
    time of evaluating T stored tasks on one batch of 1,024 against T; cpu backend.

    Parameters
    ----------
    args : argparse.Namespace
        The bench's options; ``repeats`` and ``samples`` (per timed repeat) are read.
    threads : int
        Numba threads the measurements run on (recorded in the result).
    say : callable
        Prints one line.
    unit_counts, batch_sizes, task_counts : sequence of int
        The rows of the three tables; default :data:`UNITS`, :data:`BATCH_SIZES` and
        :data:`TASK_COUNTS`, the sizes the README's tables use.

    Returns
    -------
    dict
        ``threads``, and the rows of the tables ``units``, ``batch`` and ``tasks``.
    """
    scaling = {"threads": threads, "units": [], "batch": []}
    say(f"\nscaling (cpu, {threads} threads): training samples/s against encoder units, batch 128")
    for units in unit_counts:
        cfg = NetworkConfig(784, units, 7, 10, 0)
        r = measure_training("cpu", cfg, 128, args.repeats, max(1, args.samples // 128))
        scaling["units"].append({"units": units, **r})
        say(f"  {units:>6} units: {fmt_rate(r['samples_per_second'])}")
    say("scaling: training samples/s against batch size, FlyNet")
    for bs in batch_sizes:
        r = measure_training("cpu", NetworkConfig.flynet(), bs, args.repeats, max(1, min(64, args.samples // bs)))
        scaling["batch"].append({"batch_size": bs, **r})
        say(f"  batch {bs:>5}: {fmt_rate(r['samples_per_second'])}")
    say("scaling: evaluating T stored tasks on one batch of 1024, FlyNet")
    scaling["tasks"] = []
    base = None
    for T in task_counts:
        r = measure_inference("cpu", NetworkConfig.flynet(), 1024, T, args.repeats)
        base = base or r["seconds"]["median"]
        scaling["tasks"].append({"tasks": T, **r, "cost_vs_one_task": r["seconds"]["median"] / base})
        say(f"  {T:>4} tasks: {r['seconds']['median'] * 1e3:8.2f} ms per batch ({r['seconds']['median'] / base:5.2f} x one task)")
    return scaling
