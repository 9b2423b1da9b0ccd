"""Task streams: a dataset turned into a sequence of continual-learning tasks.

A stream is a sequence (``len(stream)``, ``stream[i]``, ``for task in stream``) of
:class:`Task` objects. Tasks are built *lazily*, on access, from the base dataset: a
36-task rotated stream never holds more than one task's arrays at a time (plus the one
task it keeps from the last access, so training and then evaluating task i does not build
it twice).

A long run asks for one split at a time instead (:meth:`TaskStream.training_split`,
:meth:`TaskStream.test_split`) and has it written into :class:`InputBuffers`, the same
arrays task after task. A fresh 60,000 x 784 float32 training set is 188 MB of new pages,
and on a 2-core virtual machine their page faults cost more than building the set; writing
into the same array instead took the time a 250-task run spent outside training from 6.9 to
1.3 minutes (20.4 to 13.7 in all; the README's headline run).

Every stream here is **task-incremental**: the task's identity is given at training and at
test time, and the model answers among ``task.classes`` only. For the rotated and permuted
streams the 10 labels are the same 10 classes in every task (label 3 always means "Dress"
for Fashion-MNIST); only the input distribution changes.

Normalisation: every stream standardises pixels with the mean and std of the base
dataset's *unrotated, unpermuted, full* training split, computed once at construction.
Every task therefore shares one input scaling, and no statistic depends on the task (the
protocol of the rotated benchmark: rotate raw pixels first, then normalise with the
training split's statistics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..data.datasets import Dataset, pixel_stats
from ..data.transforms import INTERPOLATIONS, _check_degrees, normalize, rotate_images
from ..errors import ConfigError, DataError, TaskError

__all__ = [
    "Task",
    "TaskStream",
    "InputBuffers",
    "RotatedStream",
    "PermutedStream",
    "SplitStream",
    "make_stream",
    "BENCHMARKS",
    "TASK_INCREMENTAL",
]

TASK_INCREMENTAL = "task-incremental"

#: Images transformed and normalised per pass: the intermediate pixels of a block (0.8 MB of
#: uint8 for 28 x 28 images) stay in cache on their way into the float32 output.
_BLOCK = 1024


@dataclass(frozen=True, eq=False)
class Task:
    """One task of a stream: its training and test data, ready for a model.

    Parameters
    ----------
    task_id : int
        Position in the stream, 0-based.
    name : str
        Human-readable, e.g. ``"rotate 30°"``.
    x_train : (N_train, D) float32
        Normalised, flattened inputs (D = H * W = 784 for the registered datasets).
    y_train : (N_train,) int64
        Labels, the base dataset's original class ids.
    x_test : (N_test, D) float32
    y_test : (N_test,) int64
    classes : (C,) int64
        The labels that compete at test time (all 10 for rotated and permuted tasks; the
        task's own group for split tasks).
    params : dict
        What defines the task (e.g. ``{"angle": 30.0}``), JSON-ready.

    The arrays are read-only (copy them to modify); a stream may hand them out again.
    """

    task_id: int
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        """Input dimension D."""
        return int(self.x_train.shape[1])


def _frozen(array: np.ndarray) -> np.ndarray:
    """Mark a task array read-only: the stream hands the same arrays out again (it keeps the
    last task), so an in-place change by one caller must fail loudly, not leak into the next."""
    array.flags.writeable = False
    return array


def _check_count(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


class InputBuffers:
    """One reusable float32 array per split that a stream writes a task's inputs into.

    Pass the same ``InputBuffers`` to :meth:`TaskStream.training_split` and
    :meth:`TaskStream.test_split` task after task, and every task's inputs land in the same
    memory (see the module docstring for why). An array handed out is overwritten by the
    next call for the same split, so finish with it first. The arrays stay writeable: their
    contents change, and read-only arrays promise that they never do.
    """

    def __init__(self):
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, split: str, shape: tuple[int, int]) -> np.ndarray:
        """The ``(N, D)`` float32 array for ``split`` ("train" or "test"); a new one only when
        the shape differs from the last request (split tasks can differ in size)."""
        array = self._arrays.get(split)
        if array is None or array.shape != tuple(shape):
            array = self._arrays[split] = np.empty(shape, dtype=np.float32)
        return array

    @property
    def nbytes(self) -> int:
        """Bytes held, all splits together."""
        return sum(a.nbytes for a in self._arrays.values())


def _check_buffers(buffers) -> None:
    """ConfigError unless ``buffers`` is None or an :class:`InputBuffers`."""
    if buffers is not None and not isinstance(buffers, InputBuffers):
        raise ConfigError(
            f"buffers must be an InputBuffers (nmnp.continual.streams.InputBuffers) or None, got "
            f"{type(buffers).__name__}."
        )


class TaskStream:
    """Base class: a lazily built sequence of tasks over one :class:`Dataset`.

    Subclasses implement :meth:`_pixels` (the task's raw pixels from the base images) and may
    override :meth:`_select` (which examples and classes belong to the task).

    Parameters
    ----------
    dataset : Dataset
    n_tasks : int, >= 1

    Raises
    ------
    ConfigError
        If ``dataset`` is not a :class:`~nmnp.data.datasets.Dataset` or ``n_tasks`` is not
        an integer >= 1.
    DataError
        If the training images have zero variance (every pixel the same value), so that
        they cannot be standardised.
    """

    benchmark = "base"
    #: Task identity is given at train and test time; see the module docstring.
    scenario = TASK_INCREMENTAL

    def __init__(self, dataset: Dataset, n_tasks: int):
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"dataset must be an nmnp Dataset, got {type(dataset).__name__}.")
        self.dataset = dataset
        self.n_tasks = _check_count(n_tasks, "n_tasks")
        # Statistics of the untransformed training split, computed once and shared by all
        # tasks (see the module docstring).
        self.mean, self.std = pixel_stats(dataset.x_train)
        if self.std == 0.0:  # any other std of uint8 pixels is far above float32's tiny
            value = round(self.mean * 255)
            raise DataError(
                f"the training images of dataset {dataset.name!r} have zero variance: every one "
                f"of their {dataset.x_train.size:,} pixels is {value} ({self.mean:.6g} on the "
                "[0, 1] scale), so they cannot be standardised ((x - mean) / std divides by "
                "std = 0) and hold nothing to learn from; check the image files or arrays."
            )
        self._last: Task | None = None

    # -- sequence protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_tasks

    def _check_index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TaskError(f"Task index must be an integer, got {i!r}.")
        if not 0 <= i < self.n_tasks:
            raise TaskError(
                f"Task index {i} is out of range for a stream of {self.n_tasks} tasks "
                f"(0..{self.n_tasks - 1})."
            )
        return int(i)

    def __getitem__(self, i: int) -> Task:
        i = self._check_index(i)
        if self._last is not None and self._last.task_id == i:
            return self._last
        train_idx, test_idx, classes = self._select(i)
        x_train, y_train = self._split(i, "train", train_idx, None)
        x_test, y_test = self._split(i, "test", test_idx, None)
        task = Task(
            task_id=i, name=self.task_name(i), x_train=x_train, y_train=y_train,
            x_test=x_test, y_test=y_test, classes=_frozen(np.asarray(classes, dtype=np.int64)),
            params=self.task_params(i),
        )  # fmt: skip
        self._last = task
        return task

    def __iter__(self) -> Iterator[Task]:
        for i in range(self.n_tasks):
            yield self[i]

    def test_split(self, i: int, buffers: InputBuffers | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Only task ``i``'s test data, ``(x_test (N, D) float32, y_test (N,) int64)``.

        Cheaper than ``stream[i]`` when evaluating every earlier task after each new one:
        the (ten times larger) training split is not transformed.

        With ``buffers``, ``x_test`` is written into ``buffers``' test array (always built,
        never the kept task's) and is valid until the next test split written there;
        without, it is a new read-only array, or the kept task's when ``i`` was the last
        task accessed. ``buffers`` other than None or an :class:`InputBuffers` is a
        :class:`~nmnp.errors.ConfigError`.
        """
        i = self._check_index(i)
        _check_buffers(buffers)
        if buffers is None and self._last is not None and self._last.task_id == i:
            return self._last.x_test, self._last.y_test
        _, test_idx, _ = self._select(i)
        return self._split(i, "test", test_idx, buffers)

    def training_split(self, i: int, buffers: InputBuffers | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Only task ``i``'s training data, ``(x_train (N, D) float32, y_train (N,) int64)``.

        Always built, never cached (a run trains each task once). With ``buffers``,
        ``x_train`` is written into ``buffers``' training array and is valid until the next
        training split written there; without, it is a new read-only array. ``buffers``
        other than None or an :class:`InputBuffers` is a :class:`~nmnp.errors.ConfigError`.
        """
        i = self._check_index(i)
        _check_buffers(buffers)
        train_idx, _, _ = self._select(i)
        return self._split(i, "train", train_idx, buffers)

    def task_classes(self, i: int) -> np.ndarray:
        """The labels that compete in task ``i``, ``(C,)`` int64, without building its data."""
        return _frozen(np.asarray(self._select(self._check_index(i))[2], dtype=np.int64))

    @property
    def n_features(self) -> int:
        """Input dimension D of every task (H * W)."""
        return int(np.prod(self.dataset.image_shape))

    def _split(self, i: int, which: str, idx, buffers: InputBuffers | None):
        """``(x, y)`` of task i's ``which`` split ("train" or "test"), rows ``idx`` (``None``:
        all) of the base dataset's split, built block by block into ``buffers`` or a new
        array. Labels are always a new read-only int64 array."""
        images = getattr(self.dataset, f"x_{which}")
        labels = getattr(self.dataset, f"y_{which}")
        n = len(images) if idx is None else len(idx)
        shape = (n, self.n_features)
        x = np.empty(shape, dtype=np.float32) if buffers is None else buffers.get(which, shape)
        for start in range(0, n, _BLOCK):
            rows = slice(start, start + _BLOCK)
            block = images[rows] if idx is None else images[idx[rows]]
            normalize(self._pixels(i, block), self.mean, self.std, out=x[rows])
        y = labels if idx is None else labels[idx]
        return (x if buffers is not None else _frozen(x)), _frozen(y.astype(np.int64, copy=True))

    # -- hooks -------------------------------------------------------------------------
    def _select(self, i: int):
        """``(train_idx, test_idx, classes)`` of task i; ``None`` indices mean "all"."""
        return None, None, np.arange(self.dataset.n_classes)

    def _pixels(self, i: int, images: np.ndarray) -> np.ndarray:
        """Task i's raw pixels, (n, H, W) or (n, D) of the images' dtype, from a block of raw
        (n, H, W) base images; the stream normalises them. Each image must depend on its own
        base image only: a split is built a block of images at a time."""
        raise NotImplementedError

    def task_name(self, i: int) -> str:
        """A short human-readable name of task ``i`` (``"rotate 20°"``, ``"classes 0,1"``...)."""
        return f"task {i}"

    def task_params(self, i: int) -> dict:
        """What makes task ``i`` differ from the others, JSON-ready (angle, permutation seed,
        classes); stored in each task's record of a run."""
        return {}

    def describe(self) -> dict:
        """The stream's configuration, JSON-ready (enough to rebuild it)."""
        return {
            "benchmark": self.benchmark,
            "scenario": self.scenario,
            "dataset": self.dataset.name,
            "n_tasks": self.n_tasks,
            "n_train": int(len(self.dataset.x_train)),
            "n_test": int(len(self.dataset.x_test)),
            "normalization": {"mean": self.mean, "std": self.std, "from": "untransformed training split"},
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dataset.name!r}, n_tasks={self.n_tasks})"


class RotatedStream(TaskStream):
    """Rotated benchmark: task i shows every image rotated by ``i * step`` degrees.

    Scenario ``"task-incremental"``: task identity is given at training and test time, and
    the 10 labels are shared by all tasks (only the input rotation differs).

    Parameters
    ----------
    dataset : Dataset
    n_tasks : int, >= 1
        36 with ``step=10`` covers 0..350 degrees (the full protocol).
    step : float
        Degrees between consecutive tasks, counter-clockwise; finite.
    interpolation : {"nearest", "bilinear"}
        Rotation resampling (nearest is the protocol's choice; see
        :func:`nmnp.data.transforms.rotate_images`).

    Notes
    -----
    Task i is built on access: raw uint8 pixels rotated (corners black), then normalised
    with the unrotated training split's mean and std.
    """

    benchmark = "rotated"

    def __init__(self, dataset: Dataset, n_tasks: int, step: float = 10.0, interpolation: str = "nearest"):
        # float() would also take "10" and True: a typo in a config file, not a number
        step = _check_degrees(step, "step")
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}."
            )
        super().__init__(dataset, n_tasks)
        self.step = step
        self.interpolation = interpolation

    def angle(self, i: int) -> float:
        """Rotation of task ``i`` in degrees."""
        return self._check_index(i) * self.step + 0.0  # task 0 of a negative step: 0, not -0

    def _pixels(self, i, images):
        return rotate_images(images, i * self.step, self.interpolation)

    def task_name(self, i):
        return f"rotate {self.angle(i):g}°"

    def task_params(self, i):
        return {"angle": self.angle(i)}

    def describe(self):
        return {**super().describe(), "step": self.step, "interpolation": self.interpolation}


def _permutation(seed: int, i: int, n: int) -> np.ndarray:
    """Task i's pixel permutation: identity for task 0, else seeded by ``(seed, i)``.

    Seeding from the pair rather than drawing permutations in sequence makes task i's
    permutation independent of how many tasks the stream has.
    """
    if i == 0:
        return np.arange(n)
    return np.random.default_rng(np.random.SeedSequence([seed, i])).permutation(n)


class PermutedStream(TaskStream):
    """Permuted benchmark: task i shuffles the pixels with its own fixed permutation.

    Task 0 is the identity (the plain dataset). Scenario ``"task-incremental"``: task
    identity is given at training and test time; the 10 labels are shared by all tasks.

    Parameters
    ----------
    dataset : Dataset
    n_tasks : int, >= 1
    seed : int, >= 0
        Task i >= 1 uses ``default_rng(SeedSequence([seed, i])).permutation(H * W)``.
    """

    benchmark = "permuted"

    def __init__(self, dataset: Dataset, n_tasks: int, seed: int = 0):
        self.seed = _check_count(seed, "seed", minimum=0)
        super().__init__(dataset, n_tasks)

    def permutation(self, i: int) -> np.ndarray:
        """Task ``i``'s permutation of the flattened pixels, ``(H * W,)`` int64."""
        h, w = self.dataset.image_shape
        return _permutation(self.seed, self._check_index(i), h * w)

    def _pixels(self, i, images):
        if i == 0:
            return images
        # Permuting pixels commutes with normalising them (the same affine map for every
        # pixel), so the raw pixels are permuted first: for uint8 images the gather moves a
        # quarter of the bytes. np.take along axis 1 is several times faster than x[:, perm]
        # (measured once, during development).
        flat = np.asarray(images).reshape(len(images), -1)
        return np.take(flat, self.permutation(i), axis=1)

    def task_name(self, i):
        return "identity" if i == 0 else f"permutation {i}"

    def task_params(self, i):
        return {"permutation_seed": [self.seed, i]}

    def describe(self):
        return {**super().describe(), "seed": self.seed}


class SplitStream(TaskStream):
    """Split benchmark: task i holds only its own group of classes.

    Groups are disjoint: by default (0, 1), (2, 3), ... in label order. Labels keep the
    dataset's class ids (task 1 of split Fashion-MNIST has labels 2 and 3), and
    ``task.classes`` says which labels compete at test time. Scenario
    ``"task-incremental"``: the model is told the task, hence the candidate classes.

    Parameters
    ----------
    dataset : Dataset
    n_tasks : int, >= 1
    seed : int, >= 0
        Used only with ``shuffle_classes=True``, to draw the class order.
    classes_per_task : int, >= 1
        ``n_tasks * classes_per_task`` must not exceed the number of classes (10).
    shuffle_classes : bool
        Group the classes in a seeded random order instead of label order.
    """

    benchmark = "split"

    def __init__(
        self, dataset: Dataset, n_tasks: int = 5, seed: int = 0, classes_per_task: int = 2,
        shuffle_classes: bool = False,
    ):  # fmt: skip
        self.seed = _check_count(seed, "seed", minimum=0)
        self.classes_per_task = _check_count(classes_per_task, "classes_per_task")
        super().__init__(dataset, n_tasks)
        needed = self.n_tasks * self.classes_per_task
        if needed > dataset.n_classes:
            raise ConfigError(
                f"SplitStream needs n_tasks * classes_per_task <= {dataset.n_classes} classes, "
                f"got {self.n_tasks} * {self.classes_per_task} = {needed}."
            )
        order = np.arange(dataset.n_classes)
        if shuffle_classes:
            order = np.random.default_rng(self.seed).permutation(order)
        self.shuffle_classes = bool(shuffle_classes)
        k = self.classes_per_task
        self.groups = [order[t * k : (t + 1) * k] for t in range(self.n_tasks)]

    def _select(self, i):
        group = self.groups[i]
        train_idx = np.flatnonzero(np.isin(self.dataset.y_train, group))
        test_idx = np.flatnonzero(np.isin(self.dataset.y_test, group))
        return train_idx, test_idx, np.sort(group)

    def _pixels(self, i, images):
        return images

    def task_name(self, i):
        return "classes " + ",".join(str(int(c)) for c in sorted(self.groups[i]))

    def task_params(self, i):
        return {"classes": [int(c) for c in sorted(self.groups[i])]}

    def describe(self):
        return {
            **super().describe(),
            "seed": self.seed,
            "classes_per_task": self.classes_per_task,
            "shuffle_classes": self.shuffle_classes,
            "groups": [[int(c) for c in g] for g in self.groups],
        }


BENCHMARKS = ("rotated", "permuted", "split")


def make_stream(
    benchmark: str, dataset: Dataset, n_tasks: int, seed: int = 0, step: float = 10.0,
    interpolation: str = "nearest",
) -> TaskStream:  # fmt: skip
    """Build a stream by benchmark name.

    Parameters
    ----------
    benchmark : {"rotated", "permuted", "split"}
    dataset : Dataset
    n_tasks : int
    seed : int
        Permutation seed (permuted); class-order seed (split, only if shuffled, which this
        factory does not do: it gives the default pairs (0, 1), (2, 3), ...).
    step, interpolation
        Rotation step in degrees and resampling (rotated only).

    Returns
    -------
    TaskStream

    Raises
    ------
    ConfigError
        If the benchmark is unknown (the message lists the known ones) or an argument is
        invalid for it.
    """
    if benchmark == "rotated":
        return RotatedStream(dataset, n_tasks, step=step, interpolation=interpolation)
    if benchmark == "permuted":
        return PermutedStream(dataset, n_tasks, seed=seed)
    if benchmark == "split":
        return SplitStream(dataset, n_tasks, seed=seed)
    raise ConfigError(f"Unknown benchmark {benchmark!r}; known benchmarks: {', '.join(BENCHMARKS)}.")
