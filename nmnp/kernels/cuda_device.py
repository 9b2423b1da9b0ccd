"""The device side of the cuda backend: whether CUDA runs here, the launch configuration,
and every transfer and kernel launch.

Everything the cuda kernels (:mod:`nmnp.kernels.cuda_kernels`), the per-batch interface
(:mod:`nmnp.kernels.cuda`), resident training (:mod:`nmnp.kernels.cuda_training`) and
resident evaluation (:mod:`nmnp.kernels.cuda_inference`) do on the GPU goes through here:

* availability: :func:`check_available` says in one sentence what is missing (numba-cuda, a
  GPU and its driver, or the compiler libraries), :func:`device_name` which GPU is in use;
* the launch configuration: :func:`configure` (or the :func:`launch_config` context manager)
  sets ``threads_per_block``, ``tile`` (samples per partial sum in batch reductions),
  ``units_per_chunk`` (encoder units per partial sum in the fused forward) and ``max_blocks``
  (a cap on each grid dimension, ``None`` for none); :func:`grid1`, :func:`grid2` and
  :func:`blocks` size grids from it. Defaults suit a GPU; under the simulator they are small,
  so tests stay fast;
* transfers and launches: :func:`to_device`, :func:`host`, :func:`empty`, :func:`zeros` and
  :func:`launch` count what they do (:data:`launch_counts`, :func:`record_transfers`), and
  support a compile-only mode (:data:`compile_only`, set by
  :func:`nmnp.kernels.cuda._compile_everything`) in which arrays stay NumPy and each launch
  compiles PTX instead of running;
* device copies of the model's read-only arrays (:func:`constant`, :func:`encoder_tables`),
  uploaded once per array object.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager

import numba
import numpy as np

from ..errors import BackendError, ConfigError

try:  # numba-cuda provides numba.cuda; imported here, never by ``import nmnp``
    from numba import cuda
except ImportError as _err:  # pragma: no cover - depends on the installation
    cuda = None
    _IMPORT_ERROR: Exception | None = _err
else:
    _IMPORT_ERROR = None

#: True when Numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1 before Python started).
SIMULATOR = bool(numba.config.ENABLE_CUDASIM)

# ------------------------------------------------------------------------------ availability
_unavailable: str | None = None
_checked = False


def check_available() -> None:
    """Raise :class:`BackendError` with a one-sentence reason if CUDA kernels cannot run here.

    They can run on a usable NVIDIA GPU, or on the CPU under Numba's CUDA simulator.
    """
    global _unavailable, _checked
    if not _checked:
        _unavailable = _why_unavailable()
        _checked = True
    if _unavailable is not None:
        raise BackendError(_unavailable)


def _why_unavailable() -> str | None:
    if cuda is None:
        return (
            f"the cuda backend needs the numba-cuda package, which is not importable here "
            f"({_IMPORT_ERROR}); install it with: pip install nmnp[cuda]"
        )
    try:
        if cuda.is_available():
            return None if SIMULATOR else _why_cannot_compile()
        reason = cuda.cuda_error()
    except Exception as err:  # a broken driver installation raises from odd places
        reason = err
    reason = " ".join(str(reason or "no CUDA device detected").split()).rstrip(".")
    hint = ""
    if getattr(cuda, "implementation", "") != "NVIDIA":  # Numba's old built-in CUDA target
        hint = " (pip install nmnp[cuda] installs the maintained numba-cuda package)"
    return (
        f"no usable CUDA GPU found ({reason}){hint}; to run the CUDA kernels on the CPU for "
        "testing, set NUMBA_ENABLE_CUDASIM=1 before starting Python"
    )


def _why_cannot_compile() -> str | None:
    """A GPU is there; can numba-cuda compile for it (it needs the CUDA toolkit's NVVM)?"""

    def probe(a):
        a[0] = 1.0

    try:
        cuda.compile_ptx_for_current_device(probe, (numba.float32[:],))
    except Exception as err:
        reason = " ".join(str(err).split())[:300]
        if isinstance(err, AttributeError) and "numpy" in str(err):
            # numba-cuda 0.30.4 still refers to np.row_stack, which NumPy 2.5 removed
            return (
                f"a CUDA GPU was found but this numba-cuda release cannot compile kernels "
                f"with NumPy {np.__version__} ({reason}); install an older NumPy "
                "(pip install 'numpy<2.5') or a numba-cuda release that supports this one"
            )
        return (
            f"a CUDA GPU was found but numba-cuda cannot compile kernels for it ({reason}); "
            "install the CUDA compiler libraries that match your driver, e.g. "
            "pip install numba-cuda[cu12] (or numba-cuda[cu13])"
        )
    return None


def device_name() -> str:
    """The GPU this process uses, or ``"CUDA simulator"``."""
    check_available()
    if SIMULATOR:
        return "CUDA simulator (kernels run on the CPU as Python threads)"
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return f"{name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})"


# ------------------------------------------------------------------------------ launch config
_GPU_DEFAULTS = dict(threads_per_block=128, tile=32, units_per_chunk=128, max_blocks=None)
_SIM_DEFAULTS = dict(threads_per_block=8, tile=4, units_per_chunk=8, max_blocks=2)
#: The launch configuration in force; change it through :func:`configure`.
launch_settings = dict(_SIM_DEFAULTS if SIMULATOR else _GPU_DEFAULTS)

#: Largest grid dimensions CUDA allows (x, then y and z).
GRID_X_MAX, GRID_YZ_MAX = 2**31 - 1, 65535


def configure(*, threads_per_block=None, tile=None, units_per_chunk=None, max_blocks=...) -> dict:
    """Set the launch configuration of every cuda kernel; returns the previous one.

    Parameters
    ----------
    threads_per_block : int, power of two in [1, 1024]
        Threads of every (one-dimensional) block. A power of two because the training step
        reduces within a block by halving.
    tile : int >= 1
        Samples folded into one partial sum by the batch reductions (``dc``).
    units_per_chunk : int >= 1
        Encoder units folded into one partial logit by the fused forward.
    max_blocks : int >= 1 or None
        Cap on each grid dimension; grid-stride loops cover the rest. ``None``: no cap.

    Only the arguments given change. Results do not depend on any of these (beyond
    floating-point summation order).
    """
    previous = dict(launch_settings)
    new = dict(launch_settings)
    if threads_per_block is not None:
        t = threads_per_block
        if not isinstance(t, int) or t < 1 or t > 1024 or t & (t - 1):
            raise ConfigError(f"threads_per_block must be a power of two in 1..1024, got {t!r}")
        new["threads_per_block"] = t
    for key, value in (("tile", tile), ("units_per_chunk", units_per_chunk)):
        if value is not None:
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
            new[key] = value
    if max_blocks is not ...:
        if max_blocks is not None and (not isinstance(max_blocks, int) or max_blocks < 1):
            raise ConfigError(f"max_blocks must be a positive integer or None, got {max_blocks!r}")
        new["max_blocks"] = max_blocks
    launch_settings.update(new)
    return previous


@contextmanager
def launch_config(**settings):
    """``with launch_config(threads_per_block=4, tile=3): ...`` restores the old settings after."""
    previous = configure(**settings)
    try:
        yield dict(launch_settings)
    finally:
        launch_settings.update(previous)


def current_config() -> dict:
    """The launch configuration in force (a copy)."""
    return dict(launch_settings)


def tpb() -> int:
    """Threads per block of every launch."""
    return launch_settings["threads_per_block"]


def blocks(n_items: int, per_block: int, limit: int = GRID_X_MAX) -> int:
    """Blocks for ``n_items`` at ``per_block`` items each, capped; at least 1."""
    cap = launch_settings["max_blocks"] or limit
    return max(1, min(-(-n_items // per_block), cap, limit))


def grid1(n_items: int) -> int:
    """1-D grid: one thread per item (grid-stride beyond the cap)."""
    return blocks(n_items, tpb())


def grid2(nx: int, ny: int) -> tuple[int, int]:
    """2-D grid: x covers ``nx`` items with threads, y covers ``ny`` rows with blocks."""
    return blocks(nx, tpb()), blocks(ny, 1, GRID_YZ_MAX)


# ------------------------------------------------------------------------------ device memory
# Every transfer and launch goes through these helpers. They count launches (documentation
# and tests: how many kernels one training step takes) and make a compile-only mode possible
# (nmnp.kernels.cuda._compile_everything): arrays stay NumPy and each launch compiles PTX.

#: None, or while the compile check runs, ``{"__cc__": (major, minor)}`` plus the PTX of each
#: kernel signature compiled so far, under ``(kernel name, id, signature)``.
compile_only: dict | None = None
#: Launches per kernel name since the process started (read it; never rebind it).
launch_counts: dict[str, int] = {}
_transfer_records: list[dict] = []


@contextmanager
def record_transfers():
    """Record the host/device copies made inside a ``with`` block.

    Yields a dict ``{"up": [...], "down": [...]}`` that fills with the shape of every array
    :func:`to_device` copies up and of every device array copied back, in order. Device
    allocations that are never copied are not transfers and are not listed, nor is the
    zero-filled scratch of :func:`zeros` (status words, counters, per-sample buffers). Tests and
    tutorial 06 use it to check that training moves a task's data up once and only metrics
    back per epoch.
    """
    record = {"up": [], "down": []}
    _transfer_records.append(record)
    try:
        yield record
    finally:  # by identity: two nested records can be equal
        _transfer_records[:] = [r for r in _transfer_records if r is not record]


def to_device(a):
    """A device copy of the host array ``a`` (recorded by :func:`record_transfers`)."""
    a = np.ascontiguousarray(a)
    if a.size > 1 and 0 in a.strides:
        # A length-1 axis may carry stride 0 (``v[None, :]`` has it). numba-cuda takes that
        # for a broadcast axis and checks the array's layout element by element in Python:
        # 30 ms for one 7,840-unit context, on every upload (measured once, during development). A copy has ordinary strides.
        a = a.copy()
    for record in _transfer_records:
        record["up"].append(a.shape)
    if compile_only is not None:
        return a.copy()
    return cuda.to_device(a)


def empty(shape, dtype):
    """An uninitialised device array."""
    if compile_only is not None:
        return np.zeros(shape, dtype)
    return cuda.device_array(shape, dtype)


def zeros(shape, dtype):
    """A device array of zeros, uploaded from the host."""
    if compile_only is not None:
        return np.zeros(shape, dtype)
    return cuda.to_device(np.zeros(shape, dtype))


def host(d):
    """The device array ``d`` copied back to the host (recorded by :func:`record_transfers`)."""
    for record in _transfer_records:
        record["down"].append(tuple(d.shape))
    return d.copy() if compile_only is not None else d.copy_to_host()


def launch(kernel, grid, block, *args) -> None:
    """``kernel[grid, block](*args)``, counted in :data:`launch_counts`; in compile-only mode,
    compiles the kernel for these argument types instead."""
    name = kernel.py_func.__name__
    launch_counts[name] = launch_counts.get(name, 0) + 1
    if compile_only is not None:
        _compile_ptx(kernel, args)
        return
    kernel[grid, block](*args)


def _compile_ptx(kernel, args) -> None:
    sig = tuple(numba.typeof(a) for a in args)
    key = (kernel.py_func.__name__, id(kernel), sig)
    if key not in compile_only:
        compile_only[key], _ = cuda.compile_ptx(kernel.py_func, sig, cc=compile_only["__cc__"])


# Device copies of read-only host arrays (the model's fixed encoder indices and readout are
# read-only): uploaded once per array object, dropped when the array is garbage-collected.
_constants: dict[int, tuple] = {}
_tables: dict[int, tuple] = {}


def _per_array(cache: dict, a, build):
    """``build(a)``, kept in ``cache`` while the read-only array ``a`` lives; a writeable
    array (which may change) is built anew on every call, as in compile-only mode."""
    if a.flags.writeable or compile_only is not None:
        return build(a)
    key = id(a)
    hit = cache.get(key)
    if hit is not None and hit[0]() is a:  # the same object, not a new one at a reused id
        return hit[1]
    value = build(a)
    forget = lambda _, key=key, cache=cache: cache.pop(key, None)  # noqa: E731
    cache[key] = (weakref.ref(a, forget), value)
    return value


def constant(a):
    """Device copy of ``a``; cached when ``a`` is read-only (a writeable array may change)."""
    return _per_array(_constants, a, to_device)


class EncoderTables:
    """Device data derived from the encoder indices ``idx`` (n_units, k), built on demand.

    ``counts[i]``: how many units read input i (float64), for the sample means; ``ptr``,
    ``readers``: the inverse map in CSR form (units reading input i are
    ``readers[ptr[i]:ptr[i+1]]``), so the backward pass gathers instead of scattering.
    """

    def __init__(self, idx):
        self.host_idx = np.ascontiguousarray(idx)
        self.idx = constant(idx)
        self._counts = {}
        self._csr = {}

    def counts(self, n_in: int):
        """(n_in,) float64 on the device: how many units read each input."""
        if n_in not in self._counts:
            c = np.bincount(self.host_idx.reshape(-1), minlength=n_in).astype(np.float64)
            self._counts[n_in] = to_device(c)
        return self._counts[n_in]

    def csr(self, n_in: int):
        """(ptr (n_in + 1,) int64, readers (n_units k,) int32) on the device."""
        if n_in not in self._csr:
            flat = self.host_idx.reshape(-1).astype(np.int64)
            order = np.argsort(flat, kind="stable")
            readers = (order // self.host_idx.shape[1]).astype(np.int32)
            ptr = np.zeros(n_in + 1, dtype=np.int64)
            np.cumsum(np.bincount(flat, minlength=n_in), out=ptr[1:])
            self._csr[n_in] = (to_device(ptr), to_device(readers))
        return self._csr[n_in]


def encoder_tables(idx) -> EncoderTables:
    """Tables for ``idx``, cached per read-only array object like :func:`constant`."""
    return _per_array(_tables, idx, EncoderTables)


_no_status = None


def status_zero():
    """An all-zero status word: the standalone kernels never skip work."""
    global _no_status
    if _no_status is None or compile_only is not None:
        _no_status = zeros(4, np.int32)
    return _no_status


_no_activity_arrays: dict[str, object] = {}


def no_activity(dtype):
    """A (1, 1) stand-in for the fused forward's ``hT`` when it does not store the activity."""
    name = np.dtype(dtype).name
    if name not in _no_activity_arrays or compile_only is not None:
        _no_activity_arrays[name] = zeros((1, 1), dtype)
    return _no_activity_arrays[name]


def clear_caches() -> None:
    """Forget every cached device array (constants, encoder tables, stand-ins)."""
    global _no_status
    _constants.clear()
    _tables.clear()
    _no_activity_arrays.clear()
    _no_status = None
