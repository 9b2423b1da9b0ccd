"""Task streams: lazy construction, normalisation source, permutations, class splits."""

from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest

from nmnp.continual import streams as streams_mod
from nmnp.continual.streams import (
    TASK_INCREMENTAL,
    InputBuffers,
    PermutedStream,
    RotatedStream,
    SplitStream,
    Task,
    make_stream,
)
from nmnp.data import Dataset, load_dataset, normalize, pixel_stats, rotate_images
from nmnp.errors import ConfigError, DataError, ShapeError, TaskError


@pytest.fixture(scope="module")
def small():
    """A small dataset with structure (a bright bar), so rotation changes the statistics."""
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 40, (200, 28, 28), dtype=np.uint8)
    x_train[:, 2:26, 12:16] = 220
    x_test = rng.integers(0, 40, (50, 28, 28), dtype=np.uint8)
    y_train, y_test = np.arange(200) % 10, np.arange(50) % 10
    return Dataset("small", x_train, y_train, x_test, y_test, source="test")


# -- rotated -------------------------------------------------------------------------------


def test_rotated_tasks_equal_eager_computation(small):
    stream = RotatedStream(small, n_tasks=4, step=30.0)
    mean, std = pixel_stats(small.x_train)
    for i in (0, 1, 3):
        task = stream[i]
        assert isinstance(task, Task) and task.task_id == i and task.name == f"rotate {30 * i}°"
        want = normalize(rotate_images(small.x_train, 30.0 * i), mean, std)
        np.testing.assert_array_equal(task.x_train, want)
        np.testing.assert_array_equal(task.x_test, normalize(rotate_images(small.x_test, 30.0 * i), mean, std))
        np.testing.assert_array_equal(task.y_train, small.y_train)
        assert task.x_train.dtype == np.float32 and task.x_train.shape == (200, 784)
        assert task.y_train.dtype == np.int64
        np.testing.assert_array_equal(task.classes, np.arange(10))
        assert task.params == {"angle": 30.0 * i}


def test_normalisation_comes_from_the_unrotated_training_split(small):
    stream = RotatedStream(small, n_tasks=5, step=45.0)
    assert (stream.mean, stream.std) == pixel_stats(small.x_train)
    rotated_stats = pixel_stats(rotate_images(small.x_train, 45.0))
    assert abs(rotated_stats[0] - stream.mean) > 1e-3  # black corners: the stats would differ
    # task 1's inputs use the unrotated stats: undoing them gives back the rotated pixels
    back = stream[1].x_train * stream.std + stream.mean
    np.testing.assert_allclose(back, rotate_images(small.x_train, 45.0).reshape(200, -1) / 255, atol=1e-5)


def test_tasks_are_built_lazily_and_not_kept(small, monkeypatch):
    calls = []

    def counting_rotate(images, degrees, interpolation="nearest"):
        calls.append(degrees)
        return rotate_images(images, degrees, interpolation)

    monkeypatch.setattr(streams_mod, "rotate_images", counting_rotate)
    stream = RotatedStream(small, n_tasks=36)
    assert calls == []  # nothing built at construction
    first = stream[5]
    assert calls == [50.0, 50.0]  # train and test of task 5 only
    assert stream[5] is first and len(calls) == 2  # the last task is reused, not rebuilt
    ref = weakref.ref(first)
    del first
    stream[6]
    gc.collect()
    assert ref() is None  # the stream no longer holds task 5


def test_task_arrays_are_read_only(small):
    task = RotatedStream(small, n_tasks=2)[1]
    with pytest.raises(ValueError):
        task.x_train[0, 0] = 1.0  # would otherwise corrupt the stream's kept copy
    assert not task.y_test.flags.writeable


def test_iteration_and_test_split(small):
    stream = RotatedStream(small, n_tasks=3, step=20, interpolation="bilinear")
    ids = [t.task_id for t in stream]
    assert ids == [0, 1, 2] and len(stream) == 3
    x, y = stream.test_split(1)
    np.testing.assert_array_equal(x, stream[1].x_test)
    np.testing.assert_array_equal(y, stream[1].y_test)


def test_rotated_describe_is_json(small):
    stream = RotatedStream(small, n_tasks=36, step=10.0)
    info = json.loads(json.dumps(stream.describe()))
    assert info["benchmark"] == "rotated" and info["scenario"] == TASK_INCREMENTAL
    assert info["n_tasks"] == 36 and info["step"] == 10.0 and info["interpolation"] == "nearest"
    assert info["normalization"]["mean"] == pytest.approx(pixel_stats(small.x_train)[0])
    assert stream.scenario == "task-incremental"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_invalid_task_count(small, bad):
    with pytest.raises(ConfigError, match="n_tasks"):
        RotatedStream(small, n_tasks=bad)


def test_invalid_rotation_arguments(small):
    with pytest.raises(ConfigError, match="finite"):
        RotatedStream(small, 3, step=float("nan"))
    with pytest.raises(ConfigError, match="finite"):
        RotatedStream(small, 3, step=float("inf"))
    with pytest.raises(ConfigError, match="interpolation"):
        RotatedStream(small, 3, interpolation="cubic")
    with pytest.raises(ConfigError, match="Dataset"):
        RotatedStream(small.x_train, 3)
    for not_a_number in ("10", True, np.bool_(True), None, [10], np.complex128(10)):  # float() would take "10", True
        with pytest.raises(ConfigError, match=r"step must be a number of degrees, got"):
            RotatedStream(small, 3, step=not_a_number)


def test_a_negative_step_rotates_the_other_way_and_task_0_is_0_degrees(small):
    stream = RotatedStream(small, 3, step=-10)
    assert [stream.task_name(i) for i in range(3)] == ["rotate 0°", "rotate -10°", "rotate -20°"]
    assert str(stream.task_params(0)["angle"]) == "0.0" and str(stream.angle(0)) == "0.0"


@pytest.mark.parametrize("index", [3, -1, 1.0, "0", None])
def test_task_index_out_of_range(small, index):
    stream = RotatedStream(small, 3)
    with pytest.raises(TaskError, match="Task index"):
        stream[index]
    with pytest.raises(TaskError):
        stream.test_split(index)


def test_shipped_rotated_protocol_shape():
    stream = make_stream("rotated", load_dataset(), n_tasks=36)
    last = stream[35]
    assert last.name == "rotate 350°" and last.x_train.shape == (6000, 784) and last.x_test.shape == (1000, 784)
    assert abs(float(stream[0].x_train.mean())) < 1e-3  # normalised: task 0 has mean 0...
    assert abs(float(stream[0].x_train.std()) - 1) < 1e-3  # ...and std 1


# -- permuted ------------------------------------------------------------------------------


def test_permuted_tasks(small):
    stream = PermutedStream(small, n_tasks=4, seed=7)
    base = normalize(small.x_train, *pixel_stats(small.x_train))
    np.testing.assert_array_equal(stream[0].x_train, base)  # task 0 is the identity
    perms = [stream.permutation(i) for i in range(4)]
    np.testing.assert_array_equal(perms[0], np.arange(784))
    for i in range(1, 4):
        np.testing.assert_array_equal(np.sort(perms[i]), np.arange(784))  # a permutation
        np.testing.assert_array_equal(stream[i].x_train, base[:, perms[i]])
        np.testing.assert_array_equal(stream[i].y_train, small.y_train)
        test_base = normalize(small.x_test, *pixel_stats(small.x_train))
        np.testing.assert_array_equal(stream.test_split(i)[0], test_base[:, perms[i]])
    assert len({p.tobytes() for p in perms}) == 4  # all different
    assert stream.scenario == TASK_INCREMENTAL


def test_permutations_reproducible_from_seed(small):
    a, b = PermutedStream(small, 3, seed=7), PermutedStream(small, 10, seed=7)
    np.testing.assert_array_equal(a.permutation(2), b.permutation(2))  # independent of n_tasks
    np.testing.assert_array_equal(a[2].x_test, b[2].x_test)
    c = PermutedStream(small, 3, seed=8)
    assert not np.array_equal(a.permutation(2), c.permutation(2))
    assert json.loads(json.dumps(a.describe()))["seed"] == 7
    with pytest.raises(ConfigError, match="seed"):
        PermutedStream(small, 3, seed=-1)


# -- split ---------------------------------------------------------------------------------


def test_split_default_pairs(small):
    stream = SplitStream(small)
    assert len(stream) == 5
    seen = set()
    for i, task in enumerate(stream):
        np.testing.assert_array_equal(task.classes, [2 * i, 2 * i + 1])
        assert set(np.unique(task.y_train)) == {2 * i, 2 * i + 1}  # original ids kept
        assert set(np.unique(task.y_test)) <= {2 * i, 2 * i + 1}
        assert len(task.y_train) == np.isin(small.y_train, task.classes).sum()  # all of them
        assert seen.isdisjoint(task.classes.tolist())
        seen |= set(task.classes.tolist())
        mask = np.isin(small.y_train, task.classes)
        np.testing.assert_array_equal(task.x_train, normalize(small.x_train[mask], stream.mean, stream.std))
    assert seen == set(range(10))


def test_split_shuffled_and_limits(small):
    a = SplitStream(small, n_tasks=3, classes_per_task=3, seed=4, shuffle_classes=True)
    b = SplitStream(small, n_tasks=3, classes_per_task=3, seed=4, shuffle_classes=True)
    groups = [g.tolist() for g in a.groups]
    assert groups == [g.tolist() for g in b.groups]
    flat = sum(groups, [])
    assert len(flat) == len(set(flat)) == 9
    assert groups != [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # seed 4 does shuffle
    with pytest.raises(ConfigError, match="6 \\* 2 = 12"):
        SplitStream(small, n_tasks=6)
    with pytest.raises(ConfigError, match="classes_per_task"):
        SplitStream(small, n_tasks=2, classes_per_task=0)


# -- one split at a time, into reusable buffers -------------------------------------------

STREAMS = {
    "rotated": lambda ds: RotatedStream(ds, n_tasks=4, step=35.0),
    "rotated-bilinear": lambda ds: RotatedStream(ds, n_tasks=4, step=35.0, interpolation="bilinear"),
    "permuted": lambda ds: PermutedStream(ds, n_tasks=4, seed=3),
    "split": lambda ds: SplitStream(ds, n_tasks=4),
}


def eager_inputs(stream, i, images):
    """Task i's inputs computed in one piece from the definitions, not by the stream."""
    mean, std = pixel_stats(stream.dataset.x_train)
    if isinstance(stream, RotatedStream):
        images = rotate_images(images, stream.angle(i), stream.interpolation)
    elif isinstance(stream, PermutedStream):
        images = images.reshape(len(images), -1)[:, stream.permutation(i)]
    return normalize(images, mean, std)


@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_splits_written_block_by_block_equal_the_definition(small, kind, monkeypatch):
    # 64-image blocks: 200 training images are three whole blocks and a part of one
    monkeypatch.setattr(streams_mod, "_BLOCK", 64)
    stream = STREAMS[kind](small)
    buffers = InputBuffers()
    for i in range(4):
        mask_train = np.isin(small.y_train, stream.task_classes(i))
        mask_test = np.isin(small.y_test, stream.task_classes(i))
        x, y = stream.training_split(i, buffers)
        np.testing.assert_array_equal(x, eager_inputs(stream, i, small.x_train[mask_train]))
        np.testing.assert_array_equal(y, small.y_train[mask_train])
        x, y = stream.test_split(i, buffers)
        np.testing.assert_array_equal(x, eager_inputs(stream, i, small.x_test[mask_test]))
        np.testing.assert_array_equal(y, small.y_test[mask_test])
        task = stream[i]  # the whole task, built without buffers, is the same
        np.testing.assert_array_equal(task.x_train, stream.training_split(i)[0])
        np.testing.assert_array_equal(task.classes, stream.task_classes(i))
        assert task.name == stream.task_name(i)


def test_buffers_are_written_over_task_after_task(small):
    stream = PermutedStream(small, n_tasks=3)
    buffers = InputBuffers()
    x1, _ = stream.training_split(1, buffers)
    first = x1.copy()
    x2, _ = stream.training_split(2, buffers)
    assert x2 is x1 and not np.array_equal(x2, first)  # the same memory, the new task in it
    t1, _ = stream.test_split(1, buffers)
    assert not np.shares_memory(t1, x2)  # each split has its own array
    assert buffers.nbytes == (200 + 50) * 784 * 4
    assert x2.flags.writeable  # its contents change, so it does not claim to be read-only


def test_buffers_grow_a_new_array_only_for_a_new_shape(small):
    labels = np.r_[np.zeros(30, int), 2 + np.arange(170) % 8]  # 30 images of class 0 or 1
    uneven = Dataset("uneven", small.x_train, labels, small.x_test, small.y_test, source="test")
    stream = SplitStream(uneven, n_tasks=2)
    buffers = InputBuffers()
    x0, y0 = stream.training_split(0, buffers)
    x1, y1 = stream.training_split(1, buffers)
    assert (len(x0), len(y0), len(x1), len(y1)) == (30, 30, 44, 44)
    assert x1 is not x0 and buffers.nbytes == x1.nbytes  # the old shape's array is let go
    np.testing.assert_array_equal(x1, stream[1].x_train)
    assert stream.training_split(1, buffers)[0] is x1  # the same shape again: the same array


def test_buffered_test_split_never_hands_out_the_kept_task(small):
    stream = RotatedStream(small, n_tasks=3, step=20)
    kept = stream[2]
    want = kept.x_test.copy()
    buffers = InputBuffers()
    x, _ = stream.test_split(2, buffers)
    assert x is not kept.x_test and not np.shares_memory(x, kept.x_test)
    stream.test_split(1, buffers)  # writes over x ...
    np.testing.assert_array_equal(kept.x_test, want)  # ... and the kept task is untouched
    assert stream.test_split(2)[0] is kept.x_test  # without buffers, the kept copy is reused


def test_unbuffered_splits_are_new_read_only_arrays(small):
    stream = PermutedStream(small, n_tasks=3)
    a, ya = stream.training_split(1)
    b, _ = stream.training_split(1)
    assert a is not b and not a.flags.writeable and not ya.flags.writeable
    with pytest.raises(TaskError, match="out of range"):
        stream.training_split(3)
    with pytest.raises(TaskError, match="out of range"):
        stream.task_classes(-1)


def test_normalize_writes_into_out_exactly_as_it_allocates(small):
    want = normalize(small.x_train, 0.2, 0.3)
    out = np.full((200, 784), np.nan, dtype=np.float32)
    assert normalize(small.x_train, 0.2, 0.3, out=out) is out
    np.testing.assert_array_equal(out, want)
    floats = small.x_train[:5].astype(np.float64) / 255
    np.testing.assert_array_equal(normalize(floats, 0.2, 0.3, out=out[:5]), normalize(floats, 0.2, 0.3))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((200, 784), np.float64), "dtype float64, not float32"),
    (np.zeros((200, 783), np.float32), r"shape \(200, 783\), not \(200, 784\)"),
    (np.zeros((784, 200), np.float32).T, "not C-contiguous"),
    ([[0.0] * 784] * 200, "must be a NumPy array"),
])  # fmt: skip
def test_normalize_refuses_an_unusable_out(small, bad, message):
    with pytest.raises(ShapeError, match=message):
        normalize(small.x_train, 0.2, 0.3, out=bad)


def test_normalize_refuses_a_read_only_out(small):
    out = np.zeros((200, 784), np.float32)
    out.flags.writeable = False
    with pytest.raises(ShapeError, match="read-only"):
        normalize(small.x_train, 0.2, 0.3, out=out)


@pytest.mark.parametrize("make", [
    lambda d: RotatedStream(d, 2), lambda d: PermutedStream(d, 2), lambda d: SplitStream(d, 2),
])  # fmt: skip
@pytest.mark.parametrize("value", [0, 7, 255])
def test_training_images_of_zero_variance_are_named_at_construction(make, value):
    """Not normalize's "std must be a finite number >= 1.17549e-38, got 0.0" when a task is
    built: the stream says what is wrong with the data, before anything is built."""
    blank = np.full((20, 28, 28), value, np.uint8)
    varied = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    labels = np.arange(20) % 10
    data = Dataset("blank", blank, labels, varied, labels[:10], source="test")
    with pytest.raises(DataError, match=rf"the training images of dataset 'blank' have zero variance: "
                                        rf"every one of their 15,680 pixels is {value} "):
        make(data)
    # One pixel different is enough to standardise (a tiny std, but a valid one).
    blank[3, 4, 5] = value ^ 1
    stream = make(data)
    assert 0 < stream.std < 1e-2 and np.isfinite(stream[0].x_train).all()


@pytest.mark.parametrize("bad", [{}, (), [], np.empty((200, 784), np.float32)])
@pytest.mark.parametrize("split", ["test_split", "training_split"])
def test_buffers_that_are_not_input_buffers_are_named(small, split, bad):
    stream = RotatedStream(small, 2)
    with pytest.raises(ConfigError, match=rf"buffers must be an InputBuffers .*or None, got {type(bad).__name__}\."):
        getattr(stream, split)(0, buffers=bad)
    x, _ = getattr(stream, split)(0, buffers=InputBuffers())  # the right type works
    assert x.dtype == np.float32


# -- factory -------------------------------------------------------------------------------


def test_make_stream(small):
    assert isinstance(make_stream("rotated", small, 3, step=15), RotatedStream)
    assert make_stream("rotated", small, 3, step=15).step == 15
    assert make_stream("permuted", small, 3, seed=5).seed == 5
    split = make_stream("split", small, 5)
    assert isinstance(split, SplitStream) and split.groups[0].tolist() == [0, 1]
    with pytest.raises(ConfigError, match="rotated, permuted, split"):
        make_stream("rotating", small, 3)
