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


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(settings={"epochs": 1}), r"^settings must be a TrainSettings, got dict \(e\.g\. TrainSettings"),
        (dict(stream=5), r"^stream must be a sequence of tasks \(len\(stream\) and stream\[i\]\), got int$"),
        (dict(stream="tasks"), r"^stream must be a sequence of tasks .*, got str$"),
        (dict(result={"acc_matrix": []}), r"^result must be a ContinualResult or None, got dict"),
        (dict(on_task_end="print"), r"^on_task_end must be callable or None, got str$"),
        (dict(skip_unchanged="no"), r"^skip_unchanged must be True or False, got 'no'$"),
        (dict(progress="quiet"), r"^progress must be True, False or None, got 'quiet'$"),
    ],
)
def test_a_bad_argument_is_refused_before_the_learner_changes(data, change, message):
    """Settings used to be checked by train_task, after the runner had added the task: the
    call failed, and left a task behind that made the next, correct call fail too."""
    net = ModulatedNetwork(CONFIG)
    stream = PermutedStream(data, 1, seed=0)
    args = {"stream": stream, "settings": TrainSettings(batch_size=64), **change}
    kwargs = {k: v for k, v in change.items() if k not in ("stream", "settings")}
    with pytest.raises(ConfigError, match=message):
        run_stream(net, args["stream"], args["settings"], progress=kwargs.pop("progress", False), **kwargs)
    assert net.n_tasks == 0
    result = run_stream(net, stream, TrainSettings(batch_size=64), progress=False)  # now it runs
    assert result.n_tasks == 1 and net.n_tasks == 1


def test_numpy_booleans_are_accepted_for_skip_unchanged(data):
    net = ModulatedNetwork(CONFIG)
    result = run_stream(net, PermutedStream(data, 2, seed=0), TrainSettings(batch_size=64),
                        progress=np.False_, skip_unchanged=np.True_)
    assert result.reused_evaluations == 1  # task 0's second evaluation was copied


def test_a_learner_without_the_protocol_is_named_before_anything(data):
    class NoEvaluate:
        n_tasks = 0

        def add_task(self, name):
            raise AssertionError("a task was added")

        def freeze(self, task_id):
            pass

    with pytest.raises(ConfigError, match=r"^the learner must have add_task, freeze and evaluate .*"
                                          r"NoEvaluate lacks evaluate$"):
        run_stream(NoEvaluate(), PermutedStream(data, 1, seed=0), progress=False)


# --------------------------------------------------------------------------- ContinualResult.from_dict
GOOD = {"acc_matrix": [[0.5], [0.4, 0.6]], "task_names": ["a", "b"], "train_seconds": [1.0, 2.0],
        "train_samples": [30, 40], "epoch_losses": [[1.0], [0.5, 0.4]], "reused_evaluations": 1}


def test_from_dict_reads_what_to_dict_wrote():
    from nmnp.continual.runner import ContinualResult

    result = ContinualResult.from_dict(GOOD)
    assert result.to_dict() == GOOD
    np.testing.assert_array_equal(result.acc_matrix, [[0.5, np.nan], [0.4, 0.6]])
    assert ContinualResult.from_dict(ContinualResult().to_dict()).n_tasks == 0  # no task yet
    old = {k: v for k, v in GOOD.items() if k not in ("epoch_losses", "reused_evaluations")}
    assert ContinualResult.from_dict(old).epoch_losses == [[], []]  # written before they existed


@pytest.mark.parametrize("d, message", [
    ({}, "^a run result needs acc_matrix, task_names, train_seconds, train_samples; it has nothing$"),
    ([], "^a run result must be a dict, got list$"),
    ({**GOOD, "acc_matrix": [[0.5], [0.5]]}, r"^acc_matrix row 1 must hold 2 accuracies \(tasks 0 to 1\), got 1$"),
    ({**GOOD, "acc_matrix": [[0.5], [0.4, 0.6, 0.7]]}, "^acc_matrix row 1 must hold 2 accuracies"),
    ({**GOOD, "acc_matrix": [[0.5], [0.4, 5.0]]}, r"^acc_matrix: R\[1, 1\] is 5\.0, outside \[0, 1\]"),
    ({**GOOD, "acc_matrix": [[0.5], [0.4, None]]}, r"^acc_matrix\[1\]\[1\] must be a finite number, got None$"),
    ({**GOOD, "acc_matrix": [[True], [0.4, 0.6]]}, r"^acc_matrix\[0\]\[0\] must be a finite number, got True$"),
    ({**GOOD, "acc_matrix": "0.5"}, "^acc_matrix must be a list, got str$"),
    ({**GOOD, "acc_matrix": [0.5, [0.4, 0.6]]}, "^acc_matrix row 0 must be a list, got float$"),
    ({**GOOD, "task_names": ["a"]}, "^task_names has 1 entries for a 2-task accuracy matrix$"),
    ({**GOOD, "task_names": ["a", 2]}, r"^task_names\[1\] must be a str, got 2$"),
    ({**GOOD, "train_seconds": [1.0]}, "^train_seconds has 1 entries for a 2-task"),
    ({**GOOD, "train_seconds": [1.0, float("inf")]}, r"^train_seconds\[1\] must be a finite number >= 0, got inf$"),
    ({**GOOD, "train_samples": [30, -1]}, r"^train_samples\[1\] must be an integer >= 0, got -1$"),
    ({**GOOD, "train_samples": [30, 4.5]}, r"^train_samples\[1\] must be an integer >= 0, got 4\.5$"),
    ({**GOOD, "epoch_losses": [[1.0]]}, "^epoch_losses has 1 entries for a 2-task"),
    ({**GOOD, "epoch_losses": [[1.0], "x"]}, r"^epoch_losses\[1\] must be a list, got str$"),
    ({**GOOD, "epoch_losses": [[1.0], [float("nan")]]}, r"^epoch_losses\[1\]\[0\] must be a finite number, got nan$"),
    ({**GOOD, "reused_evaluations": 2}, "^reused_evaluations is 2, more than the 1 entries below the diagonal"),
    ({**GOOD, "reused_evaluations": True}, "^reused_evaluations must be an integer >= 0, got True$"),
])
def test_from_dict_names_what_is_malformed(d, message):
    """from_dict({}) raised a raw KeyError, and a row of the wrong length was padded with NaN
    and trained on."""
    from nmnp.continual.runner import ContinualResult

    with pytest.raises(ConfigError, match=message):
        ContinualResult.from_dict(d)


def interrupt_training_of(learner, task_id, after_steps):
    """Make the learner's ``after_steps``-th training step of ``task_id`` raise
    KeyboardInterrupt, as Ctrl-C would, after the earlier steps have changed its parameters."""
    steps = {"n": 0}
    original = learner.loss_and_grads_batch

    def step(x, y, t, classes=None):
        if t == task_id:
            steps["n"] += 1
            if steps["n"] == after_steps:
                raise KeyboardInterrupt
        return original(x, y, t, classes)

    learner.loss_and_grads_batch = step


@pytest.mark.parametrize("strategy", ["crwn", "finetune", "separate", "supsup"])
def test_a_task_stopped_part_way_is_taken_out_and_the_run_continues_as_if_uninterrupted(
        data, strategy):
    from nmnp.continual.runner import ContinualResult
    from nmnp.strategies import make_strategy

    stream = PermutedStream(data, n_tasks=3, seed=1)
    whole = make_strategy(strategy, CONFIG)
    uninterrupted = run_stream(whole, stream, SETTINGS, progress=False)

    learner = make_strategy(strategy, CONFIG)
    state_after_first = []
    result = ContinualResult()  # grown in place, so it survives the interrupt
    interrupt_training_of(learner, task_id=1, after_steps=5)
    with pytest.raises(KeyboardInterrupt):
        run_stream(learner, stream, SETTINGS, result=result, progress=False,
                   on_task_end=lambda res, lrn: state_after_first.append(
                       {k: np.array(v) for k, v in lrn.prediction_state(0).items()}))
    assert learner.n_tasks == 1 and result.n_tasks == 1  # the half-trained task is gone
    for name, value in learner.prediction_state(0).items():  # finetune: its readout is back
        np.testing.assert_array_equal(value, state_after_first[0][name], err_msg=name)

    del learner.loss_and_grads_batch  # the class's method again
    continued = run_stream(learner, stream, SETTINGS, result=result, progress=False)
    assert continued is result and learner.n_tasks == 3
    np.testing.assert_array_equal(continued.acc_matrix, uninterrupted.acc_matrix)
    for t in range(3):
        for name, value in learner.prediction_state(t).items():
            np.testing.assert_array_equal(value, whole.prediction_state(t)[name], err_msg=name)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the divergence
def test_a_task_whose_training_diverges_is_taken_out(data):
    from nmnp.continual.runner import ContinualResult
    from nmnp.errors import TrainingError

    net = ModulatedNetwork(CONFIG)
    result = ContinualResult()
    stream = PermutedStream(data, n_tasks=2, seed=1)
    run_stream(net, PermutedStream(data, n_tasks=1, seed=1), SETTINGS, result=result,
               progress=False)
    with pytest.raises(TrainingError, match="task 2 of 2"):
        run_stream(net, stream, TrainSettings(epochs=1, batch_size=32, lr=1e30), result=result,
                   progress=False)
    assert net.n_tasks == 1 and result.n_tasks == 1
    run_stream(net, stream, SETTINGS, result=result, progress=False)  # a smaller rate
    assert net.n_tasks == 2 and result.n_tasks == 2


def test_a_failing_on_task_end_keeps_the_task_it_reports(data):
    from nmnp.continual.runner import ContinualResult

    net = ModulatedNetwork(CONFIG)
    result = ContinualResult()

    def disk_full(res, lrn):
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space"):
        run_stream(net, PermutedStream(data, n_tasks=2, seed=1), SETTINGS, result=result,
                   progress=False, on_task_end=disk_full)
    assert net.n_tasks == 1 and result.n_tasks == 1  # recorded before the hook ran


def test_remove_last_task_refuses_what_it_cannot_undo(data):
    from nmnp.errors import TaskError
    from nmnp.strategies import make_strategy

    with pytest.raises(TaskError, match="holds no task to remove"):
        ModulatedNetwork(CONFIG).remove_last_task()
    with pytest.raises(TaskError, match="holds no task to remove"):
        make_strategy("separate", CONFIG).remove_last_task()
    finetune = make_strategy("finetune", CONFIG)
    run_stream(finetune, PermutedStream(data, n_tasks=2, seed=1), SETTINGS, progress=False)
    finetune.remove_last_task()
    with pytest.raises(TaskError, match="only its newest task, once"):
        finetune.remove_last_task()
    assert finetune.n_tasks == 1


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the divergence
def test_a_learner_without_remove_last_task_keeps_the_task_and_cannot_be_continued(data):
    from nmnp.continual.runner import ContinualResult
    from nmnp.errors import TrainingError

    class Keeper(ModulatedNetwork):
        remove_last_task = None  # a learner written before the protocol had it

    net, result = Keeper(CONFIG), ContinualResult()
    stream = PermutedStream(data, n_tasks=1, seed=1)
    with pytest.raises(TrainingError):
        run_stream(net, stream, TrainSettings(epochs=1, lr=1e30), result=result, progress=False)
    assert net.n_tasks == 1 and result.n_tasks == 0
    with pytest.raises(ConfigError, match="holds 1 task"):
        run_stream(net, stream, SETTINGS, result=result, progress=False)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the divergence
def test_a_removal_that_refuses_does_not_hide_the_error_that_stopped_the_task(data):
    from nmnp.continual.runner import ContinualResult
    from nmnp.errors import TaskError, TrainingError

    class Refuser(ModulatedNetwork):
        def remove_last_task(self):
            raise TaskError("cannot undo")

    net, result = Refuser(CONFIG), ContinualResult()
    with pytest.raises(TrainingError):  # the divergence, not the TaskError of the removal
        run_stream(net, PermutedStream(data, n_tasks=1, seed=1),
                   TrainSettings(epochs=1, lr=1e30), result=result, progress=False)
    assert net.n_tasks == 1 and result.n_tasks == 0
