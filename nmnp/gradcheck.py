"""Finite-difference gradient checks in vector-Jacobian form.

For a function ``f`` with output ``y = f(x)`` and an upstream gradient ``dy`` (drawn at
random), the analytic backward pass claims ``dx = J^T dy``. Central differences give each
component independently:

.. math::

    dx_i \\approx \\frac{\\langle f(x + \\epsilon e_i) - f(x - \\epsilon e_i),\\, dy\\rangle}{2\\epsilon}

with error :math:`O(\\epsilon^2)` plus rounding :math:`O(u / \\epsilon)`; in float64 with
:math:`\\epsilon = 10^{-6}` both stay far below the 1e-6 relative tolerance used here, unless
the derivative itself is tiny. Each difference subtracts two values of
:math:`\\langle f, dy\\rangle` that carry a rounding error of about
:math:`u\\,|\\langle f, dy\\rangle|` (:math:`u` = 2.2e-16), so no component below about
:math:`u\\,|\\langle f, dy\\rangle| / \\epsilon` (1e-10 for a loss near 1) can be resolved:
:func:`check_gradient` accepts a disagreement under that floor (times a safety factor of 10
and the square root of the number of components) as rounding, whatever the relative error.

A gradient that is zero (or lies entirely under that floor) on both sides proves nothing: a
backward pass that returned zeros, or dropped any factor, would agree with it. Such a check
is refused with :class:`VacuousGradientCheckError` unless the caller asks for it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import NmnpError, ShapeError


class GradientCheckError(AssertionError):
    """The analytic gradient disagrees with finite differences."""


class VacuousGradientCheckError(NmnpError, ValueError):
    """Both gradients are zero (to rounding): the comparison could not catch a wrong one.

    Not a :class:`GradientCheckError`: the backward pass was not found wrong, the check was
    set up where it cannot tell (every unit inactive, a centred sum that is always 0...).
    """


class GradientDtypeError(ShapeError, TypeError):
    """A gradient check was given an input that is not float64.

    A :class:`~nmnp.errors.ShapeError` (the library's error for a wrong dtype) that is also
    the ``TypeError`` this check raised before, so ``except TypeError`` keeps working.
    """


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

    Raises
    ------
    GradientDtypeError
        If ``x`` is not float64: a step of 1e-6 is lost in float32 rounding.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise GradientDtypeError(f"gradient checks need a float64 array x, got {got}")
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


def check_gradient(f, x, analytic, dy, *, name="x", eps=1e-6, tol=1e-6, allow_zero=False) -> float:
    """Raise :class:`GradientCheckError` unless ``analytic`` matches finite differences.

    Passes when the relative error is under ``tol``, or when the two gradients differ by
    less than :func:`rounding_floor` (a gradient too small for central differences to
    resolve further). Returns the relative error when the check passes. The failure message
    shows the component that disagrees most, with the received and the expected derivative.

    Parameters
    ----------
    f, x, dy, eps : as in :func:`numerical_vjp`
    analytic : the backward pass's gradient, shaped like ``x``
    name : what ``x`` is, for the messages
    tol : largest relative error accepted
    allow_zero : bool
        Accept a gradient that is zero on both sides (both under the rounding floor, which
        exact zeros always are). Off by default: such a check cannot fail, so it is refused.

    Raises
    ------
    GradientCheckError
        If the gradients disagree.
    VacuousGradientCheckError
        If both are zero (to rounding) and ``allow_zero`` is False.
    """
    numeric = numerical_vjp(f, x, dy, eps)
    a = np.asarray(analytic, dtype=np.float64).reshape(numeric.shape)
    # An exact zero is under any floor (the floor is 0 when f(x) is): one test covers both.
    floor = rounding_floor(f, x, dy, eps)
    if not allow_zero and max(np.linalg.norm(a), np.linalg.norm(numeric)) <= floor:
        raise VacuousGradientCheckError(
            f"gradient check of {name} compares zero with zero: the analytic and the numeric "
            f"gradient are both 0 to rounding (norms {np.linalg.norm(a):.1e} and "
            f"{np.linalg.norm(numeric):.1e}, within the rounding floor {floor:.1e}), so no "
            f"wrong gradient could fail it; check at another point, or pass allow_zero=True"
        )
    err = relative_error(a, numeric)
    if err < tol:
        return err
    if np.linalg.norm(a - numeric) < floor:  # a tiny gradient: agreement to the rounding
        return err
    worst = np.unravel_index(np.argmax(np.abs(a - numeric)), numeric.shape)
    raise GradientCheckError(
        f"gradient of {name} is wrong: relative error {err:.3e} >= {tol:.0e}; "
        f"at index {tuple(int(i) for i in worst)} received {a[worst]:.10g}, "
        f"expected {numeric[worst]:.10g} (central differences, eps={eps:g}; they "
        f"differ by {np.linalg.norm(a - numeric):.1e} in norm, above the rounding floor {floor:.1e})"
    )


def rounding_floor(f, x: np.ndarray, dy, eps: float = 1e-6) -> float:
    """The smallest disagreement, in the norm of the whole gradient, that central differences
    of ``<f, dy>`` at ``x`` can tell from rounding: ``10 u sum|f(x) dy| sqrt(x.size) / eps``,
    with ``u`` = 2.2e-16, float64's machine epsilon (see the module docstring)."""
    magnitude = float(np.sum(np.abs(np.asarray(f(x), dtype=np.float64) * dy)))
    return 10 * np.finfo(np.float64).eps * magnitude * np.sqrt(x.size) / eps
