"""Tests of nmnp.continual.metrics on hand-written accuracy matrices.

Every expected number is worked out by hand in a comment. The "trap" matrix is built so that
each classic mistake (swapped axes, the last row inside the max, the last task inside the mean,
rows before a task was learned inside the max, first-minus-last forgetting) gives a different
answer, and the tests assert that the functions do not return that answer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmnp.continual.metrics import (
    accuracy_after_each_task,
    average_accuracy,
    backward_transfer,
    forgetting,
    storage_report,
    summarize,
    throughput,
    validate_accuracy_matrix,
)
from nmnp.errors import ConfigError, ShapeError

NAN = float("nan")

# R[i, j] = accuracy on task j after training task i; NaN above the diagonal.
R3 = [
    [0.90, NAN, NAN],
    [0.80, 0.95, NAN],
    [0.70, 0.85, 0.60],
]


def test_hand_written_3x3():
    # ACC = (0.70 + 0.85 + 0.60) / 3 = 2.15 / 3 = 0.716666...
    assert average_accuracy(R3) == pytest.approx(2.15 / 3, abs=1e-12)
    # BWT = ((0.70 - 0.90) + (0.85 - 0.95)) / 2 = (-0.20 - 0.10) / 2 = -0.15
    assert backward_transfer(R3) == pytest.approx(-0.15, abs=1e-12)
    # F: task 0: max(0.90, 0.80) - 0.70 = 0.20; task 1: max(0.95) - 0.85 = 0.10 -> 0.15
    assert forgetting(R3) == pytest.approx(0.15, abs=1e-12)
    # After task 0: 0.90; after task 1: (0.80 + 0.95) / 2 = 0.875; after task 2: 0.716666...
    np.testing.assert_allclose(accuracy_after_each_task(R3), [0.90, 0.875, 2.15 / 3], atol=1e-12)


# A fully defined matrix (above the diagonal: accuracy before training, which is allowed), so
# that the wrong-axis variants give finite, different numbers. Task 0 improves after task 1
# (0.80 -> 0.90), task 1 ends above where it started (0.70 -> 0.75), and R[0, 1] = 0.95 is a
# high pre-training value that must not count as a "best" for task 1.
TRAP = [
    [0.80, 0.95, 0.10],
    [0.90, 0.70, 0.10],
    [0.60, 0.75, 0.50],
]


def test_trap_average_accuracy():
    # Correct: last row (0.60 + 0.75 + 0.50) / 3 = 1.85 / 3 = 0.616666...
    acc = average_accuracy(TRAP)
    assert acc == pytest.approx(1.85 / 3, abs=1e-12)
    # Swapped axes (last column): (0.10 + 0.10 + 0.50) / 3 = 0.2333...
    assert acc != pytest.approx(0.70 / 3, abs=1e-3)
    # Diagonal instead of last row: (0.80 + 0.70 + 0.50) / 3 = 0.6666...
    assert acc != pytest.approx(2.0 / 3, abs=1e-3)


def test_trap_backward_transfer():
    # Correct: ((0.60 - 0.80) + (0.75 - 0.70)) / 2 = (-0.20 + 0.05) / 2 = -0.075
    bwt = backward_transfer(TRAP)
    assert bwt == pytest.approx(-0.075, abs=1e-12)
    # Including j = T-1 (its term is 0): (-0.20 + 0.05 + 0) / 3 = -0.05
    assert bwt != pytest.approx(-0.05, abs=1e-3)
    # Swapped axes, R[j, T-1] - R[j, j]: ((0.10 - 0.80) + (0.10 - 0.70)) / 2 = -0.65
    assert bwt != pytest.approx(-0.65, abs=1e-3)


def test_trap_forgetting():
    # Correct (max over j <= i <= T-2, minus the last row, j < T-1):
    #   task 0: max(0.80, 0.90) - 0.60 = 0.30; task 1: max(0.70) - 0.75 = -0.05
    #   F = (0.30 - 0.05) / 2 = 0.125
    f = forgetting(TRAP)
    assert f == pytest.approx(0.125, abs=1e-12)
    # Last row inside the max: task 1 becomes max(0.70, 0.75) - 0.75 = 0 -> (0.30 + 0) / 2 = 0.15
    assert f != pytest.approx(0.15, abs=1e-3)
    # Rows before the task was learned inside the max: task 1 becomes max(0.95, 0.70) - 0.75
    # = 0.20 -> (0.30 + 0.20) / 2 = 0.25
    assert f != pytest.approx(0.25, abs=1e-3)
    # First-minus-last (R[j, j] - R[T-1, j]): ((0.80 - 0.60) + (0.70 - 0.75)) / 2 = 0.075
    assert f != pytest.approx(0.075, abs=1e-3)
    assert -backward_transfer(TRAP) == pytest.approx(0.075, abs=1e-12)
    # Including j = T-1 (its term is 0): (0.30 - 0.05 + 0) / 3 = 0.0833...
    assert f != pytest.approx(0.25 / 3, abs=1e-3)
    # Swapped axes: task 0: max(R[0,0], R[0,1]) - R[0,2] = 0.95 - 0.10 = 0.85,
    #   task 1: max(R[1,1]) - R[1,2] = 0.70 - 0.10 = 0.60 -> 0.725
    assert f != pytest.approx(0.725, abs=1e-3)
    assert forgetting(np.array(TRAP).T) == pytest.approx(0.725, abs=1e-12)


def test_trap_accuracy_after_each_task():
    # Correct: [0.80, (0.90 + 0.70) / 2, (0.60 + 0.75 + 0.50) / 3] = [0.80, 0.80, 0.6166...]
    acc = accuracy_after_each_task(TRAP)
    np.testing.assert_allclose(acc, [0.80, 0.80, 1.85 / 3], atol=1e-12)
    assert acc.shape == (3,) and acc.dtype == np.float64
    # Whole rows (above-diagonal entries included) would give row 0 = (0.8+0.95+0.1)/3 = 0.6166
    assert acc[0] != pytest.approx(1.85 / 3, abs=1e-3)
    # Columns instead of rows would give (0.95 + 0.70) / 2 = 0.825 after task 1
    assert acc[1] != pytest.approx(0.825, abs=1e-3)


def test_one_task():
    # Nothing was trained after the only task: BWT and forgetting are 0 by definition.
    R = [[0.7]]
    assert average_accuracy(R) == pytest.approx(0.7)
    assert backward_transfer(R) == 0.0
    assert forgetting(R) == 0.0
    np.testing.assert_allclose(accuracy_after_each_task(R), [0.7])
    s = summarize(R)
    assert s["n_tasks"] == 1 and s["backward_transfer"] == 0.0 and s["forgetting"] == 0.0


def test_no_forgetting_by_construction():
    # The method's claim: every column constant from the diagonal down -> BWT = F = 0.
    R = [[0.93, NAN, NAN], [0.93, 0.91, NAN], [0.93, 0.91, 0.95]]
    assert backward_transfer(R) == 0.0
    assert forgetting(R) == 0.0
    assert average_accuracy(R) == pytest.approx((0.93 + 0.91 + 0.95) / 3)


def test_summarize_is_json_ready_and_matches_the_hand_values():
    s = summarize(R3)
    assert json.loads(json.dumps(s)) == s  # plain Python types only, NaN nowhere
    assert type(s["average_accuracy"]) is float and type(s["n_tasks"]) is int
    assert s["n_tasks"] == 3
    assert s["average_accuracy"] == pytest.approx(2.15 / 3)
    assert s["backward_transfer"] == pytest.approx(-0.15)
    assert s["forgetting"] == pytest.approx(0.15)
    assert s["accuracy_after_each_task"] == pytest.approx([0.90, 0.875, 2.15 / 3])
    assert s["final_accuracy_per_task"] == pytest.approx([0.70, 0.85, 0.60])
    assert all(type(a) is float for a in s["accuracy_after_each_task"])


# --------------------------------------------------------------------------- validation
def test_validate_returns_a_float64_copy():
    R = [[1, 0], [0, 1]]  # ints are accuracies too (0 and 1)
    A = validate_accuracy_matrix(R)
    assert A.dtype == np.float64 and A.shape == (2, 2)
    src = np.array([[0.5, NAN], [0.4, 0.6]])
    B = validate_accuracy_matrix(src)
    B[1, 0] = 0.0
    assert src[1, 0] == 0.4


def test_nan_above_the_diagonal_is_accepted():
    A = validate_accuracy_matrix(R3)
    assert np.isnan(A[0, 1]) and np.isnan(A[0, 2]) and np.isnan(A[1, 2])


@pytest.mark.parametrize("i, j", [(0, 0), (1, 1), (2, 2), (1, 0), (2, 0), (2, 1)])
def test_nan_on_or_below_the_diagonal_is_rejected(i, j):
    R = np.array(R3)
    R[i, j] = NAN
    with pytest.raises(ShapeError, match=rf"R\[{i}, {j}\].*finite"):
        validate_accuracy_matrix(R)
    with pytest.raises(ShapeError):
        summarize(R)


@pytest.mark.parametrize(
    "R",
    [
        np.zeros((2, 3)),
        np.zeros(3),
        np.zeros((2, 2, 2)),
        np.zeros((0, 0)),
        0.5,
    ],
)
def test_non_square_is_rejected(R):
    with pytest.raises(ShapeError, match="square"):
        validate_accuracy_matrix(R)
    for metric in (average_accuracy, backward_transfer, forgetting, accuracy_after_each_task):
        with pytest.raises(ShapeError):
            metric(R)


@pytest.mark.parametrize(
    "value, i, j",
    [(85.0, 1, 0), (-0.1, 0, 0), (1.0001, 2, 2), (2.0, 0, 1), (np.inf, 0, 2), (-np.inf, 2, 0)],
)
def test_out_of_range_or_infinite_is_rejected(value, i, j):
    R = np.array(R3)
    R[i, j] = value
    with pytest.raises(ShapeError, match=rf"R\[{i}, {j}\]"):
        validate_accuracy_matrix(R)


def test_non_numeric_is_rejected():
    with pytest.raises(ShapeError, match="numeric"):
        validate_accuracy_matrix([["a", "b"], ["c", "d"]])


# --------------------------------------------------------------------------- properties
@st.composite
def accuracy_matrices(draw):
    T = draw(st.integers(1, 5))
    values = draw(st.lists(st.floats(0.0, 1.0), min_size=T * T, max_size=T * T))
    R = np.array(values).reshape(T, T)
    R[np.triu_indices(T, 1)] = np.nan
    return R


@settings(deadline=None, max_examples=100)
@given(accuracy_matrices())
def test_forgetting_is_at_least_minus_bwt(R):
    # max_{i>=j} R[i, j] >= R[j, j], so each forgetting term >= the negated BWT term.
    assert forgetting(R) >= -backward_transfer(R) - 1e-12
    acc = accuracy_after_each_task(R)
    assert acc[-1] == pytest.approx(average_accuracy(R), abs=1e-12)
    assert np.all((acc >= 0) & (acc <= 1))


@settings(deadline=None, max_examples=50)
@given(accuracy_matrices())
def test_metrics_ignore_entries_above_the_diagonal(R):
    filled = np.where(np.isnan(R), 0.5, R)
    assert summarize(filled) == summarize(R)


# --------------------------------------------------------------------------- cost helpers
def test_storage_report_by_hand():
    # FlyNet: 7840 context gains + 1 strength per task, float32 -> 7841 * 4 = 31364 bytes.
    # Fixed: 7840 x 7 encoder indices + 10 x 7840 readout = 54880 + 78400 = 133280 numbers,
    # regenerated from an 8-byte seed. 36 tasks: 36 * 7841 = 282276 numbers,
    # 36 * 31364 + 8 = 1129104 + 8 = 1129112 bytes.
    r = storage_report(7841, 31364, 133280, 8, n_tasks=36)
    assert r == {
        "learnable_params_per_task": 7841,
        "bytes_per_task": 31364,
        "fixed_params": 133280,
        "fixed_bytes_to_regenerate": 8,
        "n_tasks": 36,
        "total_learnable_params": 282276,
        "total_bytes": 1129112,
    }
    short = storage_report(7841, 31364, 133280, 8)
    assert "total_bytes" not in short and short["bytes_per_task"] == 31364
    assert json.loads(json.dumps(r)) == r


@pytest.mark.parametrize(
    "args, word",
    [
        ((-1, 4, 0, 0), "learnable_params_per_task"),
        ((1, 4.5, 0, 0), "bytes_per_task"),
        ((1, 4, True, 0), "fixed_params"),
        ((1, 4, 0, None), "fixed_bytes_to_regenerate"),
    ],
)
def test_storage_report_rejects_bad_counts(args, word):
    with pytest.raises(ConfigError, match=word):
        storage_report(*args)
    with pytest.raises(ConfigError, match="n_tasks"):
        storage_report(1, 4, 0, 0, n_tasks=-2)


def test_throughput():
    assert throughput(1000, 0.5) == 2000.0
    assert throughput(0, 3.0) == 0.0
    assert throughput(np.int64(300), np.float64(1.5)) == pytest.approx(200.0)


@pytest.mark.parametrize("seconds", [0, 0.0, -1.0, float("nan"), float("inf"), "1", None])
def test_throughput_rejects_bad_seconds(seconds):
    with pytest.raises(ConfigError, match="seconds"):
        throughput(100, seconds)


@pytest.mark.parametrize("n", [-1, 2.5])
def test_throughput_rejects_bad_sample_counts(n):
    with pytest.raises(ConfigError, match="n_samples"):
        throughput(n, 1.0)


# --------------------------------------------------------------------------- the run figure
@pytest.mark.parametrize("R, message", [
    (np.full((2, 2), 5.0), r"R\[0, 0\] is 5\.0, outside \[0, 1\]"),
    (np.full((2, 3), 0.5), r"square \(T, T\) matrix with T >= 1, got shape \(2, 3\)"),
    (np.zeros((0, 0)), r"square \(T, T\) matrix with T >= 1, got shape \(0, 0\)"),
    (np.full(3, 0.5), r"got shape \(3,\)"),
    ("abc", "R must be a numeric"),
    ([[np.nan]], r"R\[0, 0\] is nan, but entries on or below the diagonal must be finite"),
])
def test_the_run_figure_refuses_a_matrix_that_is_not_one(tmp_path, R, message):
    """Accuracies of 5.0 and non-square matrices were drawn; (0, 0), 1-D and text raised
    matplotlib's or NumPy's own errors."""
    from nmnp.plots import draw_accuracy_matrix, draw_task_curves, new_figure, plot_continual_run

    with pytest.raises(ShapeError, match=message):
        plot_continual_run(R, tmp_path / "f.png")
    ax = new_figure().add_subplot()
    for draw in (draw_accuracy_matrix, draw_task_curves):
        with pytest.raises(ShapeError, match=message):
            draw(ax, R)
    assert list(tmp_path.iterdir()) == []


def test_the_run_figure_checks_its_path_as_the_command_line_does(tmp_path):
    from nmnp import ModulatedNetwork, NetworkConfig
    from nmnp.plots import plot_continual_run

    R = [[0.5, np.nan], [0.5, 0.75]]
    run = ModulatedNetwork(NetworkConfig(n_inputs=4, n_units=3, inputs_per_unit=2, n_outputs=2)).save(tmp_path / "run")
    before = run.read_bytes()
    with pytest.raises(ConfigError, match=r"path .*run is an nmnp checkpoint: refusing to replace it with a figure"):
        plot_continual_run(R, run)  # no extension, so PNG: but it is a checkpoint
    assert run.read_bytes() == before
    with pytest.raises(ConfigError, match=r"cannot write a figure as \.jpg"):
        plot_continual_run(R, tmp_path / "f.jpg")
    with pytest.raises(ConfigError, match="folder .*missing does not exist"):
        plot_continual_run(R, tmp_path / "missing" / "f.png")
    with pytest.raises(ConfigError, match="^a figure's path is empty: a file name is needed$"):
        plot_continual_run(R, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert plot_continual_run(R, tmp_path / "f") == str(tmp_path / "f")
    assert (tmp_path / "f").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
