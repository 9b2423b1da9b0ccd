"""``skip_unchanged``: a learned task is re-evaluated only when what its predictions read has
changed, and the accuracy matrix is exactly the one every entry measured would give."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from nmnp import ModulatedNetwork, NetworkConfig, checkpoint, cli
from nmnp.cli import main
from nmnp.continual.runner import ContinualResult, run_stream
from nmnp.errors import ConfigError
from nmnp.experiment import ExperimentConfig, run_experiment
from nmnp.strategies import STRATEGIES, make_strategy
from nmnp.train import TrainSettings, train_task
from toy_data import blobs

CONFIG = NetworkConfig(n_inputs=20, n_units=80, inputs_per_unit=4, n_outputs=4, seed=1)
SETTINGS = TrainSettings(epochs=2, batch_size=32)


class Stream:
    """Task i relabels the blobs by a rotation of the classes; counts its test splits."""

    scenario = "task-incremental"

    def __init__(self, n):
        self.n = n
        self.test_splits = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x, y = blobs(i, 192)
        return SimpleNamespace(name=f"shift {i}", x_train=x, y_train=(y + i) % 4, classes=None)

    def test_split(self, i):
        self.test_splits += 1
        x, y = blobs(100 + i, n=64)
        return x, (y + i) % 4


def trained(name, n_tasks):
    learner = make_strategy(name, CONFIG)
    for i in range(n_tasks):
        t = learner.add_task(f"shift {i}")
        x, y = blobs(i, 192)
        train_task(learner, t, x, (y + i) % 4, SETTINGS, progress=False)
        learner.freeze(t)
    return learner


def test_the_digest_sees_every_learned_number_of_a_task():
    net = trained("crwn", 2)
    before = net.prediction_digest(0)
    assert net.prediction_digest(0) == before  # hashing is repeatable
    assert net.prediction_digest(1) != before  # another task learned other numbers
    gains = net.task(0).gains
    old = gains[17]
    gains[17] = np.nextafter(old, np.float32(np.inf))  # one ulp, changed in place
    assert net.prediction_digest(0) != before
    gains[17] = old
    assert net.prediction_digest(0) == before
    net.task(0).strength[0] *= 2
    assert net.prediction_digest(0) != before


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_only_finetune_changes_an_earlier_tasks_predictions(name):
    learner = trained(name, 1)
    first = learner.prediction_digest(0)
    t = learner.add_task("next")
    x, y = blobs(1, 192)
    train_task(learner, t, x, (y + 1) % 4, SETTINGS, progress=False)
    changed = learner.prediction_digest(0) != first
    assert changed == (name == "finetune"), "finetune's shared readout moves; the others' tasks stay"


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_skipping_gives_the_measured_matrix_with_one_test_pass_per_frozen_task(name):
    runs = {}
    for skip in (False, True):
        stream = Stream(4)
        result = run_stream(make_strategy(name, CONFIG), stream, SETTINGS, progress=False, skip_unchanged=skip)
        runs[skip] = (result, stream.test_splits)
    (measured, splits_measured), (skipped, splits_skipped) = runs[False], runs[True]
    np.testing.assert_array_equal(skipped.acc_matrix, measured.acc_matrix)
    assert measured.reused_evaluations == 0 and splits_measured == 10  # 1 + 2 + 3 + 4
    if name == "finetune":
        assert skipped.reused_evaluations == 0 and splits_skipped == 10
        assert not np.all(measured.acc_matrix[1:, 0] == measured.acc_matrix[0, 0])  # it forgets
    else:
        assert skipped.reused_evaluations == 6 and splits_skipped == 4


def test_a_task_changed_between_rows_is_measured_again():
    """The check is real: a frozen task's gains altered after row 1 are seen in row 2, and the
    accuracy there is the altered network's, not the copy."""
    stream = Stream(4)

    def spoil_task_0(result, learner):
        if result.n_tasks == 2:
            learner.task(0).gains[:] = -learner.task(0).gains

    net = ModulatedNetwork(CONFIG)
    R = run_stream(net, stream, SETTINGS, progress=False, on_task_end=spoil_task_0, skip_unchanged=True)
    x, y = stream.test_split(0)
    assert R.acc_matrix[2, 0] == net.evaluate(x, y, 0) != R.acc_matrix[1, 0]
    assert R.acc_matrix[3, 0] == R.acc_matrix[2, 0]
    # row 1 copies task 0; row 2 measures task 0 again and copies task 1; row 3 copies all three
    assert R.reused_evaluations == 1 + 1 + 3


def test_a_learner_that_cannot_name_its_state_is_refused_before_training():
    class Opaque:
        n_tasks = 0

        def add_task(self, name):
            raise AssertionError("training started")

    with pytest.raises(ConfigError, match="skip_unchanged needs a learner .* Opaque does not"):
        run_stream(Opaque(), Stream(2), SETTINGS, progress=False, skip_unchanged=True)


def test_the_count_of_copies_survives_json_and_old_results_read_as_zero():
    result = run_stream(ModulatedNetwork(CONFIG), Stream(3), SETTINGS, progress=False, skip_unchanged=True)
    d = result.to_dict()
    assert d["reused_evaluations"] == 3
    assert ContinualResult.from_dict(json.loads(json.dumps(d))).reused_evaluations == 3
    del d["reused_evaluations"]  # a result written before the field existed
    assert ContinualResult.from_dict(d).reused_evaluations == 0


def test_the_option_is_validated():
    with pytest.raises(ConfigError, match="skip_unchanged must be True or False, got 'yes'"):
        ExperimentConfig(skip_unchanged="yes")


SMALL_RUN = ["--units", "200", "--k", "7", "--threads", "1", "--tasks", "3"]


def test_run_says_how_many_entries_it_copied(tmp_path, capsys):
    js = tmp_path / "r.json"
    assert main(["run", *SMALL_RUN, "--skip-unchanged", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "yes (every column identical); 3 of 6 entries copied, not re-measured" in out
    report = json.loads(js.read_text())
    assert report["reused_evaluations"] == 3 and report["config"]["skip_unchanged"] is True
    assert main(["run", *SMALL_RUN, "--json", str(tmp_path / "m.json")]) == 0
    assert "entries copied" not in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["acc_matrix"] == report["acc_matrix"]


def test_compare_copies_for_frozen_strategies_only(tmp_path, capsys):
    js = tmp_path / "c.json"
    assert main(["compare", *SMALL_RUN, "--strategies", "crwn,finetune", "--skip-unchanged",
                 "--quiet", "--json", str(js)]) == 0
    rows = {r["strategy"]: r for r in json.loads(js.read_text())["table"]}
    assert rows["crwn"]["reused_evaluations"] == 3 and rows["finetune"]["reused_evaluations"] == 0


def test_a_resumed_run_may_switch_skipping_on_or_off(tmp_path):
    path = tmp_path / "run.nmnp"
    config = ExperimentConfig(tasks=4, units=200, threads=1)

    class Stop(Exception):
        pass

    def stop_after_two(result, learner):
        if result.n_tasks == 2:
            raise Stop

    with pytest.raises(Stop):
        run_experiment(config, checkpoint=path, on_task_end=stop_after_two, progress=False)
    assert checkpoint.read_extra(path)["experiment"]["skip_unchanged"] is False
    parse = cli.build_parser().parse_args
    given = cli._resumed_config(parse(["run", "--skip-unchanged", "--resume", str(path)]), path)
    assert given == ExperimentConfig(tasks=4, units=200, threads=1, skip_unchanged=True)
    resumed = run_experiment(given, resume=path, progress=False)
    whole = run_experiment(config, progress=False)
    assert resumed["acc_matrix"] == whole["acc_matrix"]
    # Nothing is remembered across processes: the resumed run measures row 2 whole, then
    # copies tasks 0 to 2 in row 3.
    assert resumed["reused_evaluations"] == 3 and whole["reused_evaluations"] == 0
