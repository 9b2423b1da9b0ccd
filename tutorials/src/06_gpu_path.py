# Source of tutorials/06_gpu_path.ipynb; rebuild with `python tutorials/build.py 06`.

# %% [markdown]
# # Tutorial 6: The GPU path
#
# nmnp's third backend, `"cuda"`, runs the same mathematics as the NumPy reference and the
# Numba CPU kernels ([tutorial 5](05_making_it_fast.ipynb)) as numba.cuda kernels on an
# NVIDIA GPU. This notebook explains how those kernels are organised:
#
# 1. how work maps onto a grid of thread blocks, and why every kernel is correct for any
#    grid;
# 2. how sums across threads are made race-free without atomics on data, including one
#    shared-memory reduction;
# 3. the kernels against the NumPy reference at sizes that straddle block boundaries;
# 4. a training step in four kernel launches, with the task's data resident on the device
#    for all its epochs, trained side by side with the cpu backend;
# 5. what changes on a real GPU.
#
# **No GPU needed.** Without one, the first cell switches on Numba's CUDA simulator, which
# runs every CUDA thread as Python code on the CPU: correct results, very slowly. So the
# shapes here are tiny, and no time measured here says anything about GPU speed. The
# backend needs the numba-cuda package (`pip install ".[cuda]"` in a clone of nmnp).

# %%
import os
import shutil
import sys

# Numba reads NUMBA_ENABLE_CUDASIM once, when it is first imported, so decide before
# importing numba or nmnp. No NVIDIA driver tool on the PATH: use the simulator. A value
# already set in the environment wins either way.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
assert "numba" not in sys.modules, "restart the kernel: run this cell before importing numba"
print("NUMBA_ENABLE_CUDASIM =", os.environ.get("NUMBA_ENABLE_CUDASIM", "(not set: a real GPU)"))

# %%
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")

import matplotlib.pyplot as plt
import numba
import numpy as np
from numba import cuda

from nmnp import ModulatedNetwork, NetworkConfig
from nmnp.data import load_dataset
from nmnp.kernels import KERNELS, get_backend
from nmnp.train import TrainSettings, train_task

notebook_start = time.perf_counter()
K = get_backend("cuda")  # raises BackendError, saying what is missing, if it cannot run
reference = get_backend("numpy")
SIMULATOR = K.SIMULATOR
print(f"cuda backend on: {K.device_name()}")
print(f"launch configuration: {K.current_config()}")
assert SIMULATOR == (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1")
assert all(callable(getattr(K, name)) for name in KERNELS)  # the same nine kernels


def max_rel_err(a, b):
    """Largest difference, relative to the largest value of b."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))

# %% [markdown]
# Each of the nine functions takes and returns host NumPy arrays, like its twins, so the
# same tests run on every backend. Inside, the inputs are copied to the device, one or more
# kernels run, and the results are copied back. Training does not go through these
# per-batch functions: it keeps the data on the device (section 4).
#
# ## 1. Threads, blocks and grid-stride loops
#
# A CUDA kernel runs as a **grid** of **blocks**, each block a group of threads
# (`threads_per_block`: 8 in the simulator configuration above, typically 128 on a GPU).
# A thread finds its global index from its block and its place in it,
#
# $$ i = \texttt{blockIdx.x} \cdot \texttt{blockDim.x} + \texttt{threadIdx.x}
#    \quad (\texttt{cuda.grid(1)}), $$
#
# and the total number of threads launched is `cuda.gridsize(1)`. Every nmnp kernel walks its
# items in a **grid-stride loop**,
#
# ```python
# for b in range(cuda.grid(1), n_items, cuda.gridsize(1)):
#     ...  # item b
# ```
#
# so it is correct for any grid: one thread per item, or fewer threads that each take every
# `gridsize`-th item. That is how the configuration can cap the grid (`max_blocks`) without
# changing any result.
#
# The fused forward, `logit_partials`, uses a 2-D grid: along x, **threads cover samples**;
# along y, **blocks cover chunks of encoder units**. A thread keeps its sample's 10 logits
# in registers while it walks the units of its chunk: for each unit, $k$ reads of the
# batch-innermost `xT` (neighbouring threads read neighbouring samples of the same row: one
# coalesced memory transaction per warp of 32 threads), then 10 multiply-adds with the
# weights $c_j W_{oj}$, which are the same address for every thread of the warp (a
# broadcast). It writes one partial logit per (chunk, output, sample); a second kernel sums
# the chunks.
#
# A small kernel with exactly those loops records which thread computes each
# (unit chunk, sample) pair, on a deliberately small grid:

# %%
@cuda.jit
def who_computes(owner, writes):
    """owner[c, b] = global id of the thread that handles unit chunk c for sample b."""
    for c in range(cuda.blockIdx.y, owner.shape[0], cuda.gridDim.y):  # blocks: chunks
        for b in range(cuda.grid(1), owner.shape[1], cuda.gridsize(1)):  # threads: samples
            block = cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x
            owner[c, b] = block * cuda.blockDim.x + cuda.threadIdx.x
            writes[c, b] += 1


n_chunks, n_samples = 6, 20
grid, threads = (2, 3), 4  # 2 x 3 blocks of 4 threads: 24 threads for 120 pairs
owner = cuda.to_device(np.full((n_chunks, n_samples), -1, dtype=np.int32))
writes = cuda.to_device(np.zeros((n_chunks, n_samples), dtype=np.int32))
who_computes[grid, threads](owner, writes)
owner, writes = owner.copy_to_host(), writes.copy_to_host()
print(f"{owner.size} (chunk, sample) pairs, {grid[0] * grid[1] * threads} threads, "
      f"{len(np.unique(owner))} of them busy")
assert (writes == 1).all()  # every pair computed, each by exactly one thread
assert len(np.unique(owner)) == grid[0] * grid[1] * threads  # and every thread has work
assert set(zip(*np.nonzero(owner == 0))) == {(c, b) for c in (0, 3) for b in (0, 8, 16)}

fig, ax = plt.subplots(figsize=(9, 2.8), layout="constrained")
ax.imshow(owner // threads, cmap="tab10", vmin=0, vmax=9, aspect="auto")  # colour: block
for (c, b), tid in np.ndenumerate(owner):
    ax.text(b, c, str(tid), ha="center", va="center", fontsize=7)
ax.set_xlabel("sample b (threads, x)")
ax.set_ylabel("unit chunk c (blocks, y)")
ax.set_xticks(range(n_samples))
ax.set_title("thread computing each partial logit (colour: its block); grid (2, 3) of "
             "4-thread blocks", fontsize=9)
plt.show()

# %% [markdown]
# Thread 0 handles samples 0 and 8 and 16 of chunks 0 and 3: the x loop strides by the 8
# threads along x, the y loop by the 3 blocks along y. On a GPU the default grid is large
# enough that each thread gets one sample of one chunk.
#
# ## 2. Race-free reductions
#
# Two sums cross threads in a training step:
#
# $$ dc_j = s \sum_b g_{bj}\, h_{bj} \quad\text{(over the batch)}, \qquad
#    ds = \sum_j c_j \sum_b g_{bj}\, h_{bj} \quad\text{(over units and batch)}. $$
#
# If many threads added into the same $dc_j$ at once, updates would be lost (a race).
# Atomic additions would fix that but make the result depend on the order in which threads
# happen to arrive. nmnp instead gives every partial sum **one writer**:
#
# * `context_grad_from_activity` (and its twin `context_grad_partials`, which recomputes
#   the activity instead of reading it): thread = unit $j$, block row = a tile of samples;
#   it writes `gh_part[tile, j]`. The tiles are then summed **in a fixed order**, in
#   float64, by the next kernel: a second pass, deterministic run to run.
# * `optimizer_step`: thread = unit, and $ds$ is summed in two levels: a **shared-memory
#   tree** inside each block, then the per-block sums, added in block order by whichever
#   block finishes last, elected with an atomic counter. No kernel adds data with atomics;
#   the step's other atomic operations read the last block's inputs past the cache and set
#   or test the error flag.
#
# Shared memory is a small scratchpad that the threads of one block share. The tree halves
# the number of active threads at each level, with a barrier (`cuda.syncthreads()`) between
# levels so that no thread reads a value before it is written:

# %%
TPB = 8  # threads per block: a power of two, so the tree halves evenly


@cuda.jit
def block_sums(values, out):
    """out[block] = sum of this block's TPB values: a shared-memory tree, log2(TPB) levels."""
    shared = cuda.shared.array(TPB, numba.float64)
    tid = cuda.threadIdx.x
    i = cuda.grid(1)
    shared[tid] = values[i] if i < values.shape[0] else 0.0
    cuda.syncthreads()
    half = TPB // 2
    while half > 0:
        if tid < half:
            shared[tid] += shared[tid + half]  # reads a slot no thread writes at this level
        cuda.syncthreads()
        half //= 2
    if tid == 0:
        out[cuda.blockIdx.x] = shared[0]


values = np.random.default_rng(0).normal(size=37)
n_blocks = -(-values.size // TPB)  # 5 blocks; the last one is partly empty
partial_dev = cuda.device_array(n_blocks, dtype=np.float64)
block_sums[n_blocks, TPB](cuda.to_device(values), partial_dev)
partial = partial_dev.copy_to_host()
total = partial.sum()  # second level, in block order
print(f"{values.size} values in {n_blocks} blocks of {TPB}: block sums {np.round(partial, 3)}, "
      f"total {total:.6f} (NumPy {values.sum():.6f})")
assert abs(total - values.sum()) < 1e-12
assert np.allclose(partial, [values[b * TPB:(b + 1) * TPB].sum() for b in range(n_blocks)])

# %% [markdown]
# With one writer per partial and fixed summation orders, the same inputs give the same
# bits on every run. A different launch configuration changes the order of the additions,
# so it may change the last bits, but not more than float32 rounding:

# %%
rng = np.random.default_rng(1)
B, n_in, n, k, n_out = 9, 20, 33, 5, 4  # 9 = 8 + 1 samples, 33 = 4 x 8 + 1 units
x = rng.normal(size=(B, n_in)).astype(np.float32)
idx = np.sort(np.argsort(rng.random((n, n_in)), axis=1)[:, :k], axis=1).astype(np.int32)
c = rng.normal(size=n).astype(np.float32)
s = 0.7
W = rng.uniform(-1, 1, size=(n_out, n)).astype(np.float32)
dy = rng.normal(size=(B, n_out)).astype(np.float32)

dc1, ds1 = K.context_grads(x, idx, c, s, W, dy)
dc2, ds2 = K.context_grads(x, idx, c, s, W, dy)
with K.launch_config(threads_per_block=2, tile=2, max_blocks=1):
    dc3, ds3 = K.context_grads(x, idx, c, s, W, dy)
print(f"same configuration twice: bitwise equal {np.array_equal(dc1, dc2) and ds1 == ds2}; "
      f"another configuration: max relative difference {max_rel_err(dc3, dc1):.1e}")
assert np.array_equal(dc1, dc2) and ds1 == ds2  # deterministic
assert max_rel_err(dc3, dc1) < 1e-5 and abs(ds3 - ds1) < 1e-5 * abs(ds1)

# %% [markdown]
# ## 3. Every kernel against the reference
#
# The same tiny problem through all nine kernels, under two launch configurations: the
# current one, and one with 4-thread blocks and a single block per grid dimension, so every
# loop strides. Sizes of 9 samples and 33 units end one element past a block boundary,
# where indexing mistakes show up.

# %%
h = reference.encoder_forward(x, idx)
dh = rng.normal(size=h.shape).astype(np.float32)
gains = rng.normal(size=(3, n)).astype(np.float32)
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
worst = {}
for label, settings in [("current", {}),
                        ("4 threads, 1 block", dict(threads_per_block=4, max_blocks=1))]:
    with K.launch_config(**settings):
        for name, args in arguments.items():
            gpu, ref = getattr(K, name)(*args), getattr(reference, name)(*args)
            gpu, ref = (gpu, ref) if isinstance(ref, tuple) else ((gpu,), (ref,))
            err = max(max_rel_err(a, b) for a, b in zip(gpu, ref))
            worst[name] = max(worst.get(name, 0.0), err)
            assert err < 1e-5, (label, name, err)
        for name, args in class_ids.items():
            gpu, ref = getattr(K, name)(*args), getattr(reference, name)(*args)
            assert (gpu == K.task_logits(*args).argmax(axis=2)).all(), (label, name)
            worst[name] = min(worst.get(name, 1.0), np.mean(gpu == ref))
for name, err in worst.items():
    if name in class_ids:
        print(f"{name:>22}: {err:.0%} of the class ids equal the reference's")
    else:
        print(f"{name:>22}: max relative difference from the reference {err:.1e}")

# %% [markdown]
# ## 4. Training with the data on the device
#
# `train_task` hands a network on the cuda backend to `train_task_resident`
# (`nmnp.kernels.cuda_training`), which runs the whole loop on the device:
#
# * **once per task**: the inputs, labels and initial context go up;
# * **once per epoch**: the shuffled order goes up (N integers), one kernel (`stage_batch`)
#   lays the epoch's samples out batch-innermost in that order, so that every mini-batch is
#   a contiguous range of columns of `xT`, and at the end of the epoch the per-sample losses
#   and hits and a status word come back;
# * **per step: four launches, no transfer, no waiting**:
#   1. `logit_partials`: fused encoder and modulated readout (section 1), which also
#      stores the batch's activity unit-major, `hT[j, b]`, for the backward;
#   2. `loss_and_dlogits`: sums the chunks (one thread per sample and output), then softmax
#      cross-entropy and $\partial L/\partial z$ (one thread per sample);
#   3. `context_grad_from_activity`: readout backward on the stored activity, per-tile
#      partial $dc$ (above a memory cap, 1 GiB, `context_grad_partials` recomputes the
#      activity from the inputs instead, with the same sums in the same order);
#   4. `optimizer_step`: sums the tiles, updates the gains (one thread per unit), reduces
#      $ds$ (section 2) and updates the strength.
#
# The host only queues launches; nothing forces it to wait for the device until the epoch
# ends. A step that meets a non-finite loss or gradient sets the status word, and every later
# kernel returns at once, so the last good parameters survive (the same rule as the CPU
# loop).
#
# A small task to train: four well-separated Fashion-MNIST classes from the shipped subset,
# each image averaged down to 7 x 7 pixels, and a network of 48 units.

# %%
ds = load_dataset()
classes = np.array([0, 1, 7, 8])
print("classes:", ", ".join(ds.classes[i] for i in classes))


def small_images(images, labels, count):
    """The first `count` images of `classes`, averaged to 7 x 7, labels renumbered 0..3."""
    keep = np.flatnonzero(np.isin(labels, classes))[:count]
    x = images[keep].astype(np.float32).reshape(-1, 7, 4, 7, 4).mean(axis=(2, 4)) / 255
    return x.reshape(len(keep), 49), np.searchsorted(classes, labels[keep])


x_train, y_train = small_images(ds.x_train, ds.y_train, 240)
x_test, y_test = small_images(ds.x_test, ds.y_test, 200)
mu, sigma = x_train.mean(), x_train.std()
x_train, x_test = (x_train - mu) / sigma, (x_test - mu) / sigma
config = NetworkConfig(n_inputs=49, n_units=48, inputs_per_unit=5, n_outputs=4, seed=0)
settings = TrainSettings(epochs=2, batch_size=24, lr=0.03, seed=0)
steps = settings.epochs * -(-len(x_train) // settings.batch_size)
print(f"train {x_train.shape}, test {x_test.shape}; {steps} steps of {settings.batch_size}")
assert x_train.shape == (240, 49) and set(np.unique(y_train)) == {0, 1, 2, 3}


def train(backend):
    net = ModulatedNetwork(config, backend)
    task = net.add_task()
    report = train_task(net, task, x_train, y_train, settings, progress=False)
    return net, task, report

# %% [markdown]
# Train on the cuda backend, counting kernel launches (`K.launch_counts`, kept by the
# backend) and every copy between host and device (`K.record_transfers()` lists the shape
# of each array copied up or down inside its `with` block):

# %%
launches_before = dict(K.launch_counts)
with K.record_transfers() as transfers:
    gpu_net, gpu_task, gpu_report = train(K.NAME)
launches = {name: count - launches_before.get(name, 0)
            for name, count in K.launch_counts.items()
            if count != launches_before.get(name, 0)}
print(f"kernel launches for {steps} steps over {settings.epochs} epochs: {launches}")
print(f"uploads of the inputs {x_train.shape}: {transfers['up'].count(x_train.shape)}; "
      f"of arrays of shape ({len(x_train)},): {transfers['up'].count((len(x_train),))} "
      f"(the labels, then one order per epoch)")
print(f"downloads: {len(transfers['down'])}: {transfers['down']}")
per_step = ("logit_partials", "loss_and_dlogits", "context_grad_from_activity", "optimizer_step")
assert all(launches[name] == steps for name in per_step)
assert launches == {**{name: steps for name in per_step}, "stage_batch": settings.epochs}
assert transfers["up"].count(x_train.shape) == 1  # the inputs go up once, for all epochs
assert transfers["up"].count((len(x_train),)) == settings.epochs + 1  # orders + labels
assert len(transfers["down"]) == 3 * settings.epochs + 3  # metrics per epoch, context at the end

# %% [markdown]
# Four launches per step and one per epoch, whatever the batch size or the width of the
# network. The inputs crossed once; per epoch only the order went up and three small arrays
# came back (status, per-sample losses, hits); at the end, the status and the learned gains
# and strength.
#
# The same training on the cpu backend (after one untimed run, so that loading its compiled
# kernels is not timed) should give the same losses, accuracies and context, up to float32
# rounding, since both backends draw the same shuffles and apply the same RMSprop:

# %%
train("cpu")  # warm-up
cpu_net, cpu_task, cpu_report = train("cpu")
gpu_acc = gpu_net.evaluate(x_test, y_test, gpu_task)
cpu_acc = cpu_net.evaluate(x_test, y_test, cpu_task)
gpu_gains, cpu_gains = gpu_net.tasks[gpu_task].gains, cpu_net.tasks[cpu_task].gains
print("epoch losses   cuda", np.round(gpu_report.epoch_losses, 5), " cpu",
      np.round(cpu_report.epoch_losses, 5))
print(f"test accuracy  cuda {gpu_acc:.3f}  cpu {cpu_acc:.3f}  (chance 0.25)")
print(f"learned gains: max relative difference {max_rel_err(gpu_gains, cpu_gains):.1e}")
assert abs(gpu_acc - cpu_acc) <= 0.01 and cpu_acc > 0.8
np.testing.assert_allclose(gpu_report.epoch_losses, cpu_report.epoch_losses, rtol=1e-4)
np.testing.assert_allclose(gpu_report.epoch_accuracies, cpu_report.epoch_accuracies, atol=0.01)
assert max_rel_err(gpu_gains, cpu_gains) < 1e-4
assert gpu_report.epoch_losses[-1] < 0.8 * gpu_report.epoch_losses[0]  # it learned

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
ax0.plot(cpu_gains, gpu_gains, ".", ms=5)
lim = np.abs(cpu_gains).max() * 1.1
ax0.plot([-lim, lim], [-lim, lim], "k:", lw=1)
ax0.set_xlabel("gain c_j learned on the cpu backend")
ax0.set_ylabel("on the cuda backend")
ax0.set_title("the same context, two backends")
differences = np.abs(gpu_gains - cpu_gains) / np.abs(cpu_gains).max()
ax1.hist(np.log10(np.maximum(differences, 1e-12)), bins=30)
ax1.axvline(np.log10(np.finfo(np.float32).eps), color="k", ls=":", label="float32 epsilon")
ax1.set_xlabel("log10 |cuda - cpu| / max |c| per gain (exact: -12)")
ax1.set_ylabel("gains")
ax1.set_title("rounding differences after training")
ax1.legend(fontsize=8)
plt.show()

# %%
print(f"training time: cuda {gpu_report.seconds:.2f} s, cpu {cpu_report.seconds:.3f} s"
      + (" (the simulator runs every GPU thread as Python code: no GPU figure)" if SIMULATOR
         else ""))

# %% [markdown]
# ## 5. What changes on a real GPU
#
# On a machine with an NVIDIA GPU (and no `NUMBA_ENABLE_CUDASIM` set), the first cell leaves
# the simulator off, and the same notebook runs the same kernels on the device. What
# changes:
#
# * **Speed.** The simulator says nothing about it; the time above measures Python running
#   each thread one statement at a time. Measure on the GPU itself: `python -m nmnp.bench
#   --backends cuda` for the per-batch functions, and
#   `nmnp.kernels.cuda.benchmark_training()` for resident training steps, which reports
#   upload, per-epoch and per-step times separately. The launch configuration grows from
#   the simulator's small blocks and capped grid to blocks of 128 threads and a grid as large
#   as the work.
# * **Float reassociation.** Partial sums over chunks, tiles and blocks add in a different
#   order from the CPU's loops, and the GPU may contract a multiply and an add into one
#   fused instruction with a single rounding. Results agree with the reference within
#   float32 tolerance, never bitwise, exactly as the asserts above allow; they are still the
#   same from run to run, since no data is summed with atomics.
# * **Launch overhead.** Each launch costs the host tens of microseconds in numba-cuda,
#   and the four launches of a step do not shrink with the batch: at small batches a step
#   costs about its launches, at large ones its arithmetic. Because nothing is copied and
#   nothing waits within an epoch, the host can queue steps ahead of the device. The bench
#   prints both: the time to queue a step and the time to run it.
# * **Registers and local memory.** A thread's accumulators stay in registers only when
#   every index into them is known at compile time. The forward is therefore compiled
#   for each shape it meets, one task in the training step and up to four tasks of ten
#   outputs per pass in evaluation: its loops over tasks and outputs have fixed trip counts
#   and unroll. Indexed at run time, the accumulators would live in local memory: correct,
#   slower (2 to 2.7 times for 36 tasks on an H100: `scripts/cuda_forward_ab.py`). The
#   simulator cannot show the difference.
# * **Memory for speed.** Recomputing the activity in the backward costs k scattered reads
#   per unit and sample; on a GPU, storing it (n_units x batch, 32 MB for FlyNet at batch
#   1,024) and reading it back is much cheaper. Measured on an H100, these two changes and
#   the loss kernel's split took a FlyNet training step at batch 1,024 from about 780 to
#   about 400 microseconds (the README has the bench's figures, and `results/` its reports).
# * **Transfers.** Host and device memory are separate (copies cross the PCIe or NVLink
#   bus), while under the simulator a "transfer" is a copy in the same memory. The
#   per-batch functions of section 3 copy their inputs and results every call, which is why
#   training keeps the data resident. Evaluation (`net.evaluate`, `evaluate_tasks`) goes
#   through `task_predictions` (`nmnp.kernels.cuda_inference`): the set goes up once, the
#   argmax over the competing classes runs on the device (`predict_classes`), and only the
#   class ids come back.
# * **What the simulator cannot check.** It runs one block at a time, has no warps, and
#   does not model memory coalescing, the hardware's caches, register pressure or real
#   concurrency, so a missing barrier or a race can pass here. Nor can it tell whether a
#   kernel is valid numba.cuda code for a GPU: the test suite checks that separately by
#   compiling every kernel to PTX for a real GPU architecture (no GPU needed, only the CUDA
#   compiler libraries), and the cuda tests run unchanged on a GPU.
#
# ## Summary
#
# * Grid-stride loops make every kernel correct for any grid; threads cover samples (or
#   units) and blocks cover unit chunks (or batch tiles).
# * Every sum across threads has one writer per partial and a fixed-order second pass: no
#   data atomics, deterministic results; one shared-memory tree reduces $ds$ inside a block.
# * A training step is four launches with no transfer; the data crosses once per task.
# * cuda and cpu backends learn the same context up to float32 rounding.

# %%
elapsed = time.perf_counter() - notebook_start
print(f"notebook ran in {elapsed:.1f} s")
