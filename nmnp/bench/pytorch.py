"""The authors' dense formulation in PyTorch, timed for comparison when PyTorch is installed.

The encoder there is a product with the dense (n x n_in) binary matrix, and autograd does the
backward pass. nmnp never needs PyTorch: every function here returns None without it.
"""

from __future__ import annotations

import numpy as np

from ..config import NetworkConfig
from ..model import ModulatedNetwork
from .runners import random_inputs
from .timing import rate, timed


def _torch_fixed_weights(torch, net: ModulatedNetwork):
    """(dense, W) as PyTorch tensors: the encoder as the dense (n x n_in) binary matrix the
    authors multiply by, and the fixed readout (n_out x n)."""
    config = net.config
    dense = torch.zeros(config.n_units, config.n_inputs)
    dense[torch.arange(config.n_units)[:, None], torch.from_numpy(net.encoder_indices.astype(np.int64))] = 1.0
    return dense, torch.from_numpy(net.readout.copy())


def torch_dense_runner(config: NetworkConfig, batch_size: int, steps: int, threads: int):
    """The authors' formulation in PyTorch: a dense binary encoder matmul, autograd and
    RMSprop, ``steps`` training steps per call; None when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    net = ModulatedNetwork(config, "numpy")
    dense, W = _torch_fixed_weights(torch, net)
    c = torch.nn.Parameter(torch.randn(config.n_units) * (2 / (config.n_units + 1)) ** 0.5)
    s = torch.nn.Parameter(torch.randn(1))
    opt = torch.optim.RMSprop([c, s], lr=0.01)
    x, y = random_inputs(config, batch_size * steps)
    xs = torch.from_numpy(x).split(batch_size)
    ys = torch.from_numpy(y).split(batch_size)

    def run():
        for xb, yb in zip(xs, ys):
            m = xb @ dense.T
            h = torch.relu(m - m.mean(dim=1, keepdim=True))
            loss = torch.nn.functional.cross_entropy(s * (h * c) @ W.T, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()

    run.torch_version = torch.__version__
    return run


def measure_torch_dense(config: NetworkConfig, batch_size: int, repeats: int, steps: int, threads: int):
    """Samples/s of :func:`torch_dense_runner`; None when PyTorch is not installed."""
    run = torch_dense_runner(config, batch_size, steps, threads)
    if run is None:
        return None
    seconds = timed(run, repeats)
    return {"samples_per_second": rate(batch_size * steps, seconds), "seconds": seconds, "torch": run.torch_version}


def torch_dense_inference_runner(net: ModulatedNetwork, x: np.ndarray, threads: int):
    """Evaluating every task of ``net`` on the batch ``x`` (B, n_in) in the authors' dense
    formulation with PyTorch: the dense encoder product once, then every task's readout
    ``s_t (h * c_t) W^T`` as one matrix product with the stacked effective readouts
    ``s_t W diag(c_t)`` (T n_out x n). ``run()`` returns the (T, B, n_out) logits as a NumPy
    array; None when PyTorch is not installed.

    Folding the tasks into one product is the fastest way of writing it that we found: a
    loop of ``s * (h * c) @ W.T`` over the tasks, as in training, reads and writes the whole
    (B, n) activity twice per task, and took 2.2 (batch 128) and 3.1 (batch 1,024) times as
    long for 36 tasks in a scratch comparison on the bench machine.
    """
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    dense, W = _torch_fixed_weights(torch, net)
    gains = torch.from_numpy(np.stack([c.gains for c in net.tasks]))
    strengths = torch.from_numpy(np.concatenate([c.strength for c in net.tasks]))
    xb = torch.from_numpy(np.ascontiguousarray(x))
    n_tasks, n_out, batch = gains.shape[0], W.shape[0], xb.shape[0]

    def run():
        with torch.no_grad():
            m = xb @ dense.T
            h = torch.relu(m - m.mean(dim=1, keepdim=True))
            readouts = (strengths[:, None, None] * W[None] * gains[:, None, :]).reshape(n_tasks * n_out, -1)
            return (h @ readouts.T).reshape(batch, n_tasks, n_out).permute(1, 0, 2).numpy()

    run.torch_version = torch.__version__
    return run


def measure_torch_dense_inference(config: NetworkConfig, batch_size: int, n_tasks: int, repeats: int,
                                  threads: int) -> dict | None:
    """Samples/s of :func:`torch_dense_inference_runner` on ``n_tasks`` fresh tasks; None
    when PyTorch is not installed."""
    net = ModulatedNetwork(config, "numpy")
    for _ in range(n_tasks):
        net.add_task()
    x, _ = random_inputs(config, batch_size)
    run = torch_dense_inference_runner(net, x, threads)
    if run is None:
        return None
    seconds = timed(run, repeats)
    return {"samples_per_second": rate(batch_size, seconds), "seconds": seconds, "torch": run.torch_version}
