"""The numba.cuda kernels of the cuda backend, and the launchers that size and start them.

Each kernel is built by a cached factory on first use (per dtype, and for the fused forward
per accumulator shape), so ``import nmnp.kernels.cuda`` compiles nothing. The launchers
(:func:`stage`, :func:`forward_partials`, :func:`grad_partials`, :func:`column_sums`) are
shared by the per-batch interface (:mod:`nmnp.kernels.cuda`), resident training and resident
evaluation. Transfers and launches go through :mod:`nmnp.kernels.cuda_device`.

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
* Grid-stride loops everywhere: a kernel is correct for any grid, so
  :func:`~nmnp.kernels.cuda_device.configure` can cap
  the number of blocks (the simulator runs one block at a time) without changing results.
* No two threads write the same element. Every reduction that spans threads is split into
  per-block (or per-tile) partial sums written to their own rows, then summed in a fixed
  order by a second pass (``sum_rows``, or the consumer kernel itself). No atomics on
  data, so results are deterministic run to run. (The training step uses one atomic counter
  to elect the block that finishes a reduction; see :mod:`nmnp.kernels.cuda_training_kernels`.) A
  test reads the compiled PTX of every kernel to check that no other kernel holds an atomic,
  a barrier or shared memory, and another that the fused forward's accumulators stay out of
  local memory.
* No shared memory and no barriers in these kernels: the access patterns are arranged so
  that registers and the hardware caches give the reuse a shared-memory tile would. The
  fused kernels read the batch in the batch-innermost layout ``xT`` (n_in, B). In the
  forward a thread owns a sample and a warp 32 consecutive samples, so each of a unit's k
  input reads is one coalesced 128-byte load, the unit's weights ``c[j] W[:, j]`` are one
  address for the whole warp (a broadcast), and all n_out outputs accumulate per thread
  (each activity is used n_out times per task; in registers, see :func:`logit_partials_kernel`).
  In the backward a thread owns a unit and walks a tile of samples: in training it reads
  the activity the forward stored (unit-major, so a thread's samples are consecutive); the
  standalone ``context_grads`` recomputes it from the tile's columns of ``xT``, which stay
  in L1 while the block's units read them. (Barriers are also what makes the CUDA simulator
  slow: each costs milliseconds per block there.) The training step has the one
  block-level tree reduction and, in its loss kernel, one barrier per group of samples.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from . import cuda_device as device
from .cuda_device import cuda


# ------------------------------------------------------------------------------ kernels
def plain_kernels(dtype):
    """The kernels without tuning constants, for data of ``dtype``."""
    return _compiled_plain_kernels(np.dtype(dtype).name)


@functools.lru_cache(maxsize=None)
def _compiled_plain_kernels(dtype_name: str):
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
        (tile, unit) partial sum: race-free without atomics; ``sum_rows`` adds the tiles.
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
ACCUMULATORS = 40


def tasks_per_pass(n_out: int) -> int:
    """Tasks whose outputs fit :data:`ACCUMULATORS` together (at least one)."""
    return max(1, ACCUMULATORS // n_out)


@functools.lru_cache(maxsize=None)
def logit_partials_kernel(acc_size: int, dtype_name: str, fixed_tasks: int = 0,
                          fixed_outputs: int = 0):
    """The fused forward kernel with ``acc_size`` accumulators of ``dtype_name``.

    With ``fixed_tasks = nt`` and ``fixed_outputs = n_out`` (> 0) the kernel is compiled for
    exactly that many tasks per pass and outputs (one task in the training step, up to
    :data:`ACCUMULATORS` // n_out in evaluation): every accumulator loop then has a trip
    count known at compile time, is unrolled, and the accumulators live in registers; it
    must be launched with ``nt == fixed_tasks``. Otherwise (more outputs than
    :data:`ACCUMULATORS`) they are indexed at run time, which puts them in local memory (a
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
        backward reads it back (:func:`context_grad_from_activity_kernel`); inference passes a
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
def readout_grad_function():
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
def context_grad_partials_kernel(dtype_name: str):
    """The fused backward kernel, accumulating in ``dtype_name``."""
    dt = numba.from_dtype(np.dtype(dtype_name))
    readout_grad = readout_grad_function()

    @cuda.jit
    def context_grad_partials(xT, col0, nb, idx, mean, W, dlT, tile, gh_part, status):
        """gh_part[r, j] = sum over samples b of tile r of (sum_o dlT[o, b] W[o, j]) h[b, j].

        Recomputes ``h`` from ``xT`` (k loads per unit and sample). Used by the standalone
        ``context_grads``, and by training only where the activity buffer would exceed
        ``ACTIVITY_BYTES_CAP``; otherwise training reads the stored activity
        (``context_grad_from_activity``), which is faster. Launch: 2-D; x: units
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
def context_grad_from_activity_kernel(dtype_name: str):
    """The training step's backward, reading the activity the fused forward stored."""
    dt = numba.from_dtype(np.dtype(dtype_name))
    readout_grad = readout_grad_function()

    @cuda.jit
    def context_grad_from_activity(hT, nb, W, dlT, tile, gh_part, status):
        """gh_part[r, j] = sum over samples b of tile r of (sum_o dlT[o, b] W[o, j]) hT[j, b].

        The same sums, in the same order, as :func:`context_grad_partials_kernel`, with the
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


# ------------------------------------------------------------------------------ launchers
def stage(x_dev, rows_dev, n_in, tables, dtype, want_xT=True):
    """(xT, mean) on the device for the rows ``rows_dev`` of ``x_dev``."""
    nb = rows_dev.shape[0]
    xT = device.empty((n_in, nb) if want_xT else (1, 1), dtype)
    mean = device.empty(nb, dtype)
    inv_n = 1.0 / tables.host_idx.shape[0]
    device.launch(plain_kernels(dtype)["stage_batch"], device.grid1(nb), device.tpb(),
                  x_dev, rows_dev, tables.counts(n_in), inv_n, want_xT, xT, mean)
    return xT, mean


def forward_kernel(n_out: int, nt: int, dtype):
    """The fused forward for ``nt`` tasks of ``n_out`` outputs: compiled for exactly that
    shape, accumulators in registers, when ``nt * n_out`` fits :data:`ACCUMULATORS`."""
    if nt * n_out <= ACCUMULATORS:
        return logit_partials_kernel(nt * n_out, np.dtype(dtype).name, nt, n_out)
    return logit_partials_kernel(tasks_per_pass(n_out) * n_out, np.dtype(dtype).name)


def forward_partials(xT, col0, nb, idx_dev, mean, gains_dev, t0, nt, W_dev, status):
    """Launch the fused forward for tasks ``t0 .. t0+nt-1``; returns the partials array."""
    n_out = W_dev.shape[0]
    chunk = device.launch_settings["units_per_chunk"]
    n_chunks = -(-idx_dev.shape[0] // chunk)
    partials = device.empty((n_chunks, nt, n_out, nb), xT.dtype)
    kernel = forward_kernel(n_out, nt, xT.dtype)
    grid = (device.blocks(nb, device.tpb()), device.blocks(n_chunks, 1, device.GRID_YZ_MAX))
    device.launch(kernel, grid, device.tpb(), xT, col0, nb, idx_dev, mean, gains_dev, t0, nt,
                  W_dev, chunk, partials, False, device.no_activity(xT.dtype), status)
    return partials


def grad_partials(xT, col0, nb, idx_dev, mean, W_dev, dlT, status):
    """Launch the fused backward; returns the (n_tiles, n_units) partial sums."""
    tile = device.launch_settings["tile"]
    n_tiles = -(-nb // tile)
    n = idx_dev.shape[0]
    gh_part = device.empty((n_tiles, n), xT.dtype)
    kernel = context_grad_partials_kernel(np.dtype(xT.dtype).name)
    device.launch(kernel, device.grid2(n, n_tiles), device.tpb(), xT, col0, nb, idx_dev, mean,
                  W_dev, dlT, tile, gh_part, status)
    return gh_part


def column_sums(part):
    """``part.sum(axis=0)`` in float64, rows in order (``sum_rows``), back on the host."""
    out = device.empty(part.shape[1], np.float64)
    device.launch(plain_kernels(part.dtype)["sum_rows"], device.grid1(part.shape[1]), device.tpb(),
                  part, out)
    return device.host(out)


def clear_caches() -> None:
    """Forget every compiled kernel (the compile check compiles for a pretend device)."""
    for factory in (_compiled_plain_kernels, logit_partials_kernel, readout_grad_function,
                    context_grad_partials_kernel, context_grad_from_activity_kernel):
        factory.cache_clear()
