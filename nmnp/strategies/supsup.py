"""``supsup``: Supermasks in Superposition, a learned binary mask per task.

The closest published peer (Wortsman et al., 2020), here with task identity given (no task
inference). The fixed random readout ``W`` (n_out, n_units) is the crwn model's own. Each
task learns real-valued *scores* ``S_t`` of the same shape; the forward pass keeps the
weights whose scores are in the top ``keep`` fraction (50 % by default, as in SupSup) and
zeroes the rest:

.. math::

    M_t = \\mathrm{top}_k(S_t) \\in \\{0, 1\\}^{n_{out} \\times n}, \\qquad
    z = h\\,(W \\odot M_t)^T, \\qquad k = \\mathrm{round}(\\text{keep} \\cdot n_{out} n)

Selecting the top k has zero derivative almost everywhere, so the scores are trained with
the *straight-through estimator*: the gradient with respect to the mask is passed to the
scores unchanged,

.. math::

    \\frac{\\partial L}{\\partial S_t} := \\frac{\\partial L}{\\partial M_t}
    = \\frac{\\partial L}{\\partial (W \\odot M_t)} \\odot W = (dz^T h) \\odot W .

When the task is frozen only the mask survives, packed into bits (:func:`numpy.packbits`):
``ceil(n_out * n_units / 8)`` bytes per task, 9,800 for FlyNet (78,400 bits).

Compared with crwn, the learned object is a choice of synapses rather than a gain per unit,
and there is no learned strength: the logits' scale is bounded by the fixed weights.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..initializers import rng_for
from .base import ReadoutStrategy

#: Seed purpose of the SupSup scores (see :mod:`nmnp.initializers`); a number far from the
#: core purposes (0..3) so that a purpose added there never draws the same stream.
SCORES = 101


def n_kept(size: int, keep: float) -> int:
    """How many of ``size`` weights a mask with fraction ``keep`` keeps: round, at least 1."""
    return max(1, min(size, int(round(keep * size))))


def top_k_mask(scores, keep: float) -> np.ndarray:
    """The binary mask of the ``keep`` fraction of highest scores, over the whole matrix.

    Parameters
    ----------
    scores : (n_out, n) real
    keep : float in (0, 1]

    Returns
    -------
    mask : (n_out, n) bool with exactly ``n_kept(scores.size, keep)`` True entries
        (ties at the threshold are broken arbitrarily but the count is exact)
    """
    flat = np.asarray(scores).reshape(-1)
    k = n_kept(flat.size, keep)
    mask = np.zeros(flat.size, dtype=bool)
    mask[np.argpartition(flat, flat.size - k)[flat.size - k :]] = True
    return mask.reshape(np.shape(scores))


def masked_readout_forward(h, weight, scores, keep):
    """SupSup readout :math:`z = h\\,(W \\odot \\mathrm{top}_k(S))^T`.

    Parameters
    ----------
    h : (B, n) encoder activity
    weight : (n_out, n) fixed random weights
    scores : (n_out, n) learned scores
    keep : float in (0, 1], fraction of weights kept

    Returns
    -------
    z : (B, n_out), dtype of ``h``
    cache : for :func:`masked_readout_backward`
    """
    mask = top_k_mask(scores, keep)
    return masked_readout_with_mask(h, weight, mask), (h, weight)


def masked_readout_with_mask(h, weight, mask) -> np.ndarray:
    """:math:`z = h\\,(W \\odot M)^T` for a given binary mask (a frozen task's)."""
    effective = np.where(mask, weight, weight.dtype.type(0))
    return (h @ effective.T).astype(h.dtype, copy=False)


def masked_readout_backward(dz, cache):
    """Straight-through gradient of :func:`masked_readout_forward` with respect to the scores.

    Parameters
    ----------
    dz : (B, n_out) upstream gradient
    cache : from :func:`masked_readout_forward`

    Returns
    -------
    grads : dict with ``"scores"`` (n_out, n) = ``(dz^T h) * W``: the exact gradient with
        respect to the effective weights ``W * M``, times ``W`` (the mask's gradient), passed
        straight through the top-k selection
    """
    h, weight = cache
    dz = np.asarray(dz, dtype=h.dtype)
    return {"scores": (dz.T @ h) * weight}


class SupSup(ReadoutStrategy):
    """A learned top-k binary mask over the fixed random readout, one per task.

    Parameters
    ----------
    config : NetworkConfig
    backend : {"numpy", "cpu", "cuda"}
    keep : float in (0, 1]
        Fraction of the readout's weights each mask keeps (SupSup's default: 0.5).

    Notes
    -----
    Scores start uniform in :math:`\\pm 1/\\sqrt{n_{units}}` (the fan-in bound SupSup's
    initialiser uses), drawn from ``(seed, SCORES, task_id)``. While a task trains, its state
    is ``{"scores"}``; :meth:`freeze` replaces it by ``{"mask_bits"}`` (uint8, packed) and the
    scores are discarded.
    """

    name = "supsup"

    def __init__(self, config, backend: str = "cpu", keep: float = 0.5):
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
            raise ConfigError(f"keep must be a fraction in (0, 1], got {keep!r}")
        super().__init__(config, backend)
        self.keep = float(keep)

    @property
    def n_weights(self) -> int:
        """Number of weights of the fixed random readout, n_outputs x n_units."""
        return self.config.n_outputs * self.config.n_units

    @property
    def params_per_task(self) -> int:
        """One learned binary choice per readout weight (n_out * n_units)."""
        return self.n_weights

    @property
    def bytes_per_task(self) -> int:
        """The packed mask: one bit per readout weight, rounded up to whole bytes."""
        return math.ceil(self.n_weights / 8)

    @property
    def fixed_params(self) -> int:
        """Fixed parameters: encoder connections + the random readout (as for crwn)."""
        c = self.config
        return c.n_units * c.inputs_per_unit + c.n_outputs * c.n_units

    def init_options(self):
        return {"keep": self.keep}

    def restored_state_problem(self, state, frozen):
        # A frozen mask keeps exactly n_kept weights (top_k_mask): one that keeps another
        # number was written with another keep, or damaged, and would predict unlike it.
        if not frozen:
            return None
        bits = np.unpackbits(state["mask_bits"])
        if bits[self.n_weights:].any():
            return "has a mask with bits set past its last weight"
        kept, want = int(bits.sum()), n_kept(self.n_weights, self.keep)
        if kept != want:
            return (f"has a mask that keeps {kept} of {self.n_weights} weights, but keep "
                    f"{self.keep:g} keeps {want}")
        return None

    def _init_task(self, task_id):
        bound = 1.0 / math.sqrt(self.config.n_units)
        rng = rng_for(self.config.seed, SCORES, task_id)
        shape = (self.config.n_outputs, self.config.n_units)
        return {"scores": rng.uniform(-bound, bound, shape).astype(self.dtype)}

    def _params(self, task_id):
        return self.tasks[task_id].state

    def prediction_state(self, task_id):
        # A task still training keeps scores, whose mask depends on the kept fraction too.
        return {**super().prediction_state(task_id), "keep": np.float64(self.keep)}

    def _on_freeze(self, task_id, record):
        mask = top_k_mask(record.state["scores"], self.keep)
        record.state = {"mask_bits": np.packbits(mask.reshape(-1))}

    def mask(self, task_id: int) -> np.ndarray:
        """Task ``task_id``'s binary mask (n_out, n_units) bool, trained or frozen."""
        state = self.task(task_id).state
        if "mask_bits" in state:
            bits = np.unpackbits(state["mask_bits"], count=self.n_weights)
            return bits.astype(bool).reshape(self.config.n_outputs, self.config.n_units)
        return top_k_mask(state["scores"], self.keep)

    def readout_logits(self, h, task_id):
        return masked_readout_with_mask(h, self.network.readout, self.mask(task_id))

    def eval_logits(self, x, task_id):
        weight = self.network.readout
        return self.fused_linear(x, np.where(self.mask(task_id), weight, weight.dtype.type(0)))

    def readout_grads(self, h, dlogits, task_id):
        return masked_readout_backward(dlogits, (h, self.network.readout))
