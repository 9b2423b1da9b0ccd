"""Evaluation on the cuda backend: a set goes up once, and only class ids come back.

:func:`task_predictions` is the cuda twin of :func:`nmnp.kernels.reference.task_predictions`.
``ModulatedNetwork.predict``, ``evaluate`` and ``evaluate_tasks`` call it once for a whole
set, so on this backend:

* the inputs (N, n_in) go up once, with the contexts, strengths and competing classes;
* each batch of at most ``batch_size`` samples is staged (``stage_batch``: the batch-innermost
  layout ``xT`` and the sample means) from the resident inputs, and the fused encoder +
  readout (``logit_partials``) runs for up to ``40 // n_out`` tasks per pass;
* ``predict_classes`` sums each pass's unit-chunk partials, scales them by the strength and
  takes the argmax over the competing classes on the device, so the logits are never
  written, let alone copied back;
* the predictions (T, N) int32 come back once.

Launches per batch (of :data:`DEVICE_BATCH` samples unless the caller names another size):
1 + 2 per group of tasks (3 for one task), and no transfer or synchronisation in between.
The per-batch :func:`nmnp.kernels.cuda.task_logits` instead copies every batch up and its
(T, B, n_out) logits back, which made the host, not the GPU, set the pace of evaluation.

The argmax compares the logits rounded to the data's precision, as ``task_logits`` stores
them, so the predictions equal ``task_logits(...).argmax`` on this backend exactly (the
tests check it). Contexts are finite (the model refuses anything else), so there is no NaN
rule.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from . import cuda_device as device
from . import cuda_kernels as kernels
from .cuda_device import cuda
from .reference import check_batch_size, competing_classes


@functools.lru_cache(maxsize=8)
def _numbers(n: int) -> np.ndarray:
    """A read-only ``arange(n)`` (int32), so that :func:`~nmnp.kernels.cuda_device.constant`
    keeps its device copy: the row numbers of a set, or every class as the competing classes.
    Each upload costs the host about as much as a kernel launch."""
    a = np.arange(n, dtype=np.int32)
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=None)
def _predict_kernel(dtype_name: str):
    """The argmax kernel for data of ``dtype_name`` (the precision logits are rounded to)."""
    dt = numba.from_dtype(np.dtype(dtype_name))

    @cuda.jit
    def predict_classes(partials, strengths, t0, classes, col0, predictions):
        """predictions[t0 + t, col0 + b] = classes[argmax_q z[t, b, classes[q]]], with
        z[t, b, o] = strengths[t0 + t] * sum_c partials[c, t, o, b] (float64 sum, rounded to
        the data's precision).

        Launch: 1-D over (t, b), ``b`` fastest: neighbouring threads read neighbouring
        partials (coalesced) and write neighbouring predictions. One writer per prediction.
        A tie goes to the earliest competing class, as NumPy's argmax does.
        """
        n_chunks, nt, _, nb = partials.shape
        for q in range(cuda.grid(1), nt * nb, cuda.gridsize(1)):
            t = q // nb
            b = q - t * nb
            best = dt(0)
            arg = classes[0]
            for r in range(classes.shape[0]):
                o = classes[r]
                acc = 0.0
                for c in range(n_chunks):
                    acc += partials[c, t, o, b]
                z = dt(strengths[t0 + t] * acc)
                if r == 0 or z > best:
                    best = z
                    arg = o
            predictions[t0 + t, col0 + b] = arg

    return predict_classes


#: Samples per device batch when the caller names no batch size. Each batch costs the host
#: three kernel launches and a few allocations, which take longer than the GPU needs for a
#: thousand samples, so batches are large. For FlyNet a sample takes 784 floats of ``xT``
#: plus 62 unit chunks x 10 outputs of partial logits per task in a pass: a full batch
#: takes about 90 MB of device memory for one task, about 210 MB for four or more.
DEVICE_BATCH = 16384


def task_predictions(x, idx, gains, strengths, W, classes=None, batch_size=None):
    """Several tasks' predicted classes; see the reference twin and this module's docstring.

    ``batch_size`` (default :data:`DEVICE_BATCH`) bounds the device memory one batch takes
    besides the inputs: its batch-innermost copy ``xT`` (n_in x batch_size) and the partial
    logits of one group of tasks (units / units_per_chunk x tasks per group x n_out x
    batch_size).
    """
    B, n_in = x.shape
    gains = np.ascontiguousarray(gains, dtype=x.dtype)
    T, n_out = gains.shape[0], W.shape[0]
    every_class = classes is None
    classes = competing_classes(classes, n_out)
    batch_size = check_batch_size(batch_size, DEVICE_BATCH)
    if B == 0 or T == 0:
        return np.empty((T, B), dtype=np.int64)
    tables = device.encoder_tables(idx)
    x_dev = device.to_device(x)
    rows = device.constant(_numbers(B))
    gains_dev = device.to_device(gains)
    strengths_dev = device.to_device(np.asarray(strengths, dtype=np.float64).reshape(T))
    if every_class:
        classes_dev = device.constant(_numbers(n_out))
    else:
        classes_dev = device.to_device(classes.astype(np.int32))
    W_dev = device.constant(W)
    predictions = device.empty((T, B), np.int32)
    kernel = _predict_kernel(np.dtype(x.dtype).name)
    per_pass = kernels.tasks_per_pass(n_out)
    for lo in range(0, B, batch_size):
        nb = min(batch_size, B - lo)
        batch_rows = rows if nb == B else rows[lo : lo + nb]  # a device slice costs the host too
        xT, mean = kernels.stage(x_dev, batch_rows, n_in, tables, x.dtype)
        for t0 in range(0, T, per_pass):
            nt = min(per_pass, T - t0)
            partials = kernels.forward_partials(xT, 0, nb, tables.idx, mean, gains_dev, t0, nt,
                                                W_dev, device.status_zero())
            device.launch(kernel, device.grid1(nt * nb), device.tpb(), partials, strengths_dev, t0,
                          classes_dev, lo, predictions)
    return device.host(predictions).astype(np.int64)
