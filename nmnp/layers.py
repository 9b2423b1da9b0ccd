"""The two layers of a neuromodulated random-weight network, as pure forward/backward pairs.

``forward(...) -> (out, cache)`` and ``backward(dout, cache) -> grads`` (a dict). Nothing is
accumulated behind the caller's back: calling ``backward`` twice gives the same answer. The
arithmetic is done by a kernel backend (``"numpy"``, ``"cpu"`` or ``"cuda"``), chosen per call.

Layers check their arguments once, here, so the kernels below can trust them: shapes and
dtypes, and that every number is finite and within :data:`MAX_ABS_INPUT`. The cpu kernels
are compiled with fastmath, which assumes finite values: given a NaN or an infinity they
return zeros or garbage where the NumPy reference returns NaN, so such values are refused
before any kernel runs. The check costs one min/max pass over each array, a small fraction
of the kernel's own work. (The model's training steps call the kernels directly, on inputs
:meth:`~nmnp.model.ModulatedNetwork.check_inputs` validated once, and do not pay for it.)
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, ShapeError
from .kernels import get_backend

#: Largest |value| the layers (and :meth:`nmnp.model.ModulatedNetwork.check_inputs`) accept.
#: The encoder adds k inputs per unit and the readout sums thousands of products; far beyond
#: this the float32 sums overflow, and the backends then disagree: the cpu kernels, compiled
#: with fastmath (which assumes finite values), return garbage rather than inf. Normalised
#: data is of order 1.
MAX_ABS_INPUT = 1e18


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ShapeError(message)


def _require_array(value, name: str) -> None:
    """``value`` must be an ndarray: a list or a number would fail below with a raw
    AttributeError on ``.ndim`` or ``.dtype``. One isinstance test, never a pass over it."""
    if not isinstance(value, np.ndarray):
        kind = type(value).__name__
        # a NumPy scalar's type reads like a dtype ("got float64"): say that it is a scalar
        raise ShapeError(
            f"{name} must be a NumPy array, got "
            + (f"a {kind} scalar" if isinstance(value, np.generic) else kind)
        )


def _require_bounded(a: np.ndarray, name: str) -> None:
    """Every value of the float array ``a`` must be finite and within +-:data:`MAX_ABS_INPUT`
    (the rule of :meth:`~nmnp.model.ModulatedNetwork.check_inputs`). A min and a max decide;
    only a failure pays for finding the first bad entry."""
    if not a.size or (-MAX_ABS_INPUT <= a.min() and a.max() <= MAX_ABS_INPUT):
        return  # NaN fails both comparisons, so it lands below
    finite = np.isfinite(a)
    if not finite.all():
        where = np.unravel_index(int(np.flatnonzero(~finite.reshape(-1))[0]), a.shape)
        raise ShapeError(
            f"{name} contains NaN or infinite values (first {a[where]} at index "
            f"{tuple(int(i) for i in where)}): the cpu kernels assume finite values"
        )
    where = np.unravel_index(int(np.flatnonzero(np.abs(a.reshape(-1)) > MAX_ABS_INPUT)[0]), a.shape)
    raise ShapeError(
        f"{name} must lie within +-{MAX_ABS_INPUT:g} (MAX_ABS_INPUT), got {a[where]:g} at index "
        f"{tuple(int(i) for i in where)}: sums of values that large overflow"
    )


def _require_cache(cache, size: int, forward: str) -> None:
    """``cache`` must be the tuple ``forward`` returned (or a list of the same): anything
    else unpacked into the wrong names (a 4-letter string into the encoder's four) and failed
    with a raw error. Its arrays are the forward's own, so only the container is checked."""
    ok = isinstance(cache, (tuple, list)) and len(cache) == size
    if not (ok and isinstance(cache[0], np.ndarray)):
        raise ConfigError(
            f"cache must be the cache {forward} returned (a tuple of {size}), "
            f"got {type(cache).__name__}"
            + (f" of {len(cache)}" if isinstance(cache, (tuple, list)) else "")
        )


def _require_gradient(upstream, name: str, expected_shape, like: str, dtype):
    """An upstream gradient must match its layer's output exactly: an integer one would come
    back as an integer "gradient", and the kernels index it by the cached shape."""
    _require(
        isinstance(upstream, np.ndarray) and upstream.dtype == dtype,
        f"{name} must be a {dtype} array like the {like}, got "
        f"{upstream.dtype if isinstance(upstream, np.ndarray) else type(upstream).__name__}",
    )
    _require(
        upstream.shape == expected_shape,
        f"{name} has shape {upstream.shape}, expected {expected_shape}",
    )


def _strength_value(strength) -> float:
    """``strength`` as a Python float: one real finite number within +-:data:`MAX_ABS_INPUT`,
    or an array holding one."""
    try:
        s = np.asarray(strength)
    except (TypeError, ValueError):  # a ragged nested list
        s = np.asarray(strength, dtype=object)
    if s.size != 1:
        got = f"shape {s.shape}"
    elif s.dtype.kind not in "iuf":  # bool, complex, str, object (None...)
        got = str(s.dtype)
    else:
        value = float(s.reshape(-1)[0])
        if np.isfinite(value) and abs(value) <= MAX_ABS_INPUT:
            return value
        if np.isfinite(value):
            raise ShapeError(
                f"strength must lie within +-{MAX_ABS_INPUT:g} (MAX_ABS_INPUT), got {value:g}"
            )
        got = str(value)
    raise ShapeError(f"strength must be one real finite number (a scalar or size-1 array), got {got}")


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

    Raises
    ------
    ShapeError
        If ``x`` or ``idx`` is not an array, their shapes, dtypes or index values do not
        fit together, or ``x`` holds a NaN, an infinity or a value beyond
        +-:data:`MAX_ABS_INPUT` (the rule of
        :meth:`~nmnp.model.ModulatedNetwork.check_inputs`).
    """
    _require_array(x, "encoder input x")
    _require_array(idx, "encoder indices idx")
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
    _require_bounded(x, "encoder input x")
    kernels = get_backend(backend)
    h = kernels.encoder_forward(x, idx)
    return h, (h, idx, x.shape[1], kernels)


def sparse_encoder_backward(dh, cache):
    """Gradient of the encoder with respect to its input.

    Parameters
    ----------
    dh : (B, n_units) array of the encoder's dtype (float32 or float64)
    cache : from :func:`sparse_encoder_forward`

    Returns
    -------
    grads : dict with ``"x"``: (B, n_in)

    Raises
    ------
    ShapeError
        If ``dh`` is not an array of the activity's shape and dtype, or holds a NaN, an
        infinity or a value beyond +-:data:`MAX_ABS_INPUT`.
    ConfigError
        If ``cache`` is not the tuple :func:`sparse_encoder_forward` returned.
    """
    _require_cache(cache, 4, "sparse_encoder_forward")
    h, idx, n_in, kernels = cache
    _require_gradient(dh, "dh", h.shape, "activity", h.dtype)
    _require_bounded(dh, "dh")
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
    strength : real finite number or size-1 array ``s``, within +-:data:`MAX_ABS_INPUT`
    weight : (n_out, n) fixed random weights ``W``
    backend : str or backend module

    Returns
    -------
    y : (B, n_out)
    cache : for :func:`modulated_linear_backward`

    Raises
    ------
    ShapeError
        If ``x``, ``gains`` or ``weight`` is not an array, the arrays' shapes or dtypes do not
        fit together, any of them holds a NaN, an infinity or a value beyond
        +-:data:`MAX_ABS_INPUT`, or ``strength`` is not one real finite number within those
        bounds (several numbers, none, a complex one, a string, None, NaN or inf).
    """
    _require_array(x, "layer input x")
    _require_array(gains, "gains")
    _require_array(weight, "weight")
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
    _require_bounded(x, "layer input x")
    _require_bounded(gains, "gains")
    _require_bounded(weight, "weight")
    s = _strength_value(strength)
    kernels = get_backend(backend)
    y = kernels.modulated_forward(x, gains, s, weight)
    return y, (x, gains, s, weight, kernels)


def modulated_linear_backward(dy, cache):
    """Gradients of the modulated layer: input, gains and strength (never the weights).

    Parameters
    ----------
    dy : (B, n_out) array of the input's dtype (float32 or float64)
    cache : from :func:`modulated_linear_forward`

    Returns
    -------
    grads : dict with ``"x"`` (B, n), ``"gains"`` (n,), ``"strength"`` (1,)

    Raises
    ------
    ShapeError
        If ``dy`` is not an array of the output's shape and the input's dtype, or holds a
        NaN, an infinity or a value beyond +-:data:`MAX_ABS_INPUT`.
    ConfigError
        If ``cache`` is not the tuple :func:`modulated_linear_forward` returned.
    """
    _require_cache(cache, 5, "modulated_linear_forward")
    x, gains, s, weight, kernels = cache
    _require_gradient(dy, "dy", (x.shape[0], weight.shape[0]), "input", x.dtype)
    _require_bounded(dy, "dy")
    dx, dc, ds = kernels.modulated_backward(dy, x, gains, s, weight)
    return {"x": dx, "gains": dc, "strength": np.array([ds], dtype=x.dtype)}
