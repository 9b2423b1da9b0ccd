"""Random initialisation of the fixed weights and of each task's context.

Everything random in nmnp is drawn from :class:`numpy.random.SeedSequence` children keyed by
``(seed, purpose, ...)``, so each piece is reproducible on its own: adding a task never
changes the fixed weights, and the fixed weights can be regenerated exactly from the seed and
the configuration (which is why a checkpoint does not need to store them).
"""

from __future__ import annotations

import numpy as np

# The second entry of every seed key says what the random numbers are for.
ENCODER, READOUT, CONTEXT, SHUFFLE = 0, 1, 2, 3


def rng_for(seed: int, purpose: int, *extra: int) -> np.random.Generator:
    """A generator for one purpose, independent of every other purpose's stream."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), purpose, *map(int, extra)]))


def sparse_encoder_indices(n_in: int, n_units: int, k: int, seed: int) -> np.ndarray:
    """Choose k distinct inputs for each encoder unit, uniformly at random.

    Returns
    -------
    idx : (n_units, k) int32, each row sorted ascending (nearby reads in the gather)

    Notes
    -----
    Ranking ``n_in`` uniform keys and keeping the k smallest draws a uniformly random
    k-subset. Rows are drawn in blocks to bound the temporary memory.
    """
    rng = rng_for(seed, ENCODER)
    idx = np.empty((n_units, k), dtype=np.int32)
    block = max(1, (1 << 22) // max(n_in, 1))
    for start in range(0, n_units, block):
        stop = min(n_units, start + block)
        keys = rng.random((stop - start, n_in))
        chosen = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < n_in else np.argsort(keys, axis=1)
        idx[start:stop] = np.sort(chosen, axis=1)
    return idx


def uniform_readout(n_out: int, n_units: int, seed: int, dtype) -> np.ndarray:
    """Fixed readout weights, uniform in :math:`\\pm 1/\\sqrt{n_{units}}` (fan-in init).

    Returns
    -------
    W : (n_out, n_units) of ``dtype``
    """
    bound = 1.0 / np.sqrt(n_units)
    return rng_for(seed, READOUT).uniform(-bound, bound, (n_out, n_units)).astype(dtype)


def initial_context(n_units: int, seed: int, task_id: int, dtype):
    """A new task's context: gains ~ N(0, 2/(n+1)), strength ~ N(0, 1).

    Returns
    -------
    gains : (n_units,) of ``dtype``
    strength : (1,) of ``dtype`` (an array, so optimisers can update it in place)
    """
    rng = rng_for(seed, CONTEXT, task_id)
    gains = rng.normal(0.0, np.sqrt(2.0 / (n_units + 1)), n_units).astype(dtype)
    strength = rng.normal(0.0, 1.0, 1).astype(dtype)
    return gains, strength
