"""Comparison strategies: gradients, the SupSup mask, storage arithmetic, the protocol.

Gradient checks follow tests/test_layers.py: float64, central differences, vector-Jacobian
form. Networks are tiny, so the whole file runs in seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nmnp.config import NetworkConfig
from nmnp.errors import BackendError, ConfigError, TaskError
from nmnp.experiment import ExperimentConfig, make_learner
from nmnp.gradcheck import GradientCheckError, check_gradient, numerical_vjp, relative_error
from nmnp.kernels import get_backend
from nmnp.losses import softmax_cross_entropy_forward
from nmnp.model import ModulatedNetwork
from nmnp.strategies import CRWN, DEFAULT_LR, STRATEGIES, FineTune, Separate, SupSup, default_lr, make_strategy
from nmnp.strategies.readout import linear_readout_backward, linear_readout_forward
from nmnp.strategies.supsup import masked_readout_backward, masked_readout_forward, n_kept, top_k_mask
from nmnp.train import TrainSettings, train_task
from purity import assert_backward_is_pure

SMALL = NetworkConfig(n_inputs=20, n_units=60, inputs_per_unit=4, n_outputs=5, seed=3)
TINY64 = NetworkConfig(n_inputs=6, n_units=7, inputs_per_unit=3, n_outputs=4, seed=5, dtype="float64")


def toy_data(rng, n=300, n_in=20, n_out=5, relabel=None):
    """Learnable: the class is which input block carries a bump; ``relabel`` permutes the
    answer (a second task that contradicts the first on the same inputs)."""
    y = rng.integers(0, n_out, n)
    x = rng.normal(0, 0.3, (n, n_in)).astype(np.float32)
    block = n_in // n_out
    for i, label in enumerate(y):
        x[i, label * block : (label + 1) * block] += 2.0
    return x, (y if relabel is None else np.asarray(relabel)[y])


# --------------------------------------------------------------------------- pure layers
def test_linear_readout_gradients(rng):
    h, W, b = rng.normal(size=(3, 5)), rng.normal(size=(4, 5)), rng.normal(size=4)
    z, cache = linear_readout_forward(h, W, b)
    np.testing.assert_allclose(z, h @ W.T + b)
    dz = rng.normal(size=z.shape)
    grads = linear_readout_backward(dz, cache)
    check_gradient(lambda v: linear_readout_forward(h, v, b)[0], W, grads["weight"], dz, name="weight")
    check_gradient(lambda v: linear_readout_forward(h, W, v)[0], b, grads["bias"], dz, name="bias")
    assert_backward_is_pure(linear_readout_backward, dz, cache)


@pytest.mark.parametrize("keep", [0.5, 0.25, 1.0, 0.01])
def test_top_k_mask_keeps_exactly_the_highest_scores(rng, keep):
    scores = rng.normal(size=(3, 7))
    mask = top_k_mask(scores, keep)
    k = n_kept(21, keep)
    assert mask.dtype == bool and mask.shape == (3, 7) and mask.sum() == k
    # an independent oracle: a full sort, the last k positions
    oracle = np.zeros(21, dtype=bool)
    oracle[np.argsort(scores.ravel(), kind="stable")[21 - k :]] = True
    np.testing.assert_array_equal(mask.ravel(), oracle)
    assert scores[mask].min() >= scores[~mask].max() if k < 21 else mask.all()


def test_top_k_mask_count_is_exact_even_with_ties():
    assert top_k_mask(np.zeros((4, 5)), 0.5).sum() == 10
    assert n_kept(78_400, 0.5) == 39_200 and n_kept(3, 0.01) == 1


def test_supsup_forward_uses_exactly_the_top_k_mask(rng):
    h, W, scores = rng.normal(size=(3, 8)), rng.normal(size=(2, 8)), rng.normal(size=(2, 8))
    z, _ = masked_readout_forward(h, W, scores, 0.5)
    order = np.argsort(scores.ravel())
    kept = np.zeros(16)
    kept[order[8:]] = 1.0  # the 8 highest of 16 scores
    np.testing.assert_allclose(z, h @ (W * kept.reshape(2, 8)).T, rtol=1e-12)
    # swapping the scores of a kept and a dropped weight moves the mask, and the logits
    swapped = scores.copy().ravel()
    swapped[[order[7], order[8]]] = swapped[[order[8], order[7]]]
    z2, _ = masked_readout_forward(h, W, swapped.reshape(2, 8), 0.5)
    kept[order[8]], kept[order[7]] = 0.0, 1.0
    np.testing.assert_allclose(z2, h @ (W * kept.reshape(2, 8)).T, rtol=1e-12)
    assert not np.allclose(z, z2)


def test_supsup_straight_through_gradient_matches_its_definition(rng):
    """dScores must equal (finite-difference gradient w.r.t. the effective weights W*M) * W."""
    h, W, scores = rng.normal(size=(4, 6)), rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    z, cache = masked_readout_forward(h, W, scores, 0.5)
    dz = rng.normal(size=z.shape)
    d_scores = masked_readout_backward(dz, cache)["scores"]
    effective = W * top_k_mask(scores, 0.5)
    d_effective = numerical_vjp(lambda v: h @ v.T, effective.copy(), dz)
    assert relative_error(d_scores, d_effective * W) < 1e-6
    # the gradient reaches dropped weights too (that is how a weight gets back in)
    dropped = ~top_k_mask(scores, 0.5)
    assert np.abs(d_scores[dropped]).min() > 0
    # ... and a plausible wrong version, forgetting the factor W, is told apart
    assert relative_error(d_effective, d_effective * W) > 1e-2


# --------------------------------------------------------------------------- whole learners
def _loss_with(learner, key, value, x, y, t, classes):
    params = learner.trainable_params(t)
    saved = params[key].copy()
    params[key][...] = value
    try:
        return learner.loss_and_grads(x, y, t, classes)[0]
    finally:
        params[key][...] = saved


@pytest.mark.parametrize("cls", [FineTune, Separate])
@pytest.mark.parametrize("with_classes", [False, True])
def test_dense_readout_learner_gradients(backend, cls, with_classes):
    learner = cls(TINY64, backend)
    t = learner.add_task()
    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, TINY64.n_inputs))
    classes = np.array([0, 3]) if with_classes else None
    y = rng.choice(classes, size=5) if with_classes else rng.integers(0, 4, size=5)
    params = learner.trainable_params(t)
    params["weight"][...] = rng.normal(size=params["weight"].shape)  # away from the init
    _, grads, _ = learner.loss_and_grads(x, y, t, classes)
    assert set(grads) == {"weight", "bias"}
    for key in ("weight", "bias"):
        f = lambda v, key=key: _loss_with(learner, key, v, x, y, t, classes)
        check_gradient(f, params[key].copy(), grads[key], 1.0, name=f"{cls.name} {key}")
    if with_classes:  # classes that do not compete get no gradient
        assert not grads["weight"][[1, 2]].any() and not grads["bias"][[1, 2]].any()


@pytest.mark.parametrize("with_classes", [False, True])
def test_supsup_learner_straight_through_gradient(backend, with_classes):
    learner = SupSup(TINY64, backend)
    t = learner.add_task()
    rng = np.random.default_rng(11)
    x = rng.normal(size=(5, TINY64.n_inputs))
    classes = np.array([1, 2]) if with_classes else None
    y = rng.choice(classes, size=5) if with_classes else rng.integers(0, 4, size=5)
    _, grads, _ = learner.loss_and_grads(x, y, t, classes)
    W = learner.network.readout
    h = learner.encode(learner.check_inputs(x))
    keep = classes if with_classes else np.arange(4)
    position = {c: i for i, c in enumerate(keep)}

    def loss_of_effective(v):
        return softmax_cross_entropy_forward((h @ v.T)[:, keep], np.array([position[c] for c in y]))[0]

    effective = W * learner.mask(t)
    d_effective = numerical_vjp(loss_of_effective, effective.copy(), 1.0)
    assert relative_error(grads["scores"], d_effective * W) < 1e-6
    # the learner's forward is exactly h (W * top_k(scores))^T
    np.testing.assert_allclose(learner.forward(x, t), h @ effective.T, rtol=1e-10, atol=1e-12)
    assert learner.mask(t).sum() == n_kept(W.size, 0.5)


def test_checker_rejects_a_wrong_straight_through_gradient(rng):
    """A gradient that only reaches the kept weights (a natural slip) must fail the check."""
    h, W, scores = rng.normal(size=(4, 6)), rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    z, cache = masked_readout_forward(h, W, scores, 0.5)
    dz = rng.normal(size=z.shape)
    mask = top_k_mask(scores, 0.5)
    # g(U) = z(W * (M + U)): its derivative at U = 0 is the straight-through gradient
    g = lambda u: h @ (W * (mask + u)).T
    right = masked_readout_backward(dz, cache)["scores"]
    check_gradient(g, np.zeros(W.shape), right, dz, name="scores")
    with pytest.raises(GradientCheckError, match="gradient of scores is wrong"):
        check_gradient(g, np.zeros(W.shape), right * mask, dz, name="scores")


# --------------------------------------------------------------------------- storage
def test_flynet_bytes_per_task_match_the_arithmetic():
    """crwn 7,841 floats; separate 78,410 floats; supsup 78,400 bits; finetune 0 (+ shared)."""
    flynet = ExperimentConfig()  # 784 -> 7840 (k = 7) -> 10, float32
    learners = {name: make_learner(ExperimentConfig(strategy=name)) for name in STRATEGIES}
    assert flynet.network_config() == NetworkConfig.flynet(0)
    crwn, ft, sep, sup = (learners[n] for n in ("crwn", "finetune", "separate", "supsup"))
    assert (crwn.params_per_task, crwn.bytes_per_task) == (7_841, 7_841 * 4)
    assert (sep.params_per_task, sep.bytes_per_task) == (78_410, 78_410 * 4)
    assert (sup.params_per_task, sup.bytes_per_task) == (78_400, 78_400 // 8) == (78_400, 9_800)
    assert (ft.params_per_task, ft.bytes_per_task, ft.shared_bytes) == (78_410, 0, 78_410 * 4)
    assert crwn.shared_bytes == sep.shared_bytes == sup.shared_bytes == 0
    encoder, readout = 7840 * 7, 10 * 7840
    assert crwn.fixed_params == sup.fixed_params == encoder + readout
    assert ft.fixed_params == sep.fixed_params == encoder  # their readout is learned
    assert all(l.fixed_bytes_to_regenerate == 8 for l in learners.values())
    # one shared fixed encoder: only the learning rule differs
    fingerprints = {name: l.fingerprint() for name, l in learners.items()}
    assert len(set(fingerprints.values())) == 1
    for l in learners.values():
        np.testing.assert_array_equal(l.encoder_indices, crwn.encoder_indices)


def test_supsup_stores_its_mask_in_exactly_bytes_per_task(rng):
    odd = NetworkConfig(n_inputs=10, n_units=7, inputs_per_unit=2, n_outputs=3, seed=1)  # 21 bits
    learner = SupSup(odd, "numpy")
    assert learner.bytes_per_task == math.ceil(21 / 8) == 3
    t = learner.add_task()
    x = rng.normal(size=(9, 10)).astype(np.float32)
    before_mask, before_logits = learner.mask(t), learner.forward(x, t)
    learner.freeze(t)
    state = learner.tasks[t].state
    assert set(state) == {"mask_bits"}  # the scores are gone
    assert state["mask_bits"].dtype == np.uint8 and state["mask_bits"].nbytes == learner.bytes_per_task
    np.testing.assert_array_equal(learner.mask(t), before_mask)
    np.testing.assert_array_equal(learner.forward(x, t), before_logits)


# --------------------------------------------------------------------------- protocol
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_refuses_to_train_a_frozen_or_unknown_task(name, rng):
    learner = make_strategy(name, SMALL, "numpy")
    assert learner.name == name
    t = learner.add_task("first")
    x, y = toy_data(rng, n=40)
    learner.freeze(t)
    with pytest.raises(TaskError, match=r"task 0 \('first'\) is frozen"):
        learner.trainable_params(t)
    with pytest.raises(TaskError, match="frozen"):
        train_task(learner, t, x, y, TrainSettings(lr=1e-3), progress=False)
    with pytest.raises(TaskError, match="unknown task id 5"):
        learner.evaluate(x, y, 5)
    assert learner.add_task() == 1  # later tasks still train
    train_task(learner, 1, x, y, TrainSettings(lr=1e-3), progress=False)


def test_unknown_strategy_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="unknown strategy 'ewc'; choose one of crwn, finetune, separate, supsup"):
        make_learner(ExperimentConfig(strategy="ewc"))
    with pytest.raises(ConfigError, match="keep must be a fraction"):
        SupSup(SMALL, "numpy", keep=0.0)
    assert isinstance(make_learner(ExperimentConfig(strategy="crwn", units=60)), ModulatedNetwork)
    assert default_lr("crwn") == 0.01 and set(DEFAULT_LR) == set(STRATEGIES)
    assert default_lr("separate") == 3e-4 and default_lr("separate", "RMSprop") == 5e-5
    assert default_lr("supsup") == default_lr("supsup", "sgd") == 1e-4  # none measured: its default
    with pytest.raises(ConfigError, match="Unknown optimizer name 'foo'"):
        default_lr("crwn", "foo")  # not the strategy's default rate for a name nothing knows
    with pytest.raises(ConfigError, match=r"unknown strategy \['crwn'\]"):
        default_lr(["crwn"])  # a list is not hashable: named, not a raw TypeError


@pytest.mark.parametrize("name", ["finetune", "separate", "supsup"])
def test_fused_evaluation_path_equals_the_training_path(backend, name, rng):
    """Prediction runs the backend's fused encoder+readout kernel; training forms h and uses
    BLAS. Both must compute the same logits."""
    learner = make_strategy(name, SMALL, backend)
    t = learner.add_task()
    for array in learner.trainable_params(t).values():
        array[...] = rng.normal(size=array.shape)  # away from the initial state
    x = learner.check_inputs(rng.normal(size=(37, SMALL.n_inputs)))
    training_path = learner.readout_logits(learner.encode(x), t)
    np.testing.assert_allclose(learner.forward(x, t), training_path, rtol=1e-4, atol=1e-4)
    assert np.abs(training_path).max() > 1  # not trivially zero
    learner.freeze(t)  # SupSup: the packed mask
    np.testing.assert_allclose(learner.forward(x, t), training_path, rtol=1e-4, atol=1e-4)


def test_finetune_forgets_and_the_isolating_strategies_do_not(rng):
    """Two tasks on the same inputs with contradicting labels: the shared readout is
    overwritten, the per-task state of separate, supsup and crwn is not touched."""
    x0, y0 = toy_data(np.random.default_rng(0))
    x1, y1 = toy_data(np.random.default_rng(1), relabel=[1, 2, 3, 4, 0])
    xt, yt = toy_data(np.random.default_rng(2))
    settings = {"finetune": 3e-3, "separate": 3e-3, "supsup": 3e-3, "crwn": 3e-2}
    after = {}
    for name, lr in settings.items():
        learner = make_strategy(name, SMALL, "numpy")
        s = TrainSettings(epochs=8, batch_size=32, lr=lr)
        t0 = learner.add_task()
        train_task(learner, t0, x0, y0, s, progress=False)
        learner.freeze(t0)
        first = learner.evaluate(xt, yt, t0)
        assert first > 0.8, f"{name} did not learn task 0 ({first:.3f})"
        t1 = learner.add_task()
        train_task(learner, t1, x1, y1, s, progress=False)
        after[name] = (first, learner.evaluate(xt, yt, t0))
    first, last = after["finetune"]
    assert last < first - 0.5, f"finetune kept task 0 ({first:.3f} -> {last:.3f})"
    for name in ("separate", "supsup", "crwn"):
        assert after[name][1] == after[name][0], f"{name} changed task 0: {after[name]}"


@pytest.mark.parametrize("name", ["finetune", "separate", "supsup"])
def test_strategies_learn_a_split_task_among_its_own_classes(name, rng):
    learner = make_strategy(name, SMALL, "cpu")
    x, y = toy_data(rng)
    keep = np.isin(y, [1, 3])
    t = learner.add_task()
    report = train_task(learner, t, x[keep], y[keep], TrainSettings(epochs=3, batch_size=32, lr=3e-3),
                        classes=[1, 3], progress=False)
    assert report.samples == 3 * keep.sum()
    predictions = learner.predict(x[keep], t, classes=[1, 3])
    assert set(np.unique(predictions)) <= {1, 3}
    assert learner.evaluate(x[keep], y[keep], t, classes=[1, 3]) > 0.9


def test_crwn_strategy_is_the_model_itself():
    a, b = CRWN(SMALL, "numpy"), ModulatedNetwork(SMALL, "numpy")
    assert isinstance(a, ModulatedNetwork) and a.fingerprint() == b.fingerprint()
    assert a.params_per_task == b.params_per_task == 61


# A learner that has learned, moved to another backend (ReadoutStrategy.set_backend).
SWITCHED = NetworkConfig(n_inputs=20, n_units=60, inputs_per_unit=4, n_outputs=5, seed=3)


@pytest.mark.parametrize("name", ["finetune", "separate", "supsup"])
def test_a_strategy_moved_to_another_backend_predicts_as_before(fast_backend, name, rng):
    """set_backend swaps the fixed encoder's kernels under a learner that has learned: its
    tasks predict what they predicted on the numpy reference, within float32 rounding."""
    learner = make_strategy(name, SWITCHED, "numpy")
    t = learner.add_task()
    for array in learner.trainable_params(t).values():
        array[...] = rng.normal(size=array.shape)  # away from the initial state
    learner.freeze(t)  # SupSup: the packed mask
    x = learner.check_inputs(rng.normal(size=(37, SWITCHED.n_inputs)))
    reference, encoded = learner.forward(x, t), learner.encode(x)
    learner.set_backend(fast_backend)
    assert learner.backend == fast_backend and learner.kernels is get_backend(fast_backend)
    np.testing.assert_allclose(learner.forward(x, t), reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(learner.encode(x), encoded, rtol=1e-5, atol=1e-5)  # training's path
    assert np.abs(reference).max() > 1  # not trivially zero
    # the same classes wherever the best two logits are further apart than that rounding
    best_two = np.sort(reference, axis=1)[:, -2:]
    clear = best_two[:, 1] - best_two[:, 0] > 1e-3
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(learner.predict(x, t)[clear], reference.argmax(axis=1)[clear])


def test_a_strategy_refuses_an_unknown_backend_and_keeps_its_own(rng):
    """BackendError naming the choices, and no half-made switch: the learner goes on with
    the backend it had."""
    learner = make_strategy("separate", SWITCHED, "numpy")
    t = learner.add_task()
    x = learner.check_inputs(rng.normal(size=(9, SWITCHED.n_inputs)))
    before = learner.forward(x, t)
    message = r"^unknown backend 'gpu'; choose one of numpy, cpu, cuda$"
    with pytest.raises(BackendError, match=message):
        learner.set_backend("gpu")
    assert learner.backend == "numpy"
    np.testing.assert_array_equal(learner.forward(x, t), before)


def sweep_pairs(text: str) -> dict:
    """{(strategy, optimiser): {rate: accuracy}} from scripts/lr_sweep.py's output lines."""
    import re

    table = {}
    for line in text.splitlines():
        m = re.match(r"\s+(\w+)\s+(rmsprop|adam|sgd)\s+(.*)$", line)
        if m:
            table[m[1], m[2]] = {float(r): float(a) for r, a in re.findall(r"([\d.e-]+) -> ([\d.]+)", m[3])}
    return table


def test_the_quoted_learning_rate_sweep_is_the_scripts_output():
    """Every 'rate -> accuracy' the strategies' docstring quotes is in results/lr-sweep.txt,
    which scripts/lr_sweep.py writes; a figure typed by hand, or left from an older run, fails."""
    import re
    from pathlib import Path

    import nmnp.strategies as strategies

    measured = sweep_pairs((Path(__file__).parents[1] / "results" / "lr-sweep.txt").read_text())
    doc = strategies.__doc__
    section = doc[doc.index("Default training recipes"):doc.index("An optimiser given without")]
    quoted = {}
    for bullet in re.split(r"\n\* ", section)[1:]:
        strategy = "supsup" if bullet.startswith("``supsup``") else "separate"
        for optimizer, rest in re.findall(r"(RMSprop|Adam):(.*?)(?=(?:RMSprop|Adam):|$)", bullet, re.S):
            for rate, acc in re.findall(r"\*{0,2}([\d.]+e-\d+) -> (\d\.\d{3})", rest):
                quoted[strategy, optimizer.lower(), float(rate)] = float(acc)
    assert len(quoted) == 7 + 4 + 6
    for (strategy, optimizer, rate), acc in quoted.items():
        assert measured[strategy, optimizer][rate] == acc, (strategy, optimizer, rate)
    crwn = re.search(r"crwn with RMSprop 0.01 scores (\d\.\d{3}) on the same run, with Adam 0.01 (\d\.\d{3})",
                     " ".join(section.split()))
    assert (measured["crwn", "rmsprop"][0.01], measured["crwn", "adam"][0.01]) == (
        float(crwn[1]), float(crwn[2]))
    # the check reads what it claims: a changed figure is caught
    assert sweep_pairs("  separate  adam     0.0003 -> 0.851")["separate", "adam"][3e-4] != quoted[
        "separate", "adam", 3e-4]
