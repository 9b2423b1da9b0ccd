"""Plain-NumPy reference kernels: the oracle every fast backend is tested against.

Each function here is written for clarity, not speed, and has a twin with the same name and
signature in :mod:`nmnp.kernels.cpu` (Numba) and :mod:`nmnp.kernels.cuda` (numba.cuda). Put two
files side by side to see how the same mathematics is organised for each machine.

Notation used throughout (shapes in brackets):

* ``x`` [B, n_in]: a batch of B input vectors.
* ``idx`` [n_units, k]: the sparse random encoder; unit j sums the k inputs ``idx[j, :]``.
* ``h`` [B, n_units]: encoder activity (non-negative).
* ``c`` [n_units]: a task's context (one gain per encoder unit); ``s``: the task's strength.
* ``W`` [n_out, n_units]: the fixed random readout.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ShapeError

NAME = "numpy"


def encoder_forward(x, idx):
    """Sparse random encoder: gather-sum, centre each sample across units, rectify.

    Parameters
    ----------
    x : (B, n_in) float array
    idx : (n_units, k) integer array of input indices (distinct within a row)

    Returns
    -------
    h : (B, n_units) array of ``x.dtype``

    Notes
    -----
    .. math::

        m_{bj} = \\sum_{t} x_{b, idx_{jt}}, \\qquad
        h_{bj} = \\max\\Big(0,\\; m_{bj} - \\tfrac{1}{n}\\sum_{j'} m_{bj'}\\Big)
    """
    m = x[:, idx].sum(axis=2)  # (B, n_units, k) -> (B, n_units)
    return np.maximum(m - m.mean(axis=1, keepdims=True), 0).astype(x.dtype, copy=False)


def encoder_backward(dh, h, idx, n_in):
    """Gradient of :func:`encoder_forward` with respect to its input.

    Parameters
    ----------
    dh : (B, n_units) upstream gradient
    h : (B, n_units) the forward output (its sign pattern is the ReLU mask)
    idx : (n_units, k) encoder indices
    n_in : int, number of inputs

    Returns
    -------
    dx : (B, n_in)

    Notes
    -----
    With :math:`z = m - \\bar m` and :math:`h = \\mathrm{relu}(z)`:

    .. math::

        dz = dh \\odot [h > 0], \\quad dm_j = dz_j - \\tfrac{1}{n}\\sum_{j'} dz_{j'}, \\quad
        dx_i = \\sum_{j : i \\in idx_j} dm_j
    """
    dz = dh * (h > 0)
    dm = dz - dz.mean(axis=1, keepdims=True)
    B = dh.shape[0]
    k = idx.shape[1]
    dx = np.zeros((n_in, B), dtype=dh.dtype)
    # Scatter-add: input i receives the gradient of every unit that reads it. add.at is
    # unbuffered, so an input chosen by several units accumulates all of them.
    np.add.at(dx, idx.reshape(-1), np.repeat(dm.T, k, axis=0))
    return np.ascontiguousarray(dx.T)


def modulated_forward(h, c, s, W):
    """Modulated random linear layer :math:`y = s\\,(h \\odot c)\\,W^T`.

    Parameters
    ----------
    h : (B, n) input activity
    c : (n,) context gains
    s : float, strength
    W : (n_out, n) fixed random weights

    Returns
    -------
    y : (B, n_out)
    """
    return (s * ((h * c) @ W.T)).astype(h.dtype, copy=False)


def modulated_backward(dy, h, c, s, W):
    """All gradients of :func:`modulated_forward`.

    Parameters
    ----------
    dy : (B, n_out) upstream gradient
    h, c, s, W : as in :func:`modulated_forward`

    Returns
    -------
    dh : (B, n)
    dc : (n,)
    ds : float

    Notes
    -----
    With :math:`g = dy\\,W` (shape (B, n)), no weight gradient is ever formed:

    .. math::

        dh = s\\, g \\odot c, \\qquad dc_j = s \\sum_b g_{bj} h_{bj}, \\qquad
        ds = \\sum_j c_j \\sum_b g_{bj} h_{bj}
    """
    g = dy @ W
    gh = (g * h).sum(axis=0)
    dh = (s * g * c).astype(h.dtype, copy=False)
    return dh, (s * gh).astype(h.dtype, copy=False), float(np.dot(c, gh))


def modulated_param_grads(dy, h, c, s, W):
    """Gradients for the learned context only, ``(dc, ds)``: the training path.

    Same mathematics as :func:`modulated_backward` without ``dh``, which training never
    needs because the encoder below is fixed.
    """
    gh = ((dy @ W) * h).sum(axis=0)
    return (s * gh).astype(h.dtype, copy=False), float(np.dot(c, gh))


def task_logits(x, idx, gains, strengths, W):
    """Logits of several tasks on the same inputs, sharing one encoder pass.

    Parameters
    ----------
    x : (B, n_in)
    idx : (n_units, k)
    gains : (T, n_units), one context per row
    strengths : (T,)
    W : (n_out, n_units)

    Returns
    -------
    logits : (T, B, n_out), ``logits[t] = s_t (h \\odot c_t) W^T`` with ``h`` the encoder output
    """
    h = encoder_forward(x, idx)
    return np.stack([modulated_forward(h, c, float(s), W) for c, s in zip(gains, strengths)])


#: Samples per pass of :func:`task_predictions` when the caller names no batch size.
HOST_BATCH = 1024


def task_predictions(x, idx, gains, strengths, W, classes=None, batch_size=None):
    """Predicted class of several tasks on the same inputs: the argmax of :func:`task_logits`.

    Parameters
    ----------
    x, idx, gains, strengths, W
        As in :func:`task_logits`: (B, n_in), (n_units, k), (T, n_units), (T,), (n_out, n_units).
    classes : (C,) integer array, or None
        The competing classes (split benchmarks): the argmax runs over ``logits[..., classes]``
        only, and a tie goes to the earliest entry. ``None``: all n_out outputs compete.
    batch_size : int or None
        Samples per pass: at most T x batch_size x n_out logits exist at once. ``None``:
        the backend's choice (:data:`HOST_BATCH` here and on the cpu backend).

    Returns
    -------
    predictions : (T, B) int64
        ``predictions[t, b] = classes[argmax_q logits[t, b, classes[q]]]``
    """
    return predictions_in_batches(task_logits, x, idx, gains, strengths, W, classes, batch_size)


def predictions_in_batches(logits_of, x, idx, gains, strengths, W, classes, batch_size):
    """:func:`task_predictions` for a backend whose ``task_logits`` is ``logits_of``.

    Shared by this module and the cpu backend: there the logits are computed on the host
    anyway, so taking their argmax is all that is left to do.
    """
    classes = competing_classes(classes, W.shape[0])
    batch_size = check_batch_size(batch_size, HOST_BATCH)
    out = np.empty((np.shape(gains)[0], x.shape[0]), dtype=np.int64)
    for lo in range(0, x.shape[0], batch_size):
        logits = logits_of(x[lo : lo + batch_size], idx, gains, strengths, W)
        out[:, lo : lo + batch_size] = classes[logits[:, :, classes].argmax(axis=2)]
    return out


def competing_classes(classes, n_out: int) -> np.ndarray:
    """``classes`` as a 1-D int64 array of output ids (all ``n_out`` of them for ``None``).

    Raises
    ------
    ShapeError
        If it is empty or names an output outside ``0 .. n_out - 1``.
    """
    if classes is None:
        return np.arange(n_out, dtype=np.int64)
    cls = np.asarray(classes).reshape(-1)
    if cls.size == 0 or not np.issubdtype(cls.dtype, np.integer):
        raise ShapeError(f"classes must be a non-empty list of output ids, got {cls.tolist()}")
    if cls.min() < 0 or cls.max() >= n_out:
        raise ShapeError(f"classes must be output ids in 0..{n_out - 1}, got {cls.tolist()}")
    return cls.astype(np.int64)


def check_batch_size(batch_size, default: int) -> int:
    """``batch_size`` as an int (``default`` for None), or :class:`ConfigError` unless it is
    a positive integer."""
    if batch_size is None:
        return default
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def logits_and_activity(x, idx, c, s, W):
    """One task's logits and the encoder activity they came from: a training step's forward.

    Parameters
    ----------
    x : (B, n_in)
    idx : (n_units, k)
    c : (n_units,), s : float, W : (n_out, n_units)

    Returns
    -------
    logits : (B, n_out)
        ``s (h \\odot c) W^T``
    h : (B, n_units)
        The encoder activity, kept so that the backward pass
        (:func:`modulated_param_grads`) need not recompute it. Fast backends may return it
        as a view of unit-major memory.
    """
    h = encoder_forward(x, idx)
    return modulated_forward(h, c, s, W), h


def context_grads(x, idx, c, s, W, dlogits):
    """``(dc, ds)`` of one task straight from the inputs: encoder, then the readout backward.

    Parameters
    ----------
    x : (B, n_in)
    idx : (n_units, k)
    c : (n_units,), s : float, W : (n_out, n_units)
    dlogits : (B, n_out) gradient of the loss with respect to the task's logits

    Returns
    -------
    dc : (n_units,)
    ds : float
    """
    return modulated_param_grads(dlogits, encoder_forward(x, idx), c, s, W)
