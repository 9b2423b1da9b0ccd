"""The neuromodulated random-weight network and its growing bank of task contexts.

Fixed and shared by every task (regenerated from :class:`~nmnp.config.NetworkConfig`):

* a sparse random encoder: ``idx`` (n_units, k), unit j sums inputs ``idx[j]``;
* a random readout ``W`` (n_outputs, n_units).

Learned, one per task (:class:`TaskContext`): gains ``c`` (n_units,) and a strength ``s``.
Task t's logits are

.. math::

    z_t(x) = s_t\\, (h(x) \\odot c_t)\\, W^T, \\qquad
    h(x) = \\mathrm{relu}(m - \\bar m),\\; m_j = \\textstyle\\sum_{i \\in S_j} x_i .

Training task t writes only ``c_t`` and ``s_t``; nothing shared ever changes, so learning a
new task cannot alter an old task's predictions (zero forgetting by construction).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from . import initializers
from .config import NetworkConfig
from .errors import ConfigError, ShapeError, TaskError
from .kernels import get_backend
from .kernels.reference import HOST_BATCH, check_batch_size
from .layers import MAX_ABS_INPUT  # the bound check_inputs shares with the layers
from .losses import softmax_cross_entropy


@dataclass
class TaskContext:
    """What one task learns: gains (n_units,) and strength (1,), plus bookkeeping."""

    gains: np.ndarray
    strength: np.ndarray
    name: str
    frozen: bool = False

    def params(self) -> dict:
        """The live parameter arrays (an optimiser updates them in place)."""
        return {"gains": self.gains, "strength": self.strength}


def find_task(tasks: list, task_id, owner: str):
    """``tasks[task_id]``, or a TaskError that says which ids exist (``owner``: "this network")."""
    if not isinstance(task_id, (int, np.integer)) or not 0 <= task_id < len(tasks):
        raise TaskError(
            f"unknown task id {task_id!r}: {owner} has {len(tasks)} task(s), ids 0..{len(tasks) - 1}"
            if tasks
            else f"unknown task id {task_id!r}: {owner} has no tasks yet (add_task first)"
        )
    return tasks[task_id]


def check_task_name(name) -> None:
    """ConfigError unless ``name`` is None or a non-empty string: a task called ``3`` would
    come back as ``"3"`` from a checkpoint, which stores names as text, and an empty name
    would name nothing (None asks for the default ``"task <id>"``)."""
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"a task name must be a string, got {type(name).__name__} {name!r}")
    if name == "":
        raise ConfigError('a task name must not be empty; pass None (or nothing) for the '
                          'default "task <id>"')


def default_task_name(name: str | None, task_id: int) -> str:
    """``name``, or ``"task <id>"`` when it is None (after :func:`check_task_name`)."""
    return f"task {task_id}" if name is None else name


def as_array(value, what: str) -> np.ndarray:
    """``np.asarray(value)``, or a ShapeError naming ``what`` for a ragged nested sequence
    (rows of different lengths), which NumPy refuses with a raw "inhomogeneous shape"
    ValueError."""
    try:
        return np.asarray(value)
    except ValueError as err:
        if "inhomogeneous" in str(err) or "sequence" in str(err):
            raise ShapeError(
                f"{what} must be a rectangular array, got a ragged nested sequence (its rows "
                "differ in length)"
            ) from None
        raise ShapeError(f"{what} cannot be read as an array: {err}") from None


def labels_outside_classes(labels: np.ndarray, classes: np.ndarray) -> ShapeError | None:
    """The error for the first of the (integer) ``labels`` that is not one of ``classes``,
    or None when every label is."""
    outside = ~np.isin(labels, classes)
    if not outside.any():
        return None
    bad = labels[np.flatnonzero(outside)[0]]
    return ShapeError(f"label {bad} is not among this task's classes {classes.tolist()}")


class Classifier:
    """Prediction and accuracy for any learner with ``eval_logits``: the network below and
    every comparison strategy (:mod:`nmnp.strategies`) share this one implementation.

    A subclass provides ``check_inputs``, ``check_labels``, ``check_classes``, ``task``
    (raising TaskError for an unknown id) and ``eval_logits(x, task_id)`` on validated inputs.
    """

    def predict(self, x, task_id: int, classes=None, batch_size: int | None = None) -> np.ndarray:
        """Predicted class ids (B,) of task ``task_id``, in batches of ``batch_size``
        (``None``: 1,024 samples, ``HOST_BATCH``)."""
        x = self.check_inputs(x)
        self.task(task_id)
        classes = self.check_classes(classes)
        batch_size = check_batch_size(batch_size, HOST_BATCH)
        out = np.empty(x.shape[0], dtype=np.int64)
        for start in range(0, x.shape[0], batch_size):
            logits = self.eval_logits(x[start : start + batch_size], task_id)
            out[start : start + batch_size] = argmax_over_classes(logits, classes)
        return out

    def evaluate(self, x, labels, task_id: int, classes=None,
                 batch_size: int | None = None) -> float:
        """Accuracy in [0, 1] of task ``task_id`` on (x, labels).

        With ``classes``, every label must be one of them (ShapeError otherwise, as in
        training): a label no prediction can match would only be scored as an error.
        """
        x = self.check_inputs(x)
        y = self.check_labels(labels, x.shape[0])
        if x.shape[0] == 0:
            raise ShapeError("cannot evaluate on an empty set")
        self.task(task_id)  # an unknown task is named before its classes
        classes = self.check_classes(classes)
        if classes is not None:
            error = labels_outside_classes(y, classes)
            if error is not None:
                raise error
        return float((self.predict(x, task_id, classes, batch_size) == y).mean())

    def save(self, path, extra: dict | None = None):
        """Write every learned task (and any state the tasks share) to a checkpoint file,
        atomically; see :mod:`nmnp.checkpoint`.

        The fixed weights are not stored (they regenerate from the configuration's seed), so
        the file is about :attr:`bytes_per_task` per task. Read it back with :func:`nmnp.load`,
        which gives back a learner of the same kind.
        """
        from . import checkpoint  # checkpoint imports this module

        return checkpoint.save(self, path, extra)

    def prediction_state(self, task_id: int) -> dict:
        """Every learned array task ``task_id``'s predictions read, by name.

        With the fixed weights (the learner's ``fingerprint()``) and the backend, these
        determine the task's predictions on any input: :meth:`prediction_digest` hashes them.
        A subclass that cannot say this leaves it unimplemented, and ``skip_unchanged`` is
        then refused for it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define prediction_state")

    def prediction_digest(self, task_id: int) -> str:
        """SHA-256 of :meth:`prediction_state` (names, dtypes, shapes and bytes).

        Two equal digests of one learner mean the task would predict exactly as before, so
        an accuracy measured then can be reused (``run_stream(..., skip_unchanged=True)``).
        The arrays are hashed on every call, not remembered: a value changed in place is
        seen.
        """
        digest = hashlib.sha256()
        for name, array in sorted(self.prediction_state(task_id).items()):
            a = np.ascontiguousarray(array)
            digest.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
            digest.update(a.tobytes())
        return digest.hexdigest()


class ModulatedNetwork(Classifier):
    """Fixed random weights shared by all tasks, plus one learned context per task.

    Parameters
    ----------
    config : NetworkConfig
        Shapes, seed and dtype; the fixed weights are regenerated from it.
    backend : {"numpy", "cpu", "cuda"}
        Kernel backend for every forward and backward pass.

    Examples
    --------
    >>> import numpy as np
    >>> net = FlyNet(seed=0)
    >>> t = net.add_task("upright")
    >>> images = np.zeros((2, 784), dtype=np.float32)  # (B, 784), normalised pixels
    >>> net.forward(images, t).shape                    # (B, 10) logits
    (2, 10)
    """

    def __init__(self, config: NetworkConfig, backend: str = "cpu"):
        if not isinstance(config, NetworkConfig):
            raise ConfigError(f"a ModulatedNetwork needs a NetworkConfig, got {type(config).__name__}")
        self.config = config
        self.dtype = np.dtype(config.dtype)
        self.set_backend(backend)
        self.encoder_indices = initializers.sparse_encoder_indices(
            config.n_inputs, config.n_units, config.inputs_per_unit, config.seed
        )
        self.readout = initializers.uniform_readout(
            config.n_outputs, config.n_units, config.seed, self.dtype
        )
        # Shared weights are read-only: an accidental in-place write would be forgetting.
        self.encoder_indices.flags.writeable = False
        self.readout.flags.writeable = False
        self.tasks: list[TaskContext] = []

    # ----------------------------------------------------------------- bookkeeping
    def set_backend(self, backend: str) -> None:
        """Switch the kernel backend (raises BackendError if it cannot run here)."""
        self.kernels = get_backend(backend)
        self.backend = self.kernels.NAME

    @property
    def n_tasks(self) -> int:
        """Number of stored task contexts."""
        return len(self.tasks)

    @property
    def params_per_task(self) -> int:
        """Learnable parameters per task: n_units gains + 1 strength."""
        return self.config.n_units + 1

    @property
    def bytes_per_task(self) -> int:
        """Bytes one task's context occupies (gains and strength at the model's precision)."""
        return self.params_per_task * self.dtype.itemsize

    #: The fixed weights are regenerated from the 64-bit seed (and the configuration, which
    #: every task shares), so storing them costs 8 bytes, however large the network.
    fixed_bytes_to_regenerate = 8

    @property
    def fixed_params(self) -> int:
        """Fixed (never trained) parameters: encoder connections + readout weights."""
        c = self.config
        return c.n_units * c.inputs_per_unit + c.n_outputs * c.n_units

    def fingerprint(self) -> str:
        """SHA-256 of the fixed weights: detects any change in how they are generated."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.encoder_indices, dtype="<i4").tobytes())
        digest.update(np.ascontiguousarray(self.readout, dtype="<f8").tobytes())
        return digest.hexdigest()

    def add_task(self, name: str | None = None) -> int:
        """Append a freshly initialised context; returns its task id (0, 1, 2, ...). ``name``
        (default ``"task <id>"``) must be a non-empty string: it is stored in checkpoints as
        text."""
        check_task_name(name)
        task_id = len(self.tasks)
        gains, strength = initializers.initial_context(
            self.config.n_units, self.config.seed, task_id, self.dtype
        )
        self.tasks.append(TaskContext(gains, strength, default_task_name(name, task_id)))
        return task_id

    def remove_last_task(self) -> None:
        """Undo :meth:`add_task` and any training of the newest task: drop its context.

        :func:`nmnp.continual.runner.run_stream` calls it when a task fails part-way, so the
        network again holds only the tasks its result records. Only the newest task can go,
        because task ids are positions. TaskError if there is no task.
        """
        if not self.tasks:
            raise TaskError("this network holds no task to remove")
        self.tasks.pop()

    def task(self, task_id: int) -> TaskContext:
        """The context of a stored task; TaskError for an unknown id, ShapeError for a context
        whose arrays were replaced by ones of another shape (the kernels would read past
        them)."""
        ctx = find_task(self.tasks, task_id, "this network")
        if ctx.gains.shape != (self.config.n_units,) or ctx.strength.shape != (1,):
            raise ShapeError(
                f"task {task_id} ({ctx.name!r}) has gains of shape {ctx.gains.shape} and strength "
                f"of shape {ctx.strength.shape}; expected ({self.config.n_units},) and (1,)"
            )
        return ctx

    def prediction_state(self, task_id: int) -> dict:
        """Task ``task_id``'s gains and strength: all it learned (see
        :meth:`Classifier.prediction_state`)."""
        return self.task(task_id).params()

    def freeze(self, task_id: int) -> None:
        """Mark a task as learned: its context can no longer be trained."""
        self.task(task_id).frozen = True

    def trainable_params(self, task_id: int) -> dict:
        """The arrays training may update for ``task_id``; TaskError if it is frozen."""
        ctx = self.task(task_id)
        if ctx.frozen:
            raise TaskError(f"task {task_id} ({ctx.name!r}) is frozen and cannot be trained")
        return ctx.params()

    # ----------------------------------------------------------------- validation
    def check_inputs(self, x) -> np.ndarray:
        """Validate and convert inputs to a C-ordered (B, n_inputs) array of the model dtype.

        Accepts (B, n_inputs) or (B, *image_shape) with the right number of values.
        Raises ShapeError for a wrong shape (a ragged nested list included), a non-numeric
        dtype, or a value that is not finite or lies beyond +-:data:`MAX_ABS_INPUT`.
        """
        x = as_array(x, "inputs")
        if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
            raise ShapeError(f"inputs must be a real numeric array, got dtype {x.dtype}")
        n_in = self.config.n_inputs
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != n_in:
            raise ShapeError(
                f"inputs must have shape (batch, {n_in}) or (batch, ...) with {n_in} values "
                f"per sample, got shape {x.shape}"
            )
        given = x
        with np.errstate(over="ignore"):  # an overflowing value is reported below, by sample
            x = np.ascontiguousarray(x.reshape(x.shape[0], n_in), dtype=self.dtype)
        # min and max propagate NaN and show an infinity or an overlarge value, without the
        # temporary of np.isfinite(x) (a whole dataset's worth of booleans); only a failure
        # pays for that.
        if x.size and not (-MAX_ABS_INPUT <= x.min() and x.max() <= MAX_ABS_INPUT):
            finite = np.isfinite(x).all(axis=1)
            if finite.all():
                bad = int(np.flatnonzero((np.abs(x) > MAX_ABS_INPUT).any(axis=1))[0])
                raise ShapeError(
                    f"inputs must lie within +-{MAX_ABS_INPUT:g}, got {np.abs(x[bad]).max():g} in "
                    f"sample {bad}: normalise them first (the encoder adds "
                    f"{self.config.inputs_per_unit} inputs per unit, and {self.dtype} sums that "
                    "large overflow)"
                )
            bad = int(np.flatnonzero(~finite)[0])
            if np.isfinite(given.reshape(given.shape[0], -1)[bad]).all():
                raise ShapeError(
                    f"inputs are too large for {self.dtype} (sample {bad} overflows when "
                    f"converted): nmnp needs values within +-{MAX_ABS_INPUT:g}"
                )
            raise ShapeError(f"inputs contain NaN or infinite values (first in sample {bad})")
        return x

    def check_activity(self, h) -> np.ndarray:
        """Check encoder activity h (B, n_units) of the model's dtype, as :meth:`encode`
        returns it; ShapeError otherwise. O(1): its values are trusted."""
        if not isinstance(h, np.ndarray) or h.ndim != 2 or h.shape[1] != self.config.n_units:
            raise ShapeError(
                f"encoder activity must have shape (batch, {self.config.n_units}), got "
                f"{getattr(h, 'shape', type(h).__name__)}"
            )
        if h.dtype != self.dtype:
            raise ShapeError(f"encoder activity must be {self.dtype} like the model, got {h.dtype}")
        return h

    def check_validated_inputs(self, x) -> np.ndarray:
        """The O(1) part of :meth:`check_inputs`, for the hot paths that trust their inputs'
        values: shape (B, n_inputs) and the model's dtype."""
        n_in = self.config.n_inputs
        if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == n_in
                and x.dtype == self.dtype):
            got = f"{x.shape} {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ShapeError(f"expected inputs as check_inputs returns them, (batch, {n_in}) "
                             f"{self.dtype}, got {got}")
        return x

    def check_labels(self, labels, n_samples: int) -> np.ndarray:
        """Validate labels: integers in [0, n_outputs), one per sample."""
        y = as_array(labels, "labels")
        if y.shape != (n_samples,):
            raise ShapeError(f"labels must have shape ({n_samples},), got {y.shape}")
        # an empty list arrives as float64; with no labels there is nothing to be wrong
        if y.dtype.kind not in "iu" and y.size:
            raise ShapeError(f"labels must be integers, got dtype {y.dtype}")
        n_out = self.config.n_outputs
        if y.size and (y.min() < 0 or y.max() >= n_out):
            bad = y[(y < 0) | (y >= n_out)][0]
            raise ShapeError(f"label {bad} is outside the classes 0..{n_out - 1}")
        return y.astype(np.int64, copy=False)

    def check_classes(self, classes) -> np.ndarray | None:
        """Validate an optional subset of competing classes (split benchmarks): a non-empty
        1-D sequence of distinct integer ids in [0, n_outputs). Returns a new int64 array,
        or None for None.

        O(number of classes), never O(batch): the training steps call it.
        """
        if classes is None:
            return None
        given = as_array(classes, "classes")
        n_out = self.config.n_outputs
        if given.ndim != 1:
            raise ShapeError(f"classes must be a 1-D sequence of class ids in 0..{n_out - 1}, got "
                             f"shape {given.shape}")
        if given.size and given.dtype.kind not in "iu":
            raise ShapeError(f"classes must be integer class ids in 0..{n_out - 1}, got dtype "
                             f"{given.dtype}")
        # Python ints, as given: a uint64 id beyond int64 would wrap to a negative number
        values = given.tolist()
        if not values or min(values) < 0 or max(values) >= n_out or len(set(values)) != len(values):
            raise ShapeError(f"classes must be distinct ids in 0..{n_out - 1}, got {values}")
        return given.astype(np.int64)

    # ----------------------------------------------------------------- computation
    def encode(self, x) -> np.ndarray:
        """Encoder activity h (B, n_units) for validated or raw inputs."""
        # check_inputs applies the layer's own rule, so the kernel is called directly
        # (layers.sparse_encoder_forward would check the values a second time)
        return self.kernels.encoder_forward(self.check_inputs(x), self.encoder_indices)

    def encoded_nbytes(self, n_samples: int) -> int:
        """Bytes the encoder output of ``n_samples`` inputs occupies."""
        return n_samples * self.config.n_units * self.dtype.itemsize

    def encode_dataset(self, x, batch_size: int | None = HOST_BATCH) -> np.ndarray:
        """Encoder activity (N, n_units) of validated inputs (as :meth:`check_inputs` returns
        them), computed ``batch_size`` samples at a time (a positive integer; None: 1,024).

        Raises
        ------
        ShapeError
            If ``x`` is not a (N, n_inputs) array of the model's dtype.
        ConfigError
            If ``batch_size`` is not a positive integer.
        """
        self.check_validated_inputs(x)
        batch_size = check_batch_size(batch_size, HOST_BATCH)
        h = np.empty((x.shape[0], self.config.n_units), dtype=self.dtype)
        for start in range(0, x.shape[0], batch_size):
            h[start : start + batch_size] = self.kernels.encoder_forward(
                x[start : start + batch_size], self.encoder_indices
            )
        return h

    def loss_and_grads_encoded(self, h, labels, task_id: int, classes=None):
        """:meth:`loss_and_grads_batch` from cached encoder activity h (B, n_units).

        ``h`` is checked in O(1) (shape and dtype, see :meth:`check_activity`) and
        ``classes`` by :meth:`check_classes` (O(number of classes)); a label outside the
        classes is a ShapeError from the loss.
        """
        return self.loss_and_grads_from_activity(h, labels, self.task(task_id), classes)

    def forward(self, x, task_id: int) -> np.ndarray:
        """Logits (B, n_outputs) of task ``task_id``."""
        ctx = self.task(task_id)
        return self.logits_from_activity(self.encode(x), ctx)

    def logits_from_activity(self, h, ctx: TaskContext) -> np.ndarray:
        """Logits from encoder activity h (B, n_units): skip the encoder when h is known."""
        h = self.check_activity(h)
        return self.kernels.modulated_forward(h, ctx.gains, float(ctx.strength[0]), self.readout)

    def loss_and_grads(self, x, labels, task_id: int, classes=None):
        """Mean cross-entropy of task ``task_id`` and its gradients.

        Parameters
        ----------
        x : (B, n_inputs)
        labels : (B,) integers
        task_id : int
        classes : optional sequence of class ids; when given only those logits compete
            (task-incremental split benchmarks) and every label must be one of them.

        Returns
        -------
        loss : float
        grads : dict with ``"gains"`` (n_units,) and ``"strength"`` (1,)
        n_correct : int, correct predictions in the batch
        """
        x = self.check_inputs(x)
        y = self.check_labels(labels, x.shape[0])
        h = self.kernels.encoder_forward(x, self.encoder_indices)  # x checked just above
        return self.loss_and_grads_from_activity(h, y, self.task(task_id), classes)

    def loss_and_grads_batch(self, x, labels, task_id: int, classes=None):
        """:meth:`loss_and_grads` on inputs and labels already validated.

        The training hot path: one fused pass computes the encoder and the readout and keeps
        the encoder activity for the backward pass, so each step runs the encoder once. Only
        O(1) checks of ``x`` (:meth:`check_validated_inputs`) and :meth:`check_classes`
        (O(number of classes)) run here; a label outside the classes is a ShapeError from
        the loss.
        """
        ctx = self.task(task_id)
        x = self.check_validated_inputs(x)
        classes = self.check_classes(classes)
        s = float(ctx.strength[0])
        logits, h = self.kernels.logits_and_activity(
            x, self.encoder_indices, ctx.gains, s, self.readout
        )
        loss, dlogits, n_correct = loss_and_dlogits(logits, labels, classes)
        dc, ds = self.kernels.modulated_param_grads(
            dlogits.astype(self.dtype, copy=False), h, ctx.gains, s, self.readout
        )
        return loss, {"gains": dc, "strength": np.array([ds], dtype=self.dtype)}, n_correct

    def loss_and_grads_from_activity(self, h, labels, ctx: TaskContext, classes=None):
        """:meth:`loss_and_grads` from encoder activity h (B, n_units) and validated labels.

        Used when the encoder output is already known (a cached encoded training set). ``h``
        is checked in O(1) (:meth:`check_activity`), ``classes`` by :meth:`check_classes`.
        """
        h = self.check_activity(h)
        classes = self.check_classes(classes)
        s = float(ctx.strength[0])
        logits = self.kernels.modulated_forward(h, ctx.gains, s, self.readout)
        loss, dlogits, n_correct = loss_and_dlogits(logits, labels, classes)
        dc, ds = self.kernels.modulated_param_grads(
            dlogits.astype(self.dtype, copy=False), h, ctx.gains, s, self.readout
        )
        return loss, {"gains": dc, "strength": np.array([ds], dtype=self.dtype)}, n_correct

    def eval_logits(self, x, task_id: int) -> np.ndarray:
        """Logits (B, n_outputs) of validated inputs under task ``task_id``'s context: the
        fused encoder + readout kernel, which never writes the encoder activity out."""
        ctx = self.task(task_id)
        return self.kernels.task_logits(
            x, self.encoder_indices, ctx.gains.reshape(1, -1), ctx.strength, self.readout
        )[0]

    def predict(self, x, task_id: int, classes=None, batch_size: int | None = None) -> np.ndarray:
        """Predicted class ids (B,) of task ``task_id``, in batches of ``batch_size``
        (``None``: the backend's choice, 1,024 samples on the host, 16,384 on the GPU).

        One call of the backend's ``task_predictions`` for the whole set: on the cuda backend
        the inputs go up once and only the class ids come back. A subclass that changes
        :meth:`eval_logits` gets the generic batch loop that calls it instead.
        """
        if type(self).eval_logits is not ModulatedNetwork.eval_logits:
            return super().predict(x, task_id, classes, batch_size)
        x = self.check_inputs(x)
        ctx = self.task(task_id)
        classes = self.check_classes(classes)
        batch_size = check_batch_size(batch_size, None)  # None: the backend's choice
        return self.kernels.task_predictions(
            x, self.encoder_indices, ctx.gains.reshape(1, -1), ctx.strength, self.readout, classes,
            batch_size,
        )[0]

    def evaluate_tasks(self, x, labels, task_ids=None, batch_size: int | None = None) -> np.ndarray:
        """Accuracy of several tasks on the same inputs, sharing one encoder pass per batch
        (``batch_size`` as in :meth:`predict`).

        Returns
        -------
        acc : (len(task_ids),) float64
        """
        x = self.check_inputs(x)
        y = self.check_labels(labels, x.shape[0])
        batch_size = check_batch_size(batch_size, None)  # None: the backend's choice
        if task_ids is None:
            ids = list(range(self.n_tasks))
        elif isinstance(task_ids, (int, np.integer)) or not np.iterable(task_ids):
            raise TaskError(f"task_ids must be a sequence of task ids, got {task_ids!r}")
        else:
            ids = list(task_ids)
        contexts = [self.task(t) for t in ids]
        if not contexts or x.shape[0] == 0:
            raise ShapeError("evaluate_tasks needs at least one task and one sample")
        gains = np.stack([ctx.gains for ctx in contexts])
        strengths = np.concatenate([ctx.strength for ctx in contexts])
        predictions = self.kernels.task_predictions(
            x, self.encoder_indices, gains, strengths, self.readout, None, batch_size
        )
        return (predictions == y).sum(axis=1) / x.shape[0]


def loss_and_dlogits(logits, labels, classes):
    """Cross-entropy over the competing classes: (loss, dlogits (B, n_out), n_correct)."""
    if classes is None:
        return softmax_cross_entropy(logits, labels)
    sub_logits, sub_labels = _restrict(logits, labels, classes)
    loss, sub_dlogits, n_correct = softmax_cross_entropy(sub_logits, sub_labels)
    dlogits = np.zeros_like(logits)
    dlogits[:, classes] = sub_dlogits  # the other classes do not compete
    return loss, dlogits, n_correct


def _restrict(logits, labels, classes):
    """Keep only the competing classes' logits and renumber labels to their positions.

    ``classes`` is validated (:meth:`ModulatedNetwork.check_classes`); ``labels`` need not
    be, and are checked at no extra pass over them: the position table has 2 n_out entries,
    so a label in -n_out..-1 reads an entry of the second half (-1, "no class") instead of
    wrapping onto a real class, and one further out is an IndexError, caught.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":  # a boolean array would select, not index
        raise ShapeError(f"labels must be integers, got dtype {labels.dtype}")
    position = np.full(2 * logits.shape[1], -1, dtype=np.int64)
    position[classes] = np.arange(classes.size)
    try:
        sub_labels = position[labels]
    except IndexError:
        sub_labels = None
    if sub_labels is None or (sub_labels < 0).any():
        raise labels_outside_classes(labels.reshape(-1), classes)
    return logits[:, classes], sub_labels


def argmax_over_classes(logits, classes):
    """Predicted class ids (B,) from logits (B, n_outputs), among ``classes`` only when given
    (an int array of competing class ids; None: all outputs compete)."""
    if classes is None:
        return logits.argmax(axis=1)
    return classes[logits[:, classes].argmax(axis=1)]


class FlyNet(ModulatedNetwork):
    """The reference architecture of the paper: 784 -> 7840 (k = 7) -> 10.

    Parameters
    ----------
    seed : int
        Seed of the fixed weights and of every task's initial context.
    backend : {"numpy", "cpu", "cuda"}
    dtype : {"float32", "float64"}
    """

    def __init__(self, seed: int = 0, backend: str = "cpu", dtype: str = "float32"):
        super().__init__(NetworkConfig.flynet(seed, dtype), backend)
