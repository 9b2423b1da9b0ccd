"""Numba-parallel CPU kernels, the twins of :mod:`nmnp.kernels.reference`.

Every kernel function has the same name, arguments and results as its reference twin and is
tested against it (``tests/test_kernels.py``); ``stream_sum``, the bench's bandwidth probe, is
extra. What makes each one fast is stated in its docstring.

Common contract
---------------
* The outer loop runs in parallel (``prange``) over an independent dimension: blocks of units
  in the fused and encoder kernels, chunks of samples in the others. No two iterations write
  the same element; reductions go to one buffer row per block or chunk, summed after the
  parallel region.
* Inner loops run over contiguous memory so LLVM can vectorise them: in the unit-parallel
  kernels the batch, which is transposed so that one input's samples are adjacent; elsewhere
  the unit index ``j`` of a C-ordered ``h`` or ``W`` row. ``fastmath`` allows reassociation,
  hence kernels agree with the reference within floating-point tolerance, not bit for bit.
* No kernel validates its input: :mod:`nmnp.layers` and :mod:`nmnp.model` do that once,
  before the hot loop (``stream_sum``, not a kernel of the model, checks its argument).
* ``cache=True`` writes the compiled machine code next to the module, so the second import
  does not compile again.

The speed-ups quoted in comments below were each measured once, during development, with a
scratch A/B script that is not kept in the repository; they explain why a variant was chosen.
The figures the README quotes come from ``python -m nmnp.bench``, which anyone can rerun.
"""

from __future__ import annotations

import weakref

import numba
import numpy as np
from numba import njit, prange

from ..errors import ShapeError
from .reference import predictions_in_batches

NAME = "cpu"

_JIT = dict(parallel=True, fastmath=True, cache=True, nogil=True)
# Helpers called inside prange are inlined into their caller at Numba's IR level. As separate
# functions, every call (one per encoder unit) passed each array as a struct of ~10 words on
# the stack: on the bench machine (FlyNet, 2 threads, eight rounds of ten calls of each
# variant in turn, two runs) inlining made the fused forward 1.26x and 1.34x faster at
# batch 32, a training step's forward and backward 1.14x and 1.15x at batch 128, and the
# latter 1.00x and 1.04x at batch 1,024.
_JIT_SERIAL = dict(fastmath=True, cache=True, nogil=True, inline="always")


def _n_chunks(batch: int) -> int:
    """Chunks of samples for a batch reduction: one per thread, never more than samples."""
    return max(1, min(batch, numba.get_num_threads()))


@njit(**_JIT)
def _encoder_forward_transposed(xT, rows, mean, hT, col, n_blocks):
    # hT[:, col : col + B] for the batch tile xT (n_in + 1, B).
    n = rows.shape[0]
    for blk in prange(n_blocks):
        lo = blk * n // n_blocks
        hi = (blk + 1) * n // n_blocks
        for j in range(lo, hi):
            _unit_activity(xT, rows, j, mean, hT, j, col)


def encoder_forward(x, idx):
    """Sparse encoder forward; see :func:`nmnp.kernels.reference.encoder_forward`.

    Contract: the batch is transposed so the samples are innermost; parallel over blocks of
    units, each unit's activity for the whole batch is k contiguous row loads (never a dense
    n_units x n_in matrix), centred with the per-sample mean computed up front (see
    :func:`_transposed_batch`) and rectified in place. One transpose copy returns (B, n).
    Batches of fewer than :data:`_SMALL_BATCH` samples take :func:`_small_batch_activity`.
    """
    if x.shape[0] < _SMALL_BATCH:
        return _small_batch_activity(x, idx)
    return np.ascontiguousarray(_unit_major_activity(x, idx).T)


def _unit_major_activity(x, idx):
    """Encoder output as hT (n_units, B), parallel over blocks of units, one batch tile
    (see :func:`_batch_tiles`) at a time."""
    hT = np.empty((idx.shape[0], x.shape[0]), dtype=x.dtype)
    for lo, hi in _batch_tiles(x.shape[0]):
        xT, rows, mean = _transposed_batch(x[lo:hi], idx)
        _encoder_forward_transposed(xT, rows, mean, hT, lo, _unit_blocks(idx.shape[0]))
    return hT


# Below this many samples, a loop over the batch per unit costs more to set up than it
# does work (batch 1: 7,840 one-iteration loops per layer), so tiny batches keep the samples
# outermost and gather scalars instead.
_SMALL_BATCH = 4


@njit(**_JIT)
def _encoder_sample_major(x, idx, mean, h, n_blocks):
    n, k = idx.shape
    for blk in prange(n_blocks):
        lo = blk * n // n_blocks
        hi = (blk + 1) * n // n_blocks
        for b in range(x.shape[0]):
            for j in range(lo, hi):
                total = x[b, idx[j, 0]]
                for t in range(1, k):
                    total += x[b, idx[j, t]]
                v = total - mean[b]
                h[b, j] = v if v > 0 else 0.0


def _small_batch_activity(x, idx):
    """Encoder output (B, n_units) for a few samples: parallel over blocks of units, k
    scalar loads per unit and sample, centred with the per-sample mean from the input
    counts (see :func:`_transposed_batch`)."""
    n = idx.shape[0]
    counts = _input_counts(idx, x.shape[1], x.dtype)
    mean = np.ascontiguousarray((x @ counts) / x.dtype.type(n), dtype=x.dtype)
    h = np.empty((x.shape[0], n), dtype=x.dtype)
    _encoder_sample_major(np.ascontiguousarray(x), idx, mean, h, _unit_blocks(n))
    return h


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
    """``(dc, ds)`` only; see :func:`nmnp.kernels.reference.modulated_param_grads`.

    Contract: when ``h`` is a view of unit-major memory (``h.T`` C-contiguous, as returned
    by :func:`logits_and_activity`), parallel over blocks of units with each unit's ``dc``
    written by one thread, in one pass over its activity row that forms ``dlogits W`` on the
    fly (see :func:`_unit_major_param_grads`); otherwise the sample-major kernel of
    :func:`modulated_backward`.
    """
    if h.shape[0] > 1 and h.T.flags.c_contiguous:
        return _param_grads_unit_major(dy, h.T, c, float(s), W)
    _, dc, ds = _modulated_grads(dy, h, c, s, W, False)
    return dc, ds


# ---------------------------------------------------------------------------------------------
# Fused encoder + readout: the training and evaluation hot path.
#
# Layout: the batch is transposed to xT (n_in + 1, B), the last row zeros for padding, so
# "unit j's activity for every sample" is a sum of k contiguous rows of xT: k vector loads
# instead of k scattered scalar loads per sample. Each thread owns a block of units; for each
# unit it builds that activity row in a B-long buffer, rectifies and modulates it, and
# immediately folds it into the readout. Inference never writes the encoder output; a
# training step writes it once, unit-major (n_units x B), for its backward pass.
#
# The per-sample mean over units needs every unit before any can be rectified, but it is
# linear: mean_b = (1/n) sum_i count_i x[b, i], where count_i is how many units read input i.
# So it costs one short dot product per sample, computed up front.
# ---------------------------------------------------------------------------------------------


def _unit_blocks(n_units: int) -> int:
    """Blocks of units for the fused kernels: a few per thread, for load balance."""
    return max(1, min(n_units, 4 * numba.get_num_threads()))


_FIXED_TABLES: dict = {}


def _fixed_table(array, key, build):
    """``build()``, cached per array when that array is read-only and owns its memory (a
    model's fixed encoder indices or readout), so its contents cannot change under the
    cache. Entries of arrays that no longer exist are dropped as new ones are added."""
    if array.flags.writeable or array.base is not None:
        return build()
    full_key = (id(array),) + key
    hit = _FIXED_TABLES.get(full_key)
    if hit is not None and hit[0]() is array:
        return hit[1]
    for stale in [k for k, (ref, _) in _FIXED_TABLES.items() if ref() is None]:
        del _FIXED_TABLES[stale]
    table = build()
    _FIXED_TABLES[full_key] = (weakref.ref(array), table)
    return table


def _input_counts(idx, n_in: int, dtype):
    """How many units read each input, (n_in,)."""
    return _fixed_table(
        idx, ("counts", n_in, np.dtype(dtype).str),
        lambda: np.bincount(idx.reshape(-1), minlength=n_in).astype(dtype),
    )


_ROWS_PER_PASS = 7  # input rows summed per loop over the batch: FlyNet's k, in one pass

def _padded_indices(idx, n_in: int):
    """idx widened to a multiple of :data:`_ROWS_PER_PASS` columns with the index ``n_in``
    (the zero row :func:`_transposed_batch` appends), so every pass sums exactly that many
    rows and needs no branch."""

    def build():
        n, k = idx.shape
        width = max(1, -(-k // _ROWS_PER_PASS)) * _ROWS_PER_PASS
        rows = np.full((n, width), n_in, dtype=np.int32)
        rows[:, :k] = idx
        return rows

    return _fixed_table(idx, ("padded", n_in), build)


# Batches are processed in tiles of at most this many samples. Every block of units gathers
# its rows from the whole transposed tile ((n_in + 1) x tile floats), so the tile must stay
# in cache. On the bench machine (FlyNet, 2 threads, batch 1,024, ten calls of each variant
# in turn) tiles of 512 ran one-task inference 1.9x, 36-task inference 1.5x and the training
# forward 1.8x faster than the batch in one piece, and a little faster than tiles of 256.
# (Tiles cut as column slices of one big transposed batch did not help: its rows, 4 KiB
# apart, compete for the same cache sets.)
_BATCH_TILE = 512
_TILE_ALIGN = 16  # samples: tiles start on 64-byte boundaries of float32 rows


def _batch_tiles(batch: int) -> list:
    """[(lo, hi), ...]: the batch split into the fewest tiles of at most
    :data:`_BATCH_TILE` samples, of near-equal sizes rounded up to :data:`_TILE_ALIGN`
    (the last one takes the rest), e.g. 1,000 samples -> 512 + 488."""
    n_tiles = max(1, -(-batch // _BATCH_TILE))
    size = -(-batch // n_tiles)
    size = min(_BATCH_TILE, -(-size // _TILE_ALIGN) * _TILE_ALIGN) if n_tiles > 1 else batch
    return [(lo, min(batch, lo + size)) for lo in range(0, batch, size)]


def _transposed_batch(x, idx):
    """(xT, rows, mean) for the gather kernels.

    xT (n_in + 1, B): the batch with samples innermost, plus a row of zeros; rows: the
    encoder indices padded to whole passes with the zero row's index (see
    :func:`_padded_indices`); mean (B,): each sample's mean unit activity.
    """
    n_in, B = x.shape[1], x.shape[0]
    xT = np.empty((n_in + 1, B), dtype=x.dtype)
    xT[:n_in] = x.T
    xT[n_in] = 0
    counts = _input_counts(idx, n_in, x.dtype)
    mean = (counts @ xT[:n_in]) / x.dtype.type(idx.shape[0])
    return xT, _padded_indices(idx, n_in), np.ascontiguousarray(mean, dtype=x.dtype)


@njit(**_JIT_SERIAL)
def _unit_activity(xT, rows, j, mean, m, row, col):
    """m[row, col : col + B] = relu(sum_t xT[rows[j, t], :] - mean): unit j's activity for
    the batch tile xT (n_in + 1, B).

    Seven rows are summed per loop over the batch (padding rows are zeros), and the
    centring and ReLU are folded into the last pass. With batch-sized loops, each loop's
    set-up costs about as much as its work, so one fat loop per unit wins: measured 1.7x
    faster than passes of four, two and one rows, and 1.3x faster than passes of eight
    (whose padding row costs FlyNet an extra load per sample).
    """
    B = xT.shape[1]
    width = rows.shape[1]
    h = m[row, col : col + B]
    for t in range(0, width, _ROWS_PER_PASS):
        r0, r1, r2, r3 = xT[rows[j, t]], xT[rows[j, t + 1]], xT[rows[j, t + 2]], xT[rows[j, t + 3]]
        r4, r5, r6 = xT[rows[j, t + 4]], xT[rows[j, t + 5]], xT[rows[j, t + 6]]
        first, last = t == 0, t + _ROWS_PER_PASS >= width
        if first and last:
            for b in range(B):
                v = r0[b] + r1[b] + r2[b] + r3[b] + r4[b] + r5[b] + r6[b] - mean[b]
                h[b] = v if v > 0 else 0.0
        elif first:
            for b in range(B):
                h[b] = r0[b] + r1[b] + r2[b] + r3[b] + r4[b] + r5[b] + r6[b]
        elif last:
            for b in range(B):
                v = h[b] + r0[b] + r1[b] + r2[b] + r3[b] + r4[b] + r5[b] + r6[b] - mean[b]
                h[b] = v if v > 0 else 0.0
        else:
            for b in range(B):
                h[b] += r0[b] + r1[b] + r2[b] + r3[b] + r4[b] + r5[b] + r6[b]


_UNITS_PER_PASS = 4  # units folded into the accumulators per pass: 4x fewer stores


@njit(**_JIT)
def _fused_logits(xT, rows, mean, gains, W, partials, activity, col):
    # xT (n_in + 1, B): one batch tile. partials (n_blocks, T, n_out, B): one private
    # accumulator per block of units. activity: (n_units, >= col + B) to keep the encoder
    # output for a backward pass in its columns col : col + B, or (0, 0) to use a small
    # per-block scratch instead (inference never needs it).
    n = rows.shape[0]
    T, n_out, B = partials.shape[1], partials.shape[2], partials.shape[3]
    n_blocks = partials.shape[0]
    keep = activity.shape[0] > 0
    for blk in prange(n_blocks):
        lo = blk * n // n_blocks
        hi = (blk + 1) * n // n_blocks
        scratch = np.empty((_UNITS_PER_PASS, B), dtype=xT.dtype)
        m = activity if keep else scratch
        c0 = col if keep else 0
        for t in range(T):
            for o in range(n_out):
                for b in range(B):
                    partials[blk, t, o, b] = 0.0
        j = lo
        while j + _UNITS_PER_PASS <= hi:
            r = j if keep else 0  # row of m holding unit j
            for u in range(_UNITS_PER_PASS):
                _unit_activity(xT, rows, j + u, mean, m, r + u, c0)
            h0, h1 = m[r, c0 : c0 + B], m[r + 1, c0 : c0 + B]
            h2, h3 = m[r + 2, c0 : c0 + B], m[r + 3, c0 : c0 + B]
            for t in range(T):
                for o in range(n_out):
                    w0 = W[o, j] * gains[t, j]
                    w1 = W[o, j + 1] * gains[t, j + 1]
                    w2 = W[o, j + 2] * gains[t, j + 2]
                    w3 = W[o, j + 3] * gains[t, j + 3]
                    acc = partials[blk, t, o]
                    for b in range(B):
                        acc[b] += w0 * h0[b] + w1 * h1[b] + w2 * h2[b] + w3 * h3[b]
            j += _UNITS_PER_PASS
        while j < hi:  # the block's last few units, one at a time
            r = j if keep else 0
            _unit_activity(xT, rows, j, mean, m, r, c0)
            h0 = m[r, c0 : c0 + B]
            for t in range(T):
                for o in range(n_out):
                    w = W[o, j] * gains[t, j]
                    acc = partials[blk, t, o]
                    for b in range(B):
                        acc[b] += w * h0[b]
            j += 1


def _run_fused_logits(x, idx, gains, strengths, W, activity):
    """(T, B, n_out) logits from :func:`_fused_logits`, one batch tile at a time (see
    :func:`_batch_tiles`), filling ``activity`` (n_units, B) when it has rows."""
    T, B = gains.shape[0], x.shape[0]
    gains = np.ascontiguousarray(gains)
    s = np.asarray(strengths, dtype=x.dtype).reshape(T, 1, 1)
    logits = np.empty((T, B, W.shape[0]), dtype=x.dtype)
    for lo, hi in _batch_tiles(B):
        xT, rows, mean = _transposed_batch(x[lo:hi], idx)
        partials = np.empty((_unit_blocks(idx.shape[0]), T, W.shape[0], hi - lo), dtype=x.dtype)
        _fused_logits(xT, rows, mean, gains, W, partials, activity, lo)
        logits[:, lo:hi] = (s * partials.sum(axis=0)).transpose(0, 2, 1)  # from (T, n_out, B)
    return logits


def task_logits(x, idx, gains, strengths, W):
    """Several tasks' logits sharing one encoder pass; see the reference twin.

    Contract: parallel over blocks of units; per unit, k contiguous row loads build the
    activity of the whole batch in a private buffer; four units at a time are folded straight
    into each task's logits (one load and store of the accumulator per four multiply-adds);
    one (T, n_out, B) accumulator per block, summed afterwards. Extra tasks cost only their
    readout, never another encoder pass, and the encoder output is never written to memory.
    Large batches run in tiles of at most :data:`_BATCH_TILE` samples, so the transposed
    batch every block gathers from stays in cache. Batches of fewer than
    :data:`_SMALL_BATCH` samples take :func:`_small_batch_activity`.
    """
    if x.shape[0] < _SMALL_BATCH:
        h = _small_batch_activity(x, idx)
        logits = np.empty((gains.shape[0], x.shape[0], W.shape[0]), dtype=x.dtype)
        for t in range(gains.shape[0]):
            logits[t] = modulated_forward(h, np.ascontiguousarray(gains[t]), strengths[t], W)
        return logits
    no_activity = np.empty((0, 0), dtype=x.dtype)
    return _run_fused_logits(x, idx, gains, strengths, W, no_activity)


def task_predictions(x, idx, gains, strengths, W, classes=None, batch_size=None):
    """Several tasks' predicted classes; see the reference twin.

    Contract: :func:`task_logits` on ``batch_size`` samples at a time (1,024 by default),
    then NumPy's argmax over the competing classes (ties to the earliest, as in the
    reference).
    """
    return predictions_in_batches(task_logits, x, idx, gains, strengths, W, classes, batch_size)


def logits_and_activity(x, idx, c, s, W):
    """One task's logits and the encoder activity; see the reference twin.

    Contract: the fused pass of :func:`task_logits`, which also keeps each unit's activity
    row as it goes, so the backward pass never recomputes the encoder. The activity is
    returned as a (B, n_units) view of a unit-major (n_units, B) buffer: the layout
    :func:`modulated_param_grads` reads fastest, and no transpose copy is made. Large
    batches run in tiles (see :func:`task_logits`), each filling its columns of the buffer.
    Batches of fewer than :data:`_SMALL_BATCH` samples take :func:`_small_batch_activity`.
    """
    if x.shape[0] < _SMALL_BATCH:
        h = _small_batch_activity(x, idx)
        return modulated_forward(h, c, s, W), h
    activity = np.empty((idx.shape[0], x.shape[0]), dtype=x.dtype)
    logits = _run_fused_logits(x, idx, c[None, :], np.asarray(s).reshape(1), W, activity)
    return logits[0], activity.T


_OUTPUTS_PER_PASS = 10  # outputs folded into one loop over the batch: the paper's 10 classes


@njit(**_JIT)
def _unit_major_param_grads(hT, WT, dlT, gh, n_blocks):
    # gh_j = sum_b h_jb g_jb with g_jb = sum_o W_oj dl_ob: the batch gradient of unit j's
    # gain, before the factor s. One loop over the batch per unit (and per ten outputs) forms
    # g from ten dlogits rows and folds it into one running sum, so each unit ends with a
    # single horizontal reduction: measured 1.25-1.3x faster at batch 32 and 128 than ten
    # separate dot products <dl_o, h_j> weighted afterwards (ten reductions per unit).
    # Two units share each loop, so every dlogits value loaded serves both, and the ten
    # dlogits rows are taken out of dlT once per block, not once per unit. On the bench
    # machine (2 threads, FlyNet, eight rounds of ten calls of each variant in turn), taking
    # the rows once per block was 1.6x faster at batch 128, pairing the units 1.35x more;
    # the whole (dc, ds) call became 2.1x faster at batch 32, 1.7x at 128 and 1,024.
    # WT (n_units, rows) and dlT (rows, B) are zero-padded to a multiple of ten outputs.
    n, B = hT.shape
    for blk in prange(n_blocks):
        lo = blk * n // n_blocks
        hi = (blk + 1) * n // n_blocks
        for j in range(lo, hi):
            gh[j] = 0.0
        for o in range(0, dlT.shape[0], _OUTPUTS_PER_PASS):
            l0, l1, l2, l3, l4 = dlT[o], dlT[o + 1], dlT[o + 2], dlT[o + 3], dlT[o + 4]
            l5, l6, l7, l8, l9 = dlT[o + 5], dlT[o + 6], dlT[o + 7], dlT[o + 8], dlT[o + 9]
            j = lo
            while j + 2 <= hi:
                hj, hk = hT[j], hT[j + 1]
                w0, w1, w2, w3, w4 = WT[j, o], WT[j, o + 1], WT[j, o + 2], WT[j, o + 3], WT[j, o + 4]
                w5, w6, w7, w8, w9 = WT[j, o + 5], WT[j, o + 6], WT[j, o + 7], WT[j, o + 8], WT[j, o + 9]
                k = j + 1
                v0, v1, v2, v3, v4 = WT[k, o], WT[k, o + 1], WT[k, o + 2], WT[k, o + 3], WT[k, o + 4]
                v5, v6, v7, v8, v9 = WT[k, o + 5], WT[k, o + 6], WT[k, o + 7], WT[k, o + 8], WT[k, o + 9]
                # Float32 zeros: Numba widens them to float64 when the arrays are float64.
                part_j = np.float32(0.0)
                part_k = np.float32(0.0)
                for b in range(B):
                    a0, a1, a2, a3, a4 = l0[b], l1[b], l2[b], l3[b], l4[b]
                    a5, a6, a7, a8, a9 = l5[b], l6[b], l7[b], l8[b], l9[b]
                    g = (w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3 + w4 * a4
                         + w5 * a5 + w6 * a6 + w7 * a7 + w8 * a8 + w9 * a9)
                    f = (v0 * a0 + v1 * a1 + v2 * a2 + v3 * a3 + v4 * a4
                         + v5 * a5 + v6 * a6 + v7 * a7 + v8 * a8 + v9 * a9)
                    part_j += hj[b] * g
                    part_k += hk[b] * f
                gh[j] += part_j
                gh[k] += part_k
                j += 2
            if j < hi:  # an odd block's last unit, alone
                h = hT[j]
                part = np.float32(0.0)
                for b in range(B):
                    g = (WT[j, o] * l0[b] + WT[j, o + 1] * l1[b] + WT[j, o + 2] * l2[b]
                         + WT[j, o + 3] * l3[b] + WT[j, o + 4] * l4[b] + WT[j, o + 5] * l5[b]
                         + WT[j, o + 6] * l6[b] + WT[j, o + 7] * l7[b] + WT[j, o + 8] * l8[b]
                         + WT[j, o + 9] * l9[b])
                    part += h[b] * g
                gh[j] += part


def _padded_readout_transpose(W):
    """W.T (n_units, rows), zero-padded to a multiple of :data:`_OUTPUTS_PER_PASS` outputs,
    so each unit's weights are one contiguous row; cached for a model's fixed readout."""

    def build():
        n_out, n = W.shape
        rows = -(-n_out // _OUTPUTS_PER_PASS) * _OUTPUTS_PER_PASS
        WT = np.zeros((n, rows), dtype=W.dtype)
        WT[:, :n_out] = W.T
        return WT

    return _fixed_table(W, ("readout",), build)


def _param_grads_unit_major(dy, hT, c, s, W):
    """(dc, ds) from unit-major activity hT (n_units, B)."""
    WT = _padded_readout_transpose(W)
    dlT = np.zeros((WT.shape[1], hT.shape[1]), dtype=hT.dtype)
    dlT[: W.shape[0]] = np.asarray(dy).T
    gh = np.empty(hT.shape[0], dtype=np.float64)
    _unit_major_param_grads(hT, WT.astype(hT.dtype, copy=False), dlT, gh, _unit_blocks(hT.shape[0]))
    return (s * gh).astype(hT.dtype), float(np.dot(c, gh))


def context_grads(x, idx, c, s, W, dlogits):
    """``(dc, ds)`` straight from the inputs; see the reference twin.

    Contract: the encoder writes unit-major activity (n_units, B) in parallel over blocks
    of units, then :func:`modulated_param_grads`'s unit-major kernel reads it once. The
    training step avoids even this encoder pass by keeping the activity of
    :func:`logits_and_activity`.
    """
    if x.shape[0] < _SMALL_BATCH:
        return modulated_param_grads(dlogits, _small_batch_activity(x, idx), c, s, W)
    return _param_grads_unit_major(dlogits, _unit_major_activity(x, idx), c, float(s), W)


def stream_sum(a):
    """Sum of a 1-D array, read once in parallel: the benchmark's memory-bandwidth probe.

    Parameters
    ----------
    a : numpy.ndarray, shape (n,)
        Floating-point values; a strided view is read where it lies.

    Returns
    -------
    float
        ``sum(a)``, accumulated in float64.
    """
    if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind != "f":
        described = (f"a {a.ndim}-D {a.dtype} array" if isinstance(a, np.ndarray)
                     else type(a).__name__)
        raise ShapeError(f"stream_sum reads a 1-D floating-point array; got {described}")
    return _stream_sum(a)


@njit(parallel=True, fastmath=True, cache=True)
def _stream_sum(a):
    total = 0.0
    for i in prange(a.size):
        total += a[i]
    return total
