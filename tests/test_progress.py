"""Training progress: a bar on a terminal, an occasional whole line in a log."""

from __future__ import annotations

import io
import re

import pytest
from tqdm import tqdm

from nmnp import ModulatedNetwork, NetworkConfig, progress
from nmnp.progress import ProgressLines, task_progress
from nmnp.train import TrainSettings, train_task
from toy_data import blobs


class Clock:
    """Seconds that the test sets by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_lines_come_at_most_every_interval_and_say_how_far_the_task_is():
    out, clock = io.StringIO(), Clock()
    lines = ProgressLines(1000, "task 2 of 3, b", every=30, stream=out, clock=clock)
    clock.now = 129.9
    lines.update(100)
    assert out.getvalue() == ""  # not yet 30 s: a short task prints nothing
    clock.now = 130.0
    lines.set_postfix(loss="0.5000")
    lines.update(150)
    clock.now = 150.0
    lines.update(250)  # 20 s after the last line: nothing
    clock.now = 161.0
    lines.update(500)
    lines.close()
    assert out.getvalue().splitlines() == [
        "task 2 of 3, b: step 250/1,000 (25%), loss 0.5000, 30 s",
        "task 2 of 3, b: step 1,000/1,000 (100%), loss 0.5000, 61 s",
    ]


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("wanted, on_terminal, kind", [
    (None, True, "bar"), (None, False, "lines"),
    (True, False, "bar"), (True, True, "bar"),
    (False, True, "nothing"), (False, False, "nothing"),
])
def test_task_progress_is_a_bar_on_a_terminal_and_lines_in_a_log(wanted, on_terminal, kind,
                                                                  monkeypatch):
    monkeypatch.setattr("sys.stderr", Terminal() if on_terminal else io.StringIO())
    shown = task_progress(10, "task 1", wanted)
    assert isinstance(shown, ProgressLines if kind == "lines" else tqdm)
    if kind != "lines":
        assert shown.disable == (kind == "nothing")
    shown.close()


def test_train_task_writes_progress_lines_to_a_log(monkeypatch, capsys):
    """Under pytest standard error is not a terminal: with ``progress=None`` a task that runs
    longer than the interval (0 s here) reports its steps and, after an epoch, its loss."""
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.0)
    net = ModulatedNetwork(NetworkConfig(n_inputs=20, n_units=80, inputs_per_unit=4,
                                         n_outputs=4, seed=1))
    t = net.add_task()
    x, y = blobs(0, 64)
    report = train_task(net, t, x, y, TrainSettings(epochs=2, batch_size=32),
                        description="task 1 of 1")
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert all(re.search(r", \d+ s$", line) for line in lines)
    first_epoch = f"loss {report.epoch_losses[0]:.4f}"
    assert [re.sub(r", \d+ s$", "", line) for line in lines] == [
        "task 1 of 1: step 1/4 (25%)",
        "task 1 of 1: step 2/4 (50%)",
        f"task 1 of 1: step 3/4 (75%), {first_epoch}",
        f"task 1 of 1: step 4/4 (100%), {first_epoch}",
    ]
    train_task(net, net.add_task(), x, y, TrainSettings(epochs=1), progress=False)
    assert capsys.readouterr().err == ""
