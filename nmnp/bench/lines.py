"""How the bench prints a figure: rates with their spread, and what a many-task cost means."""

from __future__ import annotations

from ..config import NetworkConfig
from .roofline import dense_inference_flops_per_sample, inference_flops_per_sample


def fmt_rate(r: dict) -> str:
    """A rate {"median", "min", "max"} as ``median  [min .. max]``, the median right-aligned."""
    return f"{r['median']:>12,.0f}  [{r['min']:,.0f} .. {r['max']:,.0f}]"


def many_tasks_line(config: NetworkConfig, pair: list, peaks: dict, on_host: bool) -> str:
    """What evaluating 36 tasks costs against one (``pair``: the two inference results), next
    to what it must cost: the flops of 36 readouts and one shared encoder pass against one of
    each, and the rate the 36 tasks computed at (with its share of the sgemm probe for a host
    backend, whose probe it is)."""
    ratio = pair[1]["seconds"]["median"] / pair[0]["seconds"]["median"]
    flops = inference_flops_per_sample(config, pair[1]["tasks"])
    flop_ratio = flops / inference_flops_per_sample(config, pair[0]["tasks"])
    gflops = flops * pair[1]["samples_per_second"]["median"] / 1e9
    share = f", {gflops / peaks['sgemm_gflops']:.0%} of the sgemm probe" if on_host else ""
    return (f"evaluating {pair[1]['tasks']} tasks costs {ratio:.2f} x one task, for {flop_ratio:.2f} x "
            f"its flops ({gflops:.1f} GFLOP/s{share})")


def dense_many_tasks_line(config: NetworkConfig, dense: list, cpu_many: list) -> str:
    """The 36-task cost against one in the authors' dense formulation (``dense``: its two
    inference results), whose flops ratio is far lower because its dense encoder, shared by
    the tasks, is most of its work; and, with ``cpu_many`` (the cpu backend's 36-task result
    on the same batch), how long the cpu backend takes for 36 tasks against PyTorch's one."""
    ratio = dense[1]["seconds"]["median"] / dense[0]["seconds"]["median"]
    flop_ratio = dense_inference_flops_per_sample(config, 36) / dense_inference_flops_per_sample(config, 1)
    line = f"evaluating 36 tasks costs {ratio:.2f} x one task, for {flop_ratio:.2f} x its flops"
    if cpu_many:
        vs = cpu_many[0]["seconds"]["median"] / dense[0]["seconds"]["median"]
        line += f"; cpu evaluates 36 tasks in {vs:.2f} x the time torch dense takes for one"
    return line
