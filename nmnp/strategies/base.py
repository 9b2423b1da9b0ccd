"""What every comparison strategy shares: the fixed encoder, the task bank, the protocol.

A strategy is a *learner*: it offers exactly the methods :func:`nmnp.train.train_task` and
:func:`nmnp.continual.runner.run_stream` call (``add_task``, ``freeze``,
``trainable_params``, ``check_inputs``, ``check_labels``, ``check_classes``,
``loss_and_grads_batch``, ``evaluate``, and ``remove_last_task``, which undoes a task that
failed) and the storage figures of a results table (``params_per_task``,
``bytes_per_task``, ``shared_params``, ``shared_bytes``, ``fixed_params``,
``fixed_bytes_to_regenerate``), plus ``name``, ``config`` and ``backend``.

The fixed weights are not drawn here: every strategy builds a
:class:`~nmnp.model.ModulatedNetwork` from the same :class:`~nmnp.config.NetworkConfig`
and reads its encoder indices (and, for SupSup, its random readout). With equal seeds the
encoder is therefore bit-for-bit the crwn model's, and only the learning rule differs.

The encoder is fixed, so a strategy needs only its activity ``h`` (B, n_units), computed by
the backend's ``encoder_forward`` (Numba on ``"cpu"``); the readouts below it are small
dense products done by NumPy's BLAS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import NetworkConfig
from ..errors import TaskError
from ..model import (
    Classifier,
    ModulatedNetwork,
    check_task_name,
    default_task_name,
    find_task,
    loss_and_dlogits,
)


@dataclass
class StrategyTask:
    """One task's record: its name, whether it is frozen, and what it stores."""

    name: str
    frozen: bool = False
    state: dict = field(default_factory=dict)


class ReadoutStrategy(Classifier):
    """Base class: a learned readout on top of the fixed sparse random encoder.

    Subclasses define :meth:`_init_task` (the new task's state), :meth:`_params` (the arrays
    training updates), :meth:`readout_logits` and :meth:`readout_grads`, and the storage
    figures.

    Parameters
    ----------
    config : NetworkConfig
        The same configuration a crwn model would get: shapes, seed, dtype.
    backend : {"numpy", "cpu", "cuda"}
        Backend of the encoder forward pass.
    """

    #: Short name used on the command line and in results.
    name = "base"

    def __init__(self, config: NetworkConfig, backend: str = "cpu"):
        # The fixed weights, regenerated exactly as the crwn model regenerates them.
        self.network = ModulatedNetwork(config, backend)
        self.config = config
        self.dtype = np.dtype(config.dtype)
        self.tasks: list[StrategyTask] = []

    # ----------------------------------------------------------------- fixed network
    @property
    def backend(self) -> str:
        """Name of the kernel backend of the fixed encoder (``"numpy"``, ``"cpu"``, ``"cuda"``)."""
        return self.network.backend

    @property
    def kernels(self):
        """The backend's kernel module (:mod:`nmnp.kernels.backend` picks it by name)."""
        return self.network.kernels

    def set_backend(self, backend: str) -> None:
        """Switch the encoder's kernel backend (BackendError if it cannot run here)."""
        self.network.set_backend(backend)

    @property
    def encoder_indices(self) -> np.ndarray:
        """(n_units, k) int32, the crwn model's encoder (read-only)."""
        return self.network.encoder_indices

    def fingerprint(self) -> str:
        """SHA-256 of the fixed random weights (equal to the crwn model's for one config)."""
        return self.network.fingerprint()

    #: A seed (8 bytes) regenerates every fixed weight, as for the crwn model.
    fixed_bytes_to_regenerate = 8

    #: Learned numbers shared by all tasks and stored once (only fine-tuning has any).
    shared_params = 0

    @property
    def shared_bytes(self) -> int:
        """Bytes of the learned state shared by all tasks."""
        return self.shared_params * self.dtype.itemsize

    def init_options(self) -> dict:
        """What rebuilds this learner beyond ``(config, backend)``, as keyword arguments of
        its class (a checkpoint stores them); nothing here."""
        return {}

    def restored_state_problem(self, state: dict, frozen: bool) -> str | None:
        """Why a task ``state`` read from a checkpoint (its keys, shapes and dtypes already
        checked) cannot be this learner's, e.g. ``"has a mask that ..."``; None when it can.
        Nothing more to check here."""
        return None

    # ----------------------------------------------------------------- tasks
    @property
    def n_tasks(self) -> int:
        """Number of tasks added so far."""
        return len(self.tasks)

    def add_task(self, name: str | None = None) -> int:
        """Append a new task and initialise its state; returns its id (0, 1, 2, ...). ``name``
        (default ``"task <id>"``) must be a non-empty string."""
        check_task_name(name)
        task_id = len(self.tasks)
        self.tasks.append(StrategyTask(default_task_name(name, task_id),
                                       state=self._init_task(task_id)))
        return task_id

    def remove_last_task(self) -> None:
        """Undo :meth:`add_task` and any training of the newest task (see
        :meth:`nmnp.model.ModulatedNetwork.remove_last_task`); TaskError if there is none."""
        if not self.tasks:
            raise TaskError(f"this {self.name} learner holds no task to remove")
        self._on_remove()  # first: it may refuse
        self.tasks.pop()

    def task(self, task_id: int) -> StrategyTask:
        """The record of a stored task; TaskError for an unknown id."""
        return find_task(self.tasks, task_id, f"this {self.name} learner")

    def freeze(self, task_id: int) -> None:
        """Mark a task as learned: it can no longer be trained."""
        record = self.task(task_id)
        if not record.frozen:
            self._on_freeze(task_id, record)
            record.frozen = True

    def prediction_state(self, task_id: int) -> dict:
        """The task's stored state plus :meth:`shared_state`, by name (see
        :meth:`nmnp.model.Classifier.prediction_state`)."""
        state = {f"task/{k}": v for k, v in self.task(task_id).state.items()}
        return {**state, **{f"shared/{k}": v for k, v in self.shared_state().items()}}

    def shared_state(self) -> dict:
        """Learned arrays every task's predictions read (fine-tuning's readout); none here."""
        return {}

    def trainable_params(self, task_id: int) -> dict:
        """The arrays training may update for ``task_id``; TaskError if it is frozen."""
        record = self.task(task_id)
        if record.frozen:
            raise TaskError(f"task {task_id} ({record.name!r}) is frozen and cannot be trained")
        return self._params(task_id)

    # ----------------------------------------------------------------- validation
    def check_inputs(self, x) -> np.ndarray:
        """See :meth:`nmnp.model.ModulatedNetwork.check_inputs`."""
        return self.network.check_inputs(x)

    def check_labels(self, labels, n_samples: int) -> np.ndarray:
        """See :meth:`nmnp.model.ModulatedNetwork.check_labels`."""
        return self.network.check_labels(labels, n_samples)

    def check_classes(self, classes) -> np.ndarray | None:
        """See :meth:`nmnp.model.ModulatedNetwork.check_classes`."""
        return self.network.check_classes(classes)

    # ----------------------------------------------------------------- computation
    def encode(self, x) -> np.ndarray:
        """Encoder activity h (B, n_units) of validated inputs (the fixed part)."""
        return self.kernels.encoder_forward(x, self.encoder_indices)

    def forward(self, x, task_id: int) -> np.ndarray:
        """Logits (B, n_outputs) of task ``task_id`` (the evaluation path)."""
        self.task(task_id)
        return self.eval_logits(self.check_inputs(x), task_id)

    def eval_logits(self, x, task_id: int) -> np.ndarray:
        """Logits of validated inputs x (B, n_inputs) for prediction.

        Default: encoder, then :meth:`readout_logits`. Strategies whose readout is one matrix
        override it with :meth:`fused_linear`, which never writes the encoder activity out.
        """
        return self.readout_logits(self.encode(x), task_id)

    def fused_linear(self, x, weight) -> np.ndarray:
        """:math:`h(x)\\, W^T` for validated inputs x (B, n_inputs) and weight (n_out, n_units).

        The backend's fused encoder + readout kernel (``task_logits``) with unit gains and
        strength 1 computes exactly this product without materialising h, about four times
        faster on the cpu backend than the encoder followed by a BLAS product (measured once,
        during development). Training still
        forms h, because the weight gradient needs it.
        """
        ones = np.ones((1, self.config.n_units), dtype=self.dtype)
        weight = np.ascontiguousarray(weight, dtype=self.dtype)
        return self.kernels.task_logits(x, self.encoder_indices, ones, np.ones(1, self.dtype), weight)[0]

    def loss_and_grads(self, x, labels, task_id: int, classes=None):
        """Mean cross-entropy of task ``task_id`` and its gradients, validating everything.

        Returns
        -------
        loss : float
        grads : dict keyed like :meth:`trainable_params`
        n_correct : int
        """
        x = self.check_inputs(x)
        y = self.check_labels(labels, x.shape[0])
        self.task(task_id)
        return self.loss_and_grads_batch(x, y, task_id, classes)  # which checks the classes

    def loss_and_grads_batch(self, x, labels, task_id: int, classes=None):
        """:meth:`loss_and_grads` on inputs and labels already validated.

        The training hot path: only :meth:`check_classes` (O(number of classes)) runs here;
        a label outside the classes is a ShapeError from the loss.
        """
        classes = self.check_classes(classes)
        h = self.encode(x)
        logits = self.readout_logits(h, task_id)
        loss, dlogits, n_correct = loss_and_dlogits(logits, labels, classes)
        return loss, self.readout_grads(h, dlogits, task_id), n_correct

    # ----------------------------------------------------------------- subclass hooks
    def _init_task(self, task_id: int) -> dict:
        raise NotImplementedError

    def _params(self, task_id: int) -> dict:
        raise NotImplementedError

    def _on_freeze(self, task_id: int, record: StrategyTask) -> None:
        """Called once when a task is frozen (SupSup packs its mask into bits here)."""

    def _on_remove(self) -> None:
        """Called before the newest task is removed: undo what training it changed outside
        its own record (fine-tuning restores its shared readout here), or raise TaskError
        to keep the task."""

    def readout_logits(self, h, task_id: int) -> np.ndarray:
        """Logits (B, n_outputs) of task ``task_id`` from encoder activity h (B, n_units).

        The training path: h is kept for :meth:`readout_grads`. Subclasses define it.
        """
        raise NotImplementedError

    def readout_grads(self, h, dlogits, task_id: int) -> dict:
        """Gradients of the loss with respect to the arrays of :meth:`trainable_params`.

        Parameters
        ----------
        h : (B, n_units) encoder activity, as given to :meth:`readout_logits`
        dlogits : (B, n_outputs) gradient of the loss with respect to the logits
        task_id : the task being trained

        Returns
        -------
        dict keyed like :meth:`trainable_params`, each gradient of its parameter's shape.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}({c.n_inputs}->{c.n_units} (k={c.inputs_per_unit})->"
                f"{c.n_outputs}, {self.n_tasks} task(s), backend {self.backend!r})")
