"""Finite-difference gradient checks in vector-Jacobian form.

For a function ``f`` with output ``y = f(x)`` and an upstream gradient ``dy`` (drawn at
random), the analytic backward pass claims ``dx = J^T dy``. Central differences give each
component independently:

.. math::

    dx_i \\approx \\frac{\\langle f(x + \\epsilon e_i) - f(x - \\epsilon e_i),\\, dy\\rangle}{2\\epsilon}

with error :math:`O(\\epsilon^2)` plus rounding :math:`O(u / \\epsilon)`; in float64 with
:math:`\\epsilon = 10^{-6}` both stay far below the 1e-6 relative tolerance used here.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


class GradientCheckError(AssertionError):
    """The analytic gradient disagrees with finite differences."""


def numerical_vjp(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dy, eps: float = 1e-6):
    """Central-difference estimate of ``J^T dy`` for ``f`` at ``x``.

    Parameters
    ----------
    f : callable taking an array shaped like ``x``; its output is an array or a float
    x : float64 array (perturbed in place, then restored)
    dy : upstream gradient with the shape of ``f(x)``
    eps : step

    Returns
    -------
    dx : array shaped like ``x``
    """
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 inputs, got {x.dtype}")
    dx = np.zeros_like(x)
    flat, grad = x.reshape(-1), dx.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = np.sum(np.asarray(f(x)) * dy)
        flat[i] = saved - eps
        minus = np.sum(np.asarray(f(x)) * dy)
        flat[i] = saved
        grad[i] = (plus - minus) / (2 * eps)
    return dx


def relative_error(analytic, numeric) -> float:
    """``||a - n|| / max(||a||, ||n||)``, or the absolute error when both are ~0."""
    a = np.asarray(analytic, dtype=np.float64).reshape(-1)
    n = np.asarray(numeric, dtype=np.float64).reshape(-1)
    scale = max(np.linalg.norm(a), np.linalg.norm(n))
    diff = np.linalg.norm(a - n)
    return float(diff / scale) if scale > 1e-8 else float(diff)


def check_gradient(f, x, analytic, dy, *, name="x", eps=1e-6, tol=1e-6) -> float:
    """Raise :class:`GradientCheckError` unless ``analytic`` matches finite differences.

    Returns the relative error when the check passes. The failure message shows the
    component that disagrees most, with the received and the expected derivative.
    """
    numeric = numerical_vjp(f, x, dy, eps)
    err = relative_error(analytic, numeric)
    if not err < tol:
        a = np.asarray(analytic, dtype=np.float64).reshape(numeric.shape)
        worst = np.unravel_index(np.argmax(np.abs(a - numeric)), numeric.shape)
        raise GradientCheckError(
            f"gradient of {name} is wrong: relative error {err:.3e} >= {tol:.0e}; "
            f"at index {tuple(int(i) for i in worst)} received {a[worst]:.10g}, "
            f"expected {numeric[worst]:.10g} (central differences, eps={eps:g})"
        )
    return err
