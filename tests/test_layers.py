"""Gradient checks: every backward pass against central finite differences, in float64.

Shapes are drawn by hypothesis (every dimension 1..5, k <= n_in); values come from a seeded
generator so they are generic (no ties at the ReLU kink that shrinking would hunt for).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nmnp import layers
from nmnp.config import NetworkConfig
from nmnp.errors import ShapeError
from nmnp.gradcheck import GradientCheckError, check_gradient, numerical_vjp, relative_error
from nmnp.model import ModulatedNetwork
from purity import assert_backward_is_pure

dims = st.integers(1, 5)


@st.composite
def encoder_problems(draw):
    n_in, n_units, B = draw(dims), draw(dims), draw(dims)
    k = draw(st.integers(1, n_in))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    idx = np.sort(np.argsort(rng.random((n_units, n_in)), axis=1)[:, :k], axis=1).astype(np.int32)
    return rng.normal(size=(B, n_in)), idx, rng


def away_from_kink(x, idx):
    """Finite differences are only valid where no unit sits on the ReLU kink (z == 0 exactly
    is fine: such a unit is constant-zero on both sides of the step)."""
    m = x[:, idx].sum(axis=2)
    z = np.abs(m - m.mean(axis=1, keepdims=True))
    return bool(np.all((z == 0) | (z > 1e-4)))


@given(problem=encoder_problems())
def test_encoder_input_gradient(backend, problem):
    x, idx, rng = problem
    assume(away_from_kink(x, idx))
    h, cache = layers.sparse_encoder_forward(x, idx, backend)
    dh = rng.normal(size=h.shape)
    dx = layers.sparse_encoder_backward(dh, cache)["x"]
    f = lambda v: layers.sparse_encoder_forward(v, idx, backend)[0]
    check_gradient(f, x, dx, dh, name="encoder x")


@given(B=dims, n=dims, n_out=dims, seed=st.integers(0, 2**32 - 1))
def test_modulated_layer_gradients(backend, B, n, n_out, seed):
    rng = np.random.default_rng(seed)
    x, c = rng.normal(size=(B, n)), rng.normal(size=n)
    s, W = rng.normal(size=1), rng.normal(size=(n_out, n))
    y, cache = layers.modulated_linear_forward(x, c, s, W, backend)
    dy = rng.normal(size=y.shape)
    grads = layers.modulated_linear_backward(dy, cache)
    fwd = lambda x_, c_, s_: layers.modulated_linear_forward(x_, c_, s_, W, backend)[0]
    check_gradient(lambda v: fwd(v, c, s), x, grads["x"], dy, name="modulated x")
    check_gradient(lambda v: fwd(x, v, s), c, grads["gains"], dy, name="gains")
    check_gradient(lambda v: fwd(x, c, v), s, grads["strength"], dy, name="strength")


@given(
    n_in=dims, n_units=dims, n_out=st.integers(2, 5), B=dims,
    k=dims, seed=st.integers(0, 2**16), with_classes=st.booleans(),
)
def test_whole_network_context_gradients(backend, n_in, n_units, n_out, B, k, seed, with_classes):
    """dLoss/dgains and dLoss/dstrength of the full network (encoder + readout + loss)."""
    net = ModulatedNetwork(NetworkConfig(n_in, n_units, min(k, n_in), n_out, seed, "float64"), backend)
    t = net.add_task()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, n_in))
    classes = np.array([0, n_out - 1]) if with_classes else None
    y = rng.choice(classes, size=B) if with_classes else rng.integers(0, n_out, size=B)
    _, grads, _ = net.loss_and_grads(x, y, t, classes)
    ctx = net.tasks[t]

    def loss_with(param, value):
        saved = ctx.params()[param].copy()
        ctx.params()[param][...] = value
        try:
            return net.loss_and_grads(x, y, t, classes)[0]
        finally:
            ctx.params()[param][...] = saved

    check_gradient(lambda v: loss_with("gains", v), ctx.gains.copy(), grads["gains"], 1.0, name="gains")
    check_gradient(lambda v: loss_with("strength", v), ctx.strength.copy(), grads["strength"], 1.0, name="strength")


@pytest.mark.parametrize("B, n_out", [(2, 3), (9, 3), (9, 12)], ids=["small-batch path", "unit-major path", "13+ outputs"])
def test_training_step_context_gradients(backend, B, n_out):
    """The training hot path, loss_and_grads_batch (fused forward that keeps the activity,
    then the backward on it), against central finite differences of its own loss. Batches
    under 4 and over take different cpu kernels; 12 outputs need two backward passes."""
    net = ModulatedNetwork(NetworkConfig(11, 17, 3, n_out, 5, "float64"), backend)
    t = net.add_task()
    rng = np.random.default_rng(B * n_out)
    x = rng.normal(size=(B, 11))
    y = rng.integers(0, n_out, size=B)
    _, grads, _ = net.loss_and_grads_batch(x, y, t)
    ctx = net.tasks[t]

    def loss_with(param, value):
        saved = ctx.params()[param].copy()
        ctx.params()[param][...] = value
        try:
            return net.loss_and_grads_batch(x, y, t)[0]
        finally:
            ctx.params()[param][...] = saved

    check_gradient(lambda v: loss_with("gains", v), ctx.gains.copy(), grads["gains"], 1.0, name="gains")
    check_gradient(lambda v: loss_with("strength", v), ctx.strength.copy(), grads["strength"], 1.0, name="strength")


def test_checker_rejects_a_wrong_gradient(rng):
    """A checker that cannot fail proves nothing: feed it plausible-looking wrong gradients."""
    x, c, s, W = rng.normal(size=(3, 4)), rng.normal(size=4), np.array([1.5]), rng.normal(size=(2, 4))
    y, cache = layers.modulated_linear_forward(x, c, s, W, "numpy")
    dy = rng.normal(size=y.shape)
    right = layers.modulated_linear_backward(dy, cache)["gains"]
    f = lambda v: layers.modulated_linear_forward(x, v, s, W, "numpy")[0]
    check_gradient(f, c, right, dy)  # passes
    forgot_strength = right / s  # a classic slip: dropping the factor s
    with pytest.raises(GradientCheckError, match=r"gradient of gains is wrong.*received .* expected"):
        check_gradient(f, c, forgot_strength, dy, name="gains")
    tiny_slip = right * (1 + 1e-4)  # even a 0.01 % error is caught
    with pytest.raises(GradientCheckError):
        check_gradient(f, c, tiny_slip, dy)


def test_backward_is_pure(backend, rng):
    x, c, s, W = rng.normal(size=(3, 4)), rng.normal(size=4), 0.5, rng.normal(size=(2, 4))
    _, cache = layers.modulated_linear_forward(x, c, s, W, backend)
    dy = rng.normal(size=(3, 2))
    assert_backward_is_pure(layers.modulated_linear_backward, dy, cache)


def test_layer_shape_errors_name_the_problem(rng):
    x = rng.normal(size=(3, 4))
    with pytest.raises(ShapeError, match=r"gains have shape \(5,\), expected \(4,\)"):
        layers.modulated_linear_forward(x, np.ones(5), 1.0, np.ones((2, 4)))
    with pytest.raises(ShapeError, match=r"weight has shape \(2, 3\)"):
        layers.modulated_linear_forward(x, np.ones(4), 1.0, np.ones((2, 3)))
    with pytest.raises(ShapeError, match="encoder input must be 2-D"):
        layers.sparse_encoder_forward(np.ones(4), np.zeros((2, 1), np.int32))


def test_bad_encoder_indices_and_dtypes_are_named_before_any_kernel_runs():
    x = np.ones((2, 5), np.float32)
    with pytest.raises(ShapeError, match=r"encoder indices must lie in 0..4 \(the input width\), got 0..9"):
        layers.sparse_encoder_forward(x, np.array([[0, 9]], np.int32), "cpu")
    with pytest.raises(ShapeError, match="got -1..1"):
        layers.sparse_encoder_forward(x, np.array([[-1, 1]], np.int32), "cpu")
    with pytest.raises(ShapeError, match="encoder indices must be integers, got dtype float64"):
        layers.sparse_encoder_forward(x, np.array([[0.0, 1.0]]), "cpu")
    with pytest.raises(ShapeError, match="encoder input must be float32 or float64, got int64"):
        layers.sparse_encoder_forward(np.ones((2, 5), np.int64), np.array([[0, 1]], np.int32), "cpu")
    with pytest.raises(ShapeError, match="must share one float dtype.*float32, float64, float32"):
        layers.modulated_linear_forward(x, np.ones(5), 1.0, np.ones((2, 5), np.float32))


def test_gradient_check_tells_rounding_from_a_wrong_tiny_gradient():
    """A network hypothesis found whose gain gradients are about 2e-6: central differences
    resolve them only to about 1e-10, a relative error of 3e-5 from rounding alone. The check
    accepts that, and still refuses the same gradient 1% off (a difference of 4e-8)."""
    net = ModulatedNetwork(NetworkConfig(2, 5, 1, 2, 171, "float64"), "numpy")
    t = net.add_task()
    rng = np.random.default_rng(171)
    x = rng.normal(size=(1, 2))
    y = rng.integers(0, 2, size=1)
    _, grads, _ = net.loss_and_grads(x, y, t)
    gains = net.tasks[t].gains

    def loss(v):
        saved = gains.copy()
        gains[...] = v
        try:
            return net.loss_and_grads(x, y, t)[0]
        finally:
            gains[...] = saved

    assert 1e-7 < np.linalg.norm(grads["gains"]) < 1e-5
    numeric = numerical_vjp(loss, gains.copy(), 1.0)
    assert relative_error(grads["gains"], numeric) > 1e-6  # the plain relative test fails...
    check_gradient(loss, gains.copy(), grads["gains"], 1.0, name="gains")  # ...rounding accepted
    with pytest.raises(GradientCheckError, match="above the rounding floor"):
        check_gradient(loss, gains.copy(), grads["gains"] * 1.01, 1.0, name="gains")


def test_the_purity_check_catches_an_accumulating_or_cache_writing_backward(rng):
    """A backward that adds into a buffer it keeps and returns it (both calls then return
    one array, so comparing them against each other proves nothing), and one that scales the
    cache in place, both fail the check that the real backward passes."""
    x, c, s, W = rng.normal(size=(3, 4)), rng.normal(size=4), 0.5, rng.normal(size=(2, 4))
    _, cache = layers.modulated_linear_forward(x, c, s, W, "numpy")
    dy = rng.normal(size=(3, 2))
    kept = {}

    def accumulating(upstream, cache):
        grads = layers.modulated_linear_backward(upstream, cache)
        kept.setdefault("gains", np.zeros_like(grads["gains"]))
        kept["gains"] += grads["gains"]
        return {**grads, "gains": kept["gains"]}

    def cache_writing(upstream, cache):
        grads = layers.modulated_linear_backward(upstream, cache)
        cache[0][...] *= 2  # the saved input, in place
        return grads

    for broken in (accumulating, cache_writing):
        with pytest.raises(AssertionError):
            assert_backward_is_pure(broken, dy, cache)
        _, cache = layers.modulated_linear_forward(x, c, s, W, "numpy")
    assert_backward_is_pure(layers.modulated_linear_backward, dy, cache)


def test_backward_passes_refuse_an_upstream_gradient_of_the_wrong_dtype_or_shape(backend, rng):
    """An integer dh used to come back as an int64 "gradient" (wrong numbers), silently."""
    x, idx = rng.normal(size=(3, 5)), np.array([[0, 1], [2, 3], [1, 4]], np.int32)
    h, enc = layers.sparse_encoder_forward(x, idx, backend)
    with pytest.raises(ShapeError, match=r"dh must be a float64 array like the activity, got int64"):
        layers.sparse_encoder_backward(np.ones(h.shape, np.int64), enc)
    with pytest.raises(ShapeError, match=r"dh must be a float64 array like the activity, got float32"):
        layers.sparse_encoder_backward(np.ones(h.shape, np.float32), enc)
    with pytest.raises(ShapeError, match=r"dh has shape \(3, 4\), expected \(3, 3\)"):
        layers.sparse_encoder_backward(np.ones((3, 4)), enc)
    y, mod = layers.modulated_linear_forward(x, np.ones(5), 0.5, rng.normal(size=(2, 5)), backend)
    with pytest.raises(ShapeError, match=r"dy must be a float64 array like the input, got int64"):
        layers.modulated_linear_backward(np.ones(y.shape, np.int64), mod)
    with pytest.raises(ShapeError, match=r"dy must be a float64 array like the input, got complex128"):
        layers.modulated_linear_backward(np.ones(y.shape, complex), mod)
    with pytest.raises(ShapeError, match=r"dy has shape \(3, 3\), expected \(3, 2\)"):
        layers.modulated_linear_backward(np.ones((3, 3)), mod)


@pytest.mark.parametrize(
    "strength, word",
    [
        (np.array([1.0, 2.0]), r"got shape \(2,\)"),
        (np.array([]), r"got shape \(0,\)"),
        ([], r"got shape \(0,\)"),
        (1 + 2j, "got complex128"),
        ("a", "got <U1"),
        (None, "got object"),
        (True, "got bool"),
        (np.nan, "got nan"),
        (np.array([-np.inf]), "got -inf"),
    ],
)
def test_strength_must_be_one_real_finite_number(rng, strength, word):
    """(2,) used to use its first element, a complex strength lost its imaginary part, and
    "a", None or [] failed inside NumPy."""
    x, c, W = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(2, 4))
    with pytest.raises(ShapeError, match=r"strength must be one real finite number.*" + word):
        layers.modulated_linear_forward(x, c, strength, W, "numpy")


def test_strength_may_be_any_real_scalar_or_size_one_array(rng):
    x, c, W = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(2, 4))
    expected = 2.0 * (x * c) @ W.T
    for strength in (2.0, 2, np.float32(2.0), np.array(2.0), np.array([2.0]), np.array([[2]])):
        y, _ = layers.modulated_linear_forward(x, c, strength, W, "numpy")
        np.testing.assert_allclose(y, expected, rtol=1e-12)
