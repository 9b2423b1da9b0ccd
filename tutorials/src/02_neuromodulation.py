# Source of tutorials/02_neuromodulation.ipynb; rebuild with `python tutorials/build.py 02`.

# %% [markdown]
# # Tutorial 2: Neuromodulation of random weights
#
# In [tutorial 1](01_random_features.ipynb) a readout was *fitted* on top of random features.
# nmnp's networks never fit a weight: every weight stays random, forever. To learn a task,
# the network learns a **context** instead: one gain $c_j$ for each presynaptic unit $j$ and
# one strength $s$. The context modulates the activity that flows through the fixed random
# weights $W$, much as a neuromodulator changes how strongly a neuron drives its targets:
#
# $$ y = s\,(x \odot c)\,W^\top . $$
#
# In this notebook you will
#
# 1. see what the context does to each random synapse (the effective matrix $s\,W
#    \mathrm{diag}(c)$, which nmnp never forms);
# 2. derive the forward and backward passes step by step, implement them in NumPy and compare
#    them with `nmnp.layers`;
# 3. check the gradients by finite differences with `nmnp.gradcheck`, and see what a wrong
#    gradient looks like to that check.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import nmnp
from nmnp import layers
from nmnp.gradcheck import GradientCheckError, check_gradient, numerical_vjp, relative_error

notebook_start = time.perf_counter()

# %% [markdown]
# ## 1. What the context does to each synapse
#
# Write the layer out for one sample $b$ and one output $o$ and regroup the factors:
#
# $$ y_{bo} = s \sum_j x_{bj}\, c_j\, W_{oj}
#           = \sum_j x_{bj}\, \underbrace{(s\, c_j\, W_{oj})}_{M_{oj}},
#    \qquad M = s\, W\, \mathrm{diag}(c). $$
#
# So the layer behaves like an ordinary linear layer with weights $M$: the synapse from unit
# $j$ to output $o$ is the random weight $W_{oj}$ scaled by $s\,c_j$. Every synapse *leaving*
# unit $j$ gets the same gain $c_j$ (one knob per presynaptic unit, not per synapse):
#
# * $c_j > 1$ amplifies unit $j$'s influence and $0 < c_j < 1$ attenuates it;
# * $c_j = 0$ silences unit $j$ for this task; a context in $\{0, 1\}$ is a binary mask, as
#   in Supermasks in Superposition;
# * $c_j < 0$ flips the sign of all of unit $j$'s synapses.
#
# A tiny example with $n = 6$ presynaptic units and 4 outputs:

# %%
rng = np.random.default_rng(0)
n, n_out, B = 6, 4, 3
W = rng.uniform(-1, 1, (n_out, n)) / np.sqrt(n)  # fixed random weights
c = np.array([1.5, 0.5, 0.0, -1.0, 1.0, 2.0])  # the context: one gain per unit
s = 1.7  # the strength
x = rng.normal(size=(B, n))  # a batch of presynaptic activity

M = s * W @ np.diag(c)  # formed here only to look at it
y, _ = layers.modulated_linear_forward(x, c, s, W, backend="numpy")  # nmnp: M never formed
np.testing.assert_allclose(y, x @ M.T, rtol=1e-12)
np.testing.assert_allclose(M, s * W * c[None, :])  # column j of W scaled by s c_j
assert np.all(M[:, 2] == 0)  # c_2 = 0: unit 2 is silenced
np.testing.assert_allclose(M[:, 3], -s * W[:, 3])  # c_3 = -1: unit 3's synapses flip sign
print("y = s (x ⊙ c) Wᵀ equals x Mᵀ with M = s W diag(c)")

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 2.6))
lim = np.abs(M).max()
for ax, title, A in [(axes[0], "random weights W", W), (axes[2], "effective weights s W diag(c)", M)]:
    image = ax.imshow(A, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(title, fontsize=10)
    ax.set_yticks(range(n_out))
    ax.set_ylabel("output o")
fig.colorbar(image, ax=axes[2], fraction=0.05, label="weight")
gain = s * c
axes[1].imshow(gain[None, :], cmap="PuOr", vmin=-4, vmax=4, aspect=2)
for j, value in enumerate(gain):
    axes[1].text(j, 0, f"{value:.2f}", ha="center", va="center", fontsize=9)
axes[1].set_title("gain s·c_j of every synapse leaving unit j", fontsize=10)
axes[1].set_yticks([])
for ax in axes:
    ax.set_xticks(range(n))
    ax.set_xlabel("presynaptic unit j")
plt.show()

# %% [markdown]
# Two more facts follow from the formula.
#
# * **Cost.** $W$ has $n_{out} \times n$ entries; a context has $n + 1$. For FlyNet's readout
#   that is 78,400 random synapses steered by 7,841 learned numbers per task.
# * **Redundancy.** Only the products $s\,c_j$ matter: $(a s, c/a)$ gives the same layer for
#   any $a \neq 0$. The separate strength is there for learning, not for expressiveness:
#   one number that rescales the whole layer in a single step.

# %%
net = nmnp.FlyNet(seed=0)
print(f"FlyNet readout {net.readout.shape}: {net.readout.size:,} fixed synapses, "
      f"{net.params_per_task:,} learned numbers per task")
assert net.readout.size == 78_400 and net.params_per_task == 7_841

a = -2.0
y_rescaled, _ = layers.modulated_linear_forward(x, c / a, a * s, W, backend="numpy")
np.testing.assert_allclose(y_rescaled, y, rtol=1e-12)

# %% [markdown]
# In FlyNet, $x$ is the encoder activity $h$ of tutorial 1, $W$ is the fixed random readout
# (10 × 7840), and each task brings its own $(c, s)$. The network's logits are exactly this
# layer:

# %%
images = rng.normal(size=(5, 784)).astype(np.float32)  # any inputs will do for this check
task = net.add_task("demo")
ctx = net.task(task)
logits_layer, _ = layers.modulated_linear_forward(net.encode(images), ctx.gains, ctx.strength,
                                                  net.readout)
np.testing.assert_allclose(net.forward(images, task), logits_layer, rtol=1e-5, atol=1e-6)

# %% [markdown]
# ## 2. Forward and backward, step by step
#
# Break the forward pass into three elementary steps and keep the intermediate arrays:
#
# $$ u = x \odot c \quad (B \times n), \qquad
#    v = u\, W^\top \quad (B \times n_{out}), \qquad
#    y = s\, v . $$
#
# Training gives us $\bar y = \partial L / \partial y$ (same shape as $y$) and asks for the
# gradients of the loss $L$. Walk the steps backwards, one chain rule each:
#
# 1. $y = s\,v$: $\quad \bar s = \sum_{b,o} \bar y_{bo}\, v_{bo}, \qquad \bar v = s\, \bar y$.
# 2. $v_{bo} = \sum_j u_{bj} W_{oj}$, so $\partial v_{bo} / \partial u_{bj} = W_{oj}$:
#    $\quad \bar u_{bj} = \sum_o \bar v_{bo} W_{oj}$, i.e. $\bar u = \bar v\, W$.
#    (Here a trained layer would also need $\bar W = \bar v^\top u$. $W$ is fixed, so nmnp
#    never computes it, and a training step costs no $n_{out} \times n$ weight gradient.)
# 3. $u_{bj} = x_{bj} c_j$: $\quad \bar x = \bar u \odot c$, and since the same $c$ serves
#    every sample, its gradient sums over the batch: $\bar c_j = \sum_b \bar u_{bj}\, x_{bj}$.
#
# Collected, with $g = \bar y\, W$ (shape $B \times n$):
#
# $$ \bar x = s\, g \odot c, \qquad
#    \bar c_j = s \sum_b g_{bj}\, x_{bj}, \qquad
#    \bar s = \sum_j c_j \sum_b g_{bj}\, x_{bj}, $$
#
# where the last form follows from $\sum_{b,o} \bar y_{bo} v_{bo} = \sum_{b,j} (\bar y
# W)_{bj}\, x_{bj} c_j$. These are the formulas in `nmnp.kernels.reference`. In NumPy:

# %%
def forward(x, c, s, W):
    u = x * c  # (B, n)
    v = u @ W.T  # (B, n_out)
    y = s * v
    return y, (x, c, s, W, v)


def backward(dy, cache):
    x, c, s, W, v = cache
    ds = np.sum(dy * v)  # step 1
    dv = s * dy
    du = dv @ W  # step 2 (no dW: the weights are fixed)
    dx = du * c  # step 3
    dc = (du * x).sum(axis=0)
    return dx, dc, ds


dy = rng.normal(size=(B, n_out))  # an upstream gradient, drawn at random
y_ours, cache = forward(x, c, s, W)
dx, dc, ds = backward(dy, cache)

# The collected formulas give the same numbers.
g = dy @ W
np.testing.assert_allclose(dx, s * g * c)
np.testing.assert_allclose(dc, s * (g * x).sum(axis=0))
np.testing.assert_allclose(ds, c @ (g * x).sum(axis=0))

# %% [markdown]
# Now compare with nmnp's layer, on the NumPy reference backend and on the Numba CPU backend
# (`nmnp.layers` functions return `(out, cache)` and `backward(dout, cache) -> dict`):

# %%
for backend in ["numpy", "cpu"]:
    y_nmnp, nm_cache = layers.modulated_linear_forward(x, c, s, W, backend=backend)
    grads = layers.modulated_linear_backward(dy, nm_cache)
    np.testing.assert_allclose(y_nmnp, y_ours, rtol=1e-10)
    np.testing.assert_allclose(grads["x"], dx, rtol=1e-10)
    np.testing.assert_allclose(grads["gains"], dc, rtol=1e-10)
    np.testing.assert_allclose(grads["strength"], [ds], rtol=1e-10)
    # A backward pass is a pure function: calling it again gives the same answer.
    again = layers.modulated_linear_backward(dy, nm_cache)
    assert all(np.array_equal(grads[key], again[key]) for key in grads)
    print(f"backend {backend!r}: forward and all three gradients agree with ours")

# %% [markdown]
# ## 3. Checking gradients by finite differences
#
# Agreeing with nmnp only shows that two implementations agree. An independent check: for a
# random upstream gradient $\bar y$, the scalar $\phi(x) = \langle f(x), \bar y \rangle$ has
# gradient $\bar x$ (the vector-Jacobian product the backward pass claims), and central
# differences estimate each component without any calculus:
#
# $$ \bar x_i \approx \frac{\phi(x + \epsilon e_i) - \phi(x - \epsilon e_i)}{2 \epsilon}. $$
#
# The truncation error is $O(\epsilon^2)$ and the rounding error $O(u/\epsilon)$ with $u
# \approx 10^{-16}$ in float64, so with $\epsilon = 10^{-6}$ both are tiny. `check_gradient`
# compares the two with the relative error $\|a - n\| / \max(\|a\|, \|n\|)$ and raises
# `GradientCheckError` at $10^{-6}$ or more, unless $\|a - n\|$ is below the rounding
# floor of the differences themselves (`nmnp.gradcheck.rounding_floor`: a gradient too
# small for central differences to resolve).

# %%
s_arr = np.array([s])  # the checker perturbs an array in place, so s goes in a (1,) array
errors = {
    "x": check_gradient(lambda x_: forward(x_, c, s, W)[0], x.copy(), dx, dy, name="x"),
    "c": check_gradient(lambda c_: forward(x, c_, s, W)[0], c.copy(), dc, dy, name="c"),
    "s": check_gradient(lambda s_: forward(x, c, s_[0], W)[0], s_arr, [ds], dy, name="s"),
}
for name, err in errors.items():
    print(f"gradient of {name}: relative error {err:.1e}")
assert all(err < 1e-8 for err in errors.values())

# %% [markdown]
# ### What a wrong gradient looks like
#
# Two bugs that are easy to write:
#
# * **A**: forgetting the strength in $\bar c$, i.e. $\bar c_j = \sum_b g_{bj} x_{bj}$;
# * **B**: computing $\bar s = \sum_{b,o} \bar y_{bo}\, y_{bo}$ from the *output* $y = s v$
#   instead of $v$, which is $s$ times too large.

# %%
dc_bug_a = (g * x).sum(axis=0)
ds_bug_b = np.sum(dy * y_ours)

failures = {}
for name, f, param, analytic in [
    ("c (bug A)", lambda c_: forward(x, c_, s, W)[0], c.copy(), dc_bug_a),
    ("s (bug B)", lambda s_: forward(x, c, s_[0], W)[0], s_arr, [ds_bug_b]),
]:
    try:
        check_gradient(f, param, analytic, dy, name=name)
    except GradientCheckError as err:
        failures[name] = err
        print(err, end="\n\n")
assert set(failures) == {"c (bug A)", "s (bug B)"}  # both bugs are caught

# %% [markdown]
# The message names the parameter, the relative error, and the component that disagrees most
# with the value received and the value expected.
#
# Both bugs are wrong by a factor of $s$ and would **pass** the check at $s = 1$, a
# tempting "simple" test value. A check is only as good as the point where it is evaluated:
# use generic values: $s \neq 1$, random rather than round inputs, $B > 1$ so sums over the
# batch are exercised, $n_{out} \neq n$ so a transposition cannot pass.

# %%
dc_bug_a_at_1 = (dy @ W * x).sum(axis=0)  # bug A, at s = 1
err_at_1 = check_gradient(lambda c_: forward(x, c_, 1.0, W)[0], c.copy(), dc_bug_a_at_1, dy)
print(f"bug A at s = 1: relative error {err_at_1:.1e}, the check passes")
assert err_at_1 < 1e-8

# %%
labels = ["x", "c", "s", "bug A\n(s = 1.7)", "bug B\n(s = 1.7)", "bug A\n(s = 1)"]
# The relative errors of the two caught bugs, from the same finite differences.
err_a = relative_error(dc_bug_a, numerical_vjp(lambda c_: forward(x, c_, s, W)[0], c.copy(), dy))
err_b = relative_error([ds_bug_b], numerical_vjp(lambda s_: forward(x, c, s_[0], W)[0], s_arr, dy))
# Both are off by the factor s, so their relative error is exactly 1 - 1/s = 0.41.
assert abs(err_a - (1 - 1 / s)) < 1e-6 and abs(err_b - (1 - 1 / s)) < 1e-6
values = [errors["x"], errors["c"], errors["s"], err_a, err_b, err_at_1]
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.bar(labels, np.maximum(values, 1e-17), color=["C2"] * 3 + ["C3"] * 2 + ["C1"])
ax.axhline(1e-6, color="k", ls="--", lw=1, label="tolerance 1e-6")
ax.set_yscale("log")
ax.set_ylabel("relative error vs finite differences")
ax.set_title("correct gradients, caught bugs, and a bug hidden by s = 1")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### The same check on the encoder
#
# `nmnp.layers` also gives the Kenyon-cell encoder a backward pass (the gradient with respect
# to the input image; training never needs it, since nothing below the context is learned).
# The same checker verifies it, on a tiny encoder with 10 inputs, 15 units and $k = 3$:

# %%
idx = np.stack([rng.choice(10, 3, replace=False) for _ in range(15)]).astype(np.int32)
x_small = rng.normal(size=(4, 10))
h_small, enc_cache = layers.sparse_encoder_forward(x_small, idx, backend="numpy")
dh = rng.normal(size=h_small.shape)
dx_enc = layers.sparse_encoder_backward(dh, enc_cache)["x"]
err_enc = check_gradient(
    lambda x_: layers.sparse_encoder_forward(x_, idx, backend="numpy")[0], x_small.copy(),
    dx_enc, dh, name="encoder input",
)
print(f"encoder input gradient: relative error {err_enc:.1e}")
assert err_enc < 1e-8

# %% [markdown]
# ## Summary
#
# * A context scales every synapse leaving unit $j$ by $s\,c_j$: the task's effective
#   weights are $s\,W\,\mathrm{diag}(c)$, computed as $s\,(x \odot c)\,W^\top$ without ever
#   forming the matrix.
# * Backward: with $g = \bar y W$, $\bar x = s\,g \odot c$, $\bar c = s \sum_b g \odot x$,
#   $\bar s = c \cdot \sum_b g \odot x$; no weight gradient at all.
# * Central differences confirm the gradients to about $10^{-10}$ and catch wrong ones, as
#   long as the check runs at generic values.
#
# [Tutorial 3](03_training_one_task.ipynb) uses these gradients to train a context.

# %%
elapsed = time.perf_counter() - notebook_start
print(f"notebook ran in {elapsed:.1f} s")
