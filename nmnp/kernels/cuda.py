"""The cuda backend: the GPU twins of :mod:`nmnp.kernels.reference` and :mod:`nmnp.kernels.cpu`.

Every public function has the same name, arguments and results as its twins: it takes and
returns host NumPy arrays, so the backend-parametrised tests run it unchanged. Inside, data
moves to the device, one or more kernels run, and the result comes back. Training does not go
through these per-batch functions on this backend: :func:`train_task_resident` keeps a task's
data on the device for all its epochs (see :mod:`nmnp.kernels.cuda_training`), and evaluation
goes through :func:`task_predictions`, which uploads a whole set once and brings back only
class ids (see :mod:`nmnp.kernels.cuda_inference`).

Requirements
------------
The numba-cuda package (``pip install nmnp[cuda]``) and an NVIDIA GPU, or Numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1`` in the environment *before* Python starts), which runs
the same kernels on the CPU as Python threads: slow, for testing small shapes only.
:func:`check_available` says in one sentence what is missing. ``import nmnp`` never imports
this module; :func:`nmnp.kernels.get_backend` does, on first use of ``"cuda"``.

Where each part lives
---------------------
* :mod:`nmnp.kernels.cuda_device`: availability, the launch configuration (:func:`configure`,
  :func:`launch_config`), transfers and launches (:data:`launch_counts`,
  :func:`record_transfers`); the public ones are re-exported here;
* :mod:`nmnp.kernels.cuda_kernels`: the kernels, each docstring stating its launch shape and
  what makes it race-free, and the common contract they share;
* :mod:`nmnp.kernels.cuda_training` and :mod:`nmnp.kernels.cuda_inference`: training and
  evaluation with a whole set resident on the device;
* this module: the per-batch functions of the backend interface, and the compile check.
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendError
from . import cuda_device as device
from . import cuda_kernels as kernels
from .cuda_device import (  # noqa: F401 - the backend's public launch API, re-exported
    SIMULATOR,
    check_available,
    configure,
    current_config,
    cuda,
    device_name,
    launch_config,
    launch_counts,
    record_transfers,
)

NAME = "cuda"


# ------------------------------------------------------------------------------ the interface
def encoder_forward(x, idx):
    """Sparse encoder forward; see :func:`nmnp.kernels.reference.encoder_forward`.

    Launches: ``stage_batch`` (sample means only), ``encode``.
    """
    B, n_in = x.shape
    h = np.empty((B, idx.shape[0]), dtype=x.dtype)
    if B == 0:
        return h
    tables = device.encoder_tables(idx)
    x_dev = device.to_device(x)
    rows = device.to_device(np.arange(B, dtype=np.int32))
    _, mean = kernels.stage(x_dev, rows, n_in, tables, x.dtype, want_xT=False)
    h_dev = device.empty(h.shape, x.dtype)
    device.launch(kernels.plain_kernels(x.dtype)["encode"], device.grid2(idx.shape[0], B),
                  device.tpb(), x_dev, tables.idx, mean, h_dev)
    return device.host(h_dev)


def encoder_backward(dh, h, idx, n_in):
    """Sparse encoder backward; see :func:`nmnp.kernels.reference.encoder_backward`.

    Launches: ``dz_means``, ``encoder_input_grad`` (a gather: no atomics).
    """
    B = dh.shape[0]
    dx = np.zeros((B, n_in), dtype=dh.dtype)
    if B == 0 or n_in == 0:
        return dx
    tables = device.encoder_tables(idx)
    ptr, readers = tables.csr(n_in)
    dh_dev, h_dev = device.to_device(dh), device.to_device(h)
    mz = device.empty(B, dh.dtype)
    plain = kernels.plain_kernels(dh.dtype)
    device.launch(plain["dz_means"], device.grid1(B), device.tpb(), dh_dev, h_dev,
                  1.0 / idx.shape[0], mz)
    dx_dev = device.empty((B, n_in), dh.dtype)
    device.launch(plain["encoder_input_grad"], device.grid2(n_in, B), device.tpb(),
                  dh_dev, h_dev, ptr, readers, mz, dx_dev)
    return device.host(dx_dev)


def modulated_forward(h, c, s, W):
    """Modulated readout forward; see :func:`nmnp.kernels.reference.modulated_forward`.

    Launches: ``readout_forward``.
    """
    B = h.shape[0]
    y = np.empty((B, W.shape[0]), dtype=h.dtype)
    if B == 0:
        return y
    y_dev = device.empty(y.shape, h.dtype)
    device.launch(kernels.plain_kernels(h.dtype)["readout_forward"], device.grid1(B * W.shape[0]),
                  device.tpb(), device.to_device(h), device.to_device(np.asarray(c, dtype=h.dtype)),
                  float(s), device.constant(W), y_dev)
    return device.host(y_dev)


def _modulated_grads(dy, h, c, s, W, want_dh):
    B, n = h.shape
    s = float(s)
    if B == 0:
        gh = np.zeros(n)
        dh = np.zeros(h.shape, dtype=h.dtype)
    else:
        tile = device.launch_settings["tile"]
        n_tiles = -(-B // tile)
        gh_part = device.empty((n_tiles, n), h.dtype)
        dh_dev = device.empty(h.shape if want_dh else (1, 1), h.dtype)
        device.launch(kernels.plain_kernels(h.dtype)["readout_backward"], device.grid2(n, n_tiles),
                      device.tpb(), device.to_device(np.asarray(dy, dtype=h.dtype)),
                      device.to_device(h), device.to_device(np.asarray(c, dtype=h.dtype)), s,
                      device.constant(W), tile, want_dh, dh_dev, gh_part)
        gh = kernels.column_sums(gh_part)
        dh = device.host(dh_dev) if want_dh else None
    return dh, (s * gh).astype(h.dtype), float(np.dot(c, gh))


def modulated_backward(dy, h, c, s, W):
    """Modulated readout backward; see :func:`nmnp.kernels.reference.modulated_backward`.

    Launches: ``readout_backward`` (per-tile partial sums), ``sum_rows`` (second pass). The
    last O(n) step, ``dc = s gh`` and ``ds = c . gh``, runs on the host in float64 like the
    cpu backend's, since the results go there anyway.
    """
    return _modulated_grads(dy, h, c, s, W, True)


def modulated_param_grads(dy, h, c, s, W):
    """``(dc, ds)`` only; see :func:`nmnp.kernels.reference.modulated_param_grads`."""
    _, dc, ds = _modulated_grads(dy, h, c, s, W, False)
    return dc, ds


def task_logits(x, idx, gains, strengths, W):
    """Several tasks' logits sharing one encoder pass; see the reference twin.

    Launches: ``stage_batch``, then per group of up to ``40 // n_out`` tasks:
    ``logit_partials`` and ``scale_partials``. The encoder output is never written.
    """
    B, n_in = x.shape
    gains = np.ascontiguousarray(gains, dtype=x.dtype)
    T, n_out = gains.shape[0], W.shape[0]
    logits = np.empty((T, B, n_out), dtype=x.dtype)
    if B == 0 or T == 0:
        return logits
    tables = device.encoder_tables(idx)
    rows = device.to_device(np.arange(B, dtype=np.int32))
    xT, mean = kernels.stage(device.to_device(x), rows, n_in, tables, x.dtype)
    gains_dev = device.to_device(gains)
    strengths_dev = device.to_device(np.asarray(strengths, dtype=np.float64).reshape(T))
    W_dev = device.constant(W)
    logits_dev = device.empty(logits.shape, x.dtype)
    per_pass = kernels.tasks_per_pass(n_out)
    for t0 in range(0, T, per_pass):
        nt = min(per_pass, T - t0)
        partials = kernels.forward_partials(xT, 0, B, tables.idx, mean, gains_dev, t0, nt, W_dev,
                                            device.status_zero())
        device.launch(kernels.plain_kernels(x.dtype)["scale_partials"],
                      device.grid1(nt * B * n_out), device.tpb(), partials, strengths_dev, t0,
                      logits_dev)
    return device.host(logits_dev)


def task_predictions(x, idx, gains, strengths, W, classes=None, batch_size=None):
    """Several tasks' predicted classes, the set resident on the device; see
    :mod:`nmnp.kernels.cuda_inference`."""
    from .cuda_inference import task_predictions as run

    return run(x, idx, gains, strengths, W, classes, batch_size)


def logits_and_activity(x, idx, c, s, W):
    """One task's logits and the encoder activity; see the reference twin.

    Launches: those of :func:`encoder_forward` and :func:`modulated_forward`, with the
    activity brought back to the host in between. Training on this backend does not use
    it: the device-resident loop of :mod:`nmnp.kernels.cuda_training` keeps everything on
    the GPU.
    """
    h = encoder_forward(x, idx)
    return modulated_forward(h, c, s, W), h


def context_grads(x, idx, c, s, W, dlogits):
    """``(dc, ds)`` straight from the inputs; see the reference twin.

    Launches: ``stage_batch``, ``context_grad_partials``, ``sum_rows``; ``dc = s gh`` and
    ``ds = c . gh`` on the host in float64, as in the cpu backend.
    """
    B, n_in = x.shape
    n = idx.shape[0]
    s = float(s)
    if B == 0:
        return np.zeros(n, dtype=x.dtype), 0.0
    tables = device.encoder_tables(idx)
    rows = device.to_device(np.arange(B, dtype=np.int32))
    xT, mean = kernels.stage(device.to_device(x), rows, n_in, tables, x.dtype)
    dlT = device.to_device(np.ascontiguousarray(np.asarray(dlogits, dtype=x.dtype).T))
    gh_part = kernels.grad_partials(xT, 0, B, tables.idx, mean, device.constant(W), dlT,
                                    device.status_zero())
    gh = kernels.column_sums(gh_part)
    return (s * gh).astype(x.dtype), float(np.dot(c, gh))


# ------------------------------------------------------------------------------ training
def train_task_resident(learner, task_id, x, y, settings, *, classes, optimizer, report, bar,
                        where=None):
    """Train one task with its data on the device; see :mod:`nmnp.kernels.cuda_training`."""
    from .cuda_training import train_task_resident as run

    return run(learner, task_id, x, y, settings, classes=classes, optimizer=optimizer,
               report=report, bar=bar, where=where)


def benchmark_training(config=None, *, batch_size: int = 1024, n_samples: int | None = None,
                       steps: int = 50, repeats: int = 3, optimizer: str = "rmsprop",
                       seed: int = 0) -> dict:
    """Time resident training steps, transfers apart from compute; returns a dict.

    See :func:`nmnp.kernels.cuda_training.benchmark_training` for the arguments and keys.
    """
    from .cuda_training import benchmark_training as run

    return run(config, batch_size=batch_size, n_samples=n_samples, steps=steps, repeats=repeats,
               optimizer=optimizer, seed=seed)


# ------------------------------------------------------------------------------ compile check
def _compile_everything(cc=(9, 0)) -> dict[str, list[str]]:
    """Compile every kernel, with the argument types its callers pass, to PTX for ``cc``.

    Needs NVVM and NVRTC (pip packages nvidia-nvvm, nvidia-cuda-nvrtc) but no GPU, and the
    simulator off: it checks that every kernel is valid numba.cuda code (which the simulator,
    running plain Python, cannot). Runs each public function and a short resident training
    run on tiny inputs with launches replaced by compilation. Returns the PTX of each kernel
    compiled, by kernel name (one text per signature), so tests can read what the hardware
    will run: which kernels use atomics, for example.
    """
    if SIMULATOR:
        raise BackendError("compile check needs the simulator off (unset NUMBA_ENABLE_CUDASIM)")
    from .cuda_training import _compile_training

    import numba.cuda.dispatcher as dispatcher

    class _Device:  # what device functions ask for when they compile: only the target
        compute_capability = cc

    real_device = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: _Device()
    _clear_kernel_caches()
    device.compile_only = {"__cc__": cc}
    try:
        rng = np.random.default_rng(0)
        for dt in (np.float32, np.float64):
            B, n_in, n, k, n_out = 5, 6, 7, 3, 4
            x = rng.normal(size=(B, n_in)).astype(dt)
            idx = np.sort(np.argsort(rng.random((n, n_in)), axis=1)[:, :k], axis=1).astype(np.int32)
            W = rng.normal(size=(n_out, n)).astype(dt)
            c = rng.normal(size=n).astype(dt)
            h = np.abs(rng.normal(size=(B, n))).astype(dt)
            dy = rng.normal(size=(B, n_out)).astype(dt)
            encoder_forward(x, idx)
            encoder_backward(h, h, idx, n_in)
            modulated_forward(h, c, 0.5, W)
            modulated_backward(dy, h, c, 0.5, W)
            modulated_param_grads(dy, h, c, 0.5, W)
            task_logits(x, idx, np.stack([c, c]), np.ones(2), W)
            task_predictions(x, idx, np.stack([c, c]), np.ones(2), W, np.array([2, 0]), 3)
            context_grads(x, idx, c, 0.5, W, dy)
            _compile_training(dt)
        compiled = {}
        for key, ptx in device.compile_only.items():
            if key != "__cc__":
                compiled.setdefault(key[0], []).append(ptx)
        return dict(sorted(compiled.items()))
    finally:
        device.compile_only = None
        dispatcher.get_current_device = real_device
        _clear_kernel_caches()  # nothing compiled for the pretend device is kept


def _clear_kernel_caches() -> None:
    from . import cuda_inference, cuda_training_kernels

    kernels.clear_caches()
    for factory in (cuda_training_kernels.device_functions, cuda_training_kernels.loss_kernel,
                    cuda_training_kernels.step_kernel, cuda_inference._predict_kernel):
        factory.cache_clear()
    device.clear_caches()
