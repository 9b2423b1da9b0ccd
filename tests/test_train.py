"""The training loop: it learns, it is reproducible, it never writes NaN silently."""

from __future__ import annotations

import numpy as np
import pytest

from nmnp import ModulatedNetwork, NetworkConfig
from nmnp.continual.runner import ContinualResult, run_stream
from nmnp.errors import ConfigError, TrainingError
from nmnp.train import TrainSettings, train_task
from toy_data import blobs

CONFIG = NetworkConfig(n_inputs=20, n_units=80, inputs_per_unit=4, n_outputs=4, seed=1)


def test_training_lowers_the_loss_and_learns():
    net = ModulatedNetwork(CONFIG)
    t = net.add_task()
    x, y = blobs(0, 256)
    before = net.evaluate(x, y, t)
    report = train_task(net, t, x, y, TrainSettings(epochs=4, batch_size=32), progress=False)
    assert report.epoch_losses[-1] < 0.5 * report.epoch_losses[0]
    assert net.evaluate(x, y, t) > max(0.9, before + 0.3)
    assert report.samples == 4 * 256 and report.steps == 4 * 8 and report.seconds > 0


def test_same_seed_gives_bit_identical_contexts():
    runs = []
    for _ in range(2):
        net = ModulatedNetwork(CONFIG)
        t = net.add_task()
        train_task(net, t, *blobs(0, 256), TrainSettings(epochs=2, batch_size=16, seed=7), progress=False)
        runs.append(net.tasks[t].gains.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    net = ModulatedNetwork(CONFIG)
    t = net.add_task()
    train_task(net, t, *blobs(0, 256), TrainSettings(epochs=2, batch_size=16, seed=8), progress=False)
    assert not np.array_equal(net.tasks[t].gains, runs[0]), "the shuffling seed must matter"


class _Diverging:
    """Wraps a network; its loss turns NaN at a chosen step (as a diverging run would)."""

    def __init__(self, net, bad_step):
        self.net, self.bad_step, self.calls = net, bad_step, 0

    def __getattr__(self, name):
        return getattr(self.net, name)

    def loss_and_grads_batch(self, *args):
        self.calls += 1
        loss, grads, correct = self.net.loss_and_grads_batch(*args)
        return (float("nan") if self.calls == self.bad_step else loss), grads, correct


def test_non_finite_loss_stops_training_with_task_and_step():
    net = ModulatedNetwork(CONFIG)
    t = net.add_task()
    learner = _Diverging(net, bad_step=11)
    snapshot = {}

    class Spy(_Diverging):
        def loss_and_grads_batch(self, *args):
            if self.calls == 10:  # parameters after the last good step
                snapshot["gains"] = net.tasks[t].gains.copy()
            return super().loss_and_grads_batch(*args)

    learner = Spy(net, bad_step=11)
    with pytest.raises(TrainingError, match=r"task id 0, epoch 2, step 3: the loss became nan"):
        train_task(learner, t, *blobs(0, 256), TrainSettings(epochs=2, batch_size=32), progress=False)
    np.testing.assert_array_equal(net.tasks[t].gains, snapshot["gains"])  # the NaN step wrote nothing
    assert np.isfinite(net.tasks[t].gains).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=0), "epochs must be a positive integer"),
        (dict(batch_size=0), "batch size must be a positive integer"),
        (dict(lr=-0.1), "learning rate must be a positive finite number"),
        (dict(lr=float("nan")), "learning rate must be a positive finite number"),
        (dict(max_steps=0), "max_steps must be a positive integer or None, got 0"),
        (dict(max_steps=2.5), "max_steps must be a positive integer or None, got 2.5"),
        (dict(max_steps=True), "max_steps must be a positive integer or None, got True"),
        # True is an int to Python, never a count or a rate (it was accepted as 1)
        (dict(epochs=True), "epochs must be a positive integer, got True"),
        (dict(batch_size=np.True_), "batch size must be a positive integer"),
        (dict(lr=True), "learning rate must be a positive finite number, got True"),
        (dict(seed=-1), "seed must be a non-negative integer, got -1"),
        # the run's seed also seeds its network, whose NetworkConfig refuses 2**63 and above
        (dict(seed=2**63), r"seed must be a non-negative 63-bit integer \(below 2\*\*63\), got 9223372036854775808"),
        (dict(seed=2**200), "seed must be a non-negative 63-bit integer"),
        (dict(encode_cache_mb="64"), "encode_cache_mb must be >= 0, got '64'"),
    ],
)
def test_settings_are_validated(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainSettings(**kwargs)


def test_settings_take_numpy_numbers_and_store_plain_ones():
    """A value read from an array (np.int64(2) epochs, np.float32 learning rate) was refused;
    it is accepted and stored as a Python number, which JSON reports can hold."""
    s = TrainSettings(epochs=np.int64(2), batch_size=np.int32(64), lr=np.float32(0.5), seed=np.uint8(3),
                      max_steps=np.int64(9))
    assert (s.epochs, s.batch_size, s.lr, s.seed, s.max_steps) == (2, 64, 0.5, 3, 9)
    assert all(type(v) in (int, float) for v in (s.epochs, s.batch_size, s.lr, s.seed, s.max_steps))


class _Stream:
    """A minimal stream: task i relabels the blobs by a rotation of the classes."""

    scenario = "task-incremental"

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        from types import SimpleNamespace

        x, y = blobs(i, 256)
        return SimpleNamespace(name=f"shift {i}", x_train=x, y_train=(y + i) % 4,
                               x_test=x[:64], y_test=((y + i) % 4)[:64], classes=None)

    def test_split(self, i):
        task = self[i]
        return task.x_test, task.y_test


def test_run_stream_builds_the_accuracy_matrix_and_forgets_nothing():
    net = ModulatedNetwork(CONFIG)
    result = run_stream(net, _Stream(3), TrainSettings(epochs=3, batch_size=32), progress=False)
    R = result.acc_matrix
    assert R.shape == (3, 3) and np.isnan(R[0, 1]) and np.isnan(R[1, 2])
    for j in range(3):  # the defining property: a column never changes once written
        assert np.all(R[j:, j] == R[j, j])
    assert np.all(np.diag(R) > 0.8)
    assert all(net.tasks[t].frozen for t in range(3))
    # the matrix survives its JSON form exactly
    again = ContinualResult.from_dict(result.to_dict())
    np.testing.assert_array_equal(again.acc_matrix, R)


def test_encoded_set_cache_respects_its_cap_and_changes_nothing_but_speed():
    x, y = blobs(0, 256)
    runs = {}
    for cap in (0.0, 1.0, 0.01):  # off; 1 MiB (fits 256 x 80 float32 = 80 KiB); 10 KiB (does not fit)
        net = ModulatedNetwork(CONFIG)
        t = net.add_task()
        report = train_task(net, t, x, y, TrainSettings(epochs=3, batch_size=32, encode_cache_mb=cap), progress=False)
        runs[cap] = (report, net.tasks[t].gains.copy())
    assert runs[0.0][0].encoded_cache_bytes == 0
    assert runs[1.0][0].encoded_cache_bytes == 256 * 80 * 4
    assert runs[0.01][0].encoded_cache_bytes == 0, "a set larger than the cap must not be cached"
    # the cached path computes the same gradients (summed in another order: float32 tolerance)
    np.testing.assert_allclose(runs[1.0][1], runs[0.0][1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(runs[1.0][0].epoch_losses, runs[0.0][0].epoch_losses, rtol=1e-4)
    np.testing.assert_array_equal(runs[0.01][1], runs[0.0][1])


@pytest.mark.parametrize(
    "epochs, max_steps, plan",
    [
        (3, None, [8, 8, 8]),
        (3, 100, [8, 8, 8]),  # a cap above the total changes nothing
        (3, 24, [8, 8, 8]),
        (3, 10, [8, 2]),  # the second epoch is cut short and the third never runs
        (3, 8, [8]),
        (2, 1, [1]),
    ],
)
def test_steps_per_epoch_follows_the_step_cap(epochs, max_steps, plan):
    settings = TrainSettings(epochs=epochs, batch_size=32, max_steps=max_steps)
    assert settings.steps_per_epoch(256) == plan  # 8 steps of 32 per epoch
    # a last, smaller batch is a step too: 300 samples in batches of 32 are 10 steps
    assert TrainSettings(epochs=2, batch_size=32, max_steps=15).steps_per_epoch(300) == [10, 5]


class _Recorder:
    """Wraps a network; records every batch's loss and hits, and the gains before each step."""

    def __init__(self, net, task):
        self.net, self.task = net, task
        self.losses, self.correct, self.gains_before = [], [], []

    def __getattr__(self, name):
        return getattr(self.net, name)

    def loss_and_grads_batch(self, *args):
        self.gains_before.append(self.net.tasks[self.task].gains.copy())
        loss, grads, correct = self.net.loss_and_grads_batch(*args)
        self.losses.append(loss)
        self.correct.append(correct)
        return loss, grads, correct


def test_step_cap_stops_mid_epoch_and_reports_only_what_it_saw():
    """3 epochs of 8 steps capped at 10: the capped run is the first 10 steps of the uncapped
    one (same shuffling), and its cut-short second epoch averages only its 2 batches."""
    x, y = blobs(0, 256)
    full = ModulatedNetwork(CONFIG)
    t = full.add_task()
    spy = _Recorder(full, t)
    train_task(spy, t, x, y, TrainSettings(epochs=3, batch_size=32, seed=5), progress=False)
    capped = ModulatedNetwork(CONFIG)
    t = capped.add_task()
    spy_capped = _Recorder(capped, t)
    report = train_task(spy_capped, t, x, y, TrainSettings(epochs=3, batch_size=32, seed=5, max_steps=10),
                        progress=False)
    assert (report.steps, report.samples) == (10, 10 * 32)
    assert len(report.epoch_losses) == len(report.epoch_accuracies) == 2
    np.testing.assert_array_equal(spy_capped.losses, spy.losses[:10])
    np.testing.assert_array_equal(capped.tasks[t].gains, spy.gains_before[10])  # after step 10
    assert report.epoch_losses[0] == pytest.approx(np.mean(spy.losses[:8]), rel=1e-12)
    assert report.epoch_losses[1] == pytest.approx(np.mean(spy.losses[8:10]), rel=1e-12)
    assert report.epoch_accuracies == [sum(spy.correct[:8]) / 256, sum(spy.correct[8:10]) / 64]


def test_step_cap_counts_for_the_encoded_set_cache():
    """Caching pays only when two or more epochs run; a cap can leave just one."""
    x, y = blobs(0, 256)
    for max_steps, cached in ((8, False), (9, True)):
        net = ModulatedNetwork(CONFIG)
        t = net.add_task()
        report = train_task(net, t, x, y, TrainSettings(epochs=3, batch_size=32, encode_cache_mb=1.0,
                                                        max_steps=max_steps), progress=False)
        assert report.steps == max_steps
        assert report.encoded_cache_bytes == (256 * 80 * 4 if cached else 0)


def test_an_overflowing_update_stops_training_with_task_and_step():
    """The optimiser refuses an update that would overflow float32 (here SGD at lr 1e300);
    the error names the task, epoch and step like a non-finite loss, and nothing is written."""
    net = ModulatedNetwork(CONFIG)
    t = net.add_task()
    before = net.tasks[t].gains.copy()
    with pytest.raises(TrainingError, match=r"task id 0, epoch 1, step 1: SGD step would make "):
        train_task(net, t, *blobs(0, 64), TrainSettings(batch_size=32, lr=1e300, optimizer="sgd"),
                   progress=False)
    np.testing.assert_array_equal(net.tasks[t].gains, before)


def test_the_largest_seed_agrees_with_network_config():
    from nmnp.config import NetworkConfig

    assert TrainSettings(seed=2**63 - 1).seed == NetworkConfig(seed=2**63 - 1).seed == 2**63 - 1
    for seed in (2**63, np.uint64(2**63)):
        with pytest.raises(ConfigError, match="63-bit"):
            TrainSettings(seed=seed)
        with pytest.raises(ConfigError, match="63-bit"):
            NetworkConfig(seed=seed)


@pytest.mark.parametrize("n", [-5, -1, True, 2.0, "60000", None])
def test_steps_per_epoch_refuses_a_size_that_is_not_one(n):
    """-5 samples gave an empty plan (no steps), as if the set were empty."""
    with pytest.raises(ConfigError, match=r"^n_samples must be a non-negative integer, got "):
        TrainSettings().steps_per_epoch(n)


def test_steps_per_epoch_of_an_empty_set_and_of_numpy_sizes():
    assert TrainSettings().steps_per_epoch(0) == []
    assert TrainSettings(epochs=2, batch_size=128).steps_per_epoch(np.int64(300)) == [3, 3]


def test_set_threads_refuses_a_boolean():
    """set_threads(True) used to run on 1 thread: True is an int to Python."""
    from nmnp.system import set_threads

    for bad in (True, False, np.True_, 1.0, "2"):
        with pytest.raises(ConfigError, match=r"^threads must be a positive integer, got "):
            set_threads(bad)
    assert set_threads(np.int64(1)) == 1
