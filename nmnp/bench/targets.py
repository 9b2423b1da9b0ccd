"""The cpu backend's speed targets, and which figure of a bench report each is judged on."""

from __future__ import annotations

from ..config import NetworkConfig
from .roofline import inference_flops_per_sample

# The speed targets the cpu backend is held to (FlyNet, batch 128, every thread of a 2-core
# laptop-class machine): key -> (name, threshold, "at least" or "below").
TARGETS = {
    "training": ("cpu training samples/s", 100_000, "at least"),
    "torch dense": ("cpu vs PyTorch dense, paired", 20.0, "at least"),
    "numpy": ("cpu vs numpy, paired", 10.0, "at least"),
    "inference": ("cpu one-task inference samples/s", 200_000, "at least"),
    "36 tasks": ("cpu inference of 36 tasks, times one task's cost", 6.0, "below"),
}


def target_checks(report: dict, threads: int, batch_size: int = 128) -> list[dict]:
    """Each of :data:`TARGETS` that ``report`` measured, judged on one figure.

    Training speed is judged on the slower of the training section's median and the cpu
    side of the paired section (both are the same step, timed minutes apart); the ratios on
    the paired medians, which cancel the machine's drifts; inference on its section's median.
    Returns ``[{"target", "threshold", "value", "measured", "met"}]``, the targets that
    could not be judged (a backend or batch size not run) left out.
    """
    found = {}
    train = [r["samples_per_second"]["median"] for r in report.get("training", [])
             if (r["backend"], r["threads"], r["batch_size"]) == ("cpu", threads, batch_size)]
    paired = report.get("paired") or {}
    paired_ok = paired.get("batch_size") == batch_size and paired.get("threads") == threads
    if train:
        rates = train[:1]
        if paired_ok:
            rates.append(paired["steps"] * batch_size / paired["cpu"]["seconds"]["median"])
        found["training"] = (min(rates), " and ".join(f"{v:,.0f}/s" for v in rates)
                                + (" (section and paired)" if len(rates) == 2 else ""))
    for rival in ("torch dense", "numpy"):
        if paired_ok and rival in paired:
            q = paired[rival]["ratio"]
            found[rival] = (q["median"], f"{q['median']:.1f}x (repeats {q['min']:.1f} to {q['max']:.1f})")
    inference = {r["tasks"]: r for r in report.get("inference", [])
                 if r["backend"] == "cpu" and r["batch_size"] == batch_size}
    if 1 in inference:
        one = inference[1]["samples_per_second"]["median"]
        found["inference"] = (one, f"{one:,.0f}/s")
        if 36 in inference:
            ratio = inference[36]["seconds"]["median"] / inference[1]["seconds"]["median"]
            config = NetworkConfig.from_dict(report["config"])
            flops = inference_flops_per_sample(config, 36) / inference_flops_per_sample(config, 1)
            found["36 tasks"] = (ratio, f"{ratio:.2f}x (the flops: {flops:.2f}x)")
    checks = []
    for key, (name, threshold, how) in TARGETS.items():
        if key in found:
            value, measured = found[key]
            met = value >= threshold if how == "at least" else value < threshold
            checks.append({"target": f"{name} {how} {threshold:,g}", "threshold": threshold,
                           "value": value, "measured": measured, "met": bool(met)})
    return checks
