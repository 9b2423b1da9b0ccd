"""A check that class predictions are the argmax of reference logits, up to rounding: shared by
the kernel tests and the cuda tests (not a test module: pytest collects only test_*.py)."""

from __future__ import annotations

import numpy as np


def assert_predictions_agree(predictions, logits, classes, rtol):
    """``predictions`` (T, B) are an argmax of the reference ``logits`` (T, B, n_out) over
    ``classes``, up to rounding: each predicted class is a competing class whose logit is
    within ``rtol`` (relative to the largest competing logit) of the maximum, and it is
    exactly the reference's argmax wherever the best two differ by more than that."""
    z = logits[:, :, classes]
    assert np.isin(predictions, classes).all(), "a prediction outside the competing classes"
    position = np.searchsorted(np.sort(classes), predictions)
    chosen = np.take_along_axis(z, np.argsort(classes)[position][..., None], axis=2)[..., 0]
    best = z.max(axis=2)
    slack = rtol * np.abs(z).max(axis=2) + 1e-12
    assert (chosen >= best - slack).all(), "a prediction whose logit is not the largest"
    top2 = np.sort(z, axis=2)[..., -2:] if z.shape[2] > 1 else np.concatenate([z, z - 1], axis=2)
    clear = top2[..., 1] - top2[..., 0] > slack
    expected = np.asarray(classes)[z.argmax(axis=2)]
    np.testing.assert_array_equal(predictions[clear], expected[clear])
