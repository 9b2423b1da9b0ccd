"""Bad input: each case raises the library's own error with one line naming the problem, and
nothing is written or changed.

The messages of ``forward``/``loss_and_grads`` for wrong shapes, dtypes, NaN inputs and
labels are asserted in test_model.py, and damaged checkpoints in test_checkpoint.py; here
are the same mistakes on the way into *training* (the context must stay untouched), through
the command line (one line, status 2, no file written) and for data folders and IDX files.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import nmnp
from nmnp import cli
from nmnp.continual.runner import run_stream
from nmnp.data.datasets import Dataset, load_dataset
from nmnp.data.idx import write_idx
from nmnp.errors import ConfigError, DataError, DataWarning, ShapeError, TaskError
from nmnp.experiment import ExperimentConfig, run_experiment
from nmnp.model import ModulatedNetwork, NetworkConfig
from nmnp.train import TrainSettings, train_task

CONFIG = NetworkConfig(n_inputs=20, n_units=40, inputs_per_unit=3, n_outputs=4, seed=2)
SMALL_RUN = ["--units", "200", "--threads", "1", "--quiet"]


def net_with_task():
    net = ModulatedNetwork(CONFIG)
    net.add_task("a")
    return net


def data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 20)).astype(np.float32), rng.integers(0, 4, n)


def run_cli(capsys, *argv):
    try:
        code = cli.main(["run", *argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_cli_error(code, err, message):
    assert code == 2 and err.count("\n") == 1 and err.startswith("nmnp"), err
    assert "Traceback" not in err
    assert message in err, err


# --------------------------------------------------------------------------- training input
def _nan_inputs():
    x, y = data()
    x[7, 3] = np.nan
    return x, y


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: (data()[0][:, :19], data()[1]), ShapeError, r"inputs must have shape \(batch, 20\)"),
        (lambda: (data()[0].astype(complex), data()[1]), ShapeError, "real numeric array, got dtype complex128"),
        (_nan_inputs, ShapeError, r"inputs contain NaN or infinite values \(first in sample 7\)"),
        # finite, but the encoder's float32 sums of 3 such inputs overflow
        (lambda: (np.full((6, 20), 3e38, np.float32), data(6)[1]), ShapeError,
         r"inputs must lie within \+-1e\+18, got 3e\+38 in sample 0: normalise them first"),
        # finite in float64, infinite once converted to the model's float32
        (lambda: (np.where(np.eye(4, 20, 1) > 0, 1e300, 0.0), data(4)[1]), ShapeError,
         r"inputs are too large for float32 \(sample 0 overflows when converted\)"),
        (lambda: (data()[0], np.full(32, 4)), ShapeError, "label 4 is outside the classes 0..3"),
        (lambda: (data()[0], data()[1][:31]), ShapeError, r"labels must have shape \(32,\), got \(31,\)"),
        (lambda: (data()[0][:0], data()[1][:0]), ConfigError, "task 0 has no training samples"),
    ],
)
def test_bad_training_data_is_refused_before_any_step(make, error, message):
    net = net_with_task()
    before = net.tasks[0].gains.copy(), net.tasks[0].strength.copy()
    x, y = make()
    with pytest.raises(error, match=message):
        train_task(net, 0, x, y, TrainSettings(batch_size=8), progress=False)
    np.testing.assert_array_equal(net.tasks[0].gains, before[0])
    np.testing.assert_array_equal(net.tasks[0].strength, before[1])
    train_task(net, 0, *data(), TrainSettings(batch_size=8), progress=False)  # the checker can fail:
    assert not np.array_equal(net.tasks[0].gains, before[0])  # good data does change the context


def test_labels_outside_the_task_classes_are_refused():
    net = net_with_task()
    x, y = data()
    with pytest.raises(ShapeError, match=r"label \d is not among this task's classes \[0, 1\]"):
        train_task(net, 0, x, y, classes=[0, 1], progress=False)
    with pytest.raises(ShapeError, match=r"classes must be distinct ids in 0..3, got \[0, 0\]"):
        train_task(net, 0, x, y % 2, classes=[0, 0], progress=False)


def test_unknown_and_frozen_tasks_change_nothing():
    net = net_with_task()
    with pytest.raises(TaskError, match=r"unknown task id 1: this network has 1 task\(s\), ids 0..0"):
        train_task(net, 1, *data(), progress=False)
    with pytest.raises(TaskError, match="unknown task id -1"):
        net.evaluate_tasks(*data(), task_ids=[0, -1])
    net.freeze(0)
    before = net.tasks[0].gains.copy()
    with pytest.raises(TaskError, match=r"task 0 \('a'\) is frozen and cannot be trained"):
        train_task(net, 0, *data(), progress=False)
    np.testing.assert_array_equal(net.tasks[0].gains, before)
    assert net.n_tasks == 1


def test_a_frozen_task_is_never_retrained_by_a_continued_stream():
    """Continuing a stream with a learner that already holds task 0 trains task 1 only."""
    from types import SimpleNamespace

    from nmnp.continual.runner import ContinualResult

    x, y = data()
    task = SimpleNamespace(name="t", x_train=x, y_train=y, x_test=x, y_test=y, classes=None)

    class Stream:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return task

        def test_split(self, i):
            return x, y

    net = net_with_task()
    net.freeze(0)
    before = net.tasks[0].gains.copy()
    result = ContinualResult(np.full((1, 1), 0.5), ["t"], [0.1], [32], [[1.0]])
    run_stream(net, Stream(), TrainSettings(batch_size=8), result=result, progress=False)
    np.testing.assert_array_equal(net.tasks[0].gains, before)
    assert net.n_tasks == 2 and result.acc_matrix.shape == (2, 2)


# --------------------------------------------------------------------------- output paths
@pytest.mark.parametrize("option", ["--json", "--plot", "--checkpoint"])
def test_an_output_folder_that_does_not_exist_stops_the_run_before_training(tmp_path, capsys, option):
    target = tmp_path / "missing" / ("out.png" if option == "--plot" else "out.file")
    code, out, err = run_cli(capsys, *SMALL_RUN, "--tasks", "1", option, str(target))
    assert_cli_error(code, err, f"nmnp: error: cannot write {target}: folder {target.parent} does not exist")
    assert "after task" not in out and list(tmp_path.iterdir()) == []


def test_an_output_path_that_is_a_folder_is_refused(tmp_path, capsys):
    code, _, err = run_cli(capsys, *SMALL_RUN, "--tasks", "1", "--json", str(tmp_path))
    assert_cli_error(code, err, f"cannot write {tmp_path}: it is a folder")


# --------------------------------------------------------------------------- data folders
@pytest.fixture
def data_dir(tmp_path):
    """A complete, tiny Fashion-MNIST-format folder (gzip-free IDX files)."""
    folder = tmp_path / "fashion"
    folder.mkdir()
    rng = np.random.default_rng(0)
    write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 255, (64, 28, 28), dtype=np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, 64).astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 255, (16, 28, 28), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 16).astype(np.uint8))
    return folder


def test_the_tiny_data_folder_is_valid(data_dir, tmp_path, capsys):
    """The damaged-folder tests below start from this folder, which does load and run (with
    a warning that it is not the full dataset)."""
    with pytest.warns(DataWarning, match="fashion-mnist files of an unexpected size"):
        assert len(load_dataset("fashion-mnist", data_dir).x_train) == 64
    code, _, err = run_cli(capsys, "--dataset", "fashion-mnist", "--data-dir", str(data_dir),
                           "--units", "30", "--threads", "1", "--tasks", "1", "--quiet")
    assert code == 0 and err.startswith("nmnp: warning: fashion-mnist files of an unexpected size")


def test_a_missing_data_folder(tmp_path, capsys):
    code, _, err = run_cli(capsys, *SMALL_RUN, "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "nope"))
    assert_cli_error(code, err, f"data_dir {tmp_path / 'nope'} does not exist or is not a folder")


def test_a_data_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_bytes(b"x")
    code, _, err = run_cli(capsys, *SMALL_RUN, "--dataset", "mnist", "--data-dir", str(tmp_path / "file"))
    assert_cli_error(code, err, "does not exist or is not a folder")


def test_a_data_folder_without_the_files(data_dir, capsys):
    (data_dir / "t10k-labels-idx1-ubyte").unlink()
    code, _, err = run_cli(capsys, *SMALL_RUN, "--dataset", "fashion-mnist", "--data-dir", str(data_dir))
    assert_cli_error(code, err, "does not hold the fashion-mnist files")
    assert "missing t10k-labels-idx1-ubyte.gz" in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_data_file(data_dir, capsys):
    target = data_dir / "train-labels-idx1-ubyte"
    target.chmod(0)
    try:
        code, _, err = run_cli(capsys, *SMALL_RUN, "--dataset", "fashion-mnist", "--data-dir", str(data_dir))
    finally:
        target.chmod(0o644)
    assert_cli_error(code, err, f"IDX file {target} cannot be read")


def test_an_unreadable_data_file_reported_by_the_os(data_dir, capsys, monkeypatch):
    """The same as above where permissions cannot be taken away (root): the read fails."""
    from pathlib import Path

    real = Path.read_bytes

    def denied(self):
        if self.name == "train-labels-idx1-ubyte":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    code, _, err = run_cli(capsys, *SMALL_RUN, "--dataset", "fashion-mnist", "--data-dir", str(data_dir))
    assert_cli_error(code, err, "train-labels-idx1-ubyte cannot be read (Permission denied)")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b"\x08\x00" + b[2:], "has a wrong magic number: expected 00 00 <type> <ndim>, found 08 00 08 03"),
        (lambda b: b[:-100], "is truncated: header (64, 28, 28) promises 50192 bytes, found 50092"),
        (lambda b: b[:6], "is truncated: its 3-dimension header needs 16 bytes, found 6"),
    ],
)
def test_a_damaged_idx_file_is_named(data_dir, capsys, damage, message):
    target = data_dir / "train-images-idx3-ubyte"
    target.write_bytes(damage(target.read_bytes()))
    code, out, err = run_cli(capsys, *SMALL_RUN, "--dataset", "fashion-mnist", "--data-dir", str(data_dir))
    assert_cli_error(code, err, f"IDX file {target} {message}")
    with pytest.raises(DataError, match="IDX file"):
        load_dataset("fashion-mnist", data_dir)


# --------------------------------------------------------------------------- checkpoints via the CLI
@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    d = load_dataset()
    small = Dataset(d.name, d.x_train[:640], d.y_train[:640], d.x_test[:100], d.y_test[:100], d.source, d.classes)
    path = tmp_path_factory.mktemp("ck") / "run.nmnp"
    run_experiment(ExperimentConfig(tasks=1, units=200, threads=1), dataset=small, checkpoint=path, progress=False)
    return path.read_bytes()


def _newer(b):
    return b[:8] + (3).to_bytes(4, "little") + b[12:]


def _other_network(b):
    """The stored run says 200 units; a checkpoint of a 300-unit network under its name."""
    from nmnp import checkpoint

    extra = checkpoint.from_bytes(b).extra
    return checkpoint.to_bytes(ModulatedNetwork(ExperimentConfig(units=300).network_config()), extra)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "is truncated: it has"),
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "is damaged: its SHA-256 checksum does not match its content"),
        (_newer, "has format version 3, written by a newer nmnp; this nmnp (0.1.0) reads format versions 1 to 2"),
        (lambda b: b"PK\x03\x04" + b[4:], "is not an nmnp checkpoint"),
        (_other_network, "is from another network configuration: n_units 300 (checkpoint) vs 200 (expected)"),
    ],
)
def test_a_bad_checkpoint_stops_a_resume_and_is_left_as_it_was(stored_run, tmp_path, capsys, damage, message):
    path = tmp_path / "run.nmnp"
    path.write_bytes(damage(stored_run))
    before = path.read_bytes()
    code, out, err = run_cli(capsys, "--resume", str(path), "--json", str(tmp_path / "r.json"))
    assert_cli_error(code, err, message)
    assert path.read_bytes() == before and not (tmp_path / "r.json").exists()
    assert "after task" not in out


def test_the_undamaged_checkpoint_resumes(stored_run, tmp_path, capsys):
    path = tmp_path / "run.nmnp"
    path.write_bytes(stored_run)
    assert nmnp.load(path).n_tasks == 1
    code, _, err = run_cli(capsys, "--resume", str(path), "--quiet")
    assert code == 0, err



# --------------------------------------------------------------------------- inputs: the limits
def test_inputs_up_to_the_limit_are_accepted_and_beyond_it_refused():
    from nmnp.model import MAX_ABS_INPUT

    net = net_with_task()
    x = np.zeros((3, 20), np.float32)
    x[1, 4] = -MAX_ABS_INPUT
    assert net.check_inputs(x)[1, 4] == np.float32(-MAX_ABS_INPUT)
    x[2, 5] = np.nextafter(np.float32(MAX_ABS_INPUT), np.float32(np.inf))
    with pytest.raises(ShapeError, match=r"got 1e\+18 in sample 2"):
        net.check_inputs(x)


# --------------------------------------------------------------------------- the trusting paths
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_methods_taking_encoder_activity_check_its_shape_and_dtype(backend):
    """They skip the encoder and trust the values, but a wrong width once read out of bounds
    in a kernel, and integer activity gave zero logits."""
    net = ModulatedNetwork(CONFIG, backend)
    t = net.add_task()
    x, y = data(5)
    h = net.encode(x)
    good = net.logits_from_activity(h, net.task(t))
    np.testing.assert_allclose(good, net.forward(x, t), rtol=1e-6)
    for bad, message in ((h[:, :39], r"shape \(batch, 40\), got \(5, 39\)"),
                         (h[0], r"shape \(batch, 40\), got \(40,\)"),
                         (h.astype(np.int64), "must be float32 like the model, got int64")):
        with pytest.raises(ShapeError, match=message):
            net.logits_from_activity(bad, net.task(t))
        with pytest.raises(ShapeError, match=message):
            net.loss_and_grads_encoded(bad, y, t)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_the_training_hot_paths_refuse_unchecked_inputs_and_unknown_tasks(backend):
    net = ModulatedNetwork(CONFIG, backend)
    t = net.add_task()
    x, y = data(8)
    x = net.check_inputs(x)
    loss, _, _ = net.loss_and_grads_batch(x, y, t)
    assert np.isfinite(loss)
    with pytest.raises(ShapeError, match=r"\(batch, 20\) float32, got \(8, 13\) float32"):
        net.loss_and_grads_batch(x[:, :13], y, t)
    with pytest.raises(ShapeError, match=r"got \(8, 20\) float64"):
        net.loss_and_grads_batch(x.astype(np.float64), y, t)
    with pytest.raises(ShapeError, match=r"got \(8, 13\)"):
        net.encode_dataset(x[:, :13])
    h = net.encode_dataset(x)
    for task_id in (-1, 1):  # -1 once read the last task
        with pytest.raises(TaskError, match=f"unknown task id {task_id}"):
            net.loss_and_grads_batch(x, y, task_id)
        with pytest.raises(TaskError, match=f"unknown task id {task_id}"):
            net.loss_and_grads_encoded(h, y, task_id)


@pytest.mark.parametrize("classes, message", [
    ([1.9, 0.2], "classes must be integer class ids in 0..3, got dtype float64"),  # once truncated
    (["a", "b"], "classes must be integer class ids in 0..3, got dtype <U1"),
    ([True, False], "classes must be integer class ids in 0..3, got dtype bool"),
])
def test_classes_must_be_integer_ids(classes, message):
    net = net_with_task()
    x, _ = data(4)
    with pytest.raises(ShapeError, match=message):
        net.predict(x, 0, classes=classes)
    assert set(net.predict(x, 0, classes=[1, 0]).tolist()) <= {0, 1}  # only those compete


def test_wrong_kinds_of_argument_are_named_not_raw_python_errors():
    """Each of these raised a raw TypeError or AttributeError from deep inside."""
    from nmnp.errors import BackendError
    from nmnp.kernels import get_backend
    from nmnp.optim import make_optimizer

    with pytest.raises(BackendError, match=r"unknown backend \['cpu'\]"):
        get_backend(["cpu"])  # unhashable
    with pytest.raises(ConfigError, match=r"Unknown optimizer name \['sgd'\]"):
        make_optimizer(["sgd"], {"w": np.zeros(2)}, 0.1)
    with pytest.raises(ConfigError, match="a ModulatedNetwork needs a NetworkConfig, got NoneType"):
        ModulatedNetwork(None)
    with pytest.raises(ConfigError, match="Unknown optimizer name 'foo'"):
        TrainSettings(optimizer="foo")  # at construction, not when the first task trains
    net = net_with_task()
    x, y = data(4)
    with pytest.raises(TaskError, match="task_ids must be a sequence of task ids, got 0"):
        net.evaluate_tasks(x, y, 0)
    assert net.evaluate_tasks(x, y, [0]).shape == (1,)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_a_context_replaced_by_one_of_another_shape_is_refused(backend, tmp_path):
    """The cpu kernels read n_units gains whatever the array holds (past its end for a short
    one), and save wrote a file that load refused."""
    from nmnp.errors import CheckpointError

    net = ModulatedNetwork(CONFIG, backend)
    t = net.add_task("short")
    x, y = data(4)
    net.tasks[t].gains = np.ones(5, np.float32)
    with pytest.raises(ShapeError, match=r"task 0 \('short'\) has gains of shape \(5,\).*expected \(40,\)"):
        net.predict(x, t)
    with pytest.raises(ShapeError, match="has gains of shape"):
        net.loss_and_grads_batch(net.check_inputs(x), y, t)
    with pytest.raises(CheckpointError, match=r"has gains of shape \(5,\), expected \(40,\), so it was not saved"):
        net.save(tmp_path / "net.nmnp")
    assert not (tmp_path / "net.nmnp").exists()


# --------------------------------------------------------------------------- every learner
LEARNERS = ["crwn", "finetune", "separate", "supsup"]


def learner_with_task(name, backend="cpu"):
    from nmnp.strategies import make_strategy

    learner = make_strategy(name, CONFIG, backend)
    learner.add_task("a")
    return learner


@pytest.mark.parametrize("name", LEARNERS)
def test_evaluate_refuses_labels_outside_its_classes_as_training_does(name):
    """evaluate(classes=[0, 1]) on labels 0..3 once scored the 2s and 3s as wrong (no
    prediction can match them) and returned a low accuracy without a word."""
    learner = learner_with_task(name)
    x, y = data(16)
    message = r"label [23] is not among this task's classes \[0, 1\]"
    with pytest.raises(ShapeError, match=message):
        learner.loss_and_grads(x, y, 0, classes=[0, 1])
    with pytest.raises(ShapeError, match=message):
        learner.evaluate(x, y, 0, classes=[0, 1])
    with pytest.raises(ShapeError, match=r"label 3 is not among this task's classes \[1, 0\]"):
        learner.evaluate(x, np.full(16, 3), 0, classes=np.array([1, 0], np.uint8))
    inside = y % 2
    accuracy = learner.evaluate(x, inside, 0, classes=[0, 1])  # the same call, labels inside
    assert accuracy == np.mean(learner.predict(x, 0, classes=[0, 1]) == inside)


@pytest.mark.parametrize("name", LEARNERS)
@pytest.mark.parametrize("classes, shape", [([[0, 1], [2, 3]], r"\(2, 2\)"), (1, r"\(\)"),
                                            (np.zeros((1, 2), np.int64), r"\(1, 2\)")])
def test_classes_that_are_not_one_dimensional_are_refused(name, classes, shape):
    """[[0, 1], [2, 3]] was flattened into four competing classes."""
    learner = learner_with_task(name)
    x, y = data(8)
    message = rf"classes must be a 1-D sequence of class ids in 0..3, got shape {shape}$"
    for call in (lambda: learner.predict(x, 0, classes=classes),
                 lambda: learner.evaluate(x, y, 0, classes=classes),
                 lambda: learner.loss_and_grads(x, y, 0, classes=classes),
                 lambda: learner.check_classes(classes)):
        with pytest.raises(ShapeError, match=message):
            call()
    assert learner.check_classes([0, 1, 2, 3]).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("name", LEARNERS)
def test_the_training_steps_check_their_classes(name):
    """loss_and_grads_encoded raised AttributeError ('list' object has no attribute 'size')
    for classes=[0, 1] and IndexError for [0, 9]; loss_and_grads_batch did the same, and
    took a label of -1 for the last class."""
    learner = learner_with_task(name)
    x, y = data(8)
    x = learner.check_inputs(x)
    paths = [("batch", lambda c, labels: learner.loss_and_grads_batch(x, labels, 0, c))]
    if hasattr(learner, "loss_and_grads_encoded"):
        h = learner.encode_dataset(x)
        paths.append(("encoded", lambda c, labels: learner.loss_and_grads_encoded(h, labels, 0, c)))
    for _, step in paths:
        loss = step(np.array([0, 1]), y % 2)[0]
        assert step([0, 1], y % 2)[0] == loss  # a list is checked and converted, not refused
        for bad, message in (([0, 9], r"distinct ids in 0..3, got \[0, 9\]"),
                             ([-1, 0], r"distinct ids in 0..3, got \[-1, 0\]"),
                             ([[0, 1]], r"1-D sequence of class ids in 0..3, got shape \(1, 2\)"),
                             ([0.0, 1.0], "integer class ids in 0..3, got dtype float64")):
            with pytest.raises(ShapeError, match=message):
                step(bad, y % 2)
        for labels, shown in ((np.where(y % 2, -1, 0), "-1"), (y % 2 + 100, "10[01]"),
                              (y % 2 + 2**40, r"\d+")):
            with pytest.raises(ShapeError, match=rf"label {shown} is not among this task's "
                                                 r"classes \[0, 3\]"):
                step([0, 3], labels)


def test_encode_dataset_checks_its_batch_size():
    """-1 returned uninitialised memory, 0 a raw ValueError from range(), 2.5 a TypeError."""
    net = net_with_task()
    x = net.check_inputs(data(10)[0])
    for bad in (-1, 0, 2.5, True, "8"):
        with pytest.raises(ConfigError, match=rf"batch_size must be a positive integer, got {bad!r}"):
            net.encode_dataset(x, bad)
    np.testing.assert_allclose(net.encode_dataset(x, 3), net.encode(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(net.encode_dataset(x, None), net.encode_dataset(x))
    y = np.zeros(10, np.int64)
    for call in (lambda b: net.predict(x, 0, batch_size=b),
                 lambda b: net.evaluate(x, y, 0, batch_size=b),
                 lambda b: net.evaluate_tasks(x, y, batch_size=b)):
        with pytest.raises(ConfigError, match=r"batch_size must be a positive integer, got -1"):
            call(-1)
        call(3)


@pytest.mark.parametrize("name", LEARNERS)
def test_an_empty_task_name_is_refused(name):
    """add_task("") silently named the task "task 1"."""
    learner = learner_with_task(name)
    with pytest.raises(ConfigError, match=r'a task name must not be empty; pass None .* "task <id>"'):
        learner.add_task("")
    assert learner.n_tasks == 1  # nothing was added
    assert learner.tasks[learner.add_task()].name == "task 1"
    assert learner.tasks[learner.add_task(" ")].name == " "  # a name, kept as given


def test_a_uint64_class_id_is_shown_as_given():
    """18446744073709551615 was shown wrapped to -1."""
    net = net_with_task()
    with pytest.raises(ShapeError, match=r"got \[0, 18446744073709551615\]$"):
        net.check_classes(np.array([0, 2**64 - 1], np.uint64))
    with pytest.raises(ShapeError, match="label 18446744073709551615 is outside the classes 0..3"):
        net.check_labels(np.array([0, 2**64 - 1], np.uint64), 2)
    assert net.check_classes(np.array([3, 0], np.uint64)).tolist() == [3, 0]


@pytest.mark.parametrize("name", LEARNERS)
def test_ragged_lists_are_named_not_a_raw_numpy_error(name):
    """NumPy's "inhomogeneous shape" ValueError reached the caller."""
    learner = learner_with_task(name)
    x, y = data(3)
    ragged_x = [x[0].tolist(), x[1].tolist()[:5], x[2].tolist()]
    ragged_y = [0, [1, 2], 3]
    rectangular = r"must be a rectangular array, got a ragged nested sequence"
    with pytest.raises(ShapeError, match="^inputs " + rectangular):
        learner.forward(ragged_x, 0)
    with pytest.raises(ShapeError, match="^inputs " + rectangular):
        learner.evaluate(ragged_x, y, 0)
    with pytest.raises(ShapeError, match="^labels " + rectangular):
        learner.evaluate(x, ragged_y, 0)
    with pytest.raises(ShapeError, match="^labels " + rectangular):
        learner.loss_and_grads(x, ragged_y, 0)
    with pytest.raises(ShapeError, match="^classes " + rectangular):
        learner.predict(x, 0, classes=[0, [1, 2]])
    assert learner.forward(x.tolist(), 0).shape == (3, 4)  # a rectangular list is fine
