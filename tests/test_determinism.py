"""Determinism: the same seed, backend and thread count give bit-identical runs.

Shuffling draws from ``rng_for(seed, SHUFFLE, task, epoch)`` and every initial context from
``rng_for(seed, CONTEXT, task)``, so nothing depends on what ran before. What can change
with the *thread count* is floating-point rounding: the Numba kernels split batch and unit
reductions into one chunk per thread, and float32 sums in another order round differently.

Stated tolerance between thread counts (1 vs 2 threads, checked below): every trained gain
within ``1e-5 * max|gains|`` of the other run's, strengths within a relative ``1e-5``, and
every test accuracy within 1 percentage point. Measured on the development machine (seed 4,
1 vs 2 threads): 200 units, 2 tasks of 10 steps: gains differ by at most ``9e-8 * max|gains|``;
200 units, 2 tasks x 3 epochs of the shipped subset: ``2.6e-7``; FlyNet (7840 units), one
task of 47 steps: ``5.5e-7``. Strengths and every accuracy were identical in all three.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from nmnp.data.datasets import Dataset, load_dataset
from nmnp.experiment import ExperimentConfig, make_learner, run_experiment

TWO_THREADS = pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2, reason="needs Numba started with at least 2 threads"
)
GAIN_TOL = 1e-5  # relative to the largest gain
ACC_TOL = 0.01


@pytest.fixture(scope="module")
def small_data():
    d = load_dataset()
    return Dataset(d.name, d.x_train[:1280], d.y_train[:1280], d.x_test[:300], d.y_test[:300],
                   d.source, d.classes)


def run(small_data, **kw):
    """(report, learner) of a short run: 2 tasks, 200 units."""
    config = ExperimentConfig(**{"tasks": 2, "units": 200, **kw})
    learner = make_learner(config)
    out = run_experiment(config, dataset=small_data, learner=learner, progress=False)
    return out, learner


def max_gain_gap(a, b) -> float:
    """Largest |difference| of any gain between two runs, relative to the largest gain."""
    return max(
        float(np.abs(x.gains - y.gains).max() / np.abs(x.gains).max()) for x, y in zip(a.tasks, b.tasks)
    )


def assert_bit_identical(a, b):
    assert a.n_tasks == b.n_tasks
    for x, y in zip(a.tasks, b.tasks):
        assert x.gains.tobytes() == y.gains.tobytes()
        assert x.strength.tobytes() == y.strength.tobytes()


@pytest.mark.parametrize("threads", [1, pytest.param(2, marks=TWO_THREADS)])
def test_same_seed_backend_and_threads_give_bit_identical_runs(small_data, threads):
    out1, net1 = run(small_data, threads=threads, seed=4)
    out2, net2 = run(small_data, threads=threads, seed=4)
    assert_bit_identical(net1, net2)
    assert out1["acc_matrix"] == out2["acc_matrix"]
    assert out1["epoch_losses"] == out2["epoch_losses"]
    assert out1["threads"] == threads


def test_the_bit_identity_checker_can_fail(small_data):
    """A learning rate one part in a million off must break bit identity, or the test above
    proves nothing; and a 10% change must exceed the cross-thread tolerance below, or that
    tolerance would let a real difference through."""
    _, a = run(small_data, threads=1, seed=4, tasks=1, lr=0.01)
    _, nudged = run(small_data, threads=1, seed=4, tasks=1, lr=0.01 * (1 + 1e-6))
    with pytest.raises(AssertionError):
        assert_bit_identical(a, nudged)
    _, b = run(small_data, threads=1, seed=4, tasks=1, lr=0.011)
    assert max_gain_gap(a, b) > GAIN_TOL


def test_the_numpy_backend_is_deterministic_too(small_data):
    out1, net1 = run(small_data, backend="numpy", tasks=1, seed=1)
    out2, net2 = run(small_data, backend="numpy", tasks=1, seed=1)
    assert_bit_identical(net1, net2)
    assert out1["acc_matrix"] == out2["acc_matrix"]


@TWO_THREADS
def test_different_thread_counts_agree_within_the_stated_tolerance(small_data):
    out1, net1 = run(small_data, threads=1, seed=4)
    out2, net2 = run(small_data, threads=2, seed=4)
    gap = max_gain_gap(net1, net2)
    assert gap <= GAIN_TOL, f"gains differ by {gap:.3g} x max|gains| between 1 and 2 threads"
    for x, y in zip(net1.tasks, net2.tasks):
        np.testing.assert_allclose(x.strength, y.strength, rtol=GAIN_TOL)
    for row1, row2 in zip(out1["acc_matrix"], out2["acc_matrix"]):
        np.testing.assert_allclose(row1, row2, atol=ACC_TOL)
