"""Softmax cross-entropy, numerically stable: a NumPy forward/backward pair (the reference,
used by the tutorials and tests) and a compiled function that does both at once for the
training hot path."""

from __future__ import annotations

import numpy as np
from numba import njit

from .errors import ShapeError

# the dtypes the compiled loss has a version for (a big-endian or half-precision array would
# make Numba fail to type it, a long double has no version at all)
_COMPILED_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_logits(z):
    if z.ndim != 2 or z.shape[0] == 0 or z.dtype.kind != "f":
        raise ShapeError(
            f"logits must be a non-empty (batch, classes) float array, got {z.dtype} {z.shape}"
        )
    if z.shape[1] == 0:
        raise ShapeError(f"logits have no classes, got shape {z.shape}; expected at least 1")


def _check_label_kind(y, n_samples):
    if y.shape != (n_samples,) or y.dtype.kind not in "iu":
        raise ShapeError(f"labels must be {n_samples} integers, got {y.dtype} {y.shape}")


def _label_error(y, bad, n_classes):
    return ShapeError(f"label {y[bad]} (sample {bad}) is outside the classes 0..{n_classes - 1}")


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

    Raises
    ------
    ShapeError
        For logits that are not a non-empty 2-D float array with at least one class, labels
        of another length or kind, or a label outside the classes (which NumPy would read as
        a negative index or refuse with an ``IndexError``).

    Notes
    -----
    Subtracting each row's maximum before exponentiating changes nothing mathematically and
    keeps every exponent <= 0, so logits of 1e4 cannot overflow:

    .. math::

        L = \\frac{1}{B} \\sum_b \\Big( \\log \\sum_k e^{z_{bk} - M_b} + M_b - z_{b, y_b} \\Big),
        \\qquad M_b = \\max_k z_{bk}
    """
    logits, labels = np.asarray(logits), np.asarray(labels)
    _check_logits(logits)
    B, C = logits.shape
    _check_label_kind(labels, B)
    outside = np.flatnonzero((labels < 0) | (labels >= C))
    if outside.size:
        raise _label_error(labels, outside[0], C)
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


def softmax_cross_entropy(logits, labels):
    """Loss, gradient and correct predictions in one compiled pass over the batch.

    The same numbers as :func:`softmax_cross_entropy_forward` followed by
    :func:`softmax_cross_entropy_backward` with ``dloss = 1`` (and the count of
    ``logits.argmax(axis=1) == labels``), up to rounding. A training step's batch is small
    (128 x 10), so the dozen NumPy calls of the pair cost more in per-call overhead than in
    arithmetic: 4.3x slower than this function, input checks included (measured once, during
    development).

    Parameters
    ----------
    logits : (B, n_classes) float32 or float64 array (native byte order), B >= 1,
        n_classes >= 1
    labels : (B,) integer array (native byte order), each in ``[0, n_classes)``

    Returns
    -------
    loss : float, the mean cross-entropy
    dlogits : (B, n_classes), ``(softmax(z) - onehot(y)) / B``, in the logits' dtype
    n_correct : int, samples whose largest logit (the first, on ties) is their label

    Raises
    ------
    ShapeError
        For logits that are not a non-empty 2-D float array with at least one class, of a
        dtype other than native float32 or float64 (float16, long double, big-endian), labels
        of another length or kind (or not in native byte order), or a label outside the
        classes (found by the loop itself, at no extra pass). Nothing is converted: the
        caller's arrays keep the dtype they asked for.
    """
    z = np.ascontiguousarray(logits)
    y = np.ascontiguousarray(labels)
    _check_logits(z)
    if z.dtype not in _COMPILED_FLOATS:
        raise ShapeError(
            f"logits must be float32 or float64 in native byte order, got {z.dtype}"
        )
    _check_label_kind(y, z.shape[0])
    if not y.dtype.isnative:
        raise ShapeError(f"labels must be integers in native byte order, got {y.dtype}")
    dlogits = np.empty_like(z)
    loss, n_correct, bad = _softmax_cross_entropy(z, y, dlogits)
    if bad >= 0:
        raise _label_error(y, bad, z.shape[1])
    return float(loss), dlogits, int(n_correct)


@njit(cache=True)
def _softmax_cross_entropy(z, y, d):
    B, C = z.shape
    total = 0.0
    correct = 0
    inv_b = 1.0 / B
    for b in range(B):
        if y[b] < 0 or y[b] >= C:  # an unchecked index would read outside the row
            return 0.0, 0, b
        top = z[b, 0]  # the row's maximum (stability) is also its prediction
        best = 0
        for k in range(1, C):
            if z[b, k] > top:
                top = z[b, k]
                best = k
        norm = 0.0
        for k in range(C):
            e = np.exp(z[b, k] - top)
            d[b, k] = e
            norm += e
        total += np.log(norm) + top - z[b, y[b]]
        scale = inv_b / norm
        for k in range(C):
            d[b, k] *= scale
        d[b, y[b]] -= inv_b
        if best == y[b]:
            correct += 1
    return total * inv_b, correct, -1
