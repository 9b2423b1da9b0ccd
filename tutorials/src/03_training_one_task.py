# Source of tutorials/03_training_one_task.ipynb; rebuild with `python tutorials/build.py 03`.

# %% [markdown]
# # Tutorial 3: Training one task
#
# [Tutorial 2](02_neuromodulation.ipynb) derived the gradients of a context $(c, s)$. Now we
# train one: FlyNet on the shipped Fashion-MNIST subset, learning only its 7,841 context
# numbers while all 133,280 random weights (54,880 encoder connections, 78,400 readout
# weights) stay fixed. On the way you will write out
#
# 1. the loss, softmax cross-entropy, in its numerically stable form;
# 2. the optimiser, RMSprop, in a few lines, and compare it with `nmnp.optim.RMSprop`;
# 3. the training loop, and check that it reproduces `nmnp.train.train_task` exactly;
#
# and plot the learning curves.

# %%
import time
import warnings

# nmnp's progress bars (tqdm) warn inside Jupyter when ipywidgets is missing; they are off here.
warnings.filterwarnings("ignore", message="IProgress not found")

import matplotlib.pyplot as plt
import numpy as np

import nmnp
from nmnp.data import load_dataset, normalize, pixel_stats
from nmnp.gradcheck import check_gradient
from nmnp.initializers import SHUFFLE, rng_for
from nmnp.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from nmnp.optim import RMSprop
from nmnp.system import set_threads
from nmnp.train import TrainSettings, train_task

notebook_start = time.perf_counter()
# Numba's kernels get the cores and BLAS one thread, so the two thread pools do not fight.
threads = set_threads(None)
print(f"Numba threads: {threads}")

# %% [markdown]
# ## 1. Softmax cross-entropy
#
# The network outputs one score (logit) $z_k$ per class. Softmax turns them into
# probabilities, and the loss of a batch is the mean negative log-probability of the true
# labels $y_b$:
#
# $$ p_{bk} = \frac{e^{z_{bk}}}{\sum_{k'} e^{z_{bk'}}}, \qquad
#    L = -\frac{1}{B} \sum_b \log p_{b, y_b}. $$
#
# Computed literally, $e^{z}$ overflows for $z \gtrsim 89$ in float32 (710 in float64) and the
# loss becomes NaN. Subtracting each row's maximum $M_b = \max_k z_{bk}$ changes nothing
# mathematically (it cancels in the ratio) and keeps every exponent $\le 0$:
#
# $$ \log p_{bk} = (z_{bk} - M_b) - \log \sum_{k'} e^{z_{bk'} - M_b}. $$

# %%
def cross_entropy_naive(z, y):
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -np.mean(np.log(p[np.arange(len(y)), y]))


def cross_entropy(z, y):
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.mean(log_p[np.arange(len(y)), y])


z_big = np.array([[1000.0, 0.0, -1000.0], [3.0, 1.0, 0.0]])
y_big = np.array([0, 1])
with np.errstate(over="ignore", invalid="ignore"):
    naive = cross_entropy_naive(z_big, y_big)
stable = cross_entropy(z_big, y_big)
print(f"naive: {naive}, stable: {stable:.6f}")
assert np.isnan(naive) and np.isfinite(stable)

rng = np.random.default_rng(0)
z = rng.normal(size=(8, 10)) * 3
y = rng.integers(0, 10, size=8)
nmnp_loss, loss_cache = softmax_cross_entropy_forward(z, y)
np.testing.assert_allclose(nmnp_loss, cross_entropy(z, y), rtol=1e-12)
np.testing.assert_allclose(softmax_cross_entropy_forward(z_big, y_big)[0], stable, rtol=1e-12)
# Equal logits mean a uniform guess over 10 classes: a loss of log 10 = 2.3026.
assert abs(cross_entropy(np.zeros((4, 10)), np.arange(4)) - np.log(10)) < 1e-12

# %% [markdown]
# The gradient with respect to the logits is the famous "prediction minus target", divided
# by the batch size because the loss is a mean:
#
# $$ \frac{\partial L}{\partial z_{bk}} = \frac{1}{B}\,\big(p_{bk} - [k = y_b]\big). $$
#
# Check it against nmnp's backward pass and against finite differences (tutorial 2):

# %%
p = np.exp(z - z.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
dz = (p - np.eye(10)[y]) / len(y)
np.testing.assert_allclose(softmax_cross_entropy_backward(1.0, loss_cache), dz, rtol=1e-10)
err = check_gradient(lambda z_: cross_entropy(z_, y), z.copy(), dz, np.array(1.0), name="z")
print(f"gradient of the loss: relative error {err:.1e} against central differences")
assert err < 1e-8

# %% [markdown]
# ## 2. RMSprop
#
# The authors train contexts with RMSprop at learning rate $\eta = 10^{-2}$. For every
# parameter element it keeps a running mean of squared gradients $v$ and divides each step
# by its root:
#
# $$ v_t = \alpha\, v_{t-1} + (1 - \alpha)\, g_t^2, \qquad
#    p_t = p_{t-1} - \eta\, \frac{g_t}{\sqrt{v_t} + \epsilon},
#    \qquad v_0 = 0,\ \alpha = 0.99,\ \epsilon = 10^{-8}. $$
#
# In place, on NumPy arrays:

# %%
def rmsprop_step(p, g, v, lr=0.01, alpha=0.99, eps=1e-8):
    """One RMSprop update of parameter p with gradient g; v is its running mean of g**2."""
    v *= alpha
    v += (1 - alpha) * (g * g)
    p -= lr * (g / (np.sqrt(v) + eps))


# Three steps of ours and of nmnp's on the same float32 parameters and gradients.
ours = {"gains": rng.normal(size=5).astype(np.float32), "strength": np.array([0.5], np.float32)}
theirs = {key: value.copy() for key, value in ours.items()}
state = {key: np.zeros_like(value) for key, value in ours.items()}
optimizer = RMSprop(theirs, lr=0.01)
first_step = None
for step in range(3):
    grads = {key: rng.normal(size=v.shape).astype(np.float32) for key, v in ours.items()}
    before = ours["gains"].copy()
    for key in ours:
        rmsprop_step(ours[key], grads[key], state[key])
    optimizer.step(grads)
    if step == 0:
        first_step = np.abs(ours["gains"] - before)
    for key in ours:
        assert np.array_equal(ours[key], theirs[key])  # bit for bit
print("three steps: our RMSprop and nmnp.optim.RMSprop agree bit for bit")
print("size of the first step of each gain:", np.round(first_step, 5))

# %% [markdown]
# With $v_0 = 0$ and no bias correction, the first step is $\eta\, g / \sqrt{(1-\alpha) g^2}
# = \eta / \sqrt{1 - \alpha} = 10\,\eta$ for every element, whatever the size of its
# gradient (as long as $|g| \gg \epsilon$):

# %%
np.testing.assert_allclose(first_step, 0.01 / np.sqrt(1 - 0.99), rtol=1e-3)

# %% [markdown]
# That scale-free step is why RMSprop suits contexts. A FlyNet task starts with gains of
# about $10^{-2}$ (drawn from $\mathcal{N}(0, 2/(n+1))$), and their gradients are tiny:

# %%
ds = load_dataset()
mean, std = pixel_stats(ds.x_train)
x_train, x_test = normalize(ds.x_train, mean, std), normalize(ds.x_test, mean, std)
y_train, y_test = ds.y_train, ds.y_test

net = nmnp.FlyNet(seed=0)
task = net.add_task("upright")
ctx = net.task(task)
initial_gains, initial_strength = ctx.gains.copy(), float(ctx.strength[0])
assert net.fixed_params == 133_280
loss0, grads0, _ = net.loss_and_grads(x_train[:512], y_train[:512], task)
median_gain, median_grad = np.median(np.abs(ctx.gains)), np.median(np.abs(grads0["gains"]))
print(f"initial loss {loss0:.4f} (log 10 = {np.log(10):.4f}); median |gain| {median_gain:.1e}, "
      f"median |gradient| {median_grad:.1e}")
# The initial logits are tiny, so the network starts as a uniform guess.
assert abs(loss0 - np.log(10)) < 0.01
# Plain gradient descent at lr 0.01 would move a gain by ~1e-6 per step, 1e4 times less than
# its size; RMSprop moves it by about lr.
assert 0.01 * median_grad < 1e-4 * median_gain

# %% [markdown]
# ## 3. The training loop
#
# One epoch shuffles the 6,000 training images, cuts them into mini-batches of 128, and for
# each batch computes the loss and the context's gradients and takes one RMSprop step. Only
# `ctx.gains` and `ctx.strength` change; `net.readout` and `net.encoder_indices` are
# read-only arrays.
#
# `net.loss_and_grads(x, y, task)` checks its inputs on every call;
# `net.loss_and_grads_batch` trusts inputs checked once beforehand and runs nmnp's fused
# kernels: one pass computes the encoder activity and the logits together, and keeps the
# activity (7840 values per sample) for the backward pass, which reads it once. The loop below
# uses the second, as `train_task` does, and draws its shuffles from the same seeded
# generator, so the two should agree exactly.

# %%
settings = TrainSettings(epochs=3, batch_size=128, lr=0.01, optimizer="rmsprop", seed=0)
xs, ys = net.check_inputs(x_train), net.check_labels(y_train, len(x_train))
n = len(xs)
params = ctx.params()  # {"gains": (7840,), "strength": (1,)}: the live arrays, updated in place
square_avg = {key: np.zeros_like(value) for key, value in params.items()}

step_losses, epoch_losses, test_accuracy = [], [], []
start = time.perf_counter()
for epoch in range(settings.epochs):
    order = rng_for(settings.seed, SHUFFLE, task, epoch).permutation(n)
    loss_sum = 0.0
    for first in range(0, n, settings.batch_size):
        batch = order[first : first + settings.batch_size]
        loss, grads, n_correct = net.loss_and_grads_batch(xs[batch], ys[batch], task, None)
        for key, value in params.items():
            rmsprop_step(value, grads[key], square_avg[key], lr=settings.lr)
        step_losses.append(loss)
        loss_sum += loss * len(batch)
    epoch_losses.append(loss_sum / n)
    test_accuracy.append(net.evaluate(x_test, y_test, task))
    print(f"epoch {epoch + 1}: mean training loss {epoch_losses[-1]:.4f}, "
          f"test accuracy {test_accuracy[-1]:.3f}")
print(f"{len(step_losses)} steps in {time.perf_counter() - start:.1f} s")

assert len(step_losses) == 3 * 47  # ceil(6000 / 128) = 47 steps per epoch
assert all(a > b for a, b in zip(epoch_losses, epoch_losses[1:]))  # the loss keeps falling
assert test_accuracy[0] > 0.7 and test_accuracy[-1] > 0.78  # chance is 0.1

# %% [markdown]
# The same training with nmnp's `train_task`, on a fresh network built from the same seed:

# %%
net2 = nmnp.FlyNet(seed=0)
task2 = net2.add_task("upright")
report = train_task(net2, task2, x_train, y_train, settings, progress=False)
print(f"train_task: {report.steps} steps, {report.samples} samples in {report.seconds:.1f} s "
      f"({report.samples_per_second:,.0f} samples/s); epoch losses "
      + ", ".join(f"{v:.4f}" for v in report.epoch_losses))
assert report.steps == len(step_losses) and report.samples == 3 * n
np.testing.assert_allclose(report.epoch_losses, epoch_losses, rtol=1e-12)
assert np.array_equal(net2.task(task2).gains, ctx.gains)
assert np.array_equal(net2.task(task2).strength, ctx.strength)
assert net2.evaluate(x_test, y_test, task2) == test_accuracy[-1]
print("identical contexts: train_task is the loop above")

# %% [markdown]
# ## 4. Learning curves

# %%
steps_per_epoch = -(-n // settings.batch_size)
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.6))
ax0.plot(np.arange(1, len(step_losses) + 1), step_losses, lw=0.8, alpha=0.6,
         label="mini-batch loss")
ax0.plot(np.arange(1, settings.epochs + 1) * steps_per_epoch, epoch_losses, "o-", color="C3",
         label="epoch mean")
ax0.axhline(np.log(10), color="gray", ls=":", label="uniform guess (log 10)")
ax0.set_xlabel("optimiser step")
ax0.set_ylabel("cross-entropy")
ax0.set_title("training loss")
ax0.legend(fontsize=8)
ax0.grid(alpha=0.3)
epochs = np.arange(1, settings.epochs + 1)
ax1.plot(epochs, report.epoch_accuracies, "o-", label="training (during the epoch)")
ax1.plot(epochs, test_accuracy, "s-", label="test (after the epoch)")
ax1.set_xticks(epochs)
ax1.set_xlabel("epoch")
ax1.set_ylabel("accuracy")
ax1.set_title("accuracy")
ax1.legend(fontsize=8)
ax1.grid(alpha=0.3)
plt.show()

# %% [markdown]
# The loss starts at $\log 10$ (a uniform guess) and falls fastest in the first few dozen
# steps, while RMSprop's oversized early steps move every gain by about $10\eta$. The
# accuracy keeps improving a little with each epoch; the authors' protocol trains 3 epochs
# per task.
#
# What was learned is small: 7,841 numbers, 31 kB in float32. Since only the products
# $s\,c_j$ matter (tutorial 2), compare the effective gains before and after training:

# %%
before, after = initial_strength * initial_gains, float(ctx.strength[0]) * ctx.gains
print(f"learned: {net.params_per_task:,} numbers = {net.bytes_per_task:,} bytes")
print(f"strength {initial_strength:+.3f} -> {float(ctx.strength[0]):+.3f}; typical |s c_j| "
      f"{np.median(np.abs(before)):.1e} -> {np.median(np.abs(after)):.1e}")
assert net.bytes_per_task == 7841 * 4
assert np.median(np.abs(after)) > 10 * np.median(np.abs(before))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.0))
for ax, values, title in [(axes[0], before, "initial"), (axes[1], after, "learned (3 epochs)")]:
    ax.hist(values, bins=80, color="C0" if title == "initial" else "C1")
    ax.set_title(f"{title} effective gains s·c_j")
    ax.set_xlabel("s·c_j")
axes[0].set_ylabel("units")
plt.show()

# %% [markdown]
# ## Summary
#
# * Stable cross-entropy subtracts each row's maximum; its gradient is $(p - \text{onehot})/B$.
# * RMSprop is three lines; its first step is $10\eta$ per element regardless of the gradient's
#   size, which suits tiny context gains.
# * `train_task` is nothing more than the loop above, and reaches about 0.8 test accuracy on
#   the shipped subset in 3 epochs, learning only a context.
#
# [Tutorial 4](04_continual_learning.ipynb) learns many tasks, one context each, and checks
# that none of them is forgotten.

# %%
elapsed = time.perf_counter() - notebook_start
print(f"notebook ran in {elapsed:.1f} s")
