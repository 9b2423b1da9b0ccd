"""Pick a kernel backend by name: one interface, several implementations.

A backend is a module that defines every name in :data:`KERNELS` with the signatures of
:mod:`nmnp.kernels.reference`, and ``NAME``. The first five are the layers' forward and
backward passes; ``task_logits`` (evaluation) and ``logits_and_activity`` (training) fuse the
encoder with the readout, so a backend can compute the encoder once per step, or never write
its output at all; ``context_grads`` is the fused backward from raw inputs, for a caller that
kept no activity; ``task_predictions`` is evaluation's
whole job (class ids of a set, taken in batches), so a backend can keep a set on its device
and bring back only the answers. :func:`get_backend` imports it
lazily (so ``import nmnp`` never compiles a kernel or touches a GPU) and checks that nothing
is missing.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from ..errors import BackendError

#: Every backend implements exactly these functions.
KERNELS = (
    "encoder_forward",
    "encoder_backward",
    "modulated_forward",
    "modulated_backward",
    "modulated_param_grads",
    "task_logits",
    "task_predictions",
    "logits_and_activity",
    "context_grads",
)

_MODULES = {
    "numpy": "nmnp.kernels.reference",
    "cpu": "nmnp.kernels.cpu",
    "cuda": "nmnp.kernels.cuda",
}

#: Names accepted by :func:`get_backend`.
BACKENDS = tuple(_MODULES)


def get_backend(backend: "str | ModuleType") -> ModuleType:
    """Return the kernel module for ``backend`` ("numpy", "cpu" or "cuda").

    A module that is already a backend is returned unchanged, so functions can accept either.

    Raises
    ------
    BackendError
        For an unknown name, or a backend that cannot run here (``cuda`` without a GPU).
    """
    if isinstance(backend, ModuleType):
        return backend
    if not isinstance(backend, str) or backend not in _MODULES:  # a list is not hashable
        raise BackendError(
            f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    try:
        module = importlib.import_module(_MODULES[backend])
    except ImportError as err:  # e.g. numba-cuda not installed
        raise BackendError(f"backend {backend!r} cannot be imported here: {err}") from err
    check = getattr(module, "check_available", None)
    if check is not None:
        check()  # raises BackendError with a sentence saying what is missing
    missing = [name for name in KERNELS if not hasattr(module, name)]
    if missing:  # a programming error in nmnp itself, caught on first use
        raise BackendError(f"backend {backend!r} lacks kernels: {', '.join(missing)}")
    return module


#: numba-cuda's warning for a launch of fewer than 128 blocks, as a pattern (the message
#: may begin with a terminal escape code for bold text, hence the leading wildcard).
LOW_OCCUPANCY_WARNING = r".*Grid size \d+ will likely result in GPU under-utilization"


def quiet_low_occupancy_warnings() -> None:
    """Hide numba-cuda's low-occupancy warning, for nmnp's own command-line programs.

    numba-cuda warns at every launch of fewer than 128 blocks. The cuda backend's kernels use
    grid-stride loops and size their grids on purpose (a batch of 128 samples is one block of
    the loss kernel), so on a GPU the warning would repeat on every line of ``python -m
    nmnp.bench``. The library itself installs no filter: a program that imports nmnp keeps
    numba-cuda's warnings for its own kernels.
    """
    warnings.filterwarnings("ignore", message=LOW_OCCUPANCY_WARNING)

