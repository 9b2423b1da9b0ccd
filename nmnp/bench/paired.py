"""The paired section: the cpu backend against its rivals, each repeat running every side back to back."""

from __future__ import annotations

from .pytorch import torch_dense_runner
from .runners import cached_training_runner, training_runner
from .timing import measure_paired


def run_paired(args, config, backends, batch_sizes, threads: int, say) -> dict | None:
    """The cpu backend against the others at the targets' batch size, in alternation.

    The training section's ratios compare figures measured minutes apart; here every repeat
    runs the cpu backend and each comparison back to back (see
    :func:`~nmnp.bench.timing.measure_paired`). The comparisons: the cpu backend training
    from a cached encoded set (:func:`~nmnp.bench.runners.cached_training_runner`), the
    numpy backend, and PyTorch's dense formulation when it is installed. None when the cpu
    backend is not among ``backends``.
    """
    if "cpu" not in backends:
        return None
    bs = 128 if 128 in batch_sizes else batch_sizes[0]
    steps = max(1, min(args.steps, (args.samples // bs) or 1))
    runners = {"cpu": training_runner("cpu", config, bs, steps)}
    # The encoded-set cache recomputes nothing but reads n_units values per sample: which of
    # the two wins decides TrainSettings.encode_cache_mb's default.
    runners["cached set"] = cached_training_runner(config, bs, steps)
    if "numpy" in backends:
        runners["numpy"] = training_runner("numpy", config, bs, steps)
    if args.torch:
        torch_run = torch_dense_runner(config, bs, steps, threads)
        if torch_run is not None:
            runners["torch dense"] = torch_run
    result = measure_paired(runners, args.repeats, base="cpu")
    say(f"\npaired (each repeat runs every side back to back; batch {bs}, {threads} threads): "
        f"how many times faster cpu is, median [min .. max] over {args.repeats} repeats")
    for name, r in result.items():
        if name == "cpu":
            continue
        q = r["ratio"]
        say(f"  cpu vs {name:<12} {q['median']:6.1f}x  [{q['min']:.1f} .. {q['max']:.1f}]"
            f"   (cpu {bs * steps / result['cpu']['seconds']['median']:,.0f}/s, "
            f"{name} {bs * steps / r['seconds']['median']:,.0f}/s)")
    return {"batch_size": bs, "threads": threads, "steps": steps, **result}
