# Source of tutorials/01_random_features.ipynb; rebuild with `python tutorials/build.py 01`.

# %% [markdown]
# # Tutorial 1: Random features
#
# A network whose first layer is drawn at random and **never trained** can still classify
# images. All the learning happens in a linear readout on top of the random features. nmnp
# is built on this idea and takes it further: it keeps *every* weight random, readout
# included, and learns only a small "context" per task (tutorial 2).
#
# In this notebook you will
#
# 1. fit a linear readout to raw pixels, then to a dense random projection, and get accuracy
#    far above chance;
# 2. build the sparse "Kenyon cell" encoder of nmnp's `FlyNet` in a few lines of NumPy and
#    check it against nmnp's own;
# 3. work out what fraction of its units an image switches on, and check that on the data.
#
# Everything runs on the Fashion-MNIST subset shipped with nmnp (6,000 training and 1,000
# test images), with no download. Every number the text claims is checked by an `assert`.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import nmnp
from nmnp.data import load_dataset, normalize, pixel_stats

notebook_start = time.perf_counter()
ds = load_dataset()  # the shipped subset
print(ds.describe()["name"], "| train", ds.x_train.shape, "| test", ds.x_test.shape)
assert ds.x_train.shape == (6000, 28, 28) and ds.x_test.shape == (1000, 28, 28)
# Balanced classes, so always guessing one class is right 10% of the time: chance is 0.1.
assert (np.bincount(ds.y_test) == 100).all()
chance = 0.1

# %%
fig, axes = plt.subplots(2, 10, figsize=(12, 2.8))
for label in range(10):
    for row in range(2):
        ax = axes[row, label]
        ax.imshow(ds.x_train[ds.y_train == label][row], cmap="gray_r")
        ax.set_axis_off()
    axes[0, label].set_title(ds.classes[label], fontsize=8)
fig.suptitle("two training images of each class")
plt.show()

# %% [markdown]
# Images are flattened to vectors $x \in \mathbb{R}^{784}$ and standardised with the training
# split's pixel mean and standard deviation, as everywhere in nmnp:
# $x \leftarrow (x/255 - \mu)/\sigma$.

# %%
mean, std = pixel_stats(ds.x_train)
x_train, x_test = normalize(ds.x_train, mean, std), normalize(ds.x_test, mean, std)
y_train, y_test = ds.y_train, ds.y_test
print(f"pixel mean {mean:.4f}, std {std:.4f}; inputs {x_train.shape} {x_train.dtype}")
assert abs(float(x_train.mean())) < 1e-4 and abs(float(x_train.std()) - 1) < 1e-4

# %% [markdown]
# ## 1. A linear readout, fitted in closed form
#
# Given features $F \in \mathbb{R}^{N \times d}$ of the $N$ training images (with a constant
# column for a bias) and one-hot targets $Y \in \{0, 1\}^{N \times 10}$, ridge regression
# gives the readout
#
# $$ B = \arg\min_B \|F B - Y\|^2 + \lambda \|B\|^2 = (F^\top F + \lambda I)^{-1} F^\top Y, $$
#
# and an image is assigned the class with the largest score, $\arg\max_k (f(x) B)_k$. No
# gradient descent, no epochs: one linear solve. We use $\lambda = 100$ throughout, not tuned
# on the test set; every conclusion below holds for any $\lambda$ from 0.1 to 1000.

# %%
LAMBDA = 100.0
onehot = np.eye(10, dtype=np.float32)[y_train]


def readout_accuracy(f_train, f_test, lam=LAMBDA):
    """Fit a ridge readout on training features, return its test accuracy."""
    f_train = np.hstack([f_train, np.ones((len(f_train), 1), f_train.dtype)])
    f_test = np.hstack([f_test, np.ones((len(f_test), 1), f_test.dtype)])
    gram = f_train.T @ f_train
    gram[np.diag_indices_from(gram)] += lam
    B = np.linalg.solve(gram, f_train.T @ onehot)
    return float(((f_test @ B).argmax(axis=1) == y_test).mean())


acc_pixels = readout_accuracy(x_train, x_test)
print(f"linear readout on raw pixels: test accuracy {acc_pixels:.3f} (chance {chance})")
assert acc_pixels > 0.75

# %% [markdown]
# Fashion-MNIST is kind to linear models: raw pixels already give about 0.8. Now put a
# **fixed random** layer in between: $f(x) = \mathrm{relu}(x P)$ with $P \in
# \mathbb{R}^{784 \times d}$ drawn once from $\mathcal{N}(0, 1/784)$ and never changed. Only
# the readout $B$ is fitted. How does the accuracy depend on the number $d$ of random
# features?

# %%
rng = np.random.default_rng(0)
widths = [10, 40, 160, 640, 1280]
P = rng.normal(0.0, 1.0 / np.sqrt(784), (784, max(widths))).astype(np.float32)
relu = np.maximum  # relu(z, 0)
acc_dense = {}
for d in widths:
    acc_dense[d] = readout_accuracy(relu(x_train @ P[:, :d], 0), relu(x_test @ P[:, :d], 0))
    print(f"d = {d:5d} random features: test accuracy {acc_dense[d]:.3f}")

# Ten random features already give four times chance; enough of them beat the raw pixels.
assert acc_dense[10] > 4 * chance
assert acc_dense[1280] > acc_pixels + 0.03
assert all(acc_dense[a] < acc_dense[b] for a, b in zip(widths, widths[1:]))

# %% [markdown]
# The random layer helps because the ReLU makes each feature a different *nonlinear*
# function of the image, so a linear readout over many of them can carve class boundaries
# that no linear function of the pixels can. Nothing about $P$ was chosen with the data in
# mind.
#
# ## 2. The sparse "Kenyon cell" encoder
#
# The fruit fly's olfactory system does something similar: in its mushroom body, roughly
# 2,000 Kenyon cells each receive input from a handful (about seven) of some fifty glomeruli,
# chosen apparently at random. nmnp's `FlyNet` copies that wiring, with
# $n = 10 \times 784 = 7840$ units:
#
# $$ m_j = \sum_{i \in S_j} x_i, \quad |S_j| = k = 7, \qquad
#    h_j = \mathrm{relu}\Big(m_j - \frac{1}{n} \sum_{j'} m_{j'}\Big). $$
#
# Each unit $j$ adds up $k = 7$ pixels chosen at random without replacement (binary weights:
# 1 on the chosen pixels, 0 elsewhere); then every image's unit activities are centred on
# their own mean across units and rectified. nmnp stores the encoder as the index array
# $S$ of shape $(n, k)$, never as a dense $n \times 784$ matrix.

# %%
net = nmnp.FlyNet(seed=0)
S = net.encoder_indices
print("encoder indices:", S.shape, S.dtype)
assert S.shape == (7840, 7)
assert all(len(set(row)) == 7 for row in S)  # seven distinct pixels per unit


def unit_sums(x, S):
    """m[b, j] = sum of the k pixels S[j] of image b, for x of shape (B, 784)."""
    # x[:, S].sum(axis=2) says the same in one line, but builds a (B, n, k) temporary and
    # gathers scattered columns. With pixels as rows, each gather copies whole rows: k
    # passes over (n, B) arrays, about ten times faster here.
    xT = np.ascontiguousarray(x.T)
    m = xT[S[:, 0]]
    for t in range(1, S.shape[1]):
        m += xT[S[:, t]]
    return m.T


def kenyon_encode(x, S):
    """relu(m - mean(m)) for every image (row) of x."""
    m = unit_sums(x, S)
    return np.maximum(m - m.mean(axis=1, keepdims=True), 0)


h_test = net.encode(x_test)  # nmnp's encoder, float32
h_mine = kenyon_encode(x_test.astype(np.float64), S)  # ours, in float64
# Equal up to float32 rounding (the mean over 7840 units is summed in a different order).
np.testing.assert_allclose(h_test, h_mine, rtol=0, atol=1e-4)
dense_bytes, sparse_bytes = 7840 * 784 * 4, S.nbytes
print(f"matches nmnp's encoder; as indices it takes {sparse_bytes / 1e3:.0f} kB, "
      f"as a dense float32 matrix it would take {dense_bytes / 1e6:.1f} MB")
assert sparse_bytes * 100 < dense_bytes

# %% [markdown]
# The receptive field of a unit is seven scattered pixels, with no spatial structure at all:

# %%
fig, axes = plt.subplots(1, 6, figsize=(11, 2.2))
for ax, j in zip(axes, range(6)):
    rows, cols = np.divmod(S[j], 28)
    ax.imshow(ds.x_test[0], cmap="gray_r", alpha=0.4)
    ax.scatter(cols, rows, s=18, c="red", marker="s")
    ax.set_title(f"unit {j}", fontsize=9)
    ax.set_axis_off()
fig.suptitle("the 7 pixels each unit sums (over a test image)")
plt.show()

# %% [markdown]
# Do these binary, 7-pixel random features classify as well as dense Gaussian ones? Fit the
# same ridge readout on the first $d$ units.

# %%
h_train = net.encode(x_train)
acc_kenyon = {}
for d in widths:
    acc_kenyon[d] = readout_accuracy(h_train[:, :d], h_test[:, :d])
    print(f"d = {d:5d} Kenyon units: {acc_kenyon[d]:.3f}   (dense random: {acc_dense[d]:.3f})")
assert acc_kenyon[1280] > acc_pixels + 0.02
assert abs(acc_kenyon[1280] - acc_dense[1280]) < 0.03

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.semilogx(widths, [acc_dense[d] for d in widths], "o-", label="dense Gaussian + relu")
ax.semilogx(widths, [acc_kenyon[d] for d in widths], "s-", label="Kenyon cells (k = 7)")
ax.axhline(acc_pixels, color="gray", ls="--", label="raw pixels (784)")
ax.axhline(chance, color="red", ls=":", label="chance")
ax.set_xlabel("number of random features d")
ax.set_ylabel("test accuracy")
ax.set_title("a learned linear readout on fixed random features")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## 3. How many units does an image switch on?
#
# After the ReLU a unit is either silent ($h_j = 0$) or active ($h_j > 0$). Look at the
# activity of one image:

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.2))
ax0.hist(h_test[0], bins=60, color="C0")
ax0.set_yscale("log")
ax0.set_xlabel("activity $h_j$ of each of the 7840 units (test image 0)")
ax0.set_ylabel("units")
ax1.plot(h_test[0, :300], lw=0.8)
ax1.set_xlabel("unit j (first 300)")
ax1.set_ylabel("$h_j$")
plt.show()
print(f"image 0: {np.mean(h_test[0] > 0):.1%} of the units are active")

# %% [markdown]
# About half. We can predict the fraction. Take one image with pixel values
# $x_1, \dots, x_N$ ($N = 784$), of mean $\mu$, standard deviation $\sigma$ and skewness
# $\gamma = \frac{1}{N}\sum_i \big(\frac{x_i - \mu}{\sigma}\big)^3$.
#
# * Unit $j$ sums $k$ pixels drawn at random, so $\mathbb{E}[m_j] = k\mu$. Averaged over
#   $n = 7840$ units, the centring term $\frac{1}{n}\sum_{j'} m_{j'}$ is very close to
#   $k\mu$. So unit $j$ is active when **the mean of its $k$ pixels exceeds the image's
#   mean pixel**.
# * If pixel values were symmetric about their mean, a sum of random draws would fall above
#   or below its mean equally often: exactly half the units would be active, whatever the
#   image.
# * Images are skewed: a dark background and fewer bright pixels give $\gamma > 0$. The sum
#   of $k$ draws has skewness $\gamma/\sqrt{k}$. The first-order Edgeworth correction to the
#   normal distribution, evaluated at the mean, gives
#
# $$ P(h_j > 0) \;\approx\; \frac{1}{2} - \frac{\gamma}{6\sqrt{2\pi k}}. $$
#
# Check it image by image on the test set:

# %%
k = S.shape[1]
x64 = x_test.astype(np.float64)
z = (x64 - x64.mean(axis=1, keepdims=True)) / x64.std(axis=1, keepdims=True)
skewness = (z**3).mean(axis=1)
predicted = 0.5 - skewness / (6 * np.sqrt(2 * np.pi * k))
measured = (h_test > 0).mean(axis=1)
error = np.abs(predicted - measured)
print(f"mean skewness {skewness.mean():.2f}; active fraction: predicted {predicted.mean():.4f}, "
      f"measured {measured.mean():.4f}; per image |error| {error.mean():.4f} on average")
assert skewness.mean() > 0.3  # right-skewed images...
assert measured.mean() < 0.5  # ...so a little less than half of the units are active
assert abs(predicted.mean() - measured.mean()) < 0.005
assert error.mean() < 0.02

# %% [markdown]
# ## 4. Why centre each image?
#
# Without the centring step, $h_j = \mathrm{relu}(m_j)$: a unit is active when its pixels
# are brighter than the *dataset's* mean pixel (zero after standardisation). A bright coat
# would then switch on nearly every unit and a thin sandal almost none, so the density of
# the code would carry brightness rather than shape. Centring on the image's own mean makes
# every image switch on about the same fraction of units, and only *which* units are on
# depends on the image.

# %%
m_test = unit_sums(x_test, S)
active_uncentred = (m_test > 0).mean(axis=1)
brightness = ds.x_test.reshape(len(ds.x_test), -1).mean(axis=1)

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.scatter(brightness, active_uncentred, s=4, alpha=0.5, label="relu(m): no centring")
ax.scatter(brightness, measured, s=4, alpha=0.5, label="relu(m - mean m): FlyNet")
ax.set_xlabel("mean pixel value of the image (0..255)")
ax.set_ylabel("fraction of active units")
ax.legend(fontsize=8, markerscale=3)
ax.grid(alpha=0.3)
plt.show()

spread_raw, spread_centred = active_uncentred.std(), measured.std()
corr_raw = np.corrcoef(brightness, active_uncentred)[0, 1]
print(f"spread of the active fraction across images: {spread_raw:.3f} without centring, "
      f"{spread_centred:.3f} with; correlation with brightness without centring {corr_raw:.2f}")
assert spread_raw > 5 * spread_centred
assert corr_raw > 0.9

# %% [markdown]
# ## Summary
#
# * A fixed random layer plus a learned linear readout classifies Fashion-MNIST at about 0.85
#   on this subset, well above chance (0.1) and above a linear readout on the pixels.
# * The Kenyon-cell encoder gets there with binary weights, 7 inputs per unit and no
#   multiplications: each unit is a sum of 7 pixels.
# * Per-image centring followed by a ReLU leaves about half of the units active in *every*
#   image, whatever its brightness: a fraction $\frac12 - \gamma/(6\sqrt{2\pi k})$, a little
#   under half for the right-skewed images ($\gamma > 0$) of this dataset.
#
# FlyNet does not fit a readout like $B$ above: its readout is random too, and fixed. What it
# learns instead, one small vector per task, is the subject of
# [tutorial 2](02_neuromodulation.ipynb).

# %%
elapsed = time.perf_counter() - notebook_start
print(f"notebook ran in {elapsed:.1f} s")
