"""Compute kernels: a NumPy reference, a Numba CPU backend and a numba.cuda backend.

All three define the same functions (see :data:`nmnp.kernels.backend.KERNELS`);
:func:`get_backend` picks one by name.
"""

from .backend import BACKENDS, KERNELS, get_backend

__all__ = ["BACKENDS", "KERNELS", "get_backend"]
