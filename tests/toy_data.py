"""Small synthetic data shared by the tests (not a test module: pytest collects only test_*.py)."""

from __future__ import annotations

import numpy as np


def blobs(seed: int, n: int, n_in: int = 20, n_classes: int = 4):
    """(x, y): ``n`` samples of separable clusters, x (n, n_in) float32 and y (n,) ints;
    class y lights up inputs 5y .. 5y+4 on top of N(0, 0.3) noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    x = rng.normal(0, 0.3, (n, n_in)).astype(np.float32)
    x[np.arange(n)[:, None], (y * 5)[:, None] + np.arange(5)] += 2.0
    return x, y
