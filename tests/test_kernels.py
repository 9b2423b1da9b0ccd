"""Every fast kernel against the NumPy reference, and the reference against first principles."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nmnp.errors import BackendError
from nmnp.kernels import KERNELS, get_backend, reference
from predictions import assert_predictions_agree

# float32 kernels reassociate sums (fastmath): compare with tolerances, never bitwise.
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-10)}


def random_problem(rng, B, n_in, n_units, k, n_out, dtype):
    x = rng.normal(size=(B, n_in)).astype(dtype)
    idx = np.sort(np.argsort(rng.random((n_units, n_in)), axis=1)[:, :k], axis=1).astype(np.int32)
    c = rng.normal(size=n_units).astype(dtype)
    W = rng.uniform(-1, 1, size=(n_out, n_units)).astype(dtype)
    return x, idx, c, 0.7, W


def dense_encoder_matrix(idx, n_in):
    """The binary matrix the fast path never builds: an independent oracle for tests."""
    E = np.zeros((idx.shape[0], n_in))
    E[np.arange(idx.shape[0])[:, None], idx] = 1.0
    return E


def test_reference_encoder_matches_dense_formulation(rng):
    x, idx, *_ = random_problem(rng, 6, 20, 30, 4, 3, np.float64)
    m = x @ dense_encoder_matrix(idx, 20).T
    expected = np.maximum(m - m.mean(axis=1, keepdims=True), 0)
    np.testing.assert_allclose(reference.encoder_forward(x, idx), expected, rtol=1e-12)


def test_reference_encoder_backward_matches_dense_formulation(rng):
    x, idx, *_ = random_problem(rng, 5, 12, 9, 3, 3, np.float64)
    h = reference.encoder_forward(x, idx)
    dh = rng.normal(size=h.shape)
    dz = dh * (h > 0)
    dm = dz - dz.mean(axis=1, keepdims=True)
    expected = dm @ dense_encoder_matrix(idx, 12)
    np.testing.assert_allclose(reference.encoder_backward(dh, h, idx, 12), expected, rtol=1e-12)


def test_reference_modulated_layer_matches_explicit_task_matrix(rng):
    x, idx, c, s, W = random_problem(rng, 4, 10, 8, 3, 5, np.float64)
    h = reference.encoder_forward(x, idx)
    effective = s * W * c[None, :]  # the per-task matrix, formed here only as an oracle
    np.testing.assert_allclose(reference.modulated_forward(h, c, s, W), h @ effective.T, rtol=1e-12)


# The cpu encoder sums seven inputs per pass over the batch (first, middle and last passes
# differ), so k = 7, 8..14 and 15+ take different branches: each is covered below.
SHAPES = [  # (B, n_in, n_units, k, n_out): ragged sizes, a single sample, k == n_in
    (1, 5, 3, 2, 2),
    (3, 7, 11, 7, 3),
    (33, 50, 77, 5, 10),
    (130, 784, 1000, 7, 10),
    (9, 40, 50, 16, 10),  # three passes of seven inputs: first, middle, last
    (4, 30, 20, 12, 3),  # two passes
]


def skip_if_too_large_for_simulator(backend, B, n_units):
    """The CUDA simulator runs kernels as Python threads: 130 x 1000 takes over 30 s per call.
    tests/test_cuda.py covers the cuda kernels at block-straddling sizes; on a GPU these run."""
    if backend == "cuda" and B * n_units > 10_000 and numba.config.ENABLE_CUDASIM:
        pytest.skip("too large for Numba's CUDA simulator")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fast_kernels_match_reference(fast_backend, shape, dtype):
    skip_if_too_large_for_simulator(fast_backend, shape[0], shape[2])
    rng = np.random.default_rng(sum(shape))
    fast = get_backend(fast_backend)
    x, idx, c, s, W = random_problem(rng, *shape, dtype)
    tol = TOL[dtype]

    h = fast.encoder_forward(x, idx)
    h_ref = reference.encoder_forward(x, idx)
    assert h.dtype == dtype and h.shape == h_ref.shape
    np.testing.assert_allclose(h, h_ref, **tol)

    dh = rng.normal(size=h_ref.shape).astype(dtype)
    np.testing.assert_allclose(
        fast.encoder_backward(dh, h_ref, idx, x.shape[1]),
        reference.encoder_backward(dh, h_ref, idx, x.shape[1]),
        **tol,
    )

    y = fast.modulated_forward(h_ref, c, s, W)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, reference.modulated_forward(h_ref, c, s, W), **tol)

    dy = rng.normal(size=y.shape).astype(dtype)
    got = fast.modulated_backward(dy, h_ref, c, s, W)
    want = reference.modulated_backward(dy, h_ref, c, s, W)
    for name, a, b in zip(("dh", "dc", "ds"), got, want):
        np.testing.assert_allclose(a, b, **tol, err_msg=name)
    dc, ds = fast.modulated_param_grads(dy, h_ref, c, s, W)
    np.testing.assert_allclose(dc, want[1], **tol)
    np.testing.assert_allclose(ds, want[2], **tol)


@given(
    B=st.integers(1, 9),
    n_in=st.integers(2, 30),
    n_units=st.integers(2, 40),
    n_out=st.integers(1, 5),
    k=st.integers(1, 24),
    seed=st.integers(0, 2**32 - 1),
)
def test_cpu_kernels_match_reference_on_random_shapes(B, n_in, n_units, n_out, k, seed):
    k = min(k, n_in - 1)  # k == n_in gives every unit the same sum: all activity centred to 0
    rng = np.random.default_rng(seed)
    x, idx, c, s, W = random_problem(rng, B, n_in, n_units, k, n_out, np.float32)
    cpu = get_backend("cpu")
    h = reference.encoder_forward(x, idx)
    assume(np.abs(h).max() > 1e-3)  # units with equal index sets can still all cancel: 0 == 0
    np.testing.assert_allclose(cpu.encoder_forward(x, idx), h, **TOL[np.float32])
    dy = rng.normal(size=(B, n_out)).astype(np.float32)
    for a, b in zip(cpu.modulated_backward(dy, h, c, s, W), reference.modulated_backward(dy, h, c, s, W)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_every_backend_module_defines_every_kernel():
    for name in ("numpy", "cpu"):
        module = get_backend(name)
        assert all(callable(getattr(module, k)) for k in KERNELS)
        assert module.NAME == name


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(BackendError, match="unknown backend 'tpu'.*numpy, cpu, cuda"):
        get_backend("tpu")


FUSED_SHAPES = [  # (B, n_in, n_units, k, n_out, T): unit counts that leave tails of 1..3 units
    (1, 5, 3, 2, 2, 1),
    (2, 9, 13, 3, 4, 3),
    (33, 50, 77, 5, 10, 2),
    (130, 784, 1001, 7, 10, 1),
    (5, 20, 30, 4, 13, 1),  # more outputs than one pass of the unit-major backward holds
    (3, 12, 9, 3, 20, 1),
    (9, 40, 50, 16, 10, 2),  # three passes of seven inputs per unit
    (130, 784, 1001, 22, 10, 1),  # four passes, and a tile of the full batch
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_kernels_match_reference(fast_backend, shape, dtype):
    """task_logits (T tasks, one encoder pass) and context_grads against the reference."""
    B, n_in, n_units, k, n_out, T = shape
    skip_if_too_large_for_simulator(fast_backend, B, n_units)
    rng = np.random.default_rng(sum(shape))
    fast = get_backend(fast_backend)
    x, idx, _, _, W = random_problem(rng, B, n_in, n_units, k, n_out, dtype)
    gains = rng.normal(size=(T, n_units)).astype(dtype)
    strengths = rng.normal(size=T).astype(dtype)
    logits = fast.task_logits(x, idx, gains, strengths, W)
    assert logits.shape == (T, B, n_out) and logits.dtype == dtype
    np.testing.assert_allclose(logits, reference.task_logits(x, idx, gains, strengths, W), **TOL[dtype])
    dl = rng.normal(size=(B, n_out)).astype(dtype)
    dc, ds = fast.context_grads(x, idx, gains[0], float(strengths[0]), W, dl)
    dc_ref, ds_ref = reference.context_grads(x, idx, gains[0], float(strengths[0]), W, dl)
    assert dc.dtype == dtype
    np.testing.assert_allclose(dc, dc_ref, **TOL[dtype])
    assert ds == pytest.approx(ds_ref, rel=TOL[dtype]["rtol"] * 10, abs=TOL[dtype]["atol"] * 10)


def test_the_prediction_checker_catches_a_wrong_class(rng):
    x, idx, _, _, W = random_problem(rng, 40, 20, 30, 4, 6, np.float64)
    gains, strengths = rng.normal(size=(2, 30)), np.array([0.9, -1.3])
    logits = reference.task_logits(x, idx, gains, strengths, W)
    classes = np.array([4, 0, 2])
    good = reference.task_predictions(x, idx, gains, strengths, W, classes)
    assert_predictions_agree(good, logits, classes, 1e-6)
    for t, b in [(0, 0), (1, 17)]:
        bad = good.copy()
        bad[t, b] = classes[(list(classes).index(bad[t, b]) + 1) % 3]  # the next competing class
        with pytest.raises(AssertionError):
            assert_predictions_agree(bad, logits, classes, 1e-6)
    outside = good.copy()
    outside[0, 3] = 5
    with pytest.raises(AssertionError, match="outside"):
        assert_predictions_agree(outside, logits, classes, 1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_task_predictions_match_reference(fast_backend, shape, dtype):
    """task_predictions against the reference, for all classes and a subset in a shuffled
    order, whole and in batches that leave a ragged last one; and exactly the argmax of the
    same backend's own task_logits."""
    B, n_in, n_units, k, n_out, T = shape
    skip_if_too_large_for_simulator(fast_backend, B, n_units)
    rng = np.random.default_rng(sum(shape) + 2)
    fast = get_backend(fast_backend)
    x, idx, _, _, W = random_problem(rng, B, n_in, n_units, k, n_out, dtype)
    T = max(T, 5)  # several passes of the cuda forward when n_out is 10
    gains = rng.normal(size=(T, n_units)).astype(dtype)
    strengths = rng.normal(size=T)
    logits_ref = reference.task_logits(x, idx, gains, strengths, W)
    own_logits = fast.task_logits(x, idx, gains, strengths, W)
    subset = rng.permutation(n_out)[: max(1, n_out // 2)]
    for classes in (None, subset):
        allowed = np.arange(n_out) if classes is None else subset
        whole = fast.task_predictions(x, idx, gains, strengths, W, classes)
        assert whole.shape == (T, B) and whole.dtype == np.int64
        assert_predictions_agree(whole, logits_ref, allowed, 50 * TOL[dtype]["rtol"])
        np.testing.assert_array_equal(whole, allowed[own_logits[:, :, allowed].argmax(axis=2)])
        batched = fast.task_predictions(x, idx, gains, strengths, W, classes, max(1, B // 2 + 1))
        np.testing.assert_array_equal(batched, whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_training_step_kernels_match_reference(fast_backend, shape, dtype):
    """logits_and_activity, then modulated_param_grads on the activity it returned (on cpu,
    a view of unit-major memory, which takes the unit-major kernel)."""
    B, n_in, n_units, k, n_out, _ = shape
    skip_if_too_large_for_simulator(fast_backend, B, n_units)
    rng = np.random.default_rng(sum(shape) + 1)
    fast = get_backend(fast_backend)
    x, idx, c, s, W = random_problem(rng, B, n_in, n_units, k, n_out, dtype)
    logits, h = fast.logits_and_activity(x, idx, c, s, W)
    logits_ref, h_ref = reference.logits_and_activity(x, idx, c, s, W)
    assert logits.shape == (B, n_out) and h.shape == (B, n_units)
    assert logits.dtype == dtype and h.dtype == dtype
    np.testing.assert_allclose(logits, logits_ref, **TOL[dtype])
    np.testing.assert_allclose(h, h_ref, **TOL[dtype])
    dl = rng.normal(size=(B, n_out)).astype(dtype)
    dc, ds = fast.modulated_param_grads(dl, h, c, s, W)
    dc_ref, ds_ref = reference.modulated_param_grads(dl, h_ref, c, s, W)
    assert dc.dtype == dtype
    np.testing.assert_allclose(dc, dc_ref, **TOL[dtype])
    assert ds == pytest.approx(ds_ref, rel=TOL[dtype]["rtol"] * 10, abs=TOL[dtype]["atol"] * 10)


def test_cpu_activity_is_unit_major_and_both_layouts_give_the_same_grads(rng):
    """The cpu training step keeps the activity unit-major (no transpose copy); the
    unit-major and sample-major backward kernels must agree on the same numbers."""
    cpu = get_backend("cpu")
    x, idx, c, s, W = random_problem(rng, 37, 30, 50, 4, 12, np.float64)
    _, h = cpu.logits_and_activity(x, idx, c, s, W)
    assert h.T.flags.c_contiguous and not h.flags.c_contiguous
    dl = rng.normal(size=(37, 12))
    unit_major = cpu.modulated_param_grads(dl, h, c, s, W)
    sample_major = cpu.modulated_param_grads(dl, np.ascontiguousarray(h), c, s, W)
    np.testing.assert_allclose(unit_major[0], sample_major[0], rtol=1e-10, atol=1e-12)
    assert unit_major[1] == pytest.approx(sample_major[1], rel=1e-10)


def test_reference_predictions_are_the_argmax_over_the_competing_classes(rng):
    x, idx, c, s, W = random_problem(rng, 9, 10, 8, 3, 5, np.float64)
    gains, strengths = np.stack([c, 2 * c]), np.array([s, -s])  # a negative strength flips it
    logits = reference.task_logits(x, idx, gains, strengths, W)
    np.testing.assert_array_equal(reference.task_predictions(x, idx, gains, strengths, W),
                                  logits.argmax(axis=2))
    got = reference.task_predictions(x, idx, gains, strengths, W, classes=[3, 1], batch_size=4)
    np.testing.assert_array_equal(got, np.where(logits[..., 3] >= logits[..., 1], 3, 1))
    tie = np.zeros((1, 8))  # every logit 0: the earliest competing class wins, as in NumPy
    np.testing.assert_array_equal(reference.task_predictions(x, idx, tie, [1.0], W, [4, 2]), 4)


@pytest.mark.parametrize("classes, batch_size, error, message", [
    ([], 4, "shape", "non-empty"),
    ([0, 5], 4, "shape", r"output ids in 0\.\.4, got \[0, 5\]"),
    ([-1], 4, "shape", "output ids"),
    ([0.5], 4, "shape", "output ids"),
    (None, 0, "config", "batch_size must be a positive integer, got 0"),
    (None, 2.5, "config", "batch_size"),
])
def test_task_predictions_refuse_bad_classes_and_batch_sizes(rng, backend, classes, batch_size,
                                                            error, message):
    """Every backend, cuda included where it can run (the conftest ``backend`` fixture)."""
    from nmnp.errors import ConfigError, ShapeError

    x, idx, c, s, W = random_problem(rng, 6, 10, 8, 3, 5, np.float32)
    kind = ShapeError if error == "shape" else ConfigError
    with pytest.raises(kind, match=message):
        get_backend(backend).task_predictions(x, idx, c[None], [s], W, classes, batch_size)


def test_reference_task_logits_match_a_dense_oracle(rng):
    """task_logits against first principles, none of the reference's own functions:
    ``s_t relu(centred(x E^T)) * c_t @ W^T`` with the dense binary encoder matrix E, each
    sample's sums centred by their mean over the units. Two tasks, one with a negative
    strength, share the encoder pass."""
    x, idx, c, s, W = random_problem(rng, 4, 10, 8, 3, 5, np.float64)
    gains, strengths = np.stack([c, 2 * c]), np.array([s, -s])
    m = x @ dense_encoder_matrix(idx, 10).T
    h = np.maximum(m - m.mean(axis=1, keepdims=True), 0)
    assert h.any() and not h.all()  # some units active and some rectified: both sides tested
    both = reference.task_logits(x, idx, gains, strengths, W)
    assert both.shape == (2, 4, 5)
    for t in range(2):
        expected = strengths[t] * (h * gains[t]) @ W.T
        np.testing.assert_allclose(both[t], expected, rtol=1e-12, atol=1e-12)


def test_cpu_readout_table_is_padded_and_cached_only_for_a_read_only_readout(rng):
    """The backward's transposed readout: W.T with zero columns up to a multiple of ten
    outputs, reused for a model's frozen readout and rebuilt for a writeable one."""
    from nmnp.kernels import cpu

    frozen = rng.normal(size=(13, 6))
    frozen.setflags(write=False)
    table = cpu._padded_readout_transpose(frozen)
    assert table.shape == (6, 20) and cpu._padded_readout_transpose(frozen) is table
    np.testing.assert_array_equal(table[:, :13], frozen.T)
    assert not table[:, 13:].any()

    writeable = frozen.copy()
    cpu._padded_readout_transpose(writeable)
    writeable[0, 0] = 99.0  # a changed readout must not be served a stale table
    assert cpu._padded_readout_transpose(writeable)[0, 0] == 99.0


def test_cpu_encoder_tables_are_cached_only_for_read_only_index_arrays():
    """Per-encoder tables (input counts, padded indices) are reused for a model's frozen
    index array, rebuilt for a writeable one (its contents may change), and dropped once
    their index array is gone."""
    import gc

    from nmnp.kernels import cpu

    frozen = np.array([[0, 1, 2], [2, 3, 4]], dtype=np.int32)
    frozen.setflags(write=False)
    assert cpu._padded_indices(frozen, 5) is cpu._padded_indices(frozen, 5)
    assert cpu._input_counts(frozen, 5, np.float32) is cpu._input_counts(frozen, 5, np.float32)
    np.testing.assert_array_equal(cpu._input_counts(frozen, 5, np.float32), [1, 1, 2, 1, 1])
    np.testing.assert_array_equal(cpu._padded_indices(frozen, 5)[0], [0, 1, 2, 5, 5, 5, 5])

    writeable = frozen.copy()
    first = cpu._input_counts(writeable, 5, np.float32)
    writeable[0, 0] = 4  # a changed encoder must not be served a stale table
    np.testing.assert_array_equal(first, [1, 1, 2, 1, 1])
    np.testing.assert_array_equal(cpu._input_counts(writeable, 5, np.float32), [0, 1, 2, 1, 2])

    key = id(frozen)
    del frozen
    gc.collect()
    other = np.zeros((1, 3), dtype=np.int32)
    other.setflags(write=False)
    cpu._input_counts(other, 3, np.float32)  # adding an entry drops the dead ones
    assert not any(k[0] == key and ref() is None for k, (ref, _) in cpu._FIXED_TABLES.items())


@given(batch=st.integers(1, 5000), tile=st.sampled_from([16, 48, 512]))
def test_cpu_batch_tiles_cover_the_batch_in_aligned_tiles(batch, tile):
    """Tiles are contiguous, in order, cover every sample once, hold at most the tile size,
    start on aligned samples, and there are as few as the tile size allows."""
    from nmnp.kernels import cpu

    old = cpu._BATCH_TILE
    cpu._BATCH_TILE = tile
    try:
        tiles = cpu._batch_tiles(batch)
    finally:
        cpu._BATCH_TILE = old
    assert tiles[0][0] == 0 and tiles[-1][1] == batch
    assert all(prev[1] == nxt[0] for prev, nxt in zip(tiles, tiles[1:]))
    assert all(0 < hi - lo <= tile for lo, hi in tiles)
    assert all(lo % cpu._TILE_ALIGN == 0 for lo, _ in tiles)
    assert len(tiles) == -(-batch // tile)


def test_cpu_kernels_in_small_batch_tiles_match_reference(rng, monkeypatch):
    """With tiles of 16 samples, a batch of 50 runs as 16 + 16 + 16 + 2: every tiled entry
    point (several tasks' logits, the training step's logits and kept activity, the
    encoder, the context gradients) must still match the reference."""
    from nmnp.kernels import cpu

    monkeypatch.setattr(cpu, "_BATCH_TILE", 16)
    assert len(cpu._batch_tiles(50)) == 4
    x, idx, c, s, W = random_problem(rng, 50, 40, 61, 5, 10, np.float32)
    tol = TOL[np.float32]
    gains = rng.normal(size=(3, 61)).astype(np.float32)
    strengths = rng.normal(size=3).astype(np.float32)
    np.testing.assert_allclose(
        cpu.task_logits(x, idx, gains, strengths, W),
        reference.task_logits(x, idx, gains, strengths, W), **tol,
    )
    logits, h = cpu.logits_and_activity(x, idx, c, s, W)
    logits_ref, h_ref = reference.logits_and_activity(x, idx, c, s, W)
    np.testing.assert_allclose(logits, logits_ref, **tol)
    np.testing.assert_allclose(h, h_ref, **tol)
    np.testing.assert_allclose(cpu.encoder_forward(x, idx), h_ref, **tol)
    dl = rng.normal(size=(50, 10)).astype(np.float32)
    dc, ds = cpu.context_grads(x, idx, c, s, W, dl)
    dc_ref, ds_ref = reference.context_grads(x, idx, c, s, W, dl)
    np.testing.assert_allclose(dc, dc_ref, **tol)
    assert ds == pytest.approx(ds_ref, rel=2e-3, abs=2e-4)


def _with_threads(n_threads, run):
    """``run()`` with Numba's thread count set to ``n_threads``, restored afterwards (the
    cpu kernels split their work into blocks and chunks by the count at call time)."""
    old = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        return run()
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("n_threads", sorted({1, numba.config.NUMBA_NUM_THREADS}))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_stream_sum_is_the_sum_of_the_array(n_threads, dtype):
    """The bench's bandwidth probe (nmnp.bench.roofline) reports bytes read per second: a
    wrong sum would mean it does not read what it claims. Sizes 1, 7 (fewer elements than
    some thread counts) and 10,001 (uneven chunks), none, and a strided view; it accumulates
    in float64, so it matches NumPy's float64 sum to rounding."""
    from nmnp.kernels.cpu import stream_sum

    rng = np.random.default_rng(n_threads)
    for size in (1, 7, 10_001):
        a = rng.uniform(-1, 2, size).astype(dtype)  # mostly positive: a sum far from 0
        expected = a.sum(dtype=np.float64)
        got = _with_threads(n_threads, lambda: stream_sum(a))
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12 * float(np.abs(a).sum()))
    assert _with_threads(n_threads, lambda: stream_sum(np.zeros(0, dtype))) == 0.0
    a = rng.uniform(-1, 2, 2001).astype(dtype)
    got = _with_threads(n_threads, lambda: stream_sum(a[::3]))
    assert got == pytest.approx(a[::3].sum(dtype=np.float64), rel=1e-12)


@pytest.mark.parametrize("bad, named", [(np.ones((3, 4), np.float32), "2-D float32"),
                                        (np.arange(5), "1-D int64"), ([1.0, 2.0], "list")])
def test_cpu_stream_sum_refuses_what_is_not_a_1d_float_array(bad, named):
    """A 2-D array used to fail deep in Numba's typing; an integer array would have summed."""
    from nmnp.errors import ShapeError
    from nmnp.kernels.cpu import stream_sum

    with pytest.raises(ShapeError, match=f"1-D floating-point array; got .*{named}"):
        stream_sum(bad)


@given(
    B=st.integers(1, 40),
    n_in=st.integers(2, 30),
    n_units=st.integers(2, 60),
    k=st.integers(1, 24),
    n_out=st.integers(1, 13),
    T=st.integers(1, 3),
    n_threads=st.integers(1, numba.config.NUMBA_NUM_THREADS),
    tile=st.sampled_from([16, 512]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fused_cpu_kernels_match_reference_on_random_shapes_and_thread_counts(
        B, n_in, n_units, k, n_out, T, n_threads, tile, dtype, seed):
    """Every fused cpu kernel splits its units into blocks by the thread count, and the
    batch into tiles (16 here makes a batch of 40 three tiles): over random shapes, thread
    counts and tile sizes, task_logits, logits_and_activity, context_grads, the unit-major
    modulated_param_grads on the activity it kept, and task_predictions against the
    reference. Shapes cross the small-batch path (B < 4), ten outputs per backward pass,
    and one to four passes of seven inputs per unit (k up to 24)."""
    from nmnp.kernels import cpu

    k = min(k, n_in - 1)  # k == n_in gives every unit the same sum: all activity centred to 0
    rng = np.random.default_rng(seed)
    x, idx, c, s, W = random_problem(rng, B, n_in, n_units, k, n_out, dtype)
    h_ref = reference.encoder_forward(x, idx)
    assume(np.abs(h_ref).max() > 1e-3)  # units with equal index sets can still all cancel
    gains = rng.normal(size=(T, n_units)).astype(dtype)
    strengths = rng.normal(size=T).astype(dtype)
    dl = rng.normal(size=(B, n_out)).astype(dtype)
    tol = TOL[dtype]
    loose = dict(rel=tol["rtol"] * 10, abs=tol["atol"] * 10)  # ds sums over every unit

    def run():
        return (
            cpu.task_logits(x, idx, gains, strengths, W),
            cpu.logits_and_activity(x, idx, c, s, W),
            cpu.context_grads(x, idx, c, s, W, dl),
            cpu.task_predictions(x, idx, gains, strengths, W),
        )

    old_tile = cpu._BATCH_TILE
    cpu._BATCH_TILE = tile
    try:
        logits, (step_logits, h), (dc, ds), predictions = _with_threads(n_threads, run)
        # the unit-major kernel reads the activity the training step kept; same thread count
        dc_kept, ds_kept = _with_threads(
            n_threads, lambda: cpu.modulated_param_grads(dl, h, c, s, W))
    finally:
        cpu._BATCH_TILE = old_tile
    logits_ref = reference.task_logits(x, idx, gains, strengths, W)
    np.testing.assert_allclose(logits, logits_ref, **tol)
    step_ref, _ = reference.logits_and_activity(x, idx, c, s, W)
    np.testing.assert_allclose(step_logits, step_ref, **tol)
    np.testing.assert_allclose(h, h_ref, **tol)
    if B >= cpu._SMALL_BATCH:  # the fused pass keeps unit-major activity, not below
        assert h.T.flags.c_contiguous
    dc_ref, ds_ref = reference.context_grads(x, idx, c, s, W, dl)
    for got_dc, got_ds in ((dc, ds), (dc_kept, ds_kept)):
        assert got_dc.dtype == dtype
        np.testing.assert_allclose(got_dc, dc_ref, **tol)
        assert got_ds == pytest.approx(ds_ref, **loose)
    assert predictions.shape == (T, B)
    assert_predictions_agree(predictions, logits_ref, np.arange(n_out), 50 * tol["rtol"])
