"""Timing a piece of work: medians with min and max over repeats, after a warm-up."""

from __future__ import annotations

import time

import numpy as np


def timed(fn, repeats: int, warmup: bool = True) -> dict:
    """Median/min/max seconds of ``fn()`` over ``repeats`` runs, after one untimed warm-up
    run (a JIT compile, caches) unless ``warmup`` is False."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median": float(np.median(times)), "min": float(min(times)), "max": float(max(times))}


def rate(count: float, seconds: dict) -> dict:
    """Convert seconds (median/min/max) into a rate; the fastest run gives the max rate."""
    return {
        "median": count / seconds["median"],
        "min": count / seconds["max"],
        "max": count / seconds["min"],
    }


def measure_paired(runners: dict, repeats: int, base: str) -> dict:
    """Time several runners in alternation and give each one's speed relative to ``base``.

    Each repeat times every runner once, back to back, so a change in the machine's speed
    during the benchmark (a shared host) affects both sides of each ratio alike. Returns
    ``{name: {"seconds": ..., "ratio": {"median", "min", "max"}}}`` where ratio is
    ``time(name) / time(base)`` per repeat: how many times faster ``base`` is.
    """
    if base not in runners:
        raise ValueError(f"base {base!r} is not among the runners {sorted(runners)}")
    for run in runners.values():
        run()  # warm-up: compilation, caches
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times[base])]
        out[name] = {
            "seconds": {"median": float(np.median(ts)), "min": min(ts), "max": max(ts)},
            "ratio": {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)},
        }
    return out
