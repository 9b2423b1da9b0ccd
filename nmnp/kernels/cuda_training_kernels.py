"""The training kernels that only device-resident training uses: the loss and the optimiser step.

:mod:`nmnp.kernels.cuda_training` runs a task's epochs with four launches per step; the first
and third (the fused forward, the context gradient) are shared with the per-batch interface
and live in :mod:`nmnp.kernels.cuda_kernels`. The second and fourth are here:

* :func:`loss_kernel`: ``loss_and_dlogits``, softmax cross-entropy over the competing classes;
* :func:`step_kernel`: ``optimizer_step``, the gains' and the strength's update, with
  :mod:`nmnp.optim`'s maths (:data:`RULES` names the rule an integer selects).

Both write the first failure into a status word (:data:`LOSS_NOT_FINITE`,
:data:`GRAD_NOT_FINITE`, :data:`UPDATE_NOT_FINITE`) and do nothing once it is set. Each
factory compiles on first call and is cached (``cache_clear`` forgets it).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from .cuda_device import cuda

#: Optimiser update rules by name, as the ``rule`` argument of the step kernel.
RULES = {"rmsprop": 0, "sgd": 1, "adam": 2}
#: Status codes the kernels write into ``status[0]``.
LOSS_NOT_FINITE, GRAD_NOT_FINITE, UPDATE_NOT_FINITE = 1, 2, 3


@functools.lru_cache(maxsize=None)
def device_functions():
    """The device functions the two kernels share: ``finite(v)``, ``flag(status, code, step,
    key)`` (first error wins) and ``update(...)`` (one element's optimiser step); cached."""
    @cuda.jit(device=True)
    def finite(v):
        return not (math.isinf(v) or math.isnan(v))

    @cuda.jit(device=True)
    def flag(status, code, step_id, key):
        """First error wins: compare-and-swap on the code, then its step and parameter."""
        if cuda.atomic.cas(status, 0, numba.int32(0), numba.int32(code)) == 0:
            status[1] = step_id
            status[2] = key

    @cuda.jit(device=True)
    def update(rule, p, g, a, b, lr, h1, h2, h3, c1, c2, first):
        """One element's optimiser step, :mod:`nmnp.optim`'s maths: (new p, new a, new b).

        rmsprop: h1 alpha, h2 eps, a square_avg.  sgd: h1 momentum, h2 nesterov (0/1),
        a momentum_buffer.  adam: h1 beta1, h2 beta2, h3 eps, a exp_avg, b exp_avg_sq,
        c1 = 1 - beta1**t, c2 = 1 - beta2**t.
        """
        if rule == 0:
            v = h1 * a + (1.0 - h1) * (g * g)
            return p - lr * (g / (math.sqrt(v) + h2)), v, b
        if rule == 1:
            if h1 == 0.0:
                return p - lr * g, a, b
            buf = g if first else h1 * a + g
            direction = g + h1 * buf if h2 != 0.0 else buf
            return p - lr * direction, buf, b
        m = h1 * a + (1.0 - h1) * g
        v = h2 * b + (1.0 - h2) * (g * g)
        return p - lr * ((m / c1) / (math.sqrt(v / c2) + h3)), m, v

    return finite, flag, update


@functools.lru_cache(maxsize=None)
def loss_kernel():
    """The compiled ``loss_and_dlogits`` kernel (documented below); cached."""
    finite, flag, _ = device_functions()

    @cuda.jit
    def loss_and_dlogits(partials, strength, rd, order, y, classes, col0, nb, z, dlT,
                         sample_loss, sample_correct, step_id, status):
        """Per sample b of the batch: logits, cross-entropy over ``classes``, dlogits.

        z[b, o] = s * sum_c partials[c, 0, o, b] (float64 sum of the unit chunks, stored at
        the data's precision like the host's logits); the loss is
        ``logsumexp_{o in classes} z[b, o] - z[b, label]``, shifted by the maximum;
        ``dlT[o, b] = (softmax - onehot) / nb`` on the competing classes and 0 elsewhere.
        The argmax takes the first maximum in the order of ``classes`` (as the host's
        ``argmax`` over ``logits[:, classes]``).

        Launch: 1-D; a block takes ``per_block = threads // n_out`` samples (at least 1) at a
        time. First every (sample, output) pair of them gets its own thread for the sum over
        the chunks (thread ``lane * per_block + i``: neighbouring threads read neighbouring
        samples), since one thread summing all n_out outputs alone waits on n_out times as
        many loads in a row; then, after a barrier, one thread per sample does the rest. Sets
        status code 1 if a loss is not finite. Returns at once if ``status[0]`` is set.
        """
        if status[0] != 0:
            return
        n_chunks, n_out = partials.shape[0], partials.shape[2]
        n_cls = classes.shape[0]
        s = strength[rd, 0]
        inv_nb = 1.0 / nb
        per_block = max(1, cuda.blockDim.x // n_out)
        lanes = cuda.blockDim.x // per_block  # threads per sample (n_out, or fewer)
        lane = cuda.threadIdx.x // per_block
        for first in range(cuda.blockIdx.x * per_block, nb, cuda.gridDim.x * per_block):
            b = first + cuda.threadIdx.x % per_block
            if b < nb and lane < lanes:
                for o in range(lane, n_out, lanes):
                    acc = 0.0
                    for c in range(n_chunks):
                        acc += partials[c, 0, o, b]
                    z[b, o] = s * acc
                    dlT[o, b] = 0
            cuda.syncthreads()  # the sample's z row is complete (global writes of the block)
            if b >= nb or lane != 0:
                continue
            label = y[order[col0 + b]]
            best = classes[0]
            for q in range(1, n_cls):
                if z[b, classes[q]] > z[b, best]:
                    best = classes[q]
            zmax = z[b, best]
            total = 0.0
            for q in range(n_cls):
                total += math.exp(z[b, classes[q]] - zmax)
            lse = zmax + math.log(total)
            loss = lse - z[b, label]
            for q in range(n_cls):
                o = classes[q]
                p = math.exp(z[b, o] - lse)
                if o == label:
                    p -= 1.0
                dlT[o, b] = p * inv_nb
            sample_loss[col0 + b] = loss
            sample_correct[col0 + b] = 1 if best == label else 0
            if not finite(loss):
                flag(status, 1, step_id, 0)

    return loss_and_dlogits


@functools.lru_cache(maxsize=None)
def step_kernel(tpb: int, dtype_name: str):
    """The compiled ``optimizer_step`` kernel for blocks of ``tpb`` threads (a power of two: its
    shared-memory tree halves it) and parameters of ``dtype_name``; cached per pair."""
    finite, flag, update = device_functions()
    dt = numba.from_dtype(np.dtype(dtype_name))

    @cuda.jit
    def optimizer_step(gh_part, gains, strength, slot1, slot2, sslot1, sslot2, rd, wr, rule,
                       lr, h1, h2, h3, c1, c2, first, step_id, ds_part, counter, status):
        """The optimiser step for the gains (one thread per unit) and then the strength.

        Reads buffer ``rd`` of the parameters (``gains`` (2, n), ``strength`` (2, 1)) and of
        the optimiser state (``slot1``, ``slot2`` for the gains, ``sslot1``, ``sslot2`` for
        the strength) and writes buffer ``wr``. Per unit j: gh = sum_r gh_part[r, j] (float64,
        tiles in order: the second pass of the backward reduction), dc = s gh, the update.
        ds = sum_j c_j gh_j: per-thread sums, a shared-memory tree per block (log2(threads)
        barriers) into ``ds_part[block]``, then the last block to finish, elected by an
        atomic ticket on ``counter``, adds the blocks' sums in block order (deterministic)
        and updates the strength. Non-finite gradients (code 2) or results (code 3) are
        flagged; the values are written all the same, into the buffer a failed step leaves
        behind. Returns at once, writing nothing, if ``status[0]`` is already set.
        """
        if status[0] != 0:
            return
        tid = cuda.threadIdx.x
        n = gains.shape[1]
        n_tiles = gh_part.shape[0]
        s = float(strength[rd, 0])
        part = 0.0
        bad = 0
        for j in range(cuda.grid(1), n, cuda.gridsize(1)):
            gh = 0.0
            for r in range(n_tiles):
                gh += gh_part[r, j]
            c = float(gains[rd, j])
            part += c * gh
            g = dt(s * gh)
            if bad == 0 and not finite(g):
                bad = 2
            p, a, b = update(rule, c, float(g), float(slot1[rd, j]), float(slot2[rd, j]),
                             lr, h1, h2, h3, c1, c2, first)
            p, a, b = dt(p), dt(a), dt(b)
            if bad == 0 and not (finite(p) and finite(a) and finite(b)):
                bad = 3
            gains[wr, j] = p
            slot1[wr, j] = a
            slot2[wr, j] = b
        if bad != 0:
            flag(status, bad, step_id, 0)
        sh = cuda.shared.array(tpb, numba.float64)
        sh[tid] = part
        cuda.syncthreads()
        half = tpb // 2
        while half > 0:
            if tid < half:
                sh[tid] += sh[tid + half]
            cuda.syncthreads()
            half //= 2
        if tid == 0:
            ds_part[cuda.blockIdx.x] = sh[0]
            cuda.threadfence()  # this block's partial is visible before its ticket is
            ticket = cuda.atomic.add(counter, 0, 1)
            if ticket == cuda.gridDim.x - 1:  # every other block has finished
                counter[0] = 0  # ready for the next step
                ds = 0.0
                for q in range(cuda.gridDim.x):
                    ds += cuda.atomic.add(ds_part, q, 0.0)  # coherent read (skips L1)
                if cuda.atomic.add(status, 0, 0) == 0:
                    g = dt(ds)
                    if not finite(g):
                        flag(status, 2, step_id, 1)
                    p, a, b = update(rule, float(strength[rd, 0]), float(g),
                                     float(sslot1[rd, 0]), float(sslot2[rd, 0]),
                                     lr, h1, h2, h3, c1, c2, first)
                    p, a, b = dt(p), dt(a), dt(b)
                    if not (finite(p) and finite(a) and finite(b)):
                        flag(status, 3, step_id, 1)
                    strength[wr, 0] = p
                    sslot1[wr, 0] = a
                    sslot2[wr, 0] = b

    return optimizer_step
