import re

import numpy as np
import pytest

from nmnp.gradcheck import check_gradient
from nmnp.losses import (
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from purity import assert_backward_is_pure


def test_cross_entropy_matches_definition(rng):
    z = rng.normal(size=(4, 3))
    y = np.array([0, 2, 1, 2])
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(4), y]))
    loss, _ = softmax_cross_entropy_forward(z, y)
    assert loss == pytest.approx(expected, rel=1e-12)


def test_huge_logits_do_not_overflow():
    z = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0]], dtype=np.float32)
    y = np.array([0, 2])
    with np.errstate(over="raise", invalid="raise"):  # underflow to 0 is expected and fine
        loss, cache = softmax_cross_entropy_forward(z, y)
        d = softmax_cross_entropy_backward(1.0, cache)
    # sample 0 is certain and right (loss 0); sample 1 puts 1/2 on each 1e4 logit, none on 2.
    assert np.isfinite(loss) and loss == pytest.approx((0 + (1e4 + np.log(2))) / 2, rel=1e-6)
    np.testing.assert_allclose(d, [[0, 0, 0], [0.25, 0.25, -0.5]], atol=1e-6)


def test_cross_entropy_gradient(rng):
    z = rng.normal(size=(5, 4))
    y = rng.integers(0, 4, size=5)
    _, cache = softmax_cross_entropy_forward(z, y)
    dloss = 1.7
    analytic = softmax_cross_entropy_backward(dloss, cache)
    check_gradient(lambda v: softmax_cross_entropy_forward(v, y)[0], z, analytic, dloss, name="logits")


def test_backward_is_pure(rng):
    z = rng.normal(size=(3, 3))
    _, cache = softmax_cross_entropy_forward(z, np.array([0, 1, 2]))
    assert_backward_is_pure(softmax_cross_entropy_backward, 1.0, cache)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 2), (7, 3), (128, 10), (33, 13)])
def test_compiled_loss_matches_the_reference_pair(rng, shape, dtype):
    z = (3 * rng.normal(size=shape)).astype(dtype)
    z[0, :] = z[0, 0]  # a tie: the first of the largest logits is the prediction, as argmax
    y = rng.integers(0, shape[1], size=shape[0])
    ref_loss, cache = softmax_cross_entropy_forward(z, y)
    loss, d, n_correct = softmax_cross_entropy(z, y)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(ref_loss, rel=tol)
    assert d.dtype == dtype and d.shape == shape
    np.testing.assert_allclose(d, softmax_cross_entropy_backward(1.0, cache), rtol=tol, atol=tol)
    assert n_correct == int((z.argmax(axis=1) == y).sum())


def test_compiled_loss_gradient_and_stability(rng):
    z = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, size=6)
    analytic = softmax_cross_entropy(z, y)[1]
    check_gradient(lambda v: softmax_cross_entropy(v, y)[0], z, analytic, 1.0, name="logits")
    big = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0]], dtype=np.float32)
    loss, d, _ = softmax_cross_entropy(big, np.array([0, 2]))
    assert loss == pytest.approx((0 + (1e4 + np.log(2))) / 2, rel=1e-6)
    np.testing.assert_allclose(d, [[0, 0, 0], [0.25, 0.25, -0.5]], atol=1e-6)
    z[2, 1] = np.nan  # a diverged model: the loss says so, and training stops on it
    assert np.isnan(softmax_cross_entropy(z, y)[0])


@pytest.mark.parametrize(
    "logits, labels, word",
    [
        (np.zeros((3, 4)), np.array([0, 4, 1]), "label 4 (sample 1)"),
        (np.zeros((3, 4)), np.array([0, -1, 1]), "label -1 (sample 1)"),
        (np.zeros((3, 4)), np.array([0, 1]), "labels must be 3 integers"),
        (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), "labels must be 3 integers"),
        (np.zeros((0, 4)), np.zeros(0, dtype=int), "non-empty"),
        (np.zeros(4), np.array([0]), "non-empty"),
    ],
)
def test_compiled_loss_refuses_bad_input_by_name(logits, labels, word):
    from nmnp.errors import ShapeError

    with pytest.raises(ShapeError, match=re.escape(word)):
        softmax_cross_entropy(logits, labels)


@pytest.mark.parametrize(
    "logits, labels, word",
    [
        (np.zeros((3, 4), np.float16), np.array([0, 1, 2]), "float32 or float64 in native byte order, got float16"),
        (np.zeros((3, 4), ">f4"), np.array([0, 1, 2]), "float32 or float64 in native byte order, got >f4"),
        (np.zeros((3, 4), ">f8"), np.array([0, 1, 2]), "float32 or float64 in native byte order, got >f8"),
        (np.zeros((3, 4)), np.array([0, 1, 2], ">i8"), "integers in native byte order, got >i8"),
        (np.zeros((5, 0)), np.zeros(5, dtype=int), "logits have no classes, got shape (5, 0)"),
    ]
    + (
        []  # where long double is float64 it is simply float64, and accepted
        if np.dtype(np.longdouble) == np.float64
        else [(np.zeros((3, 4), np.longdouble), np.array([0, 1, 2]), "native byte order, got float128")]
    ),
)
def test_compiled_loss_refuses_unsupported_dtypes_and_zero_classes(logits, labels, word):
    """Dtypes the compiled loop has no version for are named here, not by Numba."""
    from nmnp.errors import ShapeError

    with pytest.raises(ShapeError, match=re.escape(word)):
        softmax_cross_entropy(logits, labels)


@pytest.mark.parametrize(
    "logits, labels, word",
    [
        (np.zeros((3, 4)), np.array([0, -1, 1]), "label -1 (sample 1) is outside the classes 0..3"),
        (np.zeros((3, 4)), np.array([0, 1, 4]), "label 4 (sample 2) is outside the classes 0..3"),
        (np.zeros((3, 4)), np.array([0, 1]), "labels must be 3 integers, got int64 (2,)"),
        (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), "labels must be 3 integers, got float64 (3,)"),
        (np.zeros((3, 4)), np.array([[0, 1, 2]]), "labels must be 3 integers, got int64 (1, 3)"),
        (np.zeros((5, 0)), np.zeros(5, dtype=int), "logits have no classes, got shape (5, 0)"),
        (np.zeros((0, 4)), np.zeros(0, dtype=int), "non-empty"),
        (np.zeros(4), np.array([0]), "non-empty"),
        (np.zeros((3, 4), int), np.array([0, 1, 2]), "float array, got int64 (3, 4)"),
    ],
)
def test_reference_loss_refuses_bad_input_like_the_compiled_one(logits, labels, word):
    """Label -1 would silently pick the last class (negative indexing) and 4 an IndexError."""
    from nmnp.errors import ShapeError

    with pytest.raises(ShapeError, match=re.escape(word)):
        softmax_cross_entropy_forward(logits, labels)
    if logits.ndim == 2 and logits.shape[0] and logits.shape[1] and labels.dtype.kind == "i" \
            and labels.shape == (3,):
        with pytest.raises(ShapeError, match=re.escape(word)):  # the same words, both functions
            softmax_cross_entropy(logits, labels)
