"""The two layers of a neuromodulated random-weight network, as pure forward/backward pairs.

``forward(...) -> (out, cache)`` and ``backward(dout, cache) -> grads`` (a dict). Nothing is
accumulated behind the caller's back: calling ``backward`` twice gives the same answer. The
arithmetic is done by a kernel backend (``"numpy"``, ``"cpu"`` or ``"cuda"``), chosen per call.

Layers check their arguments' shapes once, here, so the kernels below can trust them.
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError
from .kernels import get_backend


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ShapeError(message)


def sparse_encoder_forward(x, idx, backend="cpu"):
    """Fixed sparse random encoder ("Kenyon cells"): gather-sum, centre, rectify.

    Parameters
    ----------
    x : (B, n_in) float32 or float64
    idx : (n_units, k) int32; unit j sums inputs ``idx[j]`` (binary weights, never a
        dense matrix)
    backend : str or backend module

    Returns
    -------
    h : (B, n_units), ``relu(m - mean_j(m))`` with ``m_j = sum_t x[idx[j, t]]``
    cache : for :func:`sparse_encoder_backward`
    """
    _require(x.ndim == 2, f"encoder input must be 2-D (batch, n_in), got shape {x.shape}")
    _require(x.dtype in (np.float32, np.float64), f"encoder input must be float32 or float64, got {x.dtype}")
    _require(idx.ndim == 2, f"encoder indices must be 2-D (n_units, k), got shape {idx.shape}")
    _require(idx.dtype.kind in "iu", f"encoder indices must be integers, got dtype {idx.dtype}")
    # the kernels index x with these numbers unchecked: an out-of-range one would read past it
    _require(
        idx.size > 0 and 0 <= idx.min() and idx.max() < x.shape[1],
        f"encoder indices must lie in 0..{x.shape[1] - 1} (the input width), "
        f"got {idx.min() if idx.size else 'none'}..{idx.max() if idx.size else 'none'}",
    )
    kernels = get_backend(backend)
    h = kernels.encoder_forward(x, idx)
    return h, (h, idx, x.shape[1], kernels)


def sparse_encoder_backward(dh, cache):
    """Gradient of the encoder with respect to its input.

    Parameters
    ----------
    dh : (B, n_units)
    cache : from :func:`sparse_encoder_forward`

    Returns
    -------
    grads : dict with ``"x"``: (B, n_in)
    """
    h, idx, n_in, kernels = cache
    _require(dh.shape == h.shape, f"dh has shape {dh.shape}, expected {h.shape}")
    return {"x": kernels.encoder_backward(dh, h, idx, n_in)}


def modulated_linear_forward(x, gains, strength, weight, backend="cpu"):
    """Modulated random linear layer :math:`y = s\\,(x \\odot c)\\,W^T`.

    The context ``c`` scales every synapse leaving presynaptic unit j by ``c[j]`` and the
    strength ``s`` scales the whole layer: the task's effective weight matrix is
    ``s W diag(c)``, which is never formed.

    Parameters
    ----------
    x : (B, n) presynaptic activity
    gains : (n,) context ``c``
    strength : float or (1,) array ``s``
    weight : (n_out, n) fixed random weights ``W``
    backend : str or backend module

    Returns
    -------
    y : (B, n_out)
    cache : for :func:`modulated_linear_backward`
    """
    _require(x.ndim == 2, f"layer input must be 2-D (batch, n), got shape {x.shape}")
    _require(
        x.dtype in (np.float32, np.float64) and gains.dtype == x.dtype and weight.dtype == x.dtype,
        f"input, gains and weight must share one float dtype (float32 or float64), got "
        f"{x.dtype}, {gains.dtype}, {weight.dtype}",
    )
    _require(
        gains.shape == (x.shape[1],),
        f"gains have shape {gains.shape}, expected ({x.shape[1]},) to match the input",
    )
    _require(
        weight.ndim == 2 and weight.shape[1] == x.shape[1],
        f"weight has shape {weight.shape}, expected (n_out, {x.shape[1]})",
    )
    s = float(np.asarray(strength).reshape(-1)[0])
    kernels = get_backend(backend)
    y = kernels.modulated_forward(x, gains, s, weight)
    return y, (x, gains, s, weight, kernels)


def modulated_linear_backward(dy, cache):
    """Gradients of the modulated layer: input, gains and strength (never the weights).

    Parameters
    ----------
    dy : (B, n_out)
    cache : from :func:`modulated_linear_forward`

    Returns
    -------
    grads : dict with ``"x"`` (B, n), ``"gains"`` (n,), ``"strength"`` (1,)
    """
    x, gains, s, weight, kernels = cache
    _require(
        dy.shape == (x.shape[0], weight.shape[0]),
        f"dy has shape {dy.shape}, expected {(x.shape[0], weight.shape[0])}",
    )
    dx, dc, ds = kernels.modulated_backward(dy, x, gains, s, weight)
    return {"x": dx, "gains": dc, "strength": np.array([ds], dtype=x.dtype)}
