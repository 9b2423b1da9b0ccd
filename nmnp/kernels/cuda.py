"""numba.cuda kernels, the GPU twins of :mod:`nmnp.kernels.reference` and :mod:`nmnp.kernels.cpu`.

Every public function has the same name, arguments and results as its twins: it takes and
returns host NumPy arrays, so the backend-parametrised tests run it unchanged. Inside, data
moves to the device, one or more kernels run, and the result comes back. Training does not go
through these per-batch functions on this backend: :func:`train_task_resident` keeps a task's
data on the device for all its epochs (see :mod:`nmnp.kernels.cuda_training`), and evaluation
goes through :func:`task_predictions`, which uploads a whole set once and brings back only
class ids (see :mod:`nmnp.kernels.cuda_inference`).

Requirements
------------
The numba-cuda package (``pip install nmnp[cuda]``) and an NVIDIA GPU, or Numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1`` in the environment *before* Python starts), which runs
the same kernels on the CPU as Python threads: slow, for testing small shapes only.
:func:`check_available` says in one sentence what is missing. ``import nmnp`` never imports
this module; :func:`nmnp.kernels.get_backend` does, on first use of ``"cuda"``.

Kernels (each docstring states its launch shape and what makes it race-free)
----------------------------------------------------------------------------
===============================  =================================================================
``stage_batch``                  rows of ``x`` -> batch-innermost ``xT`` (n_in, B) + sample means
``encode``                       encoder output ``h`` (standalone ``encoder_forward`` only)
``dz_means``                     per-sample mean of ``dh * [h > 0]`` (encoder backward)
``encoder_input_grad``           ``dx`` by *gathering* over each input's readers (no scatter)
``readout_forward``              ``y = s (h * c) W^T`` (modulation fused into the product)
``readout_backward``             ``dh`` and per-batch-tile partial sums of ``g * h``
``sum_rows``                     the second reduction pass: fixed-order column sums in float64
``logit_partials``               fused encoder + readout, per unit-chunk partial logits (hot path)
``scale_partials``               sums the unit-chunk partials, scales by each task's strength
``predict_classes``              the same sums, then the argmax over the competing classes
``context_grad_partials``        fused encoder + readout backward, per batch-tile partial ``dc``
``context_grad_from_activity``   the same partials from the activity the forward stored (training)
===============================  =================================================================

Common contract
---------------
* Grid-stride loops everywhere: a kernel is correct for any grid, so :func:`configure` can cap
  the number of blocks (the simulator runs one block at a time) without changing results.
* No two threads write the same element. Every reduction that spans threads is split into
  per-block (or per-tile) partial sums written to their own rows, then summed in a fixed
  order by a second pass (:func:`sum_rows`, or the consumer kernel itself). No atomics on
  data, so results are deterministic run to run. (The training step uses one atomic counter
  to elect the block that finishes a reduction; see :mod:`nmnp.kernels.cuda_training`.)
* No shared memory and no barriers in these kernels: the access patterns are arranged so
  that registers and the hardware caches give the reuse a shared-memory tile would. The
  fused kernels read the batch in the batch-innermost layout ``xT`` (n_in, B). In the
  forward a thread owns a sample and a warp 32 consecutive samples, so each of a unit's k
  input reads is one coalesced 128-byte load, the unit's weights ``c[j] W[:, j]`` are one
  address for the whole warp (a broadcast), and all n_out outputs accumulate per thread
  (each activity is used n_out times per task; in registers, see :func:`_logit_partials`).
  In the backward a thread owns a unit and walks a tile of samples: in training it reads
  the activity the forward stored (unit-major, so a thread's samples are consecutive); the
  standalone ``context_grads`` recomputes it from the tile's columns of ``xT``, which stay
  in L1 while the block's units read them. (Barriers are also what makes the CUDA simulator
  slow: each costs milliseconds per block there.) The training step has the one
  block-level tree reduction and, in its loss kernel, one barrier per group of samples.
* Float32 arithmetic in the inner loops for float32 data (float64 for float64); partial sums
  across blocks and the final reductions in float64. Compare with tolerances, not bitwise.

Launch configuration
--------------------
:func:`configure` (or the :func:`launch_config` context manager) sets ``threads_per_block``,
``tile`` (samples per partial sum in batch reductions), ``units_per_chunk`` (encoder units per
partial sum in the fused forward) and ``max_blocks`` (a cap on each grid dimension, ``None``
for none). Defaults suit a GPU; under the simulator they are small, so tests stay fast.
"""

from __future__ import annotations

import functools
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

NAME = "cuda"

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
_config = dict(_SIM_DEFAULTS if SIMULATOR else _GPU_DEFAULTS)

#: Largest grid dimensions CUDA allows (x, then y and z).
_GRID_X_MAX, _GRID_YZ_MAX = 2**31 - 1, 65535


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
    previous = dict(_config)
    new = dict(_config)
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
    _config.update(new)
    return previous


@contextmanager
def launch_config(**settings):
    """``with launch_config(threads_per_block=4, tile=3): ...`` restores the old settings after."""
    previous = configure(**settings)
    try:
        yield dict(_config)
    finally:
        _config.update(previous)


def current_config() -> dict:
    """The launch configuration in force (a copy)."""
    return dict(_config)


def _tpb() -> int:
    return _config["threads_per_block"]


def _blocks(n_items: int, per_block: int, limit: int = _GRID_X_MAX) -> int:
    """Blocks for ``n_items`` at ``per_block`` items each, capped; at least 1."""
    cap = _config["max_blocks"] or limit
    return max(1, min(-(-n_items // per_block), cap, limit))


def _grid1(n_items: int) -> int:
    """1-D grid: one thread per item (grid-stride beyond the cap)."""
    return _blocks(n_items, _tpb())


def _grid2(nx: int, ny: int) -> tuple[int, int]:
    """2-D grid: x covers ``nx`` items with threads, y covers ``ny`` rows with blocks."""
    return _blocks(nx, _tpb()), _blocks(ny, 1, _GRID_YZ_MAX)


# ------------------------------------------------------------------------------ device memory
# Every transfer and launch goes through these helpers. They count launches (documentation
# and tests: how many kernels one training step takes) and make a compile-only mode possible
# (:func:`_compile_everything`): arrays stay NumPy and each launch compiles PTX instead.
_compile_only: dict | None = None
launch_counts: dict[str, int] = {}
_transfer_records: list[dict] = []


@contextmanager
def record_transfers():
    """Record the host/device copies made inside a ``with`` block.

    Yields a dict ``{"up": [...], "down": [...]}`` that fills with the shape of every host
    array copied to the device and of every device array copied back, in order (device
    allocations that are never copied are not transfers and are not listed). Tests and
    tutorial 06 use it to check that training moves a task's data up once and only metrics
    back per epoch.
    """
    record = {"up": [], "down": []}
    _transfer_records.append(record)
    try:
        yield record
    finally:  # by identity: two nested records can be equal
        _transfer_records[:] = [r for r in _transfer_records if r is not record]


def _to_device(a):
    a = np.ascontiguousarray(a)
    if a.size > 1 and 0 in a.strides:
        # A length-1 axis may carry stride 0 (``v[None, :]`` has it). numba-cuda takes that
        # for a broadcast axis and checks the array's layout element by element in Python:
        # 30 ms for one 7,840-unit context, on every upload. A copy has ordinary strides.
        a = a.copy()
    for record in _transfer_records:
        record["up"].append(a.shape)
    if _compile_only is not None:
        return a.copy()
    return cuda.to_device(a)


def _empty(shape, dtype):
    if _compile_only is not None:
        return np.zeros(shape, dtype)
    return cuda.device_array(shape, dtype)


def _zeros(shape, dtype):
    if _compile_only is not None:
        return np.zeros(shape, dtype)
    return cuda.to_device(np.zeros(shape, dtype))


def _host(d):
    for record in _transfer_records:
        record["down"].append(tuple(d.shape))
    return d.copy() if _compile_only is not None else d.copy_to_host()


def _launch(kernel, grid, block, *args) -> None:
    name = kernel.py_func.__name__
    launch_counts[name] = launch_counts.get(name, 0) + 1
    if _compile_only is not None:
        _compile_ptx(kernel, args)
        return
    kernel[grid, block](*args)


def _compile_ptx(kernel, args) -> None:
    sig = tuple(numba.typeof(a) for a in args)
    key = (kernel.py_func.__name__, id(kernel), sig)
    if key not in _compile_only:
        cuda.compile_ptx(kernel.py_func, sig, cc=_compile_only["__cc__"])
        _compile_only[key] = True


# Device copies of read-only host arrays (the model's fixed encoder indices and readout are
# read-only): uploaded once per array object, dropped when the array is garbage-collected.
_constants: dict[int, tuple] = {}


def _constant(a):
    """Device copy of ``a``; cached when ``a`` is read-only (a writeable array may change)."""
    if a.flags.writeable or _compile_only is not None:
        return _to_device(a)
    key = id(a)
    hit = _constants.get(key)
    if hit is not None and hit[0]() is a:
        return hit[1]
    dev = _to_device(a)
    forget = lambda _, key=key, cache=_constants: cache.pop(key, None)  # noqa: E731
    _constants[key] = (weakref.ref(a, forget), dev)
    return dev


class _EncoderTables:
    """Device data derived from the encoder indices ``idx`` (n_units, k), built on demand.

    ``counts[i]``: how many units read input i (float64), for the sample means; ``ptr``,
    ``readers``: the inverse map in CSR form (units reading input i are
    ``readers[ptr[i]:ptr[i+1]]``), so the backward pass gathers instead of scattering.
    """

    def __init__(self, idx):
        self.host_idx = np.ascontiguousarray(idx)
        self.idx = _constant(idx)
        self._counts = {}
        self._csr = {}

    def counts(self, n_in: int):
        if n_in not in self._counts:
            c = np.bincount(self.host_idx.reshape(-1), minlength=n_in).astype(np.float64)
            self._counts[n_in] = _to_device(c)
        return self._counts[n_in]

    def csr(self, n_in: int):
        if n_in not in self._csr:
            flat = self.host_idx.reshape(-1).astype(np.int64)
            order = np.argsort(flat, kind="stable")
            readers = (order // self.host_idx.shape[1]).astype(np.int32)
            ptr = np.zeros(n_in + 1, dtype=np.int64)
            np.cumsum(np.bincount(flat, minlength=n_in), out=ptr[1:])
            self._csr[n_in] = (_to_device(ptr), _to_device(readers))
        return self._csr[n_in]


_tables: dict[int, tuple] = {}


def _encoder_tables(idx) -> _EncoderTables:
    """Tables for ``idx``, cached per read-only array object like :func:`_constant`."""
    if idx.flags.writeable or _compile_only is not None:
        return _EncoderTables(idx)
    key = id(idx)
    hit = _tables.get(key)
    if hit is not None and hit[0]() is idx:
        return hit[1]
    tables = _EncoderTables(idx)
    forget = lambda _, key=key, cache=_tables: cache.pop(key, None)  # noqa: E731
    _tables[key] = (weakref.ref(idx, forget), tables)
    return tables


_no_status = None


def _status_zero():
    """An all-zero status word: the standalone kernels never skip work."""
    global _no_status
    if _no_status is None or _compile_only is not None:
        _no_status = _zeros(4, np.int32)
    return _no_status


_no_activity_arrays: dict[str, object] = {}


def _no_activity(dtype):
    """A (1, 1) stand-in for the fused forward's ``hT`` when it does not store the activity."""
    name = np.dtype(dtype).name
    if name not in _no_activity_arrays or _compile_only is not None:
        _no_activity_arrays[name] = _zeros((1, 1), dtype)
    return _no_activity_arrays[name]


# ------------------------------------------------------------------------------ kernels
def _plain(dtype):
    """The kernels without tuning constants, for data of ``dtype``."""
    return _plain_kernels(np.dtype(dtype).name)


@functools.lru_cache(maxsize=None)
def _plain_kernels(dtype_name: str):
    """Built on first use, once per dtype: ``dt`` is the accumulators' type."""
    dt = numba.from_dtype(np.dtype(dtype_name))

    @cuda.jit
    def stage_batch(x, rows, counts, inv_n, want_xT, xT, mean):
        """xT[i, p] = x[rows[p], i] (if want_xT); mean[p] = inv_n sum_i counts[i] x[rows[p], i].

        Launch: 1-D, one thread per batch position p. Each thread walks one contiguous row of
        ``x``; the writes ``xT[i, p]`` of neighbouring threads are neighbours (coalesced). The
        mean is the per-sample mean unit activity, linear in x (counts[i] units read input i),
        so the encoder never needs a pass over all units first. Float64 accumulator.
        """
        n_in = x.shape[1]
        for p in range(cuda.grid(1), rows.shape[0], cuda.gridsize(1)):
            r = rows[p]
            acc = 0.0
            for i in range(n_in):
                v = x[r, i]
                if want_xT:
                    xT[i, p] = v
                acc += counts[i] * v
            mean[p] = acc * inv_n

    @cuda.jit
    def encode(x, idx, mean, h):
        """h[b, j] = relu(sum_t x[b, idx[j, t]] - mean[b]).

        Launch: 2-D; x: units j (threads), y: samples b (blocks). Neighbouring threads write
        neighbouring ``h[b, j]`` (coalesced); the gathers hit one row of ``x`` per block.
        """
        n, k = idx.shape
        for b in range(cuda.blockIdx.y, x.shape[0], cuda.gridDim.y):
            mb = mean[b]
            for j in range(cuda.grid(1), n, cuda.gridsize(1)):
                m = x[b, idx[j, 0]]
                for t in range(1, k):
                    m += x[b, idx[j, t]]
                m -= mb
                h[b, j] = m if m > 0 else 0

    @cuda.jit
    def dz_means(dh, h, inv_n, mz):
        """mz[b] = inv_n * sum_j dh[b, j] [h[b, j] > 0]: one thread per sample, float64 sum."""
        n = dh.shape[1]
        for b in range(cuda.grid(1), dh.shape[0], cuda.gridsize(1)):
            acc = 0.0
            for j in range(n):
                if h[b, j] > 0:
                    acc += dh[b, j]
            mz[b] = acc * inv_n

    @cuda.jit
    def encoder_input_grad(dh, h, ptr, readers, mz, dx):
        """dx[b, i] = sum over units u reading i of dh[b, u] [h[b, u] > 0], minus count_i mz[b].

        Launch: 2-D; x: inputs i (threads), y: samples b (blocks). A gather over the inverse
        map (CSR ``ptr``/``readers``): each ``dx`` element has exactly one writer, so the
        scatter-add of the reference needs neither atomics nor per-thread copies of ``dx``.
        """
        n_in = dx.shape[1]
        for b in range(cuda.blockIdx.y, dx.shape[0], cuda.gridDim.y):
            for i in range(cuda.grid(1), n_in, cuda.gridsize(1)):
                acc = dt(0)
                for q in range(ptr[i], ptr[i + 1]):
                    u = readers[q]
                    if h[b, u] > 0:
                        acc += dh[b, u]
                dx[b, i] = acc - (ptr[i + 1] - ptr[i]) * mz[b]

    @cuda.jit
    def readout_forward(h, c, s, W, y):
        """y[b, o] = s * sum_j h[b, j] c[j] W[o, j]; one thread per output element.

        Launch: 1-D over B * n_out, ``o`` fastest: the n_out threads of a sample read the
        same ``h[b, j]`` (broadcast), and ``c`` and ``W`` rows stay in cache. The per-task
        matrix ``s W diag(c)`` is never formed.
        """
        B, n = h.shape
        n_out = W.shape[0]
        for q in range(cuda.grid(1), B * n_out, cuda.gridsize(1)):
            b = q // n_out
            o = q - b * n_out
            acc = dt(0)
            for j in range(n):
                acc += h[b, j] * c[j] * W[o, j]
            y[b, o] = s * acc

    @cuda.jit
    def readout_backward(dy, h, c, s, W, tile, want_dh, dh, gh_part):
        """g = dy W; dh = s g c (if want_dh); gh_part[r, j] = sum over tile r of g[b, j] h[b, j].

        Launch: 2-D; x: units j (threads), y: batch tiles r (blocks). Each thread owns one
        (tile, unit) partial sum: race-free without atomics; :func:`sum_rows` adds the tiles.
        ``h`` and ``dh`` rows are read and written coalesced across neighbouring units.
        """
        B, n = h.shape
        n_out = W.shape[0]
        n_tiles = gh_part.shape[0]
        for r in range(cuda.blockIdx.y, n_tiles, cuda.gridDim.y):
            b1 = min(r * tile + tile, B)
            for j in range(cuda.grid(1), n, cuda.gridsize(1)):
                acc = dt(0)
                for b in range(r * tile, b1):
                    g = dy[b, 0] * W[0, j]
                    for o in range(1, n_out):
                        g += dy[b, o] * W[o, j]
                    if want_dh:
                        dh[b, j] = s * g * c[j]
                    acc += g * h[b, j]
                gh_part[r, j] = acc

    @cuda.jit
    def sum_rows(part, out):
        """out[j] = sum_r part[r, j] in float64, rows in order: the second reduction pass.

        Launch: 1-D over columns; neighbouring threads read neighbouring columns (coalesced).
        """
        for j in range(cuda.grid(1), part.shape[1], cuda.gridsize(1)):
            acc = 0.0
            for r in range(part.shape[0]):
                acc += part[r, j]
            out[j] = acc

    @cuda.jit
    def scale_partials(partials, strengths, t0, logits):
        """logits[t0 + t, b, o] = strengths[t0 + t] * sum_c partials[c, t, o, b] (float64 sum).

        Launch: 1-D over (t, b, o), ``o`` fastest.
        """
        n_chunks, nt, n_out, B = partials.shape
        for q in range(cuda.grid(1), nt * B * n_out, cuda.gridsize(1)):
            t = q // (B * n_out)
            rem = q - t * B * n_out
            b = rem // n_out
            o = rem - b * n_out
            acc = 0.0
            for c in range(n_chunks):
                acc += partials[c, t, o, b]
            logits[t0 + t, b, o] = strengths[t0 + t] * acc

    return dict(
        stage_batch=stage_batch, encode=encode, dz_means=dz_means,
        encoder_input_grad=encoder_input_grad, readout_forward=readout_forward,
        readout_backward=readout_backward, sum_rows=sum_rows, scale_partials=scale_partials,
    )


#: Registers per thread for the fused forward's accumulators: tasks per pass * n_out <= this
#: (at least n_out). 40 keeps four 10-class tasks per encoder pass without spilling.
_ACCUMULATORS = 40


def _tasks_per_pass(n_out: int) -> int:
    return max(1, _ACCUMULATORS // n_out)


@functools.lru_cache(maxsize=None)
def _logit_partials(acc_size: int, dtype_name: str, fixed_tasks: int = 0, fixed_outputs: int = 0):
    """The fused forward kernel with ``acc_size`` accumulators of ``dtype_name``.

    With ``fixed_tasks = nt`` and ``fixed_outputs = n_out`` (> 0) the kernel is compiled for
    exactly that many tasks per pass and outputs (one task in the training step, up to
    :data:`_ACCUMULATORS` // n_out in evaluation): every accumulator loop then has a trip
    count known at compile time, is unrolled, and the accumulators live in registers; it
    must be launched with ``nt == fixed_tasks``. Otherwise (more outputs than
    :data:`_ACCUMULATORS`) they are indexed at run time, which puts them in local memory (a
    per-thread slice of the cache hierarchy): correct for any shape, slower.
    """
    dt = numba.from_dtype(np.dtype(dtype_name))
    NT, NO = fixed_tasks, fixed_outputs  # compile-time constants inside the kernel (0: not fixed)

    @cuda.jit
    def logit_partials(xT, col0, nb, idx, mean, gains, t0, nt, W, chunk, partials, store_h, hT,
                       status):
        """partials[c, t, o, b] = sum over units j of chunk c of gains[t0+t, j] W[o, j] h[b, j].

        ``h[b, j] = relu(sum_t xT[idx[j, t], col0 + b] - mean[col0 + b])`` is computed on the
        fly; with ``store_h`` it is also written, unit-major, to ``hT[j, b]`` (n_units, nb):
        coalesced, since neighbouring threads own neighbouring samples. The training step's
        backward reads it back (:func:`_context_grad_from_activity`); inference passes a
        dummy ``hT`` and never writes it. Launch: 2-D; x: samples b (threads), y: unit
        chunks c (blocks). Each thread keeps ``nt * n_out`` accumulators (in registers, see
        the factory) while it walks its chunk's units: per unit, k coalesced loads
        (neighbouring lanes read neighbouring samples of the same ``xT`` row), then
        ``nt * n_out`` multiply-adds whose weights are the same address for the whole warp.
        Zero activity (about half the units) skips the readout. One writer per partial; the
        consumer sums the chunks. Returns at once if ``status[0]`` is set.
        """
        if status[0] != 0:
            return
        n, k = idx.shape
        n_out = W.shape[0]
        acc = cuda.local.array(acc_size, dt)
        width = NT * NO if NO > 0 else nt * n_out
        for c in range(cuda.blockIdx.y, partials.shape[0], cuda.gridDim.y):
            j1 = min(c * chunk + chunk, n)
            for b in range(cuda.grid(1), nb, cuda.gridsize(1)):
                for a in range(width):
                    acc[a] = 0
                col = col0 + b
                mb = mean[col]
                for j in range(c * chunk, j1):
                    m = xT[idx[j, 0], col]
                    for t in range(1, k):
                        m += xT[idx[j, t], col]
                    m -= mb
                    if store_h:
                        hT[j, b] = m if m > 0 else 0
                    if m > 0 and NO > 0:
                        for tt in range(NT):
                            cm = gains[t0 + tt, j] * m
                            for o in range(NO):
                                acc[tt * NO + o] += cm * W[o, j]
                    elif m > 0:
                        for tt in range(nt):
                            cm = gains[t0 + tt, j] * m
                            for o in range(n_out):
                                acc[tt * n_out + o] += cm * W[o, j]
                if NO > 0:
                    for tt in range(NT):
                        for o in range(NO):
                            partials[c, tt, o, b] = acc[tt * NO + o]
                else:
                    for tt in range(nt):
                        for o in range(n_out):
                            partials[c, tt, o, b] = acc[tt * n_out + o]

    return logit_partials


@functools.lru_cache(maxsize=None)
def _readout_grad():
    """Device function: g[b, j] = sum_o dlT[o, b] W[o, j], the gradient reaching unit j's
    activity from sample b's logits (shared by both training backward kernels)."""

    @cuda.jit(device=True)
    def readout_grad(dlT, W, b, j):
        g = dlT[0, b] * W[0, j]
        for o in range(1, W.shape[0]):
            g += dlT[o, b] * W[o, j]
        return g

    return readout_grad


@functools.lru_cache(maxsize=None)
def _context_grad_partials(dtype_name: str):
    """The fused backward kernel, accumulating in ``dtype_name``."""
    dt = numba.from_dtype(np.dtype(dtype_name))
    readout_grad = _readout_grad()

    @cuda.jit
    def context_grad_partials(xT, col0, nb, idx, mean, W, dlT, tile, gh_part, status):
        """gh_part[r, j] = sum over samples b of tile r of (sum_o dlT[o, b] W[o, j]) h[b, j].

        ``h`` is recomputed from ``xT`` (k loads) rather than stored: k loads per unit and
        sample cost less than writing and re-reading n_units x B floats. Launch: 2-D; x: units
        j (threads), y: batch tiles r (blocks). A tile's columns of ``xT`` (n_in short
        segments) stay in L1 while the block's units walk them; ``dlT[o, b]`` is one address
        per warp (broadcast). One writer per (tile, unit): the tiles are summed afterwards, so
        no atomics. Returns at once if ``status[0]`` is set.
        """
        if status[0] != 0:
            return
        n, k = idx.shape
        for r in range(cuda.blockIdx.y, gh_part.shape[0], cuda.gridDim.y):
            b1 = min(r * tile + tile, nb)
            for j in range(cuda.grid(1), n, cuda.gridsize(1)):
                acc = dt(0)
                for b in range(r * tile, b1):
                    col = col0 + b
                    m = xT[idx[j, 0], col]
                    for t in range(1, k):
                        m += xT[idx[j, t], col]
                    m -= mean[col]
                    if m > 0:
                        acc += readout_grad(dlT, W, b, j) * m
                gh_part[r, j] = acc

    return context_grad_partials


@functools.lru_cache(maxsize=None)
def _context_grad_from_activity(dtype_name: str):
    """The training step's backward, reading the activity the fused forward stored."""
    dt = numba.from_dtype(np.dtype(dtype_name))
    readout_grad = _readout_grad()

    @cuda.jit
    def context_grad_from_activity(hT, nb, W, dlT, tile, gh_part, status):
        """gh_part[r, j] = sum over samples b of tile r of (sum_o dlT[o, b] W[o, j]) hT[j, b].

        The same sums, in the same order, as :func:`_context_grad_partials`, with the
        activity read from ``hT`` (n_units, nb), written by the fused forward of the same
        step, instead of recomputed from k scattered reads of ``xT`` per unit and sample (on
        a GPU the recomputation was the slowest part of a training step). Launch: 2-D; x:
        units j (threads), y: batch tiles r (blocks). A thread reads its unit's run of
        ``tile`` consecutive samples, so each 32-byte sector it fetches serves eight
        iterations from L1; ``dlT[o, b]`` is one address per warp (broadcast). One writer
        per (tile, unit), no atomics. Returns at once if ``status[0]`` is set.
        """
        if status[0] != 0:
            return
        n = hT.shape[0]
        for r in range(cuda.blockIdx.y, gh_part.shape[0], cuda.gridDim.y):
            b1 = min(r * tile + tile, nb)
            for j in range(cuda.grid(1), n, cuda.gridsize(1)):
                acc = dt(0)
                for b in range(r * tile, b1):
                    h = hT[j, b]
                    if h > 0:
                        acc += readout_grad(dlT, W, b, j) * h
                gh_part[r, j] = acc

    return context_grad_from_activity


# ------------------------------------------------------------------------------ shared steps
def _stage(x_dev, rows_dev, n_in, tables, dtype, want_xT=True):
    """(xT, mean) on the device for the rows ``rows_dev`` of ``x_dev``."""
    nb = rows_dev.shape[0]
    xT = _empty((n_in, nb) if want_xT else (1, 1), dtype)
    mean = _empty(nb, dtype)
    inv_n = 1.0 / tables.host_idx.shape[0]
    _launch(_plain(dtype)["stage_batch"], _grid1(nb), _tpb(),
            x_dev, rows_dev, tables.counts(n_in), inv_n, want_xT, xT, mean)
    return xT, mean


def _forward_kernel(n_out: int, nt: int, dtype):
    """The fused forward for ``nt`` tasks of ``n_out`` outputs: compiled for exactly that
    shape, accumulators in registers, when ``nt * n_out`` fits :data:`_ACCUMULATORS`."""
    if nt * n_out <= _ACCUMULATORS:
        return _logit_partials(nt * n_out, np.dtype(dtype).name, nt, n_out)
    return _logit_partials(_tasks_per_pass(n_out) * n_out, np.dtype(dtype).name)


def _forward_partials(xT, col0, nb, idx_dev, mean, gains_dev, t0, nt, W_dev, status):
    """Launch the fused forward for tasks ``t0 .. t0+nt-1``; returns the partials array."""
    n_out = W_dev.shape[0]
    chunk = _config["units_per_chunk"]
    n_chunks = -(-idx_dev.shape[0] // chunk)
    partials = _empty((n_chunks, nt, n_out, nb), xT.dtype)
    kernel = _forward_kernel(n_out, nt, xT.dtype)
    grid = (_blocks(nb, _tpb()), _blocks(n_chunks, 1, _GRID_YZ_MAX))
    _launch(kernel, grid, _tpb(), xT, col0, nb, idx_dev, mean, gains_dev, t0, nt, W_dev, chunk,
            partials, False, _no_activity(xT.dtype), status)
    return partials


def _grad_partials(xT, col0, nb, idx_dev, mean, W_dev, dlT, status):
    """Launch the fused backward; returns the (n_tiles, n_units) partial sums."""
    tile = _config["tile"]
    n_tiles = -(-nb // tile)
    n = idx_dev.shape[0]
    gh_part = _empty((n_tiles, n), xT.dtype)
    kernel = _context_grad_partials(np.dtype(xT.dtype).name)
    _launch(kernel, _grid2(n, n_tiles), _tpb(), xT, col0, nb, idx_dev, mean, W_dev, dlT, tile,
            gh_part, status)
    return gh_part


def _column_sums(part):
    out = _empty(part.shape[1], np.float64)
    _launch(_plain(part.dtype)["sum_rows"], _grid1(part.shape[1]), _tpb(), part, out)
    return _host(out)


# ------------------------------------------------------------------------------ the interface
def encoder_forward(x, idx):
    """Sparse encoder forward; see :func:`nmnp.kernels.reference.encoder_forward`.

    Launches: ``stage_batch`` (sample means only), ``encode``.
    """
    B, n_in = x.shape
    h = np.empty((B, idx.shape[0]), dtype=x.dtype)
    if B == 0:
        return h
    tables = _encoder_tables(idx)
    x_dev = _to_device(x)
    _, mean = _stage(x_dev, _to_device(np.arange(B, dtype=np.int32)), n_in, tables, x.dtype, False)
    h_dev = _empty(h.shape, x.dtype)
    _launch(_plain(x.dtype)["encode"], _grid2(idx.shape[0], B), _tpb(),
            x_dev, tables.idx, mean, h_dev)
    return _host(h_dev)


def encoder_backward(dh, h, idx, n_in):
    """Sparse encoder backward; see :func:`nmnp.kernels.reference.encoder_backward`.

    Launches: ``dz_means``, ``encoder_input_grad`` (a gather: no atomics).
    """
    B = dh.shape[0]
    dx = np.zeros((B, n_in), dtype=dh.dtype)
    if B == 0 or n_in == 0:
        return dx
    tables = _encoder_tables(idx)
    ptr, readers = tables.csr(n_in)
    dh_dev, h_dev = _to_device(dh), _to_device(h)
    mz = _empty(B, dh.dtype)
    _launch(_plain(dh.dtype)["dz_means"], _grid1(B), _tpb(), dh_dev, h_dev, 1.0 / idx.shape[0], mz)
    dx_dev = _empty((B, n_in), dh.dtype)
    _launch(_plain(dh.dtype)["encoder_input_grad"], _grid2(n_in, B), _tpb(),
            dh_dev, h_dev, ptr, readers, mz, dx_dev)
    return _host(dx_dev)


def modulated_forward(h, c, s, W):
    """Modulated readout forward; see :func:`nmnp.kernels.reference.modulated_forward`.

    Launches: ``readout_forward``.
    """
    B = h.shape[0]
    y = np.empty((B, W.shape[0]), dtype=h.dtype)
    if B == 0:
        return y
    y_dev = _empty(y.shape, h.dtype)
    _launch(_plain(h.dtype)["readout_forward"], _grid1(B * W.shape[0]), _tpb(),
            _to_device(h), _to_device(np.asarray(c, dtype=h.dtype)), float(s), _constant(W), y_dev)
    return _host(y_dev)


def _modulated_grads(dy, h, c, s, W, want_dh):
    B, n = h.shape
    s = float(s)
    if B == 0:
        gh = np.zeros(n)
        dh = np.zeros(h.shape, dtype=h.dtype)
    else:
        tile = _config["tile"]
        n_tiles = -(-B // tile)
        gh_part = _empty((n_tiles, n), h.dtype)
        dh_dev = _empty(h.shape if want_dh else (1, 1), h.dtype)
        _launch(_plain(h.dtype)["readout_backward"], _grid2(n, n_tiles), _tpb(),
                _to_device(np.asarray(dy, dtype=h.dtype)), _to_device(h),
                _to_device(np.asarray(c, dtype=h.dtype)), s, _constant(W), tile, want_dh,
                dh_dev, gh_part)
        gh = _column_sums(gh_part)
        dh = _host(dh_dev) if want_dh else None
    return dh, (s * gh).astype(h.dtype), float(np.dot(c, gh))


def modulated_backward(dy, h, c, s, W):
    """Modulated readout backward; see :func:`nmnp.kernels.reference.modulated_backward`.

    Launches: ``readout_backward`` (per-tile partial sums), ``sum_rows`` (second pass). The
    last O(n) step, ``dc = s gh`` and ``ds = c . gh``, runs on the host in float64 like the
    cpu backend's, since the results go there anyway.
    """
    return _modulated_grads(dy, h, c, s, W, True)


def modulated_param_grads(dy, h, c, s, W):
    """``(dc, ds)`` only; see :func:`nmnp.kernels.reference.modulated_param_grads`."""
    _, dc, ds = _modulated_grads(dy, h, c, s, W, False)
    return dc, ds


def task_logits(x, idx, gains, strengths, W):
    """Several tasks' logits sharing one encoder pass; see the reference twin.

    Launches: ``stage_batch``, then per group of up to ``40 // n_out`` tasks:
    ``logit_partials`` and ``scale_partials``. The encoder output is never written.
    """
    B, n_in = x.shape
    gains = np.ascontiguousarray(gains, dtype=x.dtype)
    T, n_out = gains.shape[0], W.shape[0]
    logits = np.empty((T, B, n_out), dtype=x.dtype)
    if B == 0 or T == 0:
        return logits
    tables = _encoder_tables(idx)
    rows = _to_device(np.arange(B, dtype=np.int32))
    xT, mean = _stage(_to_device(x), rows, n_in, tables, x.dtype)
    gains_dev = _to_device(gains)
    strengths_dev = _to_device(np.asarray(strengths, dtype=np.float64).reshape(T))
    W_dev = _constant(W)
    logits_dev = _empty(logits.shape, x.dtype)
    per_pass = _tasks_per_pass(n_out)
    for t0 in range(0, T, per_pass):
        nt = min(per_pass, T - t0)
        partials = _forward_partials(xT, 0, B, tables.idx, mean, gains_dev, t0, nt, W_dev,
                                     _status_zero())
        _launch(_plain(x.dtype)["scale_partials"], _grid1(nt * B * n_out), _tpb(),
                partials, strengths_dev, t0, logits_dev)
    return _host(logits_dev)


def task_predictions(x, idx, gains, strengths, W, classes=None, batch_size=None):
    """Several tasks' predicted classes, the set resident on the device; see
    :mod:`nmnp.kernels.cuda_inference`."""
    from .cuda_inference import task_predictions as run

    return run(x, idx, gains, strengths, W, classes, batch_size)


def logits_and_activity(x, idx, c, s, W):
    """One task's logits and the encoder activity; see the reference twin.

    Launches: those of :func:`encoder_forward` and :func:`modulated_forward`, with the
    activity brought back to the host in between. Training on this backend does not use
    it: the device-resident loop of :mod:`nmnp.kernels.cuda_training` keeps everything on
    the GPU.
    """
    h = encoder_forward(x, idx)
    return modulated_forward(h, c, s, W), h


def context_grads(x, idx, c, s, W, dlogits):
    """``(dc, ds)`` straight from the inputs; see the reference twin.

    Launches: ``stage_batch``, ``context_grad_partials``, ``sum_rows``; ``dc = s gh`` and
    ``ds = c . gh`` on the host in float64, as in the cpu backend.
    """
    B, n_in = x.shape
    n = idx.shape[0]
    s = float(s)
    if B == 0:
        return np.zeros(n, dtype=x.dtype), 0.0
    tables = _encoder_tables(idx)
    rows = _to_device(np.arange(B, dtype=np.int32))
    xT, mean = _stage(_to_device(x), rows, n_in, tables, x.dtype)
    dlT = _to_device(np.ascontiguousarray(np.asarray(dlogits, dtype=x.dtype).T))
    gh_part = _grad_partials(xT, 0, B, tables.idx, mean, _constant(W), dlT, _status_zero())
    gh = _column_sums(gh_part)
    return (s * gh).astype(x.dtype), float(np.dot(c, gh))


# ------------------------------------------------------------------------------ training
def train_task_resident(learner, task_id, x, y, settings, *, classes, optimizer, report, bar,
                        where=None):
    """Train one task with its data on the device; see :mod:`nmnp.kernels.cuda_training`."""
    from .cuda_training import train_task_resident as run

    return run(learner, task_id, x, y, settings, classes=classes, optimizer=optimizer,
               report=report, bar=bar, where=where)


def benchmark_training(config=None, *, batch_size: int = 1024, n_samples: int | None = None,
                       steps: int = 50, repeats: int = 3, optimizer: str = "rmsprop",
                       seed: int = 0) -> dict:
    """Time resident training steps, transfers apart from compute; returns a dict.

    See :func:`nmnp.kernels.cuda_training.benchmark_training` for the arguments and keys.
    """
    from .cuda_training import benchmark_training as run

    return run(config, batch_size=batch_size, n_samples=n_samples, steps=steps, repeats=repeats,
               optimizer=optimizer, seed=seed)


# ------------------------------------------------------------------------------ compile check
def _compile_everything(cc=(9, 0)) -> list[str]:
    """Compile every kernel, with the argument types its callers pass, to PTX for ``cc``.

    Needs NVVM and NVRTC (pip packages nvidia-nvvm, nvidia-cuda-nvrtc) but no GPU, and the
    simulator off: it checks that every kernel is valid numba.cuda code (which the simulator,
    running plain Python, cannot). Runs each public function and a short resident training
    run on tiny inputs with launches replaced by compilation. Returns the kernels compiled.
    """
    global _compile_only
    if SIMULATOR:
        raise BackendError("compile check needs the simulator off (unset NUMBA_ENABLE_CUDASIM)")
    from .cuda_training import _compile_training

    import numba.cuda.dispatcher as dispatcher

    class _Device:  # what device functions ask for when they compile: only the target
        compute_capability = cc

    real_device = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: _Device()
    _clear_kernel_caches()
    _compile_only = {"__cc__": cc}
    try:
        rng = np.random.default_rng(0)
        for dt in (np.float32, np.float64):
            B, n_in, n, k, n_out = 5, 6, 7, 3, 4
            x = rng.normal(size=(B, n_in)).astype(dt)
            idx = np.sort(np.argsort(rng.random((n, n_in)), axis=1)[:, :k], axis=1).astype(np.int32)
            W = rng.normal(size=(n_out, n)).astype(dt)
            c = rng.normal(size=n).astype(dt)
            h = np.abs(rng.normal(size=(B, n))).astype(dt)
            dy = rng.normal(size=(B, n_out)).astype(dt)
            encoder_forward(x, idx)
            encoder_backward(h, h, idx, n_in)
            modulated_forward(h, c, 0.5, W)
            modulated_backward(dy, h, c, 0.5, W)
            modulated_param_grads(dy, h, c, 0.5, W)
            task_logits(x, idx, np.stack([c, c]), np.ones(2), W)
            task_predictions(x, idx, np.stack([c, c]), np.ones(2), W, np.array([2, 0]), 3)
            context_grads(x, idx, c, 0.5, W, dy)
            _compile_training(dt)
        return sorted({key[0] for key in _compile_only if key != "__cc__"})
    finally:
        _compile_only = None
        dispatcher.get_current_device = real_device
        _clear_kernel_caches()  # nothing compiled for the pretend device is kept


def _clear_kernel_caches() -> None:
    from . import cuda_inference, cuda_training

    for factory in (_plain_kernels, _logit_partials, _readout_grad, _context_grad_partials,
                    _context_grad_from_activity, cuda_training._device_functions,
                    cuda_training._loss_kernel, cuda_training._step_kernel,
                    cuda_inference._predict_kernel):
        factory.cache_clear()
    global _no_status
    _constants.clear()
    _tables.clear()
    _no_activity_arrays.clear()
    _no_status = None
