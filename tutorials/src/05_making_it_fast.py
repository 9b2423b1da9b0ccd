# Source of tutorials/05_making_it_fast.ipynb; rebuild with `python tutorials/build.py 05`.

# %% [markdown]
# # Tutorial 5: Making it fast
#
# One FlyNet training step does three things per sample: the sparse encoder (7,840 units,
# each summing 7 of the 784 pixels, then centring and ReLU), the modulated readout
# $z = s\,(h \odot c)\,W^\top$, and the backward pass for the context (tutorial 2). That is
# about 0.4 million floating-point operations per sample: little arithmetic, but scattered
# memory reads. This notebook takes the encoder from a Python loop to nmnp's Numba kernel
# and explains each decision that makes the kernel fast:
#
# 1. from a pure-Python loop to NumPy to a Numba-parallel kernel, checking each version
#    against the NumPy reference before timing it;
# 2. the memory layout: why the batch is transposed so that samples are innermost;
# 3. why each sample's mean activity is a dot product with per-input counts;
# 4. why the fused kernels use the encoder output while it is in cache;
# 5. every fast kernel against the reference, then training speed across batch sizes;
# 6. what the roofline says: the work per sample, the machine's measured peaks, and the
#    fraction of them nmnp reaches.
#
# Timings on a shared machine are noisy. Every timing below is the fastest of a few runs
# (the least disturbed one). Correctness is asserted; speed is only *reported*: each claim
# about speed prints whether this run bore it out, because how fast a kernel runs depends on
# the machine and on whatever else runs on it, and the test suite that executes this notebook
# must not fail because a machine was busy. `python -m nmnp.bench` measures the speeds
# properly (medians, min and max, and the machine they were measured on).

# %%
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")

import matplotlib.pyplot as plt
import numpy as np
from numba import njit

import nmnp
from nmnp import bench
from nmnp.config import NetworkConfig
from nmnp.data import load_dataset, normalize, pixel_stats
from nmnp.kernels import KERNELS, get_backend
from nmnp.model import ModulatedNetwork
from nmnp.optim import make_optimizer
from nmnp.system import describe_machine, set_threads

notebook_start = time.perf_counter()
threads = set_threads(None)  # Numba's kernels get the cores, BLAS one thread (tutorial 3)
numpy_kernels, cpu_kernels = get_backend("numpy"), get_backend("cpu")  # reference, Numba

config = NetworkConfig.flynet()
net = nmnp.FlyNet(seed=0)
idx, W = net.encoder_indices, net.readout  # (7840, 7) int, (10, 7840) float32
n_in, n, k, n_out = config.n_inputs, config.n_units, config.inputs_per_unit, config.n_outputs

ds = load_dataset()
mean_px, std_px = pixel_stats(ds.x_train)
images = normalize(ds.x_train[:1024], mean_px, std_px)  # (1024, 784) float32
labels = ds.y_train[:1024]
machine = describe_machine()
print(f"{machine['cpu']}, {machine['cores']} cores, Numba {machine['numba']} with {threads} "
      f"threads; FlyNet {n_in} -> {n} (k = {k}) -> {n_out}")
assert images.shape == (1024, n_in) and images.dtype == np.float32


def best_time(fn, repeats=3, warmup=True):
    """Seconds of the fastest of `repeats` calls of fn(), after one untimed call (the JIT
    compile) if warmup: the fastest of the bench's median, min and max."""
    return bench.timed(fn, repeats, warmup=warmup)["min"]


def report(claim, holds):
    """Print a claim about speed and whether the timings of this run bore it out."""
    verdict = "yes" if holds else "NOT on this run (a busy machine, or a different one)"
    print(f"{claim}: {verdict}")


def max_rel_err(a, b):
    """Largest difference, relative to the largest value of b: one number per array."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))

# %% [markdown]
# ## 1. From a Python loop to a Numba kernel
#
# The encoder, for sample $b$ and unit $j$ with inputs $S_j = \{idx_{j0}, \dots,
# idx_{j,k-1}\}$:
#
# $$ m_{bj} = \sum_{t=0}^{k-1} x_{b,\,idx_{jt}}, \qquad
#    h_{bj} = \max\Big(0,\; m_{bj} - \tfrac{1}{n}\sum_{j'} m_{bj'}\Big). $$
#
# Written as plainly as possible, in pure Python (lists in, lists out):

# %%
def encoder_python(x_rows, idx_rows):
    """Pure Python, one sample at a time: x_rows (B lists of 784), idx_rows (n lists of k)."""
    out = []
    for row in x_rows:  # each sample
        m = []
        for inputs in idx_rows:  # each of the 7840 units
            total = 0.0
            for i in inputs:  # its 7 inputs
                total += row[i]
            m.append(total)
        mean = sum(m) / len(m)
        out.append([max(v - mean, 0.0) for v in m])
    return out


h_ref = numpy_kernels.encoder_forward(images[:128], idx)  # the oracle, (128, 7840)
idx_rows = idx.tolist()
x_rows = images[:2].tolist()
start = time.perf_counter()
h_python = np.array(encoder_python(x_rows, idx_rows), dtype=np.float32)
t_python = (time.perf_counter() - start) / 2
err_python = max_rel_err(h_python, h_ref[:2])
print(f"pure Python: {t_python * 1e3:.1f} ms per sample; max relative difference from the "
      f"reference {err_python:.1e}")
assert err_python < 1e-5  # it computes in float64: equal up to float32 rounding

# %% [markdown]
# The first speed-up is to let NumPy run the inner loops in C. Per sample, `row[idx]` gathers
# a (7840, 7) array and `.sum(axis=1)` adds each unit's inputs:

# %%
def encoder_numpy_per_sample(x, idx):
    """NumPy inside a Python loop over samples."""
    h = np.empty((x.shape[0], idx.shape[0]), dtype=x.dtype)
    for b, row in enumerate(x):
        m = row[idx].sum(axis=1)  # gather (n, k), sum each unit's k inputs
        h[b] = np.maximum(m - m.mean(), 0)
    return h


err_per_sample = max_rel_err(encoder_numpy_per_sample(images[:32], idx), h_ref[:32])
t_per_sample = best_time(lambda: encoder_numpy_per_sample(images[:32], idx), warmup=False) / 32
print(f"NumPy per sample: {t_per_sample * 1e3:.2f} ms per sample, "
      f"{t_python / t_per_sample:.0f} x faster than pure Python; difference {err_per_sample:.1e}")
assert err_per_sample < 1e-6
report("NumPy per sample is over 3 x faster than pure Python", t_python > 3 * t_per_sample)

# %% [markdown]
# nmnp's NumPy reference (`nmnp.kernels.reference.encoder_forward`, the oracle every fast
# backend is tested against) removes the loop over samples too: `x[:, idx]` gathers a
# (B, 7840, 7) array in one call:
#
# ```python
# m = x[:, idx].sum(axis=2)
# h = np.maximum(m - m.mean(axis=1, keepdims=True), 0)
# ```
#
# And nmnp's Numba kernel (`nmnp.kernels.cpu.encoder_forward`) compiles loops to machine
# code and runs them on every core. It must agree with the reference first; only then do we
# time it.

# %%
x128 = images[:128]
h_cpu = cpu_kernels.encoder_forward(x128, idx)
err_cpu = max_rel_err(h_cpu, h_ref)
print(f"Numba kernel vs reference: max relative difference {err_cpu:.1e} "
      f"(float32 epsilon {np.finfo(np.float32).eps:.1e})")
assert h_cpu.dtype == np.float32 and h_cpu.shape == h_ref.shape
assert err_cpu < 1e-5  # fastmath reorders the sums: equal within float32 rounding, not bitwise

t_reference = best_time(lambda: numpy_kernels.encoder_forward(x128, idx), warmup=False) / 128
t_numba = best_time(lambda: cpu_kernels.encoder_forward(x128, idx), repeats=5) / 128
per_sample = {"pure Python": t_python, "NumPy per sample": t_per_sample,
              "NumPy batched (reference)": t_reference, f"Numba ({threads} threads)": t_numba}
for name, seconds in per_sample.items():
    print(f"{name:>26}: {seconds * 1e6:10.1f} µs per sample")
print(f"Numba is {t_python / t_numba:.0f} x faster than pure Python and "
      f"{t_reference / t_numba:.1f} x faster than the NumPy reference (batch 128)")
report("batching the gather pays", t_per_sample > t_reference)
report("Numba is over 1.5 x faster than the reference", t_reference > 1.5 * t_numba)
report("Numba is over 30 x faster than pure Python", t_python > 30 * t_numba)

fig, ax = plt.subplots(figsize=(8, 2.8), layout="constrained")
ax.barh(list(per_sample)[::-1], [v * 1e6 for v in list(per_sample.values())[::-1]], color="C0")
ax.set_xscale("log")
ax.set_xlabel("µs per sample (log scale), encoder forward only")
ax.set_title("the same encoder, four ways")
ax.grid(axis="x", alpha=0.3)
plt.show()

# %% [markdown]
# ## 2. Memory layout: samples innermost
#
# NumPy stores `x` (B, 784) row by row: one sample's pixels are contiguous. For one unit $j$
# and a whole batch, the row-major version reads $x_{b,\,idx_{jt}}$ for every sample $b$:
# $k$ scalar loads per sample from $k$ scattered places, and consecutive samples are a full
# row (784 floats) apart, so nothing can be loaded as a vector.
#
# Transpose the batch once, to `xT` (784, B), and row $i$ of `xT` holds pixel $i$ of every
# sample, side by side. Unit $j$'s activity for the whole batch is then the sum of $k$ rows:
#
# $$ m_{:,j} = \sum_{t} xT_{idx_{jt},\,:} $$
#
# $k$ **contiguous row loads** of length B, added element by element: exactly what the CPU's
# vector (SIMD) instructions do well. The transpose costs one copy of the batch, 784 x B
# floats, against 7840 x 7 x B gathered reads.
#
# Two small serial Numba kernels (compiled here, no threads) that differ only in the layout:

# %%
@njit(fastmath=True)
def unit_sums_row_major(x, idx, m):
    """m[b, j] = sum_t x[b, idx[j, t]]: k scattered loads per sample and unit."""
    for b in range(x.shape[0]):
        for j in range(idx.shape[0]):
            total = 0.0
            for t in range(idx.shape[1]):
                total += x[b, idx[j, t]]
            m[b, j] = total


@njit(fastmath=True)
def unit_sums_batch_innermost(xT, idx, mT):
    """mT[j, :] = sum_t xT[idx[j, t], :]: k contiguous rows per unit, the batch innermost."""
    B = xT.shape[1]
    for j in range(idx.shape[0]):
        out = mT[j]
        for b in range(B):
            out[b] = 0.0
        for t in range(idx.shape[1]):
            row = xT[idx[j, t]]
            for b in range(B):
                out[b] += row[b]


m_rows = np.empty((128, n), np.float32)
m_cols = np.empty((n, 128), np.float32)
unit_sums_row_major(x128, idx, m_rows)  # the first calls compile (about a second each)
unit_sums_batch_innermost(np.ascontiguousarray(x128.T), idx, m_cols)
m_ref = x128[:, idx].sum(axis=2)
assert max_rel_err(m_rows, m_ref) < 1e-5 and max_rel_err(m_cols.T, m_ref) < 1e-5

t_row_major = best_time(lambda: unit_sums_row_major(x128, idx, m_rows))
t_transposed = best_time(
    lambda: unit_sums_batch_innermost(np.ascontiguousarray(x128.T), idx, m_cols))
print(f"batch 128, one thread: row-major {t_row_major * 1e3:.2f} ms, batch innermost "
      f"(transpose included) {t_transposed * 1e3:.2f} ms: "
      f"{t_row_major / t_transposed:.1f} x faster")
report("batch innermost is over 2 x faster", t_row_major > 2 * t_transposed)

# %% [markdown]
# nmnp's kernel (`nmnp.kernels.cpu`) adds parallelism on top of this layout: the units are
# cut into blocks, a few per thread (`prange` over blocks), and each thread writes only its
# own units' rows, so no two threads ever write the same element. The per-unit sum is a
# helper function compiled with `inline="always"`: Numba then pastes its body into the
# loop over units. Called as a separate function, it cost a call per unit, with every array
# argument passed as a struct of about ten words; at batch 32, where each call does little
# work, inlining made the fused forward about 1.3x faster.
#
# ## 3. The mean is a dot product with counts
#
# Centring needs each sample's mean over **all** units before **any** unit can be rectified:
# done naively, a first pass over the 7840 units, then a second. But the mean is linear in
# $x$. Let $\mathrm{count}_i$ be the number of units that read input $i$; then
#
# $$ \bar m_b = \frac{1}{n}\sum_j \sum_t x_{b,\,idx_{jt}}
#            = \frac{1}{n}\sum_{i=1}^{784} \mathrm{count}_i\, x_{bi}, $$
#
# a dot product of length 784 per sample, computed up front (one small matrix-vector product
# `counts @ xT` for the batch). After it, each unit is rectified the moment its sum is known,
# in a single pass.

# %%
counts = np.bincount(idx.reshape(-1), minlength=n_in)  # how many units read each input
mean_from_counts = (counts.astype(np.float32) @ x128.T) / n
mean_two_pass = m_ref.mean(axis=1)
print(f"counts: {counts.sum():,} connections in all, {counts.mean():.0f} readers per input on "
      f"average (min {counts.min()}, max {counts.max()}); mean via counts vs two passes: "
      f"max relative difference {max_rel_err(mean_from_counts, mean_two_pass):.1e}")
assert counts.sum() == n * k == 54_880
assert counts.mean() == n * k / n_in == 70
assert 0 < counts.min() and counts.max() < 2 * counts.mean()  # every input is read, evenly
assert max_rel_err(mean_from_counts, mean_two_pass) < 1e-5

# %% [markdown]
# ## 4. The fused kernels use the encoder output while it is in cache
#
# The encoder output $h$ is $n \times B$ floats, ten times the input batch:

# %%
for B in (128, 1024):
    print(f"batch {B:>4}: inputs {B * n_in * 4 / 2**20:5.2f} MiB, encoder output h "
          f"{net.encoded_nbytes(B) / 2**20:5.1f} MiB")
assert net.encoded_nbytes(128) == 10 * 128 * n_in * 4 and net.encoded_nbytes(128) > 2**21

# %% [markdown]
# Several MiB is more than a core's private caches hold (typically 0.5 to 2 MiB), so writing
# $h$ and reading it back for the readout is a round trip through slower memory, and $h$ is
# needed only briefly: the readout uses each $h_{bj}$ for $n_\text{out} = 10$ multiply-adds.
# The fused kernels therefore compute a unit's activity for the whole batch (a B-long row,
# in cache) and use it at once:
#
# * forward: $z_{bo} \mathrel{+}= c_j W_{oj}\, h_{bj}$ for four units at a time, into the
#   unit block's own (10, B) accumulator; the accumulators are summed after the parallel
#   loop. For inference (`task_logits`) that is all: $h$ is never written to memory.
# * training (`logits_and_activity`) also keeps each row as it goes, in a unit-major
#   $(n, B)$ buffer, and the backward (`modulated_param_grads`) reads each row once:
#   $dc_j = s \sum_b h_{bj}\, g_{bj}$ with $g_{bj} = \sum_o W_{oj}\, dz_{bo}$ formed on the fly,
#   one running sum per unit, each unit written by exactly one thread. (Ten separate dot
#   products $\langle dz_{:,o}, h_{:,j}\rangle$ weighted afterwards are the same sum, but end
#   in ten horizontal reductions per unit instead of one, and were slower.) Two units share
#   each loop over the batch, so every $dz_{bo}$ loaded serves both of them.
#
# An earlier version recomputed $h_{:,j}$ in the backward ($k$ row loads from `xT`) instead
# of keeping it. Keeping it won at every batch size we timed, because the recomputation's
# row loads come from the level-2 cache: `xT` is $784 \times B$ floats, 400 KiB at batch
# 128, too big for the level-1 cache, while writing a row that is already in the level-1
# cache and reading it back once is cheap.
#
# The unfused path (the encoder writes $h$ sample-major, then the readout and its backward
# each read it back) and the fused one give the same loss and gradients; compare their
# speed at batch 1024. By how much the fused step wins varies from run to run on a shared
# machine:

# %%
task = net.add_task()
x1024, y1024 = images, labels


def unfused_step():
    h = cpu_kernels.encoder_forward(x1024, idx)  # writes h: 7840 x 1024 floats
    return net.loss_and_grads_from_activity(h, y1024, net.tasks[task])


def fused_step():
    return net.loss_and_grads_batch(x1024, y1024, task)


(loss_u, grads_u, _), (loss_f, grads_f, _) = unfused_step(), fused_step()
assert abs(loss_u - loss_f) < 1e-5 * abs(loss_f)
assert max_rel_err(grads_f["gains"], grads_u["gains"]) < 1e-4
t_unfused, t_fused = best_time(unfused_step, repeats=5), best_time(fused_step, repeats=5)
print(f"batch 1024: unfused {t_unfused * 1e3:.0f} ms, fused {t_fused * 1e3:.0f} ms per "
      f"training step ({t_unfused / t_fused:.1f} x); same loss {loss_f:.4f}")
report("fusing saves over 15%", t_unfused > 1.15 * t_fused)

# %% [markdown]
# The same cache argument limits the batch itself. Every block of units gathers its rows
# from the whole transposed batch `xT`, $(784 + 1) \times B$ floats: 3.1 MiB at batch 1024,
# more than a core keeps close. So the cpu kernels cut a large batch into tiles of at most
# `_BATCH_TILE` samples (512, 1.6 MiB) and run the fused pass once per tile, each tile with
# its own small `xT`; a training step's tiles fill their own columns of the activity buffer.
# Tiles change which sums are added first, not the result:

# %%
gains_1, strength_1 = net.tasks[task].gains[None], net.tasks[task].strength
print("batch 1024 in tiles of", [hi - lo for lo, hi in cpu_kernels._batch_tiles(1024)], "samples")
assert cpu_kernels._batch_tiles(1024) == [(0, 512), (512, 1024)]


def in_one_piece(fn):
    """Run fn() with tiling switched off (one tile as big as the batch)."""
    saved = cpu_kernels._BATCH_TILE
    cpu_kernels._BATCH_TILE = x1024.shape[0]
    try:
        return fn()
    finally:
        cpu_kernels._BATCH_TILE = saved


def infer_1024():
    return cpu_kernels.task_logits(x1024, idx, gains_1, strength_1, W)


tiled_logits, whole_logits = infer_1024(), in_one_piece(infer_1024)
assert max_rel_err(tiled_logits, whole_logits) < 1e-5

# %% [markdown]
# How much the tiles save depends on the machine's caches and, on a shared machine, on what
# the neighbours keep in theirs. Each timing below is ten calls in a row, so a variant finds
# its own data in cache (alternating single calls would evict each other's), and the rounds
# alternate between the two variants so that both see the same phases of the host:

# %%
def ten_calls():
    for _ in range(10):
        infer_1024()


rounds = {"tiles of 512": [], "one piece": []}
for _ in range(3):
    rounds["tiles of 512"].append(best_time(ten_calls, repeats=1))
    rounds["one piece"].append(in_one_piece(lambda: best_time(ten_calls, repeats=1)))
t_tiles, t_whole = min(rounds["tiles of 512"]) / 10, min(rounds["one piece"]) / 10
print(f"one-task inference at batch 1024: {1024 / t_tiles:,.0f} samples/s in tiles, "
      f"{1024 / t_whole:,.0f} in one piece ({t_whole / t_tiles:.2f} x)")

# %% [markdown]
# ## 5. Correctness first, then speed
#
# Every kernel of the cpu backend has a twin of the same name in the reference (the list is
# `nmnp.kernels.KERNELS`). All nine on FlyNet's shapes, batch 33, against the reference:

# %%
rng = np.random.default_rng(0)
B = 33
x = images[:B]
h = numpy_kernels.encoder_forward(x, idx)
c = net.tasks[task].gains
s = 1.3
dy = rng.normal(size=(B, n_out)).astype(np.float32)
dh = rng.normal(size=(B, n)).astype(np.float32)
gains = rng.normal(0, 0.02, size=(3, n)).astype(np.float32)
arguments = {
    "encoder_forward": (x, idx),
    "encoder_backward": (dh, h, idx, n_in),
    "modulated_forward": (h, c, s, W),
    "modulated_backward": (dy, h, c, s, W),
    "modulated_param_grads": (dy, h, c, s, W),
    "task_logits": (x, idx, gains, np.array([0.5, 1.0, 2.0]), W),
    "logits_and_activity": (x, idx, c, s, W),
    "context_grads": (x, idx, c, s, W, dy),
}
# class ids, not numbers: compared exactly, with the argmax of the same backend's logits
class_ids = {"task_predictions": arguments["task_logits"]}
assert set(arguments) | set(class_ids) == set(KERNELS)
for name, args in arguments.items():
    fast, slow = getattr(cpu_kernels, name)(*args), getattr(numpy_kernels, name)(*args)
    fast, slow = (fast, slow) if isinstance(slow, tuple) else ((fast,), (slow,))
    errors = [max_rel_err(a, b) for a, b in zip(fast, slow)]
    print(f"{name:>22}: max relative difference {max(errors):.1e}")
    assert max(errors) < 1e-4, name
for name, args in class_ids.items():
    fast, slow = getattr(cpu_kernels, name)(*args), getattr(numpy_kernels, name)(*args)
    assert (fast == cpu_kernels.task_logits(*args).argmax(axis=2)).all(), name
    print(f"{name:>22}: {np.mean(fast == slow):.0%} of the class ids equal the reference's")

# %% [markdown]
# Now the whole training step, `loss_and_grads_batch` plus an RMSprop update, on the two
# backends across batch sizes. The NumPy step at batch 1024 takes seconds, so it runs once;
# the others keep the fastest of ten (on a shared machine a single slow moment can halve one
# timing, and the fastest of a few is not always clear of it).

# %%
batch_sizes = (1, 32, 128, 1024)


def samples_per_second(backend, batch_size):
    """Samples/s of full training steps: fused forward + backward + RMSprop."""
    model = ModulatedNetwork(config, backend)
    t = model.add_task()
    optimizer = make_optimizer("rmsprop", model.trainable_params(t), 0.01)
    xb, yb = images[:batch_size], labels[:batch_size]

    def step():
        _, grads, _ = model.loss_and_grads_batch(xb, yb, t)
        optimizer.step(grads)

    slow = backend == "numpy" and batch_size >= 1024
    return batch_size / best_time(step, repeats=1 if slow else 10, warmup=not slow)


rates = {backend: [samples_per_second(backend, bs) for bs in batch_sizes]
         for backend in ("numpy", "cpu")}
for backend, values in rates.items():
    print(f"{backend:>5}: "
          + ", ".join(f"batch {bs}: {v:,.0f}/s" for bs, v in zip(batch_sizes, values)))
speedup = [fast / slow for fast, slow in zip(rates["cpu"], rates["numpy"])]
print("cpu / numpy: " + ", ".join(f"{r:.1f} x" for r in speedup))
numpy_rate, cpu_rate = dict(zip(batch_sizes, rates["numpy"])), dict(zip(batch_sizes, rates["cpu"]))
report("cpu is over 2 x numpy at batch 128 and over 3 x at 1024",
       cpu_rate[128] > 2 * numpy_rate[128] and cpu_rate[1024] > 3 * numpy_rate[1024])
report("cpu at batch 128 is over 5 x batch 1 (fixed costs per step)",
       cpu_rate[128] > 5 * cpu_rate[1])
report("the cpu backend's lead grows with the batch", speedup[0] < speedup[2] < speedup[3])
report("the reference speeds up to batch 128, then slows",
       numpy_rate[128] > 2 * numpy_rate[1] and numpy_rate[1024] < numpy_rate[128])

# %% [markdown]
# Three things to read from the numbers:
#
# * **Batch 1 is slow on both backends.** Every step reads the whole readout and the encoder
#   indices (about 0.6 MB) and pays fixed costs (Python calls, the optimiser over 7,841
#   parameters) for a single sample. The cpu backend also starts three parallel regions per
#   step at batch 1 (below four samples the encoder, the readout and its backward run
#   separately; from four on, the fused forward and the backward are two), and each waits
#   for its slowest thread: on a machine where another program keeps a core busy, that wait
#   alone can cost milliseconds, and NumPy may then win at batch 1.
# * **The reference gets slower past batch 128.** `x[:, idx]` materialises a
#   (B, 7840, 7) array: 225 MB at batch 1024, far beyond any cache.
# * **The Numba kernels level off past batch 128, and may dip at 1024.** Up to there, each
#   step's fixed costs are shared by more samples. A training step, though, keeps the whole
#   batch's activity for its backward: 3.8 MiB at batch 128 but 30.6 MiB at 1024 (section 4),
#   more than the caches hold. They still pull further ahead of the reference, whose
#   (B, 7840, 7) gather grows with the batch.
#
# ## 6. What the roofline says
#
# A roofline bounds the speed of a computation by the machine's two limits: arithmetic
# (peak FLOP/s) and memory traffic (bytes/s). To use it we need the minimum work per training
# sample. Count it by hand, per sample, for $n$ units, $k$ inputs per unit, $n_\text{out}$
# outputs:
#
# | step | operations |
# |---|---|
# | gather-sums $m_j = \sum_t x_{idx_{jt}}$ | $n k$ adds |
# | centring $m_j - \bar m$ and ReLU | $2n$ |
# | modulation $h_j c_j$ | $n$ multiplies |
# | readout $z = s\,(h \odot c) W^\top$ | $2 n\, n_\text{out}$ (multiply-adds) |
# | backward $g = dz\, W$ | $2 n\, n_\text{out}$ |
# | $dc_j = s \sum_b g_{bj} h_{bj}$ | $2n$ |
#
# (the softmax, $O(n_\text{out})$, and the optimiser, $O(n / B)$ per sample, are negligible).

# %%
by_hand = {
    "gather-sums": n * k,
    "centring and ReLU": 2 * n,
    "modulation": n,
    "readout forward": 2 * n * n_out,
    "backward g = dz W": 2 * n * n_out,
    "dc = s sum_b g h": 2 * n,
}
flops = sum(by_hand.values())
for name, count in by_hand.items():
    print(f"{name:>20}: {count:>8,}")
print(f"{'total':>20}: {flops:>8,} flops per training sample")
assert flops == bench.training_flops_per_sample(config) == 407_680

# %% [markdown]
# The minimum memory traffic per sample: its 784 float32 inputs and its label (8 bytes),
# plus a share of what every step must read once, whatever its batch size: the encoder
# indices ($4nk$ bytes), the readout ($4 n\, n_\text{out}$) and the context, read and written
# ($2 \cdot 4n$), divided by the batch size $B$. The **arithmetic intensity** is the ratio
# flops / bytes:

# %%
def bytes_by_hand(B):
    return 4 * n_in + 8 + (4 * n * k + 4 * n * n_out + 2 * 4 * n) / B


for B in batch_sizes:
    assert bytes_by_hand(B) == bench.training_bytes_per_sample(config, B)
    print(f"batch {B:>4}: {bytes_by_hand(B):>9,.0f} bytes per sample, "
          f"intensity {flops / bytes_by_hand(B):6.1f} flops/byte")
shared_share = {B: 1 - (4 * n_in + 8) / bytes_by_hand(B) for B in batch_sizes}
print(f"share of the bytes read once per step and split over the batch: batch 1 "
      f"{shared_share[1]:.1%}, batch 1024 {shared_share[1024]:.1%}")
assert shared_share[1] > 0.99 and shared_share[1024] < 0.2  # batching amortises them

# %% [markdown]
# Now the machine's limits, measured here with every thread: a float32 matrix product through
# BLAS (the best arithmetic rate NumPy can reach) and a parallel streaming sum over a large
# array (read bandwidth), as `nmnp.bench.measure_peaks` does (`python -m nmnp.bench` runs
# the full benchmark). The training rates above are each the fastest of ten steps, so the
# peaks we hold them against are the fastest of their repeats too: on a shared machine a
# median peak measured in a slow minute could otherwise sit below a rate measured in a quick
# one. Both are measured rates, not the hardware's ceiling (cores x vector width x
# fused multiply-add units x clock): BLAS reaches only part of that on a 512 x 512 product,
# and a hand-written kernel that keeps its operands in registers can beat it, so a fraction
# above 100% below means "faster than NumPy's matrix product", not an error in the count.
# The roofline limit at batch $B$ is
#
# $$ \text{samples/s} \le \min\Big(\frac{\text{peak FLOP/s}}{\text{flops per sample}},\;
#    \frac{\text{bandwidth}}{\text{bytes per sample}(B)}\Big). $$
#
# The two terms are equal when the arithmetic intensity equals the **machine balance**,
# peak FLOP/s divided by bandwidth (the ridge point of the roofline plot below): work of
# lower intensity is memory-bound, of higher intensity compute-bound.

# %%
peaks = bench.measure_peaks(repeats=3, size=512)
peak_flops, bandwidth = peaks["sgemm_gflops_best"] * 1e9, peaks["stream_gbs_best"] * 1e9
print(f"measured (fastest of 3): sgemm {peak_flops / 1e9:.1f} GFLOP/s, streaming read "
      f"{bandwidth / 1e9:.1f} GB/s; machine balance {peak_flops / bandwidth:.1f} flops/byte")
compute_limit = peak_flops / flops
memory_limit = {B: bandwidth / bytes_by_hand(B) for B in batch_sizes}
roofline = {B: min(compute_limit, memory_limit[B]) for B in batch_sizes}
fraction = {B: cpu_rate[B] / roofline[B] for B in batch_sizes}
for B in batch_sizes:
    bound = "memory" if memory_limit[B] < compute_limit else "compute"
    print(f"batch {B:>4}: limit {roofline[B]:>9,.0f} samples/s ({bound}-bound); cpu backend "
          f"{cpu_rate[B]:>8,.0f}/s = {fraction[B]:6.1%} of it")
assert peak_flops > 0 and bandwidth > 0
assert all(0 < f < np.inf for f in fraction.values())
# Batch 1 (0.7 flops/byte) sits near the ridge point of a typical machine, where memory
# traffic and arithmetic take about equally long; whichever is larger sets the limit. The
# two limits are measured rates, so which one wins depends on the machine.
report("batch 1 is near the ridge point (memory limit under 3 x the compute limit)",
       memory_limit[1] < 3 * compute_limit)
report("from batch 32 on, arithmetic is the limit", memory_limit[32] > compute_limit)

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11.5, 4))
for backend, marker in (("numpy", "s-"), ("cpu", "o-")):
    ax0.plot(batch_sizes, rates[backend], marker, label=f"{backend} backend")
ax0.plot(batch_sizes, [roofline[B] for B in batch_sizes], "k--", label="roofline limit")
ax0.set_xscale("log", base=2)
ax0.set_yscale("log")
ax0.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
ax0.set_xlabel("batch size")
ax0.set_ylabel("training samples/s")
ax0.set_title(f"FlyNet training speed ({threads} threads)")
ax0.legend(fontsize=8)
ax0.grid(alpha=0.3)

intensity = np.logspace(-1.5, 2.5, 200)
ax1.plot(intensity, np.minimum(peak_flops, bandwidth * intensity) / 1e9, "k-", label="roofline")
for backend, marker in (("numpy", "s"), ("cpu", "o")):
    ax1.plot([flops / bytes_by_hand(B) for B in batch_sizes],
             [r * flops / 1e9 for r in rates[backend]], marker, label=f"{backend} backend")
for B in batch_sizes:
    ax1.annotate(f"B={B}", (flops / bytes_by_hand(B), cpu_rate[B] * flops / 1e9),
                 textcoords="offset points", xytext=(4, 4), fontsize=7)
ax1.set_xscale("log")
ax1.set_yscale("log")
ax1.set_xlabel("arithmetic intensity (flops/byte)")
ax1.set_ylabel("GFLOP/s")
ax1.set_title("roofline")
ax1.legend(fontsize=8)
ax1.grid(alpha=0.3, which="both")
plt.show()

# %% [markdown]
# From batch 32 on, training is compute-bound on paper. On the machine these notes were
# written on, the cpu backend reached under half of the limit; the figures vary from run to
# run on a shared machine, and where a quick minute for the training steps meets a slow one
# for the sgemm probe, the fraction can pass 100%. Where do the flops go?

# %%
multiply_adds = by_hand["readout forward"] + by_hand["backward g = dz W"]
print(f"multiply-adds in the readout and its backward: {multiply_adds / flops:.0%} of the flops")
print(f"the training step writes and re-reads the activity: {net.encoded_nbytes(128) / 2**20:.1f} "
      f"MiB per step at batch 128, {net.encoded_nbytes(1) / 1024:.1f} KiB per sample")
assert 0.75 < multiply_adds / flops < 0.8

# %% [markdown]
# * **The peak is a matrix product**, the most favourable work there is: every loaded value
#   feeds many fused multiply-adds in blocked, cache-sized tiles. Here three quarters of the
#   flops are multiply-adds too, but in short sums (over 10 outputs, or over the batch), and
#   the rest are adds through an index table.
# * **The kernels move more than the minimum.** The training step writes the encoder
#   activity and reads it back in the backward (printed above; the minimum traffic counts
#   only the inputs), the encoder's row loads come from the level-2 cache, and the
#   per-sample means, the transposes, the softmax and the optimiser all run too.
# * **Fixed costs per step** (parallel regions, Python calls) matter at small batches, which
#   is also where memory traffic counts: batch 1 must read the whole readout and the encoder
#   indices for a single sample.
#
# The roofline also says what would *not* help: at batch 128 and beyond, memory traffic is
# far from its limit, so shrinking the data would gain little; the gains are in the
# arithmetic, which is what a GPU offers in bulk ([tutorial 6](06_gpu_path.ipynb)).
#
# ## Summary
#
# * A Python loop, per-sample NumPy, batched NumPy and Numba compute the same encoder; each
#   was checked against the reference before it was timed.
# * Transposing the batch turns $k$ scattered loads per sample into $k$ contiguous row loads
#   per unit; the per-sample mean is a dot product with the per-input counts; and the fused
#   kernels use each unit's activity while it is in cache: inference never writes $h$ out,
#   and training writes it once, for the backward to read once.
# * The work per training sample is 407,680 flops; measured against this machine's peaks,
#   the roofline shows where the time goes and where it does not.

# %%
elapsed = time.perf_counter() - notebook_start
print(f"notebook ran in {elapsed:.1f} s")
