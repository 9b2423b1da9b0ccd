"""Optimisers that update a model's parameter arrays in place.

The model owns its parameters (a task's context ``c`` and strength ``s``); an optimiser is
handed a dict of those very arrays and changes them in place at every :meth:`Optimizer.step`,
so the model never has to copy anything back. The optimiser owns only its *state* (running
averages, momentum buffers), one array per parameter with the parameter's shape and dtype.

The update rules are PyTorch's (``torch.optim``) without the options nmnp does not need
(weight decay, dampening, centred RMSprop, AMSGrad), so a run can be compared number for
number with the authors' PyTorch code, which uses :class:`RMSprop` at ``lr = 1e-2``.

Gradients are passed to :meth:`~Optimizer.step` explicitly and are never accumulated, so there
is no ``zero_grad``. *Zero state* means: step count 0 and every state array at its initial
value (all zeros; SGD's momentum buffer is then set to the first gradient, see :class:`SGD`).
A new optimiser starts there, and :meth:`~Optimizer.zero_state` returns an existing one there;
the authors use a fresh optimiser per task, which is the same as calling ``zero_state`` between
tasks.

A step is all or nothing: the gradients are checked first (keys, shapes, finiteness), every new
value is computed into temporaries, and parameters and state are written only when all of them
are finite. A NaN or an overflow therefore never reaches a parameter.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping

import numpy as np

from nmnp.errors import CheckpointError, ConfigError, ShapeError, TrainingError

__all__ = ["OPTIMIZERS", "SGD", "Adam", "Optimizer", "RMSprop", "make_optimizer"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_STATE_PREFIX = "state/"


# --------------------------------------------------------------------------- argument checks
def _real(name, value):
    """``value`` as a Python float, or ConfigError if it is not a real number (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a real number, got {value!r}.")
    return float(value)


def _positive(name, value):
    v = _real(name, value)
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}.")
    return v


def _non_negative(name, value):
    v = _real(name, value)
    if not (math.isfinite(v) and v >= 0):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}.")
    return v


def _unit_interval(name, value):
    v = _real(name, value)
    if not 0.0 <= v < 1.0:  # also refuses NaN
        raise ConfigError(f"{name} must lie in [0, 1), got {value!r}.")
    return v


def _check_params(params):
    """Check the parameter dict and return a shallow copy of it (same array objects)."""
    if not isinstance(params, Mapping) or len(params) == 0:
        raise ConfigError(
            f"params must be a non-empty dict of NumPy arrays, got {type(params).__name__} "
            f"{params!r:.60}."
        )
    checked = {}
    for key, p in params.items():
        if not isinstance(key, str):
            raise ConfigError(f"params keys must be strings, got {key!r}.")
        if not isinstance(p, np.ndarray):
            # A list or a scalar cannot be updated in place: the model would never see a step.
            raise ConfigError(
                f"params[{key!r}] must be a NumPy array (updated in place), "
                f"got {type(p).__name__}."
            )
        if p.dtype not in _FLOAT_DTYPES:
            raise ShapeError(f"params[{key!r}] must be float32 or float64, got dtype {p.dtype}.")
        if not p.flags.writeable:
            raise ConfigError(f"params[{key!r}] is read-only, so it cannot be updated in place.")
        if not np.all(np.isfinite(p)):
            raise ShapeError(f"params[{key!r}] contains non-finite values before any step.")
        for other_key, q in checked.items():
            # Two keys over one buffer would be stepped twice per step, silently.
            if np.may_share_memory(p, q) and np.shares_memory(p, q):
                raise ConfigError(
                    f"params[{key!r}] shares memory with params[{other_key!r}]; each parameter "
                    "must be its own array."
                )
        checked[key] = p
    return checked


# --------------------------------------------------------------------------- base class
class Optimizer:
    """Base class: updates a dict of parameter arrays in place, one :meth:`step` at a time.

    Parameters
    ----------
    params : dict[str, ndarray]
        The arrays to train, float32 or float64, any shape (0-d and ``(1,)`` included). They
        are updated in place; the dict is copied (not the arrays), so adding a key to the
        caller's dict later does not add a parameter.
    lr : float
        Learning rate, finite and > 0. May be changed later through :attr:`lr`.

    Notes
    -----
    A subclass lists its state arrays in :meth:`_slot_names`, validates its hyperparameters in
    :meth:`_check_hyperparameters` and computes one parameter's update in :meth:`_compute`, a
    pure function; checking, transactional writing and (de)serialisation live here.
    """

    #: Names of the hyperparameters besides ``lr`` that :meth:`state_dict` records.
    _hyper_names: tuple[str, ...] = ()
    #: Their validated values; each subclass sets its own through :meth:`_init_hyper` before
    #: calling ``Optimizer.__init__`` (the state slots can depend on them, e.g. SGD's momentum).
    _hyper: dict = {}
    #: State slots that can never be negative (running averages of squared gradients);
    #: :meth:`load_state_dict` refuses a negative entry in them.
    _non_negative_slots: tuple[str, ...] = ()

    def __init__(self, params, lr):
        self._params = _check_params(params)
        self.lr = lr
        self._n_steps = 0
        # One state array per (slot, parameter), same shape and dtype as the parameter.
        self._state = {
            slot: {key: np.zeros_like(p) for key, p in self._params.items()}
            for slot in self._slot_names()
        }

    # ----------------------------------------------------------------- subclass hooks
    def _slot_names(self) -> tuple[str, ...]:
        """Names of the per-parameter state arrays (e.g. ``("square_avg",)``)."""
        return ()

    @classmethod
    def _check_hyperparameters(cls, **hyper) -> dict:
        """Validate hyperparameters (except ``lr``) and return them in canonical form."""
        return {}

    def _compute(self, p, g, state, step):
        """New values for one parameter and its state; must not write to any argument.

        Parameters
        ----------
        p : ndarray
            Current parameter values.
        g : ndarray
            Gradient, same shape and dtype as ``p``, all finite.
        state : dict[str, ndarray]
            Current state arrays of this parameter, one per slot.
        step : int
            Number of steps taken before this one (0 on the first step).

        Returns
        -------
        new_p : ndarray
        new_state : dict[str, ndarray]
        """
        raise NotImplementedError

    # ----------------------------------------------------------------- public API
    @property
    def lr(self) -> float:
        """Learning rate (finite, > 0); assign to change it, e.g. for a schedule."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _positive("lr", value)

    @property
    def n_steps(self) -> int:
        """Number of steps taken since creation or the last :meth:`zero_state`."""
        return self._n_steps

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The parameter arrays being trained (a new dict holding the same arrays)."""
        return dict(self._params)

    @property
    def hyperparameters(self) -> dict[str, float]:
        """``lr`` and the other hyperparameters, as a new dict."""
        return {"lr": self._lr, **self._hyper}

    def step(self, grads) -> None:
        """Apply one update to every parameter, in place.

        Parameters
        ----------
        grads : dict[str, array_like]
            The gradient of the loss for each parameter: exactly the parameters' keys, each of
            the parameter's shape, real and finite. Converted to the parameter's dtype.

        Raises
        ------
        ShapeError
            If a key is missing or extra, a shape differs, or a gradient is not finite. Nothing
            has been written when it is raised.
        TrainingError
            If the update would overflow a parameter or a state array to a non-finite value.
            Nothing has been written when it is raised.
        """
        grads = self._check_grads(grads)
        updates = {}
        # Overflow is detected below by the finiteness check, with a message naming the key;
        # NumPy's own warnings would only duplicate it.
        with np.errstate(over="ignore", invalid="ignore"):
            for key, p in self._params.items():
                state = {slot: arrays[key] for slot, arrays in self._state.items()}
                new_p, new_state = self._compute(p, grads[key], state, self._n_steps)
                new_p = np.asarray(new_p, dtype=p.dtype)
                new_state = {s: np.asarray(a, dtype=p.dtype) for s, a in new_state.items()}
                if not (np.all(np.isfinite(new_p))
                        and all(np.all(np.isfinite(a)) for a in new_state.values())):
                    raise TrainingError(
                        f"{type(self).__name__} step would make params[{key!r}] or its state "
                        f"non-finite (overflow at lr={self._lr}); no parameter was updated."
                    )
                updates[key] = (new_p, new_state)
        # Commit: only now is anything written, so a failed step leaves everything as it was.
        for key, (new_p, new_state) in updates.items():
            np.copyto(self._params[key], new_p)
            for slot, value in new_state.items():
                np.copyto(self._state[slot][key], value)
        self._n_steps += 1

    def zero_state(self) -> None:
        """Return to the initial state: step count 0 and every state array zero.

        The parameters and hyperparameters are left unchanged. Equivalent to building a new
        optimiser over the same parameters, which is what the authors do for every task.
        """
        for arrays in self._state.values():
            for a in arrays.values():
                a.fill(0)
        self._n_steps = 0

    def state_dict(self) -> dict[str, np.ndarray | float | int]:
        """Everything needed to continue exactly where this optimiser is, as a flat dict.

        Returns
        -------
        dict
            ``"lr"`` and each hyperparameter (float; booleans as int 0/1), ``"n_steps"`` (int),
            and ``"state/<slot>/<param key>"`` for every state array (a copy, so later steps do
            not change it). The parameters themselves are not included: the model saves those.
        """
        d: dict[str, np.ndarray | float | int] = {"lr": self._lr, "n_steps": self._n_steps}
        for name in self._hyper_names:
            value = self._hyper[name]
            d[name] = int(value) if isinstance(value, bool) else value
        for slot, arrays in self._state.items():
            for key, a in arrays.items():
                d[f"{_STATE_PREFIX}{slot}/{key}"] = a.copy()
        return d

    def load_state_dict(self, d) -> None:
        """Restore a state saved by :meth:`state_dict` of the same optimiser class.

        Parameters
        ----------
        d : dict
            As returned by :meth:`state_dict`; the values are copied, not kept.

        Raises
        ------
        CheckpointError
            If a key is missing or extra, a state array has the wrong shape or is not finite
            (before or after conversion to its parameter's dtype), an average of squared
            gradients (RMSprop's ``square_avg``, Adam's ``exp_avg_sq``) has a negative entry,
            or ``n_steps`` is not a non-negative integer. Nothing is changed in that case.
        ConfigError
            If ``lr`` or a hyperparameter is invalid.
        """
        if not isinstance(d, Mapping):
            raise CheckpointError(f"The optimizer state must be a dict, got {type(d).__name__}.")
        expected = {"lr", "n_steps", *self._hyper_names}
        expected |= {
            f"{_STATE_PREFIX}{slot}/{key}" for slot in self._state for key in self._params
        }
        missing, extra = sorted(expected - set(d)), sorted(set(d) - expected)
        if missing or extra:
            raise CheckpointError(
                f"The {type(self).__name__} state dict does not match these parameters: "
                f"missing keys {missing}, unexpected keys {extra}."
            )
        lr = _positive("lr", d["lr"])
        hyper = self._check_hyperparameters(**{n: d[n] for n in self._hyper_names})
        n_steps = d["n_steps"]
        if (isinstance(n_steps, (bool, np.bool_)) or not isinstance(n_steps, numbers.Integral)
                or n_steps < 0):
            raise CheckpointError(f"n_steps must be an integer >= 0, got {n_steps!r}.")
        arrays = {}
        for slot in self._state:
            for key, p in self._params.items():
                name = f"{_STATE_PREFIX}{slot}/{key}"
                a = np.asarray(d[name])
                if a.shape != p.shape:
                    raise CheckpointError(
                        f"{name} has shape {a.shape} but params[{key!r}] has shape {p.shape}."
                    )
                if a.dtype.kind not in "fiu" or not np.all(np.isfinite(a)):
                    raise CheckpointError(f"{name} must hold finite real numbers.")
                # Checked again after the cast: 1e300 is finite in float64 but inf in float32.
                with np.errstate(over="ignore"):
                    cast = a.astype(p.dtype)
                if not np.all(np.isfinite(cast)):
                    raise CheckpointError(
                        f"{name} holds values too large for {p.dtype} (largest magnitude "
                        f"{np.max(np.abs(a)):.3g}), the dtype of params[{key!r}]."
                    )
                if slot in self._non_negative_slots and cast.size and np.min(cast) < 0:
                    raise CheckpointError(
                        f"{name} must be >= 0 (an average of squared gradients), got minimum "
                        f"{np.min(cast):.3g}."
                    )
                arrays[slot, key] = cast
        # Everything is valid: commit.
        self._lr, self._hyper, self._n_steps = lr, hyper, int(n_steps)
        for (slot, key), a in arrays.items():
            np.copyto(self._state[slot][key], a)

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({hyper}, params={list(self._params)})"

    # ----------------------------------------------------------------- internals
    def _check_grads(self, grads):
        """Gradients converted to the parameters' dtypes, or ShapeError before any write."""
        if not isinstance(grads, Mapping):
            raise ShapeError(f"grads must be a dict keyed like params, got {type(grads).__name__}.")
        missing = sorted(set(self._params) - set(grads), key=str)
        extra = sorted(set(grads) - set(self._params), key=str)
        if missing or extra:
            raise ShapeError(
                f"grads must have exactly the keys {sorted(self._params)}: missing {missing}, "
                f"unexpected {extra}."
            )
        checked = {}
        for key, p in self._params.items():
            g = np.asarray(grads[key])
            if g.dtype.kind not in "fiu":
                raise ShapeError(f"grads[{key!r}] must hold real numbers, got dtype {g.dtype}.")
            if g.shape != p.shape:
                raise ShapeError(
                    f"grads[{key!r}] has shape {g.shape} but params[{key!r}] has shape {p.shape}."
                )
            with np.errstate(over="ignore"):  # a float64 too big for float32 becomes inf...
                g = g.astype(p.dtype, copy=False)
            if not np.all(np.isfinite(g)):  # ...and is refused here with the NaNs
                raise ShapeError(
                    f"grads[{key!r}] contains non-finite values (NaN or inf in {p.dtype}); "
                    "no parameter was updated."
                )
            checked[key] = g
        return checked

    def _init_hyper(self, **hyper):
        self._hyper = self._check_hyperparameters(**hyper)


# --------------------------------------------------------------------------- optimisers
class RMSprop(Optimizer):
    """RMSprop as in PyTorch (non-centred, no momentum, no weight decay).

    Parameters
    ----------
    params : dict[str, ndarray]
        Parameters to update in place (see :class:`Optimizer`).
    lr : float
        Learning rate; the authors use ``1e-2``.
    alpha : float, default 0.99
        Decay of the running average of squared gradients, in [0, 1).
    eps : float, default 1e-8
        Added to the root mean square (outside the square root, as PyTorch does), > 0.

    Notes
    -----
    With :math:`v_0 = 0`, for every element:

    .. math::

        v_t = \\alpha\\, v_{t-1} + (1 - \\alpha)\\, g_t^2, \\qquad
        p_t = p_{t-1} - \\eta\\, \\frac{g_t}{\\sqrt{v_t} + \\epsilon}

    There is no bias correction, so the first step is about :math:`\\eta / \\sqrt{1-\\alpha}`
    (ten times ``lr`` at the default alpha) per element.
    """

    _hyper_names = ("alpha", "eps")
    _non_negative_slots = ("square_avg",)

    def __init__(self, params, lr, alpha=0.99, eps=1e-8):
        self._init_hyper(alpha=alpha, eps=eps)
        super().__init__(params, lr)

    def _slot_names(self):
        return ("square_avg",)

    @classmethod
    def _check_hyperparameters(cls, alpha, eps):
        return {"alpha": _unit_interval("alpha", alpha), "eps": _positive("eps", eps)}

    def _compute(self, p, g, state, step):
        alpha, eps = self._hyper["alpha"], self._hyper["eps"]
        v = alpha * state["square_avg"] + (1.0 - alpha) * (g * g)
        return p - self._lr * (g / (np.sqrt(v) + eps)), {"square_avg": v}


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as in PyTorch.

    Parameters
    ----------
    params : dict[str, ndarray]
        Parameters to update in place (see :class:`Optimizer`).
    lr : float
        Learning rate, > 0.
    momentum : float, default 0.0
        Momentum factor, >= 0. With 0 there is no state at all.
    nesterov : bool, default False
        Use Nesterov momentum (requires ``momentum > 0``, as in PyTorch).

    Notes
    -----
    PyTorch's convention (no dampening), which differs from the "velocity" form of some
    textbooks: the buffer is *set* to the first gradient rather than decayed from zero.

    .. math::

        b_1 = g_1, \\qquad b_t = \\mu\\, b_{t-1} + g_t \\quad (t > 1)

        p_t = p_{t-1} - \\eta\\, b_t \\quad\\text{or, with Nesterov,}\\quad
        p_t = p_{t-1} - \\eta\\, (g_t + \\mu\\, b_t)
    """

    _hyper_names = ("momentum", "nesterov")

    def __init__(self, params, lr, momentum=0.0, nesterov=False):
        self._init_hyper(momentum=momentum, nesterov=nesterov)
        super().__init__(params, lr)

    def _slot_names(self):
        return ("momentum_buffer",) if self._hyper["momentum"] > 0 else ()

    @classmethod
    def _check_hyperparameters(cls, momentum, nesterov):
        momentum = _non_negative("momentum", momentum)
        # 0/1 accepted too, because state_dict stores the flag as an int.
        if not (isinstance(nesterov, (bool, np.bool_))
                or (isinstance(nesterov, numbers.Integral) and nesterov in (0, 1))):
            raise ConfigError(f"nesterov must be True or False, got {nesterov!r}.")
        nesterov = bool(nesterov)
        if nesterov and momentum == 0:
            raise ConfigError("nesterov=True requires momentum > 0, got momentum=0.0.")
        return {"momentum": momentum, "nesterov": nesterov}

    def _compute(self, p, g, state, step):
        mu = self._hyper["momentum"]
        if mu == 0:
            return p - self._lr * g, {}
        # First step: the buffer becomes the gradient itself (PyTorch), not mu*0 + g by
        # accident of a zero initialisation; the two agree only because there is no dampening.
        buf = g.copy() if step == 0 else mu * state["momentum_buffer"] + g
        direction = g + mu * buf if self._hyper["nesterov"] else buf
        return p - self._lr * direction, {"momentum_buffer": buf}


class Adam(Optimizer):
    """Adam with bias correction, as in PyTorch (no weight decay, no AMSGrad).

    Parameters
    ----------
    params : dict[str, ndarray]
        Parameters to update in place (see :class:`Optimizer`).
    lr : float, default 1e-3
        Learning rate, > 0.
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the bias-corrected root second moment, > 0.

    Notes
    -----
    With :math:`m_0 = v_0 = 0` and :math:`t` counting steps from 1:

    .. math::

        m_t = \\beta_1 m_{t-1} + (1-\\beta_1)\\, g_t, \\qquad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2)\\, g_t^2

        \\hat m_t = \\frac{m_t}{1-\\beta_1^t}, \\qquad
        \\hat v_t = \\frac{v_t}{1-\\beta_2^t}, \\qquad
        p_t = p_{t-1} - \\eta\\, \\frac{\\hat m_t}{\\sqrt{\\hat v_t} + \\epsilon}

    The first step therefore moves each element by almost exactly ``lr`` against the sign of
    its gradient.
    """

    _hyper_names = ("beta1", "beta2", "eps")
    _non_negative_slots = ("exp_avg_sq",)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ConfigError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
        self._init_hyper(beta1=betas[0], beta2=betas[1], eps=eps)
        super().__init__(params, lr)

    @property
    def betas(self) -> tuple[float, float]:
        """The pair ``(beta1, beta2)``."""
        return self._hyper["beta1"], self._hyper["beta2"]

    def _slot_names(self):
        return ("exp_avg", "exp_avg_sq")

    @classmethod
    def _check_hyperparameters(cls, beta1, beta2, eps):
        return {
            "beta1": _unit_interval("betas[0]", beta1),
            "beta2": _unit_interval("betas[1]", beta2),
            "eps": _positive("eps", eps),
        }

    def _compute(self, p, g, state, step):
        b1, b2, eps = self._hyper["beta1"], self._hyper["beta2"], self._hyper["eps"]
        t = step + 1
        m = b1 * state["exp_avg"] + (1.0 - b1) * g
        v = b2 * state["exp_avg_sq"] + (1.0 - b2) * (g * g)
        # Bias corrections as Python floats, so float32 parameters stay float32.
        correction1 = 1.0 - b1**t
        correction2 = 1.0 - b2**t
        m_hat = m / correction1
        v_hat = v / correction2
        return p - self._lr * (m_hat / (np.sqrt(v_hat) + eps)), {"exp_avg": m, "exp_avg_sq": v}


# --------------------------------------------------------------------------- factory
#: Optimiser classes by the names :func:`make_optimizer` accepts.
OPTIMIZERS: dict[str, type[Optimizer]] = {"adam": Adam, "rmsprop": RMSprop, "sgd": SGD}


def optimizer_class(name: str) -> type[Optimizer]:
    """The optimiser class called ``name`` (case-insensitive); ConfigError for another name."""
    key = name.lower() if isinstance(name, str) else None  # a list is not hashable
    if key not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimizer name {name!r}; known names are {sorted(OPTIMIZERS)}.")
    return OPTIMIZERS[key]


def make_optimizer(name: str, params, lr, **kwargs) -> Optimizer:
    """Build an optimiser by name, e.g. from a configuration file.

    Parameters
    ----------
    name : {"rmsprop", "sgd", "adam"}
        Case-insensitive.
    params : dict[str, ndarray]
        Parameters to update in place.
    lr : float
        Learning rate, > 0.
    **kwargs
        The class's other hyperparameters (``alpha``, ``eps`` for RMSprop; ``momentum``,
        ``nesterov`` for SGD; ``betas``, ``eps`` for Adam).

    Returns
    -------
    Optimizer

    Raises
    ------
    ConfigError
        For an unknown name, an argument the optimiser does not take, or an invalid value.
    """
    cls = optimizer_class(name)
    accepted = [a for a in inspect.signature(cls).parameters if a not in ("params", "lr")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{cls.__name__} does not take argument(s) {unknown}; it takes {accepted}."
        )
    return cls(params, lr, **kwargs)
