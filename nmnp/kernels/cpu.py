"""Numba-parallel CPU kernels, the twins of :mod:`nmnp.kernels.reference`.

Every function has the same name, arguments and results as its reference twin and is tested
against it (``tests/test_kernels.py``). What makes each one fast is stated in its docstring.

Common contract
---------------
* The outer loop runs in parallel (``prange``) over an independent dimension: samples, or
  chunks of samples. No two iterations write the same element; reductions over the batch go to
  one buffer row per chunk, summed after the parallel region.
* Inner loops run over contiguous memory (the unit index ``j`` of a C-ordered ``h`` or ``W``
  row) so LLVM can vectorise them; ``fastmath`` allows reassociation, hence kernels agree with
  the reference within floating-point tolerance, not bit for bit.
* Nothing here validates its input: :mod:`nmnp.layers` and :mod:`nmnp.model` do that once,
  before the hot loop.
* ``cache=True`` writes the compiled machine code next to the module, so the second import
  does not compile again.
"""

from __future__ import annotations

import weakref

import numba
import numpy as np
from numba import njit, prange

NAME = "cpu"

_JIT = dict(parallel=True, fastmath=True, cache=True, nogil=True)
_JIT_SERIAL = dict(fastmath=True, cache=True, nogil=True)  # helpers called inside prange


def _n_chunks(batch: int) -> int:
    """Chunks of samples for a batch reduction: one per thread, never more than samples."""
    return max(1, min(batch, numba.get_num_threads()))


@njit(**_JIT)
def _encoder_forward_transposed(xT, idx, mean, hT, n_blocks):
    n = idx.shape[0]
    for blk in prange(n_blocks):
        lo = blk * n // n_blocks
        hi = (blk + 1) * n // n_blocks
        for j in range(lo, hi):
            _unit_activity(xT, idx, j, mean, hT, j)


def encoder_forward(x, idx):
    """Sparse encoder forward; see :func:`nmnp.kernels.reference.encoder_forward`.

    Contract: the batch is transposed so the samples are innermost; parallel over blocks of
    units, each unit's activity for the whole batch is k contiguous row loads (never a dense
    n_units x n_in matrix), centred with the per-sample mean computed up front (see
    :func:`_transposed_batch`) and rectified in place. One transpose copy returns (B, n).
    """
    xT, mean = _transposed_batch(x, idx)
    hT = np.empty((idx.shape[0], x.shape[0]), dtype=x.dtype)
    _encoder_forward_transposed(xT, idx, mean, hT, _unit_blocks(idx.shape[0]))
    return np.ascontiguousarray(hT.T)


@njit(**_JIT)
def _encoder_backward(dh, h, idx, dx):
    B = dh.shape[0]
    n, k = idx.shape
    for b in prange(B):
        total = 0.0
        for j in range(n):
            if h[b, j] > 0:
                total += dh[b, j]
        mean = total / n
        for j in range(n):
            dm = (dh[b, j] if h[b, j] > 0 else 0.0) - mean
            for t in range(k):
                dx[b, idx[j, t]] += dm


def encoder_backward(dh, h, idx, n_in):
    """Sparse encoder backward; see :func:`nmnp.kernels.reference.encoder_backward`.

    Contract: parallel over samples, so each iteration scatters only into its own row of
    ``dx`` and needs no atomics.
    """
    dx = np.zeros((dh.shape[0], n_in), dtype=dh.dtype)
    _encoder_backward(dh, h, idx, dx)
    return dx


@njit(**_JIT)
def _modulated_forward(h, c, s, W, y):
    B, n = h.shape
    n_out = W.shape[0]
    for b in prange(B):
        hc = h[b] * c  # one modulated row, reused for every output
        for o in range(n_out):
            acc = 0.0
            for j in range(n):
                acc += hc[j] * W[o, j]
            y[b, o] = s * acc


def modulated_forward(h, c, s, W):
    """Modulated readout forward; see :func:`nmnp.kernels.reference.modulated_forward`.

    Contract: parallel over samples; the modulated row ``h[b] * c`` is formed once and dotted
    with each contiguous row of ``W``; the per-task matrix ``s W diag(c)`` is never formed.
    """
    y = np.empty((h.shape[0], W.shape[0]), dtype=h.dtype)
    _modulated_forward(h, c, s, W, y)
    return y


@njit(**_JIT)
def _modulated_backward(dy, h, c, s, W, dh, gh_parts, want_dh):
    B, n = h.shape
    n_out = W.shape[0]
    n_chunks = gh_parts.shape[0]
    for chunk in prange(n_chunks):
        lo = chunk * B // n_chunks
        hi = (chunk + 1) * B // n_chunks
        g = np.empty(n, dtype=h.dtype)
        for b in range(lo, hi):
            g[:] = 0.0
            for o in range(n_out):
                d = dy[b, o]
                for j in range(n):
                    g[j] += d * W[o, j]
            for j in range(n):
                gh_parts[chunk, j] += g[j] * h[b, j]
            if want_dh:
                for j in range(n):
                    dh[b, j] = s * g[j] * c[j]


def _modulated_grads(dy, h, c, s, W, want_dh):
    n_chunks = _n_chunks(h.shape[0])
    gh_parts = np.zeros((n_chunks, h.shape[1]), dtype=np.float64)
    dh = np.empty(h.shape if want_dh else (0, 0), dtype=h.dtype)
    _modulated_backward(dy, h, c, s, W, dh, gh_parts, want_dh)
    gh = gh_parts.sum(axis=0)
    return dh, (s * gh).astype(h.dtype), float(np.dot(c, gh))


def modulated_backward(dy, h, c, s, W):
    """Modulated readout backward; see :func:`nmnp.kernels.reference.modulated_backward`.

    Contract: parallel over chunks of samples; ``g = dy[b] W`` is built in a per-chunk
    buffer by streaming the rows of ``W``; the batch sum ``sum_b g h`` goes to the chunk's own
    float64 row and the rows are added after the parallel loop (no races, no atomics).
    """
    return _modulated_grads(dy, h, c, s, W, True)


def modulated_param_grads(dy, h, c, s, W):
    """``(dc, ds)`` only; see :func:`nmnp.kernels.reference.modulated_param_grads`."""
    _, dc, ds = _modulated_grads(dy, h, c, s, W, False)
    return dc, ds


# ---------------------------------------------------------------------------------------------
# Fused encoder + readout: the training and evaluation hot path.
#
# Layout: the batch is transposed to xT (n_in, B), so "unit j's activity for every sample" is a
# sum of k contiguous rows of xT: k vector loads instead of k scattered scalar loads per
# sample. Each thread owns a block of units; for each unit it builds that activity row in a
# B-long buffer, rectifies and modulates it, and immediately folds it into the readout. The
# encoder output (n_units x B) is never written to memory.
#
# The per-sample mean over units needs every unit before any can be rectified, but it is
# linear: mean_b = (1/n) sum_i count_i x[b, i], where count_i is how many units read input i.
# So it costs one short dot product per sample, computed up front.
# ---------------------------------------------------------------------------------------------


def _unit_blocks(n_units: int) -> int:
    """Blocks of units for the fused kernels: a few per thread, for load balance."""
    return max(1, min(n_units, 4 * numba.get_num_threads()))


_COUNTS: dict = {}


def _input_counts(idx, n_in: int, dtype):
    """How many units read each input, (n_in,). Cached for read-only index arrays that own
    their memory (a model's fixed encoder), whose contents cannot change under the cache."""
    cacheable = not idx.flags.writeable and idx.base is None
    key = (id(idx), n_in, np.dtype(dtype).str)
    if cacheable:
        hit = _COUNTS.get(key)
        if hit is not None and hit[0]() is idx:
            return hit[1]
    counts = np.bincount(idx.reshape(-1), minlength=n_in).astype(dtype)
    if cacheable:
        _COUNTS[key] = (weakref.ref(idx), counts)
    return counts


def _transposed_batch(x, idx):
    """(xT, mean): the batch with samples innermost, and each sample's mean unit activity."""
    xT = np.ascontiguousarray(x.T)
    counts = _input_counts(idx, x.shape[1], x.dtype)
    mean = (counts @ xT) / x.dtype.type(idx.shape[0])
    return xT, np.ascontiguousarray(mean, dtype=x.dtype)


@njit(**_JIT_SERIAL)
def _unit_activity(xT, idx, j, mean, m, row):
    """m[row, :] = relu(sum_t xT[idx[j, t], :] - mean): unit j's activity for the whole batch.

    Rows are summed four at a time (then two, then one) and the centring and ReLU are folded
    into the last pass: with batch-sized loops, each loop's set-up (alias checks, remainder
    handling) costs as much as its work, so fewer, fatter loops win (1.5x at batch 128).
    Plain 2-D indexing: a view such as ``xT[i]`` would cost a reference-count update.
    """
    B = m.shape[1]
    k = idx.shape[1]
    for b in range(B):
        m[row, b] = 0.0
    t = 0
    while t < k:
        if k - t >= 4:
            i0, i1, i2, i3 = idx[j, t], idx[j, t + 1], idx[j, t + 2], idx[j, t + 3]
            step = 4
        elif k - t >= 2:
            i0, i1, i2, i3 = idx[j, t], idx[j, t + 1], -1, -1
            step = 2
        else:
            i0, i1, i2, i3 = idx[j, t], -1, -1, -1
            step = 1
        last = t + step >= k
        if step == 4:
            if last:
                for b in range(B):
                    v = m[row, b] + xT[i0, b] + xT[i1, b] + xT[i2, b] + xT[i3, b] - mean[b]
                    m[row, b] = v if v > 0 else 0.0
            else:
                for b in range(B):
                    m[row, b] += xT[i0, b] + xT[i1, b] + xT[i2, b] + xT[i3, b]
        elif step == 2:
            if last:
                for b in range(B):
                    v = m[row, b] + xT[i0, b] + xT[i1, b] - mean[b]
                    m[row, b] = v if v > 0 else 0.0
            else:
                for b in range(B):
                    m[row, b] += xT[i0, b] + xT[i1, b]
        else:
            for b in range(B):  # a single row is always the last pass
                v = m[row, b] + xT[i0, b] - mean[b]
                m[row, b] = v if v > 0 else 0.0
        t += step


_UNITS_PER_PASS = 4  # units folded into the accumulators per pass: 4x fewer stores


@njit(**_JIT)
def _fused_logits(xT, idx, mean, gains, W, partials):
    # partials: (n_blocks, T, n_out, B): one private accumulator per block of units.
    n = idx.shape[0]
    T, n_out, B = partials.shape[1], partials.shape[2], partials.shape[3]
    n_blocks = partials.shape[0]
    for blk in prange(n_blocks):
        lo = blk * n // n_blocks
        hi = (blk + 1) * n // n_blocks
        m = np.empty((_UNITS_PER_PASS, B), dtype=xT.dtype)
        for t in range(T):
            for o in range(n_out):
                for b in range(B):
                    partials[blk, t, o, b] = 0.0
        j = lo
        while j + _UNITS_PER_PASS <= hi:
            for u in range(_UNITS_PER_PASS):
                _unit_activity(xT, idx, j + u, mean, m, u)
            for t in range(T):
                for o in range(n_out):
                    w0 = W[o, j] * gains[t, j]
                    w1 = W[o, j + 1] * gains[t, j + 1]
                    w2 = W[o, j + 2] * gains[t, j + 2]
                    w3 = W[o, j + 3] * gains[t, j + 3]
                    for b in range(B):
                        partials[blk, t, o, b] += w0 * m[0, b] + w1 * m[1, b] + w2 * m[2, b] + w3 * m[3, b]
            j += _UNITS_PER_PASS
        while j < hi:  # the block's last few units, one at a time
            _unit_activity(xT, idx, j, mean, m, 0)
            for t in range(T):
                for o in range(n_out):
                    w = W[o, j] * gains[t, j]
                    for b in range(B):
                        partials[blk, t, o, b] += w * m[0, b]
            j += 1


def task_logits(x, idx, gains, strengths, W):
    """Several tasks' logits sharing one encoder pass; see the reference twin.

    Contract: parallel over blocks of units; per unit, k contiguous row loads build the
    activity of the whole batch in a private buffer; four units at a time are folded straight
    into each task's logits (one load and store of the accumulator per four multiply-adds); one (T, n_out, B) accumulator per block, summed afterwards. Extra tasks cost only
    their readout, never another encoder pass.
    """
    xT, mean = _transposed_batch(x, idx)
    T = gains.shape[0]
    partials = np.empty((_unit_blocks(idx.shape[0]), T, W.shape[0], x.shape[0]), dtype=x.dtype)
    _fused_logits(xT, idx, mean, np.ascontiguousarray(gains), W, partials)
    u = partials.sum(axis=0)  # (T, n_out, B)
    s = np.asarray(strengths, dtype=x.dtype).reshape(T, 1, 1)
    return np.ascontiguousarray((s * u).transpose(0, 2, 1))


@njit(**_JIT)
def _fused_context_grads(xT, idx, mean, W, dlT, gh, n_blocks):
    # gh_j = sum_b (dl W)_bj h_bj = sum_o W_oj <dl_o, h_j>: n_out dot products of length B per
    # unit, accumulated in registers (nothing stored per multiply-add).
    n = idx.shape[0]
    n_out, B = dlT.shape
    for blk in prange(n_blocks):
        lo = blk * n // n_blocks
        hi = (blk + 1) * n // n_blocks
        m = np.empty((1, B), dtype=xT.dtype)
        for j in range(lo, hi):
            _unit_activity(xT, idx, j, mean, m, 0)
            total = 0.0
            for o in range(n_out):
                dot = 0.0
                for b in range(B):
                    dot += dlT[o, b] * m[0, b]
                total += W[o, j] * dot
            gh[j] = total


def context_grads(x, idx, c, s, W, dlogits):
    """``(dc, ds)`` straight from the inputs; see the reference twin.

    Contract: parallel over blocks of units, each unit's ``dc`` written by exactly one
    thread (no reduction buffers at all); per unit, ``dc_j = s sum_o W_oj <dl_o, h_j>`` is
    n_out dot products over the batch, accumulated in registers. The encoder activity is
    recomputed per unit rather than stored, because k row loads from the cache-resident
    batch are cheaper than a round trip of n_units x B floats through memory.
    """
    xT, mean = _transposed_batch(x, idx)
    dlT = np.ascontiguousarray(dlogits.T, dtype=x.dtype)
    gh = np.empty(idx.shape[0], dtype=np.float64)
    _fused_context_grads(xT, idx, mean, W, dlT, gh, _unit_blocks(idx.shape[0]))
    return (s * gh).astype(x.dtype), float(np.dot(c, gh))


@njit(parallel=True, fastmath=True, cache=True)
def stream_sum(a):
    """Sum of a 1-D array, read once in parallel: the benchmark's memory-bandwidth probe."""
    total = 0.0
    for i in prange(a.size):
        total += a[i]
    return total
