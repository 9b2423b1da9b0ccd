"""Softmax cross-entropy, numerically stable, as a forward/backward pair."""

from __future__ import annotations

import numpy as np


def softmax_cross_entropy_forward(logits, labels):
    """Mean softmax cross-entropy over a batch.

    Parameters
    ----------
    logits : (B, n_classes) float array
    labels : (B,) integer array, each in ``[0, n_classes)``

    Returns
    -------
    loss : float
    cache : tuple, for :func:`softmax_cross_entropy_backward`

    Notes
    -----
    Subtracting each row's maximum before exponentiating changes nothing mathematically and
    keeps every exponent <= 0, so logits of 1e4 cannot overflow:

    .. math::

        L = \\frac{1}{B} \\sum_b \\Big( \\log \\sum_k e^{z_{bk} - M_b} + M_b - z_{b, y_b} \\Big),
        \\qquad M_b = \\max_k z_{bk}
    """
    B = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_norm
    loss = -float(log_probs[np.arange(B), labels].mean())
    return loss, (log_probs, labels)


def softmax_cross_entropy_backward(dloss, cache):
    """Gradient of the mean cross-entropy with respect to the logits.

    Parameters
    ----------
    dloss : float, upstream gradient (1.0 when the loss is the objective)
    cache : from :func:`softmax_cross_entropy_forward`

    Returns
    -------
    dlogits : (B, n_classes), equal to ``dloss * (softmax(z) - onehot(y)) / B``
    """
    log_probs, labels = cache
    B = log_probs.shape[0]
    dlogits = np.exp(log_probs)
    dlogits[np.arange(B), labels] -= 1.0
    dlogits *= dloss / B
    return dlogits
