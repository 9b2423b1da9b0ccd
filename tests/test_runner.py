"""The runner reads nmnp's streams one split at a time, into two arrays reused for the whole
run, and gives exactly the run that reading whole tasks gives."""

from __future__ import annotations

import numpy as np
import pytest

from nmnp import ModulatedNetwork, NetworkConfig
from nmnp.continual.runner import run_stream
from nmnp.continual.streams import PermutedStream, SplitStream
from nmnp.data.datasets import Dataset, load_dataset
from nmnp.errors import ConfigError
from nmnp.train import TrainSettings

CONFIG = NetworkConfig(n_units=200, seed=3)
SETTINGS = TrainSettings(epochs=3, batch_size=32)


@pytest.fixture(scope="module")
def data():
    d = load_dataset()
    return Dataset(d.name, d.x_train[:600], d.y_train[:600], d.x_test[:200], d.y_test[:200],
                   d.source, d.classes)


class WholeTasks:
    """Any sequence of tasks: only ``len``, ``stream[i]`` and ``test_split(i)``."""

    scenario = "task-incremental"

    def __init__(self, stream):
        self.stream = stream

    def __len__(self):
        return len(self.stream)

    def __getitem__(self, i):
        return self.stream[i]

    def test_split(self, i):
        return self.stream.test_split(i)


def splits_only(base):
    """A subclass of the nmnp stream class ``base`` whose whole tasks cannot be built and
    whose instances record the arrays their splits hand out, so a test sees what the runner
    asked for."""

    class Stream(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.train_arrays, self.test_arrays = [], []

        def __getitem__(self, i):
            raise AssertionError("the runner built a whole task")

        def training_split(self, i, buffers=None):
            x, y = super().training_split(i, buffers)
            self.train_arrays.append(x)
            return x, y

        def test_split(self, i, buffers=None):
            x, y = super().test_split(i, buffers)
            self.test_arrays.append(x)
            return x, y

    return Stream


@pytest.mark.parametrize("kind", ["permuted", "split"])
def test_split_by_split_and_whole_tasks_give_the_same_run(data, kind):
    cls = PermutedStream if kind == "permuted" else SplitStream
    spy = splits_only(cls)(data, n_tasks=3)
    runs = []
    for source in (spy, WholeTasks(cls(data, n_tasks=3))):
        net = ModulatedNetwork(CONFIG)
        result = run_stream(net, source, SETTINGS, progress=False)
        runs.append((result, [np.array(net.tasks[t].gains) for t in range(3)]))
    (a, gains_a), (b, gains_b) = runs
    np.testing.assert_array_equal(a.acc_matrix, b.acc_matrix)
    assert a.task_names == b.task_names
    for ga, gb in zip(gains_a, gains_b):
        np.testing.assert_array_equal(ga, gb)
    chance = 0.1 if kind == "permuted" else 0.5
    assert np.all(np.diag(a.acc_matrix) > chance + 0.2)  # something was learned
    # Three training splits and six test splits; permuted tasks all have one shape, so each
    # kind is one array for the whole run (split tasks differ in size: test_streams.py)
    assert len(spy.train_arrays) == 3 and len(spy.test_arrays) == 6
    if kind == "permuted":
        assert len({id(x) for x in spy.train_arrays}) == 1
        assert len({id(x) for x in spy.test_arrays}) == 1


def test_a_resumed_run_looks_up_earlier_tasks_without_building_them(data):
    net = ModulatedNetwork(CONFIG)
    first = run_stream(net, PermutedStream(data, n_tasks=2), SETTINGS, progress=False)
    before = first.acc_matrix.copy()  # the result grows in place when continued
    spy = splits_only(PermutedStream)(data, n_tasks=3)
    result = run_stream(net, spy, SETTINGS, result=first, progress=False)
    assert result.n_tasks == 3 and len(spy.train_arrays) == 1  # only task 2 was trained
    np.testing.assert_array_equal(result.acc_matrix[:2, :2], before)
    np.testing.assert_array_equal(result.acc_matrix[2, :2], before[1, :2])  # no forgetting


def test_a_learner_that_already_holds_tasks_needs_the_result_it_continues(data):
    net = ModulatedNetwork(CONFIG)
    stream = PermutedStream(data, 2, seed=0)
    run_stream(net, stream, TrainSettings(batch_size=64), progress=False)
    with pytest.raises(ConfigError, match=r"^the learner already holds 2 task\(s\): run a stream "
                                          r"on a fresh learner, or pass the ContinualResult"):
        run_stream(net, stream, TrainSettings(batch_size=64), progress=False)
    assert net.n_tasks == 2  # nothing was added


def test_train_task_and_add_task_name_a_wrong_argument_type(data):
    from nmnp.train import train_task

    net = ModulatedNetwork(CONFIG)
    with pytest.raises(ConfigError, match=r"a task name must be a string, got int 3"):
        net.add_task(3)
    t = net.add_task()
    x, y = data.x_train[:8].reshape(8, -1).astype(np.float32), data.y_train[:8]
    with pytest.raises(ConfigError, match=r"settings must be a TrainSettings, got dict"):
        train_task(net, t, x, y, {"epochs": 1})
    from nmnp.strategies import make_strategy

    with pytest.raises(ConfigError, match="a task name must be a string"):
        make_strategy("separate", CONFIG).add_task(b"bytes")
