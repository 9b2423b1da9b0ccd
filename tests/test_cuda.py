"""The cuda backend: kernels against the NumPy reference at block-straddling sizes, the
device-resident training loop against the cpu backend's, and the failure modes.

Runs on a GPU, or on the CPU under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1 set before
Python starts; ``.ci/run`` has a pass for it). Without either, the tests that need the backend
show as skipped with the reason, and the ones about failing cleanly still run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nmnp import ModulatedNetwork, NetworkConfig
from nmnp.errors import BackendError, ConfigError, ShapeError, TrainingError
from nmnp.kernels import KERNELS, get_backend, reference
from nmnp.kernels import cuda_device as device
from nmnp.kernels import cuda_kernels as kernels
from nmnp.optim import SGD, Adam, RMSprop
from nmnp.train import TaskTrainingReport, TrainSettings, train_task
from predictions import assert_predictions_agree
from toy_data import blobs


def _cuda_reason():
    try:
        get_backend("cuda")
    except (BackendError, ImportError) as err:
        return str(err)
    return None


_REASON = _cuda_reason()


def needs_cuda(test):
    """Mark a test as needing the cuda backend: skipped, with the reason, where it cannot run."""
    return pytest.mark.cuda(pytest.mark.skipif(_REASON is not None, reason=str(_REASON))(test))


TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-10)}


@pytest.fixture
def K():
    """The cuda backend module, with its launch configuration restored after the test."""
    module = get_backend("cuda")
    saved = module.current_config()
    yield module
    module.configure(**saved)


def _env_without_simulator():
    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


# ------------------------------------------------------------------------------ failing cleanly
def test_command_line_programs_hide_only_the_low_occupancy_warning():
    import warnings

    from nmnp.kernels.backend import quiet_low_occupancy_warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_low_occupancy_warnings()
        warnings.warn("Grid size 8 will likely result in GPU under-utilization due to low occupancy.")
        # numba-cuda 0.30 sends it in bold: a terminal escape code comes first
        warnings.warn("\x1b[1mGrid size 62 will likely result in GPU under-utilization due to "
                      "low occupancy.\x1b[0m")
        warnings.warn("Host array used in CUDA kernel will incur copy overhead to/from device.")
    assert [str(w.message)[:10] for w in seen] == ["Host array"]


def test_importing_nmnp_does_not_import_numba_cuda():
    code = ("import sys, nmnp, nmnp.train, nmnp.cli, nmnp.kernels; "
            "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _gpu_present() -> bool:
    import numba

    if not numba.config.ENABLE_CUDASIM:  # ask here; under the simulator, ask a clean process
        try:
            from numba import cuda
        except ImportError:
            return False
        return cuda.is_available()
    probe = subprocess.run(
        [sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"],
        env=_env_without_simulator(), capture_output=True, text=True, timeout=120,
    )
    return probe.stdout.strip() == "True"


def test_cli_backend_cuda_without_gpu_or_simulator_fails_at_once():
    env = _env_without_simulator()
    if _gpu_present():
        pytest.skip("a usable GPU is present, so --backend cuda does not fail here")
    run = subprocess.run(
        [sys.executable, "-m", "nmnp", "run", "--backend", "cuda", "--tasks", "1"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr  # one line, no traceback
    assert lines[0].startswith("nmnp: error: ")
    assert "NUMBA_ENABLE_CUDASIM=1" in lines[0] or "nmnp[cuda]" in lines[0]
    assert run.stdout == ""  # nothing was loaded or trained before the error


@pytest.mark.parametrize("error, advice", [
    (AttributeError("module 'numpy' has no attribute 'row_stack'"), "pip install 'numpy<2.5'"),
    (RuntimeError("libNVVM cannot be found"), "pip install numba-cuda[cu12]"),
])
def test_compile_failure_message_names_the_fix(monkeypatch, error, advice):
    """A GPU whose numba-cuda cannot compile: a NumPy too new for numba-cuda is told apart
    from missing CUDA compiler libraries (seen on an H100 with NumPy 2.5.2, numba-cuda 0.30.4)."""
    import nmnp.kernels.cuda_device as cuda_module

    if cuda_module.cuda is None:
        pytest.skip("numba-cuda is not installed")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(cuda_module.cuda, "compile_ptx_for_current_device", fail, raising=False)
    message = cuda_module._why_cannot_compile()
    assert advice in message and str(error) in message


def test_unavailable_messages_say_what_to_do(monkeypatch):
    import nmnp.kernels.cuda_device as cuda_module

    if cuda_module.cuda is None:
        pytest.skip("numba-cuda is not installed")
    monkeypatch.setattr(cuda_module, "_unavailable", cuda_module._unavailable)  # restored after
    monkeypatch.setattr(cuda_module, "_checked", False)
    monkeypatch.setattr(cuda_module.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cuda_module.cuda, "cuda_error", lambda: "\nno driver here.\n")
    with pytest.raises(BackendError) as err:
        cuda_module.check_available()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("no usable CUDA GPU found (no driver here)")
    assert message.endswith("set NUMBA_ENABLE_CUDASIM=1 before starting Python")

    monkeypatch.setattr(cuda_module, "_checked", False)
    monkeypatch.setattr(cuda_module, "cuda", None)
    monkeypatch.setattr(cuda_module, "_IMPORT_ERROR", ImportError("No module named 'numba_cuda'"))
    with pytest.raises(BackendError, match=r"numba-cuda package.*pip install nmnp\[cuda\]"):
        cuda_module.check_available()


def _nvvm_missing():
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib

        load_nvidia_dynamic_lib("nvvm")
        load_nvidia_dynamic_lib("nvrtc")
    except Exception as err:  # ImportError, or the libraries are not found
        return f"NVVM/NVRTC not installed (pip install nvidia-nvvm nvidia-cuda-nvrtc): {err}"
    return None


# Compiles every kernel to PTX in a child process (no simulator there) and prints, per kernel,
# the atomic instructions its PTX holds and whether it has barriers or shared memory.
_PTX_CONTRACT_PROBE = r"""
import json, re
from nmnp.kernels import cuda

found = {}
for name, texts in cuda._compile_everything().items():
    found[name] = {
        "atomics": sorted({op for t in texts for op in re.findall(r"\b(?:atom|red)\.[\w.]+", t)}),
        "barrier": any(re.search(r"\bbar(?:rier)?\.", t) for t in texts),
        "shared": any(re.search(r"\.shared\b", t) for t in texts),
    }
print(json.dumps(found))
"""


@pytest.mark.slow
@pytest.mark.skipif(_nvvm_missing() is not None, reason=str(_nvvm_missing()))
def test_every_kernel_compiles_for_a_real_gpu_and_keeps_the_kernels_contract():
    """The simulator runs kernels as Python, so it cannot tell whether they are valid
    numba.cuda code; compiling them to PTX (no GPU needed) can. The PTX also shows the
    contract ``cuda_kernels`` states: no kernel accumulates data with atomics, and none uses
    shared memory or barriers, except the training step's two. Its loss kernel has the
    first error win the status word (compare-and-swap) and a barrier per group of samples;
    its optimiser step reduces in shared memory, elects the last block with a ticket and
    reads the other blocks' sums through L2 as atomic adds of 0.0. That the probe finds
    those shows it would find others."""
    run = subprocess.run([sys.executable, "-c", _PTX_CONTRACT_PROBE], env=_env_without_simulator(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    kernels_ptx = json.loads(run.stdout)
    assert {"logit_partials", "loss_and_dlogits", "context_grad_partials",
            "context_grad_from_activity", "optimizer_step", "stage_batch", "encode",
            "encoder_input_grad", "readout_forward", "readout_backward", "sum_rows",
            "scale_partials", "dz_means", "predict_classes"} <= set(kernels_ptx)
    plain = {"atomics": [], "barrier": False, "shared": False}
    assert {name: found for name, found in kernels_ptx.items() if found != plain} == {
        "loss_and_dlogits": {"atomics": ["atom.global.cas.b32"], "barrier": True, "shared": False},
        "optimizer_step": {"atomics": ["atom.global.add.f64", "atom.global.add.u32",
                                       "atom.global.cas.b32"], "barrier": True, "shared": True},
    }


# Compiles fused forward kernels to PTX in a child process (no simulator there) and prints, for
# each, whether the PTX declares a local-memory array (a "__local_depot").
_LOCAL_MEMORY_PROBE = """
import json, numba, numpy as np
from numba import cuda
from nmnp.kernels import cuda_kernels as kernels

def uses_local_memory(kernel, dtype):
    t = numba.from_dtype(np.dtype(dtype))
    i64 = numba.int64
    # the argument types cuda_kernels.forward_partials and resident training launch it with
    sig = (t[:, :], i64, i64, numba.int32[:, :], t[:], t[:, :], i64, i64, t[:, :], i64,
           t[:, :, :, :], numba.boolean, t[:, :], numba.int32[:])
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
    return "__local_depot" in ptx

found = {}
for dtype in ("float32", "float64"):
    for tasks in (1, 4):  # one task: the training step; four 10-class tasks: evaluation
        found[f"{dtype}, {tasks} x 10 outputs"] = uses_local_memory(
            kernels.forward_kernel(10, tasks, dtype), dtype)
# 14 outputs: no whole task beside another fits the 40 accumulators, so the kernel indexes
# them at run time; the probe must see that one's local memory, or it proves nothing
found["float32, run-time indices"] = uses_local_memory(
    kernels.forward_kernel(14, 3, "float32"), "float32")
print(json.dumps(found))
"""


@pytest.mark.slow
@pytest.mark.skipif(_nvvm_missing() is not None, reason=str(_nvvm_missing()))
def test_fused_forward_keeps_its_accumulators_in_registers():
    """The fused forward is compiled for each (tasks, outputs) shape so that every index into
    a thread's accumulators is known at compile time and they stay in registers, not in
    local memory (see ``cuda_kernels.logit_partials_kernel``). In PTX, an array in local
    memory is a ``__local_depot``: the fixed-shape kernels have none; the run-time-indexed
    kernel, which shows the probe can tell them apart, has one."""
    run = subprocess.run([sys.executable, "-c", _LOCAL_MEMORY_PROBE], env=_env_without_simulator(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout) == {
        "float32, 1 x 10 outputs": False, "float32, 4 x 10 outputs": False,
        "float64, 1 x 10 outputs": False, "float64, 4 x 10 outputs": False,
        "float32, run-time indices": True,
    }


# ------------------------------------------------------------------------------ kernels
@pytest.mark.parametrize("bad", [dict(threads_per_block=3), dict(threads_per_block=2048),
                                 dict(tile=0), dict(units_per_chunk=-1), dict(max_blocks=0)])
@needs_cuda
def test_configure_refuses_bad_launch_settings(K, bad):
    before = K.current_config()
    with pytest.raises(ConfigError):
        K.configure(**bad)
    assert K.current_config() == before


@needs_cuda
def test_cuda_module_defines_every_kernel():
    module = get_backend("cuda")
    assert module.NAME == "cuda"
    assert all(callable(getattr(module, name)) for name in KERNELS)


def _problem(rng, B, n_in, n_units, k, n_out, dtype):
    x = rng.normal(size=(B, n_in)).astype(dtype)
    idx = np.sort(np.argsort(rng.random((n_units, n_in)), axis=1)[:, :k], axis=1).astype(np.int32)
    c = rng.normal(size=n_units).astype(dtype)
    W = rng.uniform(-1, 1, size=(n_out, n_units)).astype(dtype)
    return x, idx, c, 0.7, W


#: Launch configurations: blocks of 32 with an uncapped grid (sizes 32 and 33 straddle a
#: block), tiny blocks with a capped grid (grid-stride loops), and one thread doing it all.
CONFIGS = {
    "tpb32": dict(threads_per_block=32, tile=32, units_per_chunk=32, max_blocks=None),
    "tpb4-capped": dict(threads_per_block=4, tile=3, units_per_chunk=5, max_blocks=2),
    "single-thread": dict(threads_per_block=1, tile=1, units_per_chunk=1, max_blocks=1),
}
#: (B, n_in, n_units, k, n_out): 2, 32 and 33 samples and units, and a non-square case with
#: ten outputs (five tasks then need two passes of the fused forward).
SHAPES = [(2, 9, 2, 3, 2), (32, 16, 32, 4, 3), (33, 20, 33, 5, 4), (33, 24, 40, 3, 10)]
CASES = [(c, s, np.float32) for c in ("tpb32", "tpb4-capped") for s in SHAPES]
CASES += [("tpb4-capped", SHAPES[3], np.float64), ("single-thread", SHAPES[2], np.float64)]


@pytest.mark.parametrize(
    "config, shape, dtype", CASES,
    ids=[f"{c}-{'x'.join(map(str, s))}-{np.dtype(d).name}" for c, s, d in CASES],
)
@needs_cuda
def test_cuda_kernels_match_reference(K, config, shape, dtype):
    K.configure(**CONFIGS[config])
    rng = np.random.default_rng(sum(shape))
    x, idx, c, s, W = _problem(rng, *shape, dtype)
    tol = TOL[dtype]
    R = reference

    h = R.encoder_forward(x, idx)
    got = K.encoder_forward(x, idx)
    assert got.dtype == dtype and got.shape == h.shape
    np.testing.assert_allclose(got, h, **tol, err_msg="encoder_forward")
    dh = rng.normal(size=h.shape).astype(dtype)
    np.testing.assert_allclose(K.encoder_backward(dh, h, idx, x.shape[1]),
                               R.encoder_backward(dh, h, idx, x.shape[1]), **tol,
                               err_msg="encoder_backward")
    np.testing.assert_allclose(K.modulated_forward(h, c, s, W), R.modulated_forward(h, c, s, W),
                               **tol, err_msg="modulated_forward")
    dy = rng.normal(size=(x.shape[0], W.shape[0])).astype(dtype)
    for name, a, b in zip(("dh", "dc", "ds"), K.modulated_backward(dy, h, c, s, W),
                          R.modulated_backward(dy, h, c, s, W)):
        np.testing.assert_allclose(a, b, **tol, err_msg=f"modulated_backward {name}")
    for name, a, b in zip(("dc", "ds"), K.modulated_param_grads(dy, h, c, s, W),
                          R.modulated_param_grads(dy, h, c, s, W)):
        np.testing.assert_allclose(a, b, **tol, err_msg=f"modulated_param_grads {name}")
    gains = rng.normal(size=(5, shape[2])).astype(dtype)
    strengths = rng.normal(size=5)
    logits = K.task_logits(x, idx, gains, strengths, W)
    assert logits.dtype == dtype and logits.shape == (5, x.shape[0], W.shape[0])
    np.testing.assert_allclose(logits, R.task_logits(x, idx, gains, strengths, W), **tol,
                               err_msg="task_logits")
    for name, a, b in zip(("dc", "ds"), K.context_grads(x, idx, c, s, W, dy),
                          R.context_grads(x, idx, c, s, W, dy)):
        np.testing.assert_allclose(a, b, **tol, err_msg=f"context_grads {name}")


@pytest.mark.parametrize(
    "config, shape, dtype", CASES,
    ids=[f"{c}-{'x'.join(map(str, s))}-{np.dtype(d).name}" for c, s, d in CASES],
)
@needs_cuda
def test_training_step_kernels_match_reference(K, config, shape, dtype):
    """The resident training step's own kernels, one by one: the fused forward's stored
    activity ``hT`` against the reference encoder, and ``context_grad_from_activity`` (the
    backward that reads it) against the reference ``context_grads``."""
    K.configure(**CONFIGS[config])
    rng = np.random.default_rng(sum(shape) + 1)
    x, idx, c, s, W = _problem(rng, *shape, dtype)
    B, n = x.shape[0], idx.shape[0]
    dlogits = rng.normal(size=(B, W.shape[0])).astype(dtype)
    tables = device.encoder_tables(idx)
    rows = device.to_device(np.arange(B, dtype=np.int32))
    xT, mean = kernels.stage(device.to_device(x), rows, x.shape[1], tables, x.dtype)
    gains = device.to_device(np.stack([c, c]))
    n_chunks = -(-n // K.current_config()["units_per_chunk"])
    partials = device.empty((n_chunks, 1, W.shape[0], B), dtype)
    hT = device.zeros((n, B), dtype)
    W_dev, status = device.constant(W), device.status_zero()
    device.launch(kernels.forward_kernel(W.shape[0], 1, dtype), device.grid2(B, n_chunks),
                  device.tpb(), xT, 0, B, tables.idx, mean, gains, 1, 1, W_dev,
                  K.current_config()["units_per_chunk"], partials, True, hT, status)
    h = reference.encoder_forward(x, idx)
    np.testing.assert_allclose(device.host(hT), h.T, **TOL[dtype], err_msg="stored activity")
    tile = K.current_config()["tile"]
    gh_part = device.empty((-(-B // tile), n), dtype)
    device.launch(kernels.context_grad_from_activity_kernel(np.dtype(dtype).name),
                  device.grid2(n, gh_part.shape[0]), device.tpb(), hT, B, W_dev,
                  device.to_device(np.ascontiguousarray(dlogits.T)), tile, gh_part, status)
    gh = kernels.column_sums(gh_part)
    dc_ref, ds_ref = reference.context_grads(x, idx, c, s, W, dlogits)
    np.testing.assert_allclose(s * gh, dc_ref, **TOL[dtype], err_msg="dc")
    np.testing.assert_allclose(np.dot(c, gh), ds_ref, **TOL[dtype], err_msg="ds")


@pytest.mark.parametrize(
    "config, shape, dtype", CASES,
    ids=[f"{c}-{'x'.join(map(str, s))}-{np.dtype(d).name}" for c, s, d in CASES],
)
@needs_cuda
def test_predictions_on_the_device_match_the_logits(K, config, shape, dtype):
    """``predict_classes`` under every launch configuration: exactly the argmax of this
    backend's ``task_logits`` (the same partial sums, rounded the same way), for all classes
    and for a subset in a shuffled order, whole and in device batches of 13 (33 samples
    leave a ragged last batch), with five tasks (two passes of the forward at ten outputs).
    And the reference's argmax wherever the best two logits differ by more than rounding."""
    K.configure(**CONFIGS[config])
    rng = np.random.default_rng(sum(shape) + 3)
    x, idx, _, _, W = _problem(rng, *shape, dtype)
    n_out = W.shape[0]
    gains = rng.normal(size=(5, idx.shape[0])).astype(dtype)
    strengths = np.array([0.7, -1.1, 2.0, 0.3, -0.4])
    logits = K.task_logits(x, idx, gains, strengths, W)
    logits_ref = reference.task_logits(x, idx, gains, strengths, W)
    slack = 50 * TOL[dtype]["rtol"]  # as in test_kernels.py: the logits' sums differ in order
    for classes in (np.arange(n_out), rng.permutation(n_out)[: max(1, n_out - 1)]):
        expected = classes[logits[:, :, classes].argmax(axis=2)]
        for batch_size in (1024, 13):
            got = K.task_predictions(x, idx, gains, strengths, W, classes, batch_size)
            np.testing.assert_array_equal(got, expected, err_msg=f"classes {classes}, batch {batch_size}")
        assert_predictions_agree(got, logits_ref, classes, slack)
    every = K.task_predictions(x, idx, gains, strengths, W)  # no classes: the default table
    np.testing.assert_array_equal(every, logits.argmax(axis=2))
    assert_predictions_agree(every, logits_ref, np.arange(n_out), slack)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@needs_cuda
def test_more_outputs_than_accumulators_match_reference(K, dtype):
    """More outputs (43) than the fused forward's ACCUMULATORS: the one forward not compiled
    for its shape, which indexes its accumulators at run time, one task per pass. Its
    task_logits and task_predictions (two tasks: the second pass reads the gains at a task
    offset) against the reference, and context_grads, whose readout gradient sums all 43."""
    K.configure(**CONFIGS["tpb4-capped"])  # 11 units: chunks of 5, 5 and 1
    n_out = kernels.ACCUMULATORS + 3
    run_time_indexed = kernels.logit_partials_kernel(n_out, np.dtype(dtype).name)
    assert kernels.forward_kernel(n_out, 1, dtype) is run_time_indexed
    rng = np.random.default_rng(43)
    x, idx, c, s, W = _problem(rng, 6, 10, 11, 3, n_out, dtype)
    gains = rng.normal(size=(2, 11)).astype(dtype)
    strengths = np.array([0.8, -1.2])
    logits = K.task_logits(x, idx, gains, strengths, W)
    logits_ref = reference.task_logits(x, idx, gains, strengths, W)
    np.testing.assert_allclose(logits, logits_ref, **TOL[dtype], err_msg="task_logits")
    for classes in (None, rng.permutation(n_out)[:7]):
        allowed = np.arange(n_out) if classes is None else classes
        got = K.task_predictions(x, idx, gains, strengths, W, classes, 4)  # a ragged last batch
        np.testing.assert_array_equal(got, allowed[logits[:, :, allowed].argmax(axis=2)])
        assert_predictions_agree(got, logits_ref, allowed, 50 * TOL[dtype]["rtol"])
    dy = rng.normal(size=(6, n_out)).astype(dtype)
    for name, a, b in zip(("dc", "ds"), K.context_grads(x, idx, c, s, W, dy),
                          reference.context_grads(x, idx, c, s, W, dy)):
        np.testing.assert_allclose(a, b, **TOL[dtype], err_msg=f"context_grads {name}")


@needs_cuda
def test_evaluation_uploads_a_set_once_and_brings_back_only_class_ids(K):
    """``evaluate_tasks`` and ``evaluate`` on a set of several batches: the inputs go up once
    and one (tasks, samples) array of class ids comes back; the accuracies are the numpy
    backend's."""
    K.configure(**CONFIGS["tpb4-capped"])
    config = NetworkConfig(12, 20, 3, 4, seed=0)
    nets = {b: ModulatedNetwork(config, b) for b in ("numpy", "cuda")}
    rng = np.random.default_rng(5)
    for net in nets.values():
        for t in range(3):
            net.add_task()
            net.tasks[t].gains[:] = np.random.default_rng(t).normal(size=20)
    x = rng.normal(size=(23, 12)).astype(np.float32)
    y = rng.integers(0, 4, size=23)
    with K.record_transfers() as moved:
        acc = nets["cuda"].evaluate_tasks(x, y, batch_size=5)
    assert moved["up"].count((23, 12)) == 1 and moved["down"] == [(3, 23)]
    np.testing.assert_allclose(acc, nets["numpy"].evaluate_tasks(x, y, batch_size=5))
    y_split = np.where(y % 2 == 0, 2, 0)  # a split task's labels are among its classes
    with K.record_transfers() as moved:
        one = nets["cuda"].evaluate(x, y_split, 1, classes=[2, 0], batch_size=5)
    assert moved["up"].count((23, 12)) == 1 and moved["down"] == [(1, 23)]
    assert one == nets["numpy"].evaluate(x, y_split, 1, classes=[2, 0], batch_size=5)
    staged = K.launch_counts.get("stage_batch", 0)
    nets["cuda"].evaluate(x, y, 1)  # the backend's own batch: the whole set at once
    assert K.launch_counts["stage_batch"] - staged == 1
    nets["cuda"].evaluate(x, y, 1, batch_size=5)  # 23 samples in batches of 5
    assert K.launch_counts["stage_batch"] - staged == 1 + 5


@needs_cuda
def test_empty_batch_gives_empty_results(K):
    rng = np.random.default_rng(0)
    x, idx, c, s, W = _problem(rng, 3, 6, 5, 2, 3, np.float32)
    x0 = x[:0]
    assert K.encoder_forward(x0, idx).shape == (0, 5)
    assert K.task_logits(x0, idx, c[None], np.ones(1), W).shape == (1, 0, 3)
    assert K.task_predictions(x0, idx, c[None], np.ones(1), W).shape == (1, 0)


@needs_cuda
def test_uploads_never_carry_a_zero_stride(K):
    """``v[None, :]`` has stride 0 on its length-1 axis; numba-cuda reads that as a broadcast
    axis and checks the layout element by element in Python (about 30 ms for one FlyNet
    context on an H100, at every upload), so uploads get ordinary strides first."""
    row = np.arange(6, dtype=np.float32)[None, :]
    assert 0 in row.strides
    dev = device.to_device(row)
    assert 0 not in dev.strides
    np.testing.assert_array_equal(device.host(dev), row)


@needs_cuda
def test_fixed_weights_are_uploaded_once(K):
    """Read-only arrays (the model's encoder and readout) stay on the device between calls."""
    net = ModulatedNetwork(NetworkConfig(8, 6, 2, 3, seed=0), "cuda")
    t = net.add_task()
    x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    net.evaluate(x, np.zeros(4, np.int64), t)
    assert id(net.readout) in device._constants and id(net.encoder_indices) in device._tables
    first = device._constants[id(net.readout)][1]
    net.evaluate(x, np.zeros(4, np.int64), t)
    assert device._constants[id(net.readout)][1] is first


# ------------------------------------------------------------------------------ training
TRAIN_CONFIG = NetworkConfig(n_inputs=20, n_units=40, inputs_per_unit=4, n_outputs=4, seed=1)


def _train(backend, x, y, settings, classes=None, config=TRAIN_CONFIG):
    net = ModulatedNetwork(config, backend)
    t = net.add_task()
    report = train_task(net, t, x, y, settings, classes=classes, progress=False)
    return net, t, report


@needs_cuda
def test_resident_training_matches_cpu_backend(K):
    """A few hundred samples, two epochs, a last batch smaller than the others."""
    x, y = blobs(0, 300)
    settings = TrainSettings(epochs=2, batch_size=48, seed=3)
    launches = sum(K.launch_counts.values())
    gpu, t, rep_gpu = _train("cuda", x, y, settings)
    steps = 2 * 7
    assert sum(K.launch_counts.values()) - launches == 4 * steps + 2  # 4 per step, 1 per epoch
    cpu, _, rep_cpu = _train("cpu", x, y, settings)
    assert (rep_gpu.steps, rep_gpu.samples) == (rep_cpu.steps, rep_cpu.samples) == (steps, 600)
    assert rep_gpu.seconds > 0
    # accuracies within half a point, per epoch and after training
    np.testing.assert_allclose(rep_gpu.epoch_accuracies, rep_cpu.epoch_accuracies, atol=0.005)
    assert abs(gpu.evaluate(x, y, t) - cpu.evaluate(x, y, t)) <= 0.005
    np.testing.assert_allclose(rep_gpu.epoch_losses, rep_cpu.epoch_losses, rtol=1e-4)
    assert rep_gpu.epoch_losses[-1] < 0.8 * rep_gpu.epoch_losses[0]  # it learned
    # and the learned contexts are close
    np.testing.assert_allclose(gpu.tasks[t].gains, cpu.tasks[t].gains, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.tasks[t].strength, cpu.tasks[t].strength, rtol=1e-4)


@needs_cuda
def test_resident_training_honours_the_step_cap_like_the_cpu_backend(K):
    """3 epochs of 7 steps capped at 10: 7 steps, then 3 of the second epoch. The per-sample
    loss buffers still hold the first epoch's values past the 3 * 48 samples the cut-short
    epoch saw, so its figures must come from those 144 samples only."""
    x, y = blobs(0, 300)
    settings = TrainSettings(epochs=3, batch_size=48, seed=3, max_steps=10)
    launches = sum(K.launch_counts.values())
    gpu, t, rep_gpu = _train("cuda", x, y, settings)
    assert sum(K.launch_counts.values()) - launches == 4 * 10 + 2  # 4 per step, 1 per epoch
    cpu, _, rep_cpu = _train("cpu", x, y, settings)
    assert (rep_gpu.steps, rep_gpu.samples) == (rep_cpu.steps, rep_cpu.samples) == (10, 300 + 144)
    assert len(rep_gpu.epoch_losses) == len(rep_gpu.epoch_accuracies) == 2
    np.testing.assert_allclose(rep_gpu.epoch_losses, rep_cpu.epoch_losses, rtol=1e-4)
    np.testing.assert_allclose(rep_gpu.epoch_accuracies, rep_cpu.epoch_accuracies, atol=1 / 144)
    np.testing.assert_allclose(gpu.tasks[t].gains, cpu.tasks[t].gains, rtol=1e-4, atol=1e-5)


@needs_cuda
def test_stored_activity_backward_equals_the_recomputing_one(K, monkeypatch):
    """The training step's backward reads the activity its forward stored; above the memory
    cap it recomputes it from the inputs instead. Same sums in the same order: the learned
    context must be identical to the last bit, and each path must use its own kernel."""
    from nmnp.kernels import cuda_training

    x, y = blobs(2, 90)
    settings = TrainSettings(epochs=2, batch_size=32, seed=1)
    runs, default_cap = {}, cuda_training.ACTIVITY_BYTES_CAP
    for cap in (default_cap, 0):
        monkeypatch.setattr(cuda_training, "ACTIVITY_BYTES_CAP", cap)
        before = dict(K.launch_counts)
        net, t, report = _train("cuda", x, y, settings)
        used = {k for k, v in K.launch_counts.items() if v > before.get(k, 0)}
        runs[cap] = (net.tasks[t].gains, net.tasks[t].strength, report.epoch_losses, used)
    stored, recomputed = runs[default_cap], runs[0]
    assert "context_grad_from_activity" in stored[3] and "context_grad_partials" not in stored[3]
    assert "context_grad_partials" in recomputed[3] and "context_grad_from_activity" not in recomputed[3]
    np.testing.assert_array_equal(stored[0], recomputed[0])
    np.testing.assert_array_equal(stored[1], recomputed[1])
    np.testing.assert_array_equal(stored[2], recomputed[2])
    assert stored[2][-1] < stored[2][0]  # and it learned


@pytest.mark.parametrize("threads", [2, 4, 32])
@needs_cuda
def test_resident_training_does_not_depend_on_threads_per_block(K, threads):
    """The loss kernel gives each (sample, output) pair its own thread when a block has at
    least n_out threads (4 here), and several outputs to a thread when it has fewer; the
    learned context must be the same either way (up to the order of the strength's sum)."""
    x, y = blobs(3, 70)
    settings = TrainSettings(epochs=2, batch_size=24, seed=2)
    base, t, base_report = _train("cuda", x, y, settings)
    with K.launch_config(threads_per_block=threads):
        other, _, other_report = _train("cuda", x, y, settings)
    np.testing.assert_allclose(other.tasks[t].gains, base.tasks[t].gains, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(other.tasks[t].strength, base.tasks[t].strength, rtol=1e-5)
    np.testing.assert_allclose(other_report.epoch_losses, base_report.epoch_losses, rtol=1e-6)
    assert other_report.epoch_accuracies == base_report.epoch_accuracies


@needs_cuda
def test_resident_training_moves_only_metrics_per_epoch(K):
    x, y = blobs(1, 40)
    with K.record_transfers() as transfers:
        _train("cuda", x, y, TrainSettings(epochs=3, batch_size=16))
    uploads, downloads = transfers["up"], transfers["down"]
    orders = [s for s in uploads if s == (40,)]
    assert len(orders) == 3 + 1  # one order per epoch, plus the labels once
    assert uploads.count((40, 20)) == 1  # the inputs go up once for all epochs
    # per epoch: status (4,), per-sample losses and hits (40,); at the end: the status
    # (which buffer is good), gains and strength
    assert downloads == [(4,), (40,), (40,)] * 3 + [(4,), (2, 40), (2, 1)]


@needs_cuda
def test_record_transfers_sees_every_copy_and_stops_at_the_end_of_the_block(K):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    with K.record_transfers() as outer:
        with K.record_transfers() as inner:
            back = device.host(device.to_device(a))
        device.to_device(a[0])
    device.to_device(a)  # after both blocks: recorded nowhere
    np.testing.assert_array_equal(back, a)
    assert inner == {"up": [(2, 3)], "down": [(2, 3)]}
    assert outer == {"up": [(2, 3), (3,)], "down": [(2, 3)]}


@needs_cuda
def test_resident_training_with_competing_classes_matches_cpu():
    x, y = blobs(2, 60)
    keep = np.isin(y, [1, 3])
    x, y = x[keep], y[keep]
    settings = TrainSettings(epochs=1, batch_size=8, seed=1)
    gpu, t, rep_gpu = _train("cuda", x, y, settings, classes=[3, 1])
    cpu, _, rep_cpu = _train("cpu", x, y, settings, classes=[3, 1])
    np.testing.assert_allclose(rep_gpu.epoch_accuracies, rep_cpu.epoch_accuracies, atol=1e-12)
    np.testing.assert_allclose(rep_gpu.epoch_losses, rep_cpu.epoch_losses, rtol=1e-5)
    np.testing.assert_allclose(gpu.tasks[t].gains, cpu.tasks[t].gains, rtol=1e-5, atol=1e-6)


@needs_cuda
def test_label_outside_the_competing_classes_is_refused_before_any_step():
    x, y = blobs(2, 20)
    y[:] = 1
    y[5] = 2
    net = ModulatedNetwork(TRAIN_CONFIG, "cuda")
    t = net.add_task()
    before = net.tasks[t].gains.copy()
    with pytest.raises(ShapeError, match=r"label 2 is not among this task's classes \[1, 3\]"):
        train_task(net, t, x, y, TrainSettings(batch_size=8), classes=[1, 3], progress=False)
    np.testing.assert_array_equal(net.tasks[t].gains, before)


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, 0.05, momentum=0.9, nesterov=True),
    lambda p: SGD(p, 0.05, momentum=0.5),
    lambda p: SGD(p, 0.05),
    lambda p: Adam(p, 0.01, betas=(0.8, 0.9)),
    # not the defaults, so that reading alpha or eps wrongly shows (eps near sqrt(v) here)
    lambda p: RMSprop(p, 0.01, alpha=0.9, eps=1e-3),
], ids=["sgd-nesterov", "sgd-momentum", "sgd-plain", "adam", "rmsprop"])
@needs_cuda
def test_device_optimizer_steps_match_nmnp_optim(K, make):
    """Every update rule of the device step with its hyperparameters, and its state on the
    device (momentum buffers, Adam moments and step count, RMSprop's square averages; none
    for plain SGD), behaves like :mod:`nmnp.optim` over several steps, including a short
    last batch."""
    from nmnp.initializers import SHUFFLE, rng_for

    x, y = blobs(4, 44)
    settings = TrainSettings(epochs=1, batch_size=16, seed=5)
    gpu = ModulatedNetwork(TRAIN_CONFIG, "cuda")
    t = gpu.add_task()
    report = TaskTrainingReport(t, 0.0, 0, 0)
    K.train_task_resident(gpu, t, gpu.check_inputs(x), y, settings, classes=None,
                          optimizer=make(gpu.trainable_params(t)), report=report, bar=_NoBar())
    cpu = ModulatedNetwork(TRAIN_CONFIG, "cpu")
    cpu.add_task()
    opt = make(cpu.trainable_params(t))
    order = rng_for(settings.seed, SHUFFLE, t, 0).permutation(len(y))
    for start in range(0, len(y), 16):
        batch = order[start : start + 16]
        _, grads, _ = cpu.loss_and_grads_batch(cpu.check_inputs(x[batch]), y[batch], t)
        opt.step(grads)
    assert report.steps == 3 and report.samples == 44
    np.testing.assert_allclose(gpu.tasks[t].gains, cpu.tasks[t].gains, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gpu.tasks[t].strength, cpu.tasks[t].strength, rtol=1e-4)


@pytest.mark.parametrize("n_out, classes, dtype", [
    (4, [3, 0, 2], np.float32),
    (kernels.ACCUMULATORS + 3, None, np.float64),
], ids=["4-outputs-3-competing-float32", "43-outputs-float64"])
@needs_cuda
def test_one_plain_sgd_step_moves_the_context_by_lr_times_the_numpy_gradient(
        K, n_out, classes, dtype):
    """Plain SGD (momentum 0: the update rule's own branch) steps p - lr g, so one resident
    step shows the gradient the device computed: (before - after) / lr must be the numpy
    backend's loss_and_grads_batch gradient (finite-difference checked in test_layers.py)
    for the same batch, the first 12 of the epoch's shuffled order; the epoch's loss and
    accuracy are that batch's. This checks the loss kernel and the optimiser step on their
    own, where the other training tests compare whole trajectories. With 43 outputs the
    forward is the run-time-indexed one and each loss thread takes several outputs."""
    from nmnp.initializers import SHUFFLE, rng_for

    config = NetworkConfig(n_inputs=10, n_units=12, inputs_per_unit=3, n_outputs=n_out, seed=4,
                           dtype=np.dtype(dtype).name)
    rng = np.random.default_rng(n_out)
    x = rng.normal(size=(30, 10)).astype(dtype)
    y = rng.choice(n_out if classes is None else classes, size=30)
    lr = 0.5  # not 1: a step that ignored lr would show
    settings = TrainSettings(batch_size=12, lr=lr, optimizer="sgd", seed=7, max_steps=1)
    gpu = ModulatedNetwork(config, "cuda")
    t = gpu.add_task()
    gains, strength = gpu.tasks[t].gains.copy(), gpu.tasks[t].strength.copy()
    steps = K.launch_counts.get("optimizer_step", 0)
    report = train_task(gpu, t, x, y, settings, classes=classes, progress=False)
    assert K.launch_counts["optimizer_step"] - steps == 1  # the device step, not the host loop
    assert (report.steps, report.samples) == (1, 12)
    ref = ModulatedNetwork(config, "numpy")
    ref.add_task()
    np.testing.assert_array_equal(ref.tasks[t].gains, gains)  # the same starting context
    batch = rng_for(settings.seed, SHUFFLE, t, 0).permutation(30)[:12]
    loss, grads, n_correct = ref.loss_and_grads_batch(ref.check_inputs(x[batch]), y[batch], t,
                                                      ref.check_classes(classes))
    assert np.abs(grads["gains"]).max() > 1e-3 and abs(grads["strength"][0]) > 1e-3  # it moves
    np.testing.assert_allclose((gains - gpu.tasks[t].gains) / lr, grads["gains"], **TOL[dtype])
    np.testing.assert_allclose((strength - gpu.tasks[t].strength) / lr, grads["strength"],
                               **TOL[dtype])
    assert report.epoch_losses[0] == pytest.approx(loss, rel=TOL[dtype]["rtol"])
    assert report.epoch_accuracies == [n_correct / 12]


@needs_cuda
def test_an_optimiser_without_a_device_rule_is_refused_before_any_launch(K):
    """The step kernel knows nmnp.optim's three optimisers by class name. train_task builds
    only those, but the backend's train_task_resident takes any optimiser object: one it
    has no rule for (here a subclass, which may change the maths) must be refused, not run
    as the rule of its parent, with nothing launched and the context untouched."""

    class Lookahead(SGD):
        pass

    x, y = blobs(4, 20)
    net = ModulatedNetwork(TRAIN_CONFIG, "cuda")
    t = net.add_task()
    gains = net.tasks[t].gains.copy()
    launches = sum(K.launch_counts.values())
    with pytest.raises(TrainingError, match="^the cuda backend cannot run optimiser Lookahead$"):
        K.train_task_resident(net, t, net.check_inputs(x), y, TrainSettings(batch_size=8),
                              classes=None, optimizer=Lookahead(net.trainable_params(t), 0.1),
                              report=TaskTrainingReport(t, 0.0, 0, 0), bar=_NoBar())
    assert sum(K.launch_counts.values()) == launches
    np.testing.assert_array_equal(net.tasks[t].gains, gains)


TINY = NetworkConfig(n_inputs=12, n_units=16, inputs_per_unit=3, n_outputs=3, seed=2)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow itself, in the simulator
@needs_cuda
def test_non_finite_loss_stops_like_the_host_loop_and_keeps_last_finite_values():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 12)).astype(np.float32), rng.integers(0, 3, 40)
    settings = TrainSettings(epochs=2, batch_size=8, lr=1e20)
    results = {}
    for backend in ("cpu", "cuda"):
        net = ModulatedNetwork(TINY, backend)
        t = net.add_task()
        with pytest.raises(TrainingError) as err:
            train_task(net, t, x, y, settings, progress=False)
        results[backend] = (str(err.value), net.tasks[t].gains.copy(), net.tasks[t].strength.copy())
    message, gains, strength = results["cuda"]
    assert message == results["cpu"][0]
    assert message.startswith("task id 0, epoch 1, step 2: the loss became nan")
    assert np.isfinite(gains).all() and np.isfinite(strength).all()
    np.testing.assert_allclose(gains, results["cpu"][1], rtol=1e-5)  # after step 1
    np.testing.assert_allclose(strength, results["cpu"][2], rtol=1e-5)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@needs_cuda
def test_overflowing_update_is_refused_and_nothing_is_written():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 12)).astype(np.float32), rng.integers(0, 3, 16)
    net = ModulatedNetwork(TINY, "cuda")
    t = net.add_task()
    gains, strength = net.tasks[t].gains.copy(), net.tasks[t].strength.copy()
    with pytest.raises(TrainingError, match=r"task id 0, epoch 1, step 1: RMSprop step would make "
                                            r"params\['(gains|strength)'\].*non-finite"):
        train_task(net, t, x, y, TrainSettings(batch_size=8, lr=1e38), progress=False)
    np.testing.assert_array_equal(net.tasks[t].gains, gains)
    np.testing.assert_array_equal(net.tasks[t].strength, strength)


def test_gradient_failure_message_names_task_epoch_step_and_parameter():
    from nmnp.kernels.cuda_training import GRAD_NOT_FINITE, _failure_message

    message = _failure_message(GRAD_NOT_FINITE, 1, "task id 4", 0, 6, 0.5, TrainSettings(), None,
                               np.float32)
    assert message == ("task id 4, epoch 1, step 7: grads['strength'] contains non-finite values "
                       "(NaN or inf in float32); no parameter was updated.")


@needs_cuda
def test_benchmark_training_reports_transfers_apart_from_compute(K):
    config = NetworkConfig(n_inputs=10, n_units=12, inputs_per_unit=3, n_outputs=3, seed=0)
    out = K.benchmark_training(config, batch_size=8, n_samples=20, steps=2, repeats=1)
    assert out["simulator"] == K.SIMULATOR
    assert out["launches_per_step"] == 4 and out["launches_per_epoch"] == 1
    for key in ("upload_seconds", "order_upload_seconds", "stage_seconds", "metrics_seconds"):
        assert out[key] >= 0
    assert out["step_seconds"]["min"] <= out["step_seconds"]["median"] <= out["step_seconds"]["max"]
    # queuing a step is part of the step: each repeat's queue time is within its step time
    assert 0 < out["queue_seconds"]["median"] <= out["step_seconds"]["median"]
    assert out["samples_per_second"] > 0 and out["upload_bytes"] > 0
