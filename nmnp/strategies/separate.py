"""``separate``: an independent, fully trained readout for every task.

The upper bound of the comparison among readouts on the fixed encoder: task t gets its own
dense readout ``(W_t, b_t)``, trained from the same starting point (a copy of the fixed
random readout, zero bias) and never touched again, so there is no forgetting and no
sharing. It pays the full price per task:

* ``params_per_task`` = n_out * n_units + n_out (78,410 for FlyNet);
* ``bytes_per_task`` = that many floats (313,640 bytes in float32), ten times the crwn
  model's 7,841 floats.
"""

from __future__ import annotations

from .base import ReadoutStrategy
from .readout import initial_readout, linear_readout_backward, linear_readout_forward


class Separate(ReadoutStrategy):
    """One dense readout per task on the shared fixed encoder.

    Parameters
    ----------
    config : NetworkConfig
    backend : {"numpy", "cpu", "cuda"}
    """

    name = "separate"

    @property
    def params_per_task(self) -> int:
        """n_out * n_units weights + n_out biases, all learned, all kept."""
        c = self.config
        return c.n_outputs * c.n_units + c.n_outputs

    @property
    def bytes_per_task(self) -> int:
        """Bytes of one task's readout (weight and bias) at the network's dtype."""
        return self.params_per_task * self.dtype.itemsize

    @property
    def fixed_params(self) -> int:
        """Fixed parameters: the encoder connections only (the readouts are learned)."""
        return self.config.n_units * self.config.inputs_per_unit

    def _init_task(self, task_id):
        return initial_readout(self.network.readout, self.dtype)

    def _params(self, task_id):
        return self.tasks[task_id].state

    def readout_logits(self, h, task_id):
        state = self.tasks[task_id].state
        return linear_readout_forward(h, state["weight"], state["bias"])[0]

    def eval_logits(self, x, task_id):
        state = self.tasks[task_id].state
        return self.fused_linear(x, state["weight"]) + state["bias"]

    def readout_grads(self, h, dlogits, task_id):
        return linear_readout_backward(dlogits, h)  # the forward's cache is its input h
