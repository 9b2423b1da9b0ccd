"""The roofline: the work a sample needs, the machine's measured peaks, and the rate they allow.

A rate is judged against the slower of two limits: the flops a sample needs divided into the
measured matrix-multiply peak, and the bytes it must move divided into the measured streaming
read bandwidth. The counts are the minimum the model's math needs, whatever the kernel does.
"""

from __future__ import annotations

import os

import numpy as np

from ..config import NetworkConfig
from .timing import timed


def training_flops_per_sample(config: NetworkConfig) -> int:
    """Arithmetic operations one training sample needs at minimum (float adds/multiplies).

    Encoder: ``n k`` adds for the gather-sums, ``2 n`` for centring and ReLU. Readout
    forward: ``n`` to modulate plus ``2 n n_out`` (``n n_out`` multiply-adds). Backward:
    ``2 n n_out`` for ``g = dlogits W`` and ``2 n`` for ``dc = s sum_b g h``. The softmax and the optimiser are
    O(n_out) and O(n / batch) per sample and are left out. FlyNet: 407,680.
    """
    n, k, o = config.n_units, config.inputs_per_unit, config.n_outputs
    return n * k + 2 * n + n + 2 * n * o + 2 * n * o + 2 * n


def training_bytes_per_sample(config: NetworkConfig, batch_size: int) -> float:
    """Bytes one training sample must move from memory at minimum (float32).

    The sample's input (``4 n_in``) and label, plus its share of what every step reads
    once: the encoder indices (``4 n k``), the readout (``4 n n_out``) and the context
    (``4 n``, read and written) divided by the batch size.
    """
    n, k, o = config.n_units, config.inputs_per_unit, config.n_outputs
    shared = 4 * n * k + 4 * n * o + 2 * 4 * n
    return 4 * config.n_inputs + 8 + shared / batch_size


def inference_flops_per_sample(config: NetworkConfig, n_tasks: int = 1) -> int:
    """Arithmetic operations one sample's inference needs for ``n_tasks`` tasks.

    The encoder runs once, whatever the number of tasks: ``n k + 2 n`` (as in
    :func:`training_flops_per_sample`). Each task then modulates (``n``) and reads out
    (``2 n n_out``), and shares none of that with another task, since task t's logits are
    ``s_t sum_j W[o, j] c_t[j] h[j, b]``. FlyNet: 235,200 for one task, 5,997,600 (25.5
    times as many) for 36.
    """
    n, k, o = config.n_units, config.inputs_per_unit, config.n_outputs
    return n * k + 2 * n + n_tasks * (n + 2 * n * o)


def dense_inference_flops_per_sample(config: NetworkConfig, n_tasks: int = 1) -> int:
    """:func:`inference_flops_per_sample` for the authors' dense formulation, whose encoder
    is a product with the dense (n x n_in) binary matrix: ``2 n n_in`` flops where nmnp's
    gather needs ``n k``. FlyNet: 12,473,440 for one task and 18,235,840 for 36 (1.46 times
    as many), since there the shared encoder is most of the work.
    """
    n, k = config.n_units, config.inputs_per_unit
    return inference_flops_per_sample(config, n_tasks) - n * k + 2 * n * config.n_inputs


def measure_peaks(repeats: int = 5, size: int = 1024) -> dict:
    """The machine's measured limits for this kind of work, with every thread in use.

    ``sgemm_gflops``: a float32 (size x size) matrix product through NumPy's BLAS.
    ``stream_gbs``: a parallel Numba sum over a 256 MiB float32 array (read bandwidth).
    Both are medians over ``repeats``; ``sgemm_gflops_best`` and ``stream_gbs_best`` are the
    fastest repeat, the fair peak for a rate that is itself the fastest of several runs.
    """
    from threadpoolctl import threadpool_limits

    from ..kernels.cpu import stream_sum

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    # every core for the peak (nmnp otherwise holds BLAS to one thread; see system.set_threads)
    with threadpool_limits(limits=os.cpu_count(), user_api="blas"):
        t = timed(lambda: a @ a, repeats)
    big = np.ones(64 * 2**20, dtype=np.float32)
    s = timed(lambda: stream_sum(big), repeats)
    return {
        "sgemm_gflops": 2 * size**3 / t["median"] / 1e9,
        "stream_gbs": big.nbytes / s["median"] / 1e9,
        "sgemm_gflops_best": 2 * size**3 / t["min"] / 1e9,
        "stream_gbs_best": big.nbytes / s["min"] / 1e9,
    }


def training_roofline(config: NetworkConfig, batch_size: int, peaks: dict, threads: int,
                      all_threads: int) -> float:
    """The most training samples/s the measured ``peaks`` allow at ``batch_size``.

    .. math:: \\min\\left(\\frac{\\text{sgemm FLOP/s}}{\\text{flops per sample}},
              \\frac{\\text{read bytes/s}}{\\text{bytes per sample}}\\right)
              \\cdot \\frac{\\text{threads}}{\\text{all threads}}

    The peaks are measured with every thread (``all_threads``), so a run on fewer threads
    is held to that share of them.
    """
    limit = min(peaks["sgemm_gflops"] * 1e9 / training_flops_per_sample(config),
                peaks["stream_gbs"] * 1e9 / training_bytes_per_sample(config, batch_size))
    return limit * threads / all_threads
