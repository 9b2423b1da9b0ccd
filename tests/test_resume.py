"""Resumable runs: a run killed mid-task and resumed ends exactly where an uninterrupted run
does (same seed, backend and thread count), and a diverging run keeps its last good checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nmnp
from nmnp import checkpoint, cli
from nmnp.continual.runner import ContinualResult, run_stream
from nmnp.data.datasets import Dataset, load_dataset
from nmnp.errors import CheckpointError, ConfigError, TrainingError
from nmnp.experiment import ExperimentConfig, run_experiment
from nmnp.model import ModulatedNetwork
from nmnp.train import TrainSettings

ROOT = Path(__file__).resolve().parents[1]
# Any fixed thread count makes runs reproducible; one thread keeps these tests fast on a busy
# shared machine (test_determinism.py covers two threads).
THREADS = 1
SMALL_RUN = ["--units", "200", "--k", "7", "--threads", str(THREADS), "--quiet"]


@pytest.fixture(scope="module")
def small_data():
    """A fifth of the shipped subset: enough to learn something, fast to train."""
    d = load_dataset()
    return Dataset(d.name, d.x_train[:1200], d.y_train[:1200], d.x_test[:300], d.y_test[:300],
                   d.source, d.classes)


def config(**kw):
    return ExperimentConfig(**{"tasks": 3, "units": 200, "threads": THREADS, **kw})


class Crash(Exception):
    """Stands for the process dying right after a task's checkpoint was written."""


def crash_after(n_tasks):
    def hook(result, learner):
        if result.n_tasks == n_tasks:
            raise Crash
    return hook


def contexts(path):
    return [(c.gains, c.strength) for c in checkpoint.load(path).tasks]


# --------------------------------------------------------------------------- the kill test
@pytest.mark.slow
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_accuracy_matrix(tmp_path, capsys):
    """SIGKILL a real `nmnp run` in the middle of its second task, resume it, and compare
    with an uninterrupted run of the same seed, backend and thread count."""
    ck = tmp_path / "run.nmnp"
    # 4 tasks of 2 epochs at batch 16: each task is hundreds of steps, so the kill, sent as soon
    # as the first checkpoint exists, lands in the middle of some later task however fast
    # the machine is.
    args = SMALL_RUN + ["--tasks", "4", "--seed", "5", "--batch-size", "16", "--epochs", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmnp", "run", *args, "--checkpoint", str(ck)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (ck.exists() and len(checkpoint.describe(ck)["tasks"]) >= 1):
            assert proc.poll() is None, f"the run ended early: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = checkpoint.describe(ck)["tasks"]
    assert 1 <= len(done) < 4, "the kill must land before the run's last task is finished"
    assert all(
        p.name in ("run.nmnp", "run.nmnp.lock") or p.name.startswith(".run.nmnp.")
        for p in tmp_path.iterdir()
    )  # at most a stray temporary file from a kill during a write; never a damaged checkpoint
    # The killed run's lock file stays behind, unlocked (the kernel released it): the resume
    # below must take it, and remove it when done.
    assert (tmp_path / "run.nmnp.lock").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "nmnp", "run", "--resume", str(ck), "--json", str(tmp_path / "r.json"),
         "--threads", str(THREADS)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after task {len(done)} of 4" in resumed.stdout
    assert not (tmp_path / "run.nmnp.lock").exists()

    # The uninterrupted run, in this process (same code, seed, backend and thread count).
    assert cli.main(["run", *args, "--json", str(tmp_path / "full.json")]) == 0
    capsys.readouterr()
    full = json.loads((tmp_path / "full.json").read_text())
    again = json.loads((tmp_path / "r.json").read_text())
    assert again["acc_matrix"] == full["acc_matrix"]  # exact, not approximate
    assert len(full["acc_matrix"]) == 4 and again["resumed_from"]["tasks_done"] == len(done)
    assert again["config"] == full["config"]


# --------------------------------------------------------------------------- in-process resume
def test_resume_after_a_crash_gives_bit_identical_contexts_and_matrix(tmp_path, small_data):
    cfg = config(seed=2)
    full = run_experiment(cfg, dataset=small_data, checkpoint=tmp_path / "full.nmnp", progress=False)
    ck = tmp_path / "crashed.nmnp"
    with pytest.raises(Crash):
        run_experiment(cfg, dataset=small_data, checkpoint=ck, on_task_end=crash_after(1), progress=False)
    assert nmnp.load(ck).n_tasks == 1
    out = run_experiment(cfg, dataset=small_data, resume=ck, progress=False)
    assert out["acc_matrix"] == full["acc_matrix"]
    assert out["resumed_from"] == {"checkpoint": str(ck), "tasks_done": 1, "threads": THREADS}
    for (g1, s1), (g2, s2) in zip(contexts(ck), contexts(tmp_path / "full.nmnp"), strict=True):
        np.testing.assert_array_equal(g1, g2)
        np.testing.assert_array_equal(s1, s2)
    # the checker can fail: a different seed gives a different run
    other = run_experiment(config(seed=3, tasks=1), dataset=small_data, progress=False)
    assert other["acc_matrix"][0] != full["acc_matrix"][0]


@pytest.mark.parametrize("strategy", ["finetune", "separate", "supsup"])
def test_every_strategy_resumes_after_a_crash_to_the_uninterrupted_run(tmp_path, small_data, strategy):
    cfg = config(seed=2, strategy=strategy)
    full = run_experiment(cfg, dataset=small_data, checkpoint=tmp_path / "full.nmnp", progress=False)
    ck = tmp_path / "crashed.nmnp"
    with pytest.raises(Crash):
        run_experiment(cfg, dataset=small_data, checkpoint=ck, on_task_end=crash_after(1), progress=False)
    assert checkpoint.describe(ck)["learner"] == strategy and nmnp.load(ck).n_tasks == 1
    out = run_experiment(cfg, dataset=small_data, resume=ck, progress=False)
    assert out["acc_matrix"] == full["acc_matrix"] and len(out["acc_matrix"]) == 3
    resumed, uninterrupted = nmnp.load(ck), nmnp.load(tmp_path / "full.nmnp")
    assert type(resumed).__name__ == type(uninterrupted).__name__ != "ModulatedNetwork"
    for t in range(3):  # every learned array, shared ones included, to the bit
        assert resumed.prediction_digest(t) == uninterrupted.prediction_digest(t)
    # the checker can fail: a different seed learns different arrays
    other = tmp_path / "other.nmnp"
    run_experiment(config(seed=3, tasks=1, strategy=strategy), dataset=small_data, checkpoint=other,
                   progress=False)
    assert nmnp.load(other).prediction_digest(0) != uninterrupted.prediction_digest(0)


def test_resuming_a_finished_run_trains_nothing(tmp_path, small_data):
    cfg = config(tasks=1)
    ck = tmp_path / "a.nmnp"
    first = run_experiment(cfg, dataset=small_data, checkpoint=ck, progress=False)
    before = ck.read_bytes()
    again = run_experiment(cfg, dataset=small_data, resume=ck, progress=False)
    assert again["acc_matrix"] == first["acc_matrix"] and ck.read_bytes() == before


def test_saving_a_resumed_run_elsewhere_leaves_the_original(tmp_path, small_data):
    cfg = config(tasks=2)
    ck = tmp_path / "a.nmnp"
    with pytest.raises(Crash):
        run_experiment(cfg, dataset=small_data, checkpoint=ck, on_task_end=crash_after(1), progress=False)
    before = ck.read_bytes()
    run_experiment(cfg, dataset=small_data, resume=ck, checkpoint=tmp_path / "b.nmnp", progress=False)
    assert ck.read_bytes() == before
    assert nmnp.load(tmp_path / "b.nmnp").n_tasks == 2


# --------------------------------------------------------------------------- refusals
@pytest.fixture
def one_task_run(tmp_path, small_data):
    ck = tmp_path / "run.nmnp"
    with pytest.raises(Crash):
        run_experiment(config(), dataset=small_data, checkpoint=ck, on_task_end=crash_after(1), progress=False)
    return ck, ck.read_bytes()


def test_resume_with_another_configuration_is_refused(one_task_run, small_data):
    ck, before = one_task_run
    with pytest.raises(ConfigError, match=r"cannot resume .*run.nmnp with a different configuration: lr 0.1 vs 0.01; seed 1 vs 0 \(given vs stored\)"):
        run_experiment(config(lr=0.1, seed=1), dataset=small_data, resume=ck, progress=False)
    # where the data files are does not change the run
    out = run_experiment(config(data_dir="/elsewhere"), dataset=small_data, resume=ck, progress=False)
    assert len(out["acc_matrix"]) == 3
    assert nmnp.load(ck).n_tasks == 3


def test_an_existing_checkpoint_is_never_overwritten_by_a_new_run(one_task_run, small_data):
    ck, before = one_task_run
    with pytest.raises(ConfigError, match="checkpoint .*run.nmnp already exists; resume that run or choose another path"):
        run_experiment(config(), dataset=small_data, checkpoint=ck, progress=False)
    assert ck.read_bytes() == before


def test_a_plain_model_checkpoint_is_not_a_run(tmp_path, small_data):
    path = ModulatedNetwork(config().network_config()).save(tmp_path / "model.nmnp")
    with pytest.raises(CheckpointError, match="holds a learner but no run to resume"):
        run_experiment(config(), dataset=small_data, resume=path, progress=False)


def test_a_result_from_another_run_is_refused_before_training(small_data):
    from nmnp.continual.streams import make_stream

    stream = make_stream("rotated", small_data, 3, step=10.0)
    net = ModulatedNetwork(config().network_config())
    net.add_task("rotate 0°")
    result = ContinualResult(np.full((1, 1), 0.5), ["rotate 5°"], [1.0], [10], [[1.0]])
    with pytest.raises(ConfigError, match="task 0 of the result to continue is 'rotate 5°' but the stream's task 0 is 'rotate 0°'"):
        run_stream(net, stream, result=result, progress=False)
    result.task_names = ["rotate 0°"]
    net.add_task()
    with pytest.raises(ConfigError, match=r"the learner holds 2 task\(s\) but the result to continue records 1"):
        run_stream(net, stream, result=result, progress=False)
    assert net.n_tasks == 2  # nothing was added or trained


# --------------------------------------------------------------------------- divergence
def test_a_diverging_run_stops_with_task_and_step_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    """The loss turns NaN at step 3 of the second task: the run stops through the command
    line with one line naming task, epoch and step, and the checkpoint written after the
    first task is byte-for-byte what it was, and loads."""
    ck = tmp_path / "run.nmnp"
    real = ModulatedNetwork.loss_and_grads_batch
    seen = {"steps": 0}

    def diverging(self, x, y, task_id, classes=None):
        loss, grads, correct = real(self, x, y, task_id, classes)
        if task_id == 1:
            seen["steps"] += 1
            if seen["steps"] == 3:
                seen["checkpoint"] = ck.read_bytes()  # the last good checkpoint, as it is now
                return float("nan"), grads, correct
        return loss, grads, correct

    monkeypatch.setattr(ModulatedNetwork, "loss_and_grads_batch", diverging)
    code = cli.main(["run", *SMALL_RUN, "--tasks", "3", "--checkpoint", str(ck)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("nmnp: error: task id 1 (task 2 of 3, rotate 10°), epoch 1, step 3: the loss became nan; try a smaller learning rate")
    assert f"{ck} still holds every task finished before" in err
    assert ck.read_bytes() == seen["checkpoint"]
    assert checkpoint.read_extra(ck)["result"]["task_names"] == ["rotate 0°"]
    assert nmnp.load(ck).n_tasks == 1


def test_a_huge_learning_rate_really_diverges_and_is_reported(tmp_path, small_data):
    """No injected NaN: RMSprop with lr 1e30 overflows on its own."""
    ck = tmp_path / "run.nmnp"
    with pytest.raises(TrainingError, match=r"task id 0 \(task 1 of \d+, [^)]*\), epoch 1, step \d+: the loss became (nan|inf)"):
        with np.errstate(all="ignore"):
            run_experiment(config(lr=1e30), dataset=small_data, checkpoint=ck, progress=False)
    assert not ck.exists()  # no task finished, so nothing was saved
    assert os.listdir(ck.parent) == []


# --------------------------------------------------------------------------- a damaged result
def resealed_with(ck, path, **changes):
    """A copy of the checkpoint ``ck`` whose stored run result has ``changes``, with a valid
    checksum (as an edit by hand, or a bug in an earlier nmnp, would leave it)."""
    stored = checkpoint.read(ck)
    extra = json.loads(json.dumps(stored.extra))
    extra["result"].update(changes)
    checkpoint.save(stored.model, path, extra=extra)
    return path


@pytest.mark.parametrize("changes, message", [
    ({"acc_matrix": [[0.5, 0.5]]}, r"acc_matrix row 0 must hold 1 accuracies \(tasks 0 to 0\), got 2"),
    ({"acc_matrix": [[5.0]]}, r"acc_matrix: R\[0, 0\] is 5\.0, outside \[0, 1\]"),
    ({"task_names": []}, "task_names has 0 entries for a 1-task accuracy matrix"),
    ({"train_seconds": [-1.0]}, r"train_seconds\[0\] must be a finite number >= 0, got -1\.0"),
])
def test_a_stored_result_that_is_malformed_is_refused_before_any_training(
        one_task_run, tmp_path, small_data, capsys, changes, message):
    """Such a result used to be trained on for a whole task, then failed saving with "extra
    cannot be stored as plain JSON (Out of range float values ...)"."""
    ck, _ = one_task_run
    damaged = resealed_with(ck, tmp_path / "damaged.nmnp", **changes)
    before = damaged.read_bytes()
    trained = []
    with pytest.raises(CheckpointError, match=rf"^checkpoint {re.escape(str(damaged))} holds an invalid run result \({message}"):
        run_experiment(config(), dataset=small_data, resume=damaged, progress=False,
                       on_task_end=lambda result, learner: trained.append(result.n_tasks))
    assert trained == [] and damaged.read_bytes() == before
    code = cli.main(["run", "--resume", str(damaged)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert re.match(rf"nmnp: error: checkpoint {re.escape(str(damaged))} holds an invalid run result \({message}", err), err
    assert damaged.read_bytes() == before


def test_a_two_task_result_with_a_short_row_is_named(one_task_run, tmp_path, small_data):
    """The audit's case: row 1 of a two-task matrix holding one accuracy, not two."""
    ck, _ = one_task_run
    stored = checkpoint.read(ck)
    stored.model.add_task("rotate 10°")
    stored.model.freeze(1)
    extra = json.loads(json.dumps(stored.extra))
    extra["result"] = {"acc_matrix": [[0.5], [0.5]], "task_names": ["rotate 0°", "rotate 10°"],
                       "train_seconds": [1.0, 1.0], "train_samples": [10, 10]}
    damaged = checkpoint.save(stored.model, tmp_path / "short.nmnp", extra=extra)
    with pytest.raises(CheckpointError, match=r"acc_matrix row 1 must hold 2 accuracies \(tasks 0 to 1\), got 1"):
        run_experiment(config(), dataset=small_data, resume=damaged, progress=False)
