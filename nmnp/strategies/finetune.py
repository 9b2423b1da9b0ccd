"""``finetune``: one trained readout shared by every task, with no protection.

The lower bound of the comparison. A single dense readout ``(W, b)`` sits on the fixed
encoder; each new task trains it further, starting from wherever the previous task left it,
and nothing stops that from overwriting what earlier tasks needed. Every task is evaluated
with the *current* readout, so the accuracy matrix shows catastrophic forgetting.

Storage, honestly counted:

* ``params_per_task`` = n_out * n_units + n_out (78,410 for FlyNet): the numbers each task
  trains. They are the *shared* readout, overwritten by the next task, not a per-task copy.
* ``bytes_per_task`` = 0: learning one more task adds nothing to storage (and keeps nothing
  of the old tasks either).
* ``shared_params`` / ``shared_bytes``: the one readout, stored once (313,640 bytes for
  FlyNet in float32). A results table should show it beside ``bytes_per_task``.
"""

from __future__ import annotations

from ..errors import TaskError
from .base import ReadoutStrategy
from .readout import initial_readout, linear_readout_backward, linear_readout_forward


class FineTune(ReadoutStrategy):
    """One dense readout shared by all tasks, trained on each task in turn.

    Parameters
    ----------
    config : NetworkConfig
    backend : {"numpy", "cpu", "cuda"}

    Notes
    -----
    The readout starts from the fixed random readout (see
    :func:`nmnp.strategies.readout.initial_readout`) and is never reset. A frozen task can no
    longer be trained through its own id (TaskError), but the readout it was evaluated with
    keeps changing as later tasks train: that is the point of this baseline.
    """

    name = "finetune"

    def __init__(self, config, backend: str = "cpu"):
        super().__init__(config, backend)
        self.readout = initial_readout(self.network.readout, self.dtype)

    @property
    def params_per_task(self) -> int:
        """Numbers each task trains: the whole shared readout (overwritten, not added)."""
        c = self.config
        return c.n_outputs * c.n_units + c.n_outputs

    #: Nothing is stored per task (see the module docstring).
    bytes_per_task = 0

    @property
    def shared_params(self) -> int:
        """The shared readout, stored once: n_out * n_units weights + n_out biases."""
        return self.params_per_task

    @property
    def fixed_params(self) -> int:
        """Fixed parameters: the encoder connections only (the readout is learned)."""
        return self.config.n_units * self.config.inputs_per_unit

    def _init_task(self, task_id):
        # The readout as it was before this task: remove_last_task puts it back, so a task
        # that fails part-way leaves the learner as the previous tasks left it.
        self._readout_before_task = {k: v.copy() for k, v in self.readout.items()}
        return {}  # nothing of its own

    def _on_remove(self):
        # One copy is kept (313 KB for FlyNet), not one per task: only the newest task
        # can be undone, once.
        before = getattr(self, "_readout_before_task", None)
        if before is None:
            raise TaskError("fine-tuning can undo only its newest task, once: the shared "
                            "readout before the earlier tasks was not kept")
        for k, v in before.items():
            self.readout[k][...] = v  # in place: the arrays trainable_params handed out
        self._readout_before_task = None

    def _params(self, task_id):
        return self.readout

    def shared_state(self):
        return self.readout  # every task is evaluated with the current readout

    def readout_logits(self, h, task_id):
        return linear_readout_forward(h, self.readout["weight"], self.readout["bias"])[0]

    def eval_logits(self, x, task_id):
        return self.fused_linear(x, self.readout["weight"]) + self.readout["bias"]

    def readout_grads(self, h, dlogits, task_id):
        return linear_readout_backward(dlogits, h)  # the forward's cache is its input h
