"""Tests of nmnp.optim: each rule against steps worked out by hand, then the contract.

The expected values below are written out from the update formulas with the intermediate
numbers computed by hand (shown in comments), never taken from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmnp.errors import CheckpointError, ConfigError, NmnpError, ShapeError, TrainingError
from nmnp.optim import SGD, Adam, Optimizer, RMSprop, make_optimizer

EPS = 1e-8


def _params(dtype=np.float64):
    return {"c": np.array([1.0, -2.0], dtype=dtype), "s": np.array(0.5, dtype=dtype)}


# --------------------------------------------------------------------------- RMSprop by hand
def test_rmsprop_two_steps_by_hand():
    # v_t = alpha v_{t-1} + (1-alpha) g_t^2 ;  p_t = p_{t-1} - lr g_t / (sqrt(v_t) + eps)
    p = np.array([1.0, -2.0])
    opt = RMSprop({"p": p}, lr=0.1, alpha=0.9)

    opt.step({"p": np.array([0.5, -1.0])})
    # v1 = 0.1 * [0.25, 1.0] = [0.025, 0.1]; sqrt(v1) = [0.158113883, 0.316227766]
    p1 = np.array([1.0, -2.0]) - 0.1 * np.array([0.5, -1.0]) / (np.sqrt([0.025, 0.1]) + EPS)
    np.testing.assert_allclose(p, p1, rtol=1e-12)
    # Without bias correction the first step is lr / sqrt(1 - alpha) = 0.316227766 per element
    # (eps shifts it in the 8th digit).
    np.testing.assert_allclose(p, [1.0 - 0.316227766, -2.0 + 0.316227766], rtol=1e-6)

    opt.step({"p": np.array([0.5, 2.0])})
    # v2 = 0.9 v1 + 0.1 [0.25, 4.0] = [0.0225 + 0.025, 0.09 + 0.4] = [0.0475, 0.49]
    # step2 = 0.1 [0.5 / sqrt(0.0475), 2 / 0.7] = [0.229415734, 0.285714286]
    p2 = p1 - 0.1 * np.array([0.5, 2.0]) / (np.sqrt([0.0475, 0.49]) + EPS)
    np.testing.assert_allclose(p, p2, rtol=1e-12)
    np.testing.assert_allclose(
        p, [1.0 - 0.316227766 - 0.229415734, -2.0 + 0.316227766 - 0.285714286], rtol=1e-6
    )
    np.testing.assert_allclose(opt.state_dict()["state/square_avg/p"], [0.0475, 0.49], rtol=1e-12)


def test_rmsprop_eps_is_added_outside_the_square_root():
    # PyTorch: g / (sqrt(v) + eps), not g / sqrt(v + eps). A large eps tells them apart.
    p = np.array([0.0])
    RMSprop({"p": p}, lr=1.0, alpha=0.75, eps=0.1).step({"p": np.array([0.5])})
    # v = 0.25 * 0.25 = 0.0625, sqrt(v) = 0.25 -> step = 0.5 / 0.35; inside would be 0.5 / 0.403
    assert p[0] == pytest.approx(-0.5 / 0.35, rel=1e-12)
    assert p[0] != pytest.approx(-0.5 / math.sqrt(0.0625 + 0.1), rel=1e-3)


def test_rmsprop_defaults_are_pytorchs():
    opt = RMSprop(_params(), lr=1e-2)
    assert opt.hyperparameters == {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}


# --------------------------------------------------------------------------- SGD by hand
def test_sgd_plain_step_by_hand_and_has_no_state():
    p = np.array([1.0, 2.0])
    opt = SGD({"p": p}, lr=0.1)
    opt.step({"p": np.array([1.0, -2.0])})
    np.testing.assert_allclose(p, [0.9, 2.2], rtol=1e-15)
    assert not any(k.startswith("state/") for k in opt.state_dict())


def test_sgd_momentum_three_steps_by_hand():
    # PyTorch: b_1 = g_1, b_t = mu b_{t-1} + g_t, p_t = p_{t-1} - lr b_t
    p = np.array([1.0, 2.0])
    opt = SGD({"p": p}, lr=0.1, momentum=0.9)
    opt.step({"p": np.array([1.0, -2.0])})  # b1 = [1, -2]
    np.testing.assert_allclose(p, [0.9, 2.2], rtol=1e-15)
    opt.step({"p": np.array([0.5, 0.0])})  # b2 = [0.9 + 0.5, -1.8 + 0] = [1.4, -1.8]
    np.testing.assert_allclose(p, [0.76, 2.38], rtol=1e-14)
    opt.step({"p": np.array([0.0, 1.0])})  # b3 = [1.26, -1.62 + 1] = [1.26, -0.62]
    np.testing.assert_allclose(p, [0.634, 2.442], rtol=1e-14)
    np.testing.assert_allclose(opt.state_dict()["state/momentum_buffer/p"], [1.26, -0.62])


def test_sgd_momentum_first_step_sets_the_buffer_to_the_gradient():
    # Not lr*g (velocity form), not (1 - mu) g (dampened form), not mu*g: exactly g.
    g = np.array([0.25, -3.0])
    p = np.array([0.0, 0.0])
    opt = SGD({"p": p}, lr=0.5, momentum=0.9)
    opt.step({"p": g})
    buf = opt.state_dict()["state/momentum_buffer/p"]
    np.testing.assert_array_equal(buf, g)
    np.testing.assert_array_equal(p, -0.5 * g)  # the first step is the plain SGD step
    # The buffer is a copy: changing the gradient afterwards does not change the state.
    g[0] = 100.0
    assert opt.state_dict()["state/momentum_buffer/p"][0] == 0.25


def test_sgd_nesterov_two_steps_by_hand():
    # p_t = p_{t-1} - lr (g_t + mu b_t)
    p = np.array([1.0, 2.0])
    opt = SGD({"p": p}, lr=0.1, momentum=0.9, nesterov=True)
    opt.step({"p": np.array([1.0, -2.0])})  # b1 = [1, -2]; g + 0.9 b1 = [1.9, -3.8]
    np.testing.assert_allclose(p, [0.81, 2.38], rtol=1e-14)
    opt.step({"p": np.array([0.5, 0.0])})  # b2 = [1.4, -1.8]; g + 0.9 b2 = [1.76, -1.62]
    np.testing.assert_allclose(p, [0.634, 2.542], rtol=1e-14)


# --------------------------------------------------------------------------- Adam by hand
def test_adam_three_steps_by_hand_with_bias_correction():
    p = np.array([1.0, -1.0])
    opt = Adam({"p": p}, lr=0.01)  # betas (0.9, 0.999), eps 1e-8

    opt.step({"p": np.array([0.2, -0.4])})
    # m1 = 0.1 g = [0.02, -0.04], v1 = 0.001 g^2 = [4e-5, 1.6e-4]
    # m_hat = m1 / 0.1 = g, v_hat = v1 / 0.001 = g^2 -> step = lr g / (|g| + eps) ~ lr sign(g)
    p1 = np.array([1.0 - 0.01 * 0.2 / (0.2 + EPS), -1.0 + 0.01 * 0.4 / (0.4 + EPS)])
    np.testing.assert_allclose(p, p1, rtol=1e-12)
    # Without the correction the step would be lr m1 / sqrt(v1) = 0.01 * 0.02 / 0.0063246 = 0.0316.
    assert abs(p[0] - 1.0) == pytest.approx(0.01, rel=1e-6)

    opt.step({"p": np.array([0.4, 0.4])})
    # m2 = 0.9 m1 + 0.1 g2 = [0.018 + 0.04, -0.036 + 0.04] = [0.058, 0.004]
    # v2 = 0.999 v1 + 0.001 g2^2 = [3.996e-5 + 1.6e-4, 1.5984e-4 + 1.6e-4] = [1.9996e-4, 3.1984e-4]
    # 1 - 0.9^2 = 0.19 ; 1 - 0.999^2 = 0.001999
    m_hat2 = np.array([0.058, 0.004]) / 0.19
    v_hat2 = np.array([1.9996e-4 / 0.001999, 0.16])  # 3.1984e-4 / 0.001999 = 0.16 exactly
    p2 = p1 - 0.01 * m_hat2 / (np.sqrt(v_hat2) + EPS)
    np.testing.assert_allclose(p, p2, rtol=1e-12)

    opt.step({"p": np.array([0.0, 0.0])})
    # A zero gradient still moves p: m3 = 0.9 m2 = [0.0522, 0.0036], v3 = 0.999 v2,
    # 1 - 0.9^3 = 0.271, 1 - 0.999^3 = 0.002997001
    m_hat3 = np.array([0.0522, 0.0036]) / 0.271
    v_hat3 = 0.999 * np.array([1.9996e-4, 3.1984e-4]) / 0.002997001
    p3 = p2 - 0.01 * m_hat3 / (np.sqrt(v_hat3) + EPS)
    np.testing.assert_allclose(p, p3, rtol=1e-12)
    assert not np.allclose(p3, p2)
    sd = opt.state_dict()
    np.testing.assert_allclose(sd["state/exp_avg/p"], [0.0522, 0.0036], rtol=1e-12)
    assert sd["n_steps"] == 3


def test_adam_defaults_are_pytorchs():
    opt = Adam(_params())
    assert opt.hyperparameters == {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    assert opt.betas == (0.9, 0.999)


@settings(deadline=None, max_examples=50)
@given(
    g=st.floats(min_value=1e-3, max_value=1e3) | st.floats(min_value=-1e3, max_value=-1e-3),
    lr=st.floats(min_value=1e-4, max_value=1.0),
)
def test_first_step_sizes_do_not_depend_on_gradient_scale(g, lr):
    # Adam's first step is lr * g / (|g| + eps); RMSprop's (no correction) is
    # lr * g / (sqrt(1 - alpha) |g| + eps) = 10 lr sign(g) at alpha = 0.99.
    a, r = np.array([0.0]), np.array([0.0])
    Adam({"p": a}, lr=lr).step({"p": np.array([g])})
    RMSprop({"p": r}, lr=lr).step({"p": np.array([g])})
    assert a[0] == pytest.approx(-lr * math.copysign(1.0, g), rel=1e-4)
    assert r[0] == pytest.approx(-10 * lr * math.copysign(1.0, g), rel=1e-4)


# --------------------------------------------------------------------------- shared contract
OPTIMIZER_FACTORIES = {
    "rmsprop": lambda p: RMSprop(p, lr=1e-2, alpha=0.9),
    "sgd": lambda p: SGD(p, lr=0.1),
    "sgd_momentum": lambda p: SGD(p, lr=0.1, momentum=0.9),
    "sgd_nesterov": lambda p: SGD(p, lr=0.1, momentum=0.5, nesterov=True),
    "adam": lambda p: Adam(p, lr=1e-2, betas=(0.8, 0.99)),
}


def _grads(rng, params):
    return {k: rng.normal(size=v.shape) for k, v in params.items()}


@pytest.mark.parametrize("name", OPTIMIZER_FACTORIES)
def test_step_updates_the_callers_arrays_in_place(name):
    params = _params()
    c, s = params["c"], params["s"]
    before = c.copy(), s.copy()
    opt = OPTIMIZER_FACTORIES[name](params)
    opt.step({"c": np.array([0.3, -0.7]), "s": np.array(1.5)})
    assert params["c"] is c and params["s"] is s
    assert opt.params["c"] is c and opt.params["s"] is s
    assert not np.array_equal(c, before[0]) and not np.array_equal(s, before[1])
    assert s.shape == () and c.shape == (2,)


@pytest.mark.parametrize("name", OPTIMIZER_FACTORIES)
def test_state_dict_round_trip_continues_identically(name):
    rng = np.random.default_rng(0)
    grads = [_grads(rng, _params()) for _ in range(5)]

    run_a = _params()
    opt_a = OPTIMIZER_FACTORIES[name](run_a)
    for g in grads[:2]:
        opt_a.step(g)
    saved = opt_a.state_dict()
    resumed = {k: v.copy() for k, v in run_a.items()}
    fresh = {k: v.copy() for k, v in run_a.items()}
    for g in grads[2:]:
        opt_a.step(g)

    opt_b = OPTIMIZER_FACTORIES[name](resumed)
    opt_b.load_state_dict(saved)
    opt_c = OPTIMIZER_FACTORIES[name](fresh)  # same params, state not restored
    for g in grads[2:]:
        opt_b.step(g)
        opt_c.step(g)
    for k in run_a:
        np.testing.assert_array_equal(resumed[k], run_a[k])
    assert opt_b.n_steps == opt_a.n_steps == 5
    if name != "sgd":  # plain SGD has no state, so restoring it cannot matter
        assert not np.array_equal(fresh["c"], run_a["c"])


@pytest.mark.parametrize("name", ["rmsprop", "sgd_momentum", "adam"])
def test_state_dict_holds_copies(name):
    params = _params()
    opt = OPTIMIZER_FACTORIES[name](params)
    opt.step({"c": np.ones(2), "s": np.array(1.0)})
    saved = opt.state_dict()
    snapshot = {k: np.copy(v) for k, v in saved.items()}
    opt.step({"c": np.ones(2), "s": np.array(1.0)})  # later steps must not change `saved`
    for k in saved:
        np.testing.assert_array_equal(saved[k], snapshot[k])
    opt.load_state_dict(saved)
    for k, v in saved.items():  # and the loaded values must not alias `saved`
        if isinstance(v, np.ndarray):
            v += 1.0
    assert opt.state_dict()["n_steps"] == 1
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, snapshot[k])


@pytest.mark.parametrize("name", ["rmsprop", "sgd_momentum", "adam"])
def test_zero_state_equals_a_fresh_optimizer(name):
    rng = np.random.default_rng(1)
    grads = [_grads(rng, _params()) for _ in range(4)]
    a = _params()
    opt = OPTIMIZER_FACTORIES[name](a)
    for g in grads[:2]:
        opt.step(g)
    b = {k: v.copy() for k, v in a.items()}
    opt.zero_state()
    assert opt.n_steps == 0
    fresh = OPTIMIZER_FACTORIES[name](b)
    for g in grads[2:]:
        opt.step(g)
        fresh.step(g)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPTIMIZER_FACTORIES)
def test_dtype_is_preserved_in_params_and_state(name, dtype):
    params = _params(dtype)
    opt = OPTIMIZER_FACTORIES[name](params)
    for _ in range(2):  # float64 gradients into float32 parameters are converted
        opt.step({"c": np.array([0.3, -0.7], dtype=np.float64), "s": np.array(1.5)})
    assert params["c"].dtype == dtype and params["s"].dtype == dtype
    for k, v in opt.state_dict().items():
        if isinstance(v, np.ndarray):
            assert v.dtype == dtype, k


def test_float32_step_matches_the_hand_computation():
    p = np.array([1.0, -2.0], dtype=np.float32)
    RMSprop({"p": p}, lr=0.1, alpha=0.9).step({"p": np.array([0.5, -1.0], dtype=np.float32)})
    np.testing.assert_allclose(p, [1.0 - 0.316227766, -2.0 + 0.316227766], rtol=1e-6)


@pytest.mark.parametrize("shape", [(), (1,)])
def test_scalar_strength_parameter(shape):
    s = np.full(shape, 0.5)
    Adam({"s": s}, lr=0.1).step({"s": np.full(shape, 2.0)})
    assert s.shape == shape
    assert float(s.reshape(-1)[0]) == pytest.approx(0.5 - 0.1 * 2.0 / (2.0 + EPS), rel=1e-12)


def test_lr_can_be_changed_between_steps():
    p = np.array([0.0])
    opt = SGD({"p": p}, lr=0.1)
    opt.step({"p": np.array([1.0])})
    opt.lr = 0.5
    opt.step({"p": np.array([1.0])})
    assert p[0] == pytest.approx(-0.6, rel=1e-15)
    with pytest.raises(ConfigError, match="lr"):
        opt.lr = -1.0
    assert opt.lr == 0.5


def test_make_optimizer_builds_each_kind_and_is_case_insensitive():
    params = _params()
    assert type(make_optimizer("rmsprop", params, 1e-2)) is RMSprop
    assert type(make_optimizer("SGD", params, 0.1, momentum=0.9)) is SGD
    adam = make_optimizer("adam", params, 1e-3, betas=(0.5, 0.9), eps=1e-6)
    assert type(adam) is Adam
    assert adam.hyperparameters == {"lr": 1e-3, "beta1": 0.5, "beta2": 0.9, "eps": 1e-6}
    assert isinstance(adam, Optimizer)


# --------------------------------------------------------------------------- validation
def test_make_optimizer_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="'lbfgs'") as info:
        make_optimizer("lbfgs", _params(), 0.1)
    for known in ("adam", "rmsprop", "sgd"):
        assert known in str(info.value)


def test_make_optimizer_unknown_argument():
    with pytest.raises(ConfigError, match="momentum"):
        make_optimizer("rmsprop", _params(), 0.1, momentum=0.9)


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan"), float("inf"), "0.1", True, None])
@pytest.mark.parametrize("name", ["rmsprop", "sgd", "adam"])
def test_bad_lr(name, lr):
    with pytest.raises(ConfigError, match="lr"):
        make_optimizer(name, _params(), lr)


@pytest.mark.parametrize(
    "name, kwargs, word",
    [
        ("rmsprop", {"alpha": 1.0}, "alpha"),
        ("rmsprop", {"alpha": -0.1}, "alpha"),
        ("rmsprop", {"alpha": float("nan")}, "alpha"),
        ("rmsprop", {"eps": 0.0}, "eps"),
        ("rmsprop", {"eps": -1e-8}, "eps"),
        ("adam", {"betas": (1.0, 0.999)}, r"betas\[0\]"),
        ("adam", {"betas": (0.9, -0.5)}, r"betas\[1\]"),
        ("adam", {"betas": (0.9,)}, "betas"),
        ("adam", {"betas": 0.9}, "betas"),
        ("adam", {"eps": 0.0}, "eps"),
        ("sgd", {"momentum": -0.1}, "momentum"),
        ("sgd", {"momentum": float("inf")}, "momentum"),
        ("sgd", {"nesterov": True}, "nesterov"),  # Nesterov needs momentum > 0
        ("sgd", {"momentum": 0.9, "nesterov": "yes"}, "nesterov"),
    ],
)
def test_bad_hyperparameters(name, kwargs, word):
    with pytest.raises(ConfigError, match=word):
        make_optimizer(name, _params(), 0.1, **kwargs)


def test_boundary_hyperparameters_are_accepted():
    # alpha = 0 and beta = 0 are inside [0, 1); momentum 0 without Nesterov is plain SGD.
    make_optimizer("rmsprop", _params(), 0.1, alpha=0.0)
    make_optimizer("adam", _params(), 0.1, betas=(0.0, 0.0))
    make_optimizer("sgd", _params(), 0.1, momentum=0.0)


@pytest.mark.parametrize(
    "params, error, word",
    [
        ({}, ConfigError, "params"),
        ([np.zeros(2)], ConfigError, "params"),
        ({"c": [1.0, 2.0]}, ConfigError, "'c'"),
        ({"c": np.zeros(2, dtype=np.int64)}, ShapeError, "'c'.*int64"),
        ({"c": np.array([1.0, np.nan])}, ShapeError, "'c'"),
        ({1: np.zeros(2)}, ConfigError, "1"),
    ],
)
def test_bad_params(params, error, word):
    with pytest.raises(error, match=word):
        SGD(params, lr=0.1)


def test_read_only_and_aliased_params_are_refused():
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ConfigError, match="'c'.*read-only"):
        SGD({"c": ro}, lr=0.1)
    base = np.zeros(4)
    with pytest.raises(ConfigError, match="shares memory"):
        SGD({"a": base, "b": base[1:3]}, lr=0.1)
    # Disjoint rows of one matrix are fine.
    SGD({"a": base[:2], "b": base[2:]}, lr=0.1)


def _assert_unchanged(params, before, opt, steps):
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert opt.n_steps == steps


@pytest.mark.parametrize(
    "grads, word",
    [
        ({"c": np.zeros(2)}, r"missing \['s'\]"),
        ({"c": np.zeros(2), "s": np.array(0.0), "x": np.zeros(1)}, r"unexpected \['x'\]"),
        ({"c": np.zeros(3), "s": np.array(0.0)}, r"grads\['c'\] has shape \(3,\).*\(2,\)"),
        ({"c": np.zeros(2), "s": np.zeros(1)}, r"grads\['s'\] has shape \(1,\).*\(\)"),
        ({"c": np.zeros((2, 1)), "s": np.array(0.0)}, r"\(2, 1\)"),
        ({"c": np.zeros(2), "s": np.array(np.nan)}, r"'s'.*non-finite"),
        ({"c": np.zeros(2), "s": np.array(-np.inf)}, r"'s'.*non-finite"),
        ({"c": np.array(["a", "b"]), "s": np.array(0.0)}, r"'c'"),
        ([np.zeros(2)], "grads"),
    ],
)
@pytest.mark.parametrize("name", ["rmsprop", "sgd_momentum", "adam"])
def test_step_validation_writes_nothing(name, grads, word):
    params = _params()
    opt = OPTIMIZER_FACTORIES[name](params)
    opt.step({"c": np.ones(2), "s": np.array(1.0)})
    before = {k: v.copy() for k, v in params.items()}
    state_before = opt.state_dict()
    with pytest.raises(ShapeError, match=word):
        opt.step(grads)
    _assert_unchanged(params, before, opt, 1)
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, state_before[k])


def test_float64_gradient_too_large_for_float32_is_refused():
    params = _params(np.float32)
    opt = SGD(params, lr=0.1)
    with pytest.raises(ShapeError, match="'c'.*float32"):
        opt.step({"c": np.array([1e300, 0.0]), "s": np.array(0.0)})
    np.testing.assert_array_equal(params["c"], np.array([1.0, -2.0], dtype=np.float32))


def test_overflowing_update_raises_and_writes_nothing():
    # 1e30 * 1e10 = 1e40 exceeds float32's maximum (3.4e38): the step would write inf. q comes
    # first and its own update is fine and visible (1e30 * 1e-31 = 0.1): a step that wrote
    # each parameter as soon as it was computed would leave q at 0.9.
    p = np.array([1.0], dtype=np.float32)
    q = np.array([1.0], dtype=np.float32)
    opt = SGD({"q": q, "p": p}, lr=1e30)
    with pytest.raises(TrainingError, match="'p'"):
        opt.step({"q": np.array([1e-31]), "p": np.array([1e10])})
    assert p[0] == 1.0 and q[0] == 1.0 and opt.n_steps == 0
    assert isinstance(TrainingError("x"), NmnpError)


# --------------------------------------------------------------------------- load_state_dict
def test_load_state_dict_rejects_a_mismatch_and_changes_nothing():
    params = _params()
    adam = Adam(params, lr=1e-2)
    adam.step({"c": np.ones(2), "s": np.array(1.0)})
    good = adam.state_dict()

    rms = RMSprop(_params(), lr=1e-2)
    with pytest.raises(CheckpointError, match="missing"):
        rms.load_state_dict(good)  # Adam's state into RMSprop

    bad_shape = dict(good, **{"state/exp_avg/c": np.zeros(3)})
    with pytest.raises(CheckpointError, match=r"exp_avg/c.*\(3,\).*\(2,\)"):
        adam.load_state_dict(bad_shape)
    missing = {k: v for k, v in good.items() if k != "state/exp_avg_sq/s"}
    with pytest.raises(CheckpointError, match="exp_avg_sq/s"):
        adam.load_state_dict(missing)
    with pytest.raises(CheckpointError, match="n_steps"):
        adam.load_state_dict(dict(good, n_steps=-1))
    with pytest.raises(CheckpointError, match="finite"):
        adam.load_state_dict(dict(good, **{"state/exp_avg/c": np.array([np.nan, 0.0])}))
    with pytest.raises(ConfigError, match="beta1|betas"):
        adam.load_state_dict(dict(good, beta1=1.5, n_steps=7))
    with pytest.raises(CheckpointError):
        adam.load_state_dict([1, 2])
    # None of the failed loads changed anything (the last one had a valid n_steps = 7).
    for k, v in adam.state_dict().items():
        np.testing.assert_array_equal(v, good[k])


@pytest.mark.parametrize("name", ["rmsprop", "sgd_momentum", "adam"])
def test_load_state_dict_refuses_values_that_overflow_the_parameter_dtype(name):
    # 1e300 is finite in float64 but inf in float32: it must be refused, not stored as inf.
    opt = OPTIMIZER_FACTORIES[name](_params(np.float32))
    good = opt.state_dict()
    entry = next(k for k in good if k.startswith("state/") and k.endswith("/c"))
    with pytest.raises(CheckpointError, match=rf"{entry} .*too large for float32"):
        opt.load_state_dict(dict(good, **{entry: np.full(2, 1e300)}))
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, good[k])
    # The same values are fine for float64 parameters.
    opt64 = OPTIMIZER_FACTORIES[name](_params(np.float64))
    opt64.load_state_dict(dict(opt64.state_dict(), **{entry: np.full(2, 1e300)}))
    np.testing.assert_array_equal(opt64.state_dict()[entry], [1e300, 1e300])


@pytest.mark.parametrize(
    "name, entry",
    [("rmsprop", "state/square_avg/c"), ("adam", "state/exp_avg_sq/c"), ("adam", "state/exp_avg_sq/s")],
)
def test_load_state_dict_refuses_a_negative_average_of_squares(name, entry):
    opt = OPTIMIZER_FACTORIES[name](_params())
    good = opt.state_dict()
    bad = np.full(good[entry].shape, -1.0)
    with pytest.raises(CheckpointError, match=rf"{entry} must be >= 0.*-1"):
        opt.load_state_dict(dict(good, **{entry: bad}))
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, good[k])


def test_load_state_dict_accepts_negative_signed_state():
    # exp_avg and the momentum buffer follow the gradient's sign: negative values are valid.
    adam = OPTIMIZER_FACTORIES["adam"](_params())
    adam.load_state_dict(dict(adam.state_dict(), **{"state/exp_avg/c": np.array([-1.0, -2.0])}))
    sgd = OPTIMIZER_FACTORIES["sgd_momentum"](_params())
    sgd.load_state_dict(dict(sgd.state_dict(), **{"state/momentum_buffer/c": np.array([-1.0, -2.0])}))
    np.testing.assert_array_equal(sgd.state_dict()["state/momentum_buffer/c"], [-1.0, -2.0])


def test_load_state_dict_restores_hyperparameters():
    a = SGD(_params(), lr=0.1, momentum=0.9, nesterov=True)
    b = SGD(_params(), lr=0.5, momentum=0.2)
    b.load_state_dict(a.state_dict())
    assert b.hyperparameters == {"lr": 0.1, "momentum": 0.9, "nesterov": True}


# --------------------------------------------------------------------------- optional oracle
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["rmsprop", "sgd_momentum", "sgd_nesterov", "adam"])
def test_matches_torch_optim(name, dtype):
    torch = pytest.importorskip("torch")
    tdtype = {np.float64: torch.float64, np.float32: torch.float32}[dtype]
    rng = np.random.default_rng(3)
    p0 = rng.normal(size=(4, 3)).astype(dtype)
    grads = [rng.normal(size=(4, 3)).astype(dtype) for _ in range(5)]
    ours = {"p": p0.copy()}
    tp = torch.nn.Parameter(torch.tensor(p0.copy(), dtype=tdtype))
    opt, topt = {
        "rmsprop": (RMSprop(ours, lr=1e-2), torch.optim.RMSprop([tp], lr=1e-2, eps=1e-8)),
        "sgd_momentum": (SGD(ours, lr=0.1, momentum=0.9),
                         torch.optim.SGD([tp], lr=0.1, momentum=0.9)),
        "sgd_nesterov": (SGD(ours, lr=0.1, momentum=0.9, nesterov=True),
                         torch.optim.SGD([tp], lr=0.1, momentum=0.9, nesterov=True)),
        "adam": (Adam(ours, lr=1e-2), torch.optim.Adam([tp], lr=1e-2)),
    }[name]
    for g in grads:
        opt.step({"p": g})
        tp.grad = torch.tensor(g, dtype=tdtype)
        topt.step()
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (1e-5, 1e-6)
    np.testing.assert_allclose(ours["p"], tp.detach().numpy(), rtol=rtol, atol=atol)
    assert ours["p"].dtype == dtype
