"""Gradient checks: every backward pass against central finite differences, in float64.

Shapes are drawn by hypothesis (every dimension 1..5, k <= n_in); values come from a seeded
generator so they are generic (no ties at the ReLU kink that shrinking would hunt for).
Encoder shapes keep n_in >= 2, n_units >= 2 and k <= n_in - 1: one unit, or every unit
reading all the inputs, centres every sum to 0, and the check then compares 0 with 0 (which
:func:`~nmnp.gradcheck.check_gradient` refuses).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nmnp import layers
from nmnp.config import NetworkConfig
from nmnp.errors import ConfigError, NmnpError, ShapeError
from nmnp.gradcheck import (
    GradientCheckError,
    GradientDtypeError,
    VacuousGradientCheckError,
    check_gradient,
    numerical_vjp,
    relative_error,
)
from nmnp.model import ModulatedNetwork
from purity import assert_backward_is_pure

dims = st.integers(1, 5)
# An encoder needs two units and a unit that leaves an input out, or its activity is all 0.
encoder_widths = st.integers(2, 5)


@st.composite
def encoder_problems(draw):
    n_in, n_units, B = draw(encoder_widths), draw(encoder_widths), draw(dims)
    k = draw(st.integers(1, n_in - 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    idx = np.sort(np.argsort(rng.random((n_units, n_in)), axis=1)[:, :k], axis=1).astype(np.int32)
    return rng.normal(size=(B, n_in)), idx, rng


def units_differ(idx) -> bool:
    """Some two units read different inputs. If all read the same ones, every centred sum
    is 0 up to the rounding of the mean (5.6e-17, not 0, for three equal sums), and so is
    every gradient: nothing a check could fail on."""
    return np.unique(np.sort(idx, axis=1), axis=0).shape[0] > 1


def away_from_kink(x, idx):
    """Finite differences are only valid where no unit sits on the ReLU kink (z == 0 exactly
    is fine: such a unit is constant-zero on both sides of the step)."""
    m = x[:, idx].sum(axis=2)
    z = np.abs(m - m.mean(axis=1, keepdims=True))
    return bool(np.all((z == 0) | (z > 1e-4)))


@given(problem=encoder_problems())
def test_encoder_input_gradient(backend, problem):
    x, idx, rng = problem
    assume(units_differ(idx) and away_from_kink(x, idx))
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
    n_in=encoder_widths, n_units=encoder_widths, n_out=st.integers(2, 5), B=dims,
    k=st.integers(1, 4), seed=st.integers(0, 2**16), with_classes=st.booleans(),
)
def test_whole_network_context_gradients(backend, n_in, n_units, n_out, B, k, seed, with_classes):
    """dLoss/dgains and dLoss/dstrength of the full network (encoder + readout + loss)."""
    k = min(k, n_in - 1)  # k == n_in: every unit's centred sum is 0, and so is every gradient
    net = ModulatedNetwork(NetworkConfig(n_in, n_units, k, n_out, seed, "float64"), backend)
    t = net.add_task()
    rng = np.random.default_rng(seed)
    assume(units_differ(net.encoder_indices))
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


def test_checker_refuses_to_compare_zero_with_zero(rng):
    """Two units that both read every input have equal sums, centred to exactly 0: the
    encoder's output and both gradients are 0, and a backward pass returning zeros (or
    anything times 0) would pass. The checker refuses that unless told to allow it, and a
    non-zero claim against the zero gradient is still caught as wrong."""
    x = rng.normal(size=(3, 4))
    idx = np.tile(np.arange(4, dtype=np.int32), (2, 1))  # k == n_in
    h, cache = layers.sparse_encoder_forward(x, idx, "numpy")
    dh = rng.normal(size=h.shape)
    dx = layers.sparse_encoder_backward(dh, cache)["x"]
    assert not h.any() and not dx.any()
    f = lambda v: layers.sparse_encoder_forward(v, idx, "numpy")[0]
    vacuous = r"gradient check of encoder x compares zero with zero.*allow_zero=True"
    with pytest.raises(VacuousGradientCheckError, match=vacuous):
        check_gradient(f, x.copy(), dx, dh, name="encoder x")
    assert check_gradient(f, x.copy(), dx, dh, allow_zero=True) == 0.0
    for allow_zero in (False, True):
        with pytest.raises(GradientCheckError, match="gradient of x is wrong"):
            check_gradient(f, x.copy(), np.ones_like(dx), dh, allow_zero=allow_zero)
    # The refusal is the library's error about how the check was set up, not a verdict on
    # the gradient: code that catches GradientCheckError as "found a bug" does not take it.
    assert issubclass(VacuousGradientCheckError, NmnpError)
    assert not issubclass(VacuousGradientCheckError, GradientCheckError)


def test_checker_refuses_a_gradient_below_the_rounding_floor_on_both_sides():
    """A gradient of 1e-12 on a function of size 1: central differences read it as 0 or
    rounding noise (about 1e-10), under the floor of about 1e-8, so agreement proves
    nothing; a wrong gradient the differences can resolve is still caught."""
    f = lambda v: 1.0 + 1e-12 * v
    x = np.array([0.3, -0.2, 0.5])
    with pytest.raises(VacuousGradientCheckError, match="rounding floor"):
        check_gradient(f, x.copy(), np.full(3, 1e-12), 1.0)
    check_gradient(f, x.copy(), np.full(3, 1e-12), 1.0, allow_zero=True)
    with pytest.raises(GradientCheckError, match="above the rounding floor"):
        check_gradient(f, x.copy(), np.full(3, 1e-3), 1.0)


def test_checker_catches_a_backward_that_returns_zeros(rng):
    """Zeros against a non-zero gradient is a wrong gradient, not a vacuous check."""
    x, c, W = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(2, 4))
    s = np.array([1.5])
    dy = rng.normal(size=(3, 2))
    f = lambda v: layers.modulated_linear_forward(x, v, s, W, "numpy")[0]
    with pytest.raises(GradientCheckError, match="gradient of gains is wrong"):
        check_gradient(f, c, np.zeros(4), dy, name="gains")


@pytest.mark.parametrize("x, got", [
    (np.ones(3, np.float32), "float32"),
    (np.ones(3, np.int64), "int64"),
    ([1.0, 2.0], "list"),
])
def test_gradient_checks_refuse_an_input_that_is_not_float64(x, got):
    """A step of 1e-6 is lost in float32 rounding. The error is the library's ShapeError
    (a wrong dtype) and still the TypeError it used to be."""
    message = f"gradient checks need a float64 array x, got {got}"
    with pytest.raises(GradientDtypeError, match=message):
        numerical_vjp(lambda v: 2 * v, x, 1.0)
    with pytest.raises(ShapeError):
        check_gradient(lambda v: 2 * v, x, np.full(3, 2.0), 1.0)
    with pytest.raises(TypeError):
        numerical_vjp(lambda v: 2 * v, x, 1.0)


def test_backward_is_pure(backend, rng):
    x, c, s, W = rng.normal(size=(3, 4)), rng.normal(size=4), 0.5, rng.normal(size=(2, 4))
    _, cache = layers.modulated_linear_forward(x, c, s, W, backend)
    dy = rng.normal(size=(3, 2))
    assert_backward_is_pure(layers.modulated_linear_backward, dy, cache)


def test_encoder_backward_is_pure(backend, rng):
    x, idx = rng.normal(size=(5, 6)), np.array([[0, 1], [2, 3], [1, 4], [5, 0]], np.int32)
    h, cache = layers.sparse_encoder_forward(x, idx, backend)
    dh = rng.normal(size=h.shape)
    # a zero gradient would hide an accumulating backward (0 + 0 == 0)
    assert layers.sparse_encoder_backward(dh, cache)["x"].any()
    assert_backward_is_pure(layers.sparse_encoder_backward, dh, cache)


def test_masked_readout_backward_is_pure(rng):
    """SupSup's readout backward (NumPy whatever the backend: it has no kernels)."""
    from nmnp.strategies.supsup import masked_readout_backward, masked_readout_forward

    h, W, scores = rng.normal(size=(4, 6)), rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    z, cache = masked_readout_forward(h, W, scores, 0.5)
    dz = rng.normal(size=z.shape)
    assert masked_readout_backward(dz, cache)["scores"].any()
    assert_backward_is_pure(masked_readout_backward, dz, cache)


def test_layer_shape_errors_name_the_problem(rng):
    x = rng.normal(size=(3, 4))
    with pytest.raises(ShapeError, match=r"gains have shape \(5,\), expected \(4,\)"):
        layers.modulated_linear_forward(x, np.ones(5), 1.0, np.ones((2, 4)))
    with pytest.raises(ShapeError, match=r"weight has shape \(2, 3\)"):
        layers.modulated_linear_forward(x, np.ones(4), 1.0, np.ones((2, 3)))
    with pytest.raises(ShapeError, match="encoder input must be 2-D"):
        layers.sparse_encoder_forward(np.ones(4), np.zeros((2, 1), np.int32))


X, IDX = np.arange(8.0).reshape(2, 4), np.array([[0, 1], [2, 3], [1, 2]], np.int32)
C, W = np.ones(4), np.ones((2, 4))


def _encoder_cache():
    return layers.sparse_encoder_forward(X, IDX, "numpy")[1]


def _modulated_cache():
    return layers.modulated_linear_forward(X, C, 1.0, W, "numpy")[1]


@pytest.mark.parametrize("call, error, message", [
    (lambda: layers.modulated_linear_forward(X, [1.0, 1, 1, 1], 1.0, W), ShapeError,
     "gains must be a NumPy array, got list"),
    (lambda: layers.modulated_linear_forward(X.tolist(), C, 1.0, W), ShapeError,
     "layer input x must be a NumPy array, got list"),
    (lambda: layers.modulated_linear_forward(X, C, 1.0, None), ShapeError,
     "weight must be a NumPy array, got NoneType"),
    (lambda: layers.modulated_linear_forward(X[0], C, 1.0, W), ShapeError,
     r"layer input must be 2-D \(batch, n\), got shape \(4,\)"),
    (lambda: layers.sparse_encoder_forward([[1.0, 2.0]], IDX), ShapeError,
     "encoder input x must be a NumPy array, got list"),
    (lambda: layers.sparse_encoder_forward(np.float64(1.0), IDX), ShapeError,
     "encoder input x must be a NumPy array, got a float64 scalar"),
    (lambda: layers.sparse_encoder_forward(X, [[0, 1]]), ShapeError,
     "encoder indices idx must be a NumPy array, got list"),
    (lambda: layers.sparse_encoder_forward(X, IDX[0]), ShapeError,
     r"encoder indices must be 2-D \(n_units, k\), got shape \(2,\)"),
    (lambda: layers.sparse_encoder_forward(X, IDX[:0]), ShapeError,
     r"encoder indices must lie in 0\.\.3 \(the input width\), got none\.\.none"),
    (lambda: layers.sparse_encoder_backward(np.ones((2, 3)), "junk"), ConfigError,
     r"cache must be the cache sparse_encoder_forward returned \(a tuple of 4\), got str$"),
    (lambda: layers.sparse_encoder_backward(np.ones((2, 3)), _modulated_cache()), ConfigError,
     "sparse_encoder_forward returned .*, got tuple of 5"),
    (lambda: layers.sparse_encoder_backward(np.ones((2, 3)).tolist(), _encoder_cache()),
     ShapeError, "dh must be a float64 array like the activity, got list"),
    (lambda: layers.modulated_linear_backward(np.ones((2, 2)), "junk"), ConfigError,
     r"modulated_linear_forward returned \(a tuple of 5\), got str"),
    (lambda: layers.modulated_linear_backward(np.ones((2, 2)), list(_encoder_cache())),
     ConfigError, "got list of 4"),
    (lambda: layers.modulated_linear_backward(np.ones((2, 2)).tolist(), _modulated_cache()),
     ShapeError, "dy must be a float64 array like the input, got list"),
])
def test_layers_name_an_argument_of_the_wrong_kind(call, error, message):
    """Each of these raised a raw AttributeError (``'list' object has no attribute
    'ndim'``) or ValueError (a 4-letter string unpacked into the encoder's cache)."""
    with pytest.raises(error, match=message):
        call()


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


def test_the_purity_check_refuses_an_all_zero_gradient(rng):
    """With dy = 0 every gradient is 0, and an accumulating backward would return 0 + 0:
    the check could not fail, so it refuses."""
    x, c, W = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(2, 4))
    _, cache = layers.modulated_linear_forward(x, c, 0.5, W, "numpy")
    with pytest.raises(AssertionError, match=r"gradients\['x'\] is all zero"):
        assert_backward_is_pure(layers.modulated_linear_backward, np.zeros((3, 2)), cache)


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


# --------------------------------------------------------------------------- values the kernels trust
_BAD_VALUES = [
    (np.nan, r"contains NaN or infinite values \(first nan at index \(1, 2\)\)"),
    (np.inf, r"contains NaN or infinite values \(first inf at index \(1, 2\)\)"),
    (-np.inf, r"contains NaN or infinite values \(first -inf at index \(1, 2\)\)"),
    (-2e18, r"must lie within \+-1e\+18 \(MAX_ABS_INPUT\), got -2e\+18 at index \(1, 2\)"),
]


def _with(a, value, where=(1, 2)):
    out = a.copy()
    out[where] = value
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value, message", _BAD_VALUES)
def test_layers_refuse_values_the_kernels_would_turn_into_zeros(backend, dtype, value, message):
    """The cpu encoder, compiled with fastmath, returned zeros for a NaN, infinite or
    overflowing input where the NumPy reference returned NaN, and its backward returned
    other garbage for such a dh: every array a layer reads is now held to the rule of
    ModulatedNetwork.check_inputs, on every backend alike."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 5)).astype(dtype)
    idx = np.array([[0, 1], [2, 3], [1, 4]], np.int32)
    c, W = rng.normal(size=5).astype(dtype), rng.normal(size=(3, 5)).astype(dtype)
    h, enc = layers.sparse_encoder_forward(x, idx, backend)  # the same arrays, finite, pass
    y, mod = layers.modulated_linear_forward(x, c, 0.5, W, backend)
    assert np.isfinite(h).all() and np.isfinite(y).all()
    with pytest.raises(ShapeError, match="encoder input x " + message):
        layers.sparse_encoder_forward(_with(x, value), idx, backend)
    with pytest.raises(ShapeError, match="^dh " + message):
        layers.sparse_encoder_backward(_with(np.ones_like(h), value), enc)
    with pytest.raises(ShapeError, match="layer input x " + message):
        layers.modulated_linear_forward(_with(x, value), c, 0.5, W, backend)
    with pytest.raises(ShapeError, match="^weight " + message):
        layers.modulated_linear_forward(x, c, 0.5, _with(W, value), backend)
    with pytest.raises(ShapeError, match="^gains " + message.replace(r"\(1, 2\)", r"\(2,\)")):
        layers.modulated_linear_forward(x, _with(c, value, 2), 0.5, W, backend)
    with pytest.raises(ShapeError, match="^dy " + message):
        layers.modulated_linear_backward(_with(np.ones_like(y), value), mod)


def test_the_layers_bound_is_the_one_check_inputs_applies():
    from nmnp.layers import MAX_ABS_INPUT
    from nmnp.model import MAX_ABS_INPUT as model_bound

    assert model_bound is MAX_ABS_INPUT  # one rule, defined once
    x = np.zeros((2, 4))
    x[0, 1] = -MAX_ABS_INPUT  # the bound itself is accepted...
    idx = np.array([[0, 1], [2, 3]], np.int32)
    assert layers.sparse_encoder_forward(x, idx, "cpu")[0].shape == (2, 2)
    y, _ = layers.modulated_linear_forward(x, np.ones(4), MAX_ABS_INPUT, np.ones((1, 4)), "cpu")
    assert y[0, 0] == -MAX_ABS_INPUT**2
    x[0, 1] = np.nextafter(-MAX_ABS_INPUT, -np.inf)  # ...one step beyond it is not
    with pytest.raises(ShapeError, match=r"encoder input x must lie within \+-1e\+18"):
        layers.sparse_encoder_forward(x, idx, "cpu")
    with pytest.raises(ShapeError, match=r"strength must lie within \+-1e\+18 \(MAX_ABS_INPUT\), got 2e\+18"):
        layers.modulated_linear_forward(np.ones((2, 4)), np.ones(4), 2e18, np.ones((1, 4)), "cpu")
