"""The network: fixed weights from (seed, config), a growing bank of contexts, isolation."""

from __future__ import annotations

import numpy as np
import pytest

from nmnp import FlyNet, ModulatedNetwork, NetworkConfig
from nmnp.errors import ConfigError, ShapeError, TaskError
from nmnp.kernels import reference
from nmnp.train import TrainSettings, train_task

SMALL = NetworkConfig(n_inputs=20, n_units=60, inputs_per_unit=4, n_outputs=5, seed=3)


def toy_data(rng, n=200, n_in=20, n_out=5):
    """A learnable problem: class = which of n_out input blocks carries a bump."""
    y = rng.integers(0, n_out, n)
    x = rng.normal(0, 0.3, (n, n_in)).astype(np.float32)
    block = n_in // n_out
    for i, label in enumerate(y):
        x[i, label * block : (label + 1) * block] += 2.0
    return x, y


def test_flynet_is_the_reference_architecture():
    net = FlyNet(seed=0)
    assert net.encoder_indices.shape == (7840, 7)
    assert net.readout.shape == (10, 7840) and net.readout.dtype == np.float32
    assert np.abs(net.readout).max() <= 1 / np.sqrt(7840)
    assert np.abs(net.readout).max() > 0.99 / np.sqrt(7840)  # uniform over the whole range
    rows = np.sort(net.encoder_indices, axis=1)
    assert (np.diff(rows, axis=1) > 0).all(), "each unit must read k distinct inputs"
    assert rows.min() >= 0 and rows.max() < 784
    # every input is read about 7840 * 7 / 784 = 70 times: the draw is uniform, not clustered
    counts = np.bincount(net.encoder_indices.ravel(), minlength=784)
    assert 40 < counts.mean() - 3 * counts.std() and counts.mean() == pytest.approx(70)
    t = net.add_task()
    ctx = net.tasks[t]
    assert ctx.gains.shape == (7840,) and ctx.strength.shape == (1,)
    assert ctx.gains.std() == pytest.approx(np.sqrt(2 / 7841), rel=0.05)
    assert net.params_per_task == 7841 and net.bytes_per_task == 7841 * 4
    assert net.fixed_params == 7840 * 7 + 10 * 7840


def test_fixed_weights_regenerate_exactly_from_seed_and_config():
    a, b, c = ModulatedNetwork(SMALL), ModulatedNetwork(SMALL), ModulatedNetwork(NetworkConfig(**{**SMALL.to_dict(), "seed": 4}))
    np.testing.assert_array_equal(a.encoder_indices, b.encoder_indices)
    np.testing.assert_array_equal(a.readout, b.readout)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert not np.array_equal(a.readout, c.readout)


def test_fixed_weights_are_read_only():
    """Both fixed arrays: the readout and the encoder's indices (the cuda backend keeps one
    device copy of each per array object, trusting that neither changes)."""
    net = ModulatedNetwork(SMALL)
    with pytest.raises(ValueError, match="read-only"):
        net.readout[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        net.encoder_indices[0, 0] = 0


def test_tasks_grow_without_limit_and_adding_one_changes_nothing_else():
    net = ModulatedNetwork(SMALL)
    first = net.add_task("a")
    saved = net.tasks[first].gains.copy(), net.readout.copy()
    for _ in range(40):
        net.add_task()
    assert net.n_tasks == 41
    np.testing.assert_array_equal(net.tasks[first].gains, saved[0])
    np.testing.assert_array_equal(net.readout, saved[1])
    # contexts are drawn per task id: a fresh network's task 7 equals this one's
    other = ModulatedNetwork(SMALL)
    for _ in range(8):
        other.add_task()
    np.testing.assert_array_equal(other.tasks[7].gains, net.tasks[7].gains)
    assert not np.array_equal(net.tasks[7].gains, net.tasks[8].gains)


def test_training_a_task_touches_only_its_own_context(rng):
    net = ModulatedNetwork(SMALL)
    x, y = toy_data(rng)
    t0 = net.add_task()
    train_task(net, t0, x, y, TrainSettings(epochs=2, batch_size=32), progress=False)
    net.freeze(t0)
    before = net.tasks[t0].gains.copy(), net.tasks[t0].strength.copy(), net.predict(x, t0)
    t1 = net.add_task()
    init1 = net.tasks[t1].gains.copy()
    train_task(net, t1, x[:, ::-1].copy(), y, TrainSettings(epochs=2, batch_size=32), progress=False)
    np.testing.assert_array_equal(net.tasks[t0].gains, before[0])
    np.testing.assert_array_equal(net.tasks[t0].strength, before[1])
    np.testing.assert_array_equal(net.predict(x, t0), before[2])
    assert not np.array_equal(net.tasks[t1].gains, init1), "task 1 should have learned"
    assert net.evaluate(x, y, t0) > 0.8  # the toy problem is learnable


def test_frozen_and_unknown_tasks_are_refused(rng):
    net = ModulatedNetwork(SMALL)
    with pytest.raises(TaskError, match="no tasks yet"):
        net.forward(np.zeros((1, 20)), 0)
    t = net.add_task("first")
    net.freeze(t)
    x, y = toy_data(rng, 10)
    with pytest.raises(TaskError, match=r"task 0 \('first'\) is frozen"):
        train_task(net, t, x, y, progress=False)
    with pytest.raises(TaskError, match=r"unknown task id 3: this network has 1 task\(s\), ids 0..0"):
        net.evaluate(x, y, 3)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((2, 19)), r"inputs must have shape \(batch, 20\)"),
        (np.zeros(20), r"inputs must have shape \(batch, 20\)"),
        (np.array([["a"] * 20]), "real numeric array, got dtype <U1"),
        (np.zeros((2, 20), dtype=bool), "real numeric array, got dtype bool"),
        (np.where(np.eye(2, 20) > 0, np.nan, 0.0), "NaN or infinite values \\(first in sample 0\\)"),
        (np.where(np.eye(3, 20, 2) > 0, np.inf, 0.0), "NaN or infinite values"),
        (np.where(np.eye(4, 20, -3) > 0, -np.inf, 1.0), r"NaN or infinite values \(first in sample 3\)"),
    ],
)
def test_bad_inputs_are_named(x, message):
    net = ModulatedNetwork(SMALL)
    net.add_task()
    with pytest.raises(ShapeError, match=message):
        net.forward(x, 0)


def test_evaluating_on_nothing_is_refused():
    """An accuracy over no samples is 0/0 (NumPy's mean gives nan and a warning), and one over
    no tasks is an empty answer nobody asked for: both are named errors. Classifier.evaluate
    is shared by the network and every comparison strategy."""
    from nmnp.strategies import make_strategy

    empty_x, empty_y = np.zeros((0, 20), np.float32), np.zeros(0, np.int64)
    x, y = np.zeros((3, 20), np.float32), np.array([0, 1, 2])
    net = ModulatedNetwork(SMALL)
    with pytest.raises(ShapeError, match="evaluate_tasks needs at least one task and one sample"):
        net.evaluate_tasks(x, y)  # no tasks yet
    t = net.add_task()
    with pytest.raises(ShapeError, match="evaluate_tasks needs at least one task"):
        net.evaluate_tasks(x, y, [])
    with pytest.raises(ShapeError, match="evaluate_tasks needs at least one task and one sample"):
        net.evaluate_tasks(empty_x, empty_y)
    with pytest.raises(ShapeError, match="cannot evaluate on an empty set"):
        net.evaluate(empty_x, empty_y, t)
    with pytest.raises(ShapeError, match="cannot evaluate on an empty set"):
        net.evaluate(empty_x, [], t)  # an empty list is float64 to NumPy: not a dtype error
    other = make_strategy("separate", SMALL, "numpy")
    with pytest.raises(ShapeError, match="cannot evaluate on an empty set"):
        other.evaluate(empty_x, empty_y, other.add_task())
    assert net.evaluate_tasks(x, y).shape == (1,) and 0 <= net.evaluate(x, y, t) <= 1


def test_bad_labels_are_named():
    net = ModulatedNetwork(SMALL)
    t = net.add_task()
    x = np.zeros((3, 20), np.float32)
    with pytest.raises(ShapeError, match="label 5 is outside the classes 0..4"):
        net.loss_and_grads(x, [0, 5, 1], t)
    with pytest.raises(ShapeError, match=r"labels must have shape \(3,\)"):
        net.loss_and_grads(x, [0, 1], t)
    with pytest.raises(ShapeError, match="labels must be integers"):
        net.loss_and_grads(x, [0.0, 1.0, 2.0], t)
    with pytest.raises(ShapeError, match=r"label 1 is not among this task's classes \[0, 2\]"):
        net.loss_and_grads(x, [0, 1, 2], t, classes=[0, 2])


def test_config_errors_are_named():
    with pytest.raises(ConfigError, match=r"inputs_per_unit \(k=9\) cannot exceed n_inputs \(8\)"):
        NetworkConfig(n_inputs=8, inputs_per_unit=9)
    with pytest.raises(ConfigError, match="n_units must be at least 1"):
        NetworkConfig(n_units=0)
    with pytest.raises(ConfigError, match=r"1000000000000 units x 784 inputs or outputs is too "
                       r"large to regenerate: 784,000,000,000,000 random draws, more than the "
                       r"2,147,483,648 allowed"):
        NetworkConfig(n_inputs=784, n_units=10**12)  # a slip: a MemoryError deep inside before
    NetworkConfig(n_inputs=784, n_units=(1 << 31) // 784)  # the largest allowed is a config
    with pytest.raises(ConfigError, match="dtype must be one of"):
        NetworkConfig(dtype="float16")


def test_backends_agree_on_loss_and_gradients(rng):
    x, y = toy_data(rng, 64)
    results = {}
    for backend in ("numpy", "cpu"):
        net = ModulatedNetwork(SMALL, backend)
        t = net.add_task()
        results[backend] = net.loss_and_grads(x, y, t)
    (la, ga, ca), (lb, gb, cb) = results["numpy"], results["cpu"]
    assert la == pytest.approx(lb, rel=1e-5) and ca == cb
    np.testing.assert_allclose(ga["gains"], gb["gains"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ga["strength"], gb["strength"], rtol=1e-4)


def test_fused_path_matches_layer_by_layer_path(rng):
    """The training hot path (fused kernels) equals encoder -> modulated layer -> loss."""
    net = ModulatedNetwork(NetworkConfig(**{**SMALL.to_dict(), "dtype": "float64"}), "cpu")
    t = net.add_task()
    x, y = toy_data(rng, 33)
    h = reference.encoder_forward(x.astype(np.float64), net.encoder_indices)
    loss_a, grads_a, _ = net.loss_and_grads_batch(x.astype(np.float64), y, t)
    loss_b, grads_b, _ = net.loss_and_grads_from_activity(h, y, net.tasks[t])
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    np.testing.assert_allclose(grads_a["gains"], grads_b["gains"], rtol=1e-10, atol=1e-14)


def test_evaluating_many_tasks_at_once_equals_one_by_one(rng):
    net = ModulatedNetwork(SMALL)
    x, y = toy_data(rng, 50)
    for _ in range(4):
        net.add_task()
    together = net.evaluate_tasks(x, y)
    one_by_one = [net.evaluate(x, y, t) for t in range(4)]
    np.testing.assert_allclose(together, one_by_one)
    assert len(set(one_by_one)) > 1  # different contexts really are different networks


def test_predictions_stay_within_the_task_classes(rng):
    net = ModulatedNetwork(SMALL)
    t = net.add_task()
    x, _ = toy_data(rng, 100)
    assert set(net.predict(x, t, classes=[1, 3]).tolist()) <= {1, 3}


def test_predict_uses_the_fused_kernel_and_gives_the_generic_loops_answer(rng):
    """``predict`` runs ``task_predictions`` once for a whole set; the generic batch loop of
    :class:`~nmnp.model.Classifier` over ``eval_logits`` gives the same class ids."""
    from nmnp.model import Classifier

    net = ModulatedNetwork(SMALL)
    t = net.add_task()
    x, _ = toy_data(rng, 50)
    for classes in (None, [4, 1, 3]):
        np.testing.assert_array_equal(net.predict(x, t, classes, batch_size=7),
                                      Classifier.predict(net, x, t, classes, batch_size=7))


def test_a_subclass_that_changes_eval_logits_is_still_heard(rng):
    class Shifted(ModulatedNetwork):
        def eval_logits(self, x, task_id):
            logits = super().eval_logits(x, task_id)
            logits[:, 2] += 1e6  # class 2 always wins
            return logits

    net = Shifted(SMALL)
    t = net.add_task()
    x, _ = toy_data(rng, 20)
    assert (net.predict(x, t) == 2).all()
    plain = ModulatedNetwork(SMALL)
    assert (plain.predict(x, plain.add_task()) != 2).any()  # same weights, no shift


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_bad_batch_sizes_are_named(rng, batch_size):
    from nmnp.strategies import make_strategy

    x, y = toy_data(rng, 10)
    net = ModulatedNetwork(SMALL)
    t = net.add_task()
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        net.evaluate(x, y, t, batch_size=batch_size)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        net.evaluate_tasks(x, y, batch_size=batch_size)
    other = make_strategy("separate", SMALL, "numpy")  # the generic loop of Classifier
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        other.evaluate(x, y, other.add_task(), batch_size=batch_size)


@pytest.mark.parametrize("given", [np.float32, np.dtype("float32"), "float32"])
def test_the_config_keeps_its_dtype_as_a_name(given, tmp_path):
    """NetworkConfig(dtype=np.dtype("float32")) kept the dtype object: equal configurations
    hashed differently, to_dict was not JSON, and saving failed with a misleading "extra
    cannot be stored as plain JSON"."""
    import json

    import nmnp

    config = NetworkConfig(20, 60, 4, 5, 3, given)
    assert type(config.dtype) is str and config.dtype == "float32"
    assert config == SMALL and hash(config) == hash(SMALL) and len({config, SMALL}) == 1
    assert json.loads(json.dumps(config.to_dict())) == SMALL.to_dict()
    assert NetworkConfig.from_dict(config.to_dict()) == config
    net = ModulatedNetwork(config)
    assert net.dtype == np.float32
    net.add_task("a")
    net.save(tmp_path / "net.nmnp")
    assert nmnp.load(tmp_path / "net.nmnp").config == SMALL
    assert FlyNet(dtype=np.float64).config.dtype == "float64"


@pytest.mark.parametrize("given", [np.float16, np.dtype(">f4"), np.dtype("int32"), "f4", float,
                                   None, np.dtype(object)])
def test_the_config_refuses_other_dtypes(given):
    with pytest.raises(ConfigError, match=r"dtype must be one of \('float32', 'float64'\)"):
        NetworkConfig(20, 60, 4, 5, 3, given)
