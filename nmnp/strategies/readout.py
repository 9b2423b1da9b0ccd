"""A fully trained linear readout as a forward/backward pair (fine-tuning and separate).

.. math::

    z = h\\,W^T + b, \\qquad
    \\frac{\\partial L}{\\partial W} = dz^T h, \\qquad
    \\frac{\\partial L}{\\partial b} = \\textstyle\\sum_b dz_b

Unlike the crwn readout, training here forms the full weight gradient (n_out, n_units) at
every step: that, and storing the matrix, is the cost the crwn model avoids.
"""

from __future__ import annotations

import numpy as np


def linear_readout_forward(h, weight, bias):
    """Dense readout :math:`z = h W^T + b`.

    Parameters
    ----------
    h : (B, n) encoder activity
    weight : (n_out, n)
    bias : (n_out,)

    Returns
    -------
    z : (B, n_out), dtype of ``h``
    cache : for :func:`linear_readout_backward`
    """
    z = (h @ weight.T + bias).astype(h.dtype, copy=False)
    return z, h  # the parameter gradients need only the input


def linear_readout_backward(dz, cache):
    """Gradients of :func:`linear_readout_forward` with respect to its parameters.

    The input gradient is not computed: the encoder below is fixed, so training never needs
    it (it would cost as much as the forward product).

    Parameters
    ----------
    dz : (B, n_out) upstream gradient
    cache : from :func:`linear_readout_forward` (the input ``h``, (B, n))

    Returns
    -------
    grads : dict with ``"weight"`` (n_out, n) and ``"bias"`` (n_out,)
    """
    h = cache
    dz = np.asarray(dz, dtype=h.dtype)
    return {"weight": dz.T @ h, "bias": dz.sum(axis=0)}


def initial_readout(fixed_readout: np.ndarray, dtype) -> dict:
    """A trainable readout's starting point: a copy of the fixed random readout, zero bias.

    The fixed readout is the fan-in uniform draw a framework's default initialiser makes
    (:func:`nmnp.initializers.uniform_readout`), so every readout strategy starts from the
    same weights the crwn and SupSup models keep fixed.

    Returns
    -------
    dict with ``"weight"`` (n_out, n) and ``"bias"`` (n_out,), both new writable arrays
    """
    weight = np.array(fixed_readout, dtype=dtype, copy=True)
    return {"weight": weight, "bias": np.zeros(weight.shape[0], dtype=dtype)}
